/*
 * pressure.c: what an allocation does before it gives up.
 *
 * An allocation refused for memory or quota runs a ladder of ever dearer
 * steps, retrying after each: (1) scrub the pool's pending frees and empty
 * its quarantine, whose blocks hold memory nobody can use yet; (2) unmap
 * every unused granule of every pool (gms_trim), so another pool's cache
 * does not hold the device's last bytes; (3) call the pressure callbacks,
 * where each language binding runs its garbage collector so that buffers
 * only a finalizer still holds are released. What the callbacks release
 * lands in quarantine and in some pool's granule cache, so steps 1-2 run
 * again after them, and the callbacks are called again (up to 8 rounds)
 * while they keep releasing something: a collector may free a little at a
 * time. Steps that cannot help are skipped: a quota refusal is helped by
 * releases only. Nothing here runs while allocations succeed.
 */
#include "core/internal.h"
#include "safety/safety.h"

#include <stdio.h>

/* Set while this thread runs the callbacks: an allocation they make fails
 * plainly rather than running the ladder again. */
static _Thread_local bool in_ladder;

int gms_on_pressure(gms_runtime *rt, gms_pressure_fn fn, void *user)
{
    if (!rt || !fn)
        return gms__fail(GMS_E_INVALID_ARG, "gms_on_pressure: %s is NULL", rt ? "fn" : "runtime");
    pthread_mutex_lock(&rt->lock);
    uint32_t n = atomic_load(&rt->callbacks.n_on_pressure);
    int rc = GMS_OK;
    if (n >= sizeof rt->callbacks.on_pressure / sizeof rt->callbacks.on_pressure[0]) {
        rc = gms__fail(GMS_E_BUSY, "gms_on_pressure: %u callbacks already registered, the most there can be", n);
    } else {
        rt->callbacks.on_pressure[n].fn = fn;
        rt->callbacks.on_pressure[n].user = user;
        atomic_store(&rt->callbacks.n_on_pressure, n + 1); /* publishes the entry */
    }
    pthread_mutex_unlock(&rt->lock);
    return rc;
}

/* Runs step `step` for ctx; false if it cannot help a refusal rc. */
static bool ladder_step(gms_context *ctx, uint64_t size, int rc, int step)
{
    gms_runtime *rt = ctx->rt;
    if (step == 1) {
        gms_pool *p = ctx->pool;
        if (rc != GMS_E_NO_MEMORY)
            return false;
        gms__pool_lock(p);
        bool any = p->inflight_head || p->quarantine_blocks;
        if (any)
            gms__safety_drain(p);
        gms__pool_unlock(p);
        gms__violations_deliver(rt);
        return any;
    }
    if (step == 2) {
        if (rc != GMS_E_NO_MEMORY)
            return false;
        gms_trim(rt);
        return true;
    }
    uint32_t n = atomic_load(&rt->callbacks.n_on_pressure);
    if (n == 0)
        return false;
    gms_pressure info = {ctx->tenant->name, size, rc};
    in_ladder = true;
    for (uint32_t i = 0; i < n; i++)
        rt->callbacks.on_pressure[i].fn(rt->callbacks.on_pressure[i].user, &info);
    in_ladder = false;
    return true;
}

static bool under_pressure(int rc)
{
    return rc == GMS_E_NO_MEMORY || rc == GMS_E_QUOTA;
}

/* Rounds of callbacks while they keep freeing: a collector may release a
 * little at a time. */
#define PRESSURE_ROUNDS 8

int gms__alloc_under_pressure(gms_context *ctx, size_t size, uint64_t bsize, uint32_t flags,
                              void *stream, int rc, gms_buf *out)
{
    if (in_ladder)
        return rc;
    gms_runtime *rt = ctx->rt;
    uint64_t steps = 0;
    bool freed = false;
    /* Each round: the memory steps (which also pick up what the previous
     * round's callbacks released: their blocks sit in quarantine and their
     * granules in some pool's cache), then the callbacks. */
    for (int round = 0; round < PRESSURE_ROUNDS; round++) {
        for (int step = 1; step <= 2; step++) {
            if (!ladder_step(ctx, size, rc, step))
                continue;
            steps++;
            if (!under_pressure(rc = gms__alloc_once(ctx, size, bsize, flags, stream, out)))
                goto done;
        }
        if (round > 0 && !freed)
            break;
        uint64_t live = atomic_load(&rt->gauges.live_bytes);
        if (!ladder_step(ctx, size, rc, 3))
            break;
        steps++;
        if (!under_pressure(rc = gms__alloc_once(ctx, size, bsize, flags, stream, out)))
            goto done;
        freed = atomic_load(&rt->gauges.live_bytes) < live;
    }
done:
    if (steps) {
        atomic_fetch_add(&rt->gauges.pressure_events, 1);
        atomic_fetch_add(&rt->gauges.pressure_steps, steps);
        if (rc == GMS_OK)
            atomic_fetch_add(&rt->gauges.pressure_recovered, 1);
        else if (rc == GMS_E_NO_MEMORY || rc == GMS_E_QUOTA) {
            char why[400];
            snprintf(why, sizeof why, "%s", gms_error_last());
            gms__fail(rc, "%s (still, after %llu pressure step%s)", why,
                      (unsigned long long)steps, steps == 1 ? "" : "s");
        }
    }
    return rc;
}
