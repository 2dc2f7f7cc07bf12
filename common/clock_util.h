/* clock_util.h: the one way to read the clock, in seconds as a double.
 *
 * clock_mono_s (CLOCK_MONOTONIC) is for durations: it never jumps when the system time is set.
 * clock_wall_s (CLOCK_REALTIME) is for timestamps that a person or report.json reads. Neither
 * sleeps or measures CPU time.
 */
#ifndef COMMON_CLOCK_UTIL_H
#define COMMON_CLOCK_UTIL_H

/* Monotonic seconds since an arbitrary start (CLOCK_MONOTONIC); for durations. */
double clock_mono_s(void);

/* Wall-clock seconds since the epoch (CLOCK_REALTIME); for timestamps. */
double clock_wall_s(void);

#endif
