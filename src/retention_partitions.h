/*
 * Retention by partition (retention.drop_partitions): on a table partitioned by range of its id
 * column, a partition whose every id is within the bound (retention.h) and whose newest row is
 * older than delete_after is detached and dropped in one short transaction, instead of its rows
 * being deleted: no dead rows, nothing for VACUUM.
 *
 * Never dropped: the partition that new ids go to (its range reaches past the bound, which is at
 * most the highest id handed out), the DEFAULT partition and one that ends at MAXVALUE (no upper
 * bound), and a partition holding a dead letter (its contents are the only copy of the event).
 */
#ifndef RELAY_RETENTION_PARTITIONS_H
#define RELAY_RETENTION_PARTITIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "source.h"

/* How the table is partitioned, for `check`. */
typedef struct relay_partitioning {
    bool by_id;           /* partitioned by range of the id column alone */
    int64_t partitions;   /* its partitions */
    bool owned;           /* the role owns (or is a member of the owner of) it and all of them */
    char not_owned[1300]; /* otherwise: one it does not own */
} relay_partitioning;

/* Reads how the table of config is partitioned. Returns 0, or -1 with err. */
int relay_retention_partitioning(PGconn *conn, const relay_config *config, relay_partitioning *out,
                                 char *err, size_t errlen);

/* What a partition round did. */
typedef struct relay_partition_round {
    bool by_id; /* false: the table is not partitioned by range of id; nothing done */
    bool turn;  /* false: another relay's round on the table was going on; nothing done */
    bool dropped;
    char partition[1300]; /* the partition dropped, quoted */
    int64_t below;        /* its ids were all below this */
    int64_t rows;         /* about as many rows as it had, from the statistics; -1: unknown */
    bool bounded;         /* some relay is registered on the table; bound is set */
    int64_t bound;
} relay_partition_round;

/*
 * One round: detaches and drops the lowest partition that may go, if any, and counts it for the
 * relay, in one transaction, under the relay's fencing epoch. Returns 0, or -1 with err (rolled
 * back: nothing dropped).
 */
int relay_retention_drop_partition(PGconn *conn, const relay_config *config,
                                   const relay_source_info *info, int64_t epoch,
                                   relay_partition_round *out, char *err, size_t errlen);

#endif
