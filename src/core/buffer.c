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

#include <stdio.h>
#include <string.h>

/* Largest request: far above any device, far below where sizes overflow. */
#define GMS_MAX_ALLOC (1ull << 52)

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

/* Finds the live block h names for ctx; ctx's pool lock is held. A block the
 * verifier flagged is reported to the calls that use it, not to a free. */
static int buf_find_locked(gms_context *ctx, gms_buf h, const char *op, bool freeing,
                           gms_block **out)
{
    if (h == GMS_BUF_NULL)
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: null handle", op);
    gms_pool *p = NULL;
    gms_slot *s = gms__slot_lookup(ctx->rt, h, &p);
    if (!s)
        return gms__fail(GMS_E_INVALID_HANDLE,
                         "%s: handle 0x%016llx: forged or corrupted handle (not issued by this runtime)",
                         op, (unsigned long long)h);
    uint64_t cur = atomic_load_explicit(&s->handle, memory_order_acquire);
    if (p != ctx->pool) {
        /* Another pool's slot (its lock is not ours to take): name the
         * owner only if the handle is real. */
        if (cur == h)
            return gms__fail(GMS_E_ACCESS_DENIED,
                             "%s: handle 0x%016llx belongs to tenant '%s' (%s, %s), not to this context of tenant '%s' (%s, %s)",
                             op, (unsigned long long)h, p->tenant->name, gms_level_name(p->level),
                             gms_language_name(p->language), ctx->tenant->name,
                             gms_level_name(ctx->level), gms_language_name(ctx->language));
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: handle 0x%016llx: stale, freed or forged handle",
                         op, (unsigned long long)h);
    }
    if (cur != h)
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: handle 0x%016llx: %s", op,
                         (unsigned long long)h, gms__handle_diagnose(ctx->rt, s, h));
    gms_block *b = s->block;
    if (b->u.live.owner != ctx)
        return gms__fail(GMS_E_ACCESS_DENIED,
                         "%s: handle 0x%016llx belongs to another context of tenant '%s' (user '%s')",
                         op, (unsigned long long)h, p->tenant->name, b->u.live.owner->user);
    if (b->corrupt_at && !freeing)
        return corrupt_report(b, op);
    *out = b;
    return GMS_OK;
}

/* Records a refused handle use: another context's buffer, or a violation
 * (a stale, freed or forged handle, an access out of bounds). */
static int refused(gms_context *ctx, gms_buf h, int rc)
{
    gms__audit_ctx(ctx, rc == GMS_E_ACCESS_DENIED ? GMS_AUDIT_ACCESS_DENIED : GMS_AUDIT_VIOLATION,
                   h, 0, rc, gms_error_last());
    return rc;
}

/* Finds the live block h names for ctx and returns with ctx's pool locked,
 * or returns an error with nothing locked. */
static int buf_lock(gms_context *ctx, gms_buf h, const char *op, bool freeing, gms_block **out)
{
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", op);
    gms__pool_lock(ctx->pool);
    int rc = buf_find_locked(ctx, h, op, freeing, out);
    if (rc) {
        gms__pool_unlock(ctx->pool);
        refused(ctx, h, rc);
    }
    return rc;
}

