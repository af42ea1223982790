/* The relay's own clock for waits and intervals: monotonic, so that a step of the wall clock
 * neither ends a wait early nor stretches it. */
#ifndef RELAY_CLOCK_H
#define RELAY_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds. Cannot fail. */
int64_t relay_now_ms(void);

#endif
