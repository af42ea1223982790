/*
 * The Kafka sink end to end: the real relay binary with the kafka plugin, a real PostgreSQL, and
 * librdkafka's mock cluster running inside this test process, speaking the Kafka protocol over
 * TCP. The test injects the faults (brokers down, produce errors) and reads the topics back with a
 * consumer of its own, so every assertion is about what actually reached "Kafka".
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../harness/harness.h"

/* Created outside any safety margin, so that the relay may deliver at once. */
#define LONG_AGO "now() - interval '1 hour'"
/* Relays lock their name database-wide: each test names its relay after its own schema. */
#define RELAY_NAME scope.schema

/* The protocol's ApiKey of ProduceRequest; librdkafka's constant for it is in a private header. */
#define KAFKA_API_PRODUCE 0
#define BROKERS 3

/* One message as the test's consumer received it, every field copied out of librdkafka. */
typedef struct kt_header {
    char *name;
    char *value; /* NUL-terminated copy; NULL for a null header */
} kt_header;

typedef struct kt_message {
    char *topic;
    int32_t partition;
    int64_t offset;
    char *key; /* NUL-terminated copies; NULL when the message has none */
    char *value;
    kt_header *headers;
    size_t n_headers;
    int64_t id; /* from the "id" header; -1 when there is none or it is not a number */
} kt_message;

/* A mock cluster and a consumer reading every partition of its topics from the beginning. */
typedef struct kt_cluster {
    rd_kafka_t *owner; /* the handle the mock cluster lives in */
    rd_kafka_mock_cluster_t *mock;
    rd_kafka_t *consumer;
    kt_message *messages; /* in arrival order, so in offset order within a partition */
    size_t n_messages, cap_messages;
    unsigned *id_seen; /* id_seen[id]: how many messages carried that id */
    size_t id_cap;
} kt_cluster;

/* Criterion can only hand fixtures over through file scope; each test runs in its own process. */
static th_scope scope;
static kt_cluster kafka;

/* ---- the mock cluster and the consumer --------------------------------------------------- */

static void kt_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        cr_assert_fail("librdkafka property %s=%s: %s", name, value, err);
}

/* Brokers going down is what several tests do on purpose: the consumer's complaints about it are
 * noise. A real problem shows as messages missing, which the tests check. */
static void kt_ignore_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)err;
    (void)reason;
    (void)opaque;
}

static rd_kafka_t *kt_new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cr_assert_fail("rd_kafka_new: %s", err);
    }
    return rk;
}

/* Starts a cluster of BROKERS brokers with the given topics, each of `partitions` partitions
 * replicated on every broker, and a consumer assigned to all of them from the beginning. */
static void kt_cluster_start(kt_cluster *k, const char *const *topics, size_t n_topics,
                             int partitions)
{
    memset(k, 0, sizeof *k);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* It has no brokers of its own, and says so at notice level. */
    kt_set(conf, "log_level", "4");
    k->owner = kt_new_client(RD_KAFKA_PRODUCER, conf);
    k->mock = rd_kafka_mock_cluster_new(k->owner, BROKERS);
    cr_assert_not_null(k->mock, "cannot create the mock cluster");
    for (size_t i = 0; i < n_topics; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(k->mock, topics[i], partitions, BROKERS);
        cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "cannot create topic %s: %s", topics[i],
                     rd_kafka_err2str(err));
    }

    conf = rd_kafka_conf_new();
    kt_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(k->mock));
    /* A group only because librdkafka's consumer API wants one; nothing is ever committed, and
     * assign() (not subscribe()) never joins it. */
    char group[64];
    snprintf(group, sizeof group, "test-kafka-%ld", (long)getpid());
    kt_set(conf, "group.id", group);
    kt_set(conf, "enable.auto.commit", "false");
    kt_set(conf, "enable.auto.offset.store", "false");
    /* Reconnect soon after a broker comes back, so tests of outages do not wait for backoff. */
    kt_set(conf, "reconnect.backoff.max.ms", "200");
    kt_set(conf, "log_level", "2");
    rd_kafka_conf_set_error_cb(conf, kt_ignore_error);
    k->consumer = kt_new_client(RD_KAFKA_CONSUMER, conf);

    rd_kafka_topic_partition_list_t *assignment =
        rd_kafka_topic_partition_list_new((int)n_topics * partitions);
    for (size_t i = 0; i < n_topics; i++) {
        for (int p = 0; p < partitions; p++)
            rd_kafka_topic_partition_list_add(assignment, topics[i], p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(k->consumer, assignment);
    rd_kafka_topic_partition_list_destroy(assignment);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "assign: %s", rd_kafka_err2str(err));
}

static void kt_message_free(kt_message *m)
{
    free(m->topic);
    free(m->key);
    free(m->value);
    for (size_t i = 0; i < m->n_headers; i++) {
        free(m->headers[i].name);
        free(m->headers[i].value);
    }
    free(m->headers);
}

/* Safe on a zeroed cluster and when called twice. */
static void kt_cluster_free(kt_cluster *k)
{
    if (k->consumer) {
        rd_kafka_consumer_close(k->consumer);
        rd_kafka_destroy(k->consumer);
    }
    if (k->mock)
        rd_kafka_mock_cluster_destroy(k->mock);
    if (k->owner)
        rd_kafka_destroy(k->owner);
    /* librdkafka's threads end asynchronously; leak checkers must not find them half-way. */
    if (k->consumer || k->owner)
        rd_kafka_wait_destroyed(10000);
    for (size_t i = 0; i < k->n_messages; i++)
        kt_message_free(&k->messages[i]);
    free(k->messages);
    free(k->id_seen);
    memset(k, 0, sizeof *k);
}

static void *kt_xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        cr_assert_fail("out of memory");
    return p;
}

static char *kt_copy(const void *bytes, size_t len)
{
    if (!bytes)
        return NULL;
    char *out = kt_xrealloc(NULL, len + 1);
    memcpy(out, bytes, len);
    out[len] = '\0';
    return out;
}

static const kt_header *kt_find_header(const kt_message *m, const char *name, size_t *count)
{
    const kt_header *first = NULL;
    *count = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        if (strcmp(m->headers[i].name, name) == 0) {
            first = first ? first : &m->headers[i];
            (*count)++;
        }
    }
    return first;
}

static int64_t kt_parse_id(const kt_message *m)
{
    size_t count;
    const kt_header *h = kt_find_header(m, "id", &count);
    if (!h || !h->value || !*h->value)
        return -1;
    char *end;
    long long id = strtoll(h->value, &end, 10);
    return *end == '\0' && id > 0 ? (int64_t)id : -1;
}

static void kt_count_id(kt_cluster *k, int64_t id)
{
    if (id < 0)
        return;
    if ((size_t)id >= k->id_cap) {
        size_t cap = k->id_cap ? k->id_cap : 1024;
        while (cap <= (size_t)id)
            cap *= 2;
        k->id_seen = kt_xrealloc(k->id_seen, cap * sizeof *k->id_seen);
        memset(k->id_seen + k->id_cap, 0, (cap - k->id_cap) * sizeof *k->id_seen);
        k->id_cap = cap;
    }
    k->id_seen[id]++;
}

