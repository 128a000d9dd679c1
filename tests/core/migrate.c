/*
 * migrate.c: gms_pool_migrate on the host backend with two simulated
 * devices (docs/migration.md). A pool of two chunks, with an immutable
 * share whose raw pointer is a read-only view, moves to device 1 and back:
 * every handle and raw pointer (the view's too) stays the same and reads
 * the same data; the pool keeps allocating. Then the failing-backend
 * sweep: for every fallible call the migration makes, a run in which that
 * call fails must leave the pool whole on device 0 (data checked through
 * the same pointers) or, where the failure was absorbed (the wipe of the
 * old memory), moved with its data; a second migration then succeeds.
 */
#include "test.h"
#include "gms/migrate.h"
#include "gms/testing.h"

/* For the failpoint's call counter. */
#include "core/internal.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define NB 4

static const size_t sizes[NB] = {1000, 300 * KiB, 3 * MiB + 7, 256 * KiB};

static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    (void)msg;
}

typedef struct world {
    gms_runtime *rt;
    gms_context *ctx;
    gms_buf h[NB];
    uint8_t *ptr[NB];
    const uint8_t *view; /* buffer 3's raw pointer once immutably shared */
} world;

static uint8_t byte_at(int b, size_t i)
{
    return (uint8_t)(b * 31 + i * 7 + (i >> 9));
}

/* Whether every buffer holds its pattern, read through the raw pointers,
 * the view and gms_read. */
static int data_ok(world *w)
{
    int ok = 1;
    for (int b = 0; b < NB; b++) {
        const uint8_t *p = b == 3 ? w->view : w->ptr[b];
        for (size_t i = 0; i < sizes[b] && ok; i++)
            ok &= p[i] == byte_at(b, i);
        uint8_t tail[64];
        ok = ok && gms_read(w->ctx, w->h[b], sizes[b] - sizeof tail, tail, sizeof tail) == GMS_OK;
        for (size_t i = 0; i < sizeof tail && ok; i++)
            ok &= tail[i] == byte_at(b, sizes[b] - sizeof tail + i);
    }
    return ok;
}

/* Whether each handle still gives the same raw pointer. */
static int pointers_same(world *w)
{
    int ok = 1;
    for (int b = 0; b < NB; b++) {
        void *p = NULL;
        ok &= gms_buf_ptr(w->ctx, w->h[b], &p) == GMS_OK &&
              p == (b == 3 ? (void *)(uintptr_t)w->view : (void *)w->ptr[b]);
    }
    return ok;
}

/* Opens a runtime (its Nth fallible call failing; 0: none) with two
 * simulated devices and fills a pool: a setup that must not fail. */
static void world_open(world *w, uint64_t fail_nth)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 * KiB;
    o.chunk_bytes = 1 * MiB;
    o.log = quiet_log;
    gms_testing_options t = {.fail_nth_call = fail_nth};
    CHECK_OK(gms_testing_runtime_open(&w->rt, &o, &t));
    uint64_t free_bytes[2] = {1ull << 34, 1ull << 34};
    uint32_t busy[2] = {0, 0};
    CHECK_OK(gms_testing_devices(w->rt, 2, free_bytes, busy));
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = "alpha";
    d.user = "mover";
    CHECK_OK(gms_context_open(&w->ctx, w->rt, &d));
    for (int b = 0; b < NB; b++) {
        CHECK_OK(gms_alloc(w->ctx, sizes[b], b == 3 ? GMS_ALLOC_PAGES : 0, &w->h[b]));
        void *p = NULL;
        CHECK_OK(gms_buf_ptr(w->ctx, w->h[b], &p));
        w->ptr[b] = p;
        for (size_t i = 0; i < sizes[b]; i++)
            w->ptr[b][i] = byte_at(b, i);
    }
    gms_share_grant g = {.tenant = NULL, .user = NULL, .language = GMS_ANY_LANGUAGE,
                         .mode = GMS_ACCESS_READ};
    gms_share_desc sd;
    gms_share_desc_init(&sd);
    sd.grants = &g;
    sd.ngrants = 1;
    sd.immutable = 1;
    gms_share_id id;
    CHECK_OK(gms_share(w->ctx, w->h[3], &sd, &id));
    void *v = NULL;
    CHECK_OK(gms_buf_ptr(w->ctx, w->h[3], &v));
    CHECK(v != w->ptr[3]); /* a read-only view of its own */
    w->view = v;
}

static void world_close(world *w)
{
    for (int b = 0; b < NB; b++)
        CHECK_OK(gms_free(w->ctx, w->h[b]));
    gms_context_close(w->ctx);
    gms_runtime_close(w->rt);
}

static int device_of(world *w)
{
    int d = -1;
    CHECK_OK(gms_pool_device(w->ctx, &d));
    return d;
}

static void verify_ok(gms_runtime *rt)
{
    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.violations == 0);
}

