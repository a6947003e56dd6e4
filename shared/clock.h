/*
 * clock: the monotonic clock in milliseconds, for deadlines, ages and latencies. Wall-clock
 * time jumps (NTP, DST), so nothing that measures a duration uses it.
 */
#ifndef LAYERS_CLOCK_H
#define LAYERS_CLOCK_H

#include <sys/time.h>
#include <time.h>

static inline long long monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static inline struct timeval ms_to_timeval(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

#endif
