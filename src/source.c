#include "source.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

#define FETCH_STATEMENT "relay_fetch"
#define FETCH_GAPS_STATEMENT "relay_fetch_gaps"
#define SETTLE_STATEMENT "relay_settle_in"

enum { COL_ID, COL_CREATED_AT, COL_KEY, COL_TYPE, COL_VERSION, COL_PAYLOAD, COL_METADATA, N_COLS };

static const char *const column_roles[N_COLS] = {"id",      "created_at", "key",     "type",
                                                 "version", "payload",    "metadata"};

static const char *mapped_column(const relay_config *config, int role)
{
    const relay_config_columns *c = &config->columns;
    const char *names[N_COLS] = {c->id,      c->created_at, c->key,     c->type,
                                 c->version, c->payload,    c->metadata};
    return names[role];
}

static int type_is(const char *type, const char *const *accepted)
{
    for (; *accepted; accepted++)
        if (strcmp(type, *accepted) == 0)
            return 1;
    return 0;
}

/* The catalog types (pg_type.typname) each role accepts; NULL: any type, read as text. */
static const char *const *accepted_types(int role)
{
    static const char *const integers[] = {"int2", "int4", "int8", NULL};
    static const char *const timestamps[] = {"timestamptz", "timestamp", NULL};
    static const char *const json[] = {"jsonb", "json", NULL};
    switch (role) {
    case COL_ID:
    case COL_VERSION:
        return integers;
    case COL_CREATED_AT:
        return timestamps;
    case COL_PAYLOAD:
    case COL_METADATA:
        return json;
    default:
        return NULL;
    }
}

int relay_source_inspect(PGconn *conn, const relay_config *config, relay_source_info *info,
                         int *missing, char *err, size_t errlen)
{
    memset(info, 0, sizeof *info);
    *missing = 0;
    if (relay_db_quote_table(conn, config->table, info->quoted_table, sizeof info->quoted_table,
                             err, errlen) != 0)
        return -1;

    const char *params[1] = {info->quoted_table};
    PGresult *res =
        PQexecParams(conn,
                     "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod),"
                     "       has_table_privilege(c.oid, 'SELECT')"
                     "  FROM pg_class c"
                     "  LEFT JOIN pg_attribute a"
                     "    ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
                     "  LEFT JOIN pg_type t ON t.oid = a.atttypid"
                     " WHERE c.oid = to_regclass($1)",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "inspecting the source table", err, errlen);
        PQclear(res);
        return -1;
    }
    if (PQntuples(res) == 0) {
        snprintf(err, errlen, "table %s does not exist (or is not visible to this user)",
                 config->table);
        *missing = 1;
        PQclear(res);
        return -1;
    }
    if (strcmp(PQgetvalue(res, 0, 3), "t") != 0) {
        snprintf(err, errlen, "table %s: permission denied: the relay's user needs SELECT",
                 config->table);
        PQclear(res);
        return -1;
    }

    for (int role = 0; role < N_COLS; role++) {
        const char *column = mapped_column(config, role);
        if (!column)
            continue;
        int row = -1;
        for (int i = 0; i < PQntuples(res) && row < 0; i++)
            if (strcmp(PQgetvalue(res, i, 0), column) == 0)
                row = i;
        if (row < 0) {
            snprintf(err, errlen, "table %s has no column \"%s\" (source.columns.%s)",
                     config->table, column, column_roles[role]);
            *missing = 1;
            PQclear(res);
            return -1;
        }
        const char *const *accepted = accepted_types(role);
        if (accepted && !type_is(PQgetvalue(res, row, 1), accepted)) {
            snprintf(err, errlen, "table %s: column \"%s\" (source.columns.%s) is %s, expected %s",
                     config->table, column, column_roles[role], PQgetvalue(res, row, 2),
                     role == COL_CREATED_AT                        ? "a timestamp"
                     : role == COL_PAYLOAD || role == COL_METADATA ? "json or jsonb"
                                                                   : "an integer");
            PQclear(res);
            return -1;
        }
        snprintf(info->column_types[role], sizeof info->column_types[role], "%s",
                 PQgetvalue(res, row, 2));
    }
    PQclear(res);
    return 0;
}

