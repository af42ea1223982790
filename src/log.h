/*
 * Logging to stderr, as text lines or as one JSON object per line (for container log collectors).
 * A logger is a plain value owned by whoever runs the command; it is passed down, never global.
 * When the stream is journald's (systemd's JOURNAL_STREAM names it), each record starts with a
 * syslog priority, <3> to <7>: journald strips it and keeps the level, which it cannot read from
 * the text (nor from the JSON, which it does not parse).
 */
#ifndef RELAY_LOG_H
#define RELAY_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

typedef enum relay_log_level {
    RELAY_LOG_DEBUG = 0,
    RELAY_LOG_INFO = 1,
    RELAY_LOG_WARN = 2,
    RELAY_LOG_ERROR = 3,
} relay_log_level;

typedef enum relay_log_format {
    RELAY_LOG_TEXT = 0,
    RELAY_LOG_JSON = 1,
} relay_log_format;

typedef struct relay_logger {
    relay_log_level level;
    relay_log_format format;
    FILE *out;    /* borrowed; stderr in the daemon */
    bool journal; /* out is the journal's stream: records carry a <N> priority prefix */
} relay_logger;

/* A logger writing text at INFO to out, with priority prefixes when out is the journal's. */
relay_logger relay_logger_for(FILE *out);
/* relay_logger_for(stderr). */
relay_logger relay_logger_default(void);

/* Whether out is the stream systemd connected to the journal: JOURNAL_STREAM holds its
 * "device:inode", which only that descriptor matches (a child whose stderr was redirected
 * inherits the variable, not the stream). Cannot fail: false when in doubt. */
bool relay_log_stream_is_journal(FILE *out);

/* Parses "debug", "info", "warn", "error"; returns 0, or -1 when the name is unknown. */
int relay_log_level_parse(const char *name, relay_log_level *out);
/* Parses "text", "json"; returns 0, or -1 when the name is unknown. */
int relay_log_format_parse(const char *name, relay_log_format *out);
/* The names those parse, "?" for a value out of range. Cannot fail. */
const char *relay_log_level_name(relay_log_level level);
const char *relay_log_format_name(relay_log_format format);

void relay_log(const relay_logger *log, relay_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void relay_logv(const relay_logger *log, relay_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define relay_debug(log, ...) relay_log((log), RELAY_LOG_DEBUG, __VA_ARGS__)
#define relay_info(log, ...) relay_log((log), RELAY_LOG_INFO, __VA_ARGS__)
#define relay_warn(log, ...) relay_log((log), RELAY_LOG_WARN, __VA_ARGS__)
#define relay_error(log, ...) relay_log((log), RELAY_LOG_ERROR, __VA_ARGS__)

#endif
