#include "rows.h"

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for `more` items of `size` bytes at *used in *buf, doubling. */
static int reserve(void **buf, size_t *cap, size_t used, size_t more, size_t size)
{
    if (more <= *cap - used)
        return 0;
    size_t want = *cap > 0 ? *cap : 64;
    while (want - used < more) {
        if (want > SIZE_MAX / 2 / size)
            return -1;
        want *= 2;
    }
    void *grown = realloc(*buf, want * size);
    if (!grown)
        return -1;
    *buf = grown;
    *cap = want;
    return 0;
}

size_t relay_rows_size(const PGresult *res, int row)
{
    int n = PQnfields(res);
    size_t bytes = (size_t)n * (sizeof(relay_rows_value) + 1);
    for (int c = 0; c < n; c++)
        bytes += (size_t)PQgetlength(res, row, c);
    return bytes;
}

int relay_rows_add(relay_rows *rows, const PGresult *res, int row, size_t size, char *err,
                   size_t errlen)
{
    size_t n = (size_t)PQnfields(res);
    size_t bytes = size - n * sizeof(relay_rows_value);
    rows->n_columns = n;
    if (reserve((void **)&rows->values, &rows->values_cap, rows->count * n, n,
                sizeof *rows->values) != 0 ||
        reserve((void **)&rows->data, &rows->cap, rows->used, bytes, 1) != 0) {
        snprintf(err, errlen, "out of memory keeping a row of %zu bytes", size);
        return -1;
    }
    relay_rows_value *v = rows->values + rows->count * n;
    for (int c = 0; c < (int)n; c++) {
        size_t len = (size_t)PQgetlength(res, row, c);
        v[c].offset = rows->used;
        v[c].len = PQgetisnull(res, row, c) ? -1 : (int64_t)len;
        memcpy(rows->data + rows->used, PQgetvalue(res, row, c), len);
        rows->data[rows->used + len] = '\0';
        rows->used += len + 1;
    }
    rows->count++;
    return 0;
}

size_t relay_rows_bytes(const relay_rows *rows)
{
    return rows->used + rows->count * rows->n_columns * sizeof(relay_rows_value);
}

const char *relay_rows_get(const relay_rows *rows, size_t row, int column, size_t *len)
{
    const relay_rows_value *v = rows->values + row * rows->n_columns + column;
    *len = v->len < 0 ? 0 : (size_t)v->len;
    return v->len < 0 ? NULL : rows->data + v->offset;
}

int64_t relay_rows_int64(const relay_rows *rows, size_t row, int column)
{
    uint64_t be;
    memcpy(&be, rows->data + rows->values[row * rows->n_columns + column].offset, sizeof be);
    return (int64_t)be64toh(be);
}

uint32_t relay_rows_uint32(const relay_rows *rows, size_t row, int column)
{
    uint32_t be;
    memcpy(&be, rows->data + rows->values[row * rows->n_columns + column].offset, sizeof be);
    return be32toh(be);
}

void relay_rows_clear(relay_rows *rows, size_t keep_bytes)
{
    rows->count = 0;
    rows->used = 0;
    if (rows->cap > keep_bytes) {
        free(rows->data);
        rows->data = NULL;
        rows->cap = 0;
    }
}

void relay_rows_free(relay_rows *rows)
{
    free(rows->data);
    free(rows->values);
    *rows = (relay_rows){0};
}
