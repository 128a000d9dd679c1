/*
 * buffer.c: the buffer API: alloc, free, info, raw pointer and the
 * bounds-checked access calls.
 *
 * Fast path cost (host, 2-core machine): one uncontended pool lock per call,
 * two atomic updates of the tenant's quota counters, one of the runtime's
 * live gauge, two bit scans in the TLSF lists; no system call while the
 * block's granules are mapped, which the granule cache makes the common case.
 */
#include "core/internal.h"
#include "safety/safety.h"
#include "core/seal.h"
#include "gms/dlpack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The verifier found this live buffer's redzone overwritten (and re-armed
 * it): say so once, to the next call that touches it. (A free goes ahead:
 * its own check reports a redzone broken again.) */
static int corrupt_report(gms_block *b, const char *op)
{
    int64_t off = (int64_t)(b->corrupt_at - b->addr);
    b->corrupt_at = 0;
    return gms__fail(GMS_E_CORRUPTION,
                     "%s: buffer 0x%016llx of %llu bytes: the verifier found its redzone overwritten at offset %+lld (%s)",
                     op, (unsigned long long)b->handle, (unsigned long long)b->req_size,
                     (long long)off, off < 0 ? "underflow" : "overflow");
}

/* Checks that h is a live handle of ctx in slot s of pool p, whose lock is
 * held. A block the verifier flagged is reported to the calls that use it,
 * not to a free. */
int gms__buf_check_locked(gms_context *ctx, gms_buf h, const char *op, bool freeing,
                          gms_pool *p, gms_slot *s, gms_held *out)
{
    if (!gms__slot_owned(s, p)) /* moved to another pool since the lookup: h is dead */
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: handle 0x%016llx: stale, freed or forged handle",
                         op, (unsigned long long)h);
    if (atomic_load_explicit(&s->handle, memory_order_acquire) != h)
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: handle 0x%016llx: %s", op,
                         (unsigned long long)h, gms__handle_diagnose(ctx->rt, s, h));
    if (s->kind != GMS_SLOT_HANDLE)
        return gms__fail(GMS_E_INVALID_HANDLE,
                         "%s: 0x%016llx is a share id, not a buffer handle (gms_acquire one)", op,
                         (unsigned long long)h);
    const gms_context *holder = s->holder;
    if (holder != ctx) {
        if (p->tenant != ctx->tenant)
            return gms__fail(GMS_E_ACCESS_DENIED,
                             "%s: handle 0x%016llx belongs to tenant '%s' (%s, %s), not to this context of tenant '%s' (%s, %s)",
                             op, (unsigned long long)h, holder->tenant->name,
                             gms_level_name(holder->level), gms_language_name(holder->language),
                             ctx->tenant->name, gms_level_name(ctx->level),
                             gms_language_name(ctx->language));
        return gms__fail(GMS_E_ACCESS_DENIED,
                         "%s: handle 0x%016llx belongs to another context of tenant '%s' (user '%s', %s)",
                         op, (unsigned long long)h, holder->tenant->name, holder->user,
                         gms_language_name(holder->language));
    }
    gms_block *b = s->block;
    if (b->corrupt_at && !freeing)
        return corrupt_report(b, op);
    int lost = freeing ? GMS_OK : gms__pool_usable(p, op);
    if (lost)
        return lost;
    out->pool = p;
    out->block = b;
    out->slot = s;
    return GMS_OK;
}

/* The slot h names and its pool, or an error: a null or forged handle, or
 * a dead one in another pool (whose lock is not worth taking for that). */
int gms__buf_slot(gms_context *ctx, gms_buf h, const char *op, gms_pool **p, gms_slot **s)
{
    *s = NULL;
    if (h == GMS_BUF_NULL)
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: null handle", op);
    *s = gms__slot_lookup(ctx->rt, h, p);
    if (!*s) {
        uint32_t index = gms__handle_slot(h);
        bool issued = index && gms__slot_at(ctx->rt, index); /* a slot no pool holds now */
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: handle 0x%016llx: %s", op, (unsigned long long)h,
                         issued ? "stale, freed or forged handle"
                                : "forged or corrupted handle (not issued by this runtime)");
    }
    if (*p != ctx->pool && atomic_load_explicit(&(*s)->handle, memory_order_acquire) != h)
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: handle 0x%016llx: stale, freed or forged handle",
                         op, (unsigned long long)h);
    return GMS_OK;
}

