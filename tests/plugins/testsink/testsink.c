/*
 * A sink for tests: records accepted events in a file a test can read, and fails on demand.
 *
 * Options:
 *   out                path (required): each successful flush appends "ID KEY TYPE\n" for every
 *                      event delivered since the last flush ("ID KEY TYPE redelivered\n" for one
 *                      marked RELAY_SINK_EVENT_REDELIVERED), then fsyncs.
 *   fail_while_exists  path: while it exists, flush fails with RETRY and accepts nothing.
 *   attempts           path: every flush appends "ok\n" or "fail\n", once its outcome is final.
 *   init_error         text: init fails FATAL with it.
 *   reject_ids         comma-separated event ids ("3,7") that the destination refuses for good:
 *                      flush reports each through host->reject and does not write it to `out`.
 *   batches            path: every successful flush appends the number of events delivered
 *                      since the last flush, one line each (how the relay cut its batches).
 *   inits              path: every successful init appends "init TAG", TAG the option `tag`
 *                      (or "-"): a reload that starts the sink anew shows as a second line.
 *   tag                text: does nothing but show in `inits`.
 *
 * A failed flush drops what was pending: the relay hands those events over again, so `out` holds
 * exactly what flush accepted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <outbox_relay/sink.h>

typedef struct testsink {
    const relay_sink_host *host;
    char *out;
    char *fail_while_exists; /* NULL when not set */
    char *attempts;          /* NULL when not set */
    char *batches;           /* NULL when not set */
    char *inits;             /* NULL when not set */
    char *tag;               /* NULL when not set */
    size_t pending_events;   /* delivered since the last flush */
    char *pending;           /* the lines delivered since the last flush, owned */
    size_t pending_len;
    size_t pending_cap;
    int64_t *reject_ids; /* the ids to refuse, owned; NULL when none */
    size_t n_reject_ids;
    /* The refused events delivered since the last flush, owned; capacity n_reject_ids, since an
     * event is refused once per hand-over. */
    int64_t *pending_rejects;
    size_t n_pending_rejects;
} testsink;

static void testsink_destroy(void *state)
{
    testsink *sink = state;
    if (sink == NULL)
        return;
    free(sink->out);
    free(sink->fail_while_exists);
    free(sink->attempts);
    free(sink->batches);
    free(sink->inits);
    free(sink->tag);
    free(sink->pending);
    free(sink->reject_ids);
    free(sink->pending_rejects);
    free(sink);
}

static int testsink_set(char **slot, const char *value)
{
    free(*slot);
    *slot = strdup(value);
    return *slot != NULL ? 0 : -1;
}

/* Parses "3,7" into sink->reject_ids (and sizes pending_rejects to match). Returns 0, or -1 with
 * the reason in err. */
static int testsink_parse_reject_ids(testsink *sink, const char *value, char *err, size_t errlen)
{
    size_t n = 1;
    for (const char *c = value; *c != '\0'; c++)
        n += *c == ',';
    int64_t *ids = calloc(n, sizeof *ids);
    int64_t *pending = calloc(n, sizeof *pending);
    if (ids == NULL || pending == NULL) {
        free(ids);
        free(pending);
        snprintf(err, errlen, "testsink: out of memory");
        return -1;
    }
    const char *cursor = value;
    for (size_t i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long long id = strtoll(cursor, &end, 10);
        if (errno != 0 || end == cursor || id <= 0 || (*end != ',' && *end != '\0')) {
            snprintf(err, errlen, "testsink: reject_ids wants comma-separated ids, not '%s'",
                     value);
            free(ids);
            free(pending);
            return -1;
        }
        ids[i] = id;
        cursor = end + 1;
    }
    free(sink->reject_ids);
    free(sink->pending_rejects);
    sink->reject_ids = ids;
    sink->n_reject_ids = n;
    sink->pending_rejects = pending;
    sink->n_pending_rejects = 0;
    return 0;
}

static int testsink_append(const char *path, const char *text, size_t len, char *err,
                           size_t errlen);

static bool testsink_refuses(const testsink *sink, int64_t id)
{
    for (size_t i = 0; i < sink->n_reject_ids; i++) {
        if (sink->reject_ids[i] == id)
            return true;
    }
    return false;
}

static relay_sink_status testsink_init(const relay_sink_host *host,
                                       const relay_sink_option *options, size_t n_options,
                                       void **state, char *err, size_t errlen)
{
    testsink *sink = calloc(1, sizeof *sink);
    if (sink == NULL) {
        snprintf(err, errlen, "testsink: out of memory");
        return RELAY_SINK_FATAL;
    }
    sink->host = host;
    for (size_t i = 0; i < n_options; i++) {
        const char *key = options[i].key;
        const char *value = options[i].value;
        char **slot = NULL;
        if (strcmp(key, "init_error") == 0) {
            snprintf(err, errlen, "%s", value);
            testsink_destroy(sink);
            return RELAY_SINK_FATAL;
        } else if (strcmp(key, "out") == 0) {
            slot = &sink->out;
        } else if (strcmp(key, "fail_while_exists") == 0) {
            slot = &sink->fail_while_exists;
        } else if (strcmp(key, "attempts") == 0) {
            slot = &sink->attempts;
        } else if (strcmp(key, "batches") == 0) {
            slot = &sink->batches;
        } else if (strcmp(key, "inits") == 0) {
            slot = &sink->inits;
        } else if (strcmp(key, "tag") == 0) {
            slot = &sink->tag;
        } else if (strcmp(key, "reject_ids") == 0) {
            if (testsink_parse_reject_ids(sink, value, err, errlen) != 0) {
                testsink_destroy(sink);
                return RELAY_SINK_FATAL;
            }
            continue;
        } else {
            snprintf(err, errlen, "testsink: unknown option '%s'", key);
            testsink_destroy(sink);
            return RELAY_SINK_FATAL;
        }
        if (testsink_set(slot, value) != 0) {
            snprintf(err, errlen, "testsink: out of memory");
            testsink_destroy(sink);
            return RELAY_SINK_FATAL;
        }
    }
    if (sink->out == NULL) {
        snprintf(err, errlen, "testsink: option 'out' is required");
        testsink_destroy(sink);
        return RELAY_SINK_FATAL;
    }
    if (sink->inits != NULL) {
        char line[512];
        int n = snprintf(line, sizeof line, "init %s\n", sink->tag ? sink->tag : "-");
        if (testsink_append(sink->inits, line, (size_t)n < sizeof line ? (size_t)n : 0, err,
                            errlen) != 0) {
            testsink_destroy(sink);
            return RELAY_SINK_FATAL;
        }
    }
    host->log(host->ctx, RELAY_SINK_LOG_INFO, "writing to %s", sink->out);
    *state = sink;
    return RELAY_SINK_OK;
}

