/*
 * Timestamps as the sinks see them: RFC 3339 in UTC with microseconds. The relay reads them in
 * PostgreSQL's binary form and renders them itself, which costs the server nothing; its text
 * output (or to_char()) costs about a tenth of a full-table read.
 */
#ifndef RELAY_TIMESTAMP_H
#define RELAY_TIMESTAMP_H

#include <stdint.h>

/* "2026-11-26T04:12:53.123456Z" and its NUL; room for the rare longer forms below. */
#define RELAY_RFC3339_SIZE 40

/*
 * Renders a timestamptz in PostgreSQL's binary form (microseconds since 2000-01-01 00:00:00 UTC)
 * as "2026-11-26T04:12:53.123456Z". Years outside 0000..9999, which RFC 3339 cannot carry, come
 * out in ISO 8601's expanded form ("+10000-01-01T...", "-0044-03-15T..." for 45 BC); PostgreSQL's
 * infinities as "infinity" and "-infinity". Cannot fail.
 */
void relay_timestamp_rfc3339(int64_t pg_usec, char out[RELAY_RFC3339_SIZE]);

#endif
