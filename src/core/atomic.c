/*
 * atomic.c: checked atomics (include/gms/access.h, docs/ordering.md).
 *
 * Each call checks every word (bounds, alignment, the right to write)
 * under the buffer's pool lock, as gms_write does, then hands the backend
 * one batch: the host backend runs it with C11 atomics before returning, a
 * GPU backend queues one small kernel on the caller's stream. Only
 * gms_atomic with an old pointer waits, after letting go of the lock, for
 * its stream to run the operation (the old value comes back through a
 * pinned host word).
 *
 * Cost: gms_atomic is one handle lookup under the pool's lock plus the
 * backend's call (on the host a few atomic instructions; on a GPU one
 * kernel launch, ~4 us of host time); a batch is the same for n items.
 */
#include "core/internal.h"
#include "gms/access.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checks op, width and alignment: the word alone, before any lock. */
static int word_check(uint32_t op, uint32_t width, uint64_t offset, const char *op_name,
                      const char *item)
{
    if (op < GMS_ATOMIC_ADD || op > GMS_ATOMIC_CAS)
        return gms__fail(GMS_E_INVALID_ARG, "%s: %sop %u is not a gms_atomic_op", op_name, item, op);
    if (width != 4 && width != 8)
        return gms__fail(GMS_E_INVALID_ARG, "%s: %swidth %u is not 4 or 8", op_name, item, width);
    if (offset % width)
        return gms__fail(GMS_E_INVALID_ARG,
                         "%s: %soffset %llu is not a multiple of the width %u (atomics need naturally aligned words)",
                         op_name, item, (unsigned long long)offset, width);
    return GMS_OK;
}

/* Whether the holder may run atomics on the buffer: a writer or an atomic
 * holder, of a buffer that is not shared immutable (pool->lock held). */
static int atomic_allowed(const gms_held *h, gms_buf buf, const char *op)
{
    if (h->slot->mode == GMS_ACCESS_ATOMIC && !(h->block->share && h->block->share->immutable))
        return GMS_OK;
    return gms__writable(h, buf, op);
}

int gms_atomic(gms_context *ctx, gms_buf buf, uint64_t offset, gms_atomic_op op, uint32_t width,
               uint64_t operand, uint64_t compare, void *stream, uint64_t *old)
{
    const char *name = "gms_atomic";
    if (old)
        *old = 0;
    int rc = word_check((uint32_t)op, width, offset, name, "");
    if (rc)
        return rc;
    gms_held h;
    if ((rc = gms__buf_lock(ctx, buf, name, false, &h)) != GMS_OK)
        return rc;
    if ((rc = gms__range_check(h.block, offset, width, name, "the word's")) != GMS_OK ||
        (rc = atomic_allowed(&h, buf, name)) != GMS_OK) {
        gms__pool_unlock(h.pool);
        return gms__refused(ctx, buf, rc);
    }
    gms_backend *be = ctx->rt->backend;
    uint64_t here = 0;
    volatile uint64_t *word = NULL;
    gms_atomic_work w = {.addr = h.block->addr + offset, .operand = operand, .compare = compare,
                         .op = (uint32_t)op, .width = width};
    int err = 0;
    if (old && be->ops->host_word_take)
        err = be->ops->host_word_take(be, &word, &w.result);
    else if (old)
        w.result = (uint64_t)(uintptr_t)&here;
    if (!err)
        err = be->ops->atomic(be, &w, 1, stream);
    gms__pool_unlock(h.pool);
    bool queued = !err;
    if (!err && word) /* the old value is on its way: wait for the stream */
        err = be->ops->order_after(be, stream, 1);
    if (word) {
        here = *word;
        be->ops->host_word_put(be, word);
    }
    if (err && queued) /* nothing can take it back */
        return gms__backend_fail(err, "wait for an atomic's old value (the operation was queued and may have run)",
                                 width);
    if (err)
        return err == EBUSY ? gms__fail(GMS_E_BUSY, "%s: every result word is in use; try again", name)
                            : gms__backend_fail(err, "atomic", width);
    if (old)
        *old = here;
    return GMS_OK;
}

