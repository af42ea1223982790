#include "db.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "conninfo.h"
#include "signals.h"

/*
 * Reads the password: the first line of path, without its line end. A file that is not a regular
 * file (a directory reads as empty) or whose first line is empty is an error: libpq would try an
 * empty password, and the operator would read "authentication failed" about a file they never
 * suspect. Returns 0, or -1 with err.
 */
int relay_db_read_password(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "database.password_file %s: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    int ok = S_ISREG(st.st_mode) && fgets(out, (int)outlen, f) != NULL;
    fclose(f);
    if (ok)
        out[strcspn(out, "\r\n")] = '\0';
    if (!ok || out[0] == '\0') {
        explicit_bzero(out, outlen);
        snprintf(err, errlen, "database.password_file %s: %s", path,
                 !S_ISREG(st.st_mode) ? "not a regular file" : "its first line is empty");
        return -1;
    }
    return 0;
}

/* connect_timeout as libpq reads it (at least 2 s), in ms; 0 when none is set. */
static int64_t connect_timeout_ms(PGconn *conn)
{
    int64_t seconds = 0;
    PQconninfoOption *options = PQconninfo(conn);
    for (PQconninfoOption *o = options; o && o->keyword; o++)
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && o->val[0])
            seconds = strtol(o->val, NULL, 10);
    PQconninfoFree(options);
    return seconds <= 0 ? 0 : (seconds < 2 ? 2 : seconds) * 1000;
}

/*
 * PQconnectdbParams, but a stop ends the wait: libpq's blocking connect retries its poll() on
 * EINTR, so a server that accepts and never answers held a stop for connect_timeout. In
 * non-blocking mode libpq leaves connect_timeout to the caller (PQconnectPoll): it is applied
 * here to each host's attempt (a new socket starts one), as libpq itself does. Returns the
 * connection in whatever state it ended (the caller reads PQstatus), or NULL when out of memory;
 * *why names a stop or a timeout, NULL otherwise.
 */
static PGconn *connect_stoppable(const char *const *keys, const char *const *values,
                                 const char **why)
{
    *why = NULL;
    PGconn *conn = PQconnectStartParams(keys, values, 1);
    if (!conn || PQstatus(conn) == CONNECTION_BAD)
        return conn;
    int64_t timeout = connect_timeout_ms(conn), deadline = 0;
    int socket = -1;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        if (PQsocket(conn) != socket) {
            socket = PQsocket(conn);
            deadline = timeout > 0 ? relay_now_ms() + timeout : INT64_MAX;
        }
        if (relay_stop_requested()) {
            *why = "stopping";
            break;
        }
        if (relay_now_ms() >= deadline) {
            *why = "timeout expired";
            break;
        }
        struct pollfd pfd = {.fd = socket,
                             .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        /* In slices, to look at the stop flag and the clock: a signal does not end poll()
         * reliably here (it may come just before it). */
        if (poll(&pfd, 1, 100) > 0)
            st = PQconnectPoll(conn);
    }
    return conn;
}

/* libpq's notices (a WARNING from a trigger, say) go through the log, not raw to stderr. */
static void log_notice(void *arg, const char *message)
{
    relay_warn((const relay_logger *)arg, "database: %s", message);
}