/* Records a refused handle use: another context's buffer or a write to a
 * read-only one, or a violation (a stale, freed or forged handle, an access
 * out of bounds). */
int gms__refused(gms_context *ctx, gms_buf h, int rc)
{
    gms__audit_ctx(ctx,
                   rc == GMS_E_ACCESS_DENIED || rc == GMS_E_READ_ONLY ? GMS_AUDIT_ACCESS_DENIED
                                                                      : GMS_AUDIT_VIOLATION,
                   h, 0, rc, gms_error_last());
    return rc;
}

int gms__buf_lock(gms_context *ctx, gms_buf h, const char *op, bool freeing, gms_held *out)
{
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", op);
    gms_pool *p;
    gms_slot *s;
    int rc = gms__buf_slot(ctx, h, op, &p, &s);
    if (rc == GMS_OK) {
        gms__pool_lock(p);
        if ((rc = gms__buf_check_locked(ctx, h, op, freeing, p, s, out)) != GMS_OK)
            gms__pool_unlock(p);
    }
    return rc ? gms__refused(ctx, h, rc) : GMS_OK;
}

gms_pool *gms__handle_pool(gms_runtime *rt, gms_buf h)
{
    gms_pool *p = NULL;
    return gms__slot_lookup(rt, h, &p) ? p : NULL;
}

void gms__pools_lock(gms_pool *a, gms_pool *b)
{
    if (a == b) {
        gms__pool_lock(a);
        return;
    }
    gms__pool_lock(a->rank < b->rank ? a : b);
    gms__pool_lock(a->rank < b->rank ? b : a);
}

void gms__pools_unlock(gms_pool *a, gms_pool *b)
{
    gms__pool_unlock(a);
    if (a != b)
        gms__pool_unlock(b);
}

/* Whether the holder may write through h (pool->lock held). */
int gms__writable(const gms_held *h, gms_buf buf, const char *op)
{
    const gms_block *b = h->block;
    if (b->share && b->share->immutable)
        return gms__fail(GMS_E_READ_ONLY,
                         "%s: buffer 0x%016llx is shared immutable (share 0x%016llx): nobody writes it",
                         op, (unsigned long long)buf, (unsigned long long)b->share->id);
    if (h->slot->mode != GMS_ACCESS_READ_WRITE)
        return gms__fail(GMS_E_READ_ONLY, "%s: handle 0x%016llx is read-only (%s)", op,
                         (unsigned long long)buf,
                         b->import ? "imported from a read-only tensor" : "acquired for reading");
    return GMS_OK;
}

/* Reserves quota for one block of size bytes. A refusal is counted by the
 * caller, once the pressure ladder has had its go. */
static int quota_take(gms_tenant *t, uint64_t size)
{
    uint64_t max = atomic_load_explicit(&t->max_bytes, memory_order_relaxed);
    uint64_t cur = atomic_load_explicit(&t->live_bytes, memory_order_relaxed);
    do {
        if (size > max || cur > max - size)
            return gms__fail(GMS_E_QUOTA,
                             "tenant '%s' byte quota: %llu bytes live + %llu requested > limit %llu",
                             t->name, (unsigned long long)cur, (unsigned long long)size,
                             (unsigned long long)max);
    } while (!atomic_compare_exchange_weak(&t->live_bytes, &cur, cur + size));
    max = atomic_load_explicit(&t->max_allocs, memory_order_relaxed);
    cur = atomic_load_explicit(&t->live_allocs, memory_order_relaxed);
    do {
        if (cur >= max) {
            atomic_fetch_sub(&t->live_bytes, size);
            return gms__fail(GMS_E_QUOTA,
                             "tenant '%s' allocation quota: %llu live allocations, limit %llu",
                             t->name, (unsigned long long)cur, (unsigned long long)max);
        }
    } while (!atomic_compare_exchange_weak(&t->live_allocs, &cur, cur + 1));
    gms__atomic_max(&t->peak_bytes, atomic_load_explicit(&t->live_bytes, memory_order_relaxed));
    return GMS_OK;
}

