/*
 * The metrics and probe endpoint (http.listen), scraped with curl as Prometheus and an
 * orchestrator would, while events flow: counters that move by exactly the events delivered,
 * readiness that follows the database (stopped and started again), and a standby that is ready but
 * does not lead.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <libpq-fe.h>

#include "../harness/cluster.h"
#include "../harness/harness.h"

#define LONG_AGO "now() - interval '1 hour'"

static th_scope scope;
static th_cluster server; /* readiness_follows_the_database's own */

static void setup(void)
{
    th_scope_new(&scope);
}

static void teardown(void)
{
    th_scope_free(&scope);
    th_clusters_free();
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 120);

static void write_config(th_scope *s, char path[TH_PATH_MAX], int port)
{
    th_write_config(s, path,
                    "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  safety_margin: 0s\n"
                    "  batch_size: 100\n  poll_interval: 50ms\nsink:\n  plugin: stdout\n"
                    "retry:\n  initial: 50ms\n  max: 200ms\nhttp:\n  listen: \"127.0.0.1:%d\"\n",
                    s->schema, s->conninfo_yaml, port);
}

typedef struct scrape {
    int status;
    char *body;
} scrape;

/* GET http://127.0.0.1:port/path with curl: the status (0 when nothing answered) and body. */
static scrape get(int port, const char *path)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    const char *argv[] = {"curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", url, NULL};
    char *out = NULL;
    th_run_program(argv, &out, NULL);
    scrape r = {0, out};
    char *last = out ? strrchr(out, '\n') : NULL;
    if (last) {
        r.status = atoi(last + 1);
        *last = '\0';
    }
    return r;
}

/* The value of a series in a /metrics body, by its name and labels as written; -1 if absent. */
static double series(const char *body, const char *name)
{
    char want[256];
    snprintf(want, sizeof want, "\n%s ", name);
    const char *at = body ? strstr(body, want) : NULL;
    return at ? strtod(at + strlen(want), NULL) : -1;
}

typedef struct probe_goal {
    int port;
    const char *path;
    int status;
    const char *text; /* in the body, or NULL */
} probe_goal;

static bool probe_says(void *arg)
{
    const probe_goal *g = arg;
    scrape r = get(g->port, g->path);
    bool ok = r.status == g->status && (!g->text || (r.body && strstr(r.body, g->text)));
    free(r.body);
    return ok;
}

static void wait_probe(th_scope *s, int port, const char *path, int status, const char *text)
{
    probe_goal g = {port, path, status, text};
    char what[128];
    snprintf(what, sizeof what, "%s to answer %d%s%s", path, status, text ? " with " : "",
             text ? text : "");
    th_wait_until(s, TH_DEADLINE_MS, probe_says, &g, what);
}

static double scrape_series(int port, const char *name)
{
    scrape r = get(port, "/metrics");
    cr_assert_eq(r.status, 200, "/metrics answered %d", r.status);
    double v = series(r.body, name);
    free(r.body);
    return v;
}

