#include "notify.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "clock.h"
#include "relay_build.h"

#if RELAY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

void relay_notify_ready(void)
{
#if RELAY_HAVE_SYSTEMD
    sd_notify(0, "READY=1");
#endif
}

void relay_notify_reloading(void)
{
#if RELAY_HAVE_SYSTEMD
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
#endif
}

void relay_notify_stopping(void)
{
#if RELAY_HAVE_SYSTEMD
    sd_notify(0, "STOPPING=1");
#endif
}

void relay_notify_status(const char *fmt, ...)
{
#if RELAY_HAVE_SYSTEMD
    char status[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(status, sizeof status, fmt, ap);
    va_end(ap);
    sd_notifyf(0, "STATUS=%s", status);
#else
    (void)fmt;
#endif
}

int64_t relay_notify_watchdog_ms(void)
{
#if RELAY_HAVE_SYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        return (int64_t)(usec / 1000);
#endif
    return 0;
}

void relay_notify_watchdog(void)
{
#if RELAY_HAVE_SYSTEMD
    sd_notify(0, "WATCHDOG=1");
#endif
}

void relay_watchdog_init(relay_watchdog *w)
{
    w->interval_ms = relay_notify_watchdog_ms();
    w->last_ms = 0;
    atomic_init(&w->alive_ms, relay_now_ms());
}

void relay_watchdog_feed(relay_watchdog *w)
{
    int64_t now = relay_now_ms();
    atomic_store_explicit(&w->alive_ms, now, memory_order_relaxed);
    if (w->interval_ms > 0 && now - w->last_ms >= w->interval_ms / 4) {
        relay_notify_watchdog();
        w->last_ms = now;
    }
}
