#include "listen_address.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int relay_listen_parse(const char *text, relay_listen_address *out, char *err, size_t errlen)
{
    const char *colon = strrchr(text, ':');
    if (!colon) {
        snprintf(err, errlen, "expected HOST:PORT or :PORT, e.g. \"127.0.0.1:9187\"");
        return -1;
    }
    const char *host = text, *host_end = colon;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close + 1 != colon) {
            snprintf(err, errlen, "an IPv6 address goes in brackets: \"[::1]:9187\"");
            return -1;
        }
        host = text + 1;
        host_end = close;
    } else if (memchr(text, ':', (size_t)(colon - text))) {
        snprintf(err, errlen, "an IPv6 address goes in brackets: \"[::1]:9187\"");
        return -1;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len >= sizeof out->host) {
        snprintf(err, errlen, "the host is longer than %zu characters", sizeof out->host - 1);
        return -1;
    }
    const char *port = colon + 1;
    size_t port_len = strlen(port);
    long number =
        port_len > 0 && port_len < sizeof out->port && strspn(port, "0123456789") == port_len
            ? strtol(port, NULL, 10)
            : 0;
    if (number < 1 || number > 65535) {
        snprintf(err, errlen, "the port must be a number from 1 to 65535");
        return -1;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    snprintf(out->port, sizeof out->port, "%ld", number);
    return 0;
}
