/*
 * free_async.c: gms_free_async on the host backend, which has no streams:
 * it frees at once, like gms_free, whatever stream pointer is passed; the
 * handle dies, a second free is refused, and nothing leaks. (On a GPU,
 * tests/gpu/cuda.c checks the ordering after a stream's writes.)
 */
#include "test.h"

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "t";
    d.user = "u";
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    int token = 0;
    for (int i = 0; i < 100; i++) {
        gms_buf b;
        CHECK_OK(gms_alloc(ctx, 1000 + (size_t)i * 100, 0, &b));
        CHECK_OK(gms_free_async(ctx, b, i % 2 ? &token : NULL));
        CHECK_RC(gms_free_async(ctx, b, NULL), GMS_E_INVALID_HANDLE);
        CHECK_RC(gms_free(ctx, b), GMS_E_INVALID_HANDLE);
    }
    CHECK_RC(gms_free_async(NULL, 1, NULL), GMS_E_INVALID_ARG);
    gms_stats s;
    CHECK_OK(gms_stats_get(rt, &s));
    CHECK(s.live_blocks == 0 && s.frees == 100);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
