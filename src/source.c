#include "source.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "rows.h"

#define FETCH_STATEMENT "relay_fetch"
#define FETCH_GAPS_STATEMENT "relay_fetch_gaps"
#define REREAD_RANGE_STATEMENT "relay_reread_range"
#define REREAD_IDS_STATEMENT "relay_reread_ids"

/* pg_type OIDs, fixed since PostgreSQL's first catalogs (pg_lsn since 9.4). */
enum { INT8OID = 20, TEXTOID = 25, XIDOID = 28, TIMESTAMPTZOID = 1184 };

static const char *const integers[] = {"int2", "int4", "int8", NULL};
static const char *const timestamps[] = {"timestamptz", "timestamp", NULL};
static const char *const json[] = {"jsonb", "json", NULL};

#define MAPPED_BY(member) offsetof(relay_config_columns, member)

/* In the order of the fetch's columns. Everything but the integers and the timestamp is read as
 * text, which any type can be cast to; the binary forms of the rest are what take_row reads. A
 * timestamp without time zone is taken as UTC, the session's zone (see relay_db_connect). */
static const relay_column_role_info column_roles[RELAY_N_COLUMN_ROLES] = {
    [RELAY_COLUMN_ID] = {"id", MAPPED_BY(id), "::bigint", INT8OID, integers, "an integer"},
    [RELAY_COLUMN_KEY] = {"key", MAPPED_BY(key), "::text", TEXTOID, NULL, NULL},
    [RELAY_COLUMN_TYPE] = {"type", MAPPED_BY(type), "::text", TEXTOID, NULL, NULL},
    [RELAY_COLUMN_VERSION] = {"version", MAPPED_BY(version), "::bigint", INT8OID, integers,
                              "an integer", true},
    [RELAY_COLUMN_PAYLOAD] = {"payload", MAPPED_BY(payload), "::text", TEXTOID, json,
                              "json or jsonb"},
    [RELAY_COLUMN_METADATA] = {"metadata", MAPPED_BY(metadata), "::text", TEXTOID, json,
                               "json or jsonb", true},
    [RELAY_COLUMN_CREATED_AT] = {"created_at", MAPPED_BY(created_at), "::timestamptz",
                                 TIMESTAMPTZOID, timestamps, "a timestamp"},
    [RELAY_COLUMN_AGGREGATE_TYPE] = {"aggregate_type", MAPPED_BY(aggregate_type), "::text", TEXTOID,
                                     NULL, NULL, true},
    [RELAY_COLUMN_EVENT_ID] = {"event_id", MAPPED_BY(event_id), "::text", TEXTOID, NULL, NULL,
                               true},
};

const relay_column_role_info *relay_column_describe(relay_column_role role)
{
    return &column_roles[role];
}

const char *relay_column_mapped(const relay_config *config, relay_column_role role)
{
    return *(char *const *)(const void *)((const char *)&config->columns +
                                          column_roles[role].mapped_by);
}

static int type_is(const char *type, const char *const *accepted)
{
    for (; *accepted; accepted++)
        if (strcmp(type, *accepted) == 0)
            return 1;
    return 0;
}

/* Whether column is the role's default, as opposed to one the configuration names. */
static bool is_default_name(const relay_column_role_info *r, const char *column)
{
    char key[64];
    snprintf(key, sizeof key, "source.columns.%s", r->name);
    const char *default_name = relay_config_key_default_text(key);
    return default_name && strcmp(default_name, column) == 0;
}

