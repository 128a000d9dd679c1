/*
 * stats.c: the runtime-wide and per-tenant statistics follow allocations
 * and frees: live bytes (block sizes: request + redzone, rounded to 256), blocks, peaks, held bytes in whole
 * granules (2 MiB by default), fragmentation = 1 - live/held in [0, 1];
 * freed memory goes back to the backend (held drops), all of it once every
 * context is closed.
 */
#include "test.h"

#define MiB ((uint64_t)1 << 20)
#define GRANULE (2 * MiB)

static gms_runtime *rt;

static gms_context *ctx_open(const char *tenant, gms_level level)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "s";
    d.level = level;
    gms_context *c = NULL;
    CHECK_OK(gms_context_open(&c, rt, &d));
    return c;
}

static gms_stats stats_ok(void)
{
    gms_stats s;
    memset(&s, 0, sizeof s);
    CHECK_OK(gms_stats_get(rt, &s));
    CHECK(s.held_bytes % GRANULE == 0);
    CHECK(s.peak_held_bytes % GRANULE == 0);
    CHECK(s.held_bytes >= s.live_bytes);
    CHECK(s.peak_held_bytes >= s.held_bytes);
    CHECK(s.peak_live_bytes >= s.live_bytes);
    CHECK(s.reserved_bytes >= s.held_bytes);
    CHECK(s.fragmentation >= 0.0 && s.fragmentation <= 1.0);
    double want = s.held_bytes ? 1.0 - (double)s.live_bytes / (double)s.held_bytes : 0.0;
    CHECK(s.fragmentation - want < 1e-9 && want - s.fragmentation < 1e-9);
    return s;
}

static gms_tenant_stats tstats(uint64_t index, const char *name)
{
    gms_tenant_stats t;
    memset(&t, 0, sizeof t);
    CHECK_OK(gms_tenant_stats_get(rt, index, &t));
    CHECK(strcmp(t.tenant, name) == 0);
    CHECK(t.held_bytes % GRANULE == 0);
    CHECK(t.held_bytes >= t.live_bytes);
    CHECK(t.peak_live_bytes >= t.live_bytes);
    return t;
}

/* Block size with the default options: request plus the 32-byte redzone,
 * rounded up to 256 (docs/api.md); live bytes are block sizes. */
