#include "cluster.h"

#include <errno.h>
#include <glob.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define TH_MAX_CLUSTERS 8
#define TH_SERVER_USER "postgres"

/* Every cluster directory this process created, for th_clusters_free. */
static char created[TH_MAX_CLUSTERS][TH_PATH_MAX];
static size_t n_created;

static bool is_root(void)
{
    return geteuid() == 0;
}

/* Runs scripts/pg-tmp COMMAND on c with its conf (and the stop mode); returns the exit code. */
static int pg_tmp(const th_cluster *c, const char *command, bool immediate, char **out, char **err)
{
    char script[TH_PATH_MAX], conf[sizeof c->conf + 16], mode[40];
    snprintf(script, sizeof script, "%s/scripts/pg-tmp", th_env("RELAY_SOURCE_DIR"));
    snprintf(conf, sizeof conf, "PG_TMP_CONF=%s", c->conf);
    snprintf(mode, sizeof mode, "PG_TMP_STOP_MODE=%s", immediate ? "immediate" : "fast");
    return th_run_program((const char *const[]){"env", conf, mode, script, command, c->dir, NULL},
                          out, err);
}

static void pg_tmp_ok(th_cluster *c, const char *command, bool immediate)
{
    char *out = NULL, *err = NULL;
    int code = pg_tmp(c, command, immediate, &out, &err);
    if (code != 0) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", err);
        free(out);
        free(err);
        cr_assert_fail("pg-tmp %s %s exited %d: %s", command, c->dir, code, msg);
    }
    if (strcmp(command, "start") == 0 || strcmp(command, "restart") == 0) {
        out[strcspn(out, "\n")] = '\0';
        const char *port = strstr(out, " port=");
        cr_assert_not_null(port, "pg-tmp %s printed no port: %s", command, out);
        int now = atoi(port + strlen(" port="));
        cr_assert(c->port == 0 || c->port == now, "%s came back on port %d, not %d", c->dir, now,
                  c->port);
        c->port = now;
        snprintf(c->conninfo, sizeof c->conninfo, "%s", out);
    }
    free(out);
    free(err);
}

/* The cluster's directory, created once: under /tmp, enterable by the server's user, who owns
 * it (pg-tmp chowns it at start; a base backup is written into it before that). */
static void make_dir(th_cluster *c)
{
    if (c->dir[0])
        return;
    cr_assert_lt(n_created, TH_MAX_CLUSTERS, "more than %d clusters in one test", TH_MAX_CLUSTERS);
    char dir[] = "/tmp/relay-pg-XXXXXX";
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    snprintf(created[n_created++], TH_PATH_MAX, "%s", dir);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    cr_assert_eq(chmod(c->dir, 0755), 0, "chmod %s: %s", c->dir, strerror(errno));
    if (is_root()) {
        struct passwd *pw = getpwnam(TH_SERVER_USER);
        cr_assert_not_null(pw, "user %s does not exist", TH_SERVER_USER);
        cr_assert_eq(chown(c->dir, pw->pw_uid, pw->pw_gid), 0, "chown %s: %s", c->dir,
                     strerror(errno));
    }
}

void th_cluster_start(th_cluster *c, const char *conf)
{
    make_dir(c);
    snprintf(c->conf, sizeof c->conf, "%s", conf ? conf : "");
    pg_tmp_ok(c, "start", false);
}

void th_cluster_restart_stopped(th_cluster *c)
{
    pg_tmp_ok(c, "start", false);
}

void th_cluster_stop(th_cluster *c, bool immediate)
{
    pg_tmp_ok(c, "stop", immediate);
}

void th_cluster_restart(th_cluster *c)
{
    pg_tmp_ok(c, "restart", false);
}

PGconn *th_cluster_connect(const th_cluster *c)
{
    PGconn *conn = PQconnectdb(c->conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn));
        PQfinish(conn);
        cr_assert_fail("cannot connect to \"%s\": %s", c->conninfo, msg);
    }
    return conn;
}

/* Where pg-tmp finds the server's programs: PG_BINDIR, pg_config's bindir when it holds a server,
 * else the newest server under /usr/lib/postgresql. */
