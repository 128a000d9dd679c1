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

#include <pthread.h>
#include <stdatomic.h>

#define NTHREADS 4
#define RESTARTS 3

static broker b;
static gms_runtime *rt;
static atomic_int running = 1;
static atomic_long rounds;

static void *worker(void *arg)
{
    long id = (long)arg;
    char user[16];
    snprintf(user, sizeof user, "u%ld", id);
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "self"; /* gmsd's name for this uid */
    d.user = user;
    gms_context *ctx = NULL;
    long bad = 0;
    if (gms_context_open(&ctx, rt, &d) != GMS_OK)
        return (void *)1;
    for (uint64_t r = 0; atomic_load(&running); r++) {
        gms_buf buf[2];
        uint64_t word = (uint64_t)id << 32 | r, back = 0;
        for (int k = 0; k < 2; k++) {
            int rc = gms_alloc(ctx, 1536 * 1024, 0, &buf[k]); /* a lease each */
            if (rc) {
                fprintf(stderr, "thread %ld: %s\n", id, gms_error_last());
                return (void *)1;
            }
            bad += gms_write(ctx, buf[k], 1 << 20, &word, sizeof word) != GMS_OK;
        }
        for (int k = 0; k < 2; k++) {
            bad += gms_read(ctx, buf[k], 1 << 20, &back, sizeof back) != GMS_OK || back != word;
            bad += gms_free(ctx, buf[k]) != GMS_OK;
        }
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
        for (int i = 0; i < NTHREADS; i++) {
            void *bad = (void *)1;
            pthread_join(t[i], &bad);
            CHECK(bad == NULL);
        }
        gms_runtime_close(rt);
    }
    uint64_t bytes = 1, leases = 1;
    double t0 = now_s();
    while (now_s() - t0 < 2 && raw_usage(b.sock, &bytes, &leases) == 0 && leases)
        usleep(1000);
    CHECK(bytes == 0 && leases == 0);
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
