/*
 * latency.c: `gms-bench latency`, what one gms allocation costs the caller.
 *
 * Times gms_alloc+gms_free pairs on one context of a private host runtime
 * for sizes 256 B..256 MiB, each pair on its own (so the p99 is real), and
 * the same loops on malloc/free in the same run as the baseline. Then the
 * per-op cost with 1,000 and 1,000,000 allocations live, to show whether
 * the fast path stays flat as the pool fills. Only allocator cost is
 * measured: no buffer is touched.
 */
#include "bench.h"

#include <stdbool.h>

#include <stdlib.h>
#include <string.h>

/* Samples for sizes up to 64 KiB unless --iters says otherwise. */
#define DEFAULT_ITERS 100000u
/* A timed loop stops after this long once it has MIN_SAMPLES, so a slow
 * big size cannot stretch the run past a minute. */
#define LOOP_BUDGET_NS 1500000000ull
#define WARM_BUDGET_NS 300000000ull
#define MIN_SAMPLES 21u
/* The targets the summary checks. */
#define TARGET_PAIR_NS 100u
#define LIVE_TOLERANCE 0.10 /* 1M live may cost at most 10% more than 1k */

/* Both allocators behind one interface so each loop exists once. The
 * wrappers are noinline: the compiler may otherwise see a malloc paired
 * with a free and delete both, and gms pays one call per op as well. */
typedef struct allocator {
    const char *name;
    int (*alloc)(void *self, size_t size, uint64_t *out);
    int (*free)(void *self, uint64_t h);
    void *self;
} allocator;

__attribute__((noinline)) static int gms_alloc_op(void *self, size_t size,
                                                  uint64_t *out)
{
    return gms_alloc(self, size, 0, out);
}

__attribute__((noinline)) static int gms_free_op(void *self, uint64_t h)
{
    return gms_free(self, h);
}

__attribute__((noinline)) static int malloc_op(void *self, size_t size,
                                               uint64_t *out)
{
    (void)self;
    void *p = malloc(size);
    if (!p)
        return GMS_E_NO_MEMORY;
    *out = (uint64_t)(uintptr_t)p;
    return GMS_OK;
}

__attribute__((noinline)) static int free_op(void *self, uint64_t h)
{
    (void)self;
    free((void *)(uintptr_t)h);
    return GMS_OK;
}

static int op_failed(const allocator *a, const char *op, size_t size, int rc)
{
    char what[96];
    snprintf(what, sizeof what, "%s %s of %zu bytes", a->name, op, size);
    if (a->alloc == malloc_op)
        fprintf(stderr, "gms-bench: %s failed\n", what);
    else
        bench_report_gms(what, rc);
    return BENCH_EXIT_FAIL;
}

/* One alloc+free; the pair, not each half, is what callers pay. */
static inline int pair(const allocator *a, size_t size)
{
    uint64_t h;
    int rc = a->alloc(a->self, size, &h);
    if (rc != GMS_OK)
        return op_failed(a, "alloc", size, rc);
    rc = a->free(a->self, h);
    if (rc != GMS_OK)
        return op_failed(a, "free", size, rc);
    return 0;
}

typedef struct pair_result {
    uint64_t median, p99; /* ns, timer overhead subtracted */
    size_t samples;
} pair_result;

/* Times `iters` pairs one by one into buf (capacity >= iters). */
static int time_pairs(const allocator *a, size_t size, size_t iters,
                      uint64_t overhead, uint64_t *buf, pair_result *r)
{
    /* Warm-up: pool growth, metadata first touched, malloc's mmap
     * threshold adapting; none of it is the steady state. */
    uint64_t start = bench_now_ns();
    for (size_t i = 0; i < iters / 10 + 2; i++) {
        if (pair(a, size))
            return BENCH_EXIT_FAIL;
        if (i >= 2 && bench_now_ns() - start > WARM_BUDGET_NS)
            break;
    }
    size_t n = 0;
    start = bench_now_ns();
    while (n < iters) {
        uint64_t t0 = bench_now_ns();
        int rc = pair(a, size);
        uint64_t t1 = bench_now_ns();
        if (rc)
            return BENCH_EXIT_FAIL;
        buf[n++] = t1 - t0;
        if (n >= MIN_SAMPLES && t1 - start > LOOP_BUDGET_NS)
            break;
    }
    bench_sort_u64(buf, n);
    r->median = bench_sub_sat(bench_percentile(buf, n, 0.50), overhead);
    r->p99 = bench_sub_sat(bench_percentile(buf, n, 0.99), overhead);
    r->samples = n;
    return 0;
}

