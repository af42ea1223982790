#include "conninfo.h"

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define REDACTED "[redacted]"

bool relay_conninfo_is_uri(const char *conninfo)
{
    return strncmp(conninfo, "postgresql://", 13) == 0 || strncmp(conninfo, "postgres://", 11) == 0;
}

int relay_conninfo_put_value(FILE *s, const char *value, bool uri)
{
    static const char unreserved[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789-._~";
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        int ok;
        if (uri)
            ok = strchr(unreserved, *p) ? fputc(*p, s) : fprintf(s, "%%%02X", *p);
        else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v' ||
                 *p == '\'' || *p == '\\')
            ok = fputc('\\', s) != EOF ? fputc(*p, s) : EOF;
        else
            ok = fputc(*p, s);
        if (ok < 0)
            return -1;
    }
    return 0;
}

/* Replaces every occurrence of secret in msg by REDACTED, within msglen bytes. */
static void redact_text(char *msg, size_t msglen, const char *secret)
{
    size_t secret_len = secret ? strlen(secret) : 0;
    if (secret_len == 0 || !strstr(msg, secret))
        return;
    char out[4096];
    size_t o = 0;
    for (const char *p = msg; *p && o + 1 < sizeof out;) {
        if (strncmp(p, secret, secret_len) == 0) {
            size_t n =
                strlen(REDACTED) < sizeof out - 1 - o ? strlen(REDACTED) : sizeof out - 1 - o;
            memcpy(out + o, REDACTED, n);
            o += n;
            p += secret_len;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    snprintf(msg, msglen, "%s", out);
}

/* Replaces the inside of every double-quoted fragment of msg by REDACTED. */
static void redact_quoted(char *msg, size_t msglen)
{
    char out[4096];
    size_t o = 0;
    bool inside = false;
    for (const char *p = msg; *p && o + sizeof REDACTED + 1 < sizeof out; p++) {
        if (*p == '"') {
            inside = !inside;
            if (inside) {
                memcpy(out + o, "\"" REDACTED, sizeof REDACTED);
                o += sizeof REDACTED;
            } else {
                out[o++] = '"';
            }
        } else if (!inside) {
            out[o++] = *p;
        }
    }
    if (inside)
        out[o++] = '"';
    out[o] = '\0';
    snprintf(msg, msglen, "%s", out);
}

void relay_conninfo_redact(const char *conninfo, const char *extra, char *msg, size_t msglen)
{
    if (msglen == 0)
        return;
    char *parse_error = NULL;
    PQconninfoOption *options = conninfo ? PQconninfoParse(conninfo, &parse_error) : NULL;
    if (options) {
        for (PQconninfoOption *o = options; o->keyword; o++)
            if (o->val &&
                (strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0))
                redact_text(msg, msglen, o->val);
        PQconninfoFree(options);
    } else if (conninfo) {
        redact_quoted(msg, msglen);
    }
    PQfreemem(parse_error);
    redact_text(msg, msglen, conninfo);
    redact_text(msg, msglen, extra);
}

bool relay_conninfo_has_password(const char *conninfo)
{
    PQconninfoOption *options = PQconninfoParse(conninfo, NULL);
    bool found = false;
    for (PQconninfoOption *o = options; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
            found = true;
    PQconninfoFree(options);
    return found;
}

int relay_conninfo_check(const char *conninfo, char *err, size_t errlen)
{
    char *parse_error = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &parse_error);
    if (options) {
        PQconninfoFree(options);
        return 0;
    }
    snprintf(err, errlen, "malformed: %s", parse_error ? parse_error : "out of memory");
    PQfreemem(parse_error);
    for (char *p = err; *p; p++)
        if (*p == '\n')
            *p = p[1] == '\0' ? '\0' : ' ';
    relay_conninfo_redact(conninfo, NULL, err, errlen);
    return -1;
}
