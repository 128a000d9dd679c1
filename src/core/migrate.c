/*
 * migrate.c: pool placement across devices (include/gms/migrate.h,
 * docs/migration.md): migration under the same addresses, devices
 * declared lost, and the choice of a device for a new pool.
 *
 * A migration moves every chunk of the pool in three steps, each all or
 * nothing per chunk: new memory on the target with the data copied in
 * (the chunk untouched), then the chunks' ranges and read-only views
 * mapped onto it in place, then the old memory wiped and given back.
 * Until every chunk is remapped, a failure undoes what was done: the
 * remapped chunks go back onto their old memory, which still holds the
 * data, and the new memory is freed.
 */
#include "core/internal.h"
#include "gms/migrate.h"
#include "gms/testing.h"
#include "safety/safety.h"

#include <stdlib.h>
#include <string.h>

static int device_count(gms_runtime *rt)
{
    int sim = rt->devices.sim_count;
    if (sim)
        return sim;
    gms_backend *be = rt->backend;
    int n = be->ops->device_count ? be->ops->device_count(be) : 1;
    return n < 1 ? 1 : n > GMS_DEVICES_MAX ? GMS_DEVICES_MAX : n;
}

static bool device_lost(gms_runtime *rt, int device)
{
    return device >= 0 && device < GMS_DEVICES_MAX &&
           atomic_load_explicit(&rt->devices.lost[device], memory_order_acquire);
}

int gms__pool_usable(const gms_pool *p, const char *op)
{
    if (p->lost)
        return gms__fail(GMS_E_BACKEND, "%s: the pool's memory is lost: %s", op, p->lost_why);
    if (device_lost(p->rt, p->device))
        return gms__fail(GMS_E_BACKEND, "%s: the pool's device %d is lost: %s", op, p->device,
                         p->rt->devices.why[p->device]);
    return GMS_OK;
}

int gms__chunk_place(gms_pool *p, gms_chunk *c)
{
    gms_backend *be = p->rt->backend;
    gms_backend_mem *mem = NULL, *old = NULL;
    uint64_t staging, old_staging;
    if (!be->ops->move_create)
        return gms__fail(GMS_E_UNSUPPORTED, "the backend cannot place memory on device %d",
                         p->device);
    int err = be->ops->move_create(be, c->be_chunk, p->device, NULL, 0, &mem, &staging);
    if (!err) {
        err = be->ops->move_remap(be, c->be_chunk, mem, NULL, NULL, NULL, 0, &old, &old_staging);
        be->ops->move_release(be, err ? mem : old);
    }
    return err ? gms__backend_fail(err, "place a chunk on the pool's device", 0) : GMS_OK;
}

/* One chunk's move: its committed ranges, the read-only views of them,
 * and the memory it goes to (mem) or left (old). */
typedef struct chunk_move {
    gms_chunk *c;
    gms_backend_range *r;
    size_t n;
    uint64_t *views; /* three arrays of nviews: address, chunk offset, length */
    size_t nviews;
    gms_backend_mem *mem, *old;
    uint64_t staging, old_staging;
} chunk_move;

static void moves_free(chunk_move *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].r);
        free(m[i].views);
    }
    free(m);
}

/* The ranges of committed granules of c and the views into it. */
static int move_plan(gms_pool *p, gms_chunk *c, chunk_move *m)
{
    gms_runtime *rt = p->rt;
    size_t nr = 0, nv = 0;
    for (uint64_t g = 0; g < c->ngranules; g++)
        if (c->granules[g].committed && (g == 0 || !c->granules[g - 1].committed))
            nr++;
    for (gms_block *b = c->first; b; b = b->next_phys)
        if (b->state == GMS_BLOCK_LIVE && b->share && b->share->view)
            nv++;
    m->c = c;
    m->r = gms__alloc_meta(rt, (nr ? nr : 1) * sizeof *m->r);
    m->views = gms__alloc_meta(rt, (nv ? nv : 1) * 3 * sizeof *m->views);
    if (!m->r || !m->views)
        return gms__fail(GMS_E_NO_MEMORY, "gms_pool_migrate: out of host memory for the plan");
    uint64_t gran = rt->config.granule;
    for (uint64_t g = 0; g < c->ngranules; g++) {
        if (!c->granules[g].committed)
            continue;
        uint64_t end = g;
        while (end + 1 < c->ngranules && c->granules[end + 1].committed)
            end++;
        m->r[m->n++] = (gms_backend_range){g * gran, (end - g + 1) * gran};
        g = end;
    }
    for (gms_block *b = c->first; b; b = b->next_phys) {
        if (!(b->state == GMS_BLOCK_LIVE && b->share && b->share->view))
            continue;
        const gms_share_rec *sh = b->share;
        m->views[m->nviews] = sh->view;
        m->views[nv + m->nviews] = sh->view_base - c->base;
        m->views[2 * nv + m->nviews] = sh->view_len;
        m->nviews++;
    }
    return GMS_OK;
}