Test(http, counters_move_by_exactly_the_events_delivered)
{
    char config[TH_PATH_MAX], err[TH_PATH_MAX];
    int port = th_free_port();
    write_config(&scope, config, port);
    th_migrate(config);
    th_path(&scope, "relay.err", err);
    th_insert_events(scope.conn, 250, LONG_AGO);
    pid_t pid = th_relay_start(&scope, config, "/dev/null", err);
    th_wait_position(&scope, scope.schema, 250);

    char delivered[128], position[128], latency[128], leader[128];
    snprintf(delivered, sizeof delivered, "outbox_relay_events_delivered_total{relay=\"%s\"}",
             scope.schema);
    snprintf(position, sizeof position, "outbox_relay_position{relay=\"%s\"}", scope.schema);
    snprintf(latency, sizeof latency, "outbox_relay_delivery_latency_seconds_count{relay=\"%s\"}",
             scope.schema);
    snprintf(leader, sizeof leader, "outbox_relay_leader{relay=\"%s\"}", scope.schema);
    /* The position is stored once the sink acknowledged: the snapshot follows within a turn. */
    probe_goal counted = {port, "/metrics", 200, "_delivered_total"};
    th_wait_until(&scope, TH_DEADLINE_MS, probe_says, &counted, "metrics");
    cr_expect_eq(scrape_series(port, delivered), 250);
    cr_expect_eq(scrape_series(port, position), 250);
    cr_expect_eq(scrape_series(port, latency), 250, "every event's latency observed once");
    cr_expect_eq(scrape_series(port, leader), 1);

    th_insert_events(scope.conn, 130, LONG_AGO);
    th_wait_position(&scope, scope.schema, 380);
    cr_expect_eq(scrape_series(port, delivered), 380, "130 more events, 130 more counted");
    cr_expect_eq(scrape_series(port, latency), 380);

    scrape r = get(port, "/metrics");
    cr_expect_not_null(strstr(r.body, "# TYPE outbox_relay_delivery_latency_seconds histogram"));
    /* Every series an operator may alert on, each with the relay's label. */
    static const char *const names[] = {"events_delivered_total",
                                        "batches_total",
                                        "sink_errors_total",
                                        "database_errors_total",
                                        "position",
                                        "table_max_id",
                                        "lag_events",
                                        "lag_seconds",
                                        "gaps_watched",
                                        "late_events_total",
                                        "dead_letters_total",
                                        "leader",
                                        "delivery_latency_seconds_bucket",
                                        "delivery_latency_seconds_sum",
                                        "build_info"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char want[192];
        snprintf(want, sizeof want, "\noutbox_relay_%s{relay=\"%s\"", names[i], scope.schema);
        cr_expect_not_null(strstr(r.body, want), "no series outbox_relay_%s for the relay",
                           names[i]);
    }
    free(r.body);
    wait_probe(&scope, port, "/healthz", 200, "ok");
    wait_probe(&scope, port, "/readyz", 200, "leading");
    r = get(port, "/nowhere");
    cr_expect_eq(r.status, 404);
    free(r.body);
    th_relay_stop(&scope, pid);
}

Test(http, readiness_follows_the_database)
{
    /* A server of its own, so that stopping it disturbs no other test. */
    th_cluster_start(&server, NULL);
    th_scope own;
    th_scope_new_at(&own, server.conninfo);

    char config[TH_PATH_MAX], err[TH_PATH_MAX];
    int port = th_free_port();
    write_config(&own, config, port);
    th_migrate(config);
    th_path(&own, "relay.err", err);
    th_insert_events(own.conn, 10, LONG_AGO);
    pid_t pid = th_relay_start(&own, config, "/dev/null", err);
    th_wait_position(&own, own.schema, 10);
    wait_probe(&own, port, "/readyz", 200, "leading");

    /* PostgreSQL stops: the relay's session ends and no new one can start. */
    PQfinish(own.conn);
    own.conn = NULL;
    th_cluster_stop(&server, false);
    wait_probe(&own, port, "/readyz", 503, "database unavailable");
    wait_probe(&own, port, "/healthz", 200, "ok"); /* the loop turns: retrying is its job */

    th_cluster_restart_stopped(&server);
    own.conn = PQconnectdb(own.harness_conninfo);
    cr_assert_eq(PQstatus(own.conn), CONNECTION_OK, "%s", PQerrorMessage(own.conn));
    wait_probe(&own, port, "/readyz", 200, "leading");
    th_insert_events(own.conn, 5, LONG_AGO);
    th_wait_position(&own, own.schema, 15);
    th_relay_stop(&own, pid);
    th_scope_free(&own);
}

Test(http, a_standby_is_ready_and_does_not_lead)
{
    char leader_cfg[TH_PATH_MAX], standby_cfg[TH_PATH_MAX], leader_err[TH_PATH_MAX],
        standby_err[TH_PATH_MAX];
    int leader_port = th_free_port(), standby_port = th_free_port();
    write_config(&scope, leader_cfg, leader_port);
    write_config(&scope, standby_cfg, standby_port);
    th_migrate(leader_cfg);
    th_path(&scope, "leader.err", leader_err);
    th_path(&scope, "standby.err", standby_err);
    pid_t leader = th_relay_start(&scope, leader_cfg, "/dev/null", leader_err);
    wait_probe(&scope, leader_port, "/readyz", 200, "leading");
    pid_t standby = th_relay_start(&scope, standby_cfg, "/dev/null", standby_err);
    wait_probe(&scope, standby_port, "/readyz", 200, "standing by");

    char name[128];
    snprintf(name, sizeof name, "outbox_relay_leader{relay=\"%s\"}", scope.schema);
    cr_expect_eq(scrape_series(standby_port, name), 0);
    cr_expect_eq(scrape_series(leader_port, name), 1);
    th_relay_stop(&scope, standby);
    th_relay_stop(&scope, leader);
}
