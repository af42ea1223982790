/*
 * The rows a read keeps, copied out of libpq's results into one buffer. A read runs in libpq's
 * single-row mode, so that libpq holds one row at a time and the relay decides, row by row,
 * which to keep: what a read holds is then bounded by source.batch_bytes (and the one row a
 * batch always takes), whatever sizes the server sends, instead of by the read's LIMIT times its
 * largest row.
 */
#ifndef RELAY_ROWS_H
#define RELAY_ROWS_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

typedef struct relay_rows_value {
    size_t offset; /* into data */
    int64_t len;   /* -1 for SQL NULL */
} relay_rows_value;

typedef struct relay_rows {
    char *data; /* the values, each followed by a NUL (the ABI promises NUL-ended strings) */
    size_t used, cap;
    relay_rows_value *values; /* n_columns per row */
    size_t count, values_cap, n_columns;
} relay_rows;

/* The bytes row `row` of res takes once kept: its values, their NULs and their places. Cannot
 * fail. */
size_t relay_rows_size(const PGresult *res, int row);

/* Copies row `row` of res, of `size` bytes (relay_rows_size), with as many columns as every row
 * added since the last clear. Returns 0, or -1 with err (out of memory). Pointers from
 * relay_rows_get stay valid only until the next add or clear. */
int relay_rows_add(relay_rows *rows, const PGresult *res, int row, size_t size, char *err,
                   size_t errlen);

/* The bytes the kept rows take: the sum of their relay_rows_size. Cannot fail. */
size_t relay_rows_bytes(const relay_rows *rows);

/* A kept row's value and its length, or NULL (and 0) for SQL NULL. Cannot fail. */
const char *relay_rows_get(const relay_rows *rows, size_t row, int column, size_t *len);

/* Binary integers, as the read's integer columns come; the value must not be NULL. */
int64_t relay_rows_int64(const relay_rows *rows, size_t row, int column);
uint32_t relay_rows_uint32(const relay_rows *rows, size_t row, int column);

/* Forgets the rows. A buffer grown past keep_bytes (by one huge row) is given back, so that one
 * such row does not keep its memory for the life of the process. Cannot fail. */
void relay_rows_clear(relay_rows *rows, size_t keep_bytes);
void relay_rows_free(relay_rows *rows);

#endif
