#include "timestamp.h"

#include <string.h>

static int digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int relay_timestamp_rfc3339(const char *pg, char out[RELAY_RFC3339_SIZE])
{
    /* YYYY-MM-DD HH:MM:SS is fixed; the fraction has 0 to 6 digits, then maybe +00 or +00:00. */
    if (!digits(pg, 4) || pg[4] != '-' || !digits(pg + 5, 2) || pg[7] != '-' ||
        !digits(pg + 8, 2) || pg[10] != ' ' || !digits(pg + 11, 2) || pg[13] != ':' ||
        !digits(pg + 14, 2) || pg[16] != ':' || !digits(pg + 17, 2))
        return -1;

    const char *p = pg + 19;
    size_t fraction = 0;
    if (*p == '.') {
        p++;
        while (fraction < 6 && p[fraction] >= '0' && p[fraction] <= '9')
            fraction++;
        if (fraction == 0)
            return -1;
    }
    const char *zone = p + fraction;
    if (!(*zone == '\0' || strcmp(zone, "+00") == 0 || strcmp(zone, "+00:00") == 0))
        return -1;

    memcpy(out, pg, 19);
    out[10] = 'T';
    out[19] = '.';
    memcpy(out + 20, p, fraction);
    memset(out + 20 + fraction, '0', 6 - fraction);
    out[26] = 'Z';
    out[27] = '\0';
    return 0;
}
