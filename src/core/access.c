/*
 * access.c: access windows (include/gms/access.h, docs/ordering.md): the
 * order between the holders of one buffer.
 *
 * A block's windows are a FIFO list in begin order, under its pool's lock
 * (the block's pool, whoever holds the handle). A window may open when no
 * window ahead of it conflicts (two readers never do); until then its
 * begin waits on the pool's condition variable, which every end
 * broadcasts. Once open, its stream is made to wait on the device for the
 * conflicting windows that ended: each end records an event, one for the
 * last writer and one per stream for the readers since (a writer waits for
 * all of them, which then count as passed). On a backend without events
 * (the host) the host waits are the whole order.
 *
 * Cost: begin and end are one handle lookup under the pool's lock, a small
 * allocation, and on a GPU one event record (end) or a stream wait per
 * conflicting stream (begin); neither waits for the device.
 */
#include "core/internal.h"
#include "gms/access.h"

#include <stdlib.h>
#include <string.h>

/* Reader ends remembered one per stream; a reader ending on a stream past
 * these merges into the oldest (its stream waits for it, then records it
 * again: a needless but harmless order between two readers). */
#define READ_EVENTS 8

typedef struct gms_window {
    struct gms_window *next;
    const gms_slot *slot;
    void *stream;
    uint8_t mode; /* gms_access */
    bool open;
} gms_window;

typedef struct gms_windows {
    gms_window *head; /* begin order */
    unsigned waiters; /* begins waiting on the host */
    void *write_ev;   /* the last writer's end; NULL: not made yet */
    void *write_stream;
    bool write_set;
    struct {
        void *stream;
        void *ev;
    } reads[READ_EVENTS]; /* [0, nreads): reader ends since the last writer;
                             events past nreads are kept for reuse */
    unsigned nreads;
} gms_windows;

static gms_window *window_find(const gms_block *b, const gms_slot *s)
{
    for (gms_window *w = b->win ? b->win->head : NULL; w; w = w->next)
        if (w->slot == s)
            return w;
    return NULL;
}

bool gms__window_held(const gms_block *b, const gms_slot *s)
{
    return window_find(b, s) != NULL;
}

/* Whether a window ahead of w conflicts with it: a writer waits for every
 * window ahead, a reader for writers ahead (FIFO, so a reader that came
 * after a waiting writer waits too). */
static bool must_wait(const gms_windows *ws, const gms_window *w)
{
    for (const gms_window *x = ws->head; x != w; x = x->next)
        if (w->mode == GMS_ACCESS_READ_WRITE || x->mode == GMS_ACCESS_READ_WRITE)
            return true;
    return false;
}

static void window_unlink(gms_pool *p, gms_windows *ws, gms_window *w)
{
    gms_window **at = &ws->head;
    while (*at != w)
        at = &(*at)->next;
    *at = w->next;
    free(w);
    if (ws->waiters)
        pthread_cond_broadcast(&p->win_cond);
}

/* Makes the device order `stream` after the ended windows w conflicts with
 * (0 or an errno). Same-stream ends need no wait: stream order has them. */
static int device_after(gms_backend *be, gms_windows *ws, void *stream, bool write)
{
    if (!be->ops->stream_wait)
        return 0;
    int err = 0;
    if (ws->write_set && ws->write_stream != stream)
        err = be->ops->stream_wait(be, stream, ws->write_ev);
    for (unsigned i = 0; write && !err && i < ws->nreads; i++)
        if (ws->reads[i].stream != stream)
            err = be->ops->stream_wait(be, stream, ws->reads[i].ev);
    return err;
}

/* Orders later work on stream after the work queued on `after` so far,
 * on the device (0 or an errno). */
static int stream_after_stream(gms_backend *be, void *stream, void *after)
{
    if (!be->ops->event_create)
        return 0;
    void *ev = NULL;
    int err = be->ops->event_create(be, &ev);
    if (err)
        return err;
    if (!(err = be->ops->event_record(be, ev, after)))
        err = be->ops->stream_wait(be, stream, ev);
    be->ops->event_destroy(be, ev); /* released once the wait has passed */
    return err;
}