/* The row of the catalog query that describes column, or -1. */
static int find_column(const PGresult *res, const char *column)
{
    for (int i = 0; i < PQntuples(res); i++)
        if (strcmp(PQgetvalue(res, i, 0), column) == 0)
            return i;
    return -1;
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
        *missing = 1;
        PQclear(res);
        return -1;
    }

    for (int role = 0; role < RELAY_N_COLUMN_ROLES; role++) {
        const relay_column_role_info *r = &column_roles[role];
        const char *column = relay_column_mapped(config, role);
        if (!column)
            continue;
        int row = find_column(res, column);
        if (row < 0 && r->optional && is_default_name(r, column))
            continue;
        if (row < 0) {
            snprintf(err, errlen, "table %s has no column \"%s\" (source.columns.%s)",
                     config->table, column, r->name);
            *missing = 1;
            PQclear(res);
            return -1;
        }
        if (r->accepted && !type_is(PQgetvalue(res, row, 1), r->accepted)) {
            snprintf(err, errlen, "table %s: column \"%s\" (source.columns.%s) is %s, expected %s",
                     config->table, column, r->name, PQgetvalue(res, row, 2), r->expected);
            *missing = 1;
            PQclear(res);
            return -1;
        }
        snprintf(info->column_types[role], sizeof info->column_types[role], "%s",
                 PQgetvalue(res, row, 2));
        info->mapped[role] = column;
    }
    for (size_t h = 0; h < config->columns.n_headers; h++) {
        if (find_column(res, config->columns.headers[h]) < 0) {
            snprintf(err, errlen, "table %s has no column \"%s\" (source.columns.headers)",
                     config->table, config->columns.headers[h]);
            *missing = 1;
            PQclear(res);
            return -1;
        }
    }
    PQclear(res);
    return 0;
}

/* Appends to the statement text in sql. Returns 0, or -1 with err when it does not fit. */
static int __attribute__((format(printf, 5, 6)))
append(char *sql, size_t sqllen, char *err, size_t errlen, const char *fmt, ...)
{
    size_t used = strlen(sql);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql + used, sqllen - used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sqllen - used) {
        snprintf(err, errlen, "the fetch statement is too long");
        return -1;
    }
    return 0;
}

/*
 * The select lists of a read: the events' columns by role (a NULL of the role's type when it is
 * unmapped), the header columns, and a NULL of the right type for each, for the header row.
 */
static int select_lists(PGconn *conn, const relay_config *config, const relay_source_info *info,
                        char *roles, char *headers, char *nulls, char *header_nulls, size_t len,
                        char *err, size_t errlen)
{
    roles[0] = headers[0] = nulls[0] = header_nulls[0] = '\0';
    char quoted[600];
    for (int role = 0; role < RELAY_N_COLUMN_ROLES; role++) {
        const char *column = info->mapped[role];
        const char *cast = column_roles[role].cast, *sep = role > 0 ? ", " : "";
        if (column && relay_db_quote_ident(conn, column, quoted, sizeof quoted, err, errlen) != 0)
            return -1;
        if ((column ? append(roles, len, err, errlen, "%st.%s%s", sep, quoted, cast)
                    : append(roles, len, err, errlen, "%sNULL%s", sep, cast)) != 0 ||
            append(nulls, len, err, errlen, "%sNULL%s", sep, cast) != 0)
            return -1;
    }
    for (size_t h = 0; h < config->columns.n_headers; h++) {
        if (relay_db_quote_ident(conn, config->columns.headers[h], quoted, sizeof quoted, err,
                                 errlen) != 0 ||
            append(headers, len, err, errlen, ", t.%s::text", quoted) != 0 ||
            append(header_nulls, len, err, errlen, ", NULL::text") != 0)
            return -1;
    }
    return 0;
}

