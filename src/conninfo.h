/*
 * The database.conninfo string: quoting what ${VAR} pastes into it, checking it, and keeping its
 * secrets out of every message. libpq quotes the conninfo it could not parse in its errors (the
 * whole URI, password included), so no libpq message about a conninfo reaches a log before it
 * went through relay_conninfo_redact.
 */
#ifndef RELAY_CONNINFO_H
#define RELAY_CONNINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* True for the URI form (postgresql:// or postgres://), false for the keyword form. */
bool relay_conninfo_is_uri(const char *conninfo);

/*
 * Writes value to s so that libpq reads it back as exactly these bytes wherever it lands in a
 * conninfo of that form: percent-encoded in a URI; in the keyword form, with a backslash before
 * every space, quote and backslash (libpq honours them in quoted and unquoted values alike).
 * An empty value writes nothing, which libpq reads as empty but where it is a keyword's whole
 * value with blanks after it: the caller writes '' there (config.c's expand_env does).
 * Returns 0, or -1 when a stream error occurred.
 */
int relay_conninfo_put_value(FILE *s, const char *value, bool uri);

/* Whether conninfo sets a non-empty password (false when libpq cannot parse it). */
bool relay_conninfo_has_password(const char *conninfo);

/* Checks that libpq can parse conninfo. Returns 0, or -1 with err: libpq's reason, redacted. */
int relay_conninfo_check(const char *conninfo, char *err, size_t errlen);

/*
 * Removes from msg, in place, what could reveal a secret of conninfo: every password or
 * sslpassword it sets, the conninfo itself, and `extra` (a password read from a file; NULL for
 * none), each replaced by "[redacted]". When conninfo cannot be parsed its secrets cannot be
 * told apart: then every quoted fragment of msg goes, since that is where libpq quotes it.
 * msg holds msglen bytes; what no longer fits is cut.
 */
void relay_conninfo_redact(const char *conninfo, const char *extra, char *msg, size_t msglen);

#endif