/* Reserves quota for one block of size bytes (pool->lock held). */
static int quota_take(gms_tenant *t, uint64_t size)
{
    uint64_t max = atomic_load_explicit(&t->max_bytes, memory_order_relaxed);
    uint64_t cur = atomic_load_explicit(&t->live_bytes, memory_order_relaxed);
    do {
        if (size > max || cur > max - size)
            goto refuse_bytes;
    } while (!atomic_compare_exchange_weak(&t->live_bytes, &cur, cur + size));
    max = atomic_load_explicit(&t->max_allocs, memory_order_relaxed);
    cur = atomic_load_explicit(&t->live_allocs, memory_order_relaxed);
    do {
        if (cur >= max) {
            atomic_fetch_sub(&t->live_bytes, size);
            atomic_fetch_add(&t->quota_refusals, 1);
            return gms__fail(GMS_E_QUOTA,
                             "tenant '%s' allocation quota: %llu live allocations, limit %llu",
                             t->name, (unsigned long long)cur, (unsigned long long)max);
        }
    } while (!atomic_compare_exchange_weak(&t->live_allocs, &cur, cur + 1));
    gms__atomic_max(&t->peak_bytes, atomic_load_explicit(&t->live_bytes, memory_order_relaxed));
    return GMS_OK;
refuse_bytes:
    atomic_fetch_add(&t->quota_refusals, 1);
    return gms__fail(GMS_E_QUOTA,
                     "tenant '%s' byte quota: %llu bytes live + %llu requested > limit %llu",
                     t->name, (unsigned long long)cur, (unsigned long long)size,
                     (unsigned long long)max);
}

static void quota_give(gms_tenant *t, uint64_t size)
{
    atomic_fetch_sub_explicit(&t->live_bytes, size, memory_order_relaxed);
    atomic_fetch_sub_explicit(&t->live_allocs, 1, memory_order_relaxed);
}

int gms_alloc(gms_context *ctx, size_t size, uint32_t flags, gms_buf *out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_alloc: out is NULL");
    *out = GMS_BUF_NULL;
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "gms_alloc: context is NULL");
    if (size == 0)
        return gms__fail(GMS_E_INVALID_ARG, "gms_alloc: size is 0");
    if (flags & ~(uint32_t)GMS_ALLOC_ZERO)
        return gms__fail(GMS_E_INVALID_ARG, "gms_alloc: unknown flags 0x%x", flags);
    if ((uint64_t)size > GMS_MAX_ALLOC)
        return gms__fail(GMS_E_NO_MEMORY, "gms_alloc: %llu bytes is more than any device holds",
                         (unsigned long long)size);
    /* With safety on, at least the redzone follows the data. */
    uint64_t span = (uint64_t)size + (ctx->rt->safety ? ctx->rt->redzone : 0);
    uint64_t bsize = (span + GMS_ALIGNMENT - 1) & ~(uint64_t)(GMS_ALIGNMENT - 1);
    gms_pool *p = ctx->pool;
    gms_runtime *rt = ctx->rt;

    gms__pool_lock(p);
    int rc = quota_take(ctx->tenant, bsize);
    if (rc) {
        gms__pool_unlock(p);
        gms__audit_ctx(ctx, GMS_AUDIT_QUOTA_REFUSED, 0, size, rc, gms_error_last());
        return rc;
    }
    uint32_t slot;
    gms_block *b = NULL;
    if ((rc = gms__slot_take(p, &slot)) != GMS_OK)
        goto fail_quota;
    if ((rc = gms__pool_alloc(p, ctx, bsize, size, flags, &b)) != GMS_OK)
        goto fail_slot;
    b->u.live.slot = slot;
    gms_slot *s = gms__slot_at(rt, slot);
    s->block = b;
    gms_buf h = gms__handle_make(rt, slot, s->gen);
    b->handle = h;
    b->alloc_ns = gms__now_ns();
    b->alloc_user = ctx->user_index;
    atomic_store_explicit(&s->handle, h, memory_order_release);
    uint64_t live = atomic_fetch_add_explicit(&rt->live_bytes, bsize, memory_order_relaxed) + bsize;
    gms__atomic_max(&rt->peak_live, live);
    if (flags & GMS_ALLOC_ZERO) {
        /* Under the lock: the handle is not out yet, but a racing forged
         * free of it must not see a half-made buffer. */
        int err = rt->backend->ops->fill(rt->backend, b->addr, 0, size);
        if (err) {
            gms__block_release(p, b, ctx);
            gms__pool_unlock(p);
            gms__violations_deliver(rt);
            rc = gms__backend_fail(err, "zero fill", size);
            goto fail_audit;
        }
    }
    gms__pool_unlock(p);
    gms__violations_deliver(rt); /* growing may have flushed a batch of frees */
    gms__audit_ctx(ctx, GMS_AUDIT_ALLOC, h, size, GMS_OK, NULL);
    *out = h;
    return GMS_OK;