static void quota_give(gms_tenant *t, uint64_t size)
{
    atomic_fetch_sub_explicit(&t->live_bytes, size, memory_order_relaxed);
    atomic_fetch_sub_explicit(&t->live_allocs, 1, memory_order_relaxed);
}

/* Points slot index of pool p at b for ctx and publishes the handle. */
static gms_buf slot_fill(gms_pool *p, uint32_t index, gms_block *b, gms_context *ctx,
                         gms_access mode)
{
    gms_slot *s = gms__slot_at(p->rt, index);
    s->block = b;
    s->holder = ctx;
    s->kind = GMS_SLOT_HANDLE;
    s->mode = (uint8_t)mode;
    s->exported = false;
    gms_buf h = gms__handle_make(p->rt, index, s->gen);
    atomic_store_explicit(&s->handle, h, memory_order_release);
    return h;
}

int gms__alloc_once(gms_context *ctx, size_t size, uint64_t bsize, uint32_t flags, void *stream,
                    gms_buf *out)
{
    gms_pool *p = ctx->pool;
    gms_runtime *rt = ctx->rt;
    gms__pool_lock(p);
    int rc = gms__pool_usable(p, "gms_alloc");
    if (!rc)
        rc = quota_take(ctx->tenant, bsize);
    if (rc) {
        gms__pool_unlock(p);
        return rc;
    }
    uint32_t slot;
    gms_block *b = NULL;
    if ((rc = gms__slot_take(p, &slot)) != GMS_OK)
        goto fail_quota;
    uint64_t align = flags & GMS_ALLOC_PAGES ? rt->config.view_unit : GMS_ALIGNMENT;
    /* Before the pool maps more for this allocation, or takes a fit larger
     * than one that the batch being gathered would hand back, memory the
     * quarantine holds past its limits goes back to it, and the pending
     * batch is launched: new memory's preparation is launched at once,
     * after it (gms__device_queue). */
    uint64_t closer = gms__safety_held_fit(p, stream, gms__pool_want(bsize, align));
    rc = gms__pool_alloc(p, ctx, bsize, size, align, flags, stream, false, closer, &b);
    if (rc == GMS__WOULD_MAP || rc == GMS__CLOSER_HELD) {
        gms__safety_yield(p, rc == GMS__CLOSER_HELD);
        rc = gms__pool_alloc(p, ctx, bsize, size, align, flags, stream, true, 0, &b);
    }
    if (rc != GMS_OK)
        goto fail_slot;
    b->u.live.slot = slot;
    b->holders = 1;
    b->writers = 1;
    b->share = NULL;
    b->import = NULL;
    b->seal = NULL;
    b->alloc_user = ctx->user_index;
    b->handle = slot_fill(p, slot, b, ctx, GMS_ACCESS_READ_WRITE);
    uint64_t live = atomic_fetch_add_explicit(&rt->gauges.live_bytes, bsize, memory_order_relaxed) + bsize;
    gms__atomic_max(&rt->gauges.peak_live, live);
    int err = 0;
    const char *what = NULL;
    if (flags & GMS_ALLOC_ZERO) {
        /* Under the lock: the handle is not out yet, but a racing forged
         * free of it must not see a half-made buffer. Queued on the
         * stream like the rest of the block's preparation. */
        gms__safety_launch_before(p, stream);
        gms_scrub_item z;
        memset(&z, 0, sizeof z);
        z.zero = 1;
        z.fill_lo[0] = b->addr;
        z.fill_hi[0] = b->addr + size;
        uint64_t ticket = 0;
        err = gms__device_queue(p, &z, 1, stream, &ticket);
        if (ticket > b->ticket)
            b->ticket = ticket;
        what = "zero fill";
    }
    /* gms_alloc promises a buffer ready for any stream: new memory's
     * preparation or a zero fill must have run. Only then does it wait
     * (reused memory it takes only once its device work has run). */
    gms_backend *be = rt->backend;
    if (!err && b->ticket && stream == GMS_STREAM_ANY && be->ops->order_after &&
        b->ticket > gms__device_done(rt)) {
        atomic_fetch_add_explicit(&rt->gauges.device_waits, 1, memory_order_relaxed);
        err = be->ops->order_after(be, NULL, 1);
        what = "preparing the buffer";
    }
    if (err) {
        gms_drop d;
        gms__handle_drop(p, gms__slot_at(rt, slot), ctx, &d);
        gms__pool_unlock(p);
        gms__violations_deliver(rt);
        return gms__backend_fail(err, what, size);
    }
    gms__pool_unlock(p);
    gms__violations_deliver(rt);
    *out = b->handle;
    return GMS_OK;
fail_slot:
    gms__slot_put(p, slot);
fail_quota:
    quota_give(ctx->tenant, bsize);
    gms__pool_unlock(p);
    gms__violations_deliver(rt); /* what growing logged; keeps the message */
    return rc;
}