static void kt_store(kt_cluster *k, const rd_kafka_message_t *rkm)
{
    if (k->n_messages == k->cap_messages) {
        k->cap_messages = k->cap_messages ? k->cap_messages * 2 : 256;
        k->messages = kt_xrealloc(k->messages, k->cap_messages * sizeof *k->messages);
    }
    kt_message *m = &k->messages[k->n_messages++];
    memset(m, 0, sizeof *m);
    m->topic = strdup(rd_kafka_topic_name(rkm->rkt));
    m->partition = rkm->partition;
    m->offset = rkm->offset;
    m->key = kt_copy(rkm->key, rkm->key_len);
    m->value = kt_copy(rkm->payload, rkm->len);
    rd_kafka_headers_t *headers = NULL;
    if (rd_kafka_message_headers(rkm, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t n = rd_kafka_header_cnt(headers);
        m->headers = kt_xrealloc(NULL, (n ? n : 1) * sizeof *m->headers);
        const char *name;
        const void *value;
        size_t size;
        while (rd_kafka_header_get_all(headers, m->n_headers, &name, &value, &size) ==
               RD_KAFKA_RESP_ERR_NO_ERROR) {
            m->headers[m->n_headers].name = strdup(name);
            m->headers[m->n_headers].value = kt_copy(value, size);
            m->n_headers++;
        }
    }
    m->id = kt_parse_id(m);
    kt_count_id(k, m->id);
}

/* Takes in whatever the consumer has received by now, without waiting. */
static void kt_collect(kt_cluster *k)
{
    rd_kafka_message_t *rkm;
    while ((rkm = rd_kafka_consumer_poll(k->consumer, 0)) != NULL) {
        /* Error events (a broker down, a partition at its end) carry no message. */
        if (!rkm->err)
            kt_store(k, rkm);
        rd_kafka_message_destroy(rkm);
    }
}

static unsigned kt_times_seen(const kt_cluster *k, int64_t id)
{
    return id >= 0 && (size_t)id < k->id_cap ? k->id_seen[id] : 0;
}

static int64_t kt_highest_id(const kt_cluster *k)
{
    for (size_t id = k->id_cap; id-- > 0;) {
        if (k->id_seen[id])
            return (int64_t)id;
    }
    return 0;
}

typedef struct kt_ids_goal {
    kt_cluster *kafka;
    int64_t first, last;
} kt_ids_goal;

static bool kt_has_ids(void *arg)
{
    kt_ids_goal *goal = arg;
    kt_collect(goal->kafka);
    for (int64_t id = goal->first; id <= goal->last; id++) {
        if (!kt_times_seen(goal->kafka, id))
            return false;
    }
    return true;
}

/* Waits until the consumer has seen every id of first..last at least once. */
static void kt_wait_ids(kt_cluster *k, int64_t first, int64_t last)
{
    kt_ids_goal goal = {k, first, last};
    char what[128];
    snprintf(what, sizeof what, "ids %" PRId64 "..%" PRId64 " on Kafka", first, last);
    th_wait_until(&scope, TH_DEADLINE_MS, kt_has_ids, &goal, what);
}

/* Every partition of topic led by broker 1, so that errors pushed onto broker 1 meet every
 * ProduceRequest for it. */
static void kt_lead_on_broker_1(kt_cluster *k, const char *topic, int partitions)
{
    for (int p = 0; p < partitions; p++)
        cr_assert_eq(rd_kafka_mock_partition_set_leader(k->mock, topic, p, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
}

static size_t kt_produce_errors_left(kt_cluster *k, int32_t broker)
{
    size_t count = 0;
    cr_assert_eq(rd_kafka_mock_broker_error_stack_cnt(k->mock, broker, KAFKA_API_PRODUCE, &count),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    return count;
}

/* ---- the relay --------------------------------------------------------------------------- */

static void setup(void)
{
    th_scope_new(&scope);
}

static void teardown(void)
{
    /* The relay first: it is a client of the cluster. */
    th_scope_free(&scope);
    kt_cluster_free(&kafka);
}

TestSuite(kafka, .init = setup, .fini = teardown, .timeout = 120);

/*
 * A config for the kafka sink producing to the test's cluster. topic is the topic template;
 * source_extra, sink_extra, options_extra and properties_extra are more YAML lines (each ending in
 * a newline, or empty) under source (indent 2), sink (indent 2), sink.options (indent 4) and
 * sink.options.properties (indent 6).
 */
static void write_kafka_config_source(char path[TH_PATH_MAX], const char *source_extra,
                                      int batch_size, const char *topic, const char *sink_extra,
                                      const char *options_extra, const char *properties_extra)
{
    th_write_config(&scope, path,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  safety_margin: 1s\n"
                    "  batch_size: %d\n"
                    "  poll_interval: 50ms\n"
                    "%s"
                    "sink:\n"
                    "  plugin: kafka\n"
                    "%s"
                    "  options:\n"
                    "    topic: \"%s\"\n"
                    "%s"
                    "    properties:\n"
                    "      bootstrap.servers: \"%s\"\n"
                    "      reconnect.backoff.max.ms: 200\n"
                    "%s"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 500ms\n",
                    RELAY_NAME, scope.conninfo_yaml, batch_size, source_extra, sink_extra, topic,
                    options_extra, rd_kafka_mock_cluster_bootstraps(kafka.mock), properties_extra);
}

/* The same with the usual source (the events table, its default columns). */
static void write_kafka_config(char path[TH_PATH_MAX], int batch_size, const char *topic,
                               const char *sink_extra, const char *options_extra,
                               const char *properties_extra)
{
    write_kafka_config_source(path, "", batch_size, topic, sink_extra, options_extra,
                              properties_extra);
}

/* Events id first.. on 10 aggregates ("order-0".."order-9") and the three kinds by turn, so every
 * (kind, aggregate) pair gets several events. Every fifth has no metadata; the others carry
 * {"trace": "t-N", "secret": "s-N"}. */
static void insert_events(int n)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body, "
             "metadata, created_at) "
             "SELECT 'order-' || g %% 10, 'order', g, "
             "(ARRAY['created', 'updated', 'shipped'])[g %% 3 + 1], "
             "jsonb_build_object('n', g, 'note', 'say \"' || g || '\" ünï ☃'), "
             "CASE WHEN g %% 5 = 0 THEN NULL "
             "ELSE jsonb_build_object('trace', 't-' || g, 'secret', 's-' || g) END, " LONG_AGO
             " + g * interval '1 microsecond' "
             "FROM (SELECT coalesce(max(id), 0) AS base FROM events) b, "
             "generate_series(b.base + 1, b.base + %d) g ORDER BY g",
             n);
    th_exec(scope.conn, sql);
}

static int64_t max_event_id(void)
{
    return th_query_int64(scope.conn, "SELECT max(id) FROM events");
}

/* Whether text names the event id: the number, not a prefix of a longer one. */
static bool names_event(const char *text, int64_t id)
{
    char needle[32];
    int len = snprintf(needle, sizeof needle, "event %" PRId64, id);
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
        if (p[len] < '0' || p[len] > '9')
            return true;
    }
    return false;
}

typedef struct text_goal {
    const char *path;
    const char *needle;
} text_goal;

static bool file_contains(void *arg)
{
    text_goal *goal = arg;
    char *text = th_read_file(goal->path, NULL);
    bool found = strstr(text, goal->needle) != NULL;
    free(text);
    return found;
}

/* ---- routing, keys, headers, order -------------------------------------------------------- */

static const char *const TYPE_TOPICS[] = {"events.created", "events.updated", "events.shipped"};
#define N_TYPE_TOPICS (sizeof TYPE_TOPICS / sizeof TYPE_TOPICS[0])
static const char *const ORDERS_TOPIC[] = {"orders"};

/* The event a message carries, for failure messages: its id header's text (a number, a uuid). */
static const char *kt_event_name(const kt_message *m)
{
    size_t count;
    const kt_header *h = kt_find_header(m, "id", &count);
    return h && h->value ? h->value : "(no id)";
}

/* Asserts that header name of m appears once with the value expected, or not at all when
 * expected is NULL. */
static void assert_header(const kt_message *m, const char *name, const char *expected)
{
    size_t count;
    const kt_header *h = kt_find_header(m, name, &count);
    if (!expected) {
        cr_assert_eq(count, 0, "event %s: header %s present (\"%s\"), expected none",
                     kt_event_name(m), name, h && h->value ? h->value : "(null)");
        return;
    }
    cr_assert_eq(count, 1, "event %s: header %s appears %zu times", kt_event_name(m), name, count);
    cr_assert(h->value && strcmp(h->value, expected) == 0,
              "event %s: header %s is \"%s\", expected \"%s\"", kt_event_name(m), name,
              h->value ? h->value : "(null)", expected);
}

Test(kafka, routing_keys_headers_order)
{
    const int64_t n_events = 300;
    kt_cluster_start(&kafka, TYPE_TOPICS, N_TYPE_TOPICS, 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 64, "events.${type}", "  flush_timeout: 10s\n",
                       "    metadata_headers: trace\n", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_events((int)n_events);
    cr_assert_eq(max_event_id(), n_events);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, n_events);
    kt_wait_ids(&kafka, 1, n_events);
    th_relay_stop(&scope, pid);
    cr_assert_eq(th_position(&scope, RELAY_NAME), n_events);
    kt_collect(&kafka);

    /* The expected fields, as PostgreSQL renders them, row i for id i + 1. */
    PGresult *res =
        PQexec(scope.conn, "SELECT id, aggregate_id, kind, aggregate_version, body::text, "
                           "metadata->>'trace', "
                           "to_char(created_at AT TIME ZONE 'UTC', "
                           "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
                           "FROM events ORDER BY id");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(scope.conn));
    cr_assert_eq(PQntuples(res), n_events);

    /* No fault, no retry: each event exactly once. */
    cr_assert_eq((int64_t)kafka.n_messages, n_events, "%zu messages for %" PRId64 " events",
                 kafka.n_messages, n_events);
    for (size_t i = 0; i < kafka.n_messages; i++) {
        const kt_message *m = &kafka.messages[i];
        cr_assert(m->id >= 1 && m->id <= n_events, "%s [%" PRId32 "] @%" PRId64 ": no valid id",
                  m->topic, m->partition, m->offset);
        cr_assert_eq(kt_times_seen(&kafka, m->id), 1, "event %" PRId64 " arrived %u times", m->id,
                     kt_times_seen(&kafka, m->id));
        int row = (int)(m->id - 1);
        const char *kind = PQgetvalue(res, row, 2);
        char topic[64];
        snprintf(topic, sizeof topic, "events.%s", kind);
        cr_assert_str_eq(m->topic, topic, "event %" PRId64 " on %s, expected %s", m->id, m->topic,
                         topic);
        cr_assert(m->key && strcmp(m->key, PQgetvalue(res, row, 1)) == 0,
                  "event %" PRId64 ": key \"%s\", expected \"%s\"", m->id,
                  m->key ? m->key : "(none)", PQgetvalue(res, row, 1));
        cr_assert(m->value && strcmp(m->value, PQgetvalue(res, row, 4)) == 0,
                  "event %" PRId64 ":\n  value    %s\n  expected %s", m->id,
                  m->value ? m->value : "(none)", PQgetvalue(res, row, 4));
        assert_header(m, "id", PQgetvalue(res, row, 0));
        assert_header(m, "type", kind);
        assert_header(m, "version", PQgetvalue(res, row, 3));
        assert_header(m, "created_at", PQgetvalue(res, row, 6));
        assert_header(m, "trace", PQgetisnull(res, row, 5) ? NULL : PQgetvalue(res, row, 5));
        /* Only the listed metadata fields become headers. */
        assert_header(m, "secret", NULL);

        /* Per key (within its topic): the same partition as its predecessor, after it both in
         * the partition's log and by id. */
        for (size_t j = i; j-- > 0;) {
            const kt_message *prev = &kafka.messages[j];
            if (strcmp(prev->topic, m->topic) != 0 || strcmp(prev->key, m->key) != 0)
                continue;
            cr_assert_eq(prev->partition, m->partition,
                         "key %s on %s: event %" PRId64 " on partition %" PRId32 ", event %" PRId64
                         " on %" PRId32,
                         m->key, m->topic, prev->id, prev->partition, m->id, m->partition);
            cr_assert(prev->offset < m->offset && prev->id < m->id,
                      "key %s on %s: event %" PRId64 " (offset %" PRId64 ") after event %" PRId64
                      " (offset %" PRId64 ")",
                      m->key, m->topic, m->id, m->offset, prev->id, prev->offset);
            break;
        }
    }
    /* The check for absent metadata headers was exercised. */
    cr_assert_gt(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE metadata IS NULL"),
                 0);
    PQclear(res);
}

