#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "conninfo.h"
#include "listen_address.h"

/* Guards against alias cycles and alias bombs in sink.options: an anchor can refer to itself. */
#define OPTIONS_MAX_DEPTH 8
#define OPTIONS_MAX_COUNT 1000
#define LIST_MAX_COUNT 32 /* source.columns.headers: a handful in practice; more is a mistake */
#define NAME_MAX_LEN 63
#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
#define ENV_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"

#define MS_PER_SECOND INT64_C(1000)
#define MS_PER_MINUTE (60 * MS_PER_SECOND)
#define MS_PER_HOUR (60 * MS_PER_MINUTE)

typedef struct parse_ctx {
    const char *file;
    yaml_document_t *doc;
    relay_config *config;
    char path[512];    /* dotted key path of the value being read, for messages */
    size_t options_at; /* where option names start in path, inside sink.options */
    char *err;
    size_t errlen;
    /* Where the value being read was used, when that was through an alias: libyaml's document
     * gives an aliased node the anchor's marks, and an error is the operator's where they wrote
     * the alias. Zero when not inside an alias. */
    yaml_mark_t alias_at;
} parse_ctx;

struct field;
typedef int (*value_parser)(parse_ctx *ctx, const struct field *f, yaml_node_t *value, void *dest);

enum {
    F_REQUIRED = 1 << 0,
    F_NULLABLE = 1 << 1,  /* plain ~, null or nothing stores NULL (a duration: its default) */
    F_EMPTY_OK = 1 << 2,  /* "" is a meaningful value */
    F_RELOAD = 1 << 3,    /* may change on reload; see the rule above root_fields */
    F_FREE_FORM = 1 << 4, /* the keys below are not ours (sink.options: the plugin's) */
    F_SECRET = 1 << 5,    /* may hold a password: a message names the key, never the value */
};

/* How a key's value is stored, which is what setting its default and freeing it depend on. */
typedef enum storage {
    STORE_NONE,   /* a mapping (its keys store their own) or sink.options */
    STORE_STRING, /* char *, default_text or NULL */
    STORE_LIST,   /* char ** with a size_t count at count_offset; empty by default */
    STORE_INT,    /* int */
    STORE_INT64,  /* int64_t: durations in ms */
    STORE_BOOL,
    STORE_ENUM, /* one of the relay_* enums below, written as the int they are the size of */
} storage;

/* The ENUM storage writes an int into the member: each enum it is used for must be that size. */
_Static_assert(sizeof(relay_source_mode) == sizeof(int), "enum stored as an int");
_Static_assert(sizeof(relay_on_reject) == sizeof(int), "enum stored as an int");
_Static_assert(sizeof(relay_log_level) == sizeof(int), "enum stored as an int");
_Static_assert(sizeof(relay_log_format) == sizeof(int), "enum stored as an int");

/* One key of a mapping: everything about it, so that nothing about a key lives anywhere else. */
typedef struct field {
    const char *key;
    value_parser parse;
    storage store;
    size_t offset;       /* of the destination inside relay_config */
    size_t count_offset; /* STORE_LIST: of the item count inside relay_config */
    unsigned flags;
    const struct field *sub;  /* the table of a nested mapping */
    int64_t min, max;         /* inclusive range of integers and durations (ms) */
    const char *default_text; /* STORE_STRING: copied in before parsing; NULL: none */
    int64_t default_number;   /* the other stores: the value, ms for durations, 0/1 for bools */
} field;

#define AT(member) offsetof(relay_config, member)

/* The offset of member, checked to be of type type: comparing pointers to distinct types does
 * not compile with -Werror, so a table entry cannot store into a member of another type. */
#define AT_TYPED(member, type)                                                                     \
    (AT(member) + 0 * sizeof((type *)NULL == &((relay_config *)NULL)->member))

/* Table entries, one kind of value each. */
#define TEXT(key, parser, member, flags, default_text)                                             \
    {                                                                                              \
        key, parser, STORE_STRING, AT_TYPED(member, char *), 0, flags, NULL, 0, 0, default_text, 0 \
    }
#define STRING(key, member, flags, default_text)                                                   \
    TEXT(key, parse_string, member, flags, default_text)
#define LIST(key, member, count, flags)                                                            \
    {                                                                                              \
        key, parse_list, STORE_LIST, AT_TYPED(member, char **), AT_TYPED(count, size_t), flags,    \
            NULL, 0, 0, NULL, 0                                                                    \
    }
#define INT(key, member, min, max, default_number, flags)                                          \
    {                                                                                              \
        key, parse_int, STORE_INT, AT_TYPED(member, int), 0, flags, NULL, min, max, NULL,          \
            default_number                                                                         \
    }
#define DURATION(key, member, min, max, default_ms, flags)                                         \
    {                                                                                              \
        key, parse_duration, STORE_INT64, AT_TYPED(member, int64_t), 0, flags, NULL, min, max,     \
            NULL, default_ms                                                                       \
    }
#define BOOL(key, member, default_bool, flags)                                                     \
    {                                                                                              \
        key, parse_bool, STORE_BOOL, AT_TYPED(member, bool), 0, flags, NULL, 0, 0, NULL,           \
            default_bool                                                                           \
    }
#define ENUM(key, parser, member, type, default_value, flags)                                      \
    {                                                                                              \
        key, parser, STORE_ENUM, AT_TYPED(member, type), 0, flags, NULL, 0, 0, NULL, default_value \
    }
#define MAPPING(key, parser, sub, flags)                                                           \
    {                                                                                              \
        key, parser, STORE_NONE, 0, 0, flags, sub, 0, 0, NULL, 0                                   \
    }
#define END                                                                                        \
    {                                                                                              \
        NULL, NULL, STORE_NONE, 0, 0, 0, NULL, 0, 0, NULL, 0                                       \
    }

/* ---- messages ---- */

/* "FILE:LINE:COLUMN: key.path: what"; without a key path for errors about the whole document. */
static int __attribute__((format(printf, 3, 4)))
fail(parse_ctx *ctx, yaml_mark_t mark, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (ctx->alias_at.index > mark.index) {
        snprintf(ctx->err, ctx->errlen, "%s:%zu:%zu: %s%s%s (in the anchored value at %zu:%zu)",
                 ctx->file, ctx->alias_at.line + 1, ctx->alias_at.column + 1, ctx->path,
                 ctx->path[0] ? ": " : "", what, mark.line + 1, mark.column + 1);
        return -1;
    }
    snprintf(ctx->err, ctx->errlen, "%s:%zu:%zu: %s%s%s", ctx->file, mark.line + 1, mark.column + 1,
             ctx->path, ctx->path[0] ? ": " : "", what);
    return -1;
}

static int fail_oom(parse_ctx *ctx, yaml_mark_t mark)
{
    return fail(ctx, mark, "out of memory");
}

/* Returns the length to restore with path_pop. A path too long for the buffer is truncated. */
static size_t path_push(parse_ctx *ctx, const char *key)
{
    size_t old = strlen(ctx->path);
    snprintf(ctx->path + old, sizeof ctx->path - old, "%s%s", old ? "." : "", key);
    return old;
}

static void path_pop(parse_ctx *ctx, size_t old)
{
    ctx->path[old] = '\0';
}

void relay_duration_format(int64_t ms, char *buf, size_t len)
{
    if (ms != 0 && ms % MS_PER_HOUR == 0)
        snprintf(buf, len, "%" PRId64 "h", ms / MS_PER_HOUR);
    else if (ms != 0 && ms % MS_PER_MINUTE == 0)
        snprintf(buf, len, "%" PRId64 "m", ms / MS_PER_MINUTE);
    else if (ms % MS_PER_SECOND == 0)
        snprintf(buf, len, "%" PRId64 "s", ms / MS_PER_SECOND);
    else
        snprintf(buf, len, "%" PRId64 "ms", ms);
}