/* gms_alloc and gms_alloc_async: stream GMS_STREAM_ANY for gms_alloc. */
static int alloc_on(gms_context *ctx, size_t size, uint32_t flags, void *stream, gms_buf *out,
                    const char *op)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "%s: out is NULL", op);
    *out = GMS_BUF_NULL;
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", op);
    if (size == 0)
        return gms__fail(GMS_E_INVALID_ARG, "%s: size is 0", op);
    if (flags & ~(uint32_t)(GMS_ALLOC_ZERO | GMS_ALLOC_PAGES))
        return gms__fail(GMS_E_INVALID_ARG, "%s: unknown flags 0x%x", op, flags);
    if ((uint64_t)size > GMS_MAX_ALLOC)
        return gms__fail(GMS_E_NO_MEMORY, "%s: %llu bytes is more than any device holds", op,
                         (unsigned long long)size);
    /* With safety on, at least the redzone follows the data. */
    uint64_t span = (uint64_t)size + (ctx->rt->safety.on ? ctx->rt->safety.redzone : 0);
    uint64_t unit = flags & GMS_ALLOC_PAGES ? ctx->rt->config.view_unit : GMS_ALIGNMENT;
    uint64_t bsize = (span + unit - 1) & ~(unit - 1);
    gms_buf h = GMS_BUF_NULL;
    int rc = gms__alloc_once(ctx, size, bsize, flags, stream, &h);
    if (rc == GMS_E_NO_MEMORY || rc == GMS_E_QUOTA)
        rc = gms__alloc_under_pressure(ctx, size, bsize, flags, stream, rc, &h);
    if (rc == GMS_E_QUOTA) {
        atomic_fetch_add(&ctx->tenant->quota_refusals, 1);
        gms__audit_ctx(ctx, GMS_AUDIT_QUOTA_REFUSED, 0, size, rc, gms_error_last());
        return rc;
    }
    gms__audit_ctx(ctx, GMS_AUDIT_ALLOC, h, size, rc, rc ? gms_error_last() : NULL);
    *out = h;
    return rc;
}

int gms_alloc(gms_context *ctx, size_t size, uint32_t flags, gms_buf *out)
{
    return alloc_on(ctx, size, flags, GMS_STREAM_ANY, out, "gms_alloc");
}

int gms_alloc_async(gms_context *ctx, size_t size, uint32_t flags, void *stream, gms_buf *out)
{
    return alloc_on(ctx, size, flags, stream, out, "gms_alloc_async");
}

/* Links s at the head of its holder's holds list. */
static void hold_link(gms_context *ctx, gms_slot *s)
{
    pthread_mutex_lock(&ctx->holds_lock);
    s->hold_prev = NULL;
    s->hold_next = ctx->holds;
    if (ctx->holds)
        ctx->holds->hold_prev = s;
    ctx->holds = s;
    pthread_mutex_unlock(&ctx->holds_lock);
}

static void hold_unlink(gms_context *ctx, gms_slot *s)
{
    pthread_mutex_lock(&ctx->holds_lock);
    if (s->hold_prev)
        s->hold_prev->hold_next = s->hold_next;
    else
        ctx->holds = s->hold_next;
    if (s->hold_next)
        s->hold_next->hold_prev = s->hold_prev;
    s->hold_next = s->hold_prev = NULL;
    pthread_mutex_unlock(&ctx->holds_lock);
}

