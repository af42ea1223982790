#include <criterion/criterion.h>
#include <stdint.h>

#include "timestamp.h"

/* The microsecond counts are PostgreSQL's own: (extract(epoch FROM ts) - 946684800) * 1000000. */
static void assert_renders(int64_t pg_usec, const char *want)
{
    char out[RELAY_RFC3339_SIZE];
    memset(out, 'x', sizeof out);
    relay_timestamp_rfc3339(pg_usec, out);
    cr_assert_str_eq(out, want, "%lld", (long long)pg_usec);
}

Test(timestamp, renders_rfc3339_with_microseconds)
{
    assert_renders(0, "2000-01-01T00:00:00.000000Z");
    assert_renders(INT64_C(848981573123456), "2026-11-26T04:12:53.123456Z");
    assert_renders(INT64_C(-946684800000000), "1970-01-01T00:00:00.000000Z");
}

Test(timestamp, counts_back_from_the_epoch_without_rounding_up)
{
    assert_renders(-1, "1999-12-31T23:59:59.999999Z");
    assert_renders(INT64_C(-12617679476999996), "1600-02-29T01:02:03.000004Z");
}

Test(timestamp, follows_gregorian_leap_years)
{
    assert_renders(INT64_C(5140800000000), "2000-02-29T12:00:00.000000Z");
    assert_renders(INT64_C(3160854000000000), "2100-02-28T23:00:00.000000Z");
    assert_renders(INT64_C(3160857600000000), "2100-03-01T00:00:00.000000Z");
}

Test(timestamp, spans_the_four_digit_years)
{
    assert_renders(INT64_C(-63082281600000000), "0001-01-01T00:00:00.000000Z");
    assert_renders(INT64_C(252455615999999999), "9999-12-31T23:59:59.999999Z");
}

Test(timestamp, expands_years_rfc3339_cannot_carry)
{
    assert_renders(INT64_C(252455616000000000), "+10000-01-01T00:00:00.000000Z");
    /* 1 BC is year 0 in ISO 8601, 44 BC year -43. */
    assert_renders(INT64_C(-63082368000000000), "0000-12-31T00:00:00.000000Z");
    assert_renders(INT64_C(-64464465600000000), "-0043-03-15T12:00:00.000000Z");
}

Test(timestamp, names_the_infinities)
{
    assert_renders(INT64_MAX, "infinity");
    assert_renders(INT64_MIN, "-infinity");
}
