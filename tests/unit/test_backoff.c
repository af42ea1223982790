#include <criterion/criterion.h>

#include "backoff.h"

Test(backoff, grows_to_the_cap_and_stays_within_bounds)
{
    relay_backoff b;
    relay_backoff_init(&b, 100, 1000);
    int64_t ceiling = 100;
    for (int i = 0; i < 20; i++) {
        int64_t d = relay_backoff_next(&b);
        cr_assert(d >= ceiling / 2 && d <= ceiling, "attempt %d: %lld outside [%lld, %lld]", i,
                  (long long)d, (long long)ceiling / 2, (long long)ceiling);
        ceiling = ceiling * 2 > 1000 ? 1000 : ceiling * 2;
    }
}

Test(backoff, reset_starts_again_from_initial)
{
    relay_backoff b;
    relay_backoff_init(&b, 50, 10000);
    for (int i = 0; i < 10; i++)
        relay_backoff_next(&b);
    relay_backoff_reset(&b);
    int64_t d = relay_backoff_next(&b);
    cr_assert(d >= 25 && d <= 50, "after reset: %lld", (long long)d);
}

Test(backoff, jitter_varies)
{
    relay_backoff b;
    relay_backoff_init(&b, 1000, 1000);
    int64_t first = relay_backoff_next(&b);
    int differs = 0;
    for (int i = 0; i < 50 && !differs; i++)
        differs = relay_backoff_next(&b) != first;
    cr_assert(differs, "50 delays all equal %lld: no jitter", (long long)first);
}
