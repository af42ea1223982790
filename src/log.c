#include "log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"text", "json"};
/* syslog's priorities, as sd-daemon.h's SD_DEBUG, SD_INFO, SD_WARNING and SD_ERR prefix them. */
static const char *const journal_prefixes[] = {"<7>", "<6>", "<4>", "<3>"};

bool relay_log_stream_is_journal(FILE *out)
{
    const char *stream = getenv("JOURNAL_STREAM");
    struct stat st;
    if (!stream || !out || fstat(fileno(out), &st) != 0)
        return false;
    char *end = NULL;
    uintmax_t dev = strtoumax(stream, &end, 10);
    if (end == stream || *end != ':')
        return false;
    const char *ino_text = end + 1;
    uintmax_t ino = strtoumax(ino_text, &end, 10);
    if (end == ino_text || *end != '\0')
        return false;
    return dev == (uintmax_t)st.st_dev && ino == (uintmax_t)st.st_ino;
}

relay_logger relay_logger_for(FILE *out)
{
    return (relay_logger){.level = RELAY_LOG_INFO,
                          .format = RELAY_LOG_TEXT,
                          .out = out,
                          .journal = relay_log_stream_is_journal(out)};
}

relay_logger relay_logger_default(void)
{
    return relay_logger_for(stderr);
}

int relay_log_level_parse(const char *name, relay_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (relay_log_level)i;
            return 0;
        }
    }
    return -1;
}

int relay_log_format_parse(const char *name, relay_log_format *out)
{
    for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (relay_log_format)i;
            return 0;
        }
    }
    return -1;
}

const char *relay_log_level_name(relay_log_level level)
{
    return (size_t)level < sizeof level_names / sizeof level_names[0] ? level_names[level] : "?";
}

const char *relay_log_format_name(relay_log_format format)
{
    return (size_t)format < sizeof format_names / sizeof format_names[0] ? format_names[format]
                                                                         : "?";
}

/* Escapes msg as the contents of a JSON string into out, truncating rather than failing. */
static void json_escape(const char *msg, char *out, size_t outlen)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p && o + 7 < outlen; p++) {
        switch (*p) {
        case '"':
            o += (size_t)snprintf(out + o, outlen - o, "\\\"");
            break;
        case '\\':
            o += (size_t)snprintf(out + o, outlen - o, "\\\\");
            break;
        case '\n':
            o += (size_t)snprintf(out + o, outlen - o, "\\n");
            break;
        case '\t':
            o += (size_t)snprintf(out + o, outlen - o, "\\t");
            break;
        default:
            if (*p < 0x20)
                o += (size_t)snprintf(out + o, outlen - o, "\\u%04x", *p);
            else
                out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
}

/* Writes msg with its control characters escaped (\n, \r, \t, \xNN): a message may quote event
 * data or a server's text, and a newline in it would start a forged record ("info stopped at
 * position 999999"). Truncates rather than fails. */
static void text_escape(const char *msg, char *out, size_t outlen)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p && o + 5 < outlen; p++) {
        if (*p >= 0x20 && *p != 0x7f)
            out[o++] = (char)*p;
        else if (*p == '\n')
            o += (size_t)snprintf(out + o, outlen - o, "\\n");
        else if (*p == '\r')
            o += (size_t)snprintf(out + o, outlen - o, "\\r");
        else if (*p == '\t')
            o += (size_t)snprintf(out + o, outlen - o, "\\t");
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", *p);
    }
    out[o] = '\0';
}

void relay_logv(const relay_logger *log, relay_log_level level, const char *fmt, va_list ap)
{
    if (level < log->level)
        return;

    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* libpq's messages end in a newline; one log record is one line. */
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        msg[--len] = '\0';

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char stamp[40];
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", now.tv_nsec / 1000000);

    /* JSON gets the prefix too: journald strips it before it stores the line, so MESSAGE is
     * still the whole object, and the level it keeps is the one a journal reader filters by. */
    const char *prefix = log->journal ? journal_prefixes[level] : "";
    /* One fprintf per record: stdio locks the stream, so records never interleave. */
    if (log->format == RELAY_LOG_JSON) {
        char escaped[sizeof msg * 2];
        json_escape(msg, escaped, sizeof escaped);
        fprintf(log->out, "%s{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", prefix, stamp,
                level_names[level], escaped);
    } else {
        char escaped[sizeof msg * 4];
        text_escape(msg, escaped, sizeof escaped);
        fprintf(log->out, "%s%s %-5s %s\n", prefix, stamp, level_names[level], escaped);
    }
    fflush(log->out);
}

void relay_log(const relay_logger *log, relay_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    relay_logv(log, level, fmt, ap);
    va_end(ap);
}
