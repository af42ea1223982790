/*
 * The floor of the Kafka benchmark: what a plain idempotent librdkafka producer needs to send the
 * messages the relay sends, with nothing else to do. It reads every event from PostgreSQL into
 * memory first (untimed), then times producing them all and flushing until every delivery report
 * is back.
 *
 *   kafka_floor CONNINFO BOOTSTRAP_SERVERS TOPIC [PROPERTY=VALUE...]
 *
 * The clock starts with the producer connected and the topic's metadata known.
 *
 * Messages as the relay's Kafka sink makes them by default: key the aggregate id, value the
 * payload, headers id, type, version (absent when NULL) and created_at. PROPERTY=VALUE pairs go to
 * librdkafka after the defaults (enable.idempotence=true, acks=all).
 *
 * Prints "floor SECONDS EVENTS CPU_SECONDS" on success, the last the CPU time of all its threads
 * while the clock ran; exits 1 when anything failed, including a single failed delivery report.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

/* Columns of the query below. */
enum { FLOOR_ID, FLOOR_KEY, FLOOR_TYPE, FLOOR_VERSION, FLOOR_PAYLOAD, FLOOR_CREATED_AT };

/* created_at as the relay renders it: RFC 3339 in UTC with microseconds. */
static const char floor_query[] =
    "SELECT id, aggregate_id, kind, aggregate_version, body::text,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    " FROM events ORDER BY id";

#define FLOOR_FLUSH_TIMEOUT_MS (10 * 60 * 1000)
#define FLOOR_QUEUE_FULL_POLL_MS 10
#define FLOOR_METADATA_TIMEOUT_MS 30000

/* Delivery outcomes, counted by the delivery report callback (the producer's opaque). */
typedef struct floor_reports {
    int64_t delivered;
    int64_t failed;
    char first_error[256];
} floor_reports;

static void floor_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    floor_reports *reports = opaque;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        reports->delivered++;
        return;
    }
    if (reports->failed++ == 0)
        snprintf(reports->first_error, sizeof reports->first_error, "%s",
                 rd_kafka_err2str(msg->err));
}

static double floor_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Every event, in id order; *out is the caller's to PQclear. Returns 0, or -1 with the reason in
 * err. */
static int floor_load(const char *conninfo, PGresult **out, char *err, size_t errlen)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return -1;
    }
    PGresult *res = PQexec(conn, floor_query);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading the events: %s", PQerrorMessage(conn));
        PQclear(res);
        PQfinish(conn);
        return -1;
    }
    PQfinish(conn);
    *out = res;
    return 0;
}

/* A producer reporting into *reports. Returns NULL with the reason in err. */
static rd_kafka_t *floor_producer_new(const char *bootstrap, char *const properties[],
                                      int n_properties, floor_reports *reports, char *err,
                                      size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *defaults[][2] = {
        {"bootstrap.servers", bootstrap},
        {"enable.idempotence", "true"},
        {"acks", "all"},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err, errlen) !=
            RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    for (int i = 0; i < n_properties; i++) {
        char name[256];
        const char *equals = strchr(properties[i], '=');
        if (equals == NULL || (size_t)(equals - properties[i]) >= sizeof name) {
            snprintf(err, errlen, "'%s' is not PROPERTY=VALUE", properties[i]);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
        snprintf(name, sizeof name, "%.*s", (int)(equals - properties[i]), properties[i]);
        if (rd_kafka_conf_set(conf, name, equals + 1, err, errlen) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, floor_on_delivery);
    rd_kafka_conf_set_opaque(conf, reports);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/*
 * Makes the topic known before the clock starts: otherwise its first message waits for the
 * producer's next periodic metadata scan (up to a second), which measures librdkafka's start-up,
 * not sending. *rkt_out keeps the topic known; the caller destroys it. Returns 0, or -1 with the
 * reason in err.
 */
static int floor_warm_up(rd_kafka_t *rk, const char *topic, rd_kafka_topic_t **rkt_out, char *err,
                         size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL) {
        snprintf(err, errlen, "topic '%s': %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, FLOOR_METADATA_TIMEOUT_MS);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt != 1)
            e = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        else
            e = md->topics[0].err;
        rd_kafka_metadata_destroy(md);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "metadata of topic '%s': %s", topic, rd_kafka_err2str(e));
        rd_kafka_topic_destroy(rkt);
        return -1;
    }
    *rkt_out = rkt;
    return 0;
}

/* Enqueues row i, waiting for room while the queue is full. Returns 0, or -1 with the reason. */
static int floor_produce(rd_kafka_t *rk, const char *topic, const PGresult *res, int i, char *err,
                         size_t errlen)
{
    const char *version =
        PQgetisnull(res, i, FLOOR_VERSION) ? NULL : PQgetvalue(res, i, FLOOR_VERSION);
    const char *key = PQgetisnull(res, i, FLOOR_KEY) ? NULL : PQgetvalue(res, i, FLOOR_KEY);
    /* Apart: librdkafka's argument macros cast without parentheses. */
    size_t key_len = (size_t)PQgetlength(res, i, FLOOR_KEY);
    size_t payload_len = (size_t)PQgetlength(res, i, FLOOR_PAYLOAD);
    for (;;) {
        rd_kafka_headers_t *headers = rd_kafka_headers_new(4);
        rd_kafka_header_add(headers, "id", -1, PQgetvalue(res, i, FLOOR_ID),
                            PQgetlength(res, i, FLOOR_ID));
        rd_kafka_header_add(headers, "type", -1, PQgetvalue(res, i, FLOOR_TYPE),
                            PQgetlength(res, i, FLOOR_TYPE));
        if (version != NULL)
            rd_kafka_header_add(headers, "version", -1, version,
                                PQgetlength(res, i, FLOOR_VERSION));
        rd_kafka_header_add(headers, "created_at", -1, PQgetvalue(res, i, FLOOR_CREATED_AT),
                            PQgetlength(res, i, FLOOR_CREATED_AT));
        /* Copied, as the relay must: its events are borrowed for the deliver() call only. */
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key, key_len),
                              RD_KAFKA_V_VALUE(PQgetvalue(res, i, FLOOR_PAYLOAD), payload_len),
                              RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0; /* the message owns the headers now */
        rd_kafka_headers_destroy(headers);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(err, errlen, "producing event %s: %s", PQgetvalue(res, i, FLOOR_ID),
                     rd_kafka_err2str(e));
            return -1;
        }
        /* Serving delivery reports is what frees room in the queue. */
        rd_kafka_poll(rk, FLOOR_QUEUE_FULL_POLL_MS);
    }
}

