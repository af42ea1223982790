/*
 * PostgreSQL clusters of a test's own, run by scripts/pg-tmp: for the tests that stop, crash,
 * restore or fail over the server, which the shared one (RELAY_TEST_CONNINFO) must never see.
 *
 * Each cluster lives in a directory of its own under /tmp (as root the server runs as the
 * postgres user, which must reach it), listens on a unix socket in that directory only, and keeps
 * its port across stops and starts, so that a conninfo stays valid. Every cluster a test process
 * creates is remembered: th_clusters_free (from .fini, which Criterion runs after a failure in the
 * body too) stops them all and removes their directories. Start clusters from the test body, not
 * from .init: Criterion does not run .fini after a failure in .init.
 */
#ifndef TH_CLUSTER_H
#define TH_CLUSTER_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "harness.h"

typedef struct th_cluster {
    char dir[TH_PATH_MAX]; /* empty until created */
    /* Extra postgresql.conf lines (PG_TMP_CONF), given at every start; "" for none. */
    char conf[512];
    int port;                   /* 0 until first started */
    char conninfo[TH_PATH_MAX]; /* "host=DIR port=P dbname=postgres user=postgres" */
} th_cluster;

/* Creates the cluster's directory (initdb at the first start) and starts it; conf (may be NULL)
 * holds extra postgresql.conf lines, kept for later starts. */
void th_cluster_start(th_cluster *c, const char *conf);
/* Starts it again after a stop, on the same port. */
void th_cluster_restart_stopped(th_cluster *c);
/* Stops it: a fast shutdown, or an immediate one (a crash: the next start runs recovery). */
void th_cluster_stop(th_cluster *c, bool immediate);
/* pg-tmp restart: a fast stop, then a start on the same port. */
void th_cluster_restart(th_cluster *c);

/* A session on the cluster's postgres database, as postgres; the caller PQfinish()es it. */
PGconn *th_cluster_connect(const th_cluster *c);

/* Runs a program of the PostgreSQL installation pg-tmp uses (pg_basebackup, pg_ctl, ...) as the
 * user the server runs as, in directory cwd; argv[0] is the program's name, NULL-terminated.
 * Fails the test unless it exits 0. */
void th_pg_program(const char *cwd, const char *const argv[]);

/* pg_basebackup of c in plain format with its WAL (-X stream, fast checkpoint) into dest, which
 * must not exist and whose parent the server's user can write (c->dir is). With standby_name,
 * also the standby's configuration (-R): standby.signal and a primary_conninfo with that
 * application_name. */
void th_cluster_base_backup(const th_cluster *c, const char *dest, const char *standby_name);

/* A new cluster streaming from primary: a base backup with -R (application_name standby_name),
 * started on a port of its own. */
void th_cluster_start_standby(th_cluster *standby, const th_cluster *primary,
                              const char *standby_name);

/* Swaps the (stopped) cluster's data directory for backup (a directory made by
 * th_cluster_base_backup): a restore from a backup in place, on the same port. */
void th_cluster_swap_data(th_cluster *c, const char *backup);

/* Stops (immediate: the data is thrown away) and removes every cluster this process created.
 * Safe when there are none, and when called twice. */
void th_clusters_free(void);

#endif