PGconn *relay_db_connect(const relay_config *config, const relay_logger *log, char *err,
                         size_t errlen)
{
    char password[1024] = "";
    if (config->password_file &&
        relay_db_read_password(config->password_file, password, sizeof password, err, errlen) != 0)
        return NULL;

    char application_name[128];
    snprintf(application_name, sizeof application_name, "outbox-relay %s",
             config->name ? config->name : "");

    /* libpq applies keywords in order and the last one wins: defaults first, then the user's
     * conninfo (expanded from "dbname"), then what must not be overridden. The client encoding
     * is pinned: the relay hands UTF-8 to its sinks whatever the database's encoding or
     * PGCLIENTENCODING say (a LATIN1 'é' would otherwise reach them as invalid UTF-8). */
    const char *keys[9];
    const char *values[9];
    int n = 0;
    keys[n] = "connect_timeout", values[n++] = "10";
    keys[n] = "keepalives_idle", values[n++] = "30";
    keys[n] = "keepalives_interval", values[n++] = "10";
    keys[n] = "keepalives_count", values[n++] = "3";
    keys[n] = "fallback_application_name", values[n++] = application_name;
    keys[n] = "dbname", values[n++] = config->conninfo;
    keys[n] = "client_encoding", values[n++] = "UTF8";
    if (config->password_file)
        keys[n] = "password", values[n++] = password;
    keys[n] = NULL, values[n] = NULL;

    const char *why = NULL;
    PGconn *conn = connect_stoppable(keys, values, &why);
    if (!conn) {
        explicit_bzero(password, sizeof password);
        snprintf(err, errlen, "cannot connect: out of memory");
        return NULL;
    }
    if (why || PQstatus(conn) != CONNECTION_OK) {
        if (why)
            snprintf(err, errlen, "cannot connect to %s: %s", PQhost(conn) ? PQhost(conn) : "?",
                     why);
        else
            relay_db_error(conn, NULL, "cannot connect", err, errlen);
        relay_conninfo_redact(config->conninfo, password, err, errlen);
        explicit_bzero(password, sizeof password);
        PQfinish(conn);
        return NULL;
    }
    explicit_bzero(password, sizeof password);
    PQsetNoticeProcessor(conn, log_notice, (void *)log);
    /* A timestamp without time zone column is read and compared with now() as UTC, and status
     * renders times in UTC, whatever the server's or the role's defaults are. Below WARNING,
     * notices ("relation already exists, skipping") say nothing an operator needs. */
    if (relay_db_exec(conn, "configuring the session",
                      "SET TIME ZONE 'UTC'; SET DateStyle = ISO; SET client_min_messages = warning",
                      err, errlen) != 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

int relay_db_quote_ident(PGconn *conn, const char *ident, char *out, size_t outlen, char *err,
                         size_t errlen)
{
    char *quoted = PQescapeIdentifier(conn, ident, strlen(ident));
    if (!quoted) {
        relay_db_error(conn, NULL, "quoting an identifier", err, errlen);
        return -1;
    }
    int fits = snprintf(out, outlen, "%s", quoted) < (int)outlen;
    PQfreemem(quoted);
    if (!fits) {
        snprintf(err, errlen, "identifier too long: %.64s", ident);
        return -1;
    }
    return 0;
}

int relay_db_quote_table(PGconn *conn, const char *table, char *out, size_t outlen, char *err,
                         size_t errlen)
{
    const char *dot = strchr(table, '.');
    if (!dot)
        return relay_db_quote_ident(conn, table, out, outlen, err, errlen);

    char schema[256];
    size_t schema_len = (size_t)(dot - table);
    if (schema_len == 0 || schema_len >= sizeof schema || dot[1] == '\0' || strchr(dot + 1, '.')) {
        snprintf(err, errlen, "table %s: expected TABLE or SCHEMA.TABLE", table);
        return -1;
    }
    memcpy(schema, table, schema_len);
    schema[schema_len] = '\0';

    char quoted_schema[600], quoted_table[600];
    if (relay_db_quote_ident(conn, schema, quoted_schema, sizeof quoted_schema, err, errlen) != 0 ||
        relay_db_quote_ident(conn, dot + 1, quoted_table, sizeof quoted_table, err, errlen) != 0)
        return -1;
    if (snprintf(out, outlen, "%s.%s", quoted_schema, quoted_table) >= (int)outlen) {
        snprintf(err, errlen, "table %s: name too long", table);
        return -1;
    }
    return 0;
}

void relay_db_error(PGconn *conn, const PGresult *res, const char *what, char *err, size_t errlen)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg || !*msg)
        msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg)
        msg = conn ? PQerrorMessage(conn) : "no connection";
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* libpq ends its messages with a newline, and may spread them over several lines. */
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == '\n')
        len--;
    if (state && *state)
        snprintf(err, errlen, "%s: %.*s (SQLSTATE %s)", what, (int)len, msg, state);
    else
        snprintf(err, errlen, "%s: %.*s", what, (int)len, msg);
    for (char *p = err; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

bool relay_db_error_is(const char *err, const char *sqlstate)
{
    char mark[32];
    snprintf(mark, sizeof mark, "(SQLSTATE %s)", sqlstate);
    return strstr(err, mark) != NULL;
}

int64_t relay_db_binary_int64(const PGresult *res, int row, int column)
{
    uint64_t be;
    memcpy(&be, PQgetvalue(res, row, column), sizeof be);
    return (int64_t)be64toh(be);
}

uint32_t relay_db_binary_uint32(const PGresult *res, int row, int column)
{
    uint32_t be;
    memcpy(&be, PQgetvalue(res, row, column), sizeof be);
    return be32toh(be);
}

int relay_db_exec(PGconn *conn, const char *what, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        relay_db_error(conn, res, what, err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_db_is_missing_object(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && (strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0);
}

void relay_db_rollback(PGconn *conn)
{
    PQclear(PQexec(conn, "ROLLBACK"));
}

int relay_db_id_array(const int64_t *ids, size_t n, char **out, char *err, size_t errlen)
{
    /* At most 20 characters and a comma each, the braces and the NUL. */
    char *array = malloc(n * 21 + 3);
    if (!array) {
        snprintf(err, errlen, "out of memory listing %zu ids", n);
        return -1;
    }
    size_t used = 0;
    array[used++] = '{';
    for (size_t i = 0; i < n; i++)
        used += (size_t)sprintf(array + used, "%s%" PRId64, i > 0 ? "," : "", ids[i]);
    array[used++] = '}';
    array[used] = '\0';
    *out = array;
    return 0;
}

void relay_db_discard_results(PGconn *conn)
{
    for (PGresult *extra; (extra = PQgetResult(conn)) != NULL;)
        PQclear(extra);
}

int relay_db_pipeline_begin(PGconn *conn, char *err, size_t errlen)
{
    if (PQenterPipelineMode(conn))
        return 0;
    relay_db_error(conn, NULL, "entering pipeline mode", err, errlen);
    return -1;
}

int relay_db_pipeline_send(PGconn *conn, char *err, size_t errlen)
{
    if (PQpipelineSync(conn))
        return 0;
    relay_db_error(conn, NULL, "sending a pipeline", err, errlen);
    return -1;
}

int relay_db_pipeline_end(PGconn *conn, char *err, size_t errlen)
{
    PGresult *res = PQgetResult(conn);
    int ok = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
    if (!ok)
        relay_db_error(conn, res, "ending a pipeline", err, errlen);
    PQclear(res);
    if (ok && !PQexitPipelineMode(conn)) {
        relay_db_error(conn, NULL, "leaving pipeline mode", err, errlen);
        ok = 0;
    }
    return ok ? 0 : -1;
}