typedef struct live_result {
    double live_ns;  /* per op: median pair / 2 */
    double churn_ns; /* per op: total / (2 * iterations) */
} live_result;

/* 256 B..4 KiB: the small tensors and metadata that make up most calls. */
static size_t small_size(uint64_t *rng)
{
    return (size_t)bench_rng_range(rng, 256, 4096);
}

/* With nlive blocks resident: (a) pairs on top of them, (b) churn that
 * frees a random live block and allocates a replacement. The seed depends
 * on nlive only, so gms and malloc see the same sizes and victims. */
static int time_live(const allocator *a, size_t nlive, size_t iters,
                     uint64_t overhead, uint64_t *buf, live_result *r)
{
    int ret = BENCH_EXIT_FAIL;
    uint64_t rng = 0x5eed0000u + nlive;
    size_t filled = 0;
    uint64_t *live = malloc(nlive * sizeof *live);
    /* Victims and sizes are drawn before the clock starts. */
    uint32_t *victim = malloc(iters * sizeof *victim);
    uint32_t *csize = malloc(iters * sizeof *csize);
    if (!live || !victim || !csize) {
        fprintf(stderr, "gms-bench: out of host memory for %zu live blocks\n",
                nlive);
        goto out;
    }
    for (; filled < nlive; filled++) {
        size_t size = small_size(&rng);
        int rc = a->alloc(a->self, size, &live[filled]);
        if (rc != GMS_OK) {
            op_failed(a, "alloc (filling)", size, rc);
            goto out;
        }
    }
    for (size_t i = 0; i < iters / 10 + 2; i++)
        if (pair(a, small_size(&rng)))
            goto out;
    for (size_t i = 0; i < iters; i++) {
        size_t size = small_size(&rng);
        uint64_t t0 = bench_now_ns();
        int rc = pair(a, size);
        uint64_t t1 = bench_now_ns();
        if (rc)
            goto out;
        buf[i] = t1 - t0;
    }
    bench_sort_u64(buf, iters);
    r->live_ns = (double)bench_sub_sat(bench_percentile(buf, iters, 0.5),
                                       overhead) / 2.0;

    for (size_t i = 0; i < iters; i++) {
        victim[i] = (uint32_t)bench_rng_range(&rng, 0, nlive - 1);
        csize[i] = (uint32_t)small_size(&rng);
    }
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < iters; i++) {
        uint64_t *slot = &live[victim[i]];
        int rc = a->free(a->self, *slot);
        if (rc != GMS_OK) {
            op_failed(a, "free (churn)", 0, rc);
            goto out;
        }
        rc = a->alloc(a->self, csize[i], slot);
        if (rc != GMS_OK) {
            /* The slot's block is gone: do not free it again below. */
            live[victim[i]] = live[--filled];
            op_failed(a, "alloc (churn)", csize[i], rc);
            goto out;
        }
    }
    uint64_t t1 = bench_now_ns();
    r->churn_ns = (double)bench_sub_sat(t1 - t0, overhead) / (2.0 * iters);
    ret = 0;
out:
    for (size_t i = 0; i < filled; i++)
        a->free(a->self, live[i]);
    free(live);
    free(victim);
    free(csize);
    return ret;
}

static const size_t SIZES[] = {256, 4096, 65536, 1u << 20, 16u << 20,
                               256u << 20};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])
static const size_t LIVE_COUNTS[] = {1000, 1000000};
#define NLIVE (sizeof LIVE_COUNTS / sizeof LIVE_COUNTS[0])

/* Big pairs can cost microseconds (granules mapped and returned): fewer
 * samples, 1/16 per 16x of size above 64 KiB, but not under BIG_SAMPLES
 * (or base, if smaller) so the p99 stays a percentile; LOOP_BUDGET_NS
 * still bounds the time. */
