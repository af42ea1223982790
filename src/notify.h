/*
 * systemd service notifications (sd_notify): READY=1, STATUS=..., STOPPING=1 and watchdog pings.
 * Without libsystemd, or when not started by systemd (no NOTIFY_SOCKET), every call does nothing.
 */
#ifndef RELAY_NOTIFY_H
#define RELAY_NOTIFY_H

#include <stdint.h>

void relay_notify_ready(void);
void relay_notify_stopping(void);
void relay_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval systemd asked for (WatchdogSec=), in ms, or 0 when there is none. */
int64_t relay_notify_watchdog_ms(void);
void relay_notify_watchdog(void);

#endif
