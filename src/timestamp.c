#include "timestamp.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define USEC_PER_DAY INT64_C(86400000000)
/* From 1970-01-01 (where the civil-date arithmetic below counts from) to PostgreSQL's epoch. */
#define DAYS_1970_TO_2000 10957
/* A Gregorian era: 400 years, always 146097 days. */
#define DAYS_PER_ERA 146097
/* From 0000-03-01 to 1970-01-01. Counting years from March puts the leap day last. */
#define DAYS_0000_03_01_TO_1970 719468

/* Writes v as exactly n digits, zero-padded (v < 10^n); snprintf per field is a third of a fetch's
 * client time. */
static char *put_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

/* The proleptic Gregorian date of a day counted from 1970-01-01, by whole eras, in which leap
 * years repeat exactly. */
static void civil_date(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
    int64_t z = days + DAYS_0000_03_01_TO_1970;
    int64_t era = (z >= 0 ? z : z - (DAYS_PER_ERA - 1)) / DAYS_PER_ERA;
    unsigned day_of_era = (unsigned)(z - era * DAYS_PER_ERA);
    /* 1460, 36524 and 146096 remove the leap days of 4, 100 and 400 years. */
    unsigned year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    unsigned day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    /* Months from March have lengths 31 30 31 30 31 31 30 31 30 31 31 (29|28): 153 days a five. */
    unsigned month_from_march = (5 * day_of_year + 2) / 153;
    *day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    *month = month_from_march < 10 ? month_from_march + 3 : month_from_march - 9;
    *year = (int64_t)year_of_era + era * 400 + (*month <= 2);
}

void relay_timestamp_rfc3339(int64_t pg_usec, char out[RELAY_RFC3339_SIZE])
{
    if (pg_usec == INT64_MAX || pg_usec == INT64_MIN) {
        strcpy(out, pg_usec == INT64_MAX ? "infinity" : "-infinity");
        return;
    }
    int64_t days = pg_usec / USEC_PER_DAY;
    int64_t usec_of_day = pg_usec % USEC_PER_DAY;
    if (usec_of_day < 0) {
        days--;
        usec_of_day += USEC_PER_DAY;
    }
    int64_t year;
    unsigned month, day;
    civil_date(days + DAYS_1970_TO_2000, &year, &month, &day);

    char *p = out;
    if (year >= 0 && year <= 9999)
        p = put_digits(p, (unsigned)year, 4);
    else
        p += snprintf(p, 16, "%+05" PRId64, year);
    unsigned seconds = (unsigned)(usec_of_day / 1000000);
    *p++ = '-';
    p = put_digits(p, month, 2);
    *p++ = '-';
    p = put_digits(p, day, 2);
    *p++ = 'T';
    p = put_digits(p, seconds / 3600, 2);
    *p++ = ':';
    p = put_digits(p, seconds / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, seconds % 60, 2);
    *p++ = '.';
    p = put_digits(p, (unsigned)(usec_of_day % 1000000), 6);
    *p++ = 'Z';
    *p = '\0';
}
