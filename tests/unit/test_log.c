/*
 * One log record is one line, whatever the message quotes: event data or a server's text must not
 * start a record of its own. To the journal, a record starts with its syslog priority.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

/* What one record with message msg looks like in format. */
static char *record(relay_log_format format, const char *msg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    relay_logger log = {.level = RELAY_LOG_DEBUG, .format = format, .out = out};
    relay_info(&log, "topic for %s refused", msg);
    fclose(out);
    return text;
}

Test(log, control_characters_cannot_forge_a_text_record)
{
    char *text = record(RELAY_LOG_TEXT,
                        "x\n2026-01-01T00:00:00.000Z info  stopped at position 9\r\t\x1b[31m");
    cr_assert_eq(strchr(text, '\n'), text + strlen(text) - 1, "more than one line: %s", text);
    cr_assert_not_null(strstr(text, "x\\n2026-01-01T00:00:00.000Z info  stopped at position "
                                    "9\\r\\t\\x1b[31m refused"),
                       "%s", text);
    free(text);
}

Test(log, control_characters_are_escaped_in_json)
{
    char *text = record(RELAY_LOG_JSON, "a\nb\"c");
    cr_assert_eq(strchr(text, '\n'), text + strlen(text) - 1, "more than one line: %s", text);
    cr_assert_not_null(strstr(text, "\"msg\":\"topic for a\\nb\\\"c refused\""), "%s", text);
    free(text);
}

/* A temporary file to log into, and JOURNAL_STREAM set to value (NULL: unset), or to the file's
 * own device:inode when value is "self". */
static FILE *journal_candidate(const char *value)
{
    FILE *out = tmpfile();
    cr_assert_not_null(out);
    struct stat st;
    cr_assert_eq(fstat(fileno(out), &st), 0);
    char self[64];
    snprintf(self, sizeof self, "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
    if (!value)
        unsetenv("JOURNAL_STREAM");
    else
        setenv("JOURNAL_STREAM", strcmp(value, "self") == 0 ? self : value, 1);
    return out;
}

/* The lines logged at each level, in order debug, info, warn, error, to a logger made for out. */
static char *logged_lines(FILE *out, relay_log_format format)
{
    relay_logger log = relay_logger_for(out);
    log.level = RELAY_LOG_DEBUG;
    log.format = format;
    /* The check is made when the logger is: a variable changed later does not change it. */
    unsetenv("JOURNAL_STREAM");
    relay_debug(&log, "d");
    relay_info(&log, "i");
    relay_warn(&log, "w");
    relay_error(&log, "e");
    long len = ftell(out);
    cr_assert_gt(len, 0);
    char *text = calloc(1, (size_t)len + 1);
    rewind(out);
    cr_assert_eq(fread(text, 1, (size_t)len, out), (size_t)len);
    fclose(out);
    return text;
}

/* Asserts that the 4 lines of text start with prefixes, then frees text. */
static void assert_prefixes(char *text, const char *const prefixes[4])
{
    const char *line = text;
    for (int i = 0; i < 4; i++) {
        cr_assert_not_null(line, "fewer than 4 lines: %s", text);
        size_t n = strlen(prefixes[i]);
        cr_assert_eq(strncmp(line, prefixes[i], n), 0, "line %d does not start with '%s': %s", i,
                     prefixes[i], text);
        /* what follows is the record as it would be without the journal */
        cr_assert(line[n] == '{' || (line[n] >= '0' && line[n] <= '9'), "%s", text);
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    free(text);
}

static const char *const syslog_prefixes[4] = {"<7>", "<6>", "<4>", "<3>"};
static const char *const no_prefixes[4] = {"", "", "", ""};

Test(log, records_to_the_journal_carry_their_priority)
{
    assert_prefixes(logged_lines(journal_candidate("self"), RELAY_LOG_TEXT), syslog_prefixes);
}

Test(log, json_records_to_the_journal_carry_their_priority)
{
    char *text = logged_lines(journal_candidate("self"), RELAY_LOG_JSON);
    cr_assert_not_null(strstr(text, "\n<3>{\"ts\":\""), "%s", text);
    assert_prefixes(text, syslog_prefixes);
}

Test(log, records_elsewhere_have_no_prefix)
{
    assert_prefixes(logged_lines(journal_candidate(NULL), RELAY_LOG_TEXT), no_prefixes);
}

Test(log, a_journal_stream_of_another_descriptor_gives_no_prefix)
{
    /* A child of the unit whose stderr was redirected still inherits the variable. */
    FILE *other = tmpfile();
    struct stat st;
    cr_assert_eq(fstat(fileno(other), &st), 0);
    char value[64];
    snprintf(value, sizeof value, "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
    assert_prefixes(logged_lines(journal_candidate(value), RELAY_LOG_TEXT), no_prefixes);
    fclose(other);
}

Test(log, a_malformed_journal_stream_gives_no_prefix)
{
    static const char *const values[] = {"", ":", "12", "12:", ":34", "12:34x", "x:y"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        assert_prefixes(logged_lines(journal_candidate(values[i]), RELAY_LOG_TEXT), no_prefixes);
}
