/*
 * pressure.c: `gms-bench pressure`, how many allocations that would have
 * failed the pressure ladder saves (gms.h, "memory pressure").
 *
 * A garbage-collected language holds memory in objects it no longer uses
 * but has not yet collected. Each scenario runs a program that allocates
 * random sizes (log-uniform 256 B..4 MiB, a fixed seed; 10,000 by default,
 * --iters), keeps 16 MiB of objects reachable and drops the rest, a random
 * reachable object at a time, onto a garbage list without freeing them; a
 * callback registered with gms_on_pressure plays the collector and never
 * touches a reachable object. Each of a, b and c runs with two collectors:
 * an incremental one, which frees garbage oldest first until it has freed
 * twice the request plus 2 MiB, and a full one, which frees all of it. The
 * scenarios:
 *
 *   a_device_limit  a private runtime with max_held_bytes = 64 MiB, one
 *                   context: refusals are GMS_E_NO_MEMORY.
 *   b_tenant_quota  no device limit; the tenant's byte quota is 64 MiB and
 *                   its garbage lies in its two contexts (two languages).
 *   c_two_pools     max_held_bytes = 64 MiB over two pools of one tenant
 *                   (Python with garbage, Julia freeing bursts of 16 MiB of
 *                   temporaries explicitly every 50 rounds): the Julia
 *                   pool's cached granules must be unmapped (ladder steps
 *                   1-2) before the other pool can grow, and garbage must
 *                   go too. The burst's allocations are counted with the
 *                   rest.
 *   d_control       a negative control: max_held_bytes = 64 MiB filled by
 *                   reachable objects only; the callback runs and finds no
 *                   garbage, so nothing may be recovered: the ladder must
 *                   not invent memory.
 *
 * Per scenario: the allocations made, those that entered the ladder
 * (gms_stats pressure_events: the failures there would have been), those
 * it recovered (pressure_recovered) and the rate, the steps it ran
 * (pressure_steps), the events recovered without the callback (steps 1-2
 * alone), the median and p99 time of an allocation that ran the ladder
 * (the callback's frees included), the allocations that still failed, and
 * of those the ones refused while the collector still had garbage (the
 * ladder gave up too early; the others found memory truly short). The
 * target: at least 95% of the ladder events recovered in a, b and c.
 */
#include "bench.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ALLOCS 10000u
#define LIMIT_BYTES (64ull << 20)
/* What the program keeps reachable (a, b, c): the rest of the limit fills
 * with garbage until the collector runs. */
#define REACHABLE_BYTES (16ull << 20)
#define MIN_SIZE 256u
#define MAX_SIZE (4u << 20)
/* The incremental collector frees oldest first until it has freed this
 * many times the request plus the slack; the full one frees all garbage. */
#define GC_FACTOR 2u
#define GC_SLACK_BYTES (2ull << 20)
/* c: the Julia pool's burst of temporaries, every BURST_EVERY rounds. */
#define BURST_EVERY 50u
#define BURST_BYTES (16ull << 20)
#define TARGET_RATE 0.95
#define SEED 0x70726573u /* "pres" */

typedef struct obj {
    gms_context *ctx;
    gms_buf h;
    uint64_t bytes; /* block size: what the quota and the pool count */
} obj;

/* A growable array; the garbage list uses it as a queue (head: oldest). */
typedef struct objs {
    obj *v;
    size_t head, n, cap;
    uint64_t bytes;
} objs;

static int objs_push(objs *l, obj o)
{
    if (l->n == l->cap) {
        if (l->head > 0) { /* reuse what the queue consumed */
            memmove(l->v, l->v + l->head, (l->n - l->head) * sizeof *l->v);
            l->n -= l->head;
            l->head = 0;
        }
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 1024;
            obj *v = realloc(l->v, cap * sizeof *v);
            if (!v)
                return -1;
            l->v = v;
            l->cap = cap;
        }
    }
    l->v[l->n++] = o;
    l->bytes += o.bytes;
    return 0;
}

/* Removes the object at i (not the head end: reachable set only). */
static obj objs_take(objs *l, size_t i)
{
    obj o = l->v[i];
    l->v[i] = l->v[--l->n];
    l->bytes -= o.bytes;
    return o;
}

/* The collector: state the callback shares with the scenario. */
typedef struct collector {
    bool full; /* a full collection: every call frees all garbage */
    objs garbage;
    uint64_t calls, freed_blocks, freed_bytes, free_errors;
} collector;

