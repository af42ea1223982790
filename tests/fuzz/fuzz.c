#include "fuzz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fuzz_input_init(fuzz_input *in, const uint8_t *data, size_t size)
{
    *in = (fuzz_input){.data = data, .size = size};
}

bool fuzz_input_more(const fuzz_input *in)
{
    return in->at < in->size;
}

static void *fuzz_alloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "fuzz: out of memory\n");
        abort();
    }
    return p;
}

fuzz_field fuzz_input_next(fuzz_input *in)
{
    const uint8_t *start = in->data + in->at;
    size_t left = in->size - in->at;
    const uint8_t *nul = left > 0 ? memchr(start, '\0', left) : NULL;
    size_t len = nul != NULL ? (size_t)(nul - start) : left;
    in->at += nul != NULL ? len + 1 : len;

    if (in->n_copies == in->cap) {
        in->cap = in->cap > 0 ? 2 * in->cap : 16;
        char **grown = realloc(in->copies, in->cap * sizeof *grown);
        if (grown == NULL) {
            fprintf(stderr, "fuzz: out of memory\n");
            abort();
        }
        in->copies = grown;
    }
    char *text = fuzz_alloc(len + 1);
    if (len > 0)
        memcpy(text, start, len);
    text[len] = '\0';
    in->copies[in->n_copies++] = text;
    return (fuzz_field){.text = text, .len = len};
}

void fuzz_input_free(fuzz_input *in)
{
    for (size_t i = 0; i < in->n_copies; i++)
        free(in->copies[i]);
    free(in->copies);
    *in = (fuzz_input){0};
}

int64_t fuzz_field_int(fuzz_field f, size_t index)
{
    const char *p = f.text;
    for (size_t i = 0;; i++) {
        char *end;
        long long value = strtoll(p, &end, 0);
        if (end == p)
            return 0;
        if (i == index)
            return value;
        p = end;
    }
}

/* The length of the longest beginning of mark that text ends with: a mark cut at the end of a
 * full buffer. */
static size_t fuzz_cut_mark(const char *text, const char *mark)
{
    size_t len = strlen(text);
    for (size_t n = strlen(mark) - 1; n > 0; n--)
        if (n <= len && memcmp(text + len - n, mark, n) == 0)
            return n;
    return 0;
}

/* Whether [at, at + len) shares a byte with an occurrence of mark in text, whole or cut. */
static bool fuzz_overlaps_mark(const char *text, size_t at, size_t len, const char *mark)
{
    size_t mark_len = strlen(mark);
    for (const char *m = strstr(text, mark); m != NULL; m = strstr(m + 1, mark)) {
        size_t from = (size_t)(m - text);
        if (from < at + len && at < from + mark_len)
            return true;
    }
    size_t cut = fuzz_cut_mark(text, mark);
    return cut > 0 && at + len > strlen(text) - cut;
}

const char *fuzz_find_unredacted(const char *text, const char *secret, const char *mark, char q)
{
    size_t len = strlen(secret);
    for (const char *p = strstr(text, secret); p != NULL; p = strstr(p + 1, secret)) {
        size_t at = (size_t)(p - text);
        if (q != '\0' && (at == 0 || text[at - 1] != q || p[len] != q))
            continue;
        if (!fuzz_overlaps_mark(text, at, len, mark))
            return p;
    }
    return NULL;
}

bool fuzz_touches_mark(const char *secret, const char *mark)
{
    long len = (long)strlen(secret), mark_len = (long)strlen(mark);
    /* secret placed at offset d of mark: they share the bytes from max(d, 0) to the end of the
     * shorter reach, and must agree on every one. */
    for (long d = 1 - len; d < mark_len; d++) {
        long from = d > 0 ? d : 0, to = d + len < mark_len ? d + len : mark_len;
        if (memcmp(mark + from, secret + (from - d), (size_t)(to - from)) == 0)
            return true;
    }
    return false;
}

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: check failed: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
