#include "signals.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The only mutable globals of the program: written by the handlers, read by the loop; and the
 * database socket, written by the loop, read by the handler that unblocks it. */
static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t reload_signal;
static volatile sig_atomic_t stop_socket = -1;

static void on_stop(int signo)
{
    if (stop_signal)
        _exit(128 + signo);
    stop_signal = signo;
    /* The loop sees the flag between steps; a step that waits inside libpq (a lock, a server
     * stopped with SIGSTOP) does not: SIGALRM comes to unblock it. */
    alarm(RELAY_STOP_GRACE_S);
}

/*
 * The stop's grace is over and the loop is still inside a step: libpq retries its poll() on
 * EINTR, so the only way out of a wait for the server is to end the connection under it.
 * shutdown(2) is async-signal-safe; libpq then sees the connection closed, the step fails, and
 * the loop, finding the stop flag, leaves without storing anything more.
 */
static void on_stop_grace_over(int signo)
{
    (void)signo;
    int fd = stop_socket;
    if (stop_signal && fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

void relay_signals_set_stop_socket(int fd)
{
    stop_socket = fd;
}

static void on_reload(int signo)
{
    (void)signo;
    reload_signal = 1;
}

int relay_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking wait should return early so the loop sees the flag. */
    sa.sa_handler = on_stop;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = on_reload;
    if (sigaction(SIGHUP, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = on_stop_grace_over;
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

bool relay_stop_requested(void)
{
    return stop_signal != 0;
}

bool relay_reload_requested(void)
{
    if (!reload_signal)
        return false;
    reload_signal = 0;
    return true;
}

relay_wait_result relay_wait(int fd, int64_t timeout_ms)
{
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &saved);
    if (stop_signal || reload_signal) {
        sigprocmask(SIG_SETMASK, &saved, NULL);
        return stop_signal ? RELAY_WAIT_STOP : RELAY_WAIT_RELOAD;
    }

    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000};
    /* ppoll installs the saved mask for the duration of the wait only: a pending signal interrupts
     * it at once, and none can slip in between the check above and the wait. */
    int ready = ppoll(&pfd, fd >= 0 ? 1 : 0, &ts, &saved);
    sigprocmask(SIG_SETMASK, &saved, NULL);
    if (stop_signal)
        return RELAY_WAIT_STOP;
    if (reload_signal)
        return RELAY_WAIT_RELOAD;
    return ready > 0 ? RELAY_WAIT_READABLE : RELAY_WAIT_TIMEOUT;
}