/* Levenshtein distance, for suggesting a known key; b is a known key, always short. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[32];
    if (lb >= sizeof row / sizeof row[0])
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0]++;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The known key closest to an unknown one, when it is close enough to be a typo. */
static const char *suggest_key(const field *table, const char *unknown)
{
    const char *best = NULL;
    size_t best_distance = SIZE_MAX;
    for (const field *f = table; f->key; f++) {
        size_t d = edit_distance(unknown, f->key);
        if (d <= (strlen(f->key) >= 5 ? 2u : 1u) && d < best_distance) {
            best = f->key;
            best_distance = d;
        }
    }
    return best;
}

/* ---- scalars ---- */

static yaml_node_t *node_at(parse_ctx *ctx, int index)
{
    return yaml_document_get_node(ctx->doc, index);
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

static bool is_plain(const yaml_node_t *node)
{
    return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_null(const yaml_node_t *node)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; is_plain(node) && i < sizeof nulls / sizeof nulls[0]; i++)
        if (strcmp(scalar_text(node), nulls[i]) == 0)
            return true;
    return false;
}

/* A "\0" escape would silently cut the C string short. */
static bool has_nul(const yaml_node_t *node)
{
    return strlen(scalar_text(node)) != node->data.scalar.length;
}

/* The text of a string value, borrowed from the node. */
static int string_value(parse_ctx *ctx, const field *f, yaml_node_t *node, const char **text)
{
    if (node->type != YAML_SCALAR_NODE || is_null(node))
        return fail(ctx, node->start_mark, "expected a string");
    if (has_nul(node))
        return fail(ctx, node->start_mark, "must not contain a NUL character");
    if (node->data.scalar.length == 0 && !(f->flags & F_EMPTY_OK))
        return fail(ctx, node->start_mark, "must not be empty");
    *text = scalar_text(node);
    return 0;
}

/* Replaces *slot, a default or NULL, with a copy of text. */
static int store_copy(parse_ctx *ctx, yaml_node_t *node, char **slot, const char *text)
{
    char *copy = strdup(text);
    if (!copy)
        return fail_oom(ctx, node->start_mark);
    free(*slot);
    *slot = copy;
    return 0;
}

/* Closes a stream from open_memstream; returns its text, or NULL (freed) if a write failed. */
static char *close_memstream(FILE *s, char **buf)
{
    bool failed = ferror(s) != 0;
    if (fclose(s) != 0 || failed) {
        free(*buf);
        *buf = NULL;
    }
    return *buf;
}

/* ---- value parsers ---- */

static int parse_string(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    char **slot = dest;
    const char *text = NULL;
    if ((f->flags & F_NULLABLE) && is_null(node)) {
        free(*slot);
        *slot = NULL;
        return 0;
    }
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    return store_copy(ctx, node, slot, text);
}

static int parse_name(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    const char *text = NULL;
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    size_t len = strlen(text);
    if (len > NAME_MAX_LEN || strspn(text, NAME_CHARS) != len)
        return fail(ctx, node->start_mark,
                    "bad name \"%s\": use 1 to %d letters, digits, '_', '.' or '-'", text,
                    NAME_MAX_LEN);
    return store_copy(ctx, node, dest, text);
}

/* Writes the value of the variable whose name starts at name (just after "${") to s, as it is
 * when verbatim, else quoted for the conninfo form uri says, and returns the text after the
 * closing brace; on failure writes the reason to why. */
static const char *expand_variable(const char *name, bool verbatim, bool uri, FILE *s, char *why,
                                   size_t whylen)
{
    const char *end = strchr(name, '}');
    size_t len = end ? (size_t)(end - name) : 0;
    char var[256];
    if (!end) {
        snprintf(why, whylen, "unterminated ${ (write $$ for a literal $)");
        return name;
    }
    if (len == 0 || len >= sizeof var || strspn(name, ENV_CHARS) != len ||
        (name[0] >= '0' && name[0] <= '9')) {
        snprintf(why, whylen, "bad variable name in ${...}");
        return name;
    }
    memcpy(var, name, len);
    var[len] = '\0';
    const char *value = getenv(var);
    if (value && verbatim)
        fputs(value, s);
    else if (value)
        relay_conninfo_put_value(s, value, uri);
    else
        snprintf(why, whylen, "environment variable %.100s is not set", var);
    return end + 1;
}

/* Whether text is one ${VAR} and nothing else. */
static bool is_one_variable(const char *text)
{
    size_t len = strlen(text);
    return len > 3 && text[0] == '$' && text[1] == '{' && strchr(text, '}') == text + len - 1;
}

/* Where libpq's parser of the keyword form (conninfo_parse in its fe-connect.c) stands after the
 * text written so far: whether an empty value there needs quotes depends on it. */
typedef enum keyword_state {
    KW_KEYWORD,     /* in a keyword, or between a value and the next keyword */
    KW_VALUE_START, /* after the '=' and the blanks libpq skips there */
    KW_UNQUOTED,
    KW_UNQUOTED_ESCAPE, /* after a backslash, which takes the next character as it is */
    KW_QUOTED,
    KW_QUOTED_ESCAPE,
} keyword_state;

static keyword_state keyword_next(keyword_state state, char c)
{
    bool blank = isspace((unsigned char)c);
    switch (state) {
    case KW_KEYWORD:
        return c == '=' ? KW_VALUE_START : KW_KEYWORD;
    case KW_VALUE_START:
        if (blank)
            return KW_VALUE_START;
        return c == '\'' ? KW_QUOTED : c == '\\' ? KW_UNQUOTED_ESCAPE : KW_UNQUOTED;
    case KW_UNQUOTED:
        return blank ? KW_KEYWORD : c == '\\' ? KW_UNQUOTED_ESCAPE : KW_UNQUOTED;
    case KW_UNQUOTED_ESCAPE:
        return KW_UNQUOTED;
    case KW_QUOTED:
        return c == '\\' ? KW_QUOTED_ESCAPE : c == '\'' ? KW_KEYWORD : KW_QUOTED;
    case KW_QUOTED_ESCAPE:
        return KW_QUOTED;
    }
    return state;
}

/* Expands ${VAR} and $$ in a conninfo; any other '$' stays as written. A conninfo that is one
 * ${VAR} is that variable's conninfo, as it is (DATABASE_URL, say). Anywhere else a value lands
 * quoted for the form the written text has, so that it is one value whatever it holds: `x
 * dbname=other` cannot add a keyword, nor `a?host=evil` a URI parameter. An empty value that is
 * a keyword's whole value, blanks after it, is written '': libpq skips blanks after the '=', and
 * `password= dbname=app` is the password "dbname=app". A reason for failure names the variable,
 * never the text: the conninfo may hold a password. */
