/*
 * accounting.c: gms-inject's classes of quotas and leaks: what gms counts
 * must match what was done.
 */
#include "inject.h"

#include <inttypes.h>
#include <string.h>

void run_leak(tally *t)
{
    t->how = "a context closed while holding 1..8 buffers (others allocated and freed around "
             "them): gms_stats leaked_blocks and the tenant's leaked_blocks grow by exactly that "
             "count, leaked_bytes by their block sizes, and the tenant's live count returns";
    gms_runtime *rt = rt_open(0);
    gms_context *anchor = ctx_open(rt, "leaky", "anchor", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf keep = xalloc(anchor, 100); /* the pool stays in use */
    (void)keep;
    gms_stats st;
    gms_tenant_stats ts;
    uint64_t tindex = 0;
    gms_stats_get(rt, &st);
    for (uint64_t j = 0; j < st.tenants; j++)
        if (gms_tenant_stats_get(rt, j, &ts) == GMS_OK && strcmp(ts.tenant, "leaky") == 0)
            tindex = j;
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_stats s0, s1;
        gms_tenant_stats t0, t1;
        gms_stats_get(rt, &s0);
        gms_tenant_stats_get(rt, tindex, &t0);
        gms_context *c = ctx_open(rt, "leaky", "leaker", GMS_LEVEL_INTERNAL, GMS_LANG_C);
        unsigned k = (unsigned)rnd_in(1, 8), extra = (unsigned)rnd_in(0, 3);
        uint64_t bytes = 0;
        gms_buf tmp[3];
        for (unsigned j = 0; j < extra; j++)
            tmp[j] = xalloc(c, rnd_size());
        for (unsigned j = 0; j < k; j++)
            bytes += xinfo(c, xalloc(c, rnd_size())).block_size;
        for (unsigned j = 0; j < extra; j++)
            gms_free(c, tmp[j]);
        uint64_t logs = n_leak_logs;
        gms_context_close(c);
        gms_stats_get(rt, &s1);
        gms_tenant_stats_get(rt, tindex, &t1);
        bool d = s1.leaked_blocks - s0.leaked_blocks == k && s1.leaked_bytes - s0.leaked_bytes == bytes &&
                 t1.leaked_blocks - t0.leaked_blocks == k && t1.live_blocks == t0.live_blocks &&
                 n_leak_logs == logs + 1;
        if (!d)
            miss(t, "trial %" PRIu64 ": %u leaked, stats say %" PRIu64, i, k,
                 s1.leaked_blocks - s0.leaked_blocks);
        count(t, d);
    }
    gms_runtime_close(rt);
}

void run_quota(tally *t)
{
    t->how = "with the tenant's byte quota set below what a request needs (live bytes + the "
             "request rounded to 256 B, minus 1..the request), or its allocation quota at or "
             "below the live count, gms_alloc returns GMS_E_QUOTA with a null handle and the "
             "runtime's and tenant's live bytes and blocks are unchanged";
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "quota", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_stats st;
    gms_tenant_stats ts;
    uint64_t tindex = 0;
    gms_stats_get(rt, &st);
    for (uint64_t j = 0; j < st.tenants; j++)
        if (gms_tenant_stats_get(rt, j, &ts) == GMS_OK && strcmp(ts.tenant, "quota") == 0)
            tindex = j;
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_buf held[4];
        unsigned k = (unsigned)rnd_in(0, 4);
        for (unsigned j = 0; j < k; j++)
            held[j] = xalloc(c, rnd_size());
        gms_stats s0, s1;
        gms_tenant_stats t0, t1;
        gms_stats_get(rt, &s0);
        gms_tenant_stats_get(rt, tindex, &t0);
        size_t s = rnd_size();
        uint64_t need = (s + 255) / 256 * 256;
        uint64_t max_bytes = GMS_UNLIMITED, max_allocs = GMS_UNLIMITED;
        if (rnd() & 1) {
            uint64_t under = rnd_in(1, need);
            max_bytes = t0.live_bytes + need - under;
        } else {
            max_allocs = t0.live_blocks - rnd_in(0, t0.live_blocks);
        }
        if (gms_tenant_set_quota(rt, "quota", max_bytes, max_allocs) != GMS_OK)
            die("gms_tenant_set_quota", GMS_E_INVALID_ARG);
        gms_buf b = (gms_buf)1;
        int rc = gms_alloc(c, s, rnd() & 1 ? GMS_ALLOC_ZERO : 0, &b);
        gms_stats_get(rt, &s1);
        gms_tenant_stats_get(rt, tindex, &t1);
        bool d = rc == GMS_E_QUOTA && b == GMS_BUF_NULL && s1.live_bytes == s0.live_bytes &&
                 s1.live_blocks == s0.live_blocks && t1.live_bytes == t0.live_bytes &&
                 t1.live_blocks == t0.live_blocks && t1.quota_refusals == t0.quota_refusals + 1;
        if (rc == GMS_OK)
            gms_free(c, b);
        gms_tenant_set_quota(rt, "quota", GMS_UNLIMITED, GMS_UNLIMITED);
        for (unsigned j = 0; j < k; j++)
            gms_free(c, held[j]);
        if (!d)
            miss(t, "trial %" PRIu64 ": size %zu, max_bytes %" PRIu64 " max_allocs %" PRIu64 " live %" PRIu64 "/%" PRIu64 ": returned %d",
                 i, s, max_bytes, max_allocs, t0.live_bytes, t0.live_blocks, rc);
        count(t, d);
    }
    gms_runtime_close(rt);
}
