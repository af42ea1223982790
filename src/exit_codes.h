/* The process exit codes: a stable contract, documented in --help. */
#ifndef RELAY_EXIT_CODES_H
#define RELAY_EXIT_CODES_H

enum relay_exit_code {
    RELAY_EXIT_OK = 0,
    RELAY_EXIT_RUNTIME = 1, /* the sink failed for good; the position is before the failed batch */
    RELAY_EXIT_USAGE = 2,
    RELAY_EXIT_CONFIG = 3,
    RELAY_EXIT_DATABASE = 4,   /* cannot connect, or the table, a column or the schema is missing */
    RELAY_EXIT_SINK = 5,       /* the plugin cannot be loaded, speaks another ABI, or fails init */
    RELAY_EXIT_CHECKPOINT = 6, /* the position belongs to another database or an older table:
                                  restored or truncated; `outbox-relay reset` decides */
    RELAY_EXIT_REFUSED = 7,    /* dead-letters, replay: the ids given do not fit the database (not
                                  a dead letter of this relay, an event's row gone, a range above
                                  the position); nothing was changed for them */
};

#endif