static int expand_env(const char *text, char **out, char *why, size_t whylen)
{
    bool verbatim = is_one_variable(text), uri = relay_conninfo_is_uri(text);
    char *buf = NULL;
    size_t size = 0;
    FILE *s = open_memstream(&buf, &size);
    why[0] = '\0';
    keyword_state state = KW_KEYWORD;
    size_t scanned = 0;       /* of buf, by keyword_next */
    bool empty_value = false; /* the value so far is variables that were empty */
    for (const char *p = text; s && *p && !why[0];) {
        if (empty_value && isspace((unsigned char)*p))
            fputs("''", s);
        bool variable = p[0] == '$' && p[1] == '{';
        if (p[0] == '$' && p[1] == '$') {
            fputc('$', s);
            p += 2;
        } else if (variable) {
            p = expand_variable(p + 2, verbatim, uri, s, why, whylen);
        } else {
            fputc(*p++, s);
        }
        if (verbatim || uri || fflush(s) != 0)
            continue;
        empty_value = variable && state == KW_VALUE_START && size == scanned;
        for (; scanned < size; scanned++)
            state = keyword_next(state, buf[scanned]);
    }
    if ((!s || !close_memstream(s, &buf)) && !why[0])
        snprintf(why, whylen, "out of memory");
    if (why[0]) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

static int parse_conninfo(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    char **slot = dest, *expanded, why[512];
    const char *text = NULL;
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    if (expand_env(text, &expanded, why, sizeof why) < 0)
        return fail(ctx, node->start_mark, "%s", why);
    if (relay_conninfo_check(expanded, why, sizeof why) != 0) {
        free(expanded);
        return fail(ctx, node->start_mark, "%s", why);
    }
    free(*slot);
    *slot = expanded;
    return 0;
}

/* password_file: a path, or "${CREDENTIALS_DIRECTORY}/ID", the credential ID that systemd passed
 * the unit (LoadCredential=ID:...) in the directory it names in that variable. Nothing else is
 * expanded: a path is not a conninfo, and a '$' in a file name stays one. */
static int parse_password_file(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    static const char credentials[] = "${CREDENTIALS_DIRECTORY}/";
    char **slot = dest;
    const char *text = NULL;
    if (node->type != YAML_SCALAR_NODE || is_null(node) ||
        strncmp(scalar_text(node), credentials, sizeof credentials - 1) != 0)
        return parse_string(ctx, f, node, dest);
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || dir[0] != '/')
        return fail(ctx, node->start_mark,
                    "environment variable CREDENTIALS_DIRECTORY is %s: systemd sets it for a unit "
                    "with LoadCredential=",
                    dir ? "not an absolute path" : "not set");
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, text + sizeof credentials - 1) < 0)
        return fail_oom(ctx, node->start_mark);
    free(*slot);
    *slot = path;
    return 0;
}

static int parse_int(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    const char *text = is_plain(node) ? scalar_text(node) : "";
    size_t len = strlen(text);
    /* at most 9 digits cannot overflow; strtol alone would also take signs and blanks */
    long value =
        len > 0 && len <= 9 && strspn(text, "0123456789") == len ? strtol(text, NULL, 10) : -1;
    if (value < f->min || value > f->max)
        return fail(ctx, node->start_mark, "expected an integer from %" PRId64 " to %" PRId64,
                    f->min, f->max);
    *(int *)dest = (int)value;
    return 0;
}

static int parse_bool(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    (void)f;
    const char *text = is_plain(node) ? scalar_text(node) : "";
    if (strcmp(text, "true") == 0)
        *(bool *)dest = true;
    else if (strcmp(text, "false") == 0)
        *(bool *)dest = false;
    else
        return fail(ctx, node->start_mark, "expected true or false");
    return 0;
}

/* The names of source.mode and sink.on_reject, by value: what the file says, and what a reload's
 * diff writes back. */
static const char *const mode_names[] = {
    [RELAY_MODE_MARGIN] = "margin", [RELAY_MODE_SETTLED] = "settled"};
static const char *const on_reject_names[] = {
    [RELAY_ON_REJECT_STOP] = "stop", [RELAY_ON_REJECT_DEAD_LETTER] = "dead_letter"};

/* The index of text in names, or -1. */
static int name_index(const char *text, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(text, names[i]) == 0)
            return (int)i;
    return -1;
}

static int parse_mode(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    const char *text = NULL;
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    int mode = name_index(text, mode_names, sizeof mode_names / sizeof mode_names[0]);
    if (mode < 0)
        return fail(ctx, node->start_mark, "unknown mode \"%s\": expected margin or settled", text);
    *(relay_source_mode *)dest = (relay_source_mode)mode;
    return 0;
}

static int parse_duration(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    char why[128], limit[32];
    int64_t ms;
    /* A nullable duration stores its default, which stands for "off" (retention.delete_after). */
    if ((f->flags & F_NULLABLE) && is_null(node)) {
        *(int64_t *)dest = f->default_number;
        return 0;
    }
    if (!is_plain(node) || is_null(node))
        return fail(ctx, node->start_mark, "expected a duration, e.g. 500ms or 2s");
    if (relay_duration_parse(scalar_text(node), &ms, why, sizeof why) < 0)
        return fail(ctx, node->start_mark, "bad duration \"%s\": %s", scalar_text(node), why);
    if (ms < f->min || ms > f->max) {
        relay_duration_format(ms < f->min ? f->min : f->max, limit, sizeof limit);
        if (ms < f->min && f->min == 1)
            return fail(ctx, node->start_mark, "must be more than 0");
        return fail(ctx, node->start_mark, "must be at %s %s", ms < f->min ? "least" : "most",
                    limit);
    }
    *(int64_t *)dest = ms;
    return 0;
}

static int parse_log_level(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    const char *text = NULL;
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    if (relay_log_level_parse(text, dest) < 0)
        return fail(ctx, node->start_mark,
                    "unknown level \"%s\": expected debug, info, warn or error", text);
    return 0;
}

static int parse_log_format(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    const char *text = NULL;
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    if (relay_log_format_parse(text, dest) < 0)
        return fail(ctx, node->start_mark, "unknown format \"%s\": expected text or json", text);
    return 0;
}

static int parse_on_reject(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    const char *text = NULL;
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    int policy =
        name_index(text, on_reject_names, sizeof on_reject_names / sizeof on_reject_names[0]);
    if (policy < 0)
        return fail(ctx, node->start_mark, "unknown policy \"%s\": expected stop or dead_letter",
                    text);
    *(relay_on_reject *)dest = (relay_on_reject)policy;
    return 0;
}

/* ---- http.listen ---- */

static int parse_listen(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    char **slot = dest;
    free(*slot);
    *slot = NULL;
    if (is_null(node))
        return 0;
    const char *text = NULL;
    if (string_value(ctx, f, node, &text) < 0)
        return -1;
    relay_listen_address where;
    char why[128];
    if (relay_listen_parse(text, &where, why, sizeof why) != 0)
        return fail(ctx, node->start_mark, "bad address \"%s\": %s", text, why);
    return store_copy(ctx, node, dest, text);
}

/* ---- source.durable_on: standby names ---- */

static int option_text(parse_ctx *ctx, yaml_node_t *node, char **out);

/* A standby's application_name, or a list of them, stored joined with ','; none may be empty or
 * hold a ',' itself. ~ or an empty list: none. */
static int parse_standbys(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    char **slot = dest;
    free(*slot);
    *slot = NULL;
    if (is_null(node) || (node->type == YAML_SEQUENCE_NODE &&
                          node->data.sequence.items.start == node->data.sequence.items.top))
        return 0;
    yaml_node_item_t single = 0;
    yaml_node_item_t *start =
        node->type == YAML_SEQUENCE_NODE ? node->data.sequence.items.start : &single;
    yaml_node_item_t *top =
        node->type == YAML_SEQUENCE_NODE ? node->data.sequence.items.top : &single + 1;
    for (yaml_node_item_t *it = start; it < top; it++) {
        yaml_node_t *item = node->type == YAML_SEQUENCE_NODE ? node_at(ctx, *it) : node;
        const char *text = NULL;
        if (string_value(ctx, f, item, &text) < 0)
            return -1;
        if (strchr(text, ','))
            return fail(ctx, item->start_mark,
                        "a standby's name (its application_name) cannot hold a ','");
    }
    return option_text(ctx, node, slot);
}

