/*
 * threads_verifier.c: allocation threads (two sharing a pool, two on pools
 * of their own) write, read and free random buffers while the background
 * verifier walks everything every 5 ms and another thread calls gms_verify
 * and gms_stats: no false report, no race (run under TSan). At the end a
 * deliberate overflow of a live buffer is found by the verifier thread.
 */
#include "util.h"

#include <stdatomic.h>

#define THREADS 4
#define OPS 20000

static gms_runtime *rt;
static gms_context *ctxs[THREADS];
static atomic_int stop;
static atomic_int errors;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
    gms_buf live[16] = {0};
    uint8_t data[512], back[512];
    for (int i = 0; i < OPS; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        int k = (int)(s % 16);
        if (live[k]) {
            if (gms_read(ctxs[id], live[k], 0, back, 8) != GMS_OK || memcmp(back, data, 8) != 0 ||
                gms_free(ctxs[id], live[k]) != GMS_OK)
                atomic_fetch_add(&errors, 1);
            live[k] = 0;
        } else {
            size_t size = 8 + (size_t)(s >> 20) % 70000;
            memset(data, id + 1, sizeof data);
            if (gms_alloc(ctxs[id], size, 0, &live[k]) != GMS_OK ||
                gms_write(ctxs[id], live[k], 0, data, size < sizeof data ? size : sizeof data) != GMS_OK)
                atomic_fetch_add(&errors, 1);
        }
    }
    for (int k = 0; k < 16; k++)
        if (live[k] && gms_free(ctxs[id], live[k]) != GMS_OK)
            atomic_fetch_add(&errors, 1);
    return NULL;
}

static void *checker(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        gms_stats st;
        if (gms_verify(rt, NULL) != GMS_OK || gms_stats_get(rt, &st) != GMS_OK)
            atomic_fetch_add(&errors, 1);
        sleep_ms(2);
    }
    return NULL;
}

int main(void)
{
    gms_runtime_options o = safety_opts();
    o.verify_interval_ms = 5;
    rt = safety_open(&o);
    static const char *tenants[THREADS] = {"shared", "shared", "solo1", "solo2"};
    for (int i = 0; i < THREADS; i++)
        ctxs[i] = ctx_of(rt, tenants[i], "u", GMS_LEVEL_INTERNAL);
    pthread_t th[THREADS], ch;
    pthread_create(&ch, NULL, checker, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(ch, NULL);
    CHECK(atomic_load(&errors) == 0);
    CHECK(rec_count() == 0);
    CHECK_OK(gms_verify(rt, NULL));

    /* A real overflow: the verifier thread finds it. */
    gms_buf b = alloc_or_die(ctxs[0], 100);
    raw(ctxs[0], b)[100] ^= 1;
    for (int t = 0; t < 400 && rec_count() == 0; t++)
        sleep_ms(5);
    CHECK(rec_count() >= 1);
    pthread_mutex_lock(&rec.lock);
    CHECK(rec.e[0].kind == GMS_VIOLATION_OVERFLOW && rec.e[0].handle == b);
    pthread_mutex_unlock(&rec.lock);
    uint8_t x;
    CHECK_RC(gms_read(ctxs[0], b, 0, &x, 1), GMS_E_CORRUPTION);
    CHECK_OK(gms_free(ctxs[0], b));
    for (int i = 0; i < THREADS; i++)
        gms_context_close(ctxs[i]);
    gms_runtime_close(rt);
    return test_done();
}