static void collect(void *user, const gms_pressure *p)
{
    collector *gc = user;
    gc->calls++;
    uint64_t want = gc->full ? UINT64_MAX : GC_FACTOR * (p->bytes_wanted + MIN_SIZE) + GC_SLACK_BYTES;
    uint64_t freed = 0;
    objs *g = &gc->garbage;
    while (g->head < g->n && freed < want) {
        obj o = g->v[g->head++];
        g->bytes -= o.bytes;
        if (gms_free(o.ctx, o.h) != GMS_OK)
            gc->free_errors++;
        freed += o.bytes;
        gc->freed_blocks++;
    }
    gc->freed_bytes += freed;
}

enum { SC_LIMIT, SC_QUOTA, SC_TWO_POOLS, SC_CONTROL, NSCENARIOS };

static const struct {
    const char *name, *what;
} SCENARIOS[NSCENARIOS] = {
    {"a_device_limit", "max_held_bytes 64 MiB, one context; garbage freed by the callback"},
    {"b_tenant_quota", "tenant byte quota 64 MiB, garbage in the tenant's two contexts"},
    {"c_two_pools", "max_held_bytes 64 MiB over two pools of one tenant: cached granules "
                    "of the other pool (steps 1-2) and garbage (step 3)"},
    {"d_control", "negative control: max_held_bytes 64 MiB held by reachable objects only"},
};

typedef struct result {
    const char *backend;
    uint64_t attempts, ok, events, recovered, steps, recovered_no_gc, events_gc;
    uint64_t no_memory, quota, gc_calls, gc_freed_blocks, gc_freed_bytes;
    uint64_t failed_with_garbage; /* still refused while the collector had garbage left */
    uint64_t event_ns_median, event_ns_p99, peak_held, peak_live, wall_ns;
} result;

static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user, (void)level, (void)msg;
}

static gms_context *open_ctx(gms_runtime *rt, const char *tenant, gms_language lang)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "bench";
    d.language = lang;
    gms_context *c = NULL;
    int rc = gms_context_open(&c, rt, &d);
    if (rc != GMS_OK)
        bench_report_gms("opening a context", rc);
    return c;
}

/* Log-uniform in [MIN_SIZE, MAX_SIZE]. */
static size_t draw_size(uint64_t *rng)
{
    unsigned lo = 8, hi = 22; /* 2^8 = 256 B, 2^22 = 4 MiB */
    unsigned e = (unsigned)bench_rng_range(rng, lo, hi - 1);
    uint64_t base = 1ull << e;
    return (size_t)bench_rng_range(rng, base, 2 * base);
}

static uint64_t block_of(size_t size, gms_safety_mode safety)
{
    return ((uint64_t)size + (safety == GMS_SAFETY_ON ? 32 : 0) + 255) & ~(uint64_t)255;
}

typedef struct run {
    gms_runtime *rt;
    collector gc;
    objs reachable;
    uint64_t *event_ns;
    size_t nevents_cap;
    gms_stats last;
    result *r;
} run;

/* One allocation by the program: timed, classified by the stats it moved. */
static int program_alloc(run *x, gms_context *c, size_t size, gms_buf *out)
{
    result *r = x->r;
    uint64_t calls = x->gc.calls;
    uint64_t t0 = bench_now_ns();
    int rc = gms_alloc(c, size, 0, out);
    uint64_t t1 = bench_now_ns();
    gms_stats s;
    int src = gms_stats_get(x->rt, &s);
    if (src != GMS_OK) {
        bench_report_gms("gms_stats_get", src);
        return src;
    }
    r->attempts++;
    if (s.pressure_events != x->last.pressure_events) {
        if (r->events < x->nevents_cap)
            x->event_ns[r->events] = t1 - t0;
        r->events++;
        bool gc_ran = x->gc.calls != calls;
        r->events_gc += gc_ran;
        if (rc == GMS_OK && !gc_ran)
            r->recovered_no_gc++;
        if (rc != GMS_OK && x->gc.garbage.head < x->gc.garbage.n)
            r->failed_with_garbage++;
    }
    x->last = s;
    if (rc == GMS_OK)
        r->ok++;
    else if (rc == GMS_E_NO_MEMORY)
        r->no_memory++;
    else if (rc == GMS_E_QUOTA)
        r->quota++;
    else {
        bench_report_gms("gms_alloc", rc);
        return rc;
    }
    return GMS_OK;
}