/* ---- lists: source.columns.headers ---- */

/* A sequence of distinct strings, stored as a copy each; ~ or nothing: an empty list. */
static int parse_list(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    char ***slot = dest;
    size_t *count = (size_t *)((char *)ctx->config + f->count_offset);
    for (size_t i = 0; i < *count; i++)
        free((*slot)[i]);
    free(*slot);
    *slot = NULL;
    *count = 0;
    if (is_null(node))
        return 0;
    if (node->type != YAML_SEQUENCE_NODE)
        return fail(ctx, node->start_mark, "expected a list of strings");
    yaml_node_item_t *start = node->data.sequence.items.start, *top = node->data.sequence.items.top;
    size_t n = (size_t)(top - start);
    for (yaml_node_item_t *it = start; it < top; it++) {
        yaml_node_t *item = node_at(ctx, *it);
        const char *text = NULL;
        if (it - start >= LIST_MAX_COUNT)
            return fail(ctx, item->start_mark, "more than %d entries", LIST_MAX_COUNT);
        if (string_value(ctx, f, item, &text) < 0)
            return -1;
        for (yaml_node_item_t *before = start; before < it; before++)
            if (strcmp(scalar_text(node_at(ctx, *before)), text) == 0)
                return fail(ctx, item->start_mark, "duplicate entry \"%s\"", text);
    }
    if (n == 0)
        return 0;
    if (!(*slot = calloc(n, sizeof **slot)))
        return fail_oom(ctx, node->start_mark);
    for (yaml_node_item_t *it = start; it < top; it++, (*count)++)
        if (!((*slot)[*count] = strdup(scalar_text(node_at(ctx, *it)))))
            return fail_oom(ctx, node->start_mark);
    return 0;
}

/* ---- tags ---- */

/* Refuses an explicit tag other than the default one of its kind (!!str, !!seq, !!map, which
 * plain YAML gets anyway): `!!binary` or `!custom` would change what the text means to a YAML
 * reader, while the relay would take the text as it is. A sequence's items too; a mapping's
 * pairs are checked where it is walked. */
static int check_tag(parse_ctx *ctx, yaml_node_t *node)
{
    const char *tag = node->tag ? (const char *)node->tag : "";
    const char *expected = node->type == YAML_SCALAR_NODE     ? YAML_DEFAULT_SCALAR_TAG
                           : node->type == YAML_SEQUENCE_NODE ? YAML_DEFAULT_SEQUENCE_TAG
                                                              : YAML_DEFAULT_MAPPING_TAG;
    if (tag[0] && strcmp(tag, expected) != 0) {
        const char *shown = strncmp(tag, "tag:yaml.org,2002:", 18) == 0 ? tag + 18 : tag;
        return fail(ctx, node->start_mark,
                    "YAML tag %s%s is not supported: write the value plainly",
                    shown == tag ? "" : "!!", shown);
    }
    if (node->type != YAML_SEQUENCE_NODE)
        return 0;
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top;
         it++) {
        yaml_node_t *item = node_at(ctx, *it);
        if (item->type != YAML_SEQUENCE_NODE && check_tag(ctx, item) < 0)
            return -1;
    }
    return 0;
}

/* ---- sink.options: flattened to "a.b.c" = "text" pairs ---- */

static int write_option_scalar(parse_ctx *ctx, yaml_node_t *node, FILE *s)
{
    if (node->type != YAML_SCALAR_NODE)
        return fail(ctx, node->start_mark, "expected a scalar or a list of scalars");
    /* The plugin gets C strings: "visible\0hidden" would reach it as "visible". */
    if (has_nul(node))
        return fail(ctx, node->start_mark, "must not contain a NUL character");
    fputs(is_null(node) ? "" : scalar_text(node), s);
    return 0;
}

/* A scalar as written (null is ""), or the items of a sequence of scalars joined with ','. */
static int option_text(parse_ctx *ctx, yaml_node_t *node, char **out)
{
    char *buf = NULL;
    size_t size = 0;
    int rc = 0;
    FILE *s = open_memstream(&buf, &size);
    if (!s)
        return fail_oom(ctx, node->start_mark);
    if (node->type != YAML_SEQUENCE_NODE)
        rc = write_option_scalar(ctx, node, s);
    for (yaml_node_item_t *it = node->data.sequence.items.start;
         node->type == YAML_SEQUENCE_NODE && rc == 0 && it < node->data.sequence.items.top; it++) {
        if (it != node->data.sequence.items.start)
            fputc(',', s);
        rc = write_option_scalar(ctx, node_at(ctx, *it), s);
    }
    if (!close_memstream(s, &buf) && rc == 0)
        rc = fail_oom(ctx, node->start_mark);
    if (rc < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* Adds the option named by the key path below sink.options. */
static int add_option(parse_ctx *ctx, yaml_node_t *key_node, yaml_node_t *value)
{
    relay_config *c = ctx->config;
    const char *name = ctx->path + ctx->options_at;
    if (strlen(ctx->path) + 1 >= sizeof ctx->path)
        return fail(ctx, key_node->start_mark, "option name is too long");
    for (size_t i = 0; i < c->n_sink_options; i++)
        if (strcmp(c->sink_options[i].key, name) == 0)
            return fail(ctx, key_node->start_mark, "duplicate key");
    if (c->n_sink_options >= OPTIONS_MAX_COUNT)
        return fail(ctx, key_node->start_mark, "more than %d options", OPTIONS_MAX_COUNT);

    relay_config_option option = {strdup(name), NULL};
    if (!option.key)
        return fail_oom(ctx, key_node->start_mark);
    relay_config_option *grown =
        realloc(c->sink_options, (c->n_sink_options + 1) * sizeof *c->sink_options);
    if (grown)
        c->sink_options = grown;
    if (!grown || option_text(ctx, value, &option.value) < 0) {
        free(option.key);
        return grown ? -1 : fail_oom(ctx, key_node->start_mark);
    }
    c->sink_options[c->n_sink_options++] = option;
    return 0;
}

static int flatten_options(parse_ctx *ctx, yaml_node_t *map, int depth)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = node_at(ctx, p->key), *value = node_at(ctx, p->value);
        if (key->type != YAML_SCALAR_NODE)
            return fail(ctx, key->start_mark, "expected a scalar key");
        /* "out\0evil" would be the option "out" a second time. */
        if (has_nul(key))
            return fail(ctx, key->start_mark, "a key must not contain a NUL character");
        size_t old = path_push(ctx, scalar_text(key));
        if (check_tag(ctx, key) < 0 || check_tag(ctx, value) < 0)
            return -1;
        int rc;
        if (value->type != YAML_MAPPING_NODE)
            rc = add_option(ctx, key, value);
        else if (depth >= OPTIONS_MAX_DEPTH)
            rc = fail(ctx, value->start_mark, "nested too deeply");
        else
            rc = flatten_options(ctx, value, depth + 1);
        if (rc < 0)
            return -1;
        path_pop(ctx, old);
    }
    return 0;
}

static int parse_options(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    (void)f;
    (void)dest;
    if (node->type != YAML_MAPPING_NODE)
        return fail(ctx, node->start_mark, "expected a mapping");
    ctx->options_at = strlen(ctx->path) + 1;
    return flatten_options(ctx, node, 1);
}

/* ---- mappings ---- */

/* The key may hold a NUL (a "\0" escape) or, in a dotted path, go on past len. */
static const field *find_field(const field *table, const char *key, size_t len)
{
    for (const field *f = table; f->key; f++)
        if (strlen(f->key) == len && memcmp(f->key, key, len) == 0)
            return f;
    return NULL;
}