static relay_sink_status testsink_deliver(void *state, const relay_sink_batch *batch, char *err,
                                          size_t errlen)
{
    testsink *sink = state;
    for (size_t i = 0; i < batch->count; i++) {
        const relay_sink_event *e = relay_sink_batch_event(batch, i);
        sink->pending_events++;
        if (testsink_refuses(sink, e->id)) {
            /* Reported at flush, as a broker's refusal arrives with the delivery reports. */
            if (sink->n_pending_rejects < sink->n_reject_ids)
                sink->pending_rejects[sink->n_pending_rejects++] = e->id;
            continue;
        }
        /* The event's strings are borrowed: the line is rendered now, into memory we own. */
        const char *mark = e->flags & RELAY_SINK_EVENT_REDELIVERED ? " redelivered" : "";
        int n = snprintf(NULL, 0, "%lld %.*s %.*s%s\n", (long long)e->id, (int)e->key_len, e->key,
                         (int)e->type_len, e->type, mark);
        if (n < 0) {
            snprintf(err, errlen, "testsink: cannot format event %lld", (long long)e->id);
            return RELAY_SINK_FATAL;
        }
        size_t need = (size_t)n + 1;
        if (sink->pending_cap - sink->pending_len < need) {
            size_t cap = sink->pending_cap > 0 ? sink->pending_cap : 1024;
            while (cap - sink->pending_len < need)
                cap *= 2;
            char *grown = realloc(sink->pending, cap);
            if (grown == NULL) {
                snprintf(err, errlen, "testsink: out of memory");
                return RELAY_SINK_RETRY;
            }
            sink->pending = grown;
            sink->pending_cap = cap;
        }
        snprintf(sink->pending + sink->pending_len, need, "%lld %.*s %.*s%s\n", (long long)e->id,
                 (int)e->key_len, e->key, (int)e->type_len, e->type, mark);
        sink->pending_len += (size_t)n;
    }
    return RELAY_SINK_OK;
}

/* Appends text to path and fsyncs it. Returns 0, or -1 with the reason in err. */
static int testsink_append(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "testsink: %s: %s", path, strerror(errno));
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "testsink: %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    if (fsync(fd) != 0) {
        snprintf(err, errlen, "testsink: %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (close(fd) != 0) {
        snprintf(err, errlen, "testsink: %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static relay_sink_status testsink_flush(void *state, int timeout_ms, char *err, size_t errlen)
{
    (void)timeout_ms;
    testsink *sink = state;
    relay_sink_status status = RELAY_SINK_OK;
    if (sink->fail_while_exists != NULL && access(sink->fail_while_exists, F_OK) == 0) {
        snprintf(err, errlen, "testsink: failing on purpose");
        status = RELAY_SINK_RETRY;
    } else if (testsink_append(sink->out, sink->pending, sink->pending_len, err, errlen) != 0) {
        status = RELAY_SINK_RETRY;
    }
    if (status == RELAY_SINK_OK && sink->batches != NULL && sink->pending_events > 0) {
        char line[32];
        int n = snprintf(line, sizeof line, "%zu\n", sink->pending_events);
        if (testsink_append(sink->batches, line, (size_t)n, err, errlen) != 0)
            status = RELAY_SINK_RETRY;
    }
    if (status == RELAY_SINK_OK) {
        for (size_t i = 0; i < sink->n_pending_rejects; i++)
            sink->host->reject(sink->host->ctx, sink->pending_rejects[i],
                               "testsink: refused on purpose");
    }
    sink->pending_len = 0;
    sink->pending_events = 0;
    sink->n_pending_rejects = 0;

    /* Recorded last, so that a test seeing "ok" also sees the events in `out`. */
    if (sink->attempts != NULL) {
        const char *line = status == RELAY_SINK_OK ? "ok\n" : "fail\n";
        char attempts_err[512];
        if (testsink_append(sink->attempts, line, strlen(line), attempts_err,
                            sizeof attempts_err) != 0) {
            snprintf(err, errlen, "%s", attempts_err);
            return RELAY_SINK_FATAL;
        }
    }
    return status;
}

static const relay_sink_api testsink_api = {
    .abi_version = RELAY_SINK_ABI_VERSION,
    .struct_size = sizeof(relay_sink_api),
    .name = "testsink",
    .init = testsink_init,
    .deliver = testsink_deliver,
    .flush = testsink_flush,
    .destroy = testsink_destroy,
};

const relay_sink_api *RELAY_SINK_ENTRY(void)
{
    return &testsink_api;
}
