/*
 * tests/gpu/bench.c: the CUDA backend's own figures (docs/gpu.md): a
 * benchmark, not a test. Built as build/tests/test_gpu_bench but not
 * registered with CTest; tests/gpu/run.sh runs it. With no GPU it says so
 * and exits with the skip code (77).
 *
 *   wipe     scrub fill (the poison) over 4 GiB, one item; also check and
 *            fill+verify: bytes per second of the wall time of the call
 *   async    the stream-ordered kernel on batches shaped like the free
 *            path's (31 fills and 31 exit checks of one size), back to back
 *   batch    one scrub call of 256 freed 4 KiB blocks (redzones checked,
 *            data poisoned): the latency a batch costs
 *   pair     alloc+free of 4 KiB on the cuda backend, gms_alloc/gms_free and the
 *            stream-ordered calls, safety on and off
 *   live     1,000,000 live allocations: per-op cost, verify, held/live
 *
 * The anchors (cudaMalloc, cudaMallocAsync, cudaMemsetAsync, a copy kernel)
 * are measured by tests/gpu/anchors.cu in the same run.
 */
#include "test.h"
#include "backend/cuda/cuda.h"
#include "core/internal.h"

#include <errno.h>
#include <time.h>

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    return v[n / 2];
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_u64);
    size_t i = (size_t)(p * (double)n);
    return v[i < n ? i : n - 1];
}

static void bench_wipe(void)
{
    gms_backend *be = NULL;
    if (gms__backend_cuda_create(0, &be) != 0) {
        printf("wipe: cannot create the backend: %s\n", gms__backend_cuda_why());
        test_failed++;
        return;
    }
    const uint64_t size = 4 * GiB;
    uint64_t base = 0;
    gms_backend_chunk *c = NULL;
    uint64_t t0 = now_ns();
    CHECK(be->ops->reserve(be, size, 2 * MiB, &base, &c) == 0);
    CHECK(c && be->ops->commit(be, c, 0, size) == 0);
    uint64_t t_commit = now_ns() - t0;
    printf("commit 4 GiB (2048 granules, zeroed): %.1f ms\n", (double)t_commit / 1e6);
    const uint64_t pattern = 0x5a1b2c3d4e5f6a7bull;
    struct {
        const char *name;
        int check, fill, verify;
    } modes[] = {{"fill", 0, 1, 0}, {"check", 1, 0, 0}, {"fill+verify", 0, 1, 1}};
    for (int m = 0; m < 3; m++) {
        uint64_t t[12];
        for (int i = 0; i < 12; i++) {
            gms_scrub_item it;
            memset(&it, 0, sizeof it);
            if (modes[m].check)
                it.check_lo[0] = base, it.check_hi[0] = base + size;
            if (modes[m].fill)
                it.fill_lo[0] = base, it.fill_hi[0] = base + size;
            it.verify = (uint32_t)modes[m].verify;
            uint64_t s = now_ns();
            int err = be->ops->scrub(be, &it, 1, pattern, 1);
            t[i] = now_ns() - s;
            CHECK(err == 0 && it.bad == 0 && it.verify_bad == 0);
        }
        uint64_t med = median(t + 2, 10);
        printf("RESULT wipe_%s_4GiB_ms=%.3f gbps=%.1f\n", modes[m].name, (double)med / 1e6,
               (double)size / (double)med);
    }
    /* One batch of 256 freed 4 KiB blocks: 32-byte redzones checked on
     * both sides, data poisoned. */
    gms_scrub_item items[256];
    uint64_t tb[200];
    for (int r = 0; r < 200; r++) {
        for (int i = 0; i < 256; i++) {
            uint64_t a = base + (uint64_t)i * 8192 + 256;
            memset(&items[i], 0, sizeof items[i]);
            items[i].check_lo[0] = a + 4096, items[i].check_hi[0] = a + 4096 + 32;
            items[i].check_lo[1] = a - 32, items[i].check_hi[1] = a;
            items[i].fill_lo[0] = a, items[i].fill_hi[0] = a + 4096 + 32;
        }
        uint64_t s = now_ns();
        CHECK(be->ops->scrub(be, items, 256, pattern, 1) == 0);
        tb[r] = now_ns() - s;
    }
    /* The floor: one call with one small item (launch, copies, wait). */
    for (int r = 0; r < 200; r++) {
        gms_scrub_item it = items[0];
        uint64_t s = now_ns();
        CHECK(be->ops->scrub(be, &it, 1, pattern, 1) == 0);
        tb[r] = now_ns() - s;
    }
    printf("RESULT scrub_1item_us=%.1f\n", (double)median(tb, 200) / 1e3);
    for (int r = 0; r < 200; r++) {
        for (int i = 0; i < 256; i++)
            items[i].bad = items[i].verify_bad = 0;
        uint64_t s = now_ns();
        CHECK(be->ops->scrub(be, items, 256, pattern, 1) == 0);
        tb[r] = now_ns() - s;
    }
    printf("RESULT scrub_sync_256_blocks_us=%.1f (%.3f us per freed block)\n",
           (double)median(tb, 200) / 1e3, (double)median(tb, 200) / 1e3 / 256);
    be->ops->release(be, c);
    be->ops->destroy(be);
}

