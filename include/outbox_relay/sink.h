/*
 * outbox-relay sink plugin ABI, version 2.
 *
 * A sink is a shared module that exports one function, RELAY_SINK_ENTRY, returning a pointer to a
 * static relay_sink_api. The relay loads it with dlopen(RTLD_NOW | RTLD_LOCAL) and refuses it when
 * abi_version differs from RELAY_SINK_ABI_VERSION, or when its struct_size does not reach the
 * callbacks every sink must have (RELAY_SINK_API_MIN_SIZE).
 *
 * Growing without a new version. Within version 2, the structs the relay and a sink exchange only
 * ever gain members at their end, and each says how large the side that filled it knows it to be:
 * relay_sink_api.struct_size (the sink's), relay_sink_host.struct_size (the relay's) and
 * relay_sink_batch.event_size (the relay's relay_sink_event, the stride of the events array; the
 * same idea as the sizeof_* members of Redis's RedisModuleCommandInfoVersion). So a sink built
 * against an older header walks a batch by event_size, never by its own sizeof, and a sink built
 * against a newer header asks RELAY_SINK_HAS before it reads a member or calls a callback the
 * relay may not have:
 *
 *     for (size_t i = 0; i < batch->count; i++) {
 *         const relay_sink_event *e = relay_sink_batch_event(batch, i);
 *         send(e->event_id, e->event_id_len, e->payload, e->payload_len);
 *     }
 *
 *     // a callback appended after the sink's first release:
 *     if (RELAY_SINK_HAS(relay_sink_host, host->struct_size, report_lag) && host->report_lag)
 *         host->report_lag(host->ctx, ms);
 *
 * The relay does the same with the sink's callbacks: one appended after init..destroy is called
 * only when api->struct_size covers it and it is not NULL. A change that cannot be made this way
 * (a member removed, moved or retyped, a contract changed) is a new RELAY_SINK_ABI_VERSION, and
 * the relay refuses plugins of the old one by name of both versions.
 *
 * Contract, per batch: the relay calls deliver() once with the batch, then flush(). The relay
 * commits its position past the batch only when flush() returned RELAY_SINK_OK, so flush() must
 * return OK only once every event handed to deliver() since the last successful flush is durably
 * accepted by the destination (written and flushed, acknowledged by the broker, ...). Queued is not
 * accepted. After a failed deliver() or flush(), the relay hands the same events over again later:
 * sinks see every event at least once, possibly more than once, never out of order within a batch.
 *
 * All callbacks run on the relay's single thread; a sink may start threads of its own.
 */
#ifndef OUTBOX_RELAY_SINK_H
#define OUTBOX_RELAY_SINK_H

#include <stddef.h>
#include <stdint.h>

/* Whether a struct of type `type` declared `size` bytes long by the side that filled it has
 * `member` (see the top of this file). */
#define RELAY_SINK_HAS(type, size, member)                                                         \
    ((size_t)(size) >= offsetof(type, member) + sizeof(((const type *)0)->member))

