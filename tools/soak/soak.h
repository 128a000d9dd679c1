/*
 * soak.h: what the files of gms-soak (tools/soak) share: the random
 * numbers, the reporting of problems, and the backend-failure episodes.
 */
#ifndef GMS_SOAK_H
#define GMS_SOAK_H

#include "gms.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* splitmix64: one stream per thread, seeded from --seed and the thread's
 * index, so a run with one thread is the same run every time. */
typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rnd(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); 0 when n is 0. */
static inline uint64_t rnd_below(rng *r, uint64_t n)
{
    return n ? rnd(r) % n : 0;
}

/* Uniform in [lo, hi]. */
static inline uint64_t rnd_in(rng *r, uint64_t lo, uint64_t hi)
{
    return lo + rnd_below(r, hi - lo + 1);
}

/* Log-uniform in [1, max]. */
static inline size_t rnd_size(rng *r, size_t max)
{
    double u = (double)(rnd(r) >> 11) * 0x1.0p-53;
    size_t s = (size_t)exp2(u * log2((double)max + 0.5));
    return s < 1 ? 1 : s > max ? max : s;
}

/* A problem the soak found: counted under its kind (every kind fails the
 * run) and printed, the first 50 of them (all with --verbose). */
void soak_problem(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Backend-failure episodes (backend.c): a private runtime whose Nth
 * fallible internal operation fails runs a short scenario. */
typedef struct episode_tally {
    uint64_t episodes;   /* runs */
    uint64_t injected;   /* runs that reached their Nth call */
    uint64_t surfaced;   /* ...where a call returned the failure cleanly */
    uint64_t absorbed;   /* ...where the library absorbed it (nothing failed) */
    uint64_t mishandled; /* a wrong code, a lost buffer, verify or a leak */
    uint64_t max_calls;  /* the most fallible calls one run made: N's range */
} episode_tally;

void backend_episode(rng *r, episode_tally *t);

#endif