/* Puts chunk m->c onto mem (its new memory, or its old one to undo);
 * *left: what it left. */
static int move_remap(gms_backend *be, chunk_move *m, gms_backend_mem *mem,
                      gms_backend_mem **left, uint64_t *left_staging)
{
    size_t nv = m->nviews;
    return be->ops->move_remap(be, m->c->be_chunk, mem, m->views, m->views + nv, m->views + 2 * nv,
                               nv, left, left_staging);
}

/* The device work queued so far, on every stream, runs before the move. */
static int quiesce(gms_runtime *rt)
{
    gms_backend *be = rt->backend;
    int err = 0;
    if (be->ops->quiesce)
        err = be->ops->quiesce(be);
    if (!err && be->ops->order_after)
        err = be->ops->order_after(be, NULL, 1);
    return err ? gms__backend_fail(err, "gms_pool_migrate: wait for the device work queued", 0)
               : GMS_OK;
}

/* The move of pool p (locked) to device: GMS_OK, or an error with p on
 * its old placement (or, if even undoing failed, lost). *bytes: moved. */
static int pool_move(gms_pool *p, int device, uint64_t *bytes)
{
    gms_runtime *rt = p->rt;
    gms_backend *be = rt->backend;
    int rc = quiesce(rt);
    if (rc)
        return rc;
    gms__pool_trim(p, 0); /* the cache of unused granules is not worth moving */
    size_t n = 0;
    for (gms_chunk *c = p->chunks; c; c = c->next)
        n++;
    chunk_move *m = gms__alloc_meta(rt, (n ? n : 1) * sizeof *m);
    if (!m)
        return gms__fail(GMS_E_NO_MEMORY, "gms_pool_migrate: out of host memory for the plan");
    memset(m, 0, (n ? n : 1) * sizeof *m);
    size_t i = 0;
    for (gms_chunk *c = p->chunks; c && !rc; c = c->next)
        rc = move_plan(p, c, &m[i++]);
    /* 1: new memory with the data copied in; nothing of the pool changes. */
    for (i = 0; i < n && !rc; i++) {
        int err = be->ops->move_create(be, m[i].c->be_chunk, device, m[i].r, m[i].n, &m[i].mem,
                                       &m[i].staging);
        if (err) {
            rc = gms__backend_fail(err, "gms_pool_migrate: make memory on the target", m[i].c->size);
            break;
        }
        for (size_t k = 0; k < m[i].n && !err; k++) {
            gms_backend_range r = m[i].r[k];
            err = be->ops->copy(be, m[i].staging + r.off, m[i].c->base + r.off, r.len);
            *bytes += err ? 0 : r.len;
        }
        if (err)
            rc = gms__backend_fail(err, "gms_pool_migrate: copy to the target", m[i].c->size);
    }
    /* 2: every chunk onto its new memory, or none. */
    size_t moved = 0;
    for (; !rc && moved < n; moved++) {
        int err = move_remap(be, &m[moved], m[moved].mem, &m[moved].old, &m[moved].old_staging);
        if (err) {
            rc = gms__backend_fail(err, "gms_pool_migrate: map the pool onto the target",
                                   m[moved].c->size);
            break;
        }
        m[moved].mem = NULL; /* the chunk's now */
    }
    if (rc) {
        char why[160];
        snprintf(why, sizeof why, "%s", gms_error_last());
        for (size_t j = 0; j < moved; j++) {
            gms_backend_mem *back = NULL;
            uint64_t back_staging;
            if (move_remap(be, &m[j], m[j].old, &back, &back_staging) == 0) {
                m[j].old = NULL;
                m[j].mem = back; /* the new memory again, freed below */
            } else if (!p->lost) {
                /* The chunk stays on the new memory, which holds its data,
                 * but the pool now spans two placements: refuse its use. */
                p->lost = true;
                snprintf(p->lost_why, sizeof p->lost_why,
                         "a failed migration to device %d could not be undone", device);
            }
        }
        rc = gms__fail(rc, "%s%s", why,
                       p->lost ? " (and undoing it failed: the pool is lost)" : "");
        *bytes = 0;
    } else {
        p->device = device;
    }
    /* 3: the memory no chunk uses any more: the old, wiped first, or the
     * new one of a failed move. */
    for (i = 0; i < n; i++) {
        if (m[i].mem)
            be->ops->move_release(be, m[i].mem);
        if (!m[i].old)
            continue;
        int err = 0;
        for (size_t k = 0; k < m[i].n && !err; k++)
            err = be->ops->fill(be, m[i].old_staging + m[i].r[k].off, 0, m[i].r[k].len);
        if (err)
            gms__log_later(rt, GMS_LOG_WARN,
                           "gms_pool_migrate: wiping the old memory failed (%s); released anyway",
                           gms__backend_why()[0] ? gms__backend_why() : "backend error");
        be->ops->move_release(be, m[i].old);
    }
    moves_free(m, n);
    return rc;
}

