/*
 * outputs.c: every public call with an out-parameter sets it to NULL or
 * zeros when it fails (api.md, "Conventions"), so a caller that ignores
 * the code never keeps a stale value: gms_buf_ptr of a freed buffer gives
 * NULL, not the freed buffer's address. Each output is filled with a
 * marker first and checked after the failing call.
 */
#include "test.h"

#define MARK 0xa5

/* Whether n bytes at p are all zero. */
static int zeroed(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    gms_runtime *rt = (gms_runtime *)(uintptr_t)1;
    CHECK_RC(gms_runtime_open(&rt, &(gms_runtime_options){.version = 99}), GMS_E_INVALID_ARG);
    CHECK(rt == NULL);
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = "acme";
    d.user = "tester";
    gms_context *ctx = (gms_context *)(uintptr_t)1;
    d.level = (gms_level)9;
    CHECK_RC(gms_context_open(&ctx, rt, &d), GMS_E_INVALID_ARG);
    CHECK(ctx == NULL);
    d.level = GMS_LEVEL_INTERNAL;
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    gms_context *other = NULL;
    d.tenant = "globex";
    CHECK_OK(gms_context_open(&other, rt, &d));
    if (!rt || !ctx || !other)
        return test_done();

    gms_buf a;
    CHECK_OK(gms_alloc(ctx, 1000, 0, &a));
    void *live = NULL;
    CHECK_OK(gms_buf_ptr(ctx, a, &live));
    CHECK(live != NULL);
    CHECK_OK(gms_free(ctx, a));

    /* The defect: the freed buffer's address stayed in *out. */
    void *p = live;
    CHECK_RC(gms_buf_ptr(ctx, a, &p), GMS_E_INVALID_HANDLE);
    CHECK(p == NULL);
    p = live;
    CHECK_RC(gms_buf_ptr(NULL, a, &p), GMS_E_INVALID_ARG);
    CHECK(p == NULL);

    gms_buf_info info;
    memset(&info, MARK, sizeof info);
    CHECK_RC(gms_buf_info_get(ctx, a, &info), GMS_E_INVALID_HANDLE);
    CHECK(zeroed(&info, sizeof info));
    memset(&info, MARK, sizeof info);
    CHECK_RC(gms_buf_info_get(NULL, a, &info), GMS_E_INVALID_ARG);
    CHECK(zeroed(&info, sizeof info));

    gms_buf h = 12345;
    CHECK_RC(gms_alloc(ctx, 0, 0, &h), GMS_E_INVALID_ARG);
    CHECK(h == GMS_BUF_NULL);
    h = 12345;
    CHECK_RC(gms_alloc_async(ctx, 0, 0, NULL, &h), GMS_E_INVALID_ARG);
    CHECK(h == GMS_BUF_NULL);
    h = 12345;
    CHECK_RC(gms_acquire(ctx, 777, GMS_ACCESS_READ, &h), GMS_E_INVALID_HANDLE);
    CHECK(h == GMS_BUF_NULL);
    h = 12345;
    CHECK_RC(gms_transfer(ctx, a, other, &h), GMS_E_INVALID_HANDLE);
    CHECK(h == GMS_BUF_NULL);
    h = 12345;
    CHECK_RC(gms_transfer_async(ctx, a, other, NULL, &h), GMS_E_INVALID_HANDLE);
    CHECK(h == GMS_BUF_NULL);

    gms_share_id id = 12345;
    gms_share_grant g = {NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = &g;
    sd.ngrants = 1;
    CHECK_RC(gms_share(ctx, a, &sd, &id), GMS_E_INVALID_HANDLE);
    CHECK(id == 0);

    gms_stats st;
    memset(&st, MARK, sizeof st);
    CHECK_RC(gms_stats_get(NULL, &st), GMS_E_INVALID_ARG);
    CHECK(zeroed(&st, sizeof st));

    gms_tenant_stats ts;
    memset(&ts, MARK, sizeof ts);
    CHECK_RC(gms_tenant_stats_get(rt, 1000, &ts), GMS_E_INVALID_ARG);
    CHECK(zeroed(&ts, sizeof ts));
    memset(&ts, MARK, sizeof ts);
    CHECK_RC(gms_tenant_stats_get(NULL, 0, &ts), GMS_E_INVALID_ARG);
    CHECK(zeroed(&ts, sizeof ts));

    gms_report r;
    memset(&r, MARK, sizeof r);
    CHECK_RC(gms_verify(NULL, &r), GMS_E_INVALID_ARG);
    CHECK(zeroed(&r, sizeof r));

    gms_context_close(other);
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