/* Appends ", <expr>" for a role, quoting the column, or a NULL of the cast's type when it is
 * unmapped. */
static int append_column(PGconn *conn, const relay_config *config, int role, const char *cast,
                         char *sql, size_t sqllen, char *err, size_t errlen)
{
    const char *column = mapped_column(config, role);
    size_t used = strlen(sql);
    char quoted[600];
    if (column && relay_db_quote_ident(conn, column, quoted, sizeof quoted, err, errlen) != 0)
        return -1;
    int n = column ? snprintf(sql + used, sqllen - used, ", t.%s%s", quoted, cast)
                   : snprintf(sql + used, sqllen - used, ", NULL%s", cast);
    if (n >= (int)(sqllen - used)) {
        snprintf(err, errlen, "the fetch statement is too long");
        return -1;
    }
    return 0;
}

/* Formats a statement and prepares it under name. Returns 0, or -1 with err. */
static int __attribute__((format(printf, 6, 7)))
prepare(PGconn *conn, const char *name, int n_params, char *err, size_t errlen, const char *fmt,
        ...)
{
    char sql[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof sql) {
        snprintf(err, errlen, "preparing %s: the statement is too long", name);
        return -1;
    }
    PGresult *res = PQprepare(conn, name, sql, n_params, NULL);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) {
        char what[128];
        snprintf(what, sizeof what, "preparing %s", name);
        relay_db_error(conn, res, what, err, errlen);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_source_prepare(PGconn *conn, const relay_config *config, const relay_source_info *info,
                         char *err, size_t errlen)
{
    char id[600], created_at[600];
    if (relay_db_quote_ident(conn, config->columns.id, id, sizeof id, err, errlen) != 0 ||
        relay_db_quote_ident(conn, config->columns.created_at, created_at, sizeof created_at, err,
                             errlen) != 0)
        return -1;

    /* Columns 0..6: id, key, type, version, payload, metadata, created_at, cast to the types
     * fill_batch reads in binary (a timestamp without time zone is taken as UTC, the session's
     * zone: see relay_db_connect). */
    char columns[4096];
    snprintf(columns, sizeof columns, "SELECT t.%s::bigint", id);
    static const struct {
        int role;
        const char *cast;
    } rest[] = {{COL_KEY, "::text"},       {COL_TYPE, "::text"},
                {COL_VERSION, "::bigint"}, {COL_PAYLOAD, "::text"},
                {COL_METADATA, "::text"},  {COL_CREATED_AT, "::timestamptz"}};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        if (append_column(conn, config, rest[i].role, rest[i].cast, columns, sizeof columns, err,
                          errlen) != 0)
            return -1;

    /* Row 0 of every read, before the events: what the relay must know of the database at the
     * moment of the read (see relay_batch). It is computed while the statement runs, so after its
     * snapshot: every commit the read sees lies below that WAL insert position. */
    static const char header[] =
        "SELECT NULL::bigint, NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::text,"
        " NULL::timestamptz, NULL::bool, pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn(),"
        " pg_sequence_last_value($4::oid::regclass),"
        " pg_snapshot_xmin(pg_current_snapshot())::text::bigint UNION ALL ";
    /* The events' own column 11: the transaction that wrote the row (32 bits of it). */
    static const char no_header[] = ", NULL::pg_lsn, NULL::pg_lsn, NULL::bigint,"
                                    " t.xmin::text::bigint";

    /* Column 7: whether the row is older than the margin, on the database's clock. A NULL
     * created_at can never settle; rather than stall the relay for good it counts as settled. The
     * sub-select computes the cut-off once per fetch rather than once per row. */
    if (prepare(conn, FETCH_STATEMENT, 4, err, errlen,
                "%s(%s, t.%s IS NULL OR t.%s <= (SELECT now() - $2::bigint * interval"
                " '1 millisecond')%s FROM %s t WHERE t.%s > $1 ORDER BY t.%s LIMIT $3)",
                header, columns, created_at, created_at, no_header, info->quoted_table, id,
                id) != 0)
        return -1;

    /* Rows that filled watched gaps: committed, hence final, so all count as settled. One index
     * probe per gap, so that the cost follows the gaps, not the table; the gaps ascend and are
     * disjoint, so the rows come in id order. */
    if (prepare(
            conn, FETCH_GAPS_STATEMENT, 4, err, errlen,
            "%s(%s, true%s FROM unnest($1::bigint[], $2::bigint[]) AS g(low, high)"
            " CROSS JOIN LATERAL (SELECT *, t.xmin FROM %s t WHERE t.%s BETWEEN g.low AND g.high"
            " ORDER BY t.%s LIMIT $3) AS t ORDER BY t.%s LIMIT $3)",
            header, columns, no_header, info->quoted_table, id, id, id) != 0)
        return -1;

    /* How long until a row leaves the margin, so that the relay sleeps exactly that long. */
    return prepare(
        conn, SETTLE_STATEMENT, 2, err, errlen,
        "SELECT greatest(0, ceil(extract(epoch FROM t.%s + $2::bigint"
        " * interval '1 millisecond' - now()) * 1000))::bigint FROM %s t WHERE t.%s = $1",
        created_at, info->quoted_table, id);
}

int relay_batch_init(relay_batch *batch, int batch_size, char *err, size_t errlen)
{
    memset(batch, 0, sizeof *batch);
    batch->events = calloc((size_t)batch_size, sizeof *batch->events);
    batch->created_at = calloc((size_t)batch_size, sizeof *batch->created_at);
    if (!batch->events || !batch->created_at) {
        relay_batch_free(batch);
        snprintf(err, errlen, "out of memory for a batch of %d events", batch_size);
        return -1;
    }
    return 0;
}

void relay_batch_clear(relay_batch *batch)
{
    PQclear(batch->res);
    batch->res = NULL;
    batch->count = 0;
    batch->fetched = 0;
}

void relay_batch_free(relay_batch *batch)
{
    relay_batch_clear(batch);
    free(batch->events);
    free(batch->created_at);
    batch->events = NULL;
    batch->created_at = NULL;
}

/* The id sequence's oid as a parameter, or NULL when the table has none. */
static const char *sequence_param(const relay_source_info *info, char *text, size_t len)
{
    if (info->sequence_oid == 0)
        return NULL;
    snprintf(text, len, "%u", info->sequence_oid);
    return text;
}

int relay_source_send_fetch(PGconn *conn, const relay_config *config, const relay_source_info *info,
                            int64_t position, char *err, size_t errlen)
{
    char position_text[24], margin_text[24], limit_text[24], sequence_text[16];
    snprintf(position_text, sizeof position_text, "%" PRId64, position);
    snprintf(margin_text, sizeof margin_text, "%" PRId64, relay_source_margin_ms(config));
    snprintf(limit_text, sizeof limit_text, "%d", config->batch_size);
    const char *params[4] = {position_text, margin_text, limit_text,
                             sequence_param(info, sequence_text, sizeof sequence_text)};

    if (!PQsendQueryPrepared(conn, FETCH_STATEMENT, 4, params, NULL, NULL, 1)) {
        relay_db_error(conn, NULL, "reading events", err, errlen);
        return -1;
    }
    return 0;
}

/* The fetch's columns, in binary: rendering ids and timestamps as text is work for the server,
 * which is the relay's bottleneck, and parsing them back is work for the relay. */
enum {
    ROW_ID,
    ROW_KEY,
    ROW_TYPE,
    ROW_VERSION,
    ROW_PAYLOAD,
    ROW_METADATA,
    ROW_CREATED_AT,
    ROW_SETTLED,
    ROW_INSERT_LSN, /* the header row's, NULL in the events' */
    ROW_FLUSH_LSN,
    ROW_SEQUENCE,
    ROW_XID, /* the header's: its snapshot's xmin (64 bits); the events': their xmin (32 bits) */
    N_ROW_COLUMNS
};

/* pg_type OIDs, fixed since PostgreSQL's first catalogs (pg_lsn since 9.4): int8, text,
 * timestamptz, bool, pg_lsn. */
static const Oid row_types[N_ROW_COLUMNS] = {20, 25, 25, 20, 25, 25, 1184, 16, 3220, 3220, 20, 20};

/* Whether res has the fetch's columns, so that fill_batch may read them blind. */
static int check_columns(const PGresult *res, char *err, size_t errlen)
{
    if (PQnfields(res) != N_ROW_COLUMNS) {
        snprintf(err, errlen, "reading events: %d columns, expected %d", PQnfields(res),
                 N_ROW_COLUMNS);
        return -1;
    }
    for (int c = 0; c < N_ROW_COLUMNS; c++) {
        if (PQftype(res, c) != row_types[c] || PQfformat(res, c) != 1) {
            snprintf(err, errlen, "reading events: column %d has type %u in format %d", c,
                     PQftype(res, c), PQfformat(res, c));
            return -1;
        }
    }
    return 0;
}

int64_t relay_batch_row_id(const relay_batch *batch, size_t row)
{
    return relay_db_binary_int64(batch->res, (int)row + 1, ROW_ID);
}

/* The 64-bit transaction id whose low 32 bits are xid32, nearest to the 64-bit reference: a
 * row's unfrozen xmin is never 2^31 transactions away from a running one. A frozen row may come
 * out wrong, as a newer id: that only costs a flush it did not need. */
static uint64_t full_xid(uint64_t reference, uint32_t xid32)
{
    uint64_t xid = (reference & ~(uint64_t)UINT32_MAX) | xid32;
    if (xid > reference + ((uint64_t)1 << 31))
        xid -= (uint64_t)1 << 32;
    else if (xid + ((uint64_t)1 << 31) < reference)
        xid += (uint64_t)1 << 32;
    return xid;
}

/* Reads the header row: the database at the moment of the read. Returns 0, or -1 with err when
 * res does not start with it. */
static int read_header(relay_batch *batch, const PGresult *res, char *err, size_t errlen)
{
    if (PQntuples(res) < 1 || !PQgetisnull(res, 0, ROW_ID) || PQgetisnull(res, 0, ROW_INSERT_LSN) ||
        PQgetisnull(res, 0, ROW_FLUSH_LSN)) {
        snprintf(err, errlen, "reading events: the result does not start with its header row");
        return -1;
    }
    batch->insert_lsn = (uint64_t)relay_db_binary_int64(res, 0, ROW_INSERT_LSN);
    batch->flush_lsn = (uint64_t)relay_db_binary_int64(res, 0, ROW_FLUSH_LSN);
    batch->sequence_called = !PQgetisnull(res, 0, ROW_SEQUENCE);
    batch->sequence_value =
        batch->sequence_called ? relay_db_binary_int64(res, 0, ROW_SEQUENCE) : 0;
    batch->snapshot_xmin =
        PQgetisnull(res, 0, ROW_XID) ? 0 : (uint64_t)relay_db_binary_int64(res, 0, ROW_XID);
    batch->newest_xid = 0;
    return 0;
}

/* Points the events at the rows of res after the header, up to the first row still inside the
 * margin. */
static void fill_batch(relay_batch *batch, PGresult *res)
{
    batch->res = res;
    batch->fetched = (size_t)PQntuples(res) - 1;
    for (size_t i = 0; i < batch->fetched; i++) {
        int row = (int)i + 1;
        /* The cut: everything from the first row still inside the margin waits for a later
         * fetch, or the position could pass a lower id that is visible but not yet settled. */
        if (PQgetvalue(res, row, ROW_SETTLED)[0] == 0)
            break;
        relay_sink_event *e = &batch->events[i];
        uint64_t xid =
            full_xid(batch->snapshot_xmin, (uint32_t)relay_db_binary_int64(res, row, ROW_XID));
        batch->newest_xid = xid > batch->newest_xid ? xid : batch->newest_xid;
        e->flags = 0;
        e->id = relay_db_binary_int64(res, row, ROW_ID);
        /* libpq ends binary values with a NUL too, as the ABI promises for the strings. */
        e->key = PQgetvalue(res, row, ROW_KEY);
        e->key_len = (size_t)PQgetlength(res, row, ROW_KEY);
        e->type = PQgetvalue(res, row, ROW_TYPE);
        e->type_len = (size_t)PQgetlength(res, row, ROW_TYPE);
        e->has_version = !PQgetisnull(res, row, ROW_VERSION);
        e->version = e->has_version ? relay_db_binary_int64(res, row, ROW_VERSION) : 0;
        if (PQgetisnull(res, row, ROW_PAYLOAD)) {
            e->payload = "null";
            e->payload_len = 4;
        } else {
            e->payload = PQgetvalue(res, row, ROW_PAYLOAD);
            e->payload_len = (size_t)PQgetlength(res, row, ROW_PAYLOAD);
        }
        e->metadata =
            PQgetisnull(res, row, ROW_METADATA) ? NULL : PQgetvalue(res, row, ROW_METADATA);
        e->metadata_len = e->metadata ? (size_t)PQgetlength(res, row, ROW_METADATA) : 0;
        if (PQgetisnull(res, row, ROW_CREATED_AT)) {
            e->created_at = "";
        } else {
            relay_timestamp_rfc3339(relay_db_binary_int64(res, row, ROW_CREATED_AT),
                                    batch->created_at[i]);
            e->created_at = batch->created_at[i];
        }
        batch->count = i + 1;
    }
}

int relay_source_receive_fetch(PGconn *conn, relay_batch *batch, char *err, size_t errlen)
{
    relay_batch_clear(batch);
    /* A query yields its result, then NULL; anything else means the protocol went astray. */
    PGresult *res = PQgetResult(conn);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        relay_db_error(conn, res, "reading events", err, errlen);
    relay_db_discard_results(conn);
    if (ok && (check_columns(res, err, errlen) != 0 || read_header(batch, res, err, errlen) != 0))
        ok = 0;
    if (!ok) {
        PQclear(res);
        return -1;
    }
    fill_batch(batch, res);
    return 0;
}

int relay_source_fetch(PGconn *conn, const relay_config *config, const relay_source_info *info,
                       int64_t position, relay_batch *batch, char *err, size_t errlen)
{
    if (relay_source_send_fetch(conn, config, info, position, err, errlen) != 0)
        return -1;
    return relay_source_receive_fetch(conn, batch, err, errlen);
}

int64_t relay_source_margin_ms(const relay_config *config)
{
    return config->mode == RELAY_MODE_SETTLED ? 0 : config->safety_margin_ms;
}

int relay_source_fetch_gaps(PGconn *conn, const relay_config *config, const relay_source_info *info,
                            const relay_gaps *gaps, relay_batch *batch, char *err, size_t errlen)
{
    relay_batch_clear(batch);
    char *lows, *highs;
    if (relay_gaps_ranges(gaps, &lows, &highs) != 0) {
        snprintf(err, errlen, "out of memory listing the watched gaps");
        return -1;
    }
    char limit_text[24], sequence_text[16];
    snprintf(limit_text, sizeof limit_text, "%d", config->batch_size);
    const char *params[4] = {lows, highs, limit_text,
                             sequence_param(info, sequence_text, sizeof sequence_text)};
    int sent = PQsendQueryPrepared(conn, FETCH_GAPS_STATEMENT, 4, params, NULL, NULL, 1);
    free(lows);
    free(highs);
    if (!sent) {
        relay_db_error(conn, NULL, "reading rows in gaps", err, errlen);
        return -1;
    }
    if (relay_source_receive_fetch(conn, batch, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < batch->count; i++)
        batch->events[i].flags |= RELAY_SINK_EVENT_LATE;
    return 0;
}

int relay_source_settle_in(PGconn *conn, const relay_config *config, int64_t id, int64_t *ms,
                           char *err, size_t errlen)
{
    char id_text[24], margin_text[24];
    snprintf(id_text, sizeof id_text, "%" PRId64, id);
    snprintf(margin_text, sizeof margin_text, "%" PRId64, relay_source_margin_ms(config));
    const char *params[2] = {id_text, margin_text};
    PGresult *res = PQexecPrepared(conn, SETTLE_STATEMENT, 2, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        relay_db_error(conn, res, "reading when a row settles", err, errlen);
    else /* the row may be gone (deleted): then look again soon */
        *ms = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)
                  ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                  : 0;
    PQclear(res);
    return ok ? 0 : -1;
}
