/* clock.h - deadlines for pthread_cond_timedwait, which measures
 * CLOCK_REALTIME. */
#ifndef AT_CORE_CLOCK_H
#define AT_CORE_CLOCK_H

#include <time.h>

/* *t = the CLOCK_REALTIME time ms milliseconds from now (ms >= 0). */
void at_deadline_ms(struct timespec *t, long ms);

#endif