int gms__handle_add(gms_pool *p, gms_block *b, gms_context *ctx, gms_access mode, gms_buf *out)
{
    uint32_t index;
    int rc = gms__slot_take_for(p, ctx->tenant, &index);
    if (rc)
        return rc;
    gms_slot *s = gms__slot_at(p->rt, index);
    b->holders++;
    b->writers += mode == GMS_ACCESS_READ_WRITE;
    hold_link(ctx, s);
    *out = slot_fill(p, index, b, ctx, mode);
    return GMS_OK;
}

/* Takes block b off its owner's live list: the handle gms_alloc made (or a
 * transfer within the pool handed on) is gone. */
static void live_unlink(gms_block *b)
{
    gms_context *ctx = b->u.live.owner;
    gms__live_unlink(&ctx->live, b);
    ctx->live_blocks--;
    ctx->live_bytes -= b->size;
    b->u.live.owner = NULL;
}

/* Puts b on ctx's live list, named by the handle in slot index. */
static void live_link(gms_block *b, gms_context *ctx, uint32_t index)
{
    b->u.live.owner = ctx;
    b->u.live.slot = index;
    gms__live_push(&ctx->live, b);
    ctx->live_blocks++;
    ctx->live_bytes += b->size;
}

/* An imported block: off its pool's list, its node freed. */
static void import_end(gms_pool *p, gms_block *b, gms_drop *d)
{
    gms__live_unlink(&p->imports, b);
    d->import = *b->import;
    free(b->import);
    free(b);
}

/* Drops a handle; the block, if it dies, is retired on stream (ordered)
 * or with nothing pending on it. */
static int handle_drop(gms_pool *p, gms_slot *s, const gms_context *by, void *stream,
                       bool ordered, gms_drop *d)
{
    d->died = false;
    d->import = (gms_import){0};
    uint32_t index = gms__handle_slot(atomic_load_explicit(&s->handle, memory_order_relaxed));
    gms_block *b = s->block;
    gms_context *holder = s->holder;
    bool owns = b->u.live.owner && b->u.live.slot == index;
    if (b->win) /* a context closing with a window open: it ends here */
        gms__windows_forget(p, b, s);
    b->holders--;
    b->writers -= s->mode == GMS_ACCESS_READ_WRITE;
    /* Off the holder's list before the handle reads 0: a context closing
     * walks that list under holds_lock alone and needs a slot's handle to
     * find its pool. */
    if (owns)
        live_unlink(b);
    else if (holder) /* none: an export whose context closed */
        hold_unlink(holder, s);
    atomic_store_explicit(&s->handle, 0, memory_order_release);
    s->gen++;
    s->block = NULL;
    gms__slot_put(p, index); /* uncharges the holder's tenant; clears it */
    if (b->holders)
        return GMS_OK;
    d->died = true;
    /* gms_free says the caller's work on the buffer is done, not gms's:
     * memory mapped for it may still wait for its preparation on the
     * stream it was allocated on. Then the free is ordered there, as
     * gms_free_async on that stream would be, so that neither its next
     * owner elsewhere nor its scrub can run before that preparation. */
    bool sync = !ordered;
    uint64_t done = 0;
    if (sync && !gms__tag_ran(p->rt, b->stream, b->ticket, &done)) {
        stream = b->stream;
        ordered = true;
    }
    /* The memory's next users (its scrub first) come after every window's
     * work, in stream order. */
    gms__windows_retire(p, b, gms__queue_stream(stream));
    if (b->seal) /* crypto-erase: before the memory goes to the wipe */
        gms__seal_erase(p, b);
    bool given = false;
    int rc = b->share ? gms__share_end(p, b, &given) : GMS_OK;
    if (b->import) {
        import_end(p, b, d);
        return rc;
    }
    p->live_bytes -= b->size;
    p->live_blocks--;
    p->frees++;
    quota_give(p->tenant, b->size);
    atomic_fetch_sub_explicit(&p->rt->gauges.live_bytes, b->size, memory_order_relaxed);
    b->free_ns = gms__now_ns();
    b->free_user = by && by->pool == p ? by->user_index : GMS_USER_ELSEWHERE;
    if (given) { /* other processes' memory now: no scrub, no reuse */
        gms__pool_give_away(p, b);
        return rc;
    }
    int safety = gms__safety_retire(p, b, stream, ordered, sync);
    return rc ? rc : safety;
}

