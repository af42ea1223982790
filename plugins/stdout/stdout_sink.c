/*
 * The stdout sink: one JSON object per line on file descriptor 1.
 *
 * Lines are formatted into a buffer and written with write(2) in large chunks, straight to the
 * descriptor: no stdio buffer sits between deliver() and the kernel, so an event is accepted
 * once write(2) took it, and every error is seen where it happens. deliver() reports a failed
 * write at once (RETRY: the relay hands the batch over again) and flush() reports it as well, so
 * that no failure since the last flush goes unnoticed whatever the relay does with deliver's.
 * Lines of a failed batch may already be partly out: at-least-once, never loss.
 *
 * What "accepted" means depends on what descriptor 1 is. A regular file: flush() returns OK only
 * after fsync(2), so that an acknowledged event survives a crash of the machine. A pipe or a
 * socket cannot acknowledge: write(2) returns once the kernel buffered the bytes, and a reader
 * that dies takes what it had not read with it, while the position has moved past it. A terminal
 * is for people. init says which it is, so that `check` shows it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <outbox_relay/sink.h>

#include "relay_plugin_buffer.h"
#include "relay_plugin_int64.h"

/* Formatting stops to write once this much is pending, so memory stays bounded however large the
 * batch, while syscalls stay few. */
#define STDOUT_SINK_CHUNK (256 * 1024)

typedef struct stdout_sink {
    int fd;
    int sync; /* a regular file: fsync at every flush */
    relay_plugin_buffer out;
    int write_errno; /* the first write error since the last flush, 0 if none */
} stdout_sink;

static relay_sink_status stdout_sink_init(const relay_sink_host *host,
                                          const relay_sink_option *options, size_t n_options,
                                          void **state, char *err, size_t errlen)
{
    if (n_options > 0) {
        snprintf(err, errlen, "stdout: unknown option '%s'", options[0].key);
        return RELAY_SINK_FATAL;
    }
    stdout_sink *sink = calloc(1, sizeof *sink);
    if (sink == NULL) {
        snprintf(err, errlen, "stdout: out of memory");
        return RELAY_SINK_FATAL;
    }
    sink->fd = STDOUT_FILENO;
    struct stat st;
    int flags = fcntl(sink->fd, F_GETFL);
    if (flags == -1 || (flags & O_ACCMODE) == O_RDONLY) {
        snprintf(err, errlen,
                 "stdout: descriptor 1 is %s: start the relay with its standard output on a "
                 "file, a pipe or /dev/null",
                 flags == -1 ? "closed" : "not open for writing (it was closed at start)");
        free(sink);
        return RELAY_SINK_FATAL;
    }
    if (fstat(sink->fd, &st) != 0) {
        snprintf(err, errlen, "stdout: %s", strerror(errno));
        free(sink);
        return RELAY_SINK_FATAL;
    }
    sink->sync = S_ISREG(st.st_mode);
    if (S_ISREG(st.st_mode))
        host->log(host->ctx, RELAY_SINK_LOG_INFO,
                  "stdout is a regular file: a flush is acknowledged after fsync");
    else if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
        host->log(host->ctx, RELAY_SINK_LOG_WARN,
                  "stdout is a %s: it cannot acknowledge. An event is taken as delivered once "
                  "the kernel buffered it; if the reader dies, what it had not read is gone while "
                  "the position has moved past it. Use a sink that acknowledges, or a file",
                  S_ISFIFO(st.st_mode) ? "pipe" : "socket");
    else if (isatty(sink->fd))
        host->log(host->ctx, RELAY_SINK_LOG_INFO,
                  "stdout is a terminal: for watching events, not for keeping them");
    else
        host->log(host->ctx, RELAY_SINK_LOG_INFO, "stdout is a character or block device");
    *state = sink;
    return RELAY_SINK_OK;
}

/*
 * A write that failed after `written` bytes of the buffer (a full disk) may have left half a line
 * in a regular file, and the retry would append whole lines after it: two events on one line for
 * every reader. The buffer starts at a line's start, so the file is cut back to the end of the
 * last whole line written. A pipe cannot be cut: its reader sees the half line, then the batch
 * again from its first event on a line of its own (the README says so).
 */
static void stdout_sink_cut_partial_line(stdout_sink *sink, size_t written)
{
    if (!sink->sync)
        return;
    size_t whole = written;
    while (whole > 0 && sink->out.data[whole - 1] != '\n')
        whole--;
    if (whole == written)
        return;
    off_t end = lseek(sink->fd, 0, SEEK_CUR);
    if (end < 0)
        return;
    off_t cut = end - (off_t)(written - whole);
    if (ftruncate(sink->fd, cut) == 0)
        lseek(sink->fd, cut, SEEK_SET);
}

