/*
 * Integers in decimal as the sinks write ids and versions, the extremes included: INT64_MIN has
 * no positive counterpart to negate.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "relay_plugin_int64.h"

Test(relay_plugin_int64, int64_in_decimal)
{
    char out[21];
    cr_assert_eq(relay_plugin_format_int64(out, 0), 1);
    cr_assert_str_eq(out, "0");
    cr_assert_eq(relay_plugin_format_int64(out, INT64_MAX), 19);
    cr_assert_str_eq(out, "9223372036854775807");
    relay_plugin_format_int64(out, -12);
    cr_assert_str_eq(out, "-12");
}

Test(relay_plugin_int64, the_extremes_and_the_room_they_need)
{
    char out[RELAY_PLUGIN_INT64_SIZE];
    memset(out, 'x', sizeof out);
    cr_assert_eq(relay_plugin_format_int64(out, INT64_MIN), RELAY_PLUGIN_INT64_SIZE - 1);
    cr_assert_str_eq(out, "-9223372036854775808");
    cr_assert_eq(relay_plugin_format_int64(out, -1), 2);
    cr_assert_str_eq(out, "-1");
    cr_assert_eq(relay_plugin_format_int64(out, 1000000), 7);
    cr_assert_str_eq(out, "1000000");
}
