/*
 * What the libFuzzer harnesses share: an input split into fields, and the checks that fail the
 * run with a message rather than a bare abort.
 *
 * Fields are separated by NUL bytes: the strings they stand for (PostgreSQL text, C strings)
 * cannot hold one, and seeds stay writable with printf. Each field is copied into an allocation
 * of its own, exactly len + 1 bytes long, so that AddressSanitizer catches a read past its NUL.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point, declared for -Wmissing-prototypes and for the reader. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_field {
    char *text; /* NUL-terminated at [len], no NUL before; owned by the input */
    size_t len;
} fuzz_field;

typedef struct fuzz_input {
    const uint8_t *data;
    size_t size;
    size_t at;     /* where the next field starts */
    char **copies; /* every field handed out, freed with the input */
    size_t n_copies, cap;
} fuzz_input;

void fuzz_input_init(fuzz_input *in, const uint8_t *data, size_t size);

/* Whether a field is left. */
bool fuzz_input_more(const fuzz_input *in);

/* The next field; an empty one past the end. Never fails: out of memory aborts the run. */
fuzz_field fuzz_input_next(fuzz_input *in);

void fuzz_input_free(fuzz_input *in);

/* The index-th integer of a control field, whose integers are separated by blanks and read as
 * strtoll reads them ("-1", "0x20", saturated at the extremes); 0 where there is none. */
int64_t fuzz_field_int(fuzz_field f, size_t index);

/*
 * Where secret (a non-empty C string) stands in text sharing no byte with a `mark`, and, when q is
 * not NUL, between two q characters: the leak a redaction must leave none of. An occurrence that
 * overlaps a mark, or the beginning of one that ends the text (cut there, the buffer being full),
 * tells nothing: the mark may hold the secret's letters ("red" in "[redacted]") or join the text
 * beside it into them. NULL when there is none.
 */
const char *fuzz_find_unredacted(const char *text, const char *secret, const char *mark, char q);

/* Whether secret, placed somewhere across mark, can agree with it on every byte they share: then
 * redacting secret after another one may take letters out of that one's marks ("[re[redacted]"
 * for "d" then "a"), which hide nothing but are no longer marks fuzz_find_unredacted knows. */
bool fuzz_touches_mark(const char *secret, const char *mark);

/* Fails the run: prints what went wrong, then aborts, which libFuzzer reports as a crash and
 * saves the input of. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

_Noreturn void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