/* Writes out the buffer. Returns 0, or an errno; the buffer is emptied either way, since a retry
 * formats the batch again. */
static int stdout_sink_drain(stdout_sink *sink)
{
    size_t done = 0;
    int error = 0;
    while (done < sink->out.len) {
        ssize_t n = write(sink->fd, sink->out.data + done, sink->out.len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* A descriptor inherited in non-blocking mode: wait for room instead of failing. */
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd out = {.fd = sink->fd, .events = POLLOUT};
                if (poll(&out, 1, -1) >= 0 || errno == EINTR)
                    continue;
            }
            error = errno;
            stdout_sink_cut_partial_line(sink, done);
            break;
        }
        done += (size_t)n;
    }
    sink->out.len = 0;
    if (error != 0 && sink->write_errno == 0)
        sink->write_errno = error;
    return error;
}

/* The worst case of every append below, so the formatters need not check room byte by byte. */
static size_t stdout_sink_line_bound(const relay_sink_event *e, size_t created_at_len)
{
    /* Keys, punctuation, the late and redelivered flags and two 20-digit integers stay well below
     * 200 bytes; a header's name, value and punctuation take at most 6 bytes a byte and 16 more. */
    size_t bound =
        200 +
        6 * (e->key_len + e->type_len + created_at_len + e->aggregate_type_len + e->event_id_len) +
        e->payload_len + e->metadata_len;
    for (size_t i = 0; i < e->n_headers; i++)
        bound += 16 + 6 * (e->headers[i].name_len + e->headers[i].value_len);
    return bound;
}

static char *put(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

#define PUT_LITERAL(p, lit) put((p), (lit), sizeof(lit) - 1)

/* The NUL written after the digits is within the line's bound, and overwritten by what follows. */
static char *put_int64(char *p, int64_t value)
{
    return p + relay_plugin_format_int64(p, value);
}

/* A JSON string per RFC 8259: quote, backslash and control characters escaped. */
static char *put_json_string(char *p, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    *p++ = '"';
    size_t run = 0; /* start of the bytes not yet copied */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        p = put(p, s + run, i - run);
        run = i + 1;
        *p++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *p++ = (char)c;
            break;
        case '\b':
            *p++ = 'b';
            break;
        case '\f':
            *p++ = 'f';
            break;
        case '\n':
            *p++ = 'n';
            break;
        case '\r':
            *p++ = 'r';
            break;
        case '\t':
            *p++ = 't';
            break;
        default:
            p = PUT_LITERAL(p, "u00");
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }
    }
    p = put(p, s + run, len - run);
    *p++ = '"';
    return p;
}

/* A JSON string, or null for SQL NULL (or a NULL pointer). */
static char *put_json_string_or_null(char *p, const char *s, size_t len, bool null)
{
    if (null || s == NULL)
        return PUT_LITERAL(p, "null");
    return put_json_string(p, s, len);
}

/* JSON text as it came, or null. Valid JSON holds raw CR and LF only as whitespace between tokens
 * (a json column keeps the author's), so they become spaces: one event stays one line. */