/* ---- columns passed as headers ----------------------------------------------------------- */

Test(kafka, column_headers_become_message_headers)
{
    const int64_t n_events = 60;
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config_source(config, "  columns:\n    headers: [tenant_id, trace_id]\n", 100,
                              "orders", "", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    th_exec(scope.conn, "ALTER TABLE events ADD COLUMN tenant_id text, ADD COLUMN trace_id uuid");
    insert_events((int)n_events);
    /* Some of each NULL, some both, one tenant the empty string (not NULL: a header it is). */
    th_exec(scope.conn, "UPDATE events SET "
                        "tenant_id = CASE WHEN id % 3 = 0 THEN NULL WHEN id = 5 THEN '' "
                        "ELSE 'tenant-' || id % 2 || ' ☃' END, "
                        "trace_id = CASE WHEN id % 4 = 0 THEN NULL "
                        "ELSE md5('trace-' || id)::uuid END");

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, n_events);
    kt_wait_ids(&kafka, 1, n_events);
    th_relay_stop(&scope, pid);
    kt_collect(&kafka);

    PGresult *res = PQexec(scope.conn, "SELECT id, tenant_id, trace_id::text, kind FROM events "
                                       "ORDER BY id");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(scope.conn));
    cr_assert_eq(PQntuples(res), n_events);
    cr_assert_eq((int64_t)kafka.n_messages, n_events, "%zu messages for %" PRId64 " events",
                 kafka.n_messages, n_events);
    for (size_t i = 0; i < kafka.n_messages; i++) {
        const kt_message *m = &kafka.messages[i];
        /* The id header is still the ordering id: source.columns.event_id is not mapped. */
        cr_assert(m->id >= 1 && m->id <= n_events, "message %zu: id header \"%s\" is not an id", i,
                  kt_event_name(m));
        cr_assert_eq(kt_times_seen(&kafka, m->id), 1, "event %" PRId64 " arrived %u times", m->id,
                     kt_times_seen(&kafka, m->id));
        int row = (int)(m->id - 1);
        assert_header(m, "id", PQgetvalue(res, row, 0));
        assert_header(m, "tenant_id", PQgetisnull(res, row, 1) ? NULL : PQgetvalue(res, row, 1));
        assert_header(m, "trace_id", PQgetisnull(res, row, 2) ? NULL : PQgetvalue(res, row, 2));
        assert_header(m, "type", PQgetvalue(res, row, 3));
    }
    PQclear(res);
    /* Every case was exercised: a value, NULL, and the empty string. */
    cr_assert_gt(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE tenant_id IS NULL "
                                            "AND trace_id IS NOT NULL"),
                 0);
    cr_assert_gt(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE trace_id IS NULL "
                                            "AND tenant_id IS NOT NULL"),
                 0);
    cr_assert_gt(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE trace_id IS NULL "
                                            "AND tenant_id IS NULL"),
                 0);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE tenant_id = ''"), 1);
}

/* ---- Debezium's outbox table -------------------------------------------------------------- */

