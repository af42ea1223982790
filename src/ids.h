/*
 * How the outbox table's ids are handed out, and whether the proof of a gap's death covers them.
 *
 * The proof (lockers.h) rests on the INSERT taking the id itself, through the id column's default
 * (nextval() on a sequence, or an identity), after it locked the table. A sequence with CACHE
 * above 1 breaks that: each session takes a run of ids ahead and may insert one of them long
 * after, in a later transaction that held no lock when the relay saw the gap. So does an
 * application that takes ids itself (SELECT nextval() first, an ORM's pooled optimizer). The
 * relay refuses the first and warns of the second, unless source.ids_taken_ahead says the
 * application does so on purpose, when gap_floor stands in for the proof.
 */
#ifndef RELAY_IDS_H
#define RELAY_IDS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "source.h"

typedef enum relay_ids_verdict {
    RELAY_IDS_OK,     /* assigned by the insert, one at a time */
    RELAY_IDS_WARN,   /* message says what the proof cannot see; the relay runs */
    RELAY_IDS_REFUSE, /* message says why events could be lost, and what to change */
} relay_ids_verdict;

/*
 * Looks at the id column's default and its sequence, and sets info->sequence_oid (0: none).
 * Returns 0 with the verdict and its message (empty for OK) in msg, or -1 with err (a failed
 * query).
 */
int relay_ids_inspect(PGconn *conn, const relay_config *config, relay_source_info *info,
                      relay_ids_verdict *verdict, char *msg, size_t msglen, char *err,
                      size_t errlen);

#endif