/* Formats a statement and prepares it under name. Returns 0, or -1 with err. */
static int __attribute__((format(printf, 6, 7)))
prepare(PGconn *conn, const char *name, int n_params, char *err, size_t errlen, const char *fmt,
        ...)
{
    char sql[16384];
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

/* Row 0 of every read, before the events: what the relay must know of the database at the
 * moment of the read (see relay_batch), in one text column that is NULL in the events' rows: a
 * column per figure would cost every event row a field each way. It is computed while the
 * statement runs, so after its snapshot: every commit the read sees lies below that WAL insert
 * position. now() goes as microseconds since PostgreSQL's epoch (2000-01-01), as the binary
 * created_at does. Its arguments: the NULLs of the roles, the sequence's parameter number, the
 * NULLs of the headers. */
static const char header_format[] =
    "SELECT %s, NULL::xid,"
    " concat_ws(' ', pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn(),"
    " coalesce(pg_sequence_last_value($%d::oid::regclass)::text, '-'),"
    " pg_snapshot_xmin(pg_current_snapshot()),"
    " ((extract(epoch FROM now()) - 946684800) * 1000000)::bigint)%s UNION ALL ";

/* The events' own: the transaction that wrote the row, as xid (32 bits, sent as 4 bytes:
 * xmin::text::bigint cost the server a tenth of a read). */
static const char no_header[] = ", t.xmin, NULL::text";

enum { SELECT_LIST_MAX = 4096 };

/* What every read's statement is made of: the quoted id column and the select lists. */
typedef struct statement_parts {
    char id[600];
    char roles[SELECT_LIST_MAX], headers[SELECT_LIST_MAX], nulls[SELECT_LIST_MAX],
        header_nulls[SELECT_LIST_MAX];
} statement_parts;

/* Returns 0, or -1 with err. */
static int statement_parts_make(PGconn *conn, const relay_config *config,
                                const relay_source_info *info, statement_parts *parts, char *err,
                                size_t errlen)
{
    if (relay_db_quote_ident(conn, config->columns.id, parts->id, sizeof parts->id, err, errlen) !=
        0)
        return -1;
    return select_lists(conn, config, info, parts->roles, parts->headers, parts->nulls,
                        parts->header_nulls, SELECT_LIST_MAX, err, errlen);
}

/* The header row of a read whose sequence is parameter sequence_param. */
static void statement_header(const statement_parts *parts, int sequence_param, char *out,
                             size_t len)
{
    snprintf(out, len, header_format, parts->nulls, sequence_param, parts->header_nulls);
}

int relay_source_prepare(PGconn *conn, const relay_config *config, const relay_source_info *info,
                         char *err, size_t errlen)
{
    statement_parts parts;
    if (statement_parts_make(conn, config, info, &parts, err, errlen) != 0)
        return -1;
    const char *id = parts.id, *roles = parts.roles, *headers = parts.headers;
    char header[SELECT_LIST_MAX * 2 + 512], gaps_header[SELECT_LIST_MAX * 2 + 512];
    statement_header(&parts, 3, header, sizeof header);
    statement_header(&parts, 4, gaps_header, sizeof gaps_header);

    /* Whether a row is older than the margin is the relay's to judge (take_row), from its
     * created_at and the header's now(): the server does not spend an expression and a column
     * per row on it. */
    if (prepare(conn, FETCH_STATEMENT, 3, err, errlen,
                "%s(SELECT %s%s%s FROM %s t WHERE t.%s > $1 ORDER BY t.%s LIMIT $2)", header, roles,
                no_header, headers, info->quoted_table, id, id) != 0)
        return -1;

    /* Rows that filled watched gaps: committed, hence final, so all count as settled. One index
     * probe per gap, so that the cost follows the gaps, not the table; the gaps ascend and are
     * disjoint, so the rows come in id order. */
    if (prepare(
            conn, FETCH_GAPS_STATEMENT, 4, err, errlen,
            "%s(SELECT %s%s%s FROM unnest($1::bigint[], $2::bigint[]) AS g(low, high)"
            " CROSS JOIN LATERAL (SELECT *, t.xmin FROM %s t WHERE t.%s BETWEEN g.low AND g.high"
            " ORDER BY t.%s LIMIT $3) AS t ORDER BY t.%s LIMIT $3)",
            gaps_header, roles, no_header, headers, info->quoted_table, id, id, id) != 0)
        return -1;

    return 0;
}

int relay_batch_init(relay_batch *batch, const relay_config *config, char *err, size_t errlen)
{
    memset(batch, 0, sizeof *batch);
    size_t size = (size_t)config->batch_size, n_headers = config->columns.n_headers;
    batch->header_names = (const char *const *)config->columns.headers;
    batch->n_headers = n_headers;
    /* Twice the cap: a batch's buffer ends at most one row past it, and a row that took far
     * more is not kept for the next read. */
    batch->keep_bytes = 2 * (size_t)config->batch_bytes;
    batch->event_bytes = sizeof *batch->events + sizeof *batch->created_at +
                         sizeof *batch->event_ids + n_headers * sizeof *batch->headers;
    batch->events = calloc(size, sizeof *batch->events);
    batch->created_at = calloc(size, sizeof *batch->created_at);
    batch->event_ids = calloc(size, sizeof *batch->event_ids);
    batch->headers = n_headers > 0 ? calloc(size * n_headers, sizeof *batch->headers) : NULL;
    if (!batch->events || !batch->created_at || !batch->event_ids ||
        (n_headers > 0 && !batch->headers)) {
        relay_batch_free(batch);
        snprintf(err, errlen, "out of memory for a batch of %d events", config->batch_size);
        return -1;
    }
    return 0;
}

void relay_batch_clear(relay_batch *batch)
{
    relay_rows_clear(&batch->rows, batch->keep_bytes);
    batch->count = 0;
    batch->fetched = 0;
    batch->held = false;
    batch->cut = false;
    batch->rendered = false;
    batch->largest_row = 0;
    /* Said of one read only: a batch struct is reused for reads that carry no store, and for
     * the gap watch's. */
    batch->flushed_by_commit = false;
}

void relay_batch_free(relay_batch *batch)
{
    relay_batch_clear(batch);
    relay_rows_free(&batch->rows);
    free(batch->events);
    free(batch->created_at);
    free(batch->event_ids);
    free(batch->headers);
    batch->events = NULL;
    batch->created_at = NULL;
    batch->headers = NULL;
}

/* The id sequence's oid as a parameter, or NULL when the table has none. */
static const char *sequence_param(const relay_source_info *info, char *text, size_t len)
{
    if (info->sequence_oid == 0)
        return NULL;
    snprintf(text, len, "%u", info->sequence_oid);
    return text;
}

int relay_source_send_fetch(PGconn *conn, const relay_source_info *info, int64_t position,
                            int limit, char *err, size_t errlen)
{
    char position_text[24], limit_text[24], sequence_text[16];
    snprintf(position_text, sizeof position_text, "%" PRId64, position);
    snprintf(limit_text, sizeof limit_text, "%d", limit);
    const char *params[3] = {position_text, limit_text,
                             sequence_param(info, sequence_text, sizeof sequence_text)};

    if (!PQsendQueryPrepared(conn, FETCH_STATEMENT, 3, params, NULL, NULL, 1)) {
        relay_db_error(conn, NULL, "reading events", err, errlen);
        return -1;
    }
    /* One row at a time from libpq, so that a read holds what the batch keeps, not the LIMIT's
     * worth of rows of whatever size (see rows.h). libpq sets it for the query at the head of its
     * queue, whose results have not begun: the fetch, which goes alone or first in its pipeline
     * (send_read). A failure after some rows reaches receive_rows as an error, which drops them. */
    if (!PQsetSingleRowMode(conn)) {
        snprintf(err, errlen, "reading events: libpq refused single-row mode");
        return -1;
    }
    return 0;
}

/* The fetch's columns, in binary: rendering ids and timestamps as text is work for the server,
 * which is the relay's bottleneck, and parsing them back is work for the relay. The roles come
 * first, in the order of relay_column_role; the header columns (source.columns.headers) last. */
enum {
    ROW_XID = RELAY_N_COLUMN_ROLES, /* the events': their xmin (32 bits); NULL in the header */
    ROW_HEADER,                     /* the header row's figures, as text; NULL in the events' */
    ROW_HEADERS
};

static Oid column_type(int column)
{
    if (column < RELAY_N_COLUMN_ROLES)
        return column_roles[column].read_type;
    switch (column) {
    case ROW_XID:
        return XIDOID;
    default:
        return TEXTOID;
    }
}

/* Whether res has the fetch's columns, so that take_row may read them blind. */
static int check_columns(const PGresult *res, size_t n_headers, char *err, size_t errlen)
{
    int expected = ROW_HEADERS + (int)n_headers;
    if (PQnfields(res) != expected) {
        snprintf(err, errlen, "reading events: %d columns, expected %d", PQnfields(res), expected);
        return -1;
    }
    for (int c = 0; c < expected; c++) {
        if (PQftype(res, c) != column_type(c) || PQfformat(res, c) != 1) {
            snprintf(err, errlen, "reading events: column %d has type %u in format %d", c,
                     PQftype(res, c), PQfformat(res, c));
            return -1;
        }
    }
    return 0;
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
    unsigned insert_hi, insert_lo, flush_hi, flush_lo;
    char sequence[24];
    uint64_t xmin;
    int64_t now;
    if (PQntuples(res) < 1 || !PQgetisnull(res, 0, RELAY_COLUMN_ID) ||
        PQgetisnull(res, 0, ROW_HEADER) ||
        sscanf(PQgetvalue(res, 0, ROW_HEADER), "%X/%X %X/%X %23s %" SCNu64 " %" SCNd64, &insert_hi,
               &insert_lo, &flush_hi, &flush_lo, sequence, &xmin, &now) != 7) {
        snprintf(err, errlen, "reading events: the result does not start with its header row");
        return -1;
    }
    batch->insert_lsn = (uint64_t)insert_hi << 32 | insert_lo;
    batch->flush_lsn = (uint64_t)flush_hi << 32 | flush_lo;
    batch->sequence_called = strcmp(sequence, "-") != 0;
    batch->sequence_value = batch->sequence_called ? strtoll(sequence, NULL, 10) : 0;
    batch->snapshot_xmin = xmin;
    batch->db_now = now;
    batch->read_ms = relay_now_ms();
    batch->newest_xid = 0;
    return 0;
}

/* Takes the read's next row after the header, up to the first row still inside a margin of
 * margin_us (by the header's now()); a negative margin takes every row. Only what the cut, the gap
 * watch and the durability check need is read here: the rest waits for relay_batch_render, which
 * the relay calls after it sent the next read, so that the server is not idle meanwhile. Returns
 * 0, or -1 with err (out of memory). */
static int take_row(relay_batch *batch, const PGresult *res, int row, int64_t margin_us,
                    size_t max_bytes, char *err, size_t errlen)
{
    /* source.batch_bytes: the rows from the one that would pass it on count as not read, as if
     * the read's LIMIT had ended before them (and as a full read: more is waiting). */
    if (batch->cut)
        return 0;
    size_t i = batch->fetched++;
    /* Behind a row the margin holds: read, counted, not kept. */
    if (batch->held)
        return 0;
    /* The row's values and the event the relay makes of it: what the batch holds for it. */
    size_t size = relay_rows_size(res, row) + batch->event_bytes;
    batch->largest_row = size > batch->largest_row ? size : batch->largest_row;
    if (i > 0 && relay_rows_bytes(&batch->rows) + i * batch->event_bytes + size > max_bytes) {
        batch->fetched = batch->limit = i;
        batch->cut = true;
        return 0;
    }
    /* The cut: everything from the first row still inside the margin waits for a later fetch,
     * or the position could pass a lower id that is visible but not yet settled. A NULL
     * created_at can never settle; rather than stall the relay for good it counts as settled. */
    int64_t cutoff = margin_us < 0 ? INT64_MAX : batch->db_now - margin_us;
    if (!PQgetisnull(res, row, RELAY_COLUMN_CREATED_AT) &&
        relay_db_binary_int64(res, row, RELAY_COLUMN_CREATED_AT) > cutoff) {
        batch->held = true;
        batch->held_id = relay_db_binary_int64(res, row, RELAY_COLUMN_ID);
        batch->held_created_at = relay_db_binary_int64(res, row, RELAY_COLUMN_CREATED_AT);
        return 0;
    }
    if (relay_rows_add(&batch->rows, res, row, size, err, errlen) != 0)
        return -1;
    relay_sink_event *e = &batch->events[i];
    uint64_t xid = full_xid(batch->snapshot_xmin, relay_db_binary_uint32(res, row, ROW_XID));
    batch->newest_xid = xid > batch->newest_xid ? xid : batch->newest_xid;
    e->flags = 0;
    e->id = relay_db_binary_int64(res, row, RELAY_COLUMN_ID);
    batch->count = i + 1;
    return 0;
}

void relay_batch_render(relay_batch *batch)
{
    if (batch->rendered)
        return;
    const relay_rows *rows = &batch->rows;
    for (size_t i = 0; i < batch->count; i++) {
        relay_sink_event *e = &batch->events[i];
        e->key = relay_rows_get(rows, i, RELAY_COLUMN_KEY, &e->key_len);
        if (!e->key) {
            e->key = "";
            e->flags |= RELAY_SINK_EVENT_KEY_NULL;
        }
        e->type = relay_rows_get(rows, i, RELAY_COLUMN_TYPE, &e->type_len);
        if (!e->type) {
            e->type = "";
            e->flags |= RELAY_SINK_EVENT_TYPE_NULL;
        }
        size_t len;
        e->has_version = relay_rows_get(rows, i, RELAY_COLUMN_VERSION, &len) != NULL;
        e->version = e->has_version ? relay_rows_int64(rows, i, RELAY_COLUMN_VERSION) : 0;
        e->payload = relay_rows_get(rows, i, RELAY_COLUMN_PAYLOAD, &e->payload_len);
        if (!e->payload) {
            e->payload = "null";
            e->payload_len = 4;
        }
        e->metadata = relay_rows_get(rows, i, RELAY_COLUMN_METADATA, &e->metadata_len);
        if (!relay_rows_get(rows, i, RELAY_COLUMN_CREATED_AT, &len)) {
            e->created_at = "";
            e->flags |= RELAY_SINK_EVENT_CREATED_AT_NULL;
        } else {
            relay_timestamp_rfc3339(relay_rows_int64(rows, i, RELAY_COLUMN_CREATED_AT),
                                    batch->created_at[i]);
            e->created_at = batch->created_at[i];
        }
        e->aggregate_type =
            relay_rows_get(rows, i, RELAY_COLUMN_AGGREGATE_TYPE, &e->aggregate_type_len);
        e->event_id = relay_rows_get(rows, i, RELAY_COLUMN_EVENT_ID, &e->event_id_len);
        if (!e->event_id) {
            e->event_id_len = relay_plugin_format_int64(batch->event_ids[i], e->id);
            e->event_id = batch->event_ids[i];
            e->flags |= RELAY_SINK_EVENT_ID_IS_ID;
        }
        relay_sink_header *headers = batch->headers + i * batch->n_headers;
        for (size_t h = 0; h < batch->n_headers; h++) {
            headers[h].name = batch->header_names[h];
            headers[h].name_len = strlen(batch->header_names[h]);
            headers[h].value = relay_rows_get(rows, i, ROW_HEADERS + (int)h, &headers[h].value_len);
        }
        e->headers = batch->n_headers > 0 ? headers : NULL;
        e->n_headers = batch->n_headers;
    }
    batch->rendered = true;
}

/* Takes the rows of one of a read's results: the first row of the first is the header. Returns
 * 0, or -1 with err. */
static int take_result(relay_batch *batch, const PGresult *res, bool *header_read,
                       int64_t margin_us, size_t max_bytes, char *err, size_t errlen)
{
    int n = PQntuples(res), row = 0;
    if (n == 0)
        return 0;
    if (!*header_read) {
        if (check_columns(res, batch->n_headers, err, errlen) != 0 ||
            read_header(batch, res, err, errlen) != 0)
            return -1;
        *header_read = true;
        row = 1;
    }
    for (; row < n; row++)
        if (take_row(batch, res, row, margin_us, max_bytes, err, errlen) != 0)
            return -1;
    return 0;
}

/* Receives a read's rows, one result per row in single-row mode (or all in one), keeping those
 * that fit max_bytes; a negative margin_us takes them all (see take_row). */
static int receive_rows(PGconn *conn, relay_batch *batch, int64_t margin_us, size_t max_bytes,
                        char *err, size_t errlen)
{
    relay_batch_clear(batch);
    bool header_read = false;
    int failed = 0;
    /* A query yields its results, then NULL; the results past a failure are read and dropped,
     * so that the connection is ready for what comes next. */
    for (PGresult *res; (res = PQgetResult(conn)) != NULL; PQclear(res)) {
        if (failed)
            continue;
        ExecStatusType status = PQresultStatus(res);
        if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK) {
            relay_db_error(conn, res, "reading events", err, errlen);
            failed = 1;
        } else if (take_result(batch, res, &header_read, margin_us, max_bytes, err, errlen) != 0) {
            failed = 1;
        }
    }
    if (!failed && !header_read) {
        snprintf(err, errlen, "reading events: the result does not start with its header row");
        failed = 1;
    }
    if (failed)
        relay_batch_clear(batch);
    return failed ? -1 : 0;
}

