/*
 * One log record is one line, whatever the message quotes: event data or a server's text must not
 * start a record of its own.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
