/*
 * The conninfo's secrets and quoting (src/conninfo.c), against libpq's own parser:
 *   - relay_conninfo_check's message is one line;
 *   - after relay_conninfo_redact, a message that held a password or sslpassword of a
 *     conninfo libpq parses, the conninfo itself or the extra secret, holds none of them but
 *     inside a mark;
 *   - what relay_conninfo_put_value writes reads back through PQconninfoParse as exactly the
 *     value, unquoted, quoted and amid other keywords in the keyword form, and as a URI's
 *     password, user and query parameter; so does ${FUZZ_VALUE} there in a config's conninfo,
 *     as relay_config_parse expands it.
 *
 * Input: the NUL-separated fields control, conninfo, prefix, suffix, value, where control is the
 * size of the message buffer ("MSGLEN", 1 to 8192: past the redaction's own 4096-byte room). The
 * messages are prefix SECRET suffix for each secret; value is also the extra secret (a
 * password read from a file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "config.h"
#include "conninfo.h"
#include "fuzz.h"

#define MARK "[redacted]"
#define MAX_SECRETS 4
#define FUZZ_VALUE_MAX 4096

typedef struct secrets {
    const char *text[MAX_SECRETS]; /* the non-empty ones */
    size_t n;
    PQconninfoOption *options; /* owns the passwords */
} secrets;

static void add_secret(secrets *s, const char *text)
{
    if (text != NULL && text[0] != '\0' && s->n < MAX_SECRETS)
        s->text[s->n++] = text;
}

/* Whether one secret redacted after another may take letters out of the other's marks. */
static bool secrets_interfere(const secrets *s)
{
    bool touching = false, distinct = false;
    for (size_t i = 0; i < s->n; i++) {
        touching |= fuzz_touches_mark(s->text[i], MARK);
        distinct |= strcmp(s->text[i], s->text[0]) != 0;
    }
    return touching && distinct;
}

/* Each secret in a message of msglen bytes, redacted: none is left but inside a mark. Where the
 * marks may lose letters to a later secret, the redaction only runs (for the sanitizers). */
static void check_redacted(const char *conninfo, const secrets *s, const char *extra,
                           const char *prefix, const char *suffix, size_t msglen)
{
    bool checkable = !secrets_interfere(s);
    char *msg = malloc(msglen);
    FUZZ_CHECK(msg != NULL, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        snprintf(msg, msglen, "%s%s%s", prefix, s->text[i], suffix);
        relay_conninfo_redact(conninfo, extra, msg, msglen);
        FUZZ_CHECK(memchr(msg, '\0', msglen) != NULL, "the message overran its buffer");
        for (size_t j = 0; checkable && j < s->n; j++) {
            const char *left = fuzz_find_unredacted(msg, s->text[j], MARK, '\0');
            FUZZ_CHECK(left == NULL, "secret %zu (\"%s\") of conninfo \"%s\" left in \"%s\"", j,
                       s->text[j], conninfo, msg);
        }
    }
    free(msg);
}

/* Checks that keyword reads back as expected from options (conninfo's, parsed). A URI has no way
 * to say "empty": libpq leaves the keyword unset, which it treats as empty wherever it reads one.
 */
static void check_keyword(const PQconninfoOption *options, const char *conninfo,
                          const char *keyword, const char *expected)
{
    const char *got = "";
    for (const PQconninfoOption *o = options; o->keyword != NULL; o++)
        if (strcmp(o->keyword, keyword) == 0 && o->val != NULL)
            got = o->val;
    FUZZ_CHECK(strcmp(got, expected) == 0, "%s of \"%s\" reads \"%s\", not \"%s\"", keyword,
               conninfo, got, expected);
}

/* Where a value lands: a conninfo written before VALUE after, the keyword it is the value of,
 * and keywords beside it that must read back as written. */
static const struct place {
    bool uri;
    const char *before, *after, *keyword;
    const char *others[2][2];
} places[] = {
    {false, "password=", "", "password", {{NULL, NULL}, {NULL, NULL}}},
    {false, "password='", "'", "password", {{NULL, NULL}, {NULL, NULL}}},
    {false, "host=h password=", " dbname=d", "password", {{"host", "h"}, {"dbname", "d"}}},
    {false, "host=h password= ", "\tdbname=d", "password", {{"dbname", "d"}, {NULL, NULL}}},
    {true, "postgresql://u:", "@h/db", "password", {{"user", "u"}, {"dbname", "db"}}},
    {true, "postgresql://", "@h/db", "user", {{"host", "h"}, {"dbname", "db"}}},
    {true, "postgresql://h/db?password=", "&user=u", "password", {{"user", "u"}, {NULL, NULL}}},
};