fail_slot:
    gms__slot_put(p, slot);
fail_quota:
    quota_give(ctx->tenant, bsize);
    gms__pool_unlock(p);
fail_audit:
    gms__audit_ctx(ctx, GMS_AUDIT_ALLOC, 0, size, rc, gms_error_last());
    return rc;
}

int gms__block_release(gms_pool *p, gms_block *b, const gms_context *by)
{
    gms_slot *s = gms__slot_at(p->rt, b->u.live.slot);
    atomic_store_explicit(&s->handle, 0, memory_order_release);
    s->gen++;
    s->block = NULL;
    gms__slot_put(p, b->u.live.slot);
    gms_context *ctx = b->u.live.owner;
    if (b->u.live.prev)
        b->u.live.prev->u.live.next = b->u.live.next;
    else
        ctx->live = b->u.live.next;
    if (b->u.live.next)
        b->u.live.next->u.live.prev = b->u.live.prev;
    ctx->live_blocks--;
    ctx->live_bytes -= b->size;
    p->live_bytes -= b->size;
    p->live_blocks--;
    p->frees++;
    quota_give(p->tenant, b->size);
    atomic_fetch_sub_explicit(&p->rt->live_bytes, b->size, memory_order_relaxed);
    b->free_ns = gms__now_ns();
    b->free_user = by->user_index;
    return gms__safety_retire(p, b);
}

/* gms_free and gms_free_async: stream NULL and ordered false for gms_free. */
static int free_ordered(gms_context *ctx, gms_buf buf, void *stream, bool ordered)
{
    const char *op = ordered ? "gms_free_async" : "gms_free";
    gms_block *b = NULL;
    int rc = buf_lock(ctx, buf, op, true, &b);
    if (rc)
        return rc;
    gms_pool *p = ctx->pool;
    gms_backend *be = ctx->rt->backend;
    if (ordered && be->ops->order_after) {
        /* Before the handle dies: if the backend cannot order, nothing
         * changed and the caller still owns the buffer. */
        int err = be->ops->order_after(be, stream, !ctx->rt->safety);
        if (err) {
            gms__pool_unlock(p);
            return gms__backend_fail(err, "ordering the free after the stream", b->req_size);
        }
    }
    uint64_t size = b->req_size;
    char msg[512];
    rc = gms__block_release(p, b, ctx);
    if (rc) /* our own redzones: keep the message past the deliveries */
        snprintf(msg, sizeof msg, "%s", gms_error_last());
    gms__pool_unlock(p);
    gms__violations_deliver(ctx->rt);
    gms__audit_ctx(ctx, GMS_AUDIT_FREE, buf, size, rc, rc ? msg : NULL);
    if (rc)
        return gms__fail(rc, "%s", msg);
    return GMS_OK;
}

int gms_free(gms_context *ctx, gms_buf buf)
{
    return free_ordered(ctx, buf, NULL, false);
}

int gms_free_async(gms_context *ctx, gms_buf buf, void *stream)
{
    return free_ordered(ctx, buf, stream, true);
}

int gms_buf_info_get(gms_context *ctx, gms_buf buf, gms_buf_info *out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_buf_info: out is NULL");
    gms_block *b = NULL;
    int rc = buf_lock(ctx, buf, "gms_buf_info", false, &b);
    if (rc)
        return rc;
    gms_pool *p = ctx->pool;
    gms_buf_info i = {0};
    i.size = b->req_size;
    i.block_size = b->size;
    i.device_ptr = b->addr;
    i.pool_id = p->id;
    i.flags = b->flags;
    i.level = p->level;
    i.language = p->language;
    memcpy(i.tenant, p->tenant->name, sizeof i.tenant);
    memcpy(i.user, b->u.live.owner->user, sizeof i.user);
    gms__pool_unlock(p);
    *out = i;
    return GMS_OK;
}