/* Frees what is left: reachable objects and garbage. */
static int drain(run *x)
{
    int bad = 0;
    for (size_t i = 0; i < x->reachable.n; i++)
        bad |= gms_free(x->reachable.v[i].ctx, x->reachable.v[i].h) != GMS_OK;
    objs *g = &x->gc.garbage;
    for (size_t i = g->head; i < g->n; i++)
        bad |= gms_free(g->v[i].ctx, g->v[i].h) != GMS_OK;
    x->reachable.n = x->reachable.head = 0;
    g->n = g->head = 0;
    if (bad)
        fprintf(stderr, "gms-bench: pressure: freeing the objects left failed: %s\n", gms_error_last());
    return bad ? BENCH_EXIT_FAIL : 0;
}

static int scenario(int sc, bool full, uint64_t allocs, gms_safety_mode safety, result *r)
{
    memset(r, 0, sizeof *r);
    run x;
    memset(&x, 0, sizeof x);
    x.gc.full = full;
    x.r = r;
    x.nevents_cap = allocs + allocs / 8 + 16;
    x.event_ns = malloc(x.nevents_cap * sizeof *x.event_ns);
    if (!x.event_ns) {
        fprintf(stderr, "gms-bench: out of host memory\n");
        return BENCH_EXIT_FAIL;
    }
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = bench_backend;
    o.safety = safety;
    o.log = quiet_log;
    if (sc != SC_QUOTA)
        o.max_held_bytes = LIMIT_BYTES;
    int ret = BENCH_EXIT_FAIL, rc = gms_runtime_open(&x.rt, &o);
    if (rc != GMS_OK) {
        bench_report_gms("opening a runtime", rc);
        free(x.event_ns);
        return BENCH_EXIT_FAIL;
    }
    r->backend = gms_runtime_backend_name(x.rt);
    gms_context *a = open_ctx(x.rt, "app", GMS_LANG_PYTHON);
    gms_context *b = sc == SC_QUOTA || sc == SC_TWO_POOLS ? open_ctx(x.rt, "app", GMS_LANG_JULIA) : NULL;
    if (!a || ((sc == SC_QUOTA || sc == SC_TWO_POOLS) && !b))
        goto out;
    if (sc == SC_QUOTA && (rc = gms_tenant_set_quota(x.rt, "app", LIMIT_BYTES, GMS_UNLIMITED)) != GMS_OK) {
        bench_report_gms("gms_tenant_set_quota", rc);
        goto out;
    }
    if ((rc = gms_on_pressure(x.rt, collect, &x.gc)) != GMS_OK) {
        bench_report_gms("gms_on_pressure", rc);
        goto out;
    }
    uint64_t rng = SEED + (uint64_t)sc;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < allocs; i++) {
        if (sc == SC_TWO_POOLS && i % BURST_EVERY == BURST_EVERY - 1) {
            /* The other pool: temporaries made and freed at once; their
             * granules stay mapped in its cache. */
            gms_buf tmp[64];
            size_t nt = 0;
            for (uint64_t got = 0; got < BURST_BYTES && nt < 64;) {
                size_t s = (size_t)bench_rng_range(&rng, 256u << 10, 4u << 20);
                if (program_alloc(&x, b, s, &tmp[nt]) != GMS_OK)
                    goto out;
                if (tmp[nt] == GMS_BUF_NULL)
                    break;
                got += s;
                nt++;
            }
            for (size_t j = 0; j < nt; j++)
                if ((rc = gms_free(b, tmp[j])) != GMS_OK) {
                    bench_report_gms("freeing a temporary", rc);
                    goto out;
                }
        }
        gms_context *c = sc == SC_QUOTA && (i & 1) ? b : a;
        size_t size = draw_size(&rng);
        gms_buf h;
        if (program_alloc(&x, c, size, &h) != GMS_OK)
            goto out;
        if (h == GMS_BUF_NULL)
            continue;
        if (objs_push(&x.reachable, (obj){c, h, block_of(size, safety)})) {
            fprintf(stderr, "gms-bench: out of host memory\n");
            goto out;
        }
        /* What is no longer reachable becomes garbage, a random object at
         * a time (the control keeps everything). */
        while (sc != SC_CONTROL && x.reachable.bytes > REACHABLE_BYTES) {
            size_t k = (size_t)bench_rng_range(&rng, 0, x.reachable.n - 1);
            if (objs_push(&x.gc.garbage, objs_take(&x.reachable, k))) {
                fprintf(stderr, "gms-bench: out of host memory\n");
                goto out;
            }
        }
    }
    r->wall_ns = bench_now_ns() - t0;
    gms_stats s;
    if ((rc = gms_stats_get(x.rt, &s)) != GMS_OK) {
        bench_report_gms("gms_stats_get", rc);
        goto out;
    }
    r->recovered = s.pressure_recovered;
    r->steps = s.pressure_steps;
    r->peak_held = s.peak_held_bytes;
    r->peak_live = s.peak_live_bytes;
    if (s.pressure_events != r->events) {
        fprintf(stderr, "gms-bench: pressure: %llu ladder events counted by the stats, %llu seen\n",
                (unsigned long long)s.pressure_events, (unsigned long long)r->events);
        goto out;
    }
    r->gc_calls = x.gc.calls;
    r->gc_freed_blocks = x.gc.freed_blocks;
    r->gc_freed_bytes = x.gc.freed_bytes;
    if (x.gc.free_errors) {
        fprintf(stderr, "gms-bench: pressure: %llu frees by the collector failed\n",
                (unsigned long long)x.gc.free_errors);
        goto out;
    }
    size_t n = r->events < x.nevents_cap ? (size_t)r->events : x.nevents_cap;
    bench_sort_u64(x.event_ns, n);
    r->event_ns_median = bench_percentile(x.event_ns, n, 0.5);
    r->event_ns_p99 = bench_percentile(x.event_ns, n, 0.99);
    ret = 0;
