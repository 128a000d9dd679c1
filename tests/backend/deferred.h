/*
 * deferred.h: a "deferred" backend for tests on a machine with no GPU. It
 * wraps another backend (the host's) and plays a device with streams: the
 * safety work queued with scrub_async runs only when the test says the
 * device got there (device_run), or at quiesce, so what a GPU does
 * asynchronously happens here step by step. Used by
 * tests/core/threads_stream_order.c, and held to the backend contract by
 * tests/backend/conformance.c like the real backends.
 */
#ifndef GMS_TEST_DEFERRED_H
#define GMS_TEST_DEFERRED_H

#include "backend/backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    struct job *next;
    uint64_t ticket;
    void *stream;
    size_t n;
    bool queued; /* reserved until then */
    bool ran;
    bool failed;  /* scrub_async refused it: counts as run, its collect fails */
    bool reports; /* has check ranges or verified fills: collected */
    gms_scrub_item items[GMS_SCRUB_ASYNC_MAX];
    uint64_t pattern, seed;
} job;

typedef struct deferred {
    gms_backend base; /* first */
    gms_backend_ops ops;
    gms_backend *inner;
    pthread_mutex_t lock;
    job *jobs, **tail; /* in ticket order */
    uint64_t next_ticket;
    unsigned waits;    /* quiesce, or order_after with wait */
    unsigned launches; /* batches queued with scrub_async */
    uint64_t checked;  /* bytes of their check ranges */
} deferred;

static deferred *the; /* the last one made: one at a time in a test */

