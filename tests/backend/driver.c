/*
 * driver.c: the one wrapper of every GPU driver call (src/backend/vmm/
 * driver.h), without a GPU: over the host-memory fake driver of
 * fake_driver.h.
 *
 *   - gms__drv_check counts every call per kind and every failure; a
 *     failure notes "<driver>: <call> (<detail>): <error name>: <error
 *     text> (<result type> <code>)" and maps the code to an errno value;
 *     a success notes nothing; an unknown code still says something;
 *   - through a runtime on the virtual-memory backend over the fake
 *     driver: a driver call that fails under gms_alloc (a map, then the
 *     scrub kernel's launch) gives gms_error_last() the driver's name of
 *     the call, its error name and its text, and the call is counted; the
 *     next unrelated failure does not repeat that text, nor does one after
 *     a runtime open that found no GPU driver; a map of several extents
 *     whose second fails gives the first back;
 *   - with `timed`, each call's time is summed per kind and dumped.
 */
#include "test.h"
#include "backend/fake_driver.h"

static void test_wrapper(void)
{
    gms__backend_why_clear();
    unsigned long long calls = fake_calls(GMS_DRV_mem_map), fails = fake_fails(GMS_DRV_mem_map);
    CHECK(gms__drv_check(&fake_drv, GMS_DRV_mem_map, NULL, 0) == 0);
    CHECK(fake_calls(GMS_DRV_mem_map) == calls + 1 && fake_fails(GMS_DRV_mem_map) == fails);
    CHECK(gms__backend_why()[0] == 0);

    CHECK(gms__drv_check(&fake_drv, GMS_DRV_mem_map, "view", FAKE_ERROR_REFUSED) == EIO);
    CHECK(fake_calls(GMS_DRV_mem_map) == calls + 2 && fake_fails(GMS_DRV_mem_map) == fails + 1);
    printf("noted: %s\n", gms__backend_why());
    CHECK(strcmp(gms__backend_why(), "fake: fakeMemMap (view): FAKE_ERROR_REFUSED: the fake "
                                     "device refused the call (fakeResult 700)") == 0);
    CHECK(gms__drv_check(&fake_drv, GMS_DRV_mem_create, NULL, FAKE_ERROR_OUT_OF_MEMORY) == ENOMEM);
    CHECK(strstr(gms__backend_why(), "fakeMemCreate: FAKE_ERROR_OUT_OF_MEMORY") != NULL);
    /* A code the driver has no name for; a setup call, named by its detail. */
    CHECK(gms__drv_check(&fake_drv, GMS_DRV_mem_map, NULL, 12345) == EIO);
    CHECK(strstr(gms__backend_why(), "unknown error") && strstr(gms__backend_why(), "12345"));
    CHECK(gms__drv_check(&fake_drv, GMS_DRV_setup, "fakeInit", FAKE_ERROR_REFUSED) == EIO);
    CHECK(strncmp(gms__backend_why(), "fake: fakeInit: FAKE_ERROR_REFUSED", 34) == 0);
    CHECK(fake_fails(GMS_DRV_setup) >= 1);
    /* A failure that is ignored is counted, and notes nothing. */
    gms__backend_why_clear();
    CHECK(gms__drv_quiet(&fake_drv, GMS_DRV_mem_unmap, FAKE_ERROR_REFUSED) == FAKE_ERROR_REFUSED);
    CHECK(gms__backend_why()[0] == 0 && fake_fails(GMS_DRV_mem_unmap) >= 1);
    CHECK(strcmp(gms__drv_kind_name(GMS_DRV_set_access), "set_access") == 0);
    CHECK(strcmp(gms__drv_kind_name(GMS_DRV_setup), "setup") == 0);
}

/* The runtime's backend, whatever it opened: the fake one instead. */
static int use_fake(gms_backend *inner, gms_backend **out)
{
    inner->ops->destroy(inner);
    return fake_vmm_create(out);
}

static gms_context *open_ctx(gms_runtime **rt, int safety)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.safety = safety;
    *rt = NULL;
    CHECK_OK(gms_runtime_open(rt, &o));
    if (!*rt)
        return NULL;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "t";
    d.user = "driver-test";
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, *rt, &d));
    return ctx;
}

