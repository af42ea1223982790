/*
 * Logging to stderr, as text lines or as one JSON object per line (for container log collectors).
 * A logger is a plain value owned by whoever runs the command; it is passed down, never global.
 */
#ifndef RELAY_LOG_H
#define RELAY_LOG_H

#include <stdarg.h>
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
    FILE *out; /* borrowed; stderr in the daemon */
} relay_logger;

/* A logger writing text at INFO to stderr. */
relay_logger relay_logger_default(void);

/* Parses "debug", "info", "warn", "error"; returns 0, or -1 when the name is unknown. */
int relay_log_level_parse(const char *name, relay_log_level *out);
/* Parses "text", "json"; returns 0, or -1 when the name is unknown. */
int relay_log_format_parse(const char *name, relay_log_format *out);

void relay_log(const relay_logger *log, relay_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void relay_logv(const relay_logger *log, relay_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define relay_debug(log, ...) relay_log((log), RELAY_LOG_DEBUG, __VA_ARGS__)
#define relay_info(log, ...) relay_log((log), RELAY_LOG_INFO, __VA_ARGS__)
#define relay_warn(log, ...) relay_log((log), RELAY_LOG_WARN, __VA_ARGS__)
#define relay_error(log, ...) relay_log((log), RELAY_LOG_ERROR, __VA_ARGS__)

#endif
