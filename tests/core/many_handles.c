/*
 * many_handles.c: 16,000,000 live handles are possible in one context:
 * allocate 16M blocks of 256 bytes (no quota, default options), check the
 * last one works and all are distinct enough to be freed one by one, free
 * them all and verify. Under ASan or with GMS_TEST_QUICK set, 1,000,000.
 */
#include "test.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GMS_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#undef GMS_TEST_ASAN
#define GMS_TEST_ASAN 1
#endif
#ifndef GMS_TEST_ASAN
#define GMS_TEST_ASAN 0
#endif

int main(void)
{
    size_t n = 16000000;
    const char *quick = getenv("GMS_TEST_QUICK");
    if (GMS_TEST_ASAN || (quick && *quick)) {
        n = 1000000;
        printf("many_handles: %s build: 1,000,000 handles instead of 16,000,000\n",
               GMS_TEST_ASAN ? "ASan" : "GMS_TEST_QUICK");
    } else {
        printf("many_handles: 16,000,000 handles\n");
    }

    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    /* The handle table is under test, not the poison: without safety the
     * 4 GiB of buffers stay untouched pages, and the test fits small CI
     * machines (metadata only, about 3 GB). */
    o.safety = GMS_SAFETY_OFF;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = "many";
    d.user = "tester";
    gms_context *ctx = NULL;
    if (rt)
        CHECK_OK(gms_context_open(&ctx, rt, &d));
    gms_buf *h = calloc(n, sizeof *h);
    CHECK(h != NULL);
    if (!rt || !ctx || !h) {
        free(h);
        gms_context_close(ctx);
        gms_runtime_close(rt);
        return test_done();
    }

    size_t made = 0;
    int rc = GMS_OK;
    for (; made < n; made++) {
        rc = gms_alloc(ctx, 256, 0, &h[made]);
        if (rc != GMS_OK)
            break;
    }
    if (made < n)
        fprintf(stderr, "allocation %zu failed: %s: %s\n", made, gms_strerror(rc),
                gms_error_last());
    CHECK(made == n);

    if (made > 0) {
        gms_buf last = h[made - 1];
        CHECK(last != GMS_BUF_NULL);
        uint64_t v = 0x1122334455667788ull, back = 0;
        CHECK_OK(gms_write(ctx, last, 248, &v, sizeof v));
        CHECK_OK(gms_read(ctx, last, 248, &back, sizeof back));
        CHECK(back == v);
        CHECK_RC(gms_read(ctx, last, 249, &back, sizeof back), GMS_E_OUT_OF_BOUNDS);
        gms_buf_info info;
        CHECK_OK(gms_buf_info_get(ctx, last, &info));
        CHECK(info.size == 256);
        CHECK(info.block_size == 256); /* no redzone with safety off */
        /* The first still works too. */
        CHECK_OK(gms_write(ctx, h[0], 0, &v, sizeof v));
    }

    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.live_blocks == made);
    CHECK(st.live_bytes == (uint64_t)made * 256);

    size_t freed_bad = 0;
    for (size_t i = 0; i < made; i++)
        if (gms_free(ctx, h[i]) != GMS_OK)
            freed_bad++;
    CHECK(freed_bad == 0);
    /* A sample of them is now refused. */
    for (size_t i = 0; i < made; i += made / 97 + 1)
        CHECK_RC(gms_free(ctx, h[i]), GMS_E_INVALID_HANDLE);

    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.live_blocks == 0);
    CHECK(st.live_bytes == 0);
    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.live_handles == 0 && r.live_blocks == 0 && r.violations == 0);
    if (r.violations)
        fprintf(stderr, "verify: %s\n", r.first_violation);

    free(h);
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
