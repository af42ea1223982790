/*
 * systemd service notifications (sd_notify): READY=1, RELOADING=1, STATUS=..., STOPPING=1 and
 * watchdog pings.
 * Without libsystemd, or when not started by systemd (no NOTIFY_SOCKET), every call does nothing.
 */
#ifndef RELAY_NOTIFY_H
#define RELAY_NOTIFY_H

#include <stdatomic.h>
#include <stdint.h>

void relay_notify_ready(void);
/* A reload starts: RELOADING=1 with MONOTONIC_USEC, the CLOCK_MONOTONIC time in µs, which
 * systemd (253 on, for Type=notify-reload) wants to tell this reload from an older one. READY=1
 * ends it, whether it succeeded or kept the configuration in force. */
void relay_notify_reloading(void);
void relay_notify_stopping(void);
void relay_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval systemd asked for (WatchdogSec=), in ms, or 0 when there is none. */
int64_t relay_notify_watchdog_ms(void);
void relay_notify_watchdog(void);

/* The watchdog's pings, paced: one per quarter of WatchdogSec at most. The loop owns one; the
 * sink host borrows it while a sink waits, so that a ping from either counts for both. */
typedef struct relay_watchdog {
    int64_t interval_ms; /* WatchdogSec in ms, 0 when off */
    int64_t last_ms;     /* the relay's monotonic clock at the last ping */
    /* The last feed, pinged or not: the health probe's sign of life, read from its thread. */
    _Atomic int64_t alive_ms;
} relay_watchdog;

/* Sets w up with systemd's interval (0, and so silent, when there is none). */
void relay_watchdog_init(relay_watchdog *w);
/* Notes a sign of life; pings when a quarter of the interval has passed since the last ping.
 * Cannot fail. */
void relay_watchdog_feed(relay_watchdog *w);

#endif
