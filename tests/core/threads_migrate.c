/*
 * threads_migrate.c: migrations while other threads work (TSan runs it):
 * one thread moves pool A between two simulated devices; another reads and
 * writes A's buffer through the checked calls (serialised with the moves
 * by the pool's lock, so every read sees its last write); a third
 * allocates, fills and frees in pool B; a fourth asks gms_device_pick.
 */
#include "test.h"
#include "gms/migrate.h"
#include "gms/testing.h"

#include <pthread.h>

#define ROUNDS 40
#define KiB ((uint64_t)1 << 10)

static gms_runtime *rt;
static gms_context *ca, *cb;
static gms_buf ha;
static int _Atomic stop;
static int _Atomic errors;

static void *mover(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++)
        if (gms_pool_migrate(ca, (i + 1) % 2) != GMS_OK)
            errors++;
    stop = 1;
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    uint32_t v = 0;
    while (!stop) {
        v++;
        uint32_t got = 0;
        if (gms_write(ca, ha, 4 * KiB, &v, sizeof v) != GMS_OK ||
            gms_read(ca, ha, 4 * KiB, &got, sizeof got) != GMS_OK || got != v)
            errors++;
    }
    return NULL;
}

static void *other_pool(void *arg)
{
    (void)arg;
    while (!stop) {
        gms_buf h;
        uint8_t x = 0;
        if (gms_alloc(cb, 200 * KiB, 0, &h) != GMS_OK || gms_fill(cb, h, 0, 7, 200 * KiB) != GMS_OK ||
            gms_read(cb, h, 199 * KiB, &x, 1) != GMS_OK || x != 7 || gms_free(cb, h) != GMS_OK)
            errors++;
    }
    return NULL;
}

static void *picker(void *arg)
{
    (void)arg;
    while (!stop) {
        int d = -1;
        if (gms_device_pick(rt, 1, &d) != GMS_OK || d < 0 || d > 1)
            errors++;
    }
    return NULL;
}

static gms_context *open_ctx(const char *tenant)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "u";
    gms_context *c = NULL;
    CHECK_OK(gms_context_open(&c, rt, &d));
    return c;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 * KiB;
    o.chunk_bytes = 1024 * KiB;
    CHECK_OK(gms_testing_runtime_open(&rt, &o, NULL));
    uint64_t free_bytes[2] = {1ull << 34, 1ull << 33};
    uint32_t busy[2] = {0, 0};
    CHECK_OK(gms_testing_devices(rt, 2, free_bytes, busy));
    ca = open_ctx("a");
    cb = open_ctx("b");
    CHECK_OK(gms_alloc(ca, 300 * KiB, 0, &ha));
    CHECK_OK(gms_fill(ca, ha, 0, 0x3c, 300 * KiB));
    pthread_t t[4];
    void *(*fn[4])(void *) = {mover, reader, other_pool, picker};
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, fn[i], NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(errors == 0);
    int d = -1;
    CHECK_OK(gms_pool_device(ca, &d));
    CHECK(d == ROUNDS % 2);
    uint8_t x = 0;
    CHECK_OK(gms_read(ca, ha, 300 * KiB - 1, &x, 1));
    CHECK(x == 0x3c);
    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK_OK(gms_free(ca, ha));
    gms_context_close(ca);
    gms_context_close(cb);
    gms_runtime_close(rt);
    return test_done();
}