static int d_ticket_reserve(gms_backend *be, uint64_t *ticket)
{
    deferred *d = (deferred *)be;
    job *j = calloc(1, sizeof *j);
    if (!j)
        return ENOMEM;
    pthread_mutex_lock(&d->lock);
    j->ticket = *ticket = d->next_ticket++;
    *d->tail = j;
    d->tail = &j->next;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static int d_scrub_async(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                         uint64_t seed, void *stream, uint64_t ticket)
{
    deferred *d = (deferred *)be;
    pthread_mutex_lock(&d->lock);
    job *j = d->jobs;
    while (j && j->ticket != ticket)
        j = j->next;
    int err = !j || j->queued ? EINVAL : 0;
    if (!err && n > GMS_SCRUB_ASYNC_MAX) {
        /* backend.h: a batch that fails counts as run; its collect fails. */
        j->queued = j->ran = j->failed = j->reports = true;
        err = EINVAL;
    } else if (!err) {
        if (n)
            memcpy(j->items, items, n * sizeof *items);
        j->n = n;
        j->stream = stream;
        j->pattern = pattern;
        j->seed = seed;
        j->queued = true;
        d->launches++;
        for (size_t i = 0; i < n; i++) {
            j->reports |= items[i].check_lo[0] < items[i].check_hi[0] ||
                          items[i].check_lo[1] < items[i].check_hi[1] || items[i].verify;
            for (int r = 0; r < 2; r++)
                if (items[i].check_lo[r] < items[i].check_hi[r])
                    d->checked += items[i].check_hi[r] - items[i].check_lo[r];
        }
    }
    pthread_mutex_unlock(&d->lock);
    return err;
}

/* Runs one batch on the inner backend: the items to be zeroed through its
 * fill (its scrub knows only the pattern), the rest through its scrub. */
static void d_run_job(deferred *d, job *j)
{
    gms_backend *in = d->inner;
    gms_scrub_item rest[GMS_SCRUB_ASYNC_MAX];
    for (size_t i = 0; i < j->n; i++) {
        rest[i] = j->items[i];
        if (!j->items[i].zero)
            continue;
        for (int r = 0; r < 2; r++) {
            uint64_t lo = rest[i].fill_lo[r], hi = rest[i].fill_hi[r];
            if (lo < hi)
                in->ops->fill(in, lo, 0, hi - lo);
            rest[i].fill_lo[r] = rest[i].fill_hi[r] = 0;
        }
    }
    in->ops->scrub(in, rest, j->n, j->pattern, j->seed);
    for (size_t i = 0; i < j->n; i++) {
        j->items[i].bad = rest[i].bad;
        j->items[i].verify_bad = rest[i].verify_bad;
    }
    j->ran = true;
}

/* The device reaches the end of what is queued on stream (all: every
 * stream), in order. */
static inline void device_run(deferred *d, void *stream, bool all)
{
    pthread_mutex_lock(&d->lock);
    for (job *j = d->jobs; j; j = j->next)
        if (j->queued && !j->ran && (all || j->stream == stream))
            d_run_job(d, j);
    /* Batches with nothing to report are forgotten once run: nobody
     * collects them. */
    for (job **pp = &d->jobs; *pp;) {
        job *j = *pp;
        if (j->ran && !j->reports) {
            *pp = j->next;
            free(j);
        } else {
            pp = &j->next;
        }
    }
    d->tail = &d->jobs;
    while (*d->tail)
        d->tail = &(*d->tail)->next;
    pthread_mutex_unlock(&d->lock);
}

/* Whether a reserved batch is still being gathered (not yet queued). */
static inline bool gathering(deferred *d)
{
    pthread_mutex_lock(&d->lock);
    bool any = false;
    for (job *j = d->jobs; j && !any; j = j->next)
        any = !j->queued;
    pthread_mutex_unlock(&d->lock);
    return any;
}

static int d_collect(gms_backend *be, uint64_t ticket, gms_scrub_item *items, size_t n)
{
    deferred *d = (deferred *)be;
    pthread_mutex_lock(&d->lock);
    job **pp = &d->jobs;
    while (*pp && (*pp)->ticket != ticket)
        pp = &(*pp)->next;
    job *j = *pp;
    int rc = !j ? EIO : !j->ran ? EAGAIN : j->failed ? EIO : 0;
    if (j && j->ran && !j->reports)
        rc = EIO; /* never collected (backend.h) */
    if (rc == 0)
        for (size_t i = 0; i < n; i++) {
            items[i].bad = j->items[i].bad;
            items[i].verify_bad = j->items[i].verify_bad;
        }
    if (j && j->ran) { /* collected once: forgotten */
        *pp = j->next;
        if (d->tail == &j->next)
            d->tail = pp;
        free(j);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static uint64_t d_done_upto(gms_backend *be)
{
    deferred *d = (deferred *)be;
    pthread_mutex_lock(&d->lock);
    uint64_t done = d->next_ticket - 1;
    for (job *j = d->jobs; j; j = j->next)
        if (!j->ran) {
            done = j->ticket - 1;
            break;
        }
    pthread_mutex_unlock(&d->lock);
    return done;
}

static int d_ticket_done(gms_backend *be, uint64_t ticket)
{
    deferred *d = (deferred *)be;
    pthread_mutex_lock(&d->lock);
    job *j = d->jobs;
    while (j && j->ticket != ticket)
        j = j->next;
    int done = j ? j->ran : ticket < d->next_ticket; /* gone: collected */
    pthread_mutex_unlock(&d->lock);
    return done;
}

static int d_quiesce(gms_backend *be)
{
    deferred *d = (deferred *)be;
    device_run(d, NULL, true);
    pthread_mutex_lock(&d->lock);
    d->waits++;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static int d_order_after(gms_backend *be, void *stream, int wait)
{
    deferred *d = (deferred *)be;
    device_run(d, stream, false); /* data movement comes after it */
    pthread_mutex_lock(&d->lock);
    d->waits += wait != 0;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static void d_destroy(gms_backend *be)
{
    deferred *d = (deferred *)be;
    for (job *j = d->jobs, *n; j; j = n) {
        n = j->next;
        free(j);
    }
    d->inner->ops->destroy(d->inner);
    pthread_mutex_destroy(&d->lock);
    if (the == d)
        the = NULL;
    free(d);
}

/* Wraps inner (taking ownership of it); a gms__backend_wrap. */
static inline int deferred_wrap(gms_backend *inner, gms_backend **out)
{
    deferred *d = calloc(1, sizeof *d);
    if (!d)
        return ENOMEM;
    d->base = *inner;
    d->ops = *inner->ops;
    d->ops.name = "deferred";
    d->ops.ticket_reserve = d_ticket_reserve;
    d->ops.scrub_async = d_scrub_async;
    d->ops.scrub_collect = d_collect;
    d->ops.done_upto = d_done_upto;
    d->ops.ticket_done = d_ticket_done;
    d->ops.quiesce = d_quiesce;
    d->ops.order_after = d_order_after;
    d->ops.destroy = d_destroy;
    d->base.ops = &d->ops;
    d->inner = inner;
    d->tail = &d->jobs;
    d->next_ticket = 1;
    pthread_mutex_init(&d->lock, NULL);
    the = d;
    *out = &d->base;
    return 0;
}

/* How many times something waited for the device. */
static inline unsigned waits(void)
{
    pthread_mutex_lock(&the->lock);
    unsigned w = the->waits;
    pthread_mutex_unlock(&the->lock);
    return w;
}

#endif
