/*
 * threads_clients.c: one client process whose threads lease and release
 * through the broker backend at once (each thread its own tenant name, so
 * its own pool: reserves and releases on different chunks meet only on
 * the backend's socket lock). Run under TSan too. Every byte written is
 * read back, and closing the runtime leaves the broker's tenant empty.
 */
#include "util.h"


#define NTHREADS 4
#define ROUNDS 200

static broker b;
static gms_runtime *rt;

static void *worker(void *arg)
{
    long id = (long)arg, bad = 0;
    gms_context *ctx = thread_context(rt, id);
    if (!ctx)
        return (void *)1;
    for (int r = 0; r < ROUNDS; r++) {
        bad += lease_round(ctx, (uint64_t)id << 32 | (uint64_t)r, 1536 * 1024, 2);
        if (r % 16 == 0)
            gms_trim(rt); /* gives chunks back: releases at once with leases */
    }
    gms_context_close(ctx);
    return (void *)bad;
}

int main(void)
{
    broker_start_self(&b);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (rt) {
        pthread_t t[NTHREADS];
        for (long i = 0; i < NTHREADS; i++)
            CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
        threads_join_clean(t, NTHREADS);
        gms_runtime_close(rt);
    }
    CHECK(usage_empties(b.sock));
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