static void test_round_trip(void)
{
    world w;
    world_open(&w, 0);
    CHECK(device_of(&w) == 0);
    CHECK(data_ok(&w));
    CHECK_OK(gms_pool_migrate(w.ctx, 1));
    CHECK(device_of(&w) == 1);
    CHECK(pointers_same(&w));
    CHECK(data_ok(&w));
    /* The moved memory is the pool's: writes through the raw pointer show
     * in the checked calls, and the pool keeps allocating there. */
    w.ptr[0][5] = 0xab;
    uint8_t x = 0;
    CHECK_OK(gms_read(w.ctx, w.h[0], 5, &x, 1));
    CHECK(x == 0xab);
    w.ptr[0][5] = byte_at(0, 5);
    gms_buf extra;
    CHECK_OK(gms_alloc(w.ctx, 2 * MiB, 0, &extra)); /* a new chunk, on device 1 */
    CHECK_OK(gms_fill(w.ctx, extra, 0, 0x5a, 2 * MiB));
    CHECK_OK(gms_pool_migrate(w.ctx, 0));
    CHECK(device_of(&w) == 0);
    CHECK(pointers_same(&w));
    CHECK(data_ok(&w));
    CHECK_OK(gms_read(w.ctx, extra, 2 * MiB - 1, &x, 1));
    CHECK(x == 0x5a);
    CHECK_OK(gms_free(w.ctx, extra));
    /* The same device: a fresh placement there. */
    CHECK_OK(gms_pool_migrate(w.ctx, 0));
    CHECK(data_ok(&w));
    verify_ok(w.rt);

    /* Wrong input changes nothing. */
    CHECK_RC(gms_pool_migrate(NULL, 1), GMS_E_INVALID_ARG);
    CHECK_RC(gms_pool_migrate(w.ctx, 2), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "device 2 does not exist") != NULL);
    CHECK_RC(gms_pool_migrate(w.ctx, -1), GMS_E_INVALID_ARG);
    CHECK_RC(gms_pool_device(w.ctx, NULL), GMS_E_INVALID_ARG);
    CHECK(device_of(&w) == 0);
    CHECK(data_ok(&w));
    world_close(&w);
}

/* Without simulated devices the host has one: migration within it. */
static void test_one_device(void)
{
    world w;
    world_open(&w, 0);
    CHECK_OK(gms_testing_devices(w.rt, 0, NULL, NULL));
    CHECK_RC(gms_pool_migrate(w.ctx, 1), GMS_E_INVALID_ARG);
    CHECK_OK(gms_pool_migrate(w.ctx, 0));
    CHECK(pointers_same(&w));
    CHECK(data_ok(&w));
    world_close(&w);
}

static void test_failure_sweep(void)
{
    /* A clean run that counts (a failpoint never reached): the calls the
     * setup makes, then those of the move. */
    world w;
    world_open(&w, UINT64_MAX);
    uint64_t before = atomic_load(&w.rt->failpoint.calls);
    CHECK_OK(gms_pool_migrate(w.ctx, 1));
    uint64_t during = atomic_load(&w.rt->failpoint.calls) - before;
    world_close(&w);
    CHECK(during >= 6); /* plans, creates, copies, remaps, wipes */
    int failed = 0, absorbed = 0;
    for (uint64_t k = 1; k <= during; k++) {
        world_open(&w, before + k);
        CHECK(atomic_load(&w.rt->failpoint.calls) == before); /* the setup is the same */
        int rc = gms_pool_migrate(w.ctx, 1);
        if (rc != GMS_OK) {
            failed++;
            CHECK(rc == GMS_E_NO_MEMORY || rc == GMS_E_BACKEND);
            CHECK(gms_error_last()[0] != 0);
            CHECK(device_of(&w) == 0);
        } else {
            absorbed++; /* the wipe of the old memory, or the cache's trim */
            CHECK(device_of(&w) == 1);
        }
        if (!pointers_same(&w) || !data_ok(&w))
            fprintf(stderr, "call %" PRIu64 " of the migration failing broke the pool\n", k);
        CHECK(pointers_same(&w));
        CHECK(data_ok(&w));
        verify_ok(w.rt);
        /* The pool still moves, and allocates. */
        CHECK_OK(gms_pool_migrate(w.ctx, rc == GMS_OK ? 0 : 1));
        CHECK(pointers_same(&w));
        CHECK(data_ok(&w));
        gms_buf extra;
        CHECK_OK(gms_alloc(w.ctx, 100, 0, &extra));
        CHECK_OK(gms_free(w.ctx, extra));
        world_close(&w);
    }
    printf("migration sweep: %" PRIu64 " failure points, %d failed cleanly, %d absorbed\n",
           during, failed, absorbed);
    CHECK(failed >= 4);
}

int main(void)
{
    test_round_trip();
    test_one_device();
    test_failure_sweep();
    return test_done();
}
