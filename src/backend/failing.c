/*
 * failing.c: a backend wrapper that fails the Nth fallible call, so tests
 * can walk every error path of the core (tests/core/failing_backend.c).
 * The count is shared with the core's metadata allocations (gms_failpoint).
 */
#include "backend/backend.h"

#include <errno.h>
#include <stdlib.h>

typedef struct failing_backend {
    gms_backend base;     /* first: a gms_backend * is a failing_backend * */
    gms_backend *inner;
    gms_failpoint *fp;
    gms_backend_ops ops;
} failing_backend;

static failing_backend *fb(gms_backend *be)
{
    return (failing_backend *)be;
}

static int failing_reserve(gms_backend *be, uint64_t size, uint64_t align,
                           uint64_t *base, gms_backend_chunk **chunk)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return ENOMEM;
    gms_backend *in = fb(be)->inner;
    return in->ops->reserve(in, size, align, base, chunk);
}

static void failing_release(gms_backend *be, gms_backend_chunk *chunk)
{
    gms_backend *in = fb(be)->inner;
    in->ops->release(in, chunk);
}

static int failing_commit(gms_backend *be, gms_backend_chunk *chunk,
                          uint64_t off, uint64_t len)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return ENOMEM;
    gms_backend *in = fb(be)->inner;
    return in->ops->commit(in, chunk, off, len);
}

static int failing_decommit(gms_backend *be, gms_backend_chunk *chunk,
                            uint64_t off, uint64_t len)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->decommit(in, chunk, off, len);
}

static int failing_map_view_readonly(gms_backend *be, gms_backend_chunk *chunk,
                                     uint64_t off, uint64_t len, uint64_t *view)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->map_view_readonly(in, chunk, off, len, view);
}

static void failing_unmap_view(gms_backend *be, uint64_t view, uint64_t len)
{
    gms_backend *in = fb(be)->inner;
    in->ops->unmap_view(in, view, len);
}

static int failing_write(gms_backend *be, uint64_t dst, const void *src, size_t len)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->write(in, dst, src, len);
}

static int failing_read(gms_backend *be, void *dst, uint64_t src, size_t len)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->read(in, dst, src, len);
}

static int failing_copy(gms_backend *be, uint64_t dst, uint64_t src, size_t len)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->copy(in, dst, src, len);
}

static int failing_fill(gms_backend *be, uint64_t dst, int byte, size_t len)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->fill(in, dst, byte, len);
}

static int failing_atomic(gms_backend *be, const gms_atomic_work *w, size_t n, void *stream)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->atomic(in, w, n, stream);
}

static int failing_event_create(gms_backend *be, void **event)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return ENOMEM;
    gms_backend *in = fb(be)->inner;
    return in->ops->event_create(in, event);
}

static void failing_event_destroy(gms_backend *be, void *event)
{
    gms_backend *in = fb(be)->inner;
    in->ops->event_destroy(in, event);
}

static int failing_event_record(gms_backend *be, void *event, void *stream)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->event_record(in, event, stream);
}

static int failing_stream_wait(gms_backend *be, void *stream, void *event)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->stream_wait(in, stream, event);
}

static int failing_host_word_take(gms_backend *be, volatile uint64_t **host, uint64_t *dev)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return ENOMEM;
    gms_backend *in = fb(be)->inner;
    return in->ops->host_word_take(in, host, dev);
}

static void failing_host_word_put(gms_backend *be, volatile uint64_t *host)
{
    gms_backend *in = fb(be)->inner;
    in->ops->host_word_put(in, host);
}

static int failing_scrub(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                         uint64_t seed)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->scrub(in, items, n, pattern, seed);
}

static int failing_order_after(gms_backend *be, void *stream, int wait)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->order_after ? in->ops->order_after(in, stream, wait) : 0;
}

static int failing_ticket_reserve(gms_backend *be, uint64_t *ticket)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->ticket_reserve(in, ticket);
}

static int failing_scrub_async(gms_backend *be, gms_scrub_item *items, size_t n,
                               uint64_t pattern, uint64_t seed, void *stream, uint64_t ticket)
{
    gms_backend *in = fb(be)->inner;
    return in->ops->scrub_async(in, items, n, pattern, seed, stream, ticket);
}

static int failing_scrub_collect(gms_backend *be, uint64_t ticket, gms_scrub_item *items,
                                 size_t n)
{
    gms_backend *in = fb(be)->inner;
    return in->ops->scrub_collect(in, ticket, items, n);
}

static uint64_t failing_done_upto(gms_backend *be)
{
    gms_backend *in = fb(be)->inner;
    return in->ops->done_upto(in);
}

static int failing_ticket_done(gms_backend *be, uint64_t ticket)
{
    gms_backend *in = fb(be)->inner;
    return in->ops->ticket_done(in, ticket);
}

static int failing_quiesce(gms_backend *be)
{
    gms_backend *in = fb(be)->inner;
    return in->ops->quiesce(in);
}

static int failing_seal(gms_backend *be, gms_seal_job *job)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->seal(in, job);
}

static int failing_unseal(gms_backend *be, gms_seal_job *job)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->unseal(in, job);
}