/* The table Debezium's outbox event router reads (its documentation's DDL, unchanged). */
#define DEBEZIUM_OUTBOX_TABLE                                                                      \
    "CREATE TABLE outbox (id uuid NOT NULL PRIMARY KEY, aggregatetype varchar(255) NOT NULL, "     \
    "aggregateid varchar(255) NOT NULL, type varchar(255) NOT NULL, payload jsonb)"
/* What a user adds for the relay: an ordering id and a creation time, both filled by the database,
 * so the application's INSERT stays as it is; and the index the relay reads the ordering id by. */
#define DEBEZIUM_OUTBOX_ALTER                                                                      \
    "ALTER TABLE outbox ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY, "                      \
    "ADD COLUMN created_at timestamptz NOT NULL DEFAULT clock_timestamp();"                        \
    "CREATE UNIQUE INDEX ON outbox (seq)"
/* The relay's source for it, in what the router's consumers expect: topic
 * outbox.event.<aggregatetype>, key aggregateid, header id the uuid, value the payload. */
#define DEBEZIUM_OUTBOX_SOURCE                                                                     \
    "  table: outbox\n"                                                                            \
    "  columns: {id: seq, event_id: id, key: aggregateid, type: type,"                             \
    " aggregate_type: aggregatetype, payload: payload, created_at: created_at,"                    \
    " version: ~, metadata: ~}\n"

static const char *const DEBEZIUM_TOPICS[] = {"outbox.event.Order", "outbox.event.Customer",
                                              "outbox.event.Shipment"};
#define N_DEBEZIUM_TOPICS (sizeof DEBEZIUM_TOPICS / sizeof DEBEZIUM_TOPICS[0])

/* Rows g = first..first + n - 1, created long ago: the three aggregate types by turn, four
 * aggregates of each, so every aggregate gets several events; every tenth payload is NULL. */
static void insert_outbox(int first, int n)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, created_at) "
             "SELECT gen_random_uuid(), t, lower(t) || '-' || (g / 3) %% 4, "
             "t || CASE WHEN g %% 2 = 0 THEN 'Created' ELSE 'Updated' END, "
             "CASE WHEN g %% 10 = 7 THEN NULL ELSE jsonb_build_object('n', g, 'note', "
             "'say \"' || g || '\" ünï ☃', 'items', jsonb_build_array(1, 2.50, true, null)) "
             "END, " LONG_AGO " + g * interval '1 microsecond' "
             "FROM generate_series(%d, %d) g, "
             "LATERAL (SELECT (ARRAY['Order', 'Customer', 'Shipment'])[g %% 3 + 1] AS t) a "
             "ORDER BY g",
             first, first + n - 1);
    th_exec(scope.conn, sql);
}

typedef struct count_goal {
    size_t want;
} count_goal;

static bool kt_has_count(void *arg)
{
    count_goal *goal = arg;
    kt_collect(&kafka);
    return kafka.n_messages >= goal->want;
}

Test(kafka, debezium_outbox_table_drops_in)
{
    kt_cluster_start(&kafka, DEBEZIUM_TOPICS, N_DEBEZIUM_TOPICS, 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config_source(config, DEBEZIUM_OUTBOX_SOURCE, 16, "outbox.event.${aggregate_type}",
                              "  flush_timeout: 10s\n", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    th_exec(scope.conn, DEBEZIUM_OUTBOX_TABLE);
    th_exec(scope.conn, DEBEZIUM_OUTBOX_ALTER);

    char *check_out, *check_err;
    int code = th_run_cli(&check_out, &check_err, "check", "-c", config);
    cr_assert_eq(code, 0, "check exited %d:\n%s", code, check_err);
    free(check_out);
    free(check_err);

    insert_outbox(1, 45);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, th_query_int64(scope.conn, "SELECT max(seq) FROM outbox"));
    /* More while it runs; the last ones as the application writes them, naming Debezium's columns
     * only (created_at is now, so these wait out the safety margin). */
    insert_outbox(46, 30);
    th_exec(scope.conn, "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES "
                        "(gen_random_uuid(), 'Order', 'order-1', 'OrderShipped', "
                        "'{\"live\": true, \"at\": \"2026-01-01\"}'), "
                        "(gen_random_uuid(), 'Customer', 'customer-2', 'CustomerDeleted', NULL)");
    int64_t last = th_query_int64(scope.conn, "SELECT max(seq) FROM outbox");
    th_wait_position(&scope, RELAY_NAME, last);

    PGresult *res = PQexec(scope.conn, "SELECT id::text, seq, aggregatetype, aggregateid, type, "
                                       "payload::text FROM outbox ORDER BY seq");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(scope.conn));
    int n_rows = PQntuples(res);
    cr_assert_eq(n_rows, 77);
    count_goal goal = {(size_t)n_rows};
    th_wait_until(&scope, TH_DEADLINE_MS, kt_has_count, &goal, "every outbox row on Kafka");
    th_relay_stop(&scope, pid);
    cr_assert_eq(th_position(&scope, RELAY_NAME), last);
    kt_collect(&kafka);

    /* No fault, no retry: each row exactly once. */
    cr_assert_eq(kafka.n_messages, (size_t)n_rows, "%zu messages for %d rows", kafka.n_messages,
                 n_rows);
    int *row_of = calloc(kafka.n_messages, sizeof *row_of);
    unsigned *seen = calloc((size_t)n_rows, sizeof *seen);
    cr_assert(row_of && seen);
    for (size_t i = 0; i < kafka.n_messages; i++) {
        const kt_message *m = &kafka.messages[i];
        const char *uuid = kt_event_name(m);
        int row = -1;
        for (int r = 0; r < n_rows && row < 0; r++)
            row = strcmp(PQgetvalue(res, r, 0), uuid) == 0 ? r : -1;
        cr_assert_geq(row, 0, "%s [%" PRId32 "] @%" PRId64 ": id header \"%s\" is no row's id",
                      m->topic, m->partition, m->offset, uuid);
        cr_assert_eq(seen[row]++, 0, "row %s arrived twice", uuid);
        row_of[i] = row;
        assert_header(m, "id", PQgetvalue(res, row, 0));
        assert_header(m, "type", PQgetvalue(res, row, 4));

        char topic[300];
        snprintf(topic, sizeof topic, "outbox.event.%s", PQgetvalue(res, row, 2));
        cr_assert_str_eq(m->topic, topic, "event %s on %s, expected %s", uuid, m->topic, topic);
        cr_assert(m->key && strcmp(m->key, PQgetvalue(res, row, 3)) == 0,
                  "event %s: key \"%s\", expected \"%s\"", uuid, m->key ? m->key : "(none)",
                  PQgetvalue(res, row, 3));
        /* The payload as PostgreSQL renders jsonb. A NULL payload goes out as the 4 bytes of the
         * JSON text null (source.c), where Debezium's router sends a message without a value (a
         * tombstone; so documented with route.tombstone.on.empty.payload). */
        const char *payload = PQgetisnull(res, row, 5) ? "null" : PQgetvalue(res, row, 5);
        cr_assert(m->value && strcmp(m->value, payload) == 0,
                  "event %s:\n  value    %s\n  expected %s", uuid, m->value ? m->value : "(none)",
                  payload);

        /* Per aggregate (key within its topic): the same partition as its predecessor, after it
         * both in the partition's log and by seq. */
        for (size_t j = i; j-- > 0;) {
            const kt_message *prev = &kafka.messages[j];
            if (strcmp(prev->topic, m->topic) != 0 || strcmp(prev->key, m->key) != 0)
                continue;
            int64_t prev_seq = strtoll(PQgetvalue(res, row_of[j], 1), NULL, 10);
            int64_t seq = strtoll(PQgetvalue(res, row, 1), NULL, 10);
            cr_assert_eq(prev->partition, m->partition,
                         "aggregate %s on %s: seq %" PRId64 " on partition %" PRId32
                         ", seq %" PRId64 " on %" PRId32,
                         m->key, m->topic, prev_seq, prev->partition, seq, m->partition);
            cr_assert(prev->offset < m->offset && prev_seq < seq,
                      "aggregate %s on %s: seq %" PRId64 " (offset %" PRId64 ") after seq %" PRId64
                      " (offset %" PRId64 ")",
                      m->key, m->topic, seq, m->offset, prev_seq, prev->offset);
            break;
        }
    }
    for (int r = 0; r < n_rows; r++)
        cr_assert_eq(seen[r], 1, "row %s (seq %s) arrived %u times", PQgetvalue(res, r, 0),
                     PQgetvalue(res, r, 1), seen[r]);
    free(row_of);
    free(seen);
    PQclear(res);
    /* The NULL payloads were exercised, and every topic. */
    cr_assert_geq(th_query_int64(scope.conn, "SELECT count(*) FROM outbox WHERE payload IS NULL"),
                  2);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(DISTINCT aggregatetype) FROM outbox"),
                 (int64_t)N_DEBEZIUM_TOPICS);
}