/* Records the end of a window on stream (0 or an errno). */
static int device_end(gms_backend *be, gms_windows *ws, void *stream, bool write)
{
    if (!be->ops->event_record)
        return 0;
    int err;
    if (write) {
        if (!ws->write_ev && (err = be->ops->event_create(be, &ws->write_ev)) != 0)
            return err;
        if ((err = be->ops->event_record(be, ws->write_ev, stream)) != 0)
            return err;
        ws->write_set = true;
        ws->write_stream = stream;
        ws->nreads = 0; /* this writer waited for them */
        return 0;
    }
    unsigned i = 0;
    while (i < ws->nreads && ws->reads[i].stream != stream)
        i++;
    if (i == READ_EVENTS) { /* merge into the first */
        i = 0;
        if ((err = be->ops->stream_wait(be, stream, ws->reads[0].ev)) != 0)
            return err;
    }
    if (!ws->reads[i].ev && (err = be->ops->event_create(be, &ws->reads[i].ev)) != 0)
        return err;
    if ((err = be->ops->event_record(be, ws->reads[i].ev, stream)) != 0)
        return err;
    ws->reads[i].stream = stream;
    if (i == ws->nreads)
        ws->nreads++;
    return 0;
}

int gms_access_begin(gms_context *ctx, gms_buf buf, gms_access mode, uint32_t flags, void *stream)
{
    const char *op = "gms_access_begin";
    if (mode != GMS_ACCESS_READ && mode != GMS_ACCESS_READ_WRITE)
        return gms__fail(GMS_E_INVALID_ARG, "%s: mode %d is not a gms_access", op, (int)mode);
    if (flags & ~(uint32_t)GMS_ACCESS_NOWAIT)
        return gms__fail(GMS_E_INVALID_ARG, "%s: unknown flags 0x%x", op, flags);
    gms_held h;
    int rc = gms__buf_lock(ctx, buf, op, false, &h);
    if (rc)
        return rc;
    gms_pool *p = h.pool;
    gms_block *b = h.block;
    if (mode == GMS_ACCESS_READ_WRITE && (rc = gms__writable(&h, buf, op)) != GMS_OK) {
        gms__pool_unlock(p);
        return gms__refused(ctx, buf, rc);
    }
    if (window_find(b, h.slot)) {
        gms__pool_unlock(p);
        return gms__fail(GMS_E_INVALID_ARG,
                         "%s: handle 0x%016llx already has a window (one per handle: end it first)",
                         op, (unsigned long long)buf);
    }
    if (!b->win) {
        b->win = gms__alloc_meta(ctx->rt, sizeof *b->win);
        if (!b->win) {
            gms__pool_unlock(p);
            return gms__fail(GMS_E_NO_MEMORY, "%s: out of host memory for the window", op);
        }
        memset(b->win, 0, sizeof *b->win);
    }
    gms_windows *ws = b->win;
    gms_window *w = gms__alloc_meta(ctx->rt, sizeof *w);
    if (!w) {
        gms__pool_unlock(p);
        return gms__fail(GMS_E_NO_MEMORY, "%s: out of host memory for the window", op);
    }
    *w = (gms_window){.slot = h.slot, .stream = stream, .mode = (uint8_t)mode};
    gms_window **tail = &ws->head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = w;
    if (must_wait(ws, w)) {
        if (flags & GMS_ACCESS_NOWAIT) {
            window_unlink(p, ws, w);
            gms__pool_unlock(p);
            return gms__fail(GMS_E_BUSY,
                             "%s: buffer 0x%016llx: a conflicting window is open or waiting (GMS_ACCESS_NOWAIT)",
                             op, (unsigned long long)buf);
        }
        /* Our handle keeps the block alive meanwhile: its release is
         * refused while this window exists. */
        ws->waiters++;
        do
            pthread_cond_wait(&p->win_cond, &p->lock);
        while (must_wait(ws, w));
        ws->waiters--;
    }
    gms_backend *be = ctx->rt->backend;
    int err = device_after(be, ws, stream, mode == GMS_ACCESS_READ_WRITE);
    /* The buffer's memory may still wait for gms's own work on the stream
     * it was allocated on (its preparation, or its last owner's scrub): a
     * window on another stream comes after that too. */
    uint64_t done = 0;
    if (!err && stream != b->stream && !gms__tag_ran(ctx->rt, b->stream, b->ticket, &done))
        err = stream_after_stream(be, stream, gms__queue_stream(b->stream));
    if (err) {
        window_unlink(p, ws, w);
        gms__pool_unlock(p);
        return gms__backend_fail(err, "ordering the window's stream after the last ones", b->req_size);
    }
    w->open = true;
    gms__pool_unlock(p);
    return GMS_OK;
}