#define BIG_SAMPLES 200u
static size_t iters_for(size_t size, size_t base)
{
    size_t n = base;
    for (size_t s = 65536; s < size; s *= 16)
        n /= 16;
    size_t floor_n = base < BIG_SAMPLES ? base : BIG_SAMPLES;
    if (floor_n < MIN_SAMPLES)
        floor_n = MIN_SAMPLES;
    return n < floor_n ? floor_n : n;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

typedef struct results {
    const char *backend;
    const char *safety; /* of the gms figures: "on" or "off" */
    uint64_t overhead;
    pair_result gms[NSIZES], base[NSIZES];
    pair_result other[NSIZES]; /* gms with the other safety setting */
    live_result glive[NLIVE], blive[NLIVE];
} results;

/* Pair cost with all safety on over the pair with it off, same run. */
#define SAFETY_RATIO_TARGET 1.5
static double safety_ratio(const results *R, size_t i)
{
    bool on = strcmp(R->safety, "on") == 0;
    const pair_result *with = on ? &R->gms[i] : &R->other[i];
    const pair_result *without = on ? &R->other[i] : &R->gms[i];
    return ratio((double)with->median, (double)without->median);
}

static void print_safety_json(bench_json *j, const results *R, size_t i)
{
    bool on = strcmp(R->safety, "on") == 0;
    bench_json_str(j, "safety", R->safety);
    bench_json_u64(j, "safety_on_pair_ns_median", (on ? R->gms : R->other)[i].median);
    bench_json_u64(j, "safety_off_pair_ns_median", (on ? R->other : R->gms)[i].median);
    bench_json_f64(j, "safety_ratio", safety_ratio(R, i));
}

static void print_json(const results *R)
{
    bench_json j;
    for (size_t i = 0; i < NSIZES; i++) {
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "latency");
        bench_json_str(&j, "backend", R->backend);
        bench_json_u64(&j, "size", SIZES[i]);
        bench_json_u64(&j, "samples", R->gms[i].samples);
        bench_json_u64(&j, "pair_ns_median", R->gms[i].median);
        bench_json_u64(&j, "pair_ns_p99", R->gms[i].p99);
        bench_json_u64(&j, "baseline_samples", R->base[i].samples);
        bench_json_u64(&j, "baseline_pair_ns_median", R->base[i].median);
        bench_json_u64(&j, "baseline_pair_ns_p99", R->base[i].p99);
        bench_json_f64(&j, "ratio_vs_baseline",
                       ratio((double)R->gms[i].median, (double)R->base[i].median));
        print_safety_json(&j, R, i);
        bench_json_end(&j);
    }
    double live_ratio = ratio(R->glive[1].live_ns, R->glive[0].live_ns);
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "bench", "latency");
    bench_json_bool(&j, "summary", 1);
    bench_json_str(&j, "backend", R->backend);
    bench_json_str(&j, "baseline", "malloc");
    bench_json_u64(&j, "timer_overhead_ns", R->overhead);
    bench_json_u64(&j, "size", SIZES[0]);
    bench_json_u64(&j, "pair_ns_median", R->gms[0].median);
    bench_json_u64(&j, "pair_ns_p99", R->gms[0].p99);
    bench_json_u64(&j, "baseline_pair_ns_median", R->base[0].median);
    bench_json_u64(&j, "baseline_pair_ns_p99", R->base[0].p99);
    print_safety_json(&j, R, 0);
    bench_json_f64(&j, "safety_ratio_target", SAFETY_RATIO_TARGET);
    bench_json_bool(&j, "meets_safety_ratio_target", safety_ratio(R, 0) <= SAFETY_RATIO_TARGET);
    bench_json_f64(&j, "live_1k_ns_per_op", R->glive[0].live_ns);
    bench_json_f64(&j, "live_1m_ns_per_op", R->glive[1].live_ns);
    bench_json_f64(&j, "churn_1k_ns_per_op", R->glive[0].churn_ns);
    bench_json_f64(&j, "churn_1m_ns_per_op", R->glive[1].churn_ns);
    bench_json_f64(&j, "baseline_live_1k_ns_per_op", R->blive[0].live_ns);
    bench_json_f64(&j, "baseline_live_1m_ns_per_op", R->blive[1].live_ns);
    bench_json_f64(&j, "baseline_churn_1k_ns_per_op", R->blive[0].churn_ns);
    bench_json_f64(&j, "baseline_churn_1m_ns_per_op", R->blive[1].churn_ns);
    bench_json_u64(&j, "target_pair_ns", TARGET_PAIR_NS);
    bench_json_bool(&j, "meets_pair_target",
                    R->gms[0].median <= TARGET_PAIR_NS);
    bench_json_f64(&j, "live_1m_vs_1k", live_ratio);
    bench_json_f64(&j, "live_target_tolerance", LIVE_TOLERANCE);
    bench_json_bool(&j, "meets_live_target", live_ratio <= 1.0 + LIVE_TOLERANCE);
    bench_json_f64(&j, "churn_1m_vs_1k",
                   ratio(R->glive[1].churn_ns, R->glive[0].churn_ns));
    bench_json_end(&j);
}

