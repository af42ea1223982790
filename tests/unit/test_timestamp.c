#include <criterion/criterion.h>

#include "timestamp.h"

static void assert_converts(const char *pg, const char *want)
{
    char out[RELAY_RFC3339_SIZE];
    cr_assert_eq(relay_timestamp_rfc3339(pg, out), 0, "%s was refused", pg);
    cr_assert_str_eq(out, want, "%s", pg);
}

static void assert_refused(const char *pg)
{
    char out[RELAY_RFC3339_SIZE];
    cr_assert_eq(relay_timestamp_rfc3339(pg, out), -1, "%s was accepted", pg);
}

Test(timestamp, pads_the_fraction_to_microseconds)
{
    assert_converts("2026-11-26 04:12:53.123456+00", "2026-11-26T04:12:53.123456Z");
    assert_converts("2026-11-26 04:12:53.1234+00", "2026-11-26T04:12:53.123400Z");
    assert_converts("2026-11-26 04:12:53.5+00:00", "2026-11-26T04:12:53.500000Z");
    assert_converts("2026-11-26 04:12:53+00", "2026-11-26T04:12:53.000000Z");
}

Test(timestamp, timestamp_without_time_zone_is_taken_as_utc)
{
    assert_converts("1999-01-02 03:04:05.06", "1999-01-02T03:04:05.060000Z");
}

Test(timestamp, other_shapes_are_refused)
{
    assert_refused("infinity");
    assert_refused("2026-11-26 04:12:53+01");
    assert_refused("0044-03-15 12:00:00+00 BC");
    assert_refused("12026-11-26 04:12:53+00");
    assert_refused("2026-11-26T04:12:53Z");
    assert_refused("2026-11-26 04:12:53.+00");
    assert_refused("");
}
