/*
 * metrics.h: gmsd's metrics endpoint (metrics.c, docs/broker.md).
 */
#ifndef GMSD_METRICS_H
#define GMSD_METRICS_H

#include "policy.h"

#include <stddef.h>

/* Counters of the whole broker, besides the tenants' own. */
typedef struct gmsd_counters {
    uint64_t unknown_peers; /* connections of peers no tenant names */
    uint64_t connections;   /* open now */
    uint64_t orphans;       /* sessions of the gmsd before, waiting for their process */
} gmsd_counters;

/* Listens on where ("PORT", "IPV4:PORT" or "unix:PATH") and returns a
 * descriptor for gmsd's poll loop: when it is readable, call
 * gmsd_metrics_run. -1 with err (err_len bytes) saying why. The policy's
 * tenants and totals are read when a page is served. */
int gmsd_metrics_start(const char *where, const gmsd_policy *policy,
                       const gmsd_counters *totals, char *err, size_t err_len);
/* Serves what is ready; never waits. */
void gmsd_metrics_run(void);
void gmsd_metrics_stop(void);
/* The page, malloc'd (*len bytes, NUL-ended); NULL when out of memory. */
char *gmsd_metrics_render(size_t *len);

#endif