int gms_access_end(gms_context *ctx, gms_buf buf, void *stream)
{
    const char *op = "gms_access_end";
    gms_held h;
    int rc = gms__buf_lock(ctx, buf, op, false, &h);
    if (rc)
        return rc;
    gms_pool *p = h.pool;
    gms_block *b = h.block;
    gms_window *w = window_find(b, h.slot);
    if (!w || !w->open) {
        gms__pool_unlock(p);
        return gms__fail(GMS_E_INVALID_ARG, "%s: handle 0x%016llx has no open window", op,
                         (unsigned long long)buf);
    }
    gms_backend *be = ctx->rt->backend;
    int err = device_end(be, b->win, stream, w->mode == GMS_ACCESS_READ_WRITE);
    const char *what = "recording the window's end";
    if (err && be->ops->order_after) {
        /* No event: wait for the stream instead, so the order still holds. */
        if (be->ops->order_after(be, stream, 1) == 0)
            err = 0;
        else
            what = "recording the window's end, then waiting for its stream instead";
    }
    window_unlink(p, b->win, w);
    gms__pool_unlock(p);
    return err ? gms__backend_fail(err, what, b->req_size) : GMS_OK;
}

void gms__windows_forget(gms_pool *p, gms_block *b, const gms_slot *s)
{
    gms_window *w = window_find(b, s);
    if (!w)
        return;
    gms_backend *be = p->rt->backend;
    if (w->open && device_end(be, b->win, w->stream, w->mode == GMS_ACCESS_READ_WRITE) &&
        be->ops->order_after)
        be->ops->order_after(be, w->stream, 1);
    window_unlink(p, b->win, w);
}

int gms__windows_settle(gms_pool *p, gms_block *b, void *stream)
{
    if (!b->win)
        return 0;
    return device_after(p->rt->backend, b->win, stream, true);
}

int gms__windows_host_access(gms_pool *p, gms_block *b, const gms_slot *s, bool write,
                             const char *op, gms_buf buf)
{
    gms_windows *ws = b->win;
    if (!ws)
        return GMS_OK;
    /* Inside the caller's own open window that allows it, the access is
     * the window's work: the windows' rules already keep every conflicting
     * window of another holder from being open, and one waiting comes after. */
    bool covered = false;
    for (const gms_window *w = ws->head; w && !covered; w = w->next)
        covered = w->slot == s && w->open && (!write || w->mode == GMS_ACCESS_READ_WRITE);
    for (const gms_window *w = ws->head; w && !covered; w = w->next)
        if (w->slot != s && (write || w->mode == GMS_ACCESS_READ_WRITE))
            return gms__fail(GMS_E_BUSY,
                             "%s: buffer 0x%016llx: another holder's %s window is %s (a checked %s "
                             "does not wait: open a window, which does)",
                             op, (unsigned long long)buf,
                             w->mode == GMS_ACCESS_READ_WRITE ? "read-write" : "read",
                             w->open ? "open" : "waiting", write ? "write" : "read");
    /* The backend's data movement runs on its own stream: after the
     * default stream, made to wait for the ended windows' events (as a
     * transfer's copy). */
    gms_backend *be = p->rt->backend;
    if (!be->ops->stream_wait || !(ws->write_set || (write && ws->nreads)))
        return GMS_OK;
    int err = device_after(be, ws, NULL, write);
    if (!err && be->ops->order_after)
        err = be->ops->order_after(be, NULL, 0);
    return err ? gms__backend_fail(err, "ordering a checked access after the ended windows",
                                   b->req_size)
               : GMS_OK;
}

void gms__windows_retire(gms_pool *p, gms_block *b, void *stream)
{
    gms_windows *ws = b->win;
    if (!ws)
        return;
    gms_backend *be = p->rt->backend;
    if (device_after(be, ws, stream, true) && be->ops->order_after)
        be->ops->order_after(be, NULL, 1); /* no order by event: wait for the device */
    while (ws->head) /* none: every holder ended or forgot its windows */
        window_unlink(p, ws, ws->head);
    if (be->ops->event_destroy) {
        if (ws->write_ev)
            be->ops->event_destroy(be, ws->write_ev);
        for (unsigned i = 0; i < READ_EVENTS; i++)
            if (ws->reads[i].ev)
                be->ops->event_destroy(be, ws->reads[i].ev);
    }
    free(ws);
    b->win = NULL;
}
