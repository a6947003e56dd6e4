/*
 * hlc: a hybrid logical clock (see hlc.h).
 */
#include "hlc.h"

void hlc_init(struct hlc *clock, long long offset_ms)
{
    clock->last = 0;
    clock->offset_ms = offset_ms;
}

uint64_t hlc_now(struct hlc *clock, long long now_ms)
{
    long long physical = now_ms + clock->offset_ms;
    uint64_t wall = physical > 0 ? (uint64_t)physical << HLC_LOGICAL_BITS : 0;
    clock->last = wall > clock->last ? wall : clock->last + 1;
    return clock->last;
}

void hlc_observe(struct hlc *clock, uint64_t seen)
{
    if (seen > clock->last)
        clock->last = seen;
}

long long hlc_physical_ms(uint64_t stamp)
{
    return (long long)(stamp >> HLC_LOGICAL_BITS);
}