void gms__handle_orphan(gms_pool *p, gms_slot *s)
{
    gms_context *holder = s->holder;
    hold_unlink(holder, s);
    /* Charged from now on to the pool's tenant, as gms__slot_put will
     * uncharge it. */
    atomic_fetch_sub_explicit(&holder->tenant->handles, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->tenant->handles, 1, memory_order_relaxed);
    s->holder = NULL;
}

int gms__handle_drop(gms_pool *p, gms_slot *s, const gms_context *by, gms_drop *d)
{
    return handle_drop(p, s, by, NULL, false, d);
}

int gms__handle_drop_on(gms_pool *p, gms_slot *s, const gms_context *by, void *stream,
                        gms_drop *d)
{
    return handle_drop(p, s, by, stream, true, d);
}

void gms__drop_finish(gms_drop *d)
{
    if (d->import.broker_hold) {
        gms__broker_release_hold(d->import.broker_be, d->import.broker_hold, d->import.map,
                                 d->import.map_len);
        d->import.broker_hold = 0;
    }
    if (!d->import.tensor)
        return;
    if (d->import.versioned) {
        DLManagedTensorVersioned *t = d->import.tensor;
        if (t->deleter)
            t->deleter(t);
    } else {
        DLManagedTensor *t = d->import.tensor;
        if (t->deleter)
            t->deleter(t);
    }
    d->import.tensor = NULL;
}

int gms__handle_move(gms_pool *p, gms_slot *s, gms_context *to, gms_buf *out)
{
    gms_block *b = s->block;
    gms_context *from = s->holder;
    gms_buf h;
    int rc = gms__handle_add(p, b, to, GMS_ACCESS_READ_WRITE, &h);
    if (rc)
        return rc;
    gms_drop d;
    gms__handle_drop(p, s, from, &d); /* not the last: h holds the block */
    if (to->pool == p && !b->import && !b->u.live.owner) {
        /* Within one pool the new holder owns the block like an allocation
         * of its own: off the holds list, onto the live list. */
        uint32_t index = gms__handle_slot(h);
        hold_unlink(to, gms__slot_at(p->rt, index));
        live_link(b, to, index);
        b->handle = h;
    }
    *out = h;
    return GMS_OK;
}

/* gms_free, gms_free_async and gms_release: stream NULL and ordered false
 * but for gms_free_async. */
static int free_ordered(gms_context *ctx, gms_buf buf, void *stream, bool ordered, const char *op)
{
    gms_held h;
    int rc = gms__buf_lock(ctx, buf, op, true, &h);
    if (rc)
        return rc;
    gms_block *b = h.block;
    uint64_t size = b->req_size;
    if (gms__window_held(b, h.slot)) {
        gms__pool_unlock(h.pool);
        return gms__fail(GMS_E_BUSY,
                         "%s: handle 0x%016llx has an access window open or waiting: gms_access_end it first",
                         op, (unsigned long long)buf);
    }
    char msg[512];
    gms_drop d;
    rc = ordered ? gms__handle_drop_on(h.pool, h.slot, ctx, stream, &d)
                 : gms__handle_drop(h.pool, h.slot, ctx, &d);
    if (rc) /* our own redzones: keep the message past the deliveries */
        snprintf(msg, sizeof msg, "%s", gms_error_last());
    gms__pool_unlock(h.pool);
    gms__drop_finish(&d);
    gms__violations_deliver(ctx->rt);
    gms__audit_ctx(ctx, d.died ? GMS_AUDIT_FREE : GMS_AUDIT_RELEASE, buf, size, rc,
                   rc ? msg : NULL);
    if (rc)
        return gms__fail(rc, "%s", msg);
    return GMS_OK;
}

int gms_free(gms_context *ctx, gms_buf buf)
{
    return free_ordered(ctx, buf, NULL, false, "gms_free");
}

int gms_release(gms_context *ctx, gms_buf buf)
{
    return free_ordered(ctx, buf, NULL, false, "gms_release");
}

int gms_free_async(gms_context *ctx, gms_buf buf, void *stream)
{
    return free_ordered(ctx, buf, stream, true, "gms_free_async");
}

