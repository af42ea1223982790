/*
 * Signal handling, PgBouncer-style: handlers only set flags; the relay loop looks at them between
 * steps. A second SIGTERM/SIGINT while stopping exits at once (the operator insists).
 */
#ifndef RELAY_SIGNALS_H
#define RELAY_SIGNALS_H

#include <stdbool.h>
#include <stdint.h>

/* Installs handlers for SIGTERM, SIGINT and SIGHUP, and ignores SIGPIPE so that a closed stdout
 * reaches the sink as EPIPE instead of killing the relay. Returns 0, or -1 with errno set. */
int relay_signals_install(void);

bool relay_stop_requested(void);

/* Seconds a stop waits for the step in progress before it ends the database connection under it
 * (relay_signals_set_stop_socket): well within the 2 s an orchestrator may allow. */
#define RELAY_STOP_GRACE_S 1

/* The database connection's socket, -1 for none: shut down when a stop's grace is over and the
 * loop is still waiting on the server. Set it after every connect, -1 before closing. */
void relay_signals_set_stop_socket(int fd);

/* True once per SIGHUP received since the last call: SIGHUPs that come together make one
 * reload. */
bool relay_reload_requested(void);

typedef enum relay_wait_result {
    RELAY_WAIT_TIMEOUT = 0,
    RELAY_WAIT_READABLE = 1, /* fd has input */
    RELAY_WAIT_STOP = 2,     /* a stop was requested */
    RELAY_WAIT_RELOAD = 3,   /* a SIGHUP came and is not taken yet (relay_reload_requested) */
} relay_wait_result;

/*
 * Waits until fd (when >= 0) is readable, timeout_ms has passed, a stop was requested, or a
 * reload (which a stop outranks).
 * Race-free: a signal arriving just before the wait still ends it (signals are blocked between the
 * flag check and an atomic unblock in ppoll).
 */
relay_wait_result relay_wait(int fd, int64_t timeout_ms);

#endif