static int walk_mapping(parse_ctx *ctx, yaml_node_t *map, const field *table)
{
    uint64_t seen = 0; /* bit i: table[i] was given; tables are far shorter than 64 */
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = node_at(ctx, p->key), *value = node_at(ctx, p->value);
        if (key->type != YAML_SCALAR_NODE)
            return fail(ctx, key->start_mark, "expected a scalar key");
        const field *f = find_field(table, scalar_text(key), key->data.scalar.length);
        size_t old = path_push(ctx, scalar_text(key));
        if (!f) {
            const char *hint = suggest_key(table, scalar_text(key));
            return hint ? fail(ctx, key->start_mark, "unknown key (did you mean '%s'?)", hint)
                        : fail(ctx, key->start_mark, "unknown key");
        }
        uint64_t bit = UINT64_C(1) << (f - table);
        if (seen & bit)
            return fail(ctx, key->start_mark, "duplicate key");
        seen |= bit;
        /* A value that starts before its key was written elsewhere: an alias's. The outermost
         * alias is the one the operator wrote here. */
        yaml_mark_t outer = ctx->alias_at;
        if (value->start_mark.index < key->start_mark.index && outer.index == 0)
            ctx->alias_at = key->end_mark;
        if (check_tag(ctx, key) < 0 || check_tag(ctx, value) < 0 ||
            f->parse(ctx, f, value, (char *)ctx->config + f->offset) < 0)
            return -1;
        ctx->alias_at = outer;
        path_pop(ctx, old);
    }
    for (const field *f = table; f->key; f++) {
        if ((f->flags & F_REQUIRED) && !(seen & (UINT64_C(1) << (f - table)))) {
            path_push(ctx, f->key);
            return fail(ctx, map->start_mark, "required key is missing");
        }
    }
    return 0;
}

static int parse_mapping(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    (void)dest;
    if (node->type != YAML_MAPPING_NODE)
        return fail(ctx, node->start_mark, "expected a mapping");
    return walk_mapping(ctx, node, f->sub);
}

/* retry.max may only be compared with retry.initial once both are read. */
/* Where key's value stands in mapping node, or the mapping itself when the key is not written. */
static yaml_mark_t mark_of_value(parse_ctx *ctx, yaml_node_t *node, const char *key)
{
    yaml_mark_t mark = node->start_mark;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++)
        if (strcmp(scalar_text(node_at(ctx, p->key)), key) == 0)
            mark = node_at(ctx, p->value)->start_mark;
    return mark;
}

static int parse_retry(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    const relay_config *c = ctx->config;
    if (parse_mapping(ctx, f, node, dest) < 0)
        return -1;
    if (c->retry_max_ms >= c->retry_initial_ms)
        return 0;
    /* Point at max when it was written; else at this mapping, which raised initial above it. */
    char initial[32];
    relay_duration_format(c->retry_initial_ms, initial, sizeof initial);
    yaml_mark_t mark = mark_of_value(ctx, node, "max");
    path_push(ctx, "max");
    return fail(ctx, mark, "must be at least retry.initial (%s)", initial);
}

static int parse_source(parse_ctx *ctx, const field *f, yaml_node_t *node, void *dest)
{
    const relay_config *c = ctx->config;
    if (parse_mapping(ctx, f, node, dest) < 0)
        return -1;
    if (!c->ids_taken_ahead || c->gap_floor_ms > 0)
        return 0;
    /* Ids taken before the insert escape the proof of death; only an age can stand in for it,
     * and no default age is right for every application. */
    yaml_mark_t mark = mark_of_value(ctx, node, "ids_taken_ahead");
    path_push(ctx, "ids_taken_ahead");
    return fail(ctx, mark,
                "needs source.gap_floor: how long the application may hold an id before the "
                "transaction that inserts it ends");
}

/*
 * The keys. F_RELOAD marks those a reload (SIGHUP) may change: the ones that only pace, bound or
 * report the work (how often, how much at once, how old a row must be, how long to wait or back
 * off, what to log, the sink's options), whose new value can apply from the next batch without
 * losing, repeating or reordering an event. The loop applies a reload between batches, with
 * nothing in flight (relay_reload.h). The others need a restart, because what they decide
 * outlives a batch: who the relay is and what the position means (name, database, table,
 * columns, mode); when a gap may be given up (gap_watch, gap_floor, ids_taken_ahead,
 * gap_max_age) or a row may go out at all (durable_on); which rows may be removed and how
 * (retention.delete_after, retention.drop_partitions); what was opened or loaded at start
 * (notify_channel, plugin_dir, the sink plugin, http.listen's socket); what a refused event does
 * to the position (on_reject); and the log's format, which whoever collects the log reads one way
 * for the whole stream.
 *
 * safety_margin is live: a shorter margin lets through rows of transactions that commit later
 * than it, which the gap watch delivers late, as it does at any margin; a longer one only holds
 * rows back.
 */

static const field columns_fields[] = {
    STRING("id", columns.id, 0, "id"),
    STRING("created_at", columns.created_at, 0, "created_at"),
    STRING("key", columns.key, 0, "aggregate_id"),
    STRING("type", columns.type, 0, "kind"),
    STRING("version", columns.version, F_NULLABLE, "aggregate_version"),
    STRING("payload", columns.payload, 0, "body"),
    STRING("metadata", columns.metadata, F_NULLABLE, "metadata"),
    STRING("aggregate_type", columns.aggregate_type, F_NULLABLE, "aggregate_type"),
    STRING("event_id", columns.event_id, F_NULLABLE, NULL),
    LIST("headers", columns.headers, columns.n_headers, 0),
    END,
};

static const field database_fields[] = {
    TEXT("conninfo", parse_conninfo, conninfo, F_REQUIRED | F_EMPTY_OK | F_SECRET, NULL),
    TEXT("password_file", parse_password_file, password_file, F_NULLABLE, NULL),
    END,
};

static const field source_fields[] = {
    STRING("table", table, 0, "events"),
    MAPPING("columns", parse_mapping, columns_fields, 0),
    /* a week bounds the microsecond arithmetic of the cut, and is past any sane transaction */
    DURATION("safety_margin", safety_margin_ms, 0, 168 * MS_PER_HOUR, MS_PER_SECOND, F_RELOAD),
    /* the batches are allocated at start: a reload must size them anew between batches */
    INT("batch_size", batch_size, 1, 100000, 1000, F_RELOAD),
    INT("batch_bytes", batch_bytes, 65536, 999999999, 16 * 1024 * 1024, F_RELOAD),
    DURATION("poll_interval", poll_interval_ms, 1, MS_PER_HOUR, 200, F_RELOAD),
    DURATION("max_wait", max_wait_ms, 0, 10 * MS_PER_SECOND, 10, F_RELOAD),
    ENUM("mode", parse_mode, mode, relay_source_mode, RELAY_MODE_MARGIN, 0),
    BOOL("gap_watch", gap_watch, true, 0),
    DURATION("gap_floor", gap_floor_ms, 0, 24 * MS_PER_HOUR, 0, 0),
    BOOL("ids_taken_ahead", ids_taken_ahead, false, 0),
    DURATION("gap_max_age", gap_max_age_ms, 1, 24 * MS_PER_HOUR, 10 * MS_PER_MINUTE, 0),
    /* a full watch holds the position: a bound below the gaps already held only waits */
    INT("max_gaps", max_gaps, 1, 1000000, 10000, F_RELOAD),
    STRING("notify_channel", notify_channel, F_NULLABLE, NULL),
    TEXT("durable_on", parse_standbys, durable_on, 0, NULL),
    END,
};