static void find_bindir(char out[TH_PATH_MAX])
{
    const char *env = getenv("PG_BINDIR");
    if (env && *env) {
        snprintf(out, TH_PATH_MAX, "%s", env);
        return;
    }
    char *text = NULL;
    if (th_run_program((const char *const[]){"pg_config", "--bindir", NULL}, &text, NULL) == 0) {
        text[strcspn(text, "\n")] = '\0';
        char initdb[TH_PATH_MAX + 16];
        snprintf(initdb, sizeof initdb, "%s/initdb", text);
        if (access(initdb, X_OK) == 0) {
            snprintf(out, TH_PATH_MAX, "%s", text);
            free(text);
            return;
        }
    }
    free(text);
    glob_t g;
    int best_major = -1;
    out[0] = '\0';
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            int major = atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
            if (major > best_major) {
                best_major = major;
                snprintf(out, TH_PATH_MAX, "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/initdb")),
                         g.gl_pathv[i]);
            }
        }
        globfree(&g);
    }
    cr_assert(out[0], "no PostgreSQL server found (initdb); install it with scripts/deps");
}

void th_pg_program(const char *cwd, const char *const argv[])
{
    static char bindir[TH_PATH_MAX];
    if (!bindir[0])
        find_bindir(bindir);
    char program[2 * TH_PATH_MAX];
    snprintf(program, sizeof program, "%s/%s", bindir, argv[0]);
    size_t n = 0;
    while (argv[n])
        n++;
    /* env -C: the caller's directory may be one the server's user cannot enter. */
    const char *prefix_root[] = {"env", "-C", cwd, "runuser", "-u", TH_SERVER_USER, "--"};
    const char *prefix_user[] = {"env", "-C", cwd};
    const char **prefix = is_root() ? prefix_root : prefix_user;
    size_t n_prefix = is_root() ? sizeof prefix_root / sizeof *prefix_root
                                : sizeof prefix_user / sizeof *prefix_user;
    const char **full = calloc(n_prefix + n + 1, sizeof *full);
    cr_assert_not_null(full, "out of memory");
    memcpy(full, prefix, n_prefix * sizeof *full);
    full[n_prefix] = program;
    memcpy(full + n_prefix + 1, argv + 1, n * sizeof *full); /* with the NULL */
    char *out = NULL, *err = NULL;
    int code = th_run_program(full, &out, &err);
    free(full);
    if (code != 0) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s%s", out, err);
        free(out);
        free(err);
        cr_assert_fail("%s exited %d: %s", program, code, msg);
    }
    free(out);
    free(err);
}

void th_cluster_base_backup(const th_cluster *c, const char *dest, const char *standby_name)
{
    char conninfo[TH_PATH_MAX + 128];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%d user=postgres%s%s", c->dir, c->port,
             standby_name ? " application_name=" : "", standby_name ? standby_name : "");
    th_pg_program(c->dir, (const char *const[]){"pg_basebackup", "-d", conninfo, "-D", dest, "-F",
                                                "p", "-X", "stream", "-c", "fast",
                                                standby_name ? "-R" : NULL, NULL});
}

void th_cluster_start_standby(th_cluster *standby, const th_cluster *primary,
                              const char *standby_name)
{
    make_dir(standby);
    char data[TH_PATH_MAX + 8];
    snprintf(data, sizeof data, "%s/data", standby->dir);
    th_cluster_base_backup(primary, data, standby_name);
    th_cluster_start(standby, NULL);
}

void th_cluster_swap_data(th_cluster *c, const char *backup)
{
    char data[TH_PATH_MAX + 8], old[TH_PATH_MAX + 16];
    snprintf(data, sizeof data, "%s/data", c->dir);
    snprintf(old, sizeof old, "%s/data.old", c->dir);
    cr_assert_eq(rename(data, old), 0, "mv %s %s: %s", data, old, strerror(errno));
    cr_assert_eq(rename(backup, data), 0, "mv %s %s: %s", backup, data, strerror(errno));
}

void th_clusters_free(void)
{
    for (size_t i = 0; i < n_created; i++) {
        th_cluster c = {.port = 0};
        memcpy(c.dir, created[i], sizeof c.dir);
        char *err = NULL;
        if (getenv("RELAY_SOURCE_DIR") && pg_tmp(&c, "stop", true, NULL, &err) != 0)
            fprintf(stderr, "pg-tmp stop %s failed: %s\n", c.dir, err);
        free(err);
        th_run_program((const char *const[]){"rm", "-rf", c.dir, NULL}, NULL, NULL);
    }
    n_created = 0;
}