out:
    if (drain(&x))
        ret = BENCH_EXIT_FAIL;
    gms_context_close(a);
    gms_context_close(b);
    gms_runtime_close(x.rt);
    free(x.reachable.v);
    free(x.gc.garbage.v);
    free(x.event_ns);
    return ret;
}

static double rate_of(const result *r)
{
    return r->events ? (double)r->recovered / (double)r->events : 1.0;
}

static bool control_ok(const result *r)
{
    return r->recovered == 0 && r->gc_freed_blocks == 0;
}

/* The runs: a, b and c with each collector, the control once (it has no
 * garbage, so the collector does not matter). */
static const struct {
    int sc;
    bool full;
} RUNS[] = {
    {SC_LIMIT, false}, {SC_QUOTA, false}, {SC_TWO_POOLS, false},
    {SC_LIMIT, true},  {SC_QUOTA, true},  {SC_TWO_POOLS, true},
    {SC_CONTROL, false},
};
#define NRUNS (sizeof RUNS / sizeof RUNS[0])

static void print_json(int sc, bool full, const result *r, const bench_args *args)
{
    bench_json j;
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "bench", "pressure");
    bench_json_str(&j, "scenario", SCENARIOS[sc].name);
    bench_json_str(&j, "collector", full ? "full" : "incremental");
    bench_json_str(&j, "what", SCENARIOS[sc].what);
    bench_json_str(&j, "backend", r->backend);
    bench_json_str(&j, "safety", args->safety == GMS_SAFETY_ON ? "on" : "off");
    bench_json_u64(&j, "limit_bytes", LIMIT_BYTES);
    bench_json_u64(&j, "reachable_bytes", sc == SC_CONTROL ? LIMIT_BYTES : REACHABLE_BYTES);
    bench_json_u64(&j, "allocs", r->attempts);
    bench_json_u64(&j, "allocs_ok", r->ok);
    bench_json_u64(&j, "ladder_events", r->events);
    bench_json_u64(&j, "recovered", r->recovered);
    bench_json_f64(&j, "recovery_rate", rate_of(r));
    bench_json_u64(&j, "recovered_by_steps_1_2", r->recovered_no_gc);
    bench_json_u64(&j, "events_with_callback", r->events_gc);
    bench_json_u64(&j, "ladder_steps", r->steps);
    bench_json_f64(&j, "steps_per_event", r->events ? (double)r->steps / (double)r->events : 0.0);
    bench_json_f64(&j, "event_us_median", (double)r->event_ns_median / 1e3);
    bench_json_f64(&j, "event_us_p99", (double)r->event_ns_p99 / 1e3);
    bench_json_u64(&j, "final_no_memory", r->no_memory);
    bench_json_u64(&j, "final_quota", r->quota);
    bench_json_u64(&j, "failed_with_garbage_left", r->failed_with_garbage);
    bench_json_u64(&j, "callback_calls", r->gc_calls);
    bench_json_u64(&j, "callback_freed_blocks", r->gc_freed_blocks);
    bench_json_u64(&j, "callback_freed_bytes", r->gc_freed_bytes);
    bench_json_u64(&j, "peak_live", r->peak_live);
    bench_json_u64(&j, "peak_held", r->peak_held);
    bench_json_f64(&j, "wall_s", (double)r->wall_ns / 1e9);
    if (sc == SC_CONTROL) {
        bench_json_bool(&j, "control", 1);
        bench_json_u64(&j, "expected_recovered", 0);
        bench_json_bool(&j, "control_ok", control_ok(r));
    } else {
        bench_json_f64(&j, "target_rate", TARGET_RATE);
        bench_json_bool(&j, "meets_target", rate_of(r) >= TARGET_RATE);
    }
    bench_json_end(&j);
}

