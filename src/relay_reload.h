/*
 * SIGHUP: the configuration read again and applied between batches, PgBouncer-style: a file that
 * does not load leaves the configuration in force running. Keys a reload may change
 * (relay_config_key_reloadable) take their new values at once; the others are named in a WARN
 * and keep theirs until a restart. Internal to the daemon.
 */
#ifndef RELAY_RELOAD_H
#define RELAY_RELOAD_H

#include <stdbool.h>

#include "backoff.h"
#include "config.h"
#include "log.h"
#include "relay_pipeline.h"
#include "relay_retention.h"

/* What the configuration feeds in the loop: each is updated in place by a reload. Borrowed. */
typedef struct relay_reload_target {
    relay_config *config; /* the one in force; the pipeline's config points to it */
    relay_logger *log;    /* the loop's, which the sink logs through too */
    bool log_level_fixed; /* --log-level was given: it outranks log.level, at a reload too */
    relay_pipeline *pipeline;
    relay_backoff *backoff;
    relay_retention *retention;
} relay_reload_target;

/* Whether a reload may apply now: nothing travels on the connection (a prefetch is collected at
 * the end of the hand-over it runs beside). Cannot fail. */
bool relay_reload_possible(const relay_pipeline *p);

/*
 * Reads config->path again and applies it, telling systemd (RELOADING=1, then READY=1). Call it
 * between turns, when relay_reload_possible. A file that does not load (or that others may write)
 * changes nothing and is logged at ERROR with its file:line:column. New batch sizes drop what the
 * pipeline holds (the rows are read again from the acknowledged position); new sink options start
 * a new instance of the sink, which takes over only once its init succeeded (else the old one goes
 * on with the old options). Nothing acknowledged is undone, nothing unacknowledged is passed.
 * Returns whether the file was taken; cannot fail otherwise.
 */
bool relay_reload(const relay_reload_target *t);

#endif
