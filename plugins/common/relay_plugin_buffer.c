#include "relay_plugin_buffer.h"

#include <stdint.h>
#include <stdlib.h>

int relay_plugin_buffer_reserve(relay_plugin_buffer *buf, size_t more)
{
    if (more <= buf->cap - buf->len)
        return 0;
    /* Doubling must not wrap around: past this, no allocation could succeed anyway. */
    if (more > SIZE_MAX / 2 - buf->len)
        return -1;
    size_t cap = buf->cap > 0 ? buf->cap : 256;
    while (cap - buf->len < more)
        cap *= 2;
    char *data = realloc(buf->data, cap);
    if (data == NULL)
        return -1;
    buf->data = data;
    buf->cap = cap;
    return 0;
}

void relay_plugin_buffer_free(relay_plugin_buffer *buf)
{
    free(buf->data);
    *buf = (relay_plugin_buffer){0};
}