int gms_buf_info_get(gms_context *ctx, gms_buf buf, gms_buf_info *out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_buf_info: out is NULL");
    memset(out, 0, sizeof *out);
    gms_held h;
    int rc = gms__buf_lock(ctx, buf, "gms_buf_info", false, &h);
    if (rc)
        return rc;
    gms_pool *p = h.pool;
    gms_block *b = h.block;
    gms_buf_info i = {0};
    i.size = b->req_size;
    i.block_size = b->size;
    bool view;
    i.device_ptr = gms__holder_address(p, h.slot, &view);
    i.pool_id = p->id;
    i.flags = b->flags;
    i.level = p->level;
    i.language = p->language;
    memcpy(i.tenant, p->tenant->name, sizeof i.tenant);
    snprintf(i.user, sizeof i.user, "%s", b->import ? ctx->user : gms__user_name(p, b->alloc_user));
    i.immutable = b->share && b->share->immutable;
    i.access = i.immutable ? GMS_ACCESS_READ : h.slot->mode;
    i.holders = b->holders;
    i.share_id = !b->share ? 0 : b->share->broker_id ? b->share->broker_id : b->share->id;
    i.read_only_view = view;
    if (b->seal && b->seal->sealed)
        i.device_ptr = 0; /* no address to a sealed buffer (gms__seal_refuse) */
    gms__pool_unlock(p);
    *out = i;
    return GMS_OK;
}

int gms_buf_ptr(gms_context *ctx, gms_buf buf, void **out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_buf_ptr: out is NULL");
    *out = NULL; /* never a stale address after a failure */
    gms_held h;
    int rc = gms__buf_lock(ctx, buf, "gms_buf_ptr", false, &h);
    if (rc)
        return rc;
    uint64_t addr;
    rc = gms__holder_pointer(h.pool, h.slot, buf, "gms_buf_ptr", &addr);
    gms__pool_unlock(h.pool);
    if (rc)
        return gms__refused(ctx, buf, rc);
    *out = (void *)(uintptr_t)addr;
    return GMS_OK;
}

/* Whether [off, off+len) lies in the buffer; written so nothing overflows. */
int gms__range_check(const gms_block *b, uint64_t off, uint64_t len, const char *op,
                     const char *which)
{
    uint64_t size = b->req_size;
    if (off > size || len > size - off)
        return gms__fail(GMS_E_OUT_OF_BOUNDS,
                         "%s: %s range [%llu, %llu + %llu) is outside the buffer of %llu bytes", op,
                         which, (unsigned long long)off, (unsigned long long)off,
                         (unsigned long long)len, (unsigned long long)size);
    return GMS_OK;
}

/* Orders the backend's synchronous data movement after the device work a
 * live block's memory still waits for (its preparation, queued on its
 * stream). */
int gms__after_pending(gms_runtime *rt, const gms_block *b)
{
    gms_backend *be = rt->backend;
    if (!b->ticket || !be->ops->order_after || b->ticket <= gms__device_done(rt))
        return 0;
    return be->ops->order_after(be, gms__queue_stream(b->stream), 0);
}

/* Locks buf's pool and checks [off, off+len) (and that the holder may
 * write, for writes); on success the caller unlocks. */
static int access_begin(gms_context *ctx, gms_buf buf, uint64_t off, size_t len,
                        const void *host, bool write, const char *op, gms_held *out)
{
    if (!host && len > 0)
        return gms__fail(GMS_E_INVALID_ARG, "%s: host pointer is NULL", op);
    int rc = gms__buf_lock(ctx, buf, op, false, out);
    if (rc)
        return rc;
    if ((rc = gms__seal_refuse(out->block, buf, op)) != GMS_OK ||
        (rc = gms__range_check(out->block, off, len, op, "the")) != GMS_OK ||
        (write && (rc = gms__writable(out, buf, op)) != GMS_OK)) {
        gms__pool_unlock(out->pool);
        gms__refused(ctx, buf, rc);
        return rc;
    }
    /* Ordered with the holders' access windows (docs/ordering.md). */
    if ((rc = gms__windows_host_access(out->pool, out->block, out->slot, write, op, buf)) != GMS_OK) {
        gms__pool_unlock(out->pool);
        return rc;
    }
    int err = gms__after_pending(ctx->rt, out->block);
    if (err) {
        gms__pool_unlock(out->pool);
        return gms__backend_fail(err, "ordering after the buffer's stream", len);
    }
    return GMS_OK;
}