/* The stream-ordered kernel on the batch shapes the free path makes: n
 * items, each a freed block's fill (the poison) and an earlier block's exit
 * check, both of `size` bytes, launched back to back on the default stream
 * as the pool does (no wait between), then collected. Bytes per second of
 * the wall time over 40 launches: what the device spends on the safety
 * work of a training step. */
static void bench_async_shapes(void)
{
    gms_backend *be = NULL;
    if (gms__backend_cuda_create(0, &be) != 0) {
        printf("async shapes: cannot create the backend: %s\n", gms__backend_cuda_why());
        test_failed++;
        return;
    }
    const uint64_t span = 4 * GiB;
    uint64_t base = 0;
    gms_backend_chunk *c = NULL;
    CHECK(be->ops->reserve(be, span, 2 * MiB, &base, &c) == 0);
    CHECK(c && be->ops->commit(be, c, 0, span) == 0);
    const uint64_t pattern = 0x5a1b2c3d4e5f6a7bull;
    gms_scrub_item all;
    memset(&all, 0, sizeof all);
    all.fill_lo[0] = base, all.fill_hi[0] = base + span;
    CHECK(be->ops->scrub(be, &all, 1, pattern, 1) == 0); /* checks find the pattern */
    static const struct {
        uint32_t n;
        uint64_t size;
    } shapes[] = {{31, 64 << 10}, {31, 1 * MiB}, {31, 16 * MiB}, {31, 64 * MiB}, {1, 2 * GiB}};
    enum { LAUNCHES = 40 };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        uint32_t n = shapes[s].n;
        uint64_t size = shapes[s].size;
        gms_scrub_item items[32];
        uint64_t tickets[LAUNCHES];
        uint64_t t[5];
        for (int rep = 0; rep < 5; rep++) {
            uint64_t start = now_ns();
            for (int l = 0; l < LAUNCHES; l++) {
                for (uint32_t i = 0; i < n; i++) {
                    uint64_t a = base + (uint64_t)i * 2 * size;
                    memset(&items[i], 0, sizeof items[i]);
                    items[i].fill_lo[0] = a, items[i].fill_hi[0] = a + size;
                    items[i].check_lo[0] = a + size, items[i].check_hi[0] = a + 2 * size;
                }
                CHECK(be->ops->ticket_reserve(be, &tickets[l]) == 0);
                CHECK(be->ops->scrub_async(be, items, n, pattern, 1, NULL, tickets[l]) == 0);
            }
            for (int l = 0; l < LAUNCHES; l++) {
                int err;
                while ((err = be->ops->scrub_collect(be, tickets[l], items, n)) == EAGAIN)
                    ;
                CHECK(err == 0 && items[0].bad == 0);
            }
            t[rep] = now_ns() - start;
        }
        uint64_t med = median(t, 5);
        double bytes = (double)LAUNCHES * n * 2 * (double)size;
        printf("RESULT scrub_async_%ux%lluKiB us_per_launch=%.1f gbps=%.1f\n", n,
               (unsigned long long)(size >> 10), (double)med / 1e3 / LAUNCHES, bytes / (double)med);
    }
    be->ops->release(be, c);
    be->ops->destroy(be);
}

static gms_context *open_ctx(gms_runtime *rt)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "bench";
    d.user = "bench";
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    return ctx;
}

/* Alloc+free pairs of 4 KiB, each timed on its own: gms_alloc/gms_free,
 * or the stream-ordered calls on the default stream (what
 * cudaMallocAsync/cudaFreeAsync's pair in anchors.cu does). */
