/* The relay loop: read a settled batch, hand it to the sink, commit the position, repeat. */
#ifndef RELAY_RELAY_H
#define RELAY_RELAY_H

#include <stdbool.h>

#include "config.h"
#include "log.h"

/*
 * Runs on copies of config and log of its own, which SIGHUP reloads (relay_reload.h);
 * log_level_fixed: the command line set the level, which log.level then never changes. Runs until
 * a stop signal (then finishes the batch in hand, commits, returns RELAY_EXIT_OK) or a
 * fatal error. Database and sink outages are retried with backoff, never fatal: the position never
 * passes an event the sink did not acknowledge. Returns a relay_exit_code.
 */
int relay_run(const relay_config *config, const relay_logger *log, bool log_level_fixed);

#endif