/* Whether the results range [lo, lo+len) and the item's word overlap. */
static bool overlaps(uint64_t lo, uint64_t len, const gms_atomic_item *it)
{
    return it->offset < lo + len && lo < it->offset + it->width;
}

int gms_atomic_batch(gms_context *ctx, gms_buf buf, const gms_atomic_item *items, size_t n,
                     gms_buf results, uint64_t results_offset, void *stream)
{
    const char *name = "gms_atomic_batch";
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", name);
    if (!items && n)
        return gms__fail(GMS_E_INVALID_ARG, "%s: items is NULL", name);
    if (n > SIZE_MAX / sizeof(gms_atomic_work) || n > UINT64_MAX / 8)
        return gms__fail(GMS_E_INVALID_ARG, "%s: %zu items is too many", name, n);
    for (size_t i = 0; i < n; i++) {
        char item[32];
        snprintf(item, sizeof item, "item %zu: ", i);
        int rc = word_check(items[i].op, items[i].width, items[i].offset, name, item);
        if (rc)
            return rc;
    }
    if (results != GMS_BUF_NULL && results_offset % 8)
        return gms__fail(GMS_E_INVALID_ARG,
                         "%s: results_offset %llu is not a multiple of 8", name,
                         (unsigned long long)results_offset);
    gms_pool *p, *rp;
    gms_slot *s, *rs;
    int rc = gms__buf_slot(ctx, buf, name, &p, &s);
    if (rc)
        return gms__refused(ctx, buf, rc);
    rp = p;
    rs = s;
    if (results != GMS_BUF_NULL && (rc = gms__buf_slot(ctx, results, name, &rp, &rs)) != GMS_OK)
        return gms__refused(ctx, results, rc);
    gms__pools_lock(p, rp);
    gms_held h, r = {0};
    gms_buf bad = buf;
    if ((rc = gms__buf_check_locked(ctx, buf, name, false, p, s, &h)) == GMS_OK &&
        (rc = atomic_allowed(&h, buf, name)) == GMS_OK) {
        for (size_t i = 0; i < n && !rc; i++) {
            char which[48];
            snprintf(which, sizeof which, "item %zu's word", i);
            rc = gms__range_check(h.block, items[i].offset, items[i].width, name, which);
        }
    }
    if (!rc && results != GMS_BUF_NULL) {
        bad = results;
        uint64_t len = (uint64_t)n * 8;
        if ((rc = gms__buf_check_locked(ctx, results, name, false, rp, rs, &r)) == GMS_OK &&
            (rc = gms__range_check(r.block, results_offset, len, name, "the results")) == GMS_OK &&
            (rc = gms__writable(&r, results, name)) == GMS_OK && r.block == h.block) {
            for (size_t i = 0; i < n && !rc; i++)
                if (overlaps(results_offset, len, &items[i]))
                    rc = gms__fail(GMS_E_INVALID_ARG,
                                   "%s: item %zu's word at %llu lies in the results range [%llu, %llu)",
                                   name, i, (unsigned long long)items[i].offset,
                                   (unsigned long long)results_offset,
                                   (unsigned long long)(results_offset + len));
        }
    }
    if (rc) {
        gms__pools_unlock(p, rp);
        return rc == GMS_E_INVALID_ARG ? rc : gms__refused(ctx, bad, rc);
    }
    if (n == 0) {
        gms__pools_unlock(p, rp);
        return GMS_OK;
    }
    gms_atomic_work *w = gms__alloc_meta(ctx->rt, n * sizeof *w);
    if (!w) {
        gms__pools_unlock(p, rp);
        return gms__fail(GMS_E_NO_MEMORY, "%s: out of host memory for %zu items", name, n);
    }
    for (size_t i = 0; i < n; i++)
        w[i] = (gms_atomic_work){
            .addr = h.block->addr + items[i].offset,
            .operand = items[i].operand,
            .compare = items[i].compare,
            .result = results != GMS_BUF_NULL ? r.block->addr + results_offset + 8 * i : 0,
            .op = items[i].op,
            .width = items[i].width,
        };
    gms_backend *be = ctx->rt->backend;
    int err = be->ops->atomic(be, w, n, stream);
    gms__pools_unlock(p, rp);
    free(w);
    return err ? gms__backend_fail(err, "atomic batch", n) : GMS_OK;
}
