/*
 * background.c: the runtime's background threads. The verifier runs
 * gms_verify every verify_interval_ms; the collector, with a
 * stream-ordered backend, gathers the results of device work every
 * GMS_COLLECT_MS. Each thread takes no gms lock while it sleeps, and lets
 * go of its own lock before each run.
 */
#include "core/internal.h"
#include "safety/safety.h"

#include <stdlib.h>
#include <time.h>

/* A background thread that calls fn(rt) every ms milliseconds until it is
 * stopped: the verifier and the collector. */
typedef struct gms_ticker {
    gms_runtime *rt;
    void (*fn)(gms_runtime *rt);
    uint32_t ms;
    bool stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
} gms_ticker;

static void *ticker_main(void *arg)
{
    gms_ticker *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)t->ms * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&t->cond, &t->lock, &until);
        if (t->stop)
            break;
        pthread_mutex_unlock(&t->lock);
        t->fn(t->rt);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static int ticker_start(gms_runtime *rt, void (*fn)(gms_runtime *), uint32_t ms, const char *what,
                        gms_ticker **out)
{
    gms_ticker *t = calloc(1, sizeof *t);
    if (!t)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for the %s", what);
    t->rt = rt;
    t->fn = fn;
    t->ms = ms;
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int err = pthread_cond_init(&t->cond, &a);
    pthread_condattr_destroy(&a);
    if (err || pthread_mutex_init(&t->lock, NULL) != 0) {
        if (!err)
            pthread_cond_destroy(&t->cond);
        free(t);
        return gms__fail(GMS_E_NO_MEMORY, "cannot create the %s's condition variable", what);
    }
    if (pthread_create(&t->thread, NULL, ticker_main, t) != 0) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return gms__fail(GMS_E_NO_MEMORY, "cannot start the %s thread", what);
    }
    *out = t;
    return GMS_OK;
}

static void ticker_stop(gms_ticker **tp)
{
    gms_ticker *t = *tp;
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
    *tp = NULL;
}

static void verify_tick(gms_runtime *rt)
{
    gms_verify(rt, NULL); /* what it finds goes to the callbacks */
}

/* The collector's period: with the device's own time to run a batch, the
 * bound on how late a corruption the device found is reported
 * (docs/stream-ordered.md). */
#define GMS_COLLECT_MS 1

/* Gathers the results of every pool's device work that has run, and
 * delivers what they found, on the collector's thread. The pool list only
 * grows (under rt->lock) and lives as long as the runtime. */
static void collect_tick(gms_runtime *rt)
{
    pthread_mutex_lock(&rt->lock);
    gms_pool *p = rt->pools;
    pthread_mutex_unlock(&rt->lock);
    while (p) {
        /* pending: a racy peek; the lock is taken only when it may be set */
        if (atomic_load_explicit(&p->inflight, memory_order_relaxed) ||
            atomic_load_explicit(&p->pending_open, memory_order_relaxed)) {
            gms__pool_lock(p);
            gms__safety_collect(p, true);
            gms__pool_unlock(p);
            gms__violations_deliver(rt);
        }
        pthread_mutex_lock(&rt->lock);
        p = p->next;
        pthread_mutex_unlock(&rt->lock);
    }
}

int gms__background_start(gms_runtime *rt)
{
    int rc = GMS_OK;
    if ((rt->background.verify_interval_ms &&
         (rc = ticker_start(rt, verify_tick, rt->background.verify_interval_ms, "background verifier",
                            &rt->background.verifier)) != GMS_OK) ||
        (rt->backend->ops->scrub_async &&
         (rc = ticker_start(rt, collect_tick, GMS_COLLECT_MS, "collector", &rt->background.collector)) !=
             GMS_OK))
        ticker_stop(&rt->background.verifier);
    return rc;
}

void gms__background_stop(gms_runtime *rt)
{
    ticker_stop(&rt->background.verifier);
    ticker_stop(&rt->background.collector);
}