static const field sink_fields[] = {
    STRING("plugin", sink_plugin, F_REQUIRED, NULL),
    DURATION("flush_timeout", sink_flush_timeout_ms, 1, MS_PER_HOUR, 30 * MS_PER_SECOND, F_RELOAD),
    ENUM("on_reject", parse_on_reject, sink_on_reject, relay_on_reject, RELAY_ON_REJECT_STOP, 0),
    /* live: the sink is started anew with them (relay_reload.c); any may be a password */
    MAPPING("options", parse_options, NULL, F_FREE_FORM | F_RELOAD | F_SECRET),
    END,
};

static const field retry_fields[] = {
    /* Bounded so that no sum of waits and clock readings can overflow. */
    DURATION("initial", retry_initial_ms, 1, 24 * MS_PER_HOUR, 100, F_RELOAD),
    DURATION("max", retry_max_ms, 0, 24 * MS_PER_HOUR, 30 * MS_PER_SECOND, F_RELOAD),
    END,
};

static const field log_fields[] = {
    ENUM("level", parse_log_level, log_level, relay_log_level, RELAY_LOG_INFO, F_RELOAD),
    ENUM("format", parse_log_format, log_format, relay_log_format, RELAY_LOG_TEXT, 0),
    END,
};

static const field retention_fields[] = {
    /* what may be removed: like safety_margin, it decides the fate of rows, not the pace */
    /* at most ten years: the DELETE computes now() minus it, which must stay a timestamp */
    DURATION("delete_after", retention_delete_after_ms, 0, 3650 * 24 * MS_PER_HOUR,
             RELAY_RETENTION_OFF, F_NULLABLE),
    INT("batch_size", retention_batch_size, 1, 100000, 5000, F_RELOAD),
    DURATION("interval", retention_interval_ms, 1, 24 * MS_PER_HOUR, 30 * MS_PER_SECOND, F_RELOAD),
    BOOL("drop_partitions", retention_drop_partitions, false, 0),
    END,
};

static const field http_fields[] = {
    /* a socket bound at start: a new address needs a restart */
    TEXT("listen", parse_listen, http_listen, F_NULLABLE, NULL),
    END,
};

static const field root_fields[] = {
    TEXT("name", parse_name, name, F_REQUIRED, NULL),
    MAPPING("database", parse_mapping, database_fields, F_REQUIRED),
    MAPPING("source", parse_source, source_fields, 0),
    MAPPING("sink", parse_mapping, sink_fields, F_REQUIRED),
    STRING("plugin_dir", plugin_dir, F_NULLABLE, NULL),
    MAPPING("retry", parse_retry, retry_fields, 0),
    MAPPING("log", parse_mapping, log_fields, 0),
    MAPPING("retention", parse_mapping, retention_fields, 0),
    MAPPING("http", parse_mapping, http_fields, 0),
    END,
};

static int set_defaults(relay_config *c, const field *table)
{
    for (const field *f = table; f->key; f++) {
        void *dest = (char *)c + f->offset;
        switch (f->store) {
        case STORE_NONE:
            if (f->sub && set_defaults(c, f->sub) < 0)
                return -1;
            break;
        case STORE_STRING:
            if (f->default_text && !(*(char **)dest = strdup(f->default_text)))
                return -1;
            break;
        case STORE_LIST:
            break; /* empty, as the zeroed struct has it */
        case STORE_INT:
            *(int *)dest = (int)f->default_number;
            break;
        case STORE_INT64:
            *(int64_t *)dest = f->default_number;
            break;
        case STORE_BOOL:
            *(bool *)dest = f->default_number != 0;
            break;
        case STORE_ENUM:
            *(int *)dest = (int)f->default_number;
            break;
        }
    }
    return 0;
}

static void free_members(relay_config *c, const field *table)
{
    for (const field *f = table; f->key; f++) {
        void *dest = (char *)c + f->offset;
        if (f->sub)
            free_members(c, f->sub);
        if (f->store == STORE_STRING)
            free(*(char **)dest);
        if (f->store == STORE_LIST) {
            char **items = *(char ***)dest;
            size_t count = *(size_t *)((char *)c + f->count_offset);
            for (size_t i = 0; i < count; i++)
                free(items[i]);
            free(items);
        }
    }
}

/* ---- documents ---- */

/* The reader, which checks the encoding, only knows a byte offset. */
static yaml_mark_t mark_of_offset(const char *text, size_t offset)
{
    yaml_mark_t mark = {offset, 0, 0};
    const char *line_start = text;
    for (const char *p = text; p < text + offset; p++) {
        if (*p == '\n') {
            mark.line++;
            line_start = p + 1;
        }
    }
    mark.column = (size_t)(text + offset - line_start);
    return mark;
}

static int fail_syntax(parse_ctx *ctx, const yaml_parser_t *parser, const char *text)
{
    yaml_mark_t mark = parser->problem_mark;
    if (parser->error == YAML_MEMORY_ERROR)
        return fail_oom(ctx, mark);
    if (parser->error == YAML_READER_ERROR)
        mark = mark_of_offset(text, parser->problem_offset);
    const char *problem = parser->problem ? parser->problem : "unknown problem";
    if (parser->context)
        return fail(ctx, mark, "syntax error: %s (%s at %zu:%zu)", problem, parser->context,
                    parser->context_mark.line + 1, parser->context_mark.column + 1);
    return fail(ctx, mark, "syntax error: %s", problem);
}

/* Loads the one document of the stream into ctx->doc; a second document is an error. */
/* Limits on the file: a config is a few kilobytes, and libyaml's loader takes minutes over a
 * hundred thousand nested levels. */
#define CONFIG_MAX_BYTES (1024 * 1024)
#define CONFIG_MAX_DEPTH 64

/* Refuses a document nested deeper than CONFIG_MAX_DEPTH, reading its events only (cheap), before
 * the loader builds it. A syntax error is left to the loader, which reports it. */
