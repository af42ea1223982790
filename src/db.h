/* Connecting to PostgreSQL and the small helpers every command needs. */
#ifndef RELAY_DB_H
#define RELAY_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "log.h"

/*
 * Connects with the configured conninfo, the password from password_file (if set) and defaults
 * the conninfo may override (connect_timeout, keepalives, application_name). The session runs in
 * UTC with client_encoding UTF8; the server's notices go to log, which must outlive the
 * connection. Returns the connection (the caller PQfinish()es it) or NULL with the reason in err,
 * libpq's message redacted (relay_conninfo_redact): no password reaches err.
 */
PGconn *relay_db_connect(const relay_config *config, const relay_logger *log, char *err,
                         size_t errlen);

/* Reads database.password_file into out: its first line, which must not be empty, of a regular
 * file. Returns 0, or -1 with err naming the file and the cause. */
int relay_db_read_password(const char *path, char *out, size_t outlen, char *err, size_t errlen);

/* Quotes "schema.table" or "table" as "schema"."table" / "table" with PQescapeIdentifier. Returns
 * 0, or -1 with the reason in err. */
int relay_db_quote_table(PGconn *conn, const char *table, char *out, size_t outlen, char *err,
                         size_t errlen);

/* Quotes one identifier into out. Returns 0, or -1 with the reason in err. */
int relay_db_quote_ident(PGconn *conn, const char *ident, char *out, size_t outlen, char *err,
                         size_t errlen);

/* Writes ids as a bigint[] parameter's text, "{3,7}", into *out (the caller frees it). Returns 0,
 * or -1 with err (out of memory). */
int relay_db_id_array(const int64_t *ids, size_t n, char **out, char *err, size_t errlen);

/* Reads and drops the rest of a sent statement's results, up to the NULL that ends them (in a
 * pipeline too, where a sync point follows). Cannot fail: an error result is dropped as well. */
void relay_db_discard_results(PGconn *conn);

/*
 * A pipeline: statements sent together, executed by the server one after the other without
 * waiting for the client between them. relay_db_pipeline_begin enters pipeline mode (conn must be
 * idle); the caller then sends its statements; relay_db_pipeline_send ends them with a sync
 * point and sends it all. Once every statement's results are read, relay_db_pipeline_end reads
 * the sync point and leaves pipeline mode. Each returns 0, or -1 with err.
 */
int relay_db_pipeline_begin(PGconn *conn, char *err, size_t errlen);
int relay_db_pipeline_send(PGconn *conn, char *err, size_t errlen);
int relay_db_pipeline_end(PGconn *conn, char *err, size_t errlen);

/* A value of a binary result that is 8 bytes, most significant first (int8, timestamptz,
 * pg_lsn). Cannot fail: the caller checked the column's type. */
int64_t relay_db_binary_int64(const PGresult *res, int row, int column);
/* The same for 4 bytes (xid). */
uint32_t relay_db_binary_uint32(const PGresult *res, int row, int column);

/* Runs a statement that returns no rows. Returns 0, or -1 with "what: libpq's message" in err. */
int relay_db_exec(PGconn *conn, const char *what, const char *sql, char *err, size_t errlen);

/* Ends a failed transaction. Cannot fail in a way that matters: a broken connection aborts the
 * transaction anyway, and the caller has the first error already. */
void relay_db_rollback(PGconn *conn);

/* Writes "what: <primary message> (SQLSTATE XXXXX)" for a failed result (without the SQLSTATE for
 * the connection's own error) into err, on one line. */
void relay_db_error(PGconn *conn, const PGresult *res, const char *what, char *err, size_t errlen);

/* Whether err, as relay_db_error wrote it, carries sqlstate: the loop tells an outage from an
 * error that no retry can cure (42501, a missing privilege) by it. */
bool relay_db_error_is(const char *err, const char *sqlstate);

/* SQLSTATE insufficient_privilege. */
#define RELAY_SQLSTATE_NO_PRIVILEGE "42501"

/* True when the error on res is about the table or column being absent (SQLSTATE 42P01, 42703). */
int relay_db_is_missing_object(const PGresult *res);

#endif