/* ---- brokers down ------------------------------------------------------------------------- */

typedef struct held_position {
    int64_t want;
} held_position;

static bool position_and_kafka_held(void *arg)
{
    held_position *h = arg;
    kt_collect(&kafka);
    return th_position(&scope, RELAY_NAME) == h->want && kt_highest_id(&kafka) <= h->want;
}

/* Stops waiting early too when the position moves: that is the failure to report. */
static bool sink_failed_or_moved(void *arg)
{
    return file_contains(arg) || th_position(&scope, RELAY_NAME) > 200;
}

Test(kafka, broker_down_no_loss)
{
    kt_cluster_start(&kafka, TYPE_TOPICS, N_TYPE_TOPICS, 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 50, "events.${type}", "  flush_timeout: 1s\n", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_events(200);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 200);
    kt_wait_ids(&kafka, 1, 200);

    /* Everything after this point is produced while no broker is up: none of it can be
     * acknowledged, so the position must stay exactly where it is. */
    cr_assert_eq(rd_kafka_mock_broker_set_down(kafka.mock, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    insert_events(200);
    text_goal failed = {err, "sink failed on events 201.."};
    th_wait_until(&scope, TH_DEADLINE_MS, sink_failed_or_moved, &failed,
                  "the relay to report the sink failing");
    cr_assert_eq(th_position(&scope, RELAY_NAME), 200,
                 "the position moved although no broker was up");
    /* Several flush timeouts and retries long. */
    held_position held = {200};
    th_hold_for(&scope, 3000, position_and_kafka_held, &held,
                "position at 200 and nothing new on Kafka while the brokers are down");

    cr_assert_eq(rd_kafka_mock_broker_set_up(kafka.mock, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    th_wait_position(&scope, RELAY_NAME, 400);
    kt_wait_ids(&kafka, 1, 400);
    th_relay_stop(&scope, pid);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 400);
}

/* ---- produce errors ---------------------------------------------------------------------- */

Test(kafka, produce_errors_retriable)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 3);
    kt_lead_on_broker_1(&kafka, "orders", 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    /* A flush timeout long enough for librdkafka's own retries: the relay should never see
     * these errors. */
    write_kafka_config(config, 100, "orders", "  flush_timeout: 15s\n", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_events(20);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 20);
    kt_wait_ids(&kafka, 1, 20);

    /* A leader that moved away and came back: librdkafka refreshes metadata and retries. */
    const size_t n_errors = 6;
    cr_assert_eq(
        rd_kafka_mock_broker_push_request_error_rtts(
            kafka.mock, 1, KAFKA_API_PRODUCE, n_errors, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            0, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 0, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    insert_events(100);
    th_wait_position(&scope, RELAY_NAME, 120);
    kt_wait_ids(&kafka, 1, 120);
    cr_assert_eq(kt_produce_errors_left(&kafka, 1), 0, "the injected errors were not all met");
    th_relay_stop(&scope, pid);

    char *text = th_read_file(err, NULL);
    cr_assert_null(strstr(text, "sink failed"),
                   "a retriable produce error reached the relay; stderr:\n%s", text);
    free(text);
}

typedef struct errors_window {
    int64_t before;
    bool moved_early;
} errors_window;

/* The errors on broker 1 meet its ProduceRequests one each, in order, so while any is left no
 * request sent since they were pushed has succeeded, and the position must not have moved. The
 * position is read first: had it moved before the count was read, the count must be zero. */
static bool errors_consumed(void *arg)
{
    errors_window *w = arg;
    int64_t position = th_position(&scope, RELAY_NAME);
    size_t left = kt_produce_errors_left(&kafka, 1);
    if (left > 0 && position > w->before)
        w->moved_early = true;
    return left == 0 || w->moved_early;
}

Test(kafka, produce_errors_fail_the_batch)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 3);
    kt_lead_on_broker_1(&kafka, "orders", 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "  flush_timeout: 1s\n", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_events(20);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 20);
    kt_wait_ids(&kafka, 1, 20);

    /* Errors librdkafka does not retry: each fails the delivery reports of a whole
     * ProduceRequest, and the messages are gone unless the relay hands them over again. A sink
     * that took a failed report for success would lose them. */
    const size_t n_errors = 4;
    cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(
                     kafka.mock, 1, KAFKA_API_PRODUCE, n_errors,
                     RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS, 0, RD_KAFKA_RESP_ERR_POLICY_VIOLATION,
                     0, RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS, 0,
                     RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS, 0),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    insert_events(100);
    errors_window window = {20, false};
    th_wait_until(&scope, TH_DEADLINE_MS, errors_consumed, &window,
                  "the injected produce errors to be met");
    cr_assert_not(window.moved_early, "the position moved while produce requests were failing");

    th_wait_position(&scope, RELAY_NAME, 120);
    kt_wait_ids(&kafka, 1, 120);
    th_relay_stop(&scope, pid);

    /* The relay said why, in the sink's words. */
    char *text = th_read_file(err, NULL);
    cr_assert(strstr(text, "sink failed on events 21..") != NULL,
              "no sink failure reported; stderr:\n%s", text);
    cr_assert(strstr(text, rd_kafka_err2str(RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS)) ||
                  strstr(text, rd_kafka_err2name(RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS)),
              "the sink's failure does not name the broker's error; stderr:\n%s", text);
    free(text);
}

Test(kafka, fatal_producer_error_recovers)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 3);
    kt_lead_on_broker_1(&kafka, "orders", 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "  flush_timeout: 1s\n", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_events(20);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 20);
    kt_wait_ids(&kafka, 1, 20);

    /* The broker claims the idempotent producer's sequence is broken: librdkafka raises a fatal
     * error and that producer instance refuses every later message. Only a new one gets on. */
    cr_assert_eq(
        rd_kafka_mock_broker_push_request_error_rtts(
            kafka.mock, 1, KAFKA_API_PRODUCE, 1, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, 0),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    insert_events(50);
    th_wait_position(&scope, RELAY_NAME, 70);
    kt_wait_ids(&kafka, 1, 70);
    cr_assert_eq(kt_produce_errors_left(&kafka, 1), 0, "the injected error was not met");
    insert_events(10);
    th_wait_position(&scope, RELAY_NAME, 80);
    kt_wait_ids(&kafka, 71, 80);
    th_relay_stop(&scope, pid);
}

/* ---- kill -9 ------------------------------------------------------------------------------ */

typedef struct position_window {
    int64_t above;
} position_window;

static bool position_moved(void *arg)
{
    position_window *w = arg;
    return th_position(&scope, RELAY_NAME) > w->above;
}

Test(kafka, kill9_restart)
{
    const int64_t n_events = 5000;
    kt_cluster_start(&kafka, TYPE_TOPICS, N_TYPE_TOPICS, 3);
    /* Slow brokers, so that the kill lands mid-stream. */
    cr_assert_eq(rd_kafka_mock_broker_set_rtt(kafka.mock, -1, 10), RD_KAFKA_RESP_ERR_NO_ERROR);
    char config[TH_PATH_MAX], err1[TH_PATH_MAX], err2[TH_PATH_MAX], out[TH_PATH_MAX];
    write_kafka_config(config, 100, "events.${type}", "  flush_timeout: 10s\n", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay1.err", err1);
    th_path(&scope, "relay2.err", err2);
    th_migrate(config);
    insert_events((int)n_events);

    pid_t first = th_relay_start(&scope, config, out, err1);
    position_window started = {0};
    th_wait_until(&scope, TH_DEADLINE_MS, position_moved, &started, "a first committed batch");
    th_relay_signal(first, SIGKILL);
    cr_assert_eq(th_relay_wait(&scope, first, TH_DEADLINE_MS), 128 + SIGKILL);
    /* Its backend may still be running a COMMIT it received before the kill. */
    th_wait_relay_sessions_gone(&scope);
    int64_t at_kill = th_position(&scope, RELAY_NAME);
    if (at_kill == n_events)
        cr_log_warn("the relay finished before the kill; the restart is not exercised");
    else
        cr_log_info("killed at position %" PRId64 " of %" PRId64, at_kill, n_events);

    pid_t second = th_relay_start(&scope, config, out, err2);
    th_wait_position(&scope, RELAY_NAME, n_events);
    kt_wait_ids(&kafka, 1, n_events);
    th_relay_stop(&scope, second);
    /* The restart resumed after the committed position, not from the start: the first batch,
     * committed before the kill, was not sent again. */
    cr_assert_eq(kt_times_seen(&kafka, 1), 1, "event 1 arrived %u times", kt_times_seen(&kafka, 1));
}

/* ---- events the destination refuses for good ---------------------------------------------- */

/* 10 small events, one of about 20 kB (id 11), 9 small ones (ids 12..20). */
static void insert_with_oversized(void)
{
    insert_events(10);
    th_exec(scope.conn, "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, "
                        "kind, body, metadata, created_at) VALUES "
                        "('order-big', 'order', 1, 'created', "
                        " jsonb_build_object('blob', repeat('x', 20000)), NULL, " LONG_AGO ")");
    insert_events(9);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT id FROM events WHERE aggregate_id = "
                                            "'order-big'"),
                 11);
    cr_assert_eq(max_event_id(), 20);
}