int gms_buf_ptr(gms_context *ctx, gms_buf buf, void **out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_buf_ptr: out is NULL");
    gms_block *b = NULL;
    int rc = buf_lock(ctx, buf, "gms_buf_ptr", false, &b);
    if (rc)
        return rc;
    *out = (void *)(uintptr_t)b->addr;
    gms__pool_unlock(ctx->pool);
    return GMS_OK;
}

/* Whether [off, off+len) lies in the buffer; written so nothing overflows. */
static int range_check(const gms_block *b, uint64_t off, uint64_t len, const char *op,
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

/* Locks buf's pool and checks [off, off+len); on success the caller unlocks. */
static int access_begin(gms_context *ctx, gms_buf buf, uint64_t off, size_t len,
                        const void *host, const char *op, gms_block **out)
{
    if (!host && len > 0)
        return gms__fail(GMS_E_INVALID_ARG, "%s: host pointer is NULL", op);
    int rc = buf_lock(ctx, buf, op, false, out);
    if (rc)
        return rc;
    if ((rc = range_check(*out, off, len, op, "the")) != GMS_OK) {
        gms__pool_unlock(ctx->pool);
        refused(ctx, buf, rc);
    }
    return rc;
}

static int access_end(gms_context *ctx, int err, const char *op, size_t len)
{
    gms__pool_unlock(ctx->pool);
    return err ? gms__backend_fail(err, op, len) : GMS_OK;
}

int gms_write(gms_context *ctx, gms_buf dst, uint64_t off, const void *src, size_t len)
{
    gms_block *b = NULL;
    int rc = access_begin(ctx, dst, off, len, src, "gms_write", &b);
    if (rc)
        return rc;
    gms_backend *be = ctx->rt->backend;
    return access_end(ctx, len ? be->ops->write(be, b->addr + off, src, len) : 0, "write", len);
}

int gms_read(gms_context *ctx, gms_buf src, uint64_t off, void *dst, size_t len)
{
    gms_block *b = NULL;
    int rc = access_begin(ctx, src, off, len, dst, "gms_read", &b);
    if (rc)
        return rc;
    gms_backend *be = ctx->rt->backend;
    return access_end(ctx, len ? be->ops->read(be, dst, b->addr + off, len) : 0, "read", len);
}

int gms_fill(gms_context *ctx, gms_buf dst, uint64_t off, int byte, size_t len)
{
    if (byte < 0 || byte > 255)
        return gms__fail(GMS_E_INVALID_ARG, "gms_fill: byte %d is not in 0..255", byte);
    gms_block *b = NULL;
    int rc = access_begin(ctx, dst, off, len, &b, "gms_fill", &b);
    if (rc)
        return rc;
    gms_backend *be = ctx->rt->backend;
    return access_end(ctx, len ? be->ops->fill(be, b->addr + off, byte, len) : 0, "fill", len);
}

int gms_copy(gms_context *ctx, gms_buf dst, uint64_t dst_off, gms_buf src, uint64_t src_off,
             size_t len)
{
    gms_block *d = NULL, *s = NULL;
    int rc = access_begin(ctx, dst, dst_off, len, &d, "gms_copy", &d);
    if (rc)
        return rc;
    if ((rc = buf_find_locked(ctx, src, "gms_copy", false, &s)) != GMS_OK ||
        (rc = range_check(s, src_off, len, "gms_copy", "source")) != GMS_OK) {
        gms__pool_unlock(ctx->pool);
        return refused(ctx, src, rc);
    }
    gms_backend *be = ctx->rt->backend;
    return access_end(ctx, len ? be->ops->copy(be, d->addr + dst_off, s->addr + src_off, len) : 0,
                      "copy", len);
}