static char *put_json_text(char *p, const char *json, size_t len)
{
    if (json == NULL || len == 0)
        return PUT_LITERAL(p, "null");
    char *start = p;
    p = put(p, json, len);
    for (char *c = start; c < p; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
    return p;
}

static char *put_event(char *p, const relay_sink_event *e, size_t created_at_len)
{
    p = PUT_LITERAL(p, "{\"id\":");
    p = put_int64(p, e->id);
    p = PUT_LITERAL(p, ",\"key\":");
    p = put_json_string_or_null(p, e->key, e->key_len, e->flags & RELAY_SINK_EVENT_KEY_NULL);
    p = PUT_LITERAL(p, ",\"type\":");
    p = put_json_string_or_null(p, e->type, e->type_len, e->flags & RELAY_SINK_EVENT_TYPE_NULL);
    p = PUT_LITERAL(p, ",\"version\":");
    if (e->has_version)
        p = put_int64(p, e->version);
    else
        p = PUT_LITERAL(p, "null");
    p = PUT_LITERAL(p, ",\"payload\":");
    p = put_json_text(p, e->payload, e->payload_len);
    p = PUT_LITERAL(p, ",\"metadata\":");
    p = put_json_text(p, e->metadata, e->metadata_len);
    p = PUT_LITERAL(p, ",\"created_at\":");
    p = put_json_string_or_null(p, e->created_at, created_at_len,
                                e->flags & RELAY_SINK_EVENT_CREATED_AT_NULL);
    /* The optional members only when they say something, so that a table without them gives the
     * lines it always gave. */
    if (e->aggregate_type != NULL) {
        p = PUT_LITERAL(p, ",\"aggregate_type\":");
        p = put_json_string(p, e->aggregate_type, e->aggregate_type_len);
    }
    /* The ordering id, written already; NULL only from a host older than the flag's promise. */
    if (e->event_id != NULL && !(e->flags & RELAY_SINK_EVENT_ID_IS_ID)) {
        p = PUT_LITERAL(p, ",\"event_id\":");
        p = put_json_string(p, e->event_id, e->event_id_len);
    }
    if (e->n_headers > 0) {
        p = PUT_LITERAL(p, ",\"headers\":{");
        for (size_t i = 0; i < e->n_headers; i++) {
            const relay_sink_header *h = &e->headers[i];
            if (i > 0)
                *p++ = ',';
            p = put_json_string(p, h->name, h->name_len);
            *p++ = ':';
            p = h->value ? put_json_string(p, h->value, h->value_len) : PUT_LITERAL(p, "null");
        }
        *p++ = '}';
    }
    if (e->flags & RELAY_SINK_EVENT_LATE)
        p = PUT_LITERAL(p, ",\"late\":true");
    if (e->flags & RELAY_SINK_EVENT_REDELIVERED)
        p = PUT_LITERAL(p, ",\"redelivered\":true");
    p = PUT_LITERAL(p, "}\n");
    return p;
}

static relay_sink_status stdout_sink_write_failed(int error, char *err, size_t errlen)
{
    snprintf(err, errlen, "stdout: write failed: %s", strerror(error));
    return RELAY_SINK_RETRY;
}

static relay_sink_status stdout_sink_deliver(void *state, const relay_sink_batch *batch, char *err,
                                             size_t errlen)
{
    stdout_sink *sink = state;
    for (size_t i = 0; i < batch->count; i++) {
        const relay_sink_event *e = relay_sink_batch_event(batch, i);
        size_t created_at_len = e->created_at != NULL ? strlen(e->created_at) : 0;
        size_t bound = stdout_sink_line_bound(e, created_at_len);
        if (relay_plugin_buffer_reserve(&sink->out, bound) != 0) {
            sink->out.len = 0;
            snprintf(err, errlen, "stdout: out of memory formatting event %lld", (long long)e->id);
            return RELAY_SINK_RETRY;
        }
        char *end = put_event(sink->out.data + sink->out.len, e, created_at_len);
        sink->out.len = (size_t)(end - sink->out.data);
        if (sink->out.len >= STDOUT_SINK_CHUNK) {
            int error = stdout_sink_drain(sink);
            if (error != 0)
                return stdout_sink_write_failed(error, err, errlen);
        }
    }
    int error = stdout_sink_drain(sink);
    if (error != 0)
        return stdout_sink_write_failed(error, err, errlen);
    return RELAY_SINK_OK;
}

static relay_sink_status stdout_sink_flush(void *state, int timeout_ms, char *err, size_t errlen)
{
    (void)timeout_ms; /* deliver() already wrote everything: nothing here can block */
    stdout_sink *sink = state;
    int error = sink->write_errno;
    sink->write_errno = 0;
    /* EINVAL: a file that cannot sync (some special files); it was written, as for a device. */
    if (error == 0 && sink->sync && fsync(sink->fd) != 0 && errno != EINVAL)
        error = errno;
    if (error != 0)
        return stdout_sink_write_failed(error, err, errlen);
    return RELAY_SINK_OK;
}

static void stdout_sink_destroy(void *state)
{
    stdout_sink *sink = state;
    if (sink == NULL)
        return;
    relay_plugin_buffer_free(&sink->out);
    free(sink);
}

static const relay_sink_api stdout_sink_api = {
    .abi_version = RELAY_SINK_ABI_VERSION,
    .struct_size = sizeof(relay_sink_api),
    .name = "stdout",
    .init = stdout_sink_init,
    .deliver = stdout_sink_deliver,
    .flush = stdout_sink_flush,
    .destroy = stdout_sink_destroy,
};

const relay_sink_api *RELAY_SINK_ENTRY(void)
{
    return &stdout_sink_api;
}