Test(kafka, oversized_stop)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "  flush_timeout: 5s\n", "",
                       "      message.max.bytes: 10000\n");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_with_oversized();

    pid_t pid = th_relay_start(&scope, config, out, err);
    int code = th_relay_wait(&scope, pid, TH_DEADLINE_MS);
    char *text = th_read_file(err, NULL);
    cr_assert_eq(code, 1, "relay exited %d, expected 1; stderr:\n%s", code, text);
    cr_assert(names_event(text, 11), "stderr does not name event 11:\n%s", text);
    free(text);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 10);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_dead_letters"), 0);
    kt_wait_ids(&kafka, 1, 10);
    cr_assert_eq(kt_times_seen(&kafka, 11), 0, "the oversized event reached Kafka");
}

Test(kafka, oversized_dead_letter)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "  flush_timeout: 5s\n  on_reject: dead_letter\n", "",
                       "      message.max.bytes: 10000\n");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_with_oversized();

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 20);
    /* And it goes on with what comes next. */
    insert_events(10);
    th_wait_position(&scope, RELAY_NAME, 30);
    kt_wait_ids(&kafka, 1, 10);
    kt_wait_ids(&kafka, 12, 30);
    th_relay_stop(&scope, pid);

    cr_assert_eq(kt_times_seen(&kafka, 11), 0, "the oversized event reached Kafka");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM relay_dead_letters WHERE relay_name = '%s' AND event_id = 11 "
             "AND length(reason) > 0",
             RELAY_NAME);
    cr_assert_eq(th_query_int64(scope.conn, sql), 1);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_dead_letters"), 1);
}

static int64_t dead_letters(void);

/* The messages of event id, in arrival order: their redelivered headers, "-" for none, joined
 * with spaces ("- true"). */
static void redelivered_headers(int64_t id, char *out, size_t len)
{
    out[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < kafka.n_messages; i++) {
        if (kafka.messages[i].id != id)
            continue;
        size_t count;
        const kt_header *h = kt_find_header(&kafka.messages[i], "redelivered", &count);
        used += (size_t)snprintf(out + used, len - used, "%s%s", used > 0 ? " " : "",
                                 count == 1 && h->value ? h->value
                                 : count == 0           ? "-"
                                                        : "many");
    }
}

typedef struct seen_goal {
    int64_t first, last;
    unsigned times;
} seen_goal;

static bool ids_seen_times(void *arg)
{
    const seen_goal *g = arg;
    kt_collect(&kafka);
    for (int64_t id = g->first; id <= g->last; id++)
        if (kt_times_seen(&kafka, id) < g->times)
            return false;
    return true;
}

/* An operator raises the limit and retries the dead letter, then replays a range a consumer
 * lost: both arrive with the header redelivered: true, which first deliveries do not carry. */
Test(kafka, retried_and_replayed_events_carry_the_redelivered_header)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 3);
    char config[TH_PATH_MAX], raised[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "  flush_timeout: 5s\n  on_reject: dead_letter\n", "",
                       "      message.max.bytes: 10000\n");
    write_kafka_config(raised, 100, "orders", "  flush_timeout: 5s\n", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_with_oversized();
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 20);
    th_relay_stop(&scope, pid);
    kt_wait_ids(&kafka, 12, 20);
    cr_assert_eq(kt_times_seen(&kafka, 11), 0);

    char *cli_out, *cli_err;
    int code = th_run_cli(&cli_out, &cli_err, "dead-letters", "-c", raised, "retry", "11");
    cr_assert_eq(code, 0, "retry exited %d:\n%s%s", code, cli_out, cli_err);
    free(cli_out);
    free(cli_err);
    kt_wait_ids(&kafka, 11, 11);
    cr_assert_eq(dead_letters(), 0, "the retried dead letter stayed");

    code = th_run_cli(&cli_out, &cli_err, "replay", "-c", raised, "--from", "9", "--to", "12");
    cr_assert_eq(code, 0, "replay exited %d:\n%s%s", code, cli_out, cli_err);
    free(cli_out);
    free(cli_err);
    seen_goal twice = {9, 12, 2};
    th_wait_until(&scope, TH_DEADLINE_MS, ids_seen_times, &twice, "9..12 twice on Kafka");

    /* 11, delivered by the retry, is no dead letter any more: the replay sends it too. */
    const struct {
        int64_t id;
        const char *headers;
    } expected[] = {{8, "-"}, {9, "- true"}, {10, "- true"}, {11, "true true"}, {12, "- true"}};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        char headers[64];
        redelivered_headers(expected[i].id, headers, sizeof headers);
        cr_assert_str_eq(headers, expected[i].headers,
                         "event %" PRId64 ": redelivered headers [%s], expected [%s]",
                         expected[i].id, headers, expected[i].headers);
    }
}

/* ---- a refusal of a whole request --------------------------------------------------------- */

static int64_t dead_letters(void)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM relay_dead_letters WHERE relay_name = '%s'",
             RELAY_NAME);
    return th_query_int64(scope.conn, sql);
}

