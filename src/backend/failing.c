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
    .scrub = failing_scrub,
    .order_after = failing_order_after,
    .ticket_reserve = failing_ticket_reserve,
    .scrub_async = failing_scrub_async,
    .scrub_collect = failing_scrub_collect,
    .done_upto = failing_done_upto,
    .ticket_done = failing_ticket_done,
    .quiesce = failing_quiesce,
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
    f->base.ops = &f->ops;
    f->inner = inner;
    f->fp = fp;
    *out = &f->base;
    return 0;
}