static void pairs(gms_context *ctx, bool async, const char *name)
{
    enum { PAIRS = 200000 };
    uint64_t *t = malloc(PAIRS * sizeof *t);
    for (int i = 0; i < PAIRS + 20000; i++) { /* 20,000 to warm up: pool mapped, quarantine full */
        gms_buf b;
        uint64_t s = now_ns();
        int rc = async ? gms_alloc_async(ctx, 4096, 0, NULL, &b) : gms_alloc(ctx, 4096, 0, &b);
        rc |= async ? gms_free_async(ctx, b, NULL) : gms_free(ctx, b);
        if (i >= 20000)
            t[i - 20000] = now_ns() - s;
        if (rc) {
            CHECK_OK(rc);
            break;
        }
    }
    uint64_t sum = 0;
    for (int i = 0; i < PAIRS; i++)
        sum += t[i];
    double mean = (double)sum / PAIRS;
    printf("RESULT %s median=%llu p99=%llu mean=%.0f\n", name,
           (unsigned long long)median(t, PAIRS), (unsigned long long)pct(t, PAIRS, 0.99), mean);
    free(t);
}

static void bench_pair_and_live(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_CUDA;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return;
    gms_context *ctx = open_ctx(rt);
    pairs(ctx, false, "gms_cuda_pair_4KiB_ns");
    pairs(ctx, true, "gms_cuda_async_pair_4KiB_ns");
    {
        /* Safety off: the cost of the core path alone. */
        gms_runtime_options off = GMS_RUNTIME_OPTIONS_INIT;
        off.backend = GMS_BACKEND_CUDA;
        off.safety = GMS_SAFETY_OFF;
        gms_runtime *rt_off = NULL;
        CHECK_OK(gms_runtime_open(&rt_off, &off));
        if (rt_off) {
            gms_context *c_off = open_ctx(rt_off);
            pairs(c_off, false, "gms_cuda_pair_4KiB_safety_off_ns");
            pairs(c_off, true, "gms_cuda_async_pair_4KiB_safety_off_ns");
            gms_context_close(c_off);
            gms_runtime_close(rt_off);
        }
    }

    /* 1,000,000 live allocations, 256 B to 4 KiB. */
    enum { LIVE = 1000000 };
    gms_buf *bufs = malloc(LIVE * sizeof *bufs);
    uint64_t seed = 1, s = now_ns();
    int ok = 1;
    for (int i = 0; i < LIVE && ok; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = 256 + (size_t)((seed >> 33) % (4096 - 256));
        ok = gms_alloc(ctx, size, 0, &bufs[i]) == GMS_OK;
    }
    uint64_t t_alloc = now_ns() - s;
    CHECK(ok);
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    s = now_ns();
    int vrc = gms_verify(rt, NULL);
    uint64_t t_verify = now_ns() - s;
    CHECK_OK(vrc);
    printf("RESULT live_1M alloc_ns=%.0f live_blocks=%llu live=%.1f MiB held=%.1f MiB frag=%.2f%% "
           "verify_ms=%.0f\n",
           (double)t_alloc / LIVE, (unsigned long long)st.live_blocks,
           (double)st.live_bytes / (double)MiB, (double)st.held_bytes / (double)MiB,
           100.0 * st.fragmentation, (double)t_verify / 1e6);
    /* Pairs with a million live. */
    uint64_t t2 = now_ns();
    for (int i = 0; i < 100000; i++) {
        gms_buf b;
        gms_alloc(ctx, 4096, 0, &b);
        gms_free(ctx, b);
    }
    printf("RESULT live_1M pair_4KiB_mean_ns=%.0f\n", (double)(now_ns() - t2) / 100000);
    s = now_ns();
    for (int i = 0; i < LIVE && ok; i++)
        ok = gms_free(ctx, bufs[i]) == GMS_OK;
    CHECK(ok);
    printf("RESULT live_1M free_ns=%.0f\n", (double)(now_ns() - s) / LIVE);
    free(bufs);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

/* Parts to run: the arguments (wipe, async, pair), all when none. */
static bool part(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return argc < 2;
}

int main(int argc, char **argv)
{
    if (!gms__backend_cuda_available()) {
        char why[512];
        snprintf(why, sizeof why, "no GPU (%s)", gms__backend_cuda_why());
        return test_skip(why);
    }
    if (part(argc, argv, "wipe"))
        bench_wipe();
    if (part(argc, argv, "async"))
        bench_async_shapes();
    if (part(argc, argv, "pair"))
        bench_pair_and_live();
    return test_done();
}