/* A broker whose limit is below the producer's batch refuses the whole ProduceRequest as too
 * large, although every event in it is small: a failure of the batch, not of its events. */
Test(kafka, a_request_refused_as_too_large_is_sent_again)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 1);
    kt_lead_on_broker_1(&kafka, "orders", 1);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "  flush_timeout: 5s\n  on_reject: dead_letter\n", "",
                       "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(
                     kafka.mock, 1, KAFKA_API_PRODUCE, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    insert_events(10);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 10);
    cr_assert_eq(dead_letters(), 0, "small events were dead-lettered for a refused request");
    kt_wait_ids(&kafka, 1, 10);
    cr_assert_eq(kt_produce_errors_left(&kafka, 1), 0, "the injected error was not met");
    /* Back to batches of many messages for what comes next. */
    insert_events(10);
    th_wait_position(&scope, RELAY_NAME, 20);
    kt_wait_ids(&kafka, 11, 20);
    th_relay_stop(&scope, pid);
    cr_assert_eq(dead_letters(), 0);
}

/* The same refusal again when the first event goes alone: that event alone is too large (the
 * topic's limit is below the producer's message.max.bytes), the others are not. */
Test(kafka, an_event_refused_alone_is_rejected)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 1);
    kt_lead_on_broker_1(&kafka, "orders", 1);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "  flush_timeout: 5s\n  on_reject: dead_letter\n", "",
                       "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    /* The first meets the request of the whole batch (or of its first events), the second the
     * request that carries event 1 alone. */
    cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(
                     kafka.mock, 1, KAFKA_API_PRODUCE, 2, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0,
                     RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    insert_events(10);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 10);
    kt_wait_ids(&kafka, 2, 10);
    th_relay_stop(&scope, pid);
    cr_assert_eq(kt_produce_errors_left(&kafka, 1), 0, "the injected errors were not met");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM relay_dead_letters WHERE relay_name = '%s' AND event_id = 1",
             RELAY_NAME);
    cr_assert_eq(th_query_int64(scope.conn, sql), 1, "event 1 was not dead-lettered");
    cr_assert_eq(dead_letters(), 1, "events other than 1 were dead-lettered");
    kt_collect(&kafka);
    cr_assert_eq(kt_times_seen(&kafka, 1), 0, "the refused event reached Kafka");
}

/* ---- per-key order of first deliveries ---------------------------------------------------- */

/* Every id of 1..last is in the partition's log, each first seen after the first sight of every
 * lower id. Repeats after the first sight are at-least-once. */
static void assert_first_deliveries_in_order(int64_t last)
{
    kt_collect(&kafka);
    int64_t highest_first = 0;
    unsigned *seen = calloc((size_t)last + 1, sizeof *seen);
    cr_assert_not_null(seen);
    char order[4096] = "";
    size_t used = 0;
    for (size_t i = 0; i < kafka.n_messages; i++) {
        const kt_message *m = &kafka.messages[i];
        if (used < sizeof order - 32)
            used += (size_t)snprintf(order + used, sizeof order - used, " %" PRId64, m->id);
        cr_assert(m->id >= 1 && m->id <= last, "offset %" PRId64 ": id %" PRId64 " out of range",
                  m->offset, m->id);
        if (seen[m->id]++)
            continue;
        cr_assert_gt(m->id, highest_first,
                     "event %" PRId64 " first written (offset %" PRId64 ") after event %" PRId64
                     "; the partition reads:%s",
                     m->id, m->offset, highest_first, order);
        highest_first = m->id;
    }
    cr_assert_eq(highest_first, last, "the partition reads:%s", order);
    free(seen);
}

/* One partition, one key: a request the broker refuses for good (not retried by librdkafka) must
 * not let the requests behind it be written first. */
Test(kafka, a_refused_request_keeps_first_deliveries_in_order)
{
    const int64_t n_events = 60;
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 1);
    kt_lead_on_broker_1(&kafka, "orders", 1);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    /* Relay batches of 30 in requests of 10, so that requests queue behind the refused one. */
    write_kafka_config(config, 30, "orders", "  flush_timeout: 5s\n", "    key: \"one-key\"\n",
                       "      batch.num.messages: 10\n");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(
                     kafka.mock, 1, KAFKA_API_PRODUCE, 1, RD_KAFKA_RESP_ERR_POLICY_VIOLATION, 0),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    insert_events((int)n_events);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, n_events);
    kt_wait_ids(&kafka, 1, n_events);
    th_relay_stop(&scope, pid);
    cr_assert_eq(kt_produce_errors_left(&kafka, 1), 0, "the injected error was not met");
    assert_first_deliveries_in_order(n_events);
}

/* ---- options that would break the order --------------------------------------------------- */

static void assert_check_refuses(const char *properties, const char *expected)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 1);
    char config[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "", "", properties);
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 5, "check exited %d for%s\nstderr:\n%s", code, properties, err);
    cr_assert(strstr(err, expected) != NULL, "check does not say '%s':\n%s", expected, err);
    free(out);
    free(err);
}

Test(kafka, check_refuses_retries_without_idempotence)
{
    assert_check_refuses("      enable.idempotence: false\n", "enable.idempotence=false");
}

Test(kafka, check_refuses_more_than_five_requests_in_flight)
{
    assert_check_refuses("      max.in.flight: 6\n", "max.in.flight.requests.per.connection");
}

Test(kafka, check_refuses_gaps)
{
    assert_check_refuses("      enable.gapless.guarantee: false\n", "enable.gapless.guarantee");
}

Test(kafka, check_warns_of_a_message_timeout)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 1);
    char config[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "", "", "      message.timeout.ms: 60000\n");
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 0, "check exited %d:\n%s", code, err);
    cr_assert(strstr(err, "message.timeout.ms") != NULL, "no warning of the timeout:\n%s", err);
    free(out);
    free(err);
}

/* ---- a stop, and the watchdog, during an outage ------------------------------------------ */

/* With the brokers down, waits until the relay hands a new batch to the sink, which then waits
 * in flush() for acknowledgements that cannot come. */