static void print_table(const results *R)
{
    char sz[32];
    printf("gms-bench latency: backend %s vs malloc; single alloc+free pairs, "
           "ns, timer overhead %llu ns subtracted\n\n",
           R->backend, (unsigned long long)R->overhead);
    printf("gms figures with safety %s; 'safety' = pair with safety on / off\n\n", R->safety);
    printf("%-8s %8s %10s %10s %12s %12s %7s %7s\n", "size", "samples",
           "gms med", "gms p99", "malloc med", "malloc p99", "ratio", "safety");
    for (size_t i = 0; i < NSIZES; i++)
        printf("%-8s %8zu %10llu %10llu %12llu %12llu %7.2f %7.2f\n",
               bench_fmt_size(sz, sizeof sz, SIZES[i]), R->gms[i].samples,
               (unsigned long long)R->gms[i].median,
               (unsigned long long)R->gms[i].p99,
               (unsigned long long)R->base[i].median,
               (unsigned long long)R->base[i].p99,
               ratio((double)R->gms[i].median, (double)R->base[i].median),
               safety_ratio(R, i));
    printf("\nns per op with N live 256 B..4 KiB blocks (live: median pair/2; "
           "churn: free random + alloc, total/2n)\n");
    printf("%-8s %10s %10s %12s %12s\n", "N", "gms live", "gms churn",
           "malloc live", "malloc churn");
    for (size_t i = 0; i < NLIVE; i++)
        printf("%-8zu %10.1f %10.1f %12.1f %12.1f\n", LIVE_COUNTS[i],
               R->glive[i].live_ns, R->glive[i].churn_ns, R->blive[i].live_ns,
               R->blive[i].churn_ns);
    double live_ratio = ratio(R->glive[1].live_ns, R->glive[0].live_ns);
    printf("\npair target: 256 B median %llu ns <= %u ns: %s\n",
           (unsigned long long)R->gms[0].median, TARGET_PAIR_NS,
           R->gms[0].median <= TARGET_PAIR_NS ? "met" : "MISSED");
    printf("live target: 1M live / 1k live = %.2f <= %.2f: %s\n", live_ratio,
           1.0 + LIVE_TOLERANCE,
           live_ratio <= 1.0 + LIVE_TOLERANCE ? "met" : "MISSED");
}

int bench_latency(const bench_args *args)
{
    size_t base = args->iters ? (size_t)args->iters : DEFAULT_ITERS;
    gms_runtime *rt, *rt_other;
    gms_context *ctx, *ctx_other;
    gms_safety_mode other = args->safety == GMS_SAFETY_ON ? GMS_SAFETY_OFF : GMS_SAFETY_ON;
    if (bench_open_host(&rt, &ctx, args->safety) != GMS_OK)
        return BENCH_EXIT_FAIL;
    if (bench_open_host(&rt_other, &ctx_other, other) != GMS_OK) {
        bench_close(rt, ctx);
        return BENCH_EXIT_FAIL;
    }
    allocator ga = {"gms", gms_alloc_op, gms_free_op, ctx};
    allocator go = {"gms", gms_alloc_op, gms_free_op, ctx_other};
    allocator ma = {"malloc", malloc_op, free_op, NULL};
    results R;
    memset(&R, 0, sizeof R);
    R.backend = gms_runtime_backend_name(rt);
    R.safety = args->safety == GMS_SAFETY_ON ? "on" : "off";
    int ret = BENCH_EXIT_FAIL;
    uint64_t *buf = malloc((base < MIN_SAMPLES ? MIN_SAMPLES : base) *
                           sizeof *buf);
    if (!buf) {
        fprintf(stderr, "gms-bench: out of host memory for samples\n");
        goto out;
    }
    R.overhead = bench_timer_overhead_ns();
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = iters_for(SIZES[i], base);
        if (time_pairs(&ga, SIZES[i], n, R.overhead, buf, &R.gms[i]) ||
            time_pairs(&go, SIZES[i], n, R.overhead, buf, &R.other[i]) ||
            time_pairs(&ma, SIZES[i], n, R.overhead, buf, &R.base[i]))
            goto out;
    }
    for (size_t i = 0; i < NLIVE; i++)
        if (time_live(&ga, LIVE_COUNTS[i], base, R.overhead, buf, &R.glive[i]) ||
            time_live(&ma, LIVE_COUNTS[i], base, R.overhead, buf, &R.blive[i]))
            goto out;
    if (args->json)
        print_json(&R);
    else
        print_table(&R);
    ret = BENCH_EXIT_OK;
out:
    free(buf);
    bench_close(rt, ctx);
    bench_close(rt_other, ctx_other);
    return ret;
}
