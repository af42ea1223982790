/*
 * A growable byte buffer for sinks that format or render into memory. It is reused from event to
 * event and never shrinks, so that once warm a sink's per-event work allocates nothing.
 */
#ifndef RELAY_PLUGIN_BUFFER_H
#define RELAY_PLUGIN_BUFFER_H

#include <stddef.h>

/* Zero-initialised it is an empty buffer. */
typedef struct relay_plugin_buffer {
    char *data;
    size_t len;
    size_t cap;
} relay_plugin_buffer;

/* Makes room for more bytes after the first len. Returns 0, or -1 when out of memory or when the
 * size would overflow (the buffer is then unchanged). */
int relay_plugin_buffer_reserve(relay_plugin_buffer *buf, size_t more);

void relay_plugin_buffer_free(relay_plugin_buffer *buf);

#endif