static int access_end(gms_pool *p, int err, const char *op, size_t len)
{
    gms__pool_unlock(p);
    return err ? gms__backend_fail(err, op, len) : GMS_OK;
}

int gms_write(gms_context *ctx, gms_buf dst, uint64_t off, const void *src, size_t len)
{
    gms_held h = {0}; /* -O3 cannot see access_begin set it before a success */
    int rc = access_begin(ctx, dst, off, len, src, true, "gms_write", &h);
    if (rc)
        return rc;
    gms_backend *be = ctx->rt->backend;
    return access_end(h.pool, len ? be->ops->write(be, h.block->addr + off, src, len) : 0,
                      "write", len);
}

int gms_read(gms_context *ctx, gms_buf src, uint64_t off, void *dst, size_t len)
{
    gms_held h = {0}; /* -O3 cannot see access_begin set it before a success */
    int rc = access_begin(ctx, src, off, len, dst, false, "gms_read", &h);
    if (rc)
        return rc;
    gms_backend *be = ctx->rt->backend;
    return access_end(h.pool, len ? be->ops->read(be, dst, h.block->addr + off, len) : 0, "read",
                      len);
}

int gms_fill(gms_context *ctx, gms_buf dst, uint64_t off, int byte, size_t len)
{
    if (byte < 0 || byte > 255)
        return gms__fail(GMS_E_INVALID_ARG, "gms_fill: byte %d is not in 0..255", byte);
    gms_held h;
    int rc = access_begin(ctx, dst, off, len, &h, true, "gms_fill", &h);
    if (rc)
        return rc;
    gms_backend *be = ctx->rt->backend;
    return access_end(h.pool, len ? be->ops->fill(be, h.block->addr + off, byte, len) : 0, "fill",
                      len);
}

/* The two buffers may lie in two pools (one acquired from another
 * context): both are locked, in the runtime's order. */
int gms_copy(gms_context *ctx, gms_buf dst, uint64_t dst_off, gms_buf src, uint64_t src_off,
             size_t len)
{
    const char *op = "gms_copy";
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", op);
    gms_pool *dp, *sp;
    gms_slot *ds, *ss;
    gms_held d, s;
    int rc = gms__buf_slot(ctx, dst, op, &dp, &ds);
    if (rc)
        return gms__refused(ctx, dst, rc);
    if ((rc = gms__buf_slot(ctx, src, op, &sp, &ss)) != GMS_OK)
        return gms__refused(ctx, src, rc);
    gms__pools_lock(dp, sp);
    gms_buf bad = dst;
    if ((rc = gms__buf_check_locked(ctx, dst, op, false, dp, ds, &d)) == GMS_OK &&
        (rc = gms__seal_refuse(d.block, dst, op)) == GMS_OK &&
        (rc = gms__range_check(d.block, dst_off, len, op, "the destination")) == GMS_OK &&
        (rc = gms__writable(&d, dst, op)) == GMS_OK) {
        bad = src;
        if ((rc = gms__buf_check_locked(ctx, src, op, false, sp, ss, &s)) == GMS_OK &&
            (rc = gms__seal_refuse(s.block, src, op)) == GMS_OK)
            rc = gms__range_check(s.block, src_off, len, op, "the source");
    }
    if (rc) {
        gms__pools_unlock(dp, sp);
        return gms__refused(ctx, bad, rc);
    }
    if ((rc = gms__windows_host_access(dp, d.block, d.slot, true, op, dst)) != GMS_OK ||
        (rc = gms__windows_host_access(sp, s.block, s.slot, false, op, src)) != GMS_OK) {
        gms__pools_unlock(dp, sp);
        return rc;
    }
    gms_backend *be = ctx->rt->backend;
    int err = gms__after_pending(ctx->rt, d.block);
    if (!err)
        err = gms__after_pending(ctx->rt, s.block);
    if (!err && len)
        err = be->ops->copy(be, d.block->addr + dst_off, s.block->addr + src_off, len);
    gms__pools_unlock(dp, sp);
    return err ? gms__backend_fail(err, "copy", len) : GMS_OK;
}

