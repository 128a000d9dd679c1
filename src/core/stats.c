/*
 * stats.c: runtime-wide and per-tenant statistics, and gms_trim. Sums the
 * pools under their locks one at a time: a consistent view of each pool,
 * not a global snapshot (gms_verify takes that).
 */
#include "core/internal.h"
#include "safety/safety.h"

#include <string.h>

int gms_stats_get(gms_runtime *rt, gms_stats *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!rt || !out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_stats: %s is NULL", rt ? "out" : "runtime");
    gms_stats s;
    memset(&s, 0, sizeof s);
    pthread_mutex_lock(&rt->lock);
    for (gms_pool *p = rt->pools; p; p = p->next) {
        gms__pool_lock(p);
        s.live_bytes += p->live_bytes;
        s.live_blocks += p->live_blocks;
        s.held_bytes += p->held_bytes;
        s.reserved_bytes += p->reserved_bytes;
        s.allocs += p->allocs;
        s.frees += p->frees;
        s.shares += p->shares;
        gms__pool_unlock(p);
    }
    for (gms_tenant *t = rt->tenants; t; t = t->next) {
        s.quota_refusals += atomic_load(&t->quota_refusals);
        s.leaked_blocks += atomic_load(&t->leaked_blocks);
        s.leaked_bytes += atomic_load(&t->leaked_bytes);
    }
    s.allocs += rt->gauges.retired_allocs;
    s.frees += rt->gauges.retired_frees;
    s.pools = rt->npools;
    s.contexts = rt->ncontexts;
    s.tenants = rt->ntenants;
    s.pressure_events = atomic_load(&rt->gauges.pressure_events);
    s.pressure_recovered = atomic_load(&rt->gauges.pressure_recovered);
    s.pressure_steps = atomic_load(&rt->gauges.pressure_steps);
    s.maps = atomic_load(&rt->gauges.maps);
    s.unmaps = atomic_load(&rt->gauges.unmaps);
    s.device_waits = atomic_load(&rt->gauges.device_waits);
    pthread_mutex_unlock(&rt->lock);
    s.peak_live_bytes = atomic_load(&rt->gauges.peak_live);
    s.peak_held_bytes = atomic_load(&rt->gauges.peak_held);
    if (s.peak_live_bytes < s.live_bytes)
        s.peak_live_bytes = s.live_bytes;
    if (s.peak_held_bytes < s.held_bytes)
        s.peak_held_bytes = s.held_bytes;
    s.fragmentation = s.held_bytes ? 1.0 - (double)s.live_bytes / (double)s.held_bytes : 0.0;
    if (s.fragmentation < 0)
        s.fragmentation = 0;
    *out = s;
    return GMS_OK;
}

int gms_tenant_stats_get(gms_runtime *rt, uint64_t index, gms_tenant_stats *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!rt || !out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_tenant_stats: %s is NULL", rt ? "out" : "runtime");
    pthread_mutex_lock(&rt->lock);
    gms_tenant *t = rt->tenants;
    while (t && t->index != index)
        t = t->next;
    if (!t) {
        uint64_t n = rt->ntenants;
        pthread_mutex_unlock(&rt->lock);
        return gms__fail(GMS_E_INVALID_ARG, "gms_tenant_stats: index %llu, there are %llu tenants",
                         (unsigned long long)index, (unsigned long long)n);
    }
    gms_tenant_stats s;
    memset(&s, 0, sizeof s);
    memcpy(s.tenant, t->name, sizeof s.tenant);
    for (gms_pool *p = rt->pools; p; p = p->next) {
        if (p->tenant != t)
            continue;
        gms__pool_lock(p);
        s.held_bytes += p->held_bytes;
        gms__pool_unlock(p);
    }
    pthread_mutex_unlock(&rt->lock);
    s.live_bytes = atomic_load(&t->live_bytes);
    s.live_blocks = atomic_load(&t->live_allocs);
    s.peak_live_bytes = atomic_load(&t->peak_bytes);
    s.max_bytes = atomic_load(&t->max_bytes);
    s.max_allocs = atomic_load(&t->max_allocs);
    s.quota_refusals = atomic_load(&t->quota_refusals);
    s.leaked_blocks = atomic_load(&t->leaked_blocks);
    s.leaked_bytes = atomic_load(&t->leaked_bytes);
    *out = s;
    return GMS_OK;
}

/* Launches every pool's pending batch, then waits for all device work
 * (gms_trim and gms_sync: neither is an alloc or a free). */
static void launch_and_wait(gms_runtime *rt)
{
    pthread_mutex_lock(&rt->lock);
    for (gms_pool *p = rt->pools; p; p = p->next) {
        gms__pool_lock(p);
        gms__safety_launch(p);
        gms__pool_unlock(p);
    }
    pthread_mutex_unlock(&rt->lock);
    gms__device_quiesce(rt);
}

int gms_trim(gms_runtime *rt)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_trim: runtime is NULL");
    /* Device work may still use cached granules: trim waits for it rather
     * than leave them mapped. */
    launch_and_wait(rt);
    pthread_mutex_lock(&rt->lock);
    for (gms_pool *p = rt->pools; p; p = p->next) {
        gms__pool_lock(p);
        gms__pool_trim(p, 0);
        gms__pool_unlock(p);
    }
    pthread_mutex_unlock(&rt->lock);
    gms__violations_deliver(rt); /* what was logged under the locks */
    return GMS_OK;
}

int gms_sync(gms_runtime *rt)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_sync: runtime is NULL");
    launch_and_wait(rt);
    pthread_mutex_lock(&rt->lock);
    for (gms_pool *p = rt->pools; p; p = p->next) {
        gms__pool_lock(p);
        gms__safety_collect(p, true);
        gms__pool_unlock(p);
    }
    pthread_mutex_unlock(&rt->lock);
    gms__violations_settle(rt); /* the collector's findings too */
    return GMS_OK;
}
