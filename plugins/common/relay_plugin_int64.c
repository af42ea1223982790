#include "relay_plugin_int64.h"

size_t relay_plugin_format_int64(char *out, int64_t value)
{
    char digits[20];
    size_t n = 0;
    /* Through uint64_t, so that INT64_MIN negates without overflow. */
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do {
        digits[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude > 0);
    size_t len = 0;
    if (value < 0)
        out[len++] = '-';
    while (n > 0)
        out[len++] = digits[--n];
    out[len] = '\0';
    return len;
}