static void check_place(const struct place *place, const char *conninfo, const char *value)
{
    char *error = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &error);
    FUZZ_CHECK(options != NULL, "libpq cannot parse \"%s\": %s", conninfo,
               error != NULL ? error : "out of memory");
    check_keyword(options, conninfo, place->keyword, value);
    for (size_t j = 0; j < 2 && place->others[j][0] != NULL; j++)
        check_keyword(options, conninfo, place->others[j][0], place->others[j][1]);
    PQconninfoFree(options);
}

/* The value pasted by relay_conninfo_put_value. Empty, it writes nothing, which cannot be a
 * keyword's whole value with blanks after it: that place is the expansion's to quote. */
static void check_put_value(const char *value)
{
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        const struct place *place = &places[i];
        if (value[0] == '\0' && !place->uri && place->after[0] != '\0' && place->after[0] != '\'')
            continue;
        char *conninfo = NULL;
        size_t size = 0;
        FILE *s = open_memstream(&conninfo, &size);
        FUZZ_CHECK(s != NULL, "out of memory");
        fputs(place->before, s);
        FUZZ_CHECK(relay_conninfo_put_value(s, value, place->uri) == 0, "put_value failed");
        fputs(place->after, s);
        FUZZ_CHECK(fclose(s) == 0, "out of memory");
        check_place(place, conninfo, value);
        free(conninfo);
    }
}

/* FUZZ_VALUE=value, the environment's own string (putenv): setenv would keep every old value. */
static char environment[FUZZ_VALUE_MAX + sizeof "FUZZ_VALUE="] = "FUZZ_VALUE=";

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return putenv(environment);
}

/* The value as ${FUZZ_VALUE} in a config's conninfo: what relay_config_parse expands. */
static void check_expansion(const char *value)
{
    snprintf(environment + strlen("FUZZ_VALUE="), FUZZ_VALUE_MAX + 1, "%s", value);
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        const struct place *place = &places[i];
        char yaml[512], err[512];
        /* Neither before nor after holds a '"' or a '\\' that YAML would read otherwise. */
        int n = snprintf(yaml, sizeof yaml,
                         "name: fuzz\ndatabase:\n  conninfo: \"%s${FUZZ_VALUE}%s\"\n"
                         "sink:\n  plugin: stdout\n",
                         place->before, place->after);
        FUZZ_CHECK(n > 0 && (size_t)n < sizeof yaml, "the config does not fit");
        relay_config config;
        FUZZ_CHECK(relay_config_parse("fuzz.yaml", yaml, (size_t)n, &config, err, sizeof err) == 0,
                   "the config with \"%s\" refused: %s", value, err);
        check_place(place, config.conninfo, value);
        relay_config_free(&config);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in;
    fuzz_input_init(&in, data, size);
    fuzz_field control = fuzz_input_next(&in), conninfo = fuzz_input_next(&in);
    fuzz_field prefix = fuzz_input_next(&in), suffix = fuzz_input_next(&in);
    fuzz_field value = fuzz_input_next(&in);
    size_t msglen = 1 + (size_t)(fuzz_field_int(control, 0) & 0x1fff);

    char err[512];
    if (relay_conninfo_check(conninfo.text, err, sizeof err) != 0)
        FUZZ_CHECK(strchr(err, '\n') == NULL, "a message of more than one line: %s", err);

    secrets s = {0};
    char *error = NULL;
    s.options = PQconninfoParse(conninfo.text, &error);
    PQfreemem(error);
    for (PQconninfoOption *o = s.options; o != NULL && o->keyword != NULL; o++)
        if (strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0)
            add_secret(&s, o->val);
    add_secret(&s, conninfo.text);
    add_secret(&s, value.text);
    check_redacted(conninfo.text, &s, value.text, prefix.text, suffix.text, msglen);
    PQconninfoFree(s.options);

    check_put_value(value.text);
    if (value.len <= FUZZ_VALUE_MAX)
        check_expansion(value.text);
    fuzz_input_free(&in);
    return 0;
}