/* gms_pool_migrate less the audit record; *from: the pool's device. */
static int migrate(gms_context *ctx, int device, int *from, uint64_t *bytes)
{
    gms_runtime *rt = ctx->rt;
    gms_backend *be = rt->backend;
    if (!be->ops->move_create)
        return gms__fail(GMS_E_UNSUPPORTED, "gms_pool_migrate: the %s backend cannot move memory",
                         rt->backend_name);
    pthread_mutex_lock(&rt->lock);
    int count = device_count(rt);
    pthread_mutex_unlock(&rt->lock);
    if (device < 0 || device >= count)
        return gms__fail(GMS_E_INVALID_ARG, "gms_pool_migrate: device %d does not exist (%d found)",
                         device, count);
    if (device_lost(rt, device))
        return gms__fail(GMS_E_BACKEND, "gms_pool_migrate: device %d is lost: %s", device,
                         rt->devices.why[device]);
    gms_pool *p = ctx->pool;
    gms__pool_lock(p);
    *from = p->device;
    int rc = gms__pool_usable(p, "gms_pool_migrate");
    if (!rc) {
        gms__safety_launch(p); /* frees gathered for one launch go first */
        rc = pool_move(p, device, bytes);
    }
    gms__pool_unlock(p);
    return rc;
}

int gms_pool_migrate(gms_context *ctx, int device)
{
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "gms_pool_migrate: context is NULL");
    int from = -1;
    uint64_t bytes = 0;
    int rc = migrate(ctx, device, &from, &bytes);
    char detail[96];
    snprintf(detail, sizeof detail, "device %d -> %d", from, device);
    gms__audit_ctx(ctx, GMS_AUDIT_MIGRATE, 0, bytes, rc, rc ? gms_error_last() : detail);
    gms__violations_deliver(ctx->rt);
    return rc;
}

int gms_pool_device(gms_context *ctx, int *device)
{
    if (!ctx || !device)
        return gms__fail(GMS_E_INVALID_ARG, "gms_pool_device: %s is NULL", ctx ? "device" : "context");
    gms__pool_lock(ctx->pool);
    *device = ctx->pool->device;
    gms__pool_unlock(ctx->pool);
    return GMS_OK;
}