static void test_through_runtime(void)
{
    gms__backend_wrap = use_fake;
    fake_kernels = 0;
    gms_runtime *rt;
    gms_context *ctx = open_ctx(&rt, GMS_SAFETY_OFF);
    if (ctx) {
        unsigned long long maps = fake_fails(GMS_DRV_mem_map);
        fake_fail(GMS_DRV_mem_map, FAKE_ERROR_REFUSED);
        gms_buf b;
        CHECK_RC(gms_alloc(ctx, 4096, 0, &b), GMS_E_BACKEND);
        printf("failed map: %s\n", gms_error_last());
        CHECK(strstr(gms_error_last(), "fakeMemMap") != NULL);
        CHECK(strstr(gms_error_last(), "FAKE_ERROR_REFUSED") != NULL);
        CHECK(strstr(gms_error_last(), "the fake device refused the call") != NULL);
        CHECK(fake_fails(GMS_DRV_mem_map) == maps + 1);
        fake_fail(-1, 0);
        CHECK_OK(gms_alloc(ctx, 4096, 0, &b));
        /* A later failure of another kind carries no stale driver text. */
        CHECK_RC(gms_write(ctx, b, 4000, "0123456789abcdef0123456789", 200), GMS_E_OUT_OF_BOUNDS);
        CHECK(strstr(gms_error_last(), "fake") == NULL);
        CHECK_OK(gms_free(ctx, b));
        /* A run of granules maps as several extents (a device allocation
         * each): when a later one fails, those made already go back, and
         * nothing is counted as held. */
        gms_stats st;
        CHECK_OK(gms_trim(rt));
        fake_fail(GMS_DRV_mem_create, FAKE_ERROR_OUT_OF_MEMORY);
        fake_fail_skip = 1;
        unsigned long long made = fake_calls(GMS_DRV_mem_create);
        CHECK_RC(gms_alloc(ctx, 80ull << 20, 0, &b), GMS_E_NO_MEMORY); /* 40 granules; the device full */
        CHECK(fake_calls(GMS_DRV_mem_create) >= made + 2);
        fake_fail(-1, 0);
        CHECK_OK(gms_stats_get(rt, &st));
        CHECK(st.held_bytes == 0);
        CHECK_OK(gms_alloc(ctx, 80ull << 20, GMS_ALLOC_ZERO, &b));
        CHECK_OK(gms_verify(rt, NULL));
        CHECK_OK(gms_free(ctx, b));
        gms_context_close(ctx);
    }
    gms_runtime_close(rt);

    /* Safety on: the allocation poisons with the scrub kernel, whose
     * launch the fake driver refuses. */
    fake_kernels = 1;
    ctx = open_ctx(&rt, GMS_SAFETY_ON);
    if (ctx) {
        unsigned long long launches = fake_calls(GMS_DRV_launch_cooperative);
        gms_buf b;
        int rc = gms_alloc(ctx, 4096, 0, &b);
        CHECK(rc == GMS_E_BACKEND);
        printf("failed launch: %s\n", gms_error_last());
        CHECK(strstr(gms_error_last(), "fakeLaunchCooperativeKernel (scrub)") != NULL);
        CHECK(strstr(gms_error_last(), "FAKE_ERROR_REFUSED: the fake device refused the call") !=
              NULL);
        CHECK(fake_calls(GMS_DRV_launch_cooperative) > launches);
        if (rc == GMS_OK)
            gms_free(ctx, b);
        gms_context_close(ctx);
    }
    gms_runtime_close(rt);
    fake_kernels = 0;
    gms__backend_wrap = NULL;

    char dump[4096] = "";
    FILE *f = fmemopen(dump, sizeof dump - 1, "w");
    if (f) {
        gms__drv_dump(&fake_drv, f);
        fclose(f);
    }
    printf("%s", dump);
    CHECK(strstr(dump, "fake mem_map") != NULL && strstr(dump, "fakeMemMap") != NULL);
}

/* Choosing a backend asks the GPU drivers, whose absence is noted: no
 * later message may carry that note. */
static void test_no_stale_note(void)
{
    gms__backend_note("stale note");
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT; /* auto */
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK(gms__backend_why()[0] == 0);
    gms_runtime_close(rt);
    o.backend = GMS_BACKEND_HIP; /* refused here, or opened on an AMD GPU */
    if (gms_runtime_open(&rt, &o) == GMS_OK)
        gms_runtime_close(rt);
    CHECK(gms__backend_why()[0] == 0);
}

static void reserve_and_free(void)
{
    uint64_t va = 0;
    CHECK(GMS_DRV(&fake_drv, va_reserve, NULL, NULL, &va, 1ull << 20, 1ull << 20) == 0);
    CHECK(GMS_DRV_QUIET(&fake_drv, va_free, NULL, va, 1ull << 20) == 0);
}

/* With `timed` (GMS_DRIVER_STATS), each call's time is added to its kind
 * and the dump says it; untimed, calls are counted only. */
static void test_timing(void)
{
    fake_drv.timed = true;
    unsigned long long before = atomic_load(&fake_drv.ns[GMS_DRV_va_reserve]);
    reserve_and_free();
    CHECK(atomic_load(&fake_drv.ns[GMS_DRV_va_reserve]) > before);
    char dump[4096] = "";
    FILE *f = fmemopen(dump, sizeof dump - 1, "w");
    if (f) {
        gms__drv_dump(&fake_drv, f);
        fclose(f);
    }
    CHECK(strstr(dump, "us/call") != NULL);
    fake_drv.timed = false;
    before = atomic_load(&fake_drv.ns[GMS_DRV_va_reserve]);
    reserve_and_free();
    CHECK(atomic_load(&fake_drv.ns[GMS_DRV_va_reserve]) == before);
}

int main(void)
{
    test_wrapper();
    test_timing();
    test_through_runtime();
    test_no_stale_note();
    return test_done();
}
