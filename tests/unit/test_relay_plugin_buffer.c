/*
 * The sinks' growable buffer: it must keep what was written when it grows, allocate nothing while
 * there is room (that is what makes a warm sink allocation-free), and refuse a size that would
 * wrap around rather than hand out a buffer smaller than asked for.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "relay_plugin_buffer.h"

Test(relay_plugin_buffer, an_empty_buffer_grows_to_fit)
{
    relay_plugin_buffer buf = {0};
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 0), 0);
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 10), 0);
    cr_assert_not_null(buf.data);
    cr_assert_eq(buf.len, 0);
    cr_assert_geq(buf.cap, 10);
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 100000), 0);
    cr_assert_geq(buf.cap, 100000);
    relay_plugin_buffer_free(&buf);
}

Test(relay_plugin_buffer, growing_keeps_what_was_written)
{
    relay_plugin_buffer buf = {0};
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 3), 0);
    memcpy(buf.data, "abc", 3);
    buf.len = 3;
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 1 << 20), 0);
    cr_assert_geq(buf.cap - buf.len, (size_t)1 << 20);
    cr_assert_eq(buf.len, 3);
    cr_assert(memcmp(buf.data, "abc", 3) == 0);
    relay_plugin_buffer_free(&buf);
}

Test(relay_plugin_buffer, room_enough_allocates_nothing)
{
    relay_plugin_buffer buf = {0};
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 1000), 0);
    buf.len = 10;
    char *data = buf.data;
    size_t cap = buf.cap;
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, cap - buf.len), 0);
    cr_assert_eq(buf.data, data, "a reservation that fits reallocated the buffer");
    cr_assert_eq(buf.cap, cap);
    relay_plugin_buffer_free(&buf);
}

Test(relay_plugin_buffer, a_size_that_would_overflow_is_refused_unchanged)
{
    relay_plugin_buffer buf = {0};
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, SIZE_MAX), -1);
    cr_assert_null(buf.data);
    cr_assert_eq(buf.cap, 0);

    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 16), 0);
    memcpy(buf.data, "kept", 4);
    buf.len = 4;
    char *data = buf.data;
    size_t cap = buf.cap;
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, SIZE_MAX / 2), -1);
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, SIZE_MAX - 2), -1);
    cr_assert_eq(buf.data, data);
    cr_assert_eq(buf.cap, cap);
    cr_assert_eq(buf.len, 4);
    cr_assert(memcmp(buf.data, "kept", 4) == 0);
    relay_plugin_buffer_free(&buf);
}

Test(relay_plugin_buffer, freed_it_is_empty_and_usable_again)
{
    relay_plugin_buffer buf = {0};
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 300), 0);
    buf.len = 5;
    relay_plugin_buffer_free(&buf);
    cr_assert_null(buf.data);
    cr_assert_eq(buf.len, 0);
    cr_assert_eq(buf.cap, 0);
    relay_plugin_buffer_free(&buf);
    cr_assert_eq(relay_plugin_buffer_reserve(&buf, 1), 0);
    relay_plugin_buffer_free(&buf);
}