int gms_device_pick(gms_runtime *rt, uint64_t bytes, int *device)
{
    if (!rt || !device)
        return gms__fail(GMS_E_INVALID_ARG, "gms_device_pick: %s is NULL", rt ? "device" : "runtime");
    /* What gms holds on each device: the load without simulated devices. */
    uint64_t held[GMS_DEVICES_MAX] = {0};
    pthread_mutex_lock(&rt->lock);
    int n = device_count(rt);
    bool sim = rt->devices.sim_count != 0;
    for (gms_pool *p = rt->pools; p; p = p->next) {
        gms__pool_lock(p);
        if (!p->idle && p->device >= 0 && p->device < GMS_DEVICES_MAX)
            held[p->device] += p->held_bytes;
        gms__pool_unlock(p);
    }
    int best = -1;
    uint32_t best_busy = 0;
    uint64_t best_free = 0;
    for (int d = 0; d < n; d++) {
        if (device_lost(rt, d))
            continue;
        uint64_t free_bytes = sim ? rt->devices.sim_free[d] : UINT64_MAX - held[d];
        uint32_t busy = sim ? rt->devices.sim_busy[d] : 0;
        if (free_bytes < bytes)
            continue;
        if (best < 0 || busy < best_busy || (busy == best_busy && free_bytes > best_free)) {
            best = d;
            best_busy = busy;
            best_free = free_bytes;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    if (best < 0)
        return gms__fail(GMS_E_NO_MEMORY,
                         "gms_device_pick: no device of %d has %llu bytes free and is not lost", n,
                         (unsigned long long)bytes);
    *device = best;
    return GMS_OK;
}

int gms_device_lost(gms_runtime *rt, int device, const char *why)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_device_lost: runtime is NULL");
    pthread_mutex_lock(&rt->lock);
    int n = device_count(rt);
    if (device < 0 || device >= n) {
        pthread_mutex_unlock(&rt->lock);
        return gms__fail(GMS_E_INVALID_ARG, "gms_device_lost: device %d does not exist (%d found)",
                         device, n);
    }
    if (atomic_load(&rt->devices.lost[device])) {
        pthread_mutex_unlock(&rt->lock);
        return GMS_OK; /* the first words stay */
    }
    snprintf(rt->devices.why[device], sizeof rt->devices.why[device], "%s",
             why && *why ? why : "an unrecoverable error");
    atomic_store_explicit(&rt->devices.lost[device], true, memory_order_release);
    uint64_t pools = 0;
    for (gms_pool *p = rt->pools; p; p = p->next) {
        gms__pool_lock(p);
        pools += !p->idle && p->device == device;
        gms__pool_unlock(p);
    }
    char detail[192];
    snprintf(detail, sizeof detail, "device %d: %s", device, rt->devices.why[device]);
    if (rt->audit) {
        gms_audit_event e = {.op = GMS_AUDIT_DEVICE_LOST, .size = pools, .level = -1,
                             .language = -1, .detail = detail};
        gms__audit_emit(rt->audit, &e);
    }
    gms__log_later(rt, GMS_LOG_ERROR, "gms: device %d lost (%llu pools on it): %s", device,
                   (unsigned long long)pools, rt->devices.why[device]);
    pthread_mutex_unlock(&rt->lock);
    gms__violations_deliver(rt);
    return GMS_OK;
}

int gms_testing_device_fail(gms_runtime *rt, int device, const char *why)
{
    return gms_device_lost(rt, device, why);
}

int gms_testing_devices(gms_runtime *rt, int count, const uint64_t *free_bytes,
                        const uint32_t *busy_percent)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_testing_devices: runtime is NULL");
    if (count < 0 || count > GMS_DEVICES_MAX)
        return gms__fail(GMS_E_INVALID_ARG, "gms_testing_devices: count %d is not 0 to %d", count,
                         GMS_DEVICES_MAX);
    if (count && (!free_bytes || !busy_percent))
        return gms__fail(GMS_E_INVALID_ARG, "gms_testing_devices: %s is NULL",
                         free_bytes ? "busy_percent" : "free_bytes");
    for (int d = 0; d < count; d++)
        if (busy_percent[d] > 100)
            return gms__fail(GMS_E_INVALID_ARG, "gms_testing_devices: device %d is %u%% busy", d,
                             busy_percent[d]);
    pthread_mutex_lock(&rt->lock);
    rt->devices.sim_count = count;
    for (int d = 0; d < count; d++) {
        rt->devices.sim_free[d] = free_bytes[d];
        rt->devices.sim_busy[d] = busy_percent[d];
    }
    pthread_mutex_unlock(&rt->lock);
    return GMS_OK;
}
