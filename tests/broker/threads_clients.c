/*
 * threads_clients.c: one client process whose threads lease and release
 * through the broker backend at once (each thread its own tenant name, so
 * its own pool: reserves and releases on different chunks meet only on
 * the backend's socket lock). Run under TSan too. Every byte written is
 * read back, and closing the runtime leaves the broker's tenant empty.
 */
#include "util.h"

#include <pthread.h>

#define NTHREADS 4
#define ROUNDS 200

static broker b;
static gms_runtime *rt;

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
    for (int r = 0; r < ROUNDS; r++) {
        gms_buf buf[2];
        uint64_t word = (uint64_t)id << 32 | (uint64_t)r, back = 0;
        for (int k = 0; k < 2; k++) {
            bad += gms_alloc(ctx, 1536 * 1024, 0, &buf[k]) != GMS_OK; /* a lease each */
            bad += gms_write(ctx, buf[k], 1 << 20, &word, sizeof word) != GMS_OK;
        }
        for (int k = 0; k < 2; k++) {
            bad += gms_read(ctx, buf[k], 1 << 20, &back, sizeof back) != GMS_OK || back != word;
            bad += gms_free(ctx, buf[k]) != GMS_OK;
        }
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
