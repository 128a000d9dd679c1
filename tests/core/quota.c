/*
 * quota.c: a tenant's byte and allocation quotas refuse with GMS_E_QUOTA
 * and allocate nothing; refusals are counted; freeing makes room; quotas
 * are per tenant and shared by all of a tenant's contexts, levels and
 * languages; a limit below current use keeps existing buffers; GMS_UNLIMITED
 * lifts a limit; the byte quota counts block sizes: requests rounded up to
 * 256 (the main runtime runs with safety off, so there is no redzone), and
 * with safety on, requests plus the redzone rounded up to 256.
 */
#include "test.h"

static gms_runtime *rt;

static gms_context *ctx_open(const char *tenant, gms_level level, gms_language lang)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "q";
    d.level = level;
    d.language = lang;
    gms_context *c = NULL;
    CHECK_OK(gms_context_open(&c, rt, &d));
    return c;
}

static gms_tenant_stats tstats(const char *tenant)
{
    gms_tenant_stats ts;
    memset(&ts, 0, sizeof ts);
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    for (uint64_t i = 0; i < st.tenants; i++) {
        gms_tenant_stats x;
        CHECK_OK(gms_tenant_stats_get(rt, i, &x));
        if (strcmp(x.tenant, tenant) == 0)
            ts = x;
    }
    CHECK(strcmp(ts.tenant, tenant) == 0);
    return ts;
}

