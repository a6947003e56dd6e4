/*
 * hlc: a hybrid logical clock, the order of layer 9's writes across regions.
 *
 * Each region stamps its writes with a 64-bit hlc: physical milliseconds << 16 | a counter.
 * A stamp is never below the region's previous stamp plus one (two writes in one millisecond
 * still order) nor below physical time, and hlc_observe() moves the clock past every stamp the
 * region has seen, so a write made after reading another region's value gets a higher stamp
 * than that value even when this region's wall clock is behind (CockroachDB's clock, in the
 * small). Conflicts are then decided by the stamp, the region's name breaking ties: every
 * region computes the same winner from the same rows, so the regions converge.
 *
 * Pure: the caller passes the time in, so every case is tested without a clock or a socket.
 */
#ifndef L9_HLC_H
#define L9_HLC_H

#include <stdint.h>

#define HLC_LOGICAL_BITS 16

/* One region's clock (embedded: hlc_init). */
struct hlc {
    uint64_t last;        /* the highest stamp issued or observed */
    long long offset_ms;  /* added to the physical time (REGION_CLOCK_OFFSET_MS: a skewed clock) */
};

void hlc_init(struct hlc *clock, long long offset_ms);

/* A new stamp at physical time now_ms (Unix milliseconds): above every earlier one. */
uint64_t hlc_now(struct hlc *clock, long long now_ms);

/* Moves the clock past a stamp seen elsewhere (a row another region wrote). */
void hlc_observe(struct hlc *clock, uint64_t seen);

/* The physical part of a stamp, in Unix milliseconds. */
long long hlc_physical_ms(uint64_t stamp);

#endif