#ifdef __cplusplus
extern "C" {
#endif

#define RELAY_SINK_ABI_VERSION 2u

/* The symbol every sink exports, and its name for dlsym(). */
#define RELAY_SINK_ENTRY relay_sink_entry
#define RELAY_SINK_ENTRY_NAME "relay_sink_entry"

typedef enum relay_sink_status {
    RELAY_SINK_OK = 0,
    /* Transient (broker down, disk full, ...): the relay backs off and hands the batch over again.
     */
    RELAY_SINK_RETRY = 1,
    /* Will not get better by retrying (bad options, an event the destination refuses for good):
     * the relay stops with the message, its position still before the batch. */
    RELAY_SINK_FATAL = 2,
} relay_sink_status;

typedef enum relay_sink_log_level {
    RELAY_SINK_LOG_DEBUG = 0,
    RELAY_SINK_LOG_INFO = 1,
    RELAY_SINK_LOG_WARN = 2,
    RELAY_SINK_LOG_ERROR = 3,
} relay_sink_log_level;

/* One configured option, from the sink's `options` map. Nested maps are flattened with dots
 * ("properties.bootstrap.servers"), sequences are joined with commas. Borrowed for init() only. */
typedef struct relay_sink_option {
    const char *key;
    const char *value;
} relay_sink_option;

/* A column the user chose to pass along with every event (source.columns.headers). */
typedef struct relay_sink_header {
    const char *name; /* the column's name */
    size_t name_len;
    const char *value; /* its value as text; NULL for SQL NULL */
    size_t value_len;
} relay_sink_header;

/*
 * One event. Every pointer is borrowed for the duration of the deliver() call only; a sink that
 * needs the bytes later copies them. Every string is also NUL-terminated at [len]. Members are
 * only ever appended (see the top of this file): reach an event with relay_sink_batch_event().
 */
typedef struct relay_sink_event {
    int64_t id;      /* the ordering id (source.columns.id): ascending within a batch */
    const char *key; /* the aggregate id, used for partitioning */
    size_t key_len;
    const char *type; /* the event kind */
    size_t type_len;
    const char *payload; /* JSON text */
    size_t payload_len;
    const char *metadata; /* JSON text, or NULL when unmapped or SQL NULL */
    size_t metadata_len;
    const char *created_at; /* RFC 3339 in UTC, microseconds: 2026-11-26T04:12:53.123456Z */
    int64_t version;        /* the aggregate version; meaningful only when has_version */
    int has_version;
    uint32_t flags; /* RELAY_SINK_EVENT_* */
    /* The event's public id as text (source.columns.event_id, any SQL type: a uuid, say); the
     * ordering id in decimal when that is not mapped (or NULL in the row), and then flags has
     * RELAY_SINK_EVENT_ID_IS_ID. Never NULL. */
    const char *event_id;
    size_t event_id_len;
    /* The kind of aggregate (source.columns.aggregate_type), what Debezium's outbox router
     * routes by; NULL when unmapped or SQL NULL. */
    const char *aggregate_type;
    size_t aggregate_type_len;
    /* The columns of source.columns.headers, in the configured order. */
    const relay_sink_header *headers;
    size_t n_headers;
} relay_sink_event;

/* The event is delivered after events with higher ids: its transaction committed late (it filled a
 * gap the relay was watching). Sinks should pass this on (a header, a field). */
#define RELAY_SINK_EVENT_LATE 0x1u
/* event_id is the ordering id in decimal: a sink whose output carries id already need not write
 * it twice, nor compare the two to know. (A flag bit added within ABI 2: older sinks ignore it.) */
#define RELAY_SINK_EVENT_ID_IS_ID 0x2u
/* The row's key, type or created_at is SQL NULL; the string is then "" (older sinks see an empty
 * string, as before these flags came within ABI 2): a sink that can say null says null. */
#define RELAY_SINK_EVENT_KEY_NULL 0x4u
#define RELAY_SINK_EVENT_TYPE_NULL 0x8u
#define RELAY_SINK_EVENT_CREATED_AT_NULL 0x10u
/* The event was delivered before and goes again because an operator asked: `outbox-relay
 * dead-letters retry` (its destination had refused it) or `outbox-relay replay` (a consumer lost
 * it). Sinks should pass this on (a header, a field), so that a consumer can tell a deliberate
 * redelivery from the first one. (A flag bit added within ABI 2: older sinks ignore it.) */
#define RELAY_SINK_EVENT_REDELIVERED 0x20u

typedef struct relay_sink_batch {
    const void *events; /* count events, event_size bytes apart, in ascending id order */
    size_t count;
    size_t event_size; /* the relay's sizeof(relay_sink_event) */
} relay_sink_batch;

/* The i-th event of a batch (i < count), whatever size of relay_sink_event either side knows. */
static inline const relay_sink_event *relay_sink_batch_event(const relay_sink_batch *batch,
                                                             size_t i)
{
    return (const relay_sink_event *)(const void *)((const char *)batch->events +
                                                    i * batch->event_size);
}

/* Services the relay offers a sink; valid from init() until destroy() returns. */
typedef struct relay_sink_host {
    uint32_t abi_version;
    uint32_t struct_size; /* the relay's sizeof(relay_sink_host): see RELAY_SINK_HAS */
    void *ctx;
    /* Logs through the relay's logger (its format, level and stream). Never pass secrets. */
    void (*log)(void *ctx, relay_sink_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /*
     * Reports that the destination refuses an event for good (too large, invalid), from deliver()
     * or flush(). The event then counts as handled: flush() returns OK once every other event is
     * accepted, and the relay applies its policy (sink.on_reject): stop with the event named, the
     * position just before it, or record it in relay_dead_letters with the position and go on.
     * Never use it for a failure that retrying could cure: that is RELAY_SINK_RETRY.
     */
    void (*reject)(void *ctx, int64_t event_id, const char *reason);
    /*
     * Appended within ABI 2 (check RELAY_SINK_HAS before calling). A sink whose deliver() or
     * flush() waits calls it at least every 100 ms of the wait: the relay keeps its systemd
     * watchdog fed meanwhile (a flush may wait longer than WatchdogSec), and a nonzero return
     * means that the relay is stopping: return RELAY_SINK_RETRY within a second, without waiting
     * out the timeout. The relay stores no position for a batch that did not come back OK.
     */
    int (*waiting)(void *ctx);
    /*
     * Appended within ABI 2 (check RELAY_SINK_HAS before calling). Sets a gauge of the sink's
     * own that the relay's metrics endpoint shows as outbox_relay_sink_<name>{relay="..."}, say
     * the messages a broker has not acknowledged yet. name: 1 to 63 of [a-z0-9_]; help: one line.
     * A sink has room for 8; a name refused is logged once. Call it from deliver() or flush(),
     * on the relay's thread, as often as the value changes: it costs a copy.
     */
    void (*report_metric)(void *ctx, const char *name, const char *help, double value);
} relay_sink_host;

typedef struct relay_sink_api {
    uint32_t abi_version; /* RELAY_SINK_ABI_VERSION */
    uint32_t struct_size; /* sizeof(relay_sink_api) */
    const char *name;

    /* Creates the sink's state from its options. On failure returns RETRY or FATAL and writes a
     * message into err (NUL-terminated, at most errlen bytes); *state is then ignored. A reload
     * of the relay's configuration that changes the options calls init again while the old
     * state still exists (nothing of it is pending: the relay flushed it, or will hand its
     * events over again), and destroys the old state only once the new init succeeded; so two
     * states of a sink may exist at once, for the length of an init. */
    relay_sink_status (*init)(const relay_sink_host *host, const relay_sink_option *options,
                              size_t n_options, void **state, char *err, size_t errlen);

    /* Hands a batch over. May only enqueue; durability is flush()'s job. */
    relay_sink_status (*deliver)(void *state, const relay_sink_batch *batch, char *err,
                                 size_t errlen);

    /* Waits at most timeout_ms for everything delivered so far to be durably accepted. Returns OK
     * only when it is; a timeout is RETRY. */
    relay_sink_status (*flush)(void *state, int timeout_ms, char *err, size_t errlen);

    /* Releases the state. Called once, after the last flush, and only after a successful init()
     * that set a non-NULL state. */
    void (*destroy)(void *state);

    /* Callbacks appended later go here; the relay calls one only when struct_size covers it. */

    /* Appended within ABI 2; may be NULL. Reaches the destination end to end within timeout_ms,
     * as `outbox-relay check` wants to know before an operator relies on it (a broker that
     * answers, credentials it accepts, the topics it has): OK, or RETRY / FATAL with the cause in
     * err. Delivers nothing. */
    relay_sink_status (*check)(void *state, int timeout_ms, char *err, size_t errlen);
} relay_sink_api;

/* The smallest struct_size the relay accepts: up to the last callback every sink must have. */
#define RELAY_SINK_API_MIN_SIZE (offsetof(relay_sink_api, destroy) + sizeof(void (*)(void *)))

typedef const relay_sink_api *(*relay_sink_entry_fn)(void);

#if defined(__GNUC__)
#define RELAY_SINK_EXPORT __attribute__((visibility("default")))
#else
#define RELAY_SINK_EXPORT
#endif

/* Each sink defines this (exported even when the module hides its other symbols). */
RELAY_SINK_EXPORT const relay_sink_api *RELAY_SINK_ENTRY(void);

#ifdef __cplusplus
}
#endif

#endif