static int failing_digest_leaves(gms_backend *be, uint64_t addr, uint64_t len,
                                 const uint8_t key[32], uint8_t *out)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->digest_leaves(in, addr, len, key, out);
}

static int failing_move_create(gms_backend *be, gms_backend_chunk *chunk, int device,
                               const gms_backend_range *r, size_t n, gms_backend_mem **mem,
                               uint64_t *staging)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return ENOMEM;
    gms_backend *in = fb(be)->inner;
    return in->ops->move_create(in, chunk, device, r, n, mem, staging);
}

static int failing_move_remap(gms_backend *be, gms_backend_chunk *chunk, gms_backend_mem *mem,
                              const uint64_t *views, const uint64_t *view_off,
                              const uint64_t *view_len, size_t nviews, gms_backend_mem **old,
                              uint64_t *old_staging)
{
    if (gms__failpoint_hit(fb(be)->fp))
        return EIO;
    gms_backend *in = fb(be)->inner;
    return in->ops->move_remap(in, chunk, mem, views, view_off, view_len, nviews, old,
                               old_staging);
}

static void failing_move_release(gms_backend *be, gms_backend_mem *mem)
{
    gms_backend *in = fb(be)->inner;
    in->ops->move_release(in, mem);
}

static int failing_device_count(gms_backend *be)
{
    gms_backend *in = fb(be)->inner;
    return in->ops->device_count(in);
}

static gms_fresh failing_fresh(gms_backend *be, const gms_backend_chunk *chunk)
{
    gms_backend *in = fb(be)->inner;
    return in->ops->fresh(in, chunk);
}

static void failing_poison_ahead(gms_backend *be, uint64_t pattern)
{
    gms_backend *in = fb(be)->inner;
    in->ops->poison_ahead(in, pattern);
}

static void failing_destroy(gms_backend *be)
{
    gms_backend *in = fb(be)->inner;
    in->ops->destroy(in);
    free(be);
}

static const gms_backend_ops failing_ops = {
    .name = "failing",
    .props = GMS_BACKEND_UNMAP_WIPES, /* the inner backend's, in fact */
    .reserve = failing_reserve,
    .release = failing_release,
    .commit = failing_commit,
    .decommit = failing_decommit,
    .map_view_readonly = failing_map_view_readonly,
    .unmap_view = failing_unmap_view,
    .write = failing_write,
    .read = failing_read,
    .copy = failing_copy,
    .fill = failing_fill,
    .atomic = failing_atomic,
    .event_create = failing_event_create,
    .event_destroy = failing_event_destroy,
    .event_record = failing_event_record,
    .stream_wait = failing_stream_wait,
    .host_word_take = failing_host_word_take,
    .host_word_put = failing_host_word_put,
    .scrub = failing_scrub,
    .order_after = failing_order_after,
    .ticket_reserve = failing_ticket_reserve,
    .scrub_async = failing_scrub_async,
    .scrub_collect = failing_scrub_collect,
    .done_upto = failing_done_upto,
    .ticket_done = failing_ticket_done,
    .quiesce = failing_quiesce,
    .seal = failing_seal,
    .unseal = failing_unseal,
    .digest_leaves = failing_digest_leaves,
    .move_create = failing_move_create,
    .move_remap = failing_move_remap,
    .move_release = failing_move_release,
    .device_count = failing_device_count,
    .destroy = failing_destroy,
};

int gms__backend_failing_create(gms_backend *inner, gms_failpoint *fp,
                               gms_backend **out)
{
    failing_backend *f = malloc(sizeof *f);
    if (!f)
        return ENOMEM;
    f->base = *inner;
    /* The same ops as the inner backend has: stream-ordered ones only if
     * it has them. */
    f->ops = failing_ops;
    f->ops.props = inner->ops->props;
    if (!inner->ops->scrub_async)
        gms__backend_ops_without_streams(&f->ops);
    if (!inner->ops->order_after)
        f->ops.order_after = NULL;
    if (!inner->ops->seal) /* sealed regions only where the inner backend has them */
        f->ops.seal = f->ops.unseal = NULL;
    if (!inner->ops->digest_leaves)
        f->ops.digest_leaves = NULL;
    if (!inner->ops->event_create) { /* no events: windows order calls */
        f->ops.event_create = NULL;
        f->ops.event_destroy = NULL;
        f->ops.event_record = NULL;
        f->ops.stream_wait = NULL;
    }
    if (!inner->ops->host_word_take) {
        f->ops.host_word_take = NULL;
        f->ops.host_word_put = NULL;
    }
    if (!inner->ops->move_create) {
        f->ops.move_create = NULL;
        f->ops.move_remap = NULL;
        f->ops.move_release = NULL;
    }
    if (!inner->ops->device_count)
        f->ops.device_count = NULL;
    f->ops.fresh = inner->ops->fresh ? failing_fresh : NULL;
    f->ops.poison_ahead = inner->ops->poison_ahead ? failing_poison_ahead : NULL;
    f->base.ops = &f->ops;
    f->inner = inner;
    f->fp = fp;
    *out = &f->base;
    return 0;
}
