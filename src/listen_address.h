/* http.listen: "HOST:PORT", "[IPV6]:PORT" or ":PORT" (every interface). */
#ifndef RELAY_LISTEN_ADDRESS_H
#define RELAY_LISTEN_ADDRESS_H

#include <stddef.h>

typedef struct relay_listen_address {
    char host[256]; /* "" for every interface; an IPv6 address without its brackets */
    char port[6];
} relay_listen_address;

/* Splits text into host and port (1..65535). Returns 0, or -1 with the reason in err. Resolving
 * the host is the server's, at start. */
int relay_listen_parse(const char *text, relay_listen_address *out, char *err, size_t errlen);

#endif