static void hand_a_batch_to_a_dead_cluster(const char *err)
{
    size_t handed = th_file_count(err, "pipeline: durable -> sink");
    cr_assert_eq(rd_kafka_mock_broker_set_down(kafka.mock, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    insert_events(50);
    th_wait_file_count(&scope, err, "pipeline: durable -> sink", handed + 1);
}

/* A relay with the sink's default flush_timeout (30 s) that delivered 50 events; then the
 * cluster goes down and the relay's next batch waits in flush(). Its stderr goes to err. */
static pid_t relay_in_a_broker_outage(char err[TH_PATH_MAX])
{
    kt_cluster_start(&kafka, TYPE_TOPICS, N_TYPE_TOPICS, 3);
    char config[TH_PATH_MAX], out[TH_PATH_MAX];
    write_kafka_config(config, 50, "events.${type}", "  flush_timeout: 30s\n", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_events(50);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 50);
    hand_a_batch_to_a_dead_cluster(err);
    return pid;
}

Test(kafka, sigterm_is_honoured_in_a_broker_outage)
{
    char err[TH_PATH_MAX];
    pid_t pid = relay_in_a_broker_outage(err);

    /* The flush would wait its 30 s out before. */
    th_relay_stop_within(&scope, pid, 2000);
    cr_expect_eq(th_position(&scope, RELAY_NAME), 50, "a batch not acknowledged was stored");
    rd_kafka_mock_broker_set_up(kafka.mock, -1);
}

Test(kafka, the_watchdog_is_fed_while_a_flush_waits)
{
    /* systemd's side of sd_notify: a datagram socket named by NOTIFY_SOCKET. */
    char socket_path[TH_PATH_MAX];
    int fd = th_notify_socket(&scope, socket_path);
    setenv("NOTIFY_SOCKET", socket_path, 1);
    /* As the unit has it: WatchdogSec=30, and the sink's default flush_timeout of 30 s, which
     * left the watchdog without a ping for 30.1 s in an outage. A ping at least every 15 s. */
    setenv("WATCHDOG_USEC", "30000000", 1);

    char err[TH_PATH_MAX];
    pid_t pid = relay_in_a_broker_outage(err);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");

    /* Over a 40 s outage (more than one flush), the longest silence between WATCHDOG=1. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t start = now.tv_sec * 1000 + now.tv_nsec / 1000000, last = start, longest = 0;
    for (int64_t t = start; t - start < 40000;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char msg[512];
        ssize_t n = poll(&pfd, 1, 100) > 0 ? recv(fd, msg, sizeof msg - 1, 0) : 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        t = now.tv_sec * 1000 + now.tv_nsec / 1000000;
        if (n > 0) {
            msg[n] = '\0';
            if (strstr(msg, "WATCHDOG=1")) {
                longest = t - last > longest ? t - last : longest;
                last = t;
            }
        }
    }
    longest = now.tv_sec * 1000 + now.tv_nsec / 1000000 - last > longest
                  ? now.tv_sec * 1000 + now.tv_nsec / 1000000 - last
                  : longest;
    close(fd);
    cr_expect_leq(longest, 15000, "no WATCHDOG=1 for %" PRId64 " ms during the outage", longest);
    rd_kafka_mock_broker_set_up(kafka.mock, -1);
    th_wait_position(&scope, RELAY_NAME, 100);
    th_relay_stop(&scope, pid);
}

/* ---- a reload with new options -------------------------------------------------------- */

static const char *const TWO_TOPICS[] = {"orders.a", "orders.b"};

Test(kafka, a_reload_with_a_new_topic_starts_a_new_producer)
{
    kt_cluster_start(&kafka, TWO_TOPICS, 2, 3);
    char config[TH_PATH_MAX], edited[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 16, "orders.a", "", "", "");
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_events(100);
    pid_t pid = th_relay_start(&scope, config, out, err);
    kt_wait_ids(&kafka, 1, 100);

    /* The same file with another topic: the relay reads its own path again. */
    write_kafka_config(edited, 16, "orders.b", "", "", "");
    char *text = th_read_file(edited, NULL);
    th_write_file(config, "%s", text);
    free(text);
    th_relay_signal(pid, SIGHUP);
    text_goal reloaded = {err, "reload: sink kafka started anew"};
    th_wait_until(&scope, TH_DEADLINE_MS, file_contains, &reloaded, "the sink started anew");

    insert_events(100);
    kt_wait_ids(&kafka, 101, 200);
    th_wait_position(&scope, RELAY_NAME, 200);
    th_relay_stop(&scope, pid);
    kt_collect(&kafka);

    /* No fault: each event once, those before the reload on the old topic, the rest on the
     * new one, both producers' deliveries acknowledged. */
    cr_assert_eq(kafka.n_messages, 200, "%zu messages for 200 events", kafka.n_messages);
    for (size_t i = 0; i < kafka.n_messages; i++) {
        const kt_message *m = &kafka.messages[i];
        cr_assert_eq(kt_times_seen(&kafka, m->id), 1, "event %" PRId64 " arrived %u times", m->id,
                     kt_times_seen(&kafka, m->id));
        cr_assert_str_eq(m->topic, m->id <= 100 ? "orders.a" : "orders.b", "event %" PRId64, m->id);
    }
}

/* ---- the sink's own metrics ---------------------------------------------------------------- */

typedef struct metric_goal {
    int port;
    const char *series; /* a whole line of /metrics */
} metric_goal;

static bool metrics_show(void *arg)
{
    const metric_goal *g = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", g->port);
    const char *argv[] = {"curl", "-s", "--max-time", "5", url, NULL};
    char *body = NULL;
    th_run_program(argv, &body, NULL);
    bool shown = body && strstr(body, g->series) != NULL;
    free(body);
    return shown;
}

/* The sink reports its in-flight messages through the host (ABI 2's report_metric): the relay's
 * endpoint shows them as a series of the sink's, 0 once the brokers acknowledged everything. */
Test(kafka, the_sinks_in_flight_messages_are_a_metric)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 1);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_kafka_config(config, 50, "orders", "", "", "");
    int port = th_free_port();
    FILE *f = fopen(config, "a");
    cr_assert_not_null(f);
    fprintf(f, "http:\n  listen: \"127.0.0.1:%d\"\n", port);
    fclose(f);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    insert_events(120);
    pid_t pid = th_relay_start(&scope, config, out, err);
    kt_wait_ids(&kafka, 1, 120);
    th_wait_position(&scope, RELAY_NAME, 120);

    char line[256];
    snprintf(line, sizeof line,
             "# TYPE outbox_relay_sink_kafka_in_flight_messages gauge\n"
             "outbox_relay_sink_kafka_in_flight_messages{relay=\"%s\"} 0\n",
             RELAY_NAME);
    metric_goal goal = {port, line};
    th_wait_until(&scope, TH_DEADLINE_MS, metrics_show, &goal, "the sink's in-flight gauge at 0");
    th_relay_stop(&scope, pid);
}

/* ---- check reaches the cluster ------------------------------------------------------------ */

Test(kafka, check_reaches_the_cluster)
{
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 1);
    char config[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "", "", "");
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 0, "check exited %d:\n%s", code, err);
    cr_expect_not_null(strstr(out, "sink       kafka: reached"), "%s", out);
    free(out);
    free(err);
}

Test(kafka, check_fails_for_a_cluster_it_cannot_reach)
{
    char config[TH_PATH_MAX];
    /* Nothing listens on port 1: "initialised / ok" in 0.08 s before. */
    th_write_config(&scope, config,
                    "name: %s\ndatabase:\n  conninfo: %s\nsink:\n  plugin: kafka\n"
                    "  flush_timeout: 2s\n  options:\n    topic: orders\n"
                    "    properties:\n      bootstrap.servers: \"127.0.0.1:1\"\n",
                    RELAY_NAME, scope.conninfo_yaml);
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 5, "check exited %d:\n%s%s", code, out, err);
    cr_expect_not_null(strstr(err, "no metadata from the cluster within 2000 ms"), "%s", err);
    cr_expect_null(strstr(out, "\nok"), "check said ok:\n%s", out);
    free(out);
    free(err);
}

Test(kafka, check_fails_when_the_cluster_refuses_the_credentials)
{
    /* librdkafka's mock cluster has no SASL: a client that must authenticate is refused at the
     * handshake, as by a broker that refuses its password. check must say so, not "ok", and the
     * password must stay out of what it prints. */
    kt_cluster_start(&kafka, ORDERS_TOPIC, 1, 1);
    char config[TH_PATH_MAX];
    write_kafka_config(config, 100, "orders", "  flush_timeout: 2s\n", "",
                       "      security.protocol: SASL_PLAINTEXT\n"
                       "      sasl.mechanisms: PLAIN\n"
                       "      sasl.username: relay\n"
                       "      sasl.password: wrong-horse-battery\n");
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 5, "check exited %d:\n%s%s", code, out, err);
    cr_expect_not_null(strstr(err, "no metadata from the cluster within 2000 ms"), "%s", err);
    cr_expect_not_null(strstr(err, "_AUTHENTICATION"), "the cause is not named:\n%s", err);
    cr_expect_null(strstr(out, "\nok"), "check said ok:\n%s", out);
    cr_expect_null(strstr(out, "wrong-horse"), "the password was printed:\n%s", out);
    cr_expect_null(strstr(err, "wrong-horse"), "the password was logged:\n%s", err);
    free(out);
    free(err);
}
