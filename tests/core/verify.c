/*
 * verify.c: gms_verify passes on a busy runtime (many sizes, several
 * tenants, levels and languages, holes from frees) and its report counts
 * what the statistics count; a NULL report is fine.
 */
#include "test.h"

#define N 3000

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rand_size(void)
{
    switch (next_rand() % 32) {
    case 0: return 1 + next_rand() % (1u << 20);
    case 1: return (1u << 20) + next_rand() % (3u << 20);
    case 2: case 3: case 4: return 1 + next_rand() % 65536;
    case 5: case 6: case 7: case 8: return 1 + next_rand() % 8192;
    case 9: case 10: case 11: return 256 * (1 + next_rand() % 4);
    case 12: case 13: case 14: return 1 + next_rand() % 255;
    default: return 1 + next_rand() % 2048;
    }
}

static int n_logs;
static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    (void)msg;
    n_logs++;
}

static void check_report(gms_runtime *rt)
{
    gms_report r;
    memset(&r, 0x55, sizeof r);
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    int rc = gms_verify(rt, &r);
    CHECK_OK(rc);
    if (rc != GMS_OK)
        fprintf(stderr, "verify: %llu violations, first: %s\n",
                (unsigned long long)r.violations, r.first_violation);
    CHECK(r.violations == 0);
    CHECK(r.first_violation[0] == 0);
    CHECK(r.pools == st.pools);
    CHECK(r.live_blocks == st.live_blocks);
    CHECK(r.live_handles == st.live_blocks);
    CHECK(r.chunks >= (st.live_blocks ? 1u : 0u));
    CHECK(r.chunks <= 1000);
    CHECK(r.free_blocks <= r.live_blocks + r.chunks + 100000);
    CHECK_OK(gms_verify(rt, NULL));
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.log = quiet_log;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();

    /* Empty runtime. */
    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.pools == 0 && r.live_blocks == 0 && r.live_handles == 0 && r.violations == 0);

    const char *tenants[] = {"acme", "globex", "initech"};
    enum { NCTX = 7 };
    gms_context *ctx[NCTX];
    for (int i = 0; i < NCTX; i++) {
        gms_context_desc d;
        gms_context_desc_init(&d);
        d.tenant = tenants[i % 3];
        d.user = i < 3 ? "first" : "second";
        d.level = (gms_level)(i % 4);
        d.language = (gms_language)(i % 8);
        CHECK_OK(gms_context_open(&ctx[i], rt, &d));
        if (!ctx[i])
            return test_done();
    }
    CHECK_OK(gms_tenant_set_quota(rt, "globex", 64ull << 20, 100000));

    static gms_buf h[N];
    static int owner[N];
    uint64_t live_blocks = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            if (h[i] && next_rand() % 2) {
                CHECK_OK(gms_free(ctx[owner[i]], h[i]));
                h[i] = 0;
                live_blocks--;
            } else if (!h[i]) {
                owner[i] = (int)(next_rand() % NCTX);
                int rc = gms_alloc(ctx[owner[i]], rand_size(), next_rand() % 5 == 0 ? GMS_ALLOC_ZERO : 0,
                                   &h[i]);
                CHECK(rc == GMS_OK || (rc == GMS_E_QUOTA && owner[i] % 3 == 1));
                if (rc == GMS_OK) {
                    live_blocks++;
                    uint64_t tag = (uint64_t)i;
                    gms_buf_info info;
                    CHECK_OK(gms_buf_info_get(ctx[owner[i]], h[i], &info));
                    if (info.size >= 8)
                        CHECK_OK(gms_write(ctx[owner[i]], h[i], info.size - 8, &tag, 8));
                }
            }
        }
        gms_stats st;
        CHECK_OK(gms_stats_get(rt, &st));
        CHECK(st.live_blocks == live_blocks);
        check_report(rt);
    }

    /* Data survived the churn next to it. */
    int intact = 1;
    for (int i = 0; i < N; i++) {
        if (!h[i])
            continue;
        gms_buf_info info;
        CHECK_OK(gms_buf_info_get(ctx[owner[i]], h[i], &info));
        if (info.size >= 8) {
            uint64_t tag = 0;
            CHECK_OK(gms_read(ctx[owner[i]], h[i], info.size - 8, &tag, 8));
            intact &= tag == (uint64_t)i;
        }
    }
    CHECK(intact);

    /* Close half the contexts with their buffers (leaks), verify again. */
    for (int i = 0; i < N; i++)
        if (h[i] && owner[i] >= 4)
            h[i] = 0;
    int logs0 = n_logs;
    for (int i = 4; i < NCTX; i++)
        gms_context_close(ctx[i]);
    CHECK(n_logs >= logs0 + 3); /* each held buffers: three leak reports */
    check_report(rt);

    for (int i = 0; i < N; i++)
        if (h[i])
            CHECK_OK(gms_free(ctx[owner[i]], h[i]));
    check_report(rt);
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.live_blocks == 0 && r.live_handles == 0);
    for (int i = 0; i < 4; i++)
        gms_context_close(ctx[i]);
    check_report(rt);
    gms_runtime_close(rt);
    return test_done();
}
