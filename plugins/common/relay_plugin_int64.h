/*
 * 64-bit integers in decimal, for ids and versions in messages, headers and topic names: by
 * hand rather than with snprintf, which would parse a format string several times per event.
 */
#ifndef RELAY_PLUGIN_INT64_H
#define RELAY_PLUGIN_INT64_H

#include <stddef.h>
#include <stdint.h>

/* The room relay_plugin_format_int64 needs: "-9223372036854775808" and a NUL. */
#define RELAY_PLUGIN_INT64_SIZE 21

/* Writes value in decimal into out (room for RELAY_PLUGIN_INT64_SIZE bytes, NUL included);
 * returns the length, NUL excluded. */
size_t relay_plugin_format_int64(char *out, int64_t value);

#endif