int relay_source_receive_fetch(PGconn *conn, const relay_config *config, relay_batch *batch,
                               char *err, size_t errlen)
{
    /* Settled mode has no margin: no row waits for its age (a row inserted just after the
     * transaction's now() but committed before the read's snapshot would, for a read). */
    int64_t margin_us = config->mode == RELAY_MODE_SETTLED ? -1 : config->safety_margin_ms * 1000;
    return receive_rows(conn, batch, margin_us, (size_t)config->batch_bytes, err, errlen);
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
    /* Committed late, hence final: every row counts as settled. */
    /* Not cut by bytes: a gap's rows are few, and a cut would need its own bookkeeping. */
    if (receive_rows(conn, batch, -1, SIZE_MAX, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < batch->count; i++)
        batch->events[i].flags |= RELAY_SINK_EVENT_LATE;
    return 0;
}

bool relay_batch_created_us(const relay_batch *batch, size_t i, int64_t *us)
{
    size_t len;
    if (!relay_rows_get(&batch->rows, i, RELAY_COLUMN_CREATED_AT, &len))
        return false;
    *us = relay_rows_int64(&batch->rows, i, RELAY_COLUMN_CREATED_AT);
    return true;
}

int64_t relay_batch_held_settles_in(const relay_batch *batch, int64_t margin_ms)
{
    if (!batch->held)
        return 0;
    /* Both timestamps are the database's, in microseconds: only the relay's own clock measures
     * the time since the read. created may be infinity (INT64_MAX): saturate rather than
     * overflow. */
    int64_t created = batch->held_created_at, left_us;
    if (__builtin_add_overflow(created, margin_ms * 1000, &left_us) ||
        __builtin_sub_overflow(left_us, batch->db_now, &left_us))
        return created > 0 ? INT64_MAX : 0;
    int64_t left = left_us / 1000 + (left_us % 1000 > 0) - (relay_now_ms() - batch->read_ms);
    return left > 0 ? left : 0;
}

int relay_source_prepare_reread(PGconn *conn, const relay_config *config,
                                const relay_source_info *info, char *err, size_t errlen)
{
    statement_parts parts;
    if (statement_parts_make(conn, config, info, &parts, err, errlen) != 0)
        return -1;
    const char *id = parts.id, *roles = parts.roles, *headers = parts.headers;
    char range_header[SELECT_LIST_MAX * 2 + 512], ids_header[SELECT_LIST_MAX * 2 + 512];
    statement_header(&parts, 5, range_header, sizeof range_header);
    statement_header(&parts, 3, ids_header, sizeof ids_header);

    /* A replay sends again what the sink acknowledged: not the dead letters (never accepted:
     * `dead-letters retry` is theirs) nor the watched gaps (missing when the position passed
     * them: the relay delivers them, late, if they appear). Both are index probes. */
    if (prepare(conn, REREAD_RANGE_STATEMENT, 5, err, errlen,
                "%s(SELECT %s%s%s FROM %s t WHERE t.%s BETWEEN $1::bigint AND $2::bigint"
                " AND NOT EXISTS (SELECT 1 FROM relay_dead_letters d"
                "                  WHERE d.relay_name = $4 AND d.event_id = t.%s)"
                " AND NOT EXISTS (SELECT 1 FROM relay_gaps g WHERE g.relay_name = $4"
                "                    AND t.%s BETWEEN g.low_id AND g.high_id)"
                " ORDER BY t.%s LIMIT $3)",
                range_header, roles, no_header, headers, info->quoted_table, id, id, id, id) != 0)
        return -1;
    return prepare(conn, REREAD_IDS_STATEMENT, 3, err, errlen,
                   "%s(SELECT %s%s%s FROM %s t WHERE t.%s = ANY($1::bigint[]) ORDER BY t.%s"
                   " LIMIT $2)",
                   ids_header, roles, no_header, headers, info->quoted_table, id, id);
}

/* Sends a prepared reread in binary and single-row mode, receives its rows (every one settled,
 * cut by max_bytes) and marks them redelivered. Returns 0, or -1 with err. */
static int reread(PGconn *conn, const char *statement, int n_params, const char *const *params,
                  int limit, size_t max_bytes, relay_batch *batch, char *err, size_t errlen)
{
    if (!PQsendQueryPrepared(conn, statement, n_params, params, NULL, NULL, 1) ||
        !PQsetSingleRowMode(conn)) {
        relay_db_error(conn, NULL, "reading events again", err, errlen);
        relay_db_discard_results(conn);
        return -1;
    }
    batch->limit = (size_t)limit;
    if (receive_rows(conn, batch, -1, max_bytes, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < batch->count; i++)
        batch->events[i].flags |= RELAY_SINK_EVENT_REDELIVERED;
    return 0;
}

int relay_source_fetch_range(PGconn *conn, const relay_config *config,
                             const relay_source_info *info, int64_t from, int64_t to,
                             relay_batch *batch, char *err, size_t errlen)
{
    char from_text[24], to_text[24], limit_text[24], sequence_text[16];
    snprintf(from_text, sizeof from_text, "%" PRId64, from);
    snprintf(to_text, sizeof to_text, "%" PRId64, to);
    snprintf(limit_text, sizeof limit_text, "%d", config->batch_size);
    const char *params[5] = {from_text, to_text, limit_text, config->name,
                             sequence_param(info, sequence_text, sizeof sequence_text)};
    return reread(conn, REREAD_RANGE_STATEMENT, 5, params, config->batch_size,
                  (size_t)config->batch_bytes, batch, err, errlen);
}

int relay_source_fetch_ids(PGconn *conn, const relay_config *config, const relay_source_info *info,
                           const int64_t *ids, size_t n_ids, relay_batch *batch, char *err,
                           size_t errlen)
{
    if (n_ids == 0 || n_ids > (size_t)config->batch_size) {
        snprintf(err, errlen, "reading events again: %zu ids, expected 1 to %d", n_ids,
                 config->batch_size);
        return -1;
    }
    char *array;
    if (relay_db_id_array(ids, n_ids, &array, err, errlen) != 0)
        return -1;
    char limit_text[24], sequence_text[16];
    snprintf(limit_text, sizeof limit_text, "%zu", n_ids);
    const char *params[3] = {array, limit_text,
                             sequence_param(info, sequence_text, sizeof sequence_text)};
    /* Cut by bytes like every read: dead letters are often the events too large for the
     * destination, and a thousand of them would otherwise be one batch in memory. */
    int rc = reread(conn, REREAD_IDS_STATEMENT, 3, params, (int)n_ids, (size_t)config->batch_bytes,
                    batch, err, errlen);
    free(array);
    return rc;
}
