/* clock_util.c: monotonic and wall-clock seconds (see clock_util.h). */
#include "clock_util.h"

#include <time.h>

/* Seconds of clock id as a double. */
static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double clock_mono_s(void) { return clock_s(CLOCK_MONOTONIC); }

double clock_wall_s(void) { return clock_s(CLOCK_REALTIME); }