static int check_depth(parse_ctx *ctx, const char *text, size_t len)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return fail_oom(ctx, (yaml_mark_t){0, 0, 0});
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int depth = 0, rc = 0;
    for (bool done = false; !done && rc == 0;) {
        yaml_event_t event;
        if (!yaml_parser_parse(&parser, &event))
            break;
        if (event.type == YAML_SEQUENCE_START_EVENT || event.type == YAML_MAPPING_START_EVENT) {
            if (++depth > CONFIG_MAX_DEPTH)
                rc = fail(ctx, event.start_mark, "nested deeper than %d levels", CONFIG_MAX_DEPTH);
        } else if (event.type == YAML_SEQUENCE_END_EVENT || event.type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        done = event.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    return rc;
}

static int load_document(parse_ctx *ctx, yaml_parser_t *parser, const char *text)
{
    yaml_document_t extra;
    int rc;
    if (!yaml_parser_load(parser, ctx->doc))
        return fail_syntax(ctx, parser, text);
    if (!yaml_parser_load(parser, &extra)) { /* which leaves nothing in extra to delete */
        rc = fail_syntax(ctx, parser, text);
    } else {
        yaml_node_t *second = yaml_document_get_root_node(&extra);
        rc = second ? fail(ctx, second->start_mark, "expected a single YAML document") : 0;
        yaml_document_delete(&extra);
    }
    if (rc < 0)
        yaml_document_delete(ctx->doc);
    return rc;
}

static int parse_document(parse_ctx *ctx)
{
    yaml_node_t *root = yaml_document_get_root_node(ctx->doc);
    if (!root)
        return fail(ctx, (yaml_mark_t){0, 0, 0}, "the file is empty, expected a mapping");
    if (root->type != YAML_MAPPING_NODE)
        return fail(ctx, root->start_mark, "expected a mapping at the top level");
    return walk_mapping(ctx, root, root_fields);
}

/*
 * Makes a relative path in *slot relative to the config file's directory, as a reader of the file
 * means it: `plugin: ./mysink.so` beside the config, wherever the relay was started from (from /,
 * `../../tmp/evil.so` would otherwise be /tmp/evil.so). Returns 0, or -1 when out of memory.
 */
static int resolve_beside_config(const char *config_path, char **slot)
{
    if (!*slot || (*slot)[0] == '/')
        return 0;
    char real[PATH_MAX];
    const char *config = realpath(config_path, real) ? real : config_path;
    const char *slash = strrchr(config, '/');
    char *resolved = NULL;
    int n = slash ? asprintf(&resolved, "%.*s/%s", (int)(slash - config), config, *slot)
                  : asprintf(&resolved, "./%s", *slot);
    if (n < 0)
        return -1;
    free(*slot);
    *slot = resolved;
    return 0;
}

static int resolve_paths(relay_config *c)
{
    if (c->sink_plugin && strchr(c->sink_plugin, '/') &&
        resolve_beside_config(c->path, &c->sink_plugin) != 0)
        return -1;
    return resolve_beside_config(c->path, &c->password_file) != 0 ||
                   resolve_beside_config(c->path, &c->plugin_dir) != 0
               ? -1
               : 0;
}

int relay_config_parse(const char *path, const char *text, size_t len, relay_config *out, char *err,
                       size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    parse_ctx ctx = {.file = path, .doc = &doc, .config = out, .err = err, .errlen = errlen};
    memset(out, 0, sizeof *out);
    if (len > CONFIG_MAX_BYTES)
        return fail(&ctx, (yaml_mark_t){0, 0, 0}, "the file is larger than %d bytes",
                    CONFIG_MAX_BYTES);
    if (check_depth(&ctx, text, len) != 0)
        return -1;
    if (!yaml_parser_initialize(&parser))
        return fail_oom(&ctx, (yaml_mark_t){0, 0, 0});
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = load_document(&ctx, &parser, text);
    yaml_parser_delete(&parser);
    if (rc < 0)
        return -1;
    if (!(out->path = strdup(path)) || set_defaults(out, root_fields) < 0)
        rc = fail_oom(&ctx, (yaml_mark_t){0, 0, 0});
    else if ((rc = parse_document(&ctx)) == 0 && resolve_paths(out) != 0)
        rc = fail_oom(&ctx, (yaml_mark_t){0, 0, 0});
    yaml_document_delete(&doc);
    if (rc < 0)
        relay_config_free(out);
    return rc;
}

int relay_config_load(const char *path, relay_config *out, char *err, size_t errlen)
{
    char *text = NULL, chunk[8192];
    size_t len = 0, n;
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    FILE *s = f ? open_memstream(&text, &len) : NULL;
    /* A byte past the limit is enough to refuse the file, without reading all of it. */
    size_t total = 0;
    while (s && total <= CONFIG_MAX_BYTES && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        fwrite(chunk, 1, n, s);
        total += n;
    }
    int error = !s || ferror(f) ? errno : 0;
    if (f)
        fclose(f);
    if (s && !close_memstream(s, &text) && !error)
        error = ENOMEM;
    int rc = -1;
    if (error)
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(error));
    else
        rc = relay_config_parse(path, text, len, out, err, errlen);
    free(text);
    return rc;
}

void relay_config_free(relay_config *c)
{
    free(c->path); /* not a key: where the keys were read from */
    free_members(c, root_fields);
    for (size_t i = 0; i < c->n_sink_options; i++) {
        free(c->sink_options[i].key);
        free(c->sink_options[i].value);
    }
    free(c->sink_options);
    memset(c, 0, sizeof *c);
}

int relay_duration_parse(const char *text, int64_t *ms, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", MS_PER_SECOND}, {"m", MS_PER_MINUTE}, {"h", MS_PER_HOUR}};
    const char *why = "unit must be ms, s, m or h";
    char *unit = NULL;
    errno = 0;
    /* strtoll alone would also take signs and blanks */
    long long value = text[0] >= '0' && text[0] <= '9' ? strtoll(text, &unit, 10) : -1;
    if (value < 0)
        why = "must be a whole number and a unit, e.g. 500ms or 2s";
    else if (*unit == '\0')
        why = "needs a unit, e.g. 500ms or 2s";
    else if (*unit == '.')
        why = "must be a whole number, e.g. 1500ms rather than 1.5s";
    for (size_t i = 0; value >= 0 && i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].name) != 0)
            continue;
        if (errno != ERANGE && value <= INT64_MAX / units[i].ms) {
            *ms = (int64_t)value * units[i].ms;
            return 0;
        }
        why = "too large";
    }
    snprintf(err, errlen, "%s", why);
    return -1;
}

/* A mapping may change only as far as every key below it may. */
static bool all_reloadable(const field *table)
{
    for (const field *f = table; f->key; f++)
        if (f->sub ? !all_reloadable(f->sub) : !(f->flags & F_RELOAD))
            return false;
    return true;
}

bool relay_retention_enabled(const relay_config *config)
{
    return config->retention_delete_after_ms != RELAY_RETENTION_OFF;
}

bool relay_config_key_reloadable(const char *dotted_key)
{
    const field *table = root_fields, *f;
    const char *p = dotted_key;
    while (p && table && (f = find_field(table, p, strcspn(p, ".")))) {
        p += strlen(f->key);
        if (*p == '\0')
            return f->sub ? all_reloadable(f->sub) : (f->flags & F_RELOAD) != 0;
        if (f->flags & F_FREE_FORM)
            return p[1] != '\0' && (f->flags & F_RELOAD) != 0;
        table = f->sub;
        p++;
    }
    return false;
}

const char *relay_config_key_default_text(const char *dotted_key)
{
    const field *table = root_fields, *f;
    const char *p = dotted_key;
    while (p && table && (f = find_field(table, p, strcspn(p, ".")))) {
        p += strlen(f->key);
        if (*p == '\0')
            return f->store == STORE_STRING ? f->default_text : NULL;
        table = f->sub;
        p++;
    }
    return NULL;
}

/* ---- reloads ---- */

