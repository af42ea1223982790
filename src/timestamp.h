/*
 * PostgreSQL's ISO timestamp text to RFC 3339. Rendering it on the client is cheaper than to_char()
 * on the server, which costs a fifth of a full-table read.
 */
#ifndef RELAY_TIMESTAMP_H
#define RELAY_TIMESTAMP_H

/* "2026-11-26T04:12:53.123456Z" and its NUL. */
#define RELAY_RFC3339_SIZE 28

/*
 * Converts the text of a timestamp(tz) in a UTC session with DateStyle ISO
 * ("2026-11-26 04:12:53.1234+00", "2026-11-26 04:12:53") to "2026-11-26T04:12:53.123400Z".
 * Returns 0, or -1 when the text has another shape (infinity, BC, a year past 9999, an offset
 * other than +00): the caller keeps PostgreSQL's text then.
 */
int relay_timestamp_rfc3339(const char *pg, char out[RELAY_RFC3339_SIZE]);

#endif
