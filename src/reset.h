/* `outbox-relay reset`: moves a relay's position deliberately, after a restore or a truncate. */
#ifndef RELAY_RESET_H
#define RELAY_RESET_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "log.h"

/*
 * Sets the position of config->name to `to`, or to the table's max id when latest, records this
 * database's system identifier and forgets the watched gaps. Refuses while a relay of that name
 * runs (it holds the name's lock). Logs the move at WARN and prints it to out. Returns a
 * relay_exit_code.
 */
int relay_reset(const relay_config *config, const relay_logger *log, int64_t to, bool latest,
                FILE *out);

#endif