/* CPU time of the whole process, every thread, in seconds. */
static double floor_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Produces every row and flushes; *seconds gets the time both took, *cpu_seconds the CPU time
 * meanwhile. Returns 0 once every report came back successful, or -1 with the reason in err. */
static int floor_run(rd_kafka_t *rk, const char *topic, const PGresult *res,
                     const floor_reports *reports, double *seconds, double *cpu_seconds, char *err,
                     size_t errlen)
{
    int n = PQntuples(res);
    double cpu_start = floor_cpu_seconds();
    double start = floor_now();
    for (int i = 0; i < n; i++) {
        if (floor_produce(rk, topic, res, i, err, errlen) != 0)
            return -1;
        /* Delivery reports pile up otherwise; the relay's sink serves them as it goes, too. */
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_resp_err_t e = rd_kafka_flush(rk, FLOOR_FLUSH_TIMEOUT_MS);
    *seconds = floor_now() - start;
    *cpu_seconds = floor_cpu_seconds() - cpu_start;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "flush: %s (%d messages still queued)", rd_kafka_err2str(e),
                 rd_kafka_outq_len(rk));
        return -1;
    }
    if (reports->failed > 0) {
        snprintf(err, errlen, "%" PRId64 " deliveries failed, the first with: %s", reports->failed,
                 reports->first_error);
        return -1;
    }
    if (reports->delivered != n) {
        snprintf(err, errlen, "%" PRId64 " delivery reports for %d messages", reports->delivered,
                 n);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CONNINFO BOOTSTRAP_SERVERS TOPIC [PROPERTY=VALUE...]\n",
                argv[0]);
        return 2;
    }
    char err[512];
    floor_reports reports = {0};
    /* Created before the load, so that it has its connections and producer id by the time the
     * clock starts. */
    rd_kafka_t *rk = floor_producer_new(argv[2], argv + 4, argc - 4, &reports, err, sizeof err);
    if (rk == NULL) {
        fprintf(stderr, "kafka_floor: %s\n", err);
        return 1;
    }
    PGresult *res;
    if (floor_load(argv[1], &res, err, sizeof err) != 0) {
        fprintf(stderr, "kafka_floor: %s\n", err);
        rd_kafka_destroy(rk);
        return 1;
    }
    double seconds = 0, cpu_seconds = 0;
    rd_kafka_topic_t *rkt = NULL;
    int status = floor_warm_up(rk, argv[3], &rkt, err, sizeof err);
    if (status == 0)
        status = floor_run(rk, argv[3], res, &reports, &seconds, &cpu_seconds, err, sizeof err);
    if (status == 0)
        printf("floor %.3f %d %.3f\n", seconds, PQntuples(res), cpu_seconds);
    else
        fprintf(stderr, "kafka_floor: %s\n", err);
    PQclear(res);
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return status == 0 ? 0 : 1;
}