static uint64_t blk(uint64_t n)
{
    return (n + 32 + 255) / 256 * 256;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();

    gms_stats s = stats_ok();
    CHECK(s.live_bytes == 0 && s.live_blocks == 0 && s.held_bytes == 0);
    CHECK(s.fragmentation == 0.0);
    CHECK(s.allocs == 0 && s.frees == 0 && s.contexts == 0 && s.tenants == 0);

    gms_context *a = ctx_open("acme", GMS_LEVEL_INTERNAL);
    gms_context *a2 = ctx_open("acme", GMS_LEVEL_SECRET); /* second pool */
    gms_context *g = ctx_open("globex", GMS_LEVEL_INTERNAL);
    if (!a || !a2 || !g)
        return test_done();
    s = stats_ok();
    CHECK(s.contexts == 3 && s.tenants == 2);
    CHECK(s.pools >= 2); /* pools may be made lazily; at most 3 */
    CHECK(s.pools <= 3);

    /* ---- allocations ---- */
    uint64_t sizes[] = {1000, 256, 1, MiB, 5 * MiB + 3, 300000};
    gms_buf h[6];
    uint64_t live = 0;
    for (int i = 0; i < 6; i++) {
        CHECK_OK(gms_alloc(i % 2 ? a2 : a, sizes[i], 0, &h[i]));
        live += blk(sizes[i]);
        s = stats_ok();
        CHECK(s.live_bytes == live);
        CHECK(s.live_blocks == (uint64_t)i + 1);
        CHECK(s.allocs == (uint64_t)i + 1);
        CHECK(s.held_bytes >= GRANULE);
        CHECK(s.peak_live_bytes == live);
    }
    gms_tenant_stats ta = tstats(0, "acme"), tg = tstats(1, "globex");
    CHECK(ta.live_bytes == live && ta.live_blocks == 6 && ta.peak_live_bytes == live);
    CHECK(ta.held_bytes == s.held_bytes); /* globex holds nothing yet */
    CHECK(tg.live_bytes == 0 && tg.live_blocks == 0 && tg.held_bytes == 0);
    CHECK(s.fragmentation > 0.0 && s.fragmentation < 1.0);

    gms_buf gb;
    CHECK_OK(gms_alloc(g, 3 * MiB, 0, &gb));
    s = stats_ok();
    CHECK(s.live_bytes == live + blk(3 * MiB));
    tg = tstats(1, "globex");
    CHECK(tg.live_bytes == blk(3 * MiB) && tg.live_blocks == 1);
    CHECK(tg.held_bytes >= 4 * MiB); /* 3 MiB spans at least 2 granules */
    ta = tstats(0, "acme");
    CHECK(ta.live_bytes == live);
    CHECK(ta.held_bytes + tg.held_bytes == s.held_bytes);

    /* ---- frees ---- */
    uint64_t peak = s.peak_live_bytes;
    CHECK_OK(gms_free(a2, h[3])); /* 1 MiB */
    live -= blk(MiB);
    s = stats_ok();
    CHECK(s.live_bytes == live + blk(3 * MiB));
    CHECK(s.live_blocks == 6);
    CHECK(s.frees == 1 && s.allocs == 7);
    CHECK(s.peak_live_bytes == peak);
    ta = tstats(0, "acme");
    CHECK(ta.live_bytes == live && ta.live_blocks == 5);
    CHECK(ta.peak_live_bytes == live + blk(MiB));
    CHECK_OK(gms_free(g, gb));
    tg = tstats(1, "globex");
    CHECK(tg.live_bytes == 0 && tg.live_blocks == 0 && tg.peak_live_bytes == blk(3 * MiB));
    for (int i = 0; i < 6; i++)
        if (i != 3)
            CHECK_OK(gms_free(i % 2 ? a2 : a, h[i]));
    s = stats_ok();
    CHECK(s.live_bytes == 0 && s.live_blocks == 0);
    CHECK(s.frees == 7);
    CHECK(s.fragmentation == (s.held_bytes ? 1.0 : 0.0));

    /* ---- memory goes back while contexts stay open ---- */
    {
        gms_buf big[12];
        for (int i = 0; i < 12; i++)
            CHECK_OK(gms_alloc(a, 8 * MiB, 0, &big[i]));
        s = stats_ok();
        CHECK(s.held_bytes >= 96 * MiB);
        CHECK(s.live_bytes == 12 * blk(8 * MiB));
        CHECK(s.fragmentation < 0.2);
        uint64_t held_full = s.held_bytes;
        for (int i = 0; i < 12; i++)
            CHECK_OK(gms_free(a, big[i]));
        /* Churn small blocks so any quarantine moves on. */
        for (int i = 0; i < 2000; i++) {
            gms_buf x;
            CHECK_OK(gms_alloc(a, 4096, 0, &x));
            CHECK_OK(gms_free(a, x));
        }
        s = stats_ok();
        printf("held: %" PRIu64 " MiB with 96 MiB live, %" PRIu64 " MiB after freeing it\n",
               held_full / MiB, s.held_bytes / MiB);
        CHECK(s.held_bytes <= held_full / 2);
        CHECK(s.peak_held_bytes >= held_full);
        CHECK(s.peak_live_bytes >= 96 * MiB);
        /* gms_trim returns every granule no block uses, at once: what stays
         * held is what live and quarantined blocks occupy. */
        CHECK_RC(gms_trim(NULL), GMS_E_INVALID_ARG);
        CHECK_OK(gms_trim(rt));
        gms_stats t = stats_ok();
        CHECK(t.held_bytes <= s.held_bytes);
        gms_report r;
        CHECK_OK(gms_verify(rt, &r));
    }

    /* ---- all of it once the contexts are closed ---- */
    gms_context_close(a);
    gms_context_close(a2);
    gms_context_close(g);
    s = stats_ok();
    CHECK(s.contexts == 0);
    CHECK(s.live_bytes == 0 && s.live_blocks == 0);
    CHECK(s.held_bytes == 0);
    CHECK(s.fragmentation == 0.0);
    CHECK(s.leaked_blocks == 0);
    ta = tstats(0, "acme");
    tg = tstats(1, "globex");
    CHECK(ta.held_bytes == 0 && tg.held_bytes == 0);
    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.live_blocks == 0 && r.live_handles == 0);

    /* A runtime with another granule counts in that granule. */
    {
        gms_runtime *r2;
        gms_runtime_options o2 = o;
        o2.granule_bytes = 64 * 1024;
        CHECK_OK(gms_runtime_open(&r2, &o2));
        gms_context_desc d;
        gms_context_desc_init(&d);
        d.tenant = "t";
        d.user = "u";
        gms_context *c;
        CHECK_OK(gms_context_open(&c, r2, &d));
        gms_buf x;
        CHECK_OK(gms_alloc(c, 1000, 0, &x));
        gms_stats s2;
        CHECK_OK(gms_stats_get(r2, &s2));
        CHECK(s2.held_bytes >= 64 * 1024 && s2.held_bytes % (64 * 1024) == 0);
        CHECK(s2.held_bytes < GRANULE);
        CHECK_OK(gms_free(c, x));
        gms_context_close(c);
        CHECK_OK(gms_stats_get(r2, &s2));
        CHECK(s2.held_bytes == 0);
        gms_runtime_close(r2);
    }

    gms_runtime_close(rt);
    return test_done();
}
