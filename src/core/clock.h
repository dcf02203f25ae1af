/* clock.h - deadlines for pthread_cond_timedwait, which measures
 * CLOCK_REALTIME, and the monotonic time durations are measured in. */
#ifndef AT_CORE_CLOCK_H
#define AT_CORE_CLOCK_H

#include <time.h>

/* *t = the CLOCK_REALTIME time ms milliseconds from now (ms >= 0). */
void at_deadline_ms(struct timespec *t, long ms);

/* Seconds on CLOCK_MONOTONIC: for durations and deadlines that must not
 * jump with the wall clock. */
double at_now_s(void);

#endif
