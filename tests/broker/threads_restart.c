/*
 * threads_restart.c: gmsd killed and started again (docs/broker.md,
 * "Restarts") while the threads of one client process lease and release
 * through the broker backend. Every request the threads make succeeds:
 * the first to find gmsd gone reconnects and resumes the session under
 * the socket's lock, the others wait on that lock and go on. Every byte
 * written is read back, and closing the runtime leaves the tenant empty
 * in the last gmsd. Run under TSan too.
 */
#include "util.h"

#include <stdatomic.h>

#define NTHREADS 4
#define RESTARTS 3

static broker b;
static gms_runtime *rt;
static atomic_int running = 1;
static atomic_long rounds;

static void *worker(void *arg)
{
    long id = (long)arg, bad = 0;
    gms_context *ctx = thread_context(rt, id);
    if (!ctx)
        return (void *)1;
    for (uint64_t r = 0; atomic_load(&running) && !bad; r++) {
        bad += lease_round(ctx, (uint64_t)id << 32 | r, 1536 * 1024, 2);
        if (r % 8 == 0)
            gms_trim(rt); /* gives chunks back: releases with leases */
        atomic_fetch_add(&rounds, 1);
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
        for (int k = 0; k < RESTARTS; k++) {
            long before = atomic_load(&rounds);
            while (atomic_load(&rounds) < before + 20)
                usleep(1000);
            CHECK(broker_end(&b, k % 2 ? SIGTERM : SIGKILL) >= 0);
            usleep(50 * 1000); /* the threads find it gone */
            broker_exec(&b);
        }
        long before = atomic_load(&rounds);
        while (atomic_load(&rounds) < before + 20)
            usleep(1000);
        atomic_store(&running, 0);
        threads_join_clean(t, NTHREADS);
        gms_runtime_close(rt);
    }
    CHECK(usage_empties(b.sock));
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