/* A refused allocation changes nothing but the refusal counters. */
static void refused(gms_context *c, size_t size, const char *tenant)
{
    gms_stats before, after;
    gms_tenant_stats tb = tstats(tenant);
    CHECK_OK(gms_stats_get(rt, &before));
    gms_buf h = 12345;
    CHECK_RC(gms_alloc(c, size, 0, &h), GMS_E_QUOTA);
    CHECK(h == GMS_BUF_NULL);
    CHECK_OK(gms_stats_get(rt, &after));
    gms_tenant_stats ta = tstats(tenant);
    CHECK(after.live_bytes == before.live_bytes);
    CHECK(after.live_blocks == before.live_blocks);
    CHECK(after.allocs == before.allocs);
    CHECK(after.held_bytes == before.held_bytes);
    CHECK(after.quota_refusals == before.quota_refusals + 1);
    CHECK(ta.live_bytes == tb.live_bytes);
    CHECK(ta.live_blocks == tb.live_blocks);
    CHECK(ta.quota_refusals == tb.quota_refusals + 1);
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.safety = GMS_SAFETY_OFF; /* block size = request rounded up to 256 */
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();

    /* A quota may be set before the tenant has any context. */
    CHECK_OK(gms_tenant_set_quota(rt, "acme", 4096, 3));
    gms_context *a = ctx_open("acme", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_context *g = ctx_open("globex", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    if (!a || !g)
        return test_done();
    gms_tenant_stats ts = tstats("acme");
    CHECK(ts.max_bytes == 4096 && ts.max_allocs == 3);
    ts = tstats("globex");
    CHECK(ts.max_bytes == GMS_UNLIMITED && ts.max_allocs == GMS_UNLIMITED);

    /* ---- byte quota ---- */
    gms_buf b1, b2, b3, b4;
    CHECK_OK(gms_alloc(a, 1000, 0, &b1)); /* counts 1024 */
    CHECK_OK(gms_alloc(a, 3072, 0, &b2)); /* 4096: exactly the limit */
    ts = tstats("acme");
    CHECK(ts.live_bytes == 4096 && ts.live_blocks == 2);
    refused(a, 1, "acme");
    refused(a, 1ull << 40, "acme");
    CHECK(strstr(gms_error_last(), "acme") != NULL);
    CHECK(tstats("acme").quota_refusals == 2);
    /* Another tenant is unaffected. */
    CHECK_OK(gms_alloc(g, 1 << 20, 0, &b4));
    CHECK(tstats("globex").quota_refusals == 0);
    CHECK_OK(gms_free(g, b4));
    /* Freeing makes room again. */
    CHECK_OK(gms_free(a, b1));
    CHECK_OK(gms_alloc(a, 1024, 0, &b1));
    refused(a, 1, "acme");
    CHECK_OK(gms_free(a, b1));
    CHECK_OK(gms_free(a, b2));
    CHECK(tstats("acme").live_bytes == 0);

    /* ---- count quota ---- */
    CHECK_OK(gms_tenant_set_quota(rt, "acme", GMS_UNLIMITED, 3));
    CHECK_OK(gms_alloc(a, 256, 0, &b1));
    CHECK_OK(gms_alloc(a, 256, 0, &b2));
    CHECK_OK(gms_alloc(a, 1 << 20, 0, &b3));
    refused(a, 1, "acme");
    CHECK(tstats("acme").live_blocks == 3);
    CHECK_OK(gms_free(a, b2));
    CHECK_OK(gms_alloc(a, 256, 0, &b2));
    refused(a, 256, "acme");
    CHECK_OK(gms_free(a, b1));
    CHECK_OK(gms_free(a, b2));
    CHECK_OK(gms_free(a, b3));

    /* ---- shared by every context, level and language of the tenant ---- */
    gms_context *a2 = ctx_open("acme", GMS_LEVEL_SECRET, GMS_LANG_PYTHON);
    gms_context *a3 = ctx_open("acme", GMS_LEVEL_PUBLIC, GMS_LANG_ZIG);
    gms_context *a4 = ctx_open("acme", GMS_LEVEL_INTERNAL, GMS_LANG_C); /* same pool as a */
    CHECK_OK(gms_tenant_set_quota(rt, "acme", 2048, GMS_UNLIMITED));
    CHECK_OK(gms_alloc(a, 512, 0, &b1));
    CHECK_OK(gms_alloc(a2, 512, 0, &b2));
    CHECK_OK(gms_alloc(a3, 512, 0, &b3));
    refused(a4, 513, "acme");
    CHECK_OK(gms_alloc(a4, 512, 0, &b4));
    refused(a, 1, "acme");
    refused(a2, 1, "acme");
    refused(a3, 1, "acme");
    refused(a4, 1, "acme");
    ts = tstats("acme");
    CHECK(ts.live_bytes == 2048 && ts.live_blocks == 4);
    /* Also by count. */
    CHECK_OK(gms_tenant_set_quota(rt, "acme", GMS_UNLIMITED, 4));
    refused(a2, 1, "acme");
    CHECK_OK(gms_free(a3, b3));
    CHECK_OK(gms_alloc(a2, 4096, 0, &b3));
    refused(a3, 1, "acme");

    /* ---- a limit below current use keeps the buffers ---- */
    CHECK_OK(gms_tenant_set_quota(rt, "acme", 1024, 1));
    ts = tstats("acme");
    CHECK(ts.live_bytes == 512 * 3 + 4096 && ts.live_blocks == 4);
    CHECK(ts.max_bytes == 1024 && ts.max_allocs == 1);
    CHECK_OK(gms_write(a, b1, 0, "still", 6));
    char back[6];
    CHECK_OK(gms_read(a, b1, 0, back, 6));
    CHECK(strcmp(back, "still") == 0);
    CHECK_OK(gms_fill(a2, b3, 0, 9, 4096));
    refused(a, 1, "acme");
    CHECK_OK(gms_free(a2, b3));
    CHECK_OK(gms_free(a4, b4));
    CHECK_OK(gms_free(a2, b2));
    refused(a, 1, "acme"); /* one block of 512 live: the count limit holds */
    CHECK_OK(gms_free(a, b1));
    CHECK_OK(gms_alloc(a3, 1024, 0, &b1));
    refused(a3, 1, "acme");
    CHECK_OK(gms_free(a3, b1));

    /* ---- GMS_UNLIMITED lifts ---- */
    CHECK_OK(gms_tenant_set_quota(rt, "acme", GMS_UNLIMITED, GMS_UNLIMITED));
    ts = tstats("acme");
    CHECK(ts.max_bytes == GMS_UNLIMITED && ts.max_allocs == GMS_UNLIMITED);
    {
        gms_buf many[64];
        for (int i = 0; i < 64; i++)
            CHECK_OK(gms_alloc(a, 100000, 0, &many[i]));
        CHECK(tstats("acme").live_blocks == 64);
        for (int i = 0; i < 64; i++)
            CHECK_OK(gms_free(a, many[i]));
    }

    /* ---- sizes count rounded up to 256 ---- */
    CHECK_OK(gms_tenant_set_quota(rt, "acme", 512, GMS_UNLIMITED));
    CHECK_OK(gms_alloc(a, 257, 0, &b1)); /* 512 */
    CHECK(tstats("acme").live_bytes == 512);
    refused(a, 1, "acme");
    CHECK_OK(gms_free(a, b1));
    CHECK_OK(gms_tenant_set_quota(rt, "acme", 1000, GMS_UNLIMITED));
    refused(a, 1000, "acme"); /* 1024 > 1000 */
    refused(a, 769, "acme");  /* 1024 > 1000 */
    CHECK_OK(gms_alloc(a, 768, 0, &b1));
    refused(a, 1, "acme"); /* 768 + 256 = 1024 > 1000 */
    CHECK_OK(gms_free(a, b1));
    CHECK_OK(gms_tenant_set_quota(rt, "acme", 0, GMS_UNLIMITED));
    refused(a, 1, "acme");
    CHECK_OK(gms_tenant_set_quota(rt, "acme", GMS_UNLIMITED, 0));
    refused(a, 1, "acme");

    /* globex was never limited by any of it. */
    CHECK_OK(gms_alloc(g, 10 << 20, 0, &b4));
    CHECK_OK(gms_free(g, b4));
    CHECK(tstats("globex").quota_refusals == 0);

    ts = tstats("acme");
    CHECK(ts.live_bytes == 0 && ts.live_blocks == 0);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(a);
    gms_context_close(a2);
    gms_context_close(a3);
    gms_context_close(a4);
    gms_context_close(g);
    gms_runtime_close(rt);

    /* ---- safety on: the redzone counts too ---- */
    for (int rz = 0; rz < 2; rz++) {
        uint64_t redzone = rz ? 256 : 32;
        gms_runtime_options os;
        gms_runtime_options_init(&os);
        os.backend = GMS_BACKEND_HOST;
        os.redzone_bytes = rz ? 256 : 0; /* 0: the default, 32 */
        CHECK_OK(gms_runtime_open(&rt, &os));
        if (!rt)
            break;
        CHECK_OK(gms_tenant_set_quota(rt, "acme", 512, GMS_UNLIMITED));
        a = ctx_open("acme", GMS_LEVEL_INTERNAL, GMS_LANG_C);
        if (a) {
            gms_buf_info info;
            CHECK_OK(gms_alloc(a, 512 - redzone, 0, &b1)); /* block 512 */
            CHECK_OK(gms_buf_info_get(a, b1, &info));
            CHECK(info.block_size == 512);
            CHECK(tstats("acme").live_bytes == 512);
            refused(a, 1, "acme");
            CHECK_OK(gms_free(a, b1));
            refused(a, 512 - redzone + 1, "acme"); /* block 768 */
            refused(a, 512, "acme");
            CHECK_OK(gms_tenant_set_quota(rt, "acme", 768, GMS_UNLIMITED));
            CHECK_OK(gms_alloc(a, 512 - redzone + 1, 0, &b1));
            CHECK_OK(gms_buf_info_get(a, b1, &info));
            CHECK(info.block_size == 768);
            CHECK(tstats("acme").live_bytes == 768);
            CHECK_OK(gms_free(a, b1));
            CHECK(tstats("acme").live_bytes == 0);
            gms_context_close(a);
        }
        CHECK_OK(gms_verify(rt, NULL));
        gms_runtime_close(rt);
    }
    return test_done();
}