static void print_row(int sc, bool full, const result *r)
{
    printf("%-15s %-5s %6llu %6llu %6llu %8.2f%% %6llu %5.2f %8.1f %8.1f %6llu %5llu %6llu  %s\n",
           SCENARIOS[sc].name, sc == SC_CONTROL ? "-" : full ? "full" : "incr",
           (unsigned long long)r->attempts, (unsigned long long)r->events,
           (unsigned long long)r->recovered, 100.0 * rate_of(r),
           (unsigned long long)r->recovered_no_gc,
           r->events ? (double)r->steps / (double)r->events : 0.0,
           (double)r->event_ns_median / 1e3, (double)r->event_ns_p99 / 1e3,
           (unsigned long long)r->no_memory, (unsigned long long)r->quota,
           (unsigned long long)r->failed_with_garbage,
           sc == SC_CONTROL ? (control_ok(r) ? "control ok" : "CONTROL FAILED")
           : rate_of(r) >= TARGET_RATE ? "met" : "MISSED");
    fflush(stdout);
}

int bench_pressure(const bench_args *args)
{
    uint64_t allocs = args->iters ? args->iters : DEFAULT_ALLOCS;
    result R[NRUNS];
    if (!args->json) {
        printf("gms-bench pressure: allocations that entered the pressure ladder (events) and how "
               "many it recovered;\nsafety %s; garbage freed by a gms_on_pressure callback: incr = "
               "oldest first until %ux the request\n+ 2 MiB, full = all of it; 'by 1-2': recovered "
               "without the callback; 'garbage': refused while\ngarbage was left\n\n",
               args->safety == GMS_SAFETY_ON ? "on" : "off", GC_FACTOR);
        printf("%-15s %-5s %6s %6s %6s %9s %6s %5s %8s %8s %6s %5s %6s  %s\n", "scenario", "gc",
               "allocs", "events", "recov", "rate", "by 1-2", "steps", "med us", "p99 us",
               "NO_MEM", "QUOTA", "garbage", "target 95%");
    }
    double worst = 1.0, worst_incr = 1.0;
    bool ctl = true;
    for (size_t i = 0; i < NRUNS; i++) {
        int sc = RUNS[i].sc;
        if (scenario(sc, RUNS[i].full, allocs, args->safety, &R[i]))
            return BENCH_EXIT_FAIL;
        double rate = rate_of(&R[i]);
        if (sc == SC_CONTROL)
            ctl = control_ok(&R[i]);
        else {
            worst = rate < worst ? rate : worst;
            if (!RUNS[i].full && rate < worst_incr)
                worst_incr = rate;
        }
        if (args->json)
            print_json(sc, RUNS[i].full, &R[i], args);
        else
            print_row(sc, RUNS[i].full, &R[i]);
    }
    if (args->json) {
        bench_json j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "pressure");
        bench_json_bool(&j, "summary", 1);
        bench_json_str(&j, "backend", R[0].backend);
        bench_json_str(&j, "safety", args->safety == GMS_SAFETY_ON ? "on" : "off");
        bench_json_u64(&j, "allocs_per_scenario", allocs);
        bench_json_f64(&j, "worst_rate_a_to_c", worst);
        bench_json_f64(&j, "worst_rate_a_to_c_incremental", worst_incr);
        bench_json_f64(&j, "target_rate", TARGET_RATE);
        bench_json_bool(&j, "meets_target", worst >= TARGET_RATE);
        bench_json_bool(&j, "control_ok", ctl);
        bench_json_end(&j);
    } else {
        printf("\ntarget: >= 95%% of ladder events recovered in a, b and c (both collectors): "
               "worst %.2f%%: %s\n", 100.0 * worst, worst >= TARGET_RATE ? "met" : "not met");
        printf("control d: nothing recovered, nothing reachable freed: %s\n", ctl ? "met" : "NOT MET");
    }
    return BENCH_EXIT_OK;
}
