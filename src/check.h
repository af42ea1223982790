/* `outbox-relay check`: everything `run` needs, verified without delivering anything. */
#ifndef RELAY_CHECK_H
#define RELAY_CHECK_H

#include <stdio.h>

#include "config.h"
#include "log.h"

/* Connects, inspects the table and columns, reads the checkpoint, loads and initialises the sink,
 * printing one line per step to out. Returns a relay_exit_code; the reason goes to the log. */
int relay_check(const relay_config *config, const relay_logger *log, FILE *out);

#endif