static bool same_text(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool relay_config_same_sink_options(const relay_config *a, const relay_config *b)
{
    if (a->n_sink_options != b->n_sink_options)
        return false;
    for (size_t i = 0; i < a->n_sink_options; i++)
        if (!same_text(a->sink_options[i].key, b->sink_options[i].key) ||
            !same_text(a->sink_options[i].value, b->sink_options[i].value))
            return false;
    return true;
}

/* The enums' names, as the file spells them: from the tables their parsers read. */
static const char *enum_text(const field *f, int value)
{
    if (f->parse == parse_log_level)
        return relay_log_level_name((relay_log_level)value);
    if (f->parse == parse_log_format)
        return relay_log_format_name((relay_log_format)value);
    const char *const *names = f->parse == parse_mode ? mode_names : on_reject_names;
    size_t n = f->parse == parse_mode ? sizeof mode_names / sizeof mode_names[0]
                                      : sizeof on_reject_names / sizeof on_reject_names[0];
    return value >= 0 && (size_t)value < n ? names[value] : "?";
}

/* A value as the file would have it, "~" for none. Cannot fail (a long one is cut). */
static void value_text(const relay_config *c, const field *f, char *buf, size_t len)
{
    const void *at = (const char *)c + f->offset;
    switch (f->store) {
    case STORE_STRING: {
        const char *text = *(char *const *)at;
        snprintf(buf, len, "%s", text ? text : "~");
        break;
    }
    case STORE_LIST: {
        char *const *items = *(char *const *const *)at;
        size_t count = *(const size_t *)((const char *)c + f->count_offset), used = 0;
        used += (size_t)snprintf(buf, len, "[");
        for (size_t i = 0; i < count && used < len; i++)
            used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", items[i]);
        if (used < len)
            snprintf(buf + used, len - used, "]");
        break;
    }
    case STORE_INT:
        snprintf(buf, len, "%d", *(const int *)at);
        break;
    case STORE_INT64:
        if (*(const int64_t *)at < 0)
            snprintf(buf, len, "~");
        else
            relay_duration_format(*(const int64_t *)at, buf, len);
        break;
    case STORE_BOOL:
        snprintf(buf, len, "%s", *(const bool *)at ? "true" : "false");
        break;
    case STORE_ENUM:
        snprintf(buf, len, "%s", enum_text(f, *(const int *)at));
        break;
    case STORE_NONE:
        snprintf(buf, len, "?");
        break;
    }
}

static const char *option_value(const relay_config *c, const char *key)
{
    for (size_t i = 0; i < c->n_sink_options; i++)
        if (strcmp(c->sink_options[i].key, key) == 0)
            return c->sink_options[i].value;
    return NULL;
}

/* One change per option added, removed or changed, named "sink.options.KEY"; then, if only their
 * order differs, one for "sink.options". */
static void diff_options(const relay_config *a, const relay_config *b, relay_config_change *change,
                         relay_config_change_fn *fn, void *arg)
{
    const char *prefix = change->key;
    char key[512];
    bool told = false;
    change->key = key;
    for (int side = 0; side < 2; side++) {
        const relay_config *from = side ? b : a, *to = side ? a : b;
        for (size_t i = 0; i < from->n_sink_options; i++) {
            const char *value = option_value(to, from->sink_options[i].key);
            if (side == 0 ? same_text(value, from->sink_options[i].value) : value != NULL)
                continue;
            snprintf(key, sizeof key, "%s.%s", prefix, from->sink_options[i].key);
            fn(change, arg);
            told = true;
        }
    }
    change->key = prefix;
    if (!told && !relay_config_same_sink_options(a, b))
        fn(change, arg);
}

static void diff_table(const relay_config *a, const relay_config *b, const field *table,
                       const char *prefix, relay_config_change_fn *fn, void *arg)
{
    for (const field *f = table; f->key; f++) {
        char key[128], old_text[256], new_text[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", f->key);
        if (f->sub) {
            diff_table(a, b, f->sub, key, fn, arg);
            continue;
        }
        relay_config_change change = {.key = key,
                                      .reloadable = (f->flags & F_RELOAD) != 0,
                                      .secret = (f->flags & F_SECRET) != 0};
        if (f->flags & F_FREE_FORM) {
            diff_options(a, b, &change, fn, arg);
            continue;
        }
        value_text(a, f, old_text, sizeof old_text);
        value_text(b, f, new_text, sizeof new_text);
        if (strcmp(old_text, new_text) == 0)
            continue;
        if (!change.secret) {
            change.old_value = old_text;
            change.new_value = new_text;
        }
        fn(&change, arg);
    }
}

void relay_config_diff(const relay_config *a, const relay_config *b, relay_config_change_fn *fn,
                       void *arg)
{
    diff_table(a, b, root_fields, "", fn, arg);
}

static void swap_bytes(void *a, void *b, size_t size)
{
    unsigned char tmp[sizeof(char **)];
    _Static_assert(sizeof(char **) >= sizeof(int64_t), "the largest stored member fits");
    memcpy(tmp, a, size);
    memcpy(a, b, size);
    memcpy(b, tmp, size);
}

static size_t stored_size(storage store)
{
    switch (store) {
    case STORE_STRING:
    case STORE_LIST:
        return sizeof(char *);
    case STORE_INT:
    case STORE_ENUM:
        return sizeof(int);
    case STORE_INT64:
        return sizeof(int64_t);
    case STORE_BOOL:
        return sizeof(bool);
    case STORE_NONE:
        break;
    }
    return 0;
}

static void adopt_table(relay_config *running, relay_config *fresh, const field *table)
{
    for (const field *f = table; f->key; f++) {
        if (f->sub) {
            adopt_table(running, fresh, f->sub);
            continue;
        }
        if (!(f->flags & F_RELOAD))
            continue;
        if (f->flags & F_FREE_FORM) {
            relay_config_swap_sink_options(running, fresh);
            continue;
        }
        swap_bytes((char *)running + f->offset, (char *)fresh + f->offset, stored_size(f->store));
        if (f->store == STORE_LIST)
            swap_bytes((char *)running + f->count_offset, (char *)fresh + f->count_offset,
                       sizeof(size_t));
    }
}

void relay_config_adopt(relay_config *running, relay_config *fresh)
{
    adopt_table(running, fresh, root_fields);
}

void relay_config_swap_sink_options(relay_config *a, relay_config *b)
{
    relay_config_option *options = a->sink_options;
    size_t n = a->n_sink_options;
    a->sink_options = b->sink_options;
    a->n_sink_options = b->n_sink_options;
    b->sink_options = options;
    b->n_sink_options = n;
}

/* Points every owned member of c at nothing, so that a copy half made can be freed. */
static void forget_members(relay_config *c, const field *table)
{
    for (const field *f = table; f->key; f++) {
        if (f->sub)
            forget_members(c, f->sub);
        if (f->store == STORE_STRING || f->store == STORE_LIST)
            *(void **)((char *)c + f->offset) = NULL;
        if (f->store == STORE_LIST)
            *(size_t *)((char *)c + f->count_offset) = 0;
    }
}

static int copy_members(relay_config *out, const relay_config *src, const field *table)
{
    for (const field *f = table; f->key; f++) {
        if (f->sub && copy_members(out, src, f->sub) != 0)
            return -1;
        const char *from = (const char *)src + f->offset;
        char *to = (char *)out + f->offset;
        if (f->store == STORE_STRING && *(char *const *)from &&
            !(*(char **)to = strdup(*(char *const *)from)))
            return -1;
        if (f->store == STORE_LIST) {
            size_t count = *(const size_t *)((const char *)src + f->count_offset);
            char *const *items = *(char *const *const *)from;
            char **copy = count > 0 ? calloc(count, sizeof *copy) : NULL;
            if (count > 0 && !copy)
                return -1;
            *(char ***)to = copy;
            for (size_t i = 0; i < count; i++) {
                if (!(copy[i] = strdup(items[i])))
                    return -1;
                *(size_t *)((char *)out + f->count_offset) = i + 1;
            }
        }
    }
    return 0;
}

int relay_config_copy(relay_config *out, const relay_config *src, char *err, size_t errlen)
{
    *out = *src;
    out->path = NULL;
    out->sink_options = NULL;
    out->n_sink_options = 0;
    forget_members(out, root_fields);
    int rc =
        (src->path && !(out->path = strdup(src->path))) ? -1 : copy_members(out, src, root_fields);
    if (rc == 0 && src->n_sink_options > 0 &&
        !(out->sink_options = calloc(src->n_sink_options, sizeof *out->sink_options)))
        rc = -1;
    for (size_t i = 0; rc == 0 && i < src->n_sink_options; i++) {
        relay_config_option *o = &out->sink_options[i];
        out->n_sink_options = i + 1;
        if (!(o->key = strdup(src->sink_options[i].key)) ||
            !(o->value = strdup(src->sink_options[i].value)))
            rc = -1;
    }
    if (rc != 0) {
        relay_config_free(out);
        snprintf(err, errlen, "out of memory copying the configuration");
    }
    return rc;
}
