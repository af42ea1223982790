/*
 * Restore and reset detection. A position is only meaningful in the database it was written in and
 * against the sequence that handed out its ids: after a restore from backup, a failover to another
 * cluster or a TRUNCATE ... RESTART IDENTITY, new events would reuse ids at or below the position
 * and be skipped for good. The relay refuses to run then, until `outbox-relay reset` says where to
 * go on from.
 */
#ifndef RELAY_RESTORE_H
#define RELAY_RESTORE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "source.h"

/* The cluster's system identifier (pg_control_system()), or -1 where the server has none. Returns
 * 0, or -1 with err. */
int relay_restore_system_identifier(PGconn *conn, int64_t *sysid, char *err, size_t errlen);

/* The highest id the table ever handed out: its sequence's last value when the id column has one
 * (readable by us), else max(id), else 0. Returns 0, or -1 with err. */
int relay_restore_high_water(PGconn *conn, const relay_config *config,
                             const relay_source_info *info, int64_t *high, char *err,
                             size_t errlen);

/* The table's max(id), 0 when empty. Returns 0, or -1 with err. */
int relay_restore_max_id(PGconn *conn, const relay_config *config, const relay_source_info *info,
                         int64_t *max_id, char *err, size_t errlen);

#endif
