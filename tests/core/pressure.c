/*
 * pressure.c: the pressure ladder (gms.h, "memory pressure"). An allocation
 * refused by max_held_bytes or a tenant quota runs the ladder: (1) drain
 * the pool's quarantine, (2) unmap every unused granule of every pool,
 * (3) call the gms_on_pressure callbacks; it succeeds if that made room.
 * Checked here: garbage freed by a callback makes a refused allocation
 * succeed, under the device limit and under a quota; without callbacks a
 * quota refusal runs no step and counts no event; a callback that
 * allocates gets a plain failure (no second ladder) and the outer call
 * still behaves; steps 1 and 2 alone recover an allocation when the
 * memory is only quarantined or cached; gms_on_pressure's argument errors.
 * The stats pressure_events, pressure_recovered and pressure_steps move as
 * documented. Nothing here depends on timing.
 *
 * Sizes: with safety on (the default) a block is the size + the 32-byte
 * redzone rounded up to 256, so a request of GRANULE - 64 fills exactly one
 * 2 MiB granule, and the first blocks of a fresh pool lie one after the
 * other from its chunk's base: which granules are mapped is exact.
 */
#include "test.h"

#define MIB (1ull << 20)
#define GRANULE (2 * MIB)
#define WHOLE (GRANULE - 64) /* a block of exactly one granule */

static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user, (void)level, (void)msg;
}

static gms_runtime *open_rt_with(uint64_t max_held, uint64_t quarantine_bytes)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.quarantine_bytes = quarantine_bytes;
    o.backend = GMS_BACKEND_HOST;
    o.log = quiet_log;
    o.granule_bytes = GRANULE;
    o.max_held_bytes = max_held;
    gms_runtime *rt = NULL;
    if (gms_runtime_open(&rt, &o) != GMS_OK) {
        fprintf(stderr, "runtime: %s\n", gms_error_last());
        exit(1);
    }
    return rt;
}

static gms_runtime *open_rt(uint64_t max_held)
{
    return open_rt_with(max_held, 0);
}

static gms_context *open_ctx(gms_runtime *rt, const char *tenant, gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = "p";
    d.language = lang;
    gms_context *c = NULL;
    if (gms_context_open(&c, rt, &d) != GMS_OK) {
        fprintf(stderr, "context: %s\n", gms_error_last());
        exit(1);
    }
    return c;
}

static gms_stats stats(gms_runtime *rt)
{
    gms_stats s;
    memset(&s, 0, sizeof s);
    CHECK_OK(gms_stats_get(rt, &s));
    return s;
}

/* ---- a simulated collector ---- */

#define GARBAGE_MAX 16

typedef struct collector {
    gms_context *ctx;
    gms_buf garbage[GARBAGE_MAX]; /* oldest first */
    int n;
    int free_per_call;            /* how many to free per call; 0: all */
    int calls;
    int free_errors;
    gms_pressure last;            /* the last call's argument */
    char last_tenant[GMS_NAME_MAX + 1];
    /* Allocate this much from inside the callback first (0: nothing). */
    size_t alloc_inside;
    int inside_rc;
    gms_buf inside_buf;
} collector;

static void collect(void *user, const gms_pressure *p)
{
    collector *gc = user;
    gc->calls++;
    gc->last = *p;
    snprintf(gc->last_tenant, sizeof gc->last_tenant, "%s", p->tenant ? p->tenant : "");
    gc->last.tenant = gc->last_tenant;
    if (gc->alloc_inside) {
        gc->inside_buf = (gms_buf)1;
        gc->inside_rc = gms_alloc(gc->ctx, gc->alloc_inside, 0, &gc->inside_buf);
    }
    int k = gc->free_per_call ? gc->free_per_call : gc->n;
    int freed = 0;
    while (freed < k && freed < gc->n) {
        if (gms_free(gc->ctx, gc->garbage[freed]) != GMS_OK)
            gc->free_errors++;
        freed++;
    }
    memmove(gc->garbage, gc->garbage + freed, (size_t)(gc->n - freed) * sizeof gc->garbage[0]);
    gc->n -= freed;
}

static void garbage_add(collector *gc, size_t size, int count)
{
    for (int i = 0; i < count && gc->n < GARBAGE_MAX; i++) {
        gms_buf b = GMS_BUF_NULL;
        CHECK_OK(gms_alloc(gc->ctx, size, 0, &b));
        gc->garbage[gc->n++] = b;
    }
}

static void garbage_free_all(collector *gc)
{
    for (int i = 0; i < gc->n; i++)
        CHECK_OK(gms_free(gc->ctx, gc->garbage[i]));
    gc->n = 0;
}

/* ---- (1) max_held_bytes: garbage freed by the callback ---- */

static void device_limit(int free_per_call)
{
    gms_runtime *rt = open_rt(4 * GRANULE);
    collector gc = {0};
    gc.ctx = open_ctx(rt, "gc", GMS_LANG_PYTHON);
    gc.free_per_call = free_per_call;
    CHECK_OK(gms_on_pressure(rt, collect, &gc));
    garbage_add(&gc, WHOLE, 4); /* the limit: four granules, all garbage */
    gms_stats s0 = stats(rt);
    CHECK(s0.held_bytes == 4 * GRANULE);
    CHECK(s0.pressure_events == 0 && s0.pressure_recovered == 0 && s0.pressure_steps == 0);

    /* Needs a fifth granule: refused by the limit, then the collector runs
     * and the allocation succeeds. Half a MiB: in the small heap, where the
     * 256-byte allocation below finds room beside it. */
    gms_buf b = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(gc.ctx, MIB / 2, 0, &b));
    CHECK(b != GMS_BUF_NULL);
    CHECK(gc.calls == 1);
    CHECK(gc.free_errors == 0);
    CHECK(gc.n == (free_per_call ? 4 - free_per_call : 0));
    CHECK(gc.last.reason == GMS_E_NO_MEMORY);
    CHECK(gc.last.bytes_wanted == MIB / 2);
    CHECK(strcmp(gc.last_tenant, "gc") == 0);
    gms_stats s1 = stats(rt);
    CHECK(s1.pressure_events == s0.pressure_events + 1);
    CHECK(s1.pressure_recovered == s0.pressure_recovered + 1);
    /* Step 2 runs (it cannot help: nothing is cached; step 1 has nothing
     * to drain, nothing was ever freed), step 3 calls the collector: at
     * least those two. */
    CHECK(s1.pressure_steps >= s0.pressure_steps + 2);
    CHECK(s1.held_bytes <= 4 * GRANULE);
    CHECK(s1.allocs == s0.allocs + 1);
    if (b != GMS_BUF_NULL) { /* (not again, as a consequence, if it failed) */
        /* The buffer is usable. */
        CHECK_OK(gms_fill(gc.ctx, b, 0, 0x5a, MIB / 2));
        CHECK_OK(gms_verify(rt, NULL));
        /* An allocation that fits needs no ladder: nothing moves. */
        gms_buf small;
        gms_stats s2 = stats(rt);
        CHECK_OK(gms_alloc(gc.ctx, 256, 0, &small));
        gms_stats s3 = stats(rt);
        CHECK(s3.pressure_events == s2.pressure_events && s3.pressure_steps == s2.pressure_steps);
        CHECK(gc.calls == 1);
        CHECK_OK(gms_free(gc.ctx, small));
        CHECK_OK(gms_free(gc.ctx, b));
    }
    garbage_free_all(&gc);
    gms_context_close(gc.ctx);
    gms_runtime_close(rt);
}

/* The garbage lies in another pool (another language of the tenant) than
 * the allocation: what the collector frees there must serve it too. */
static void device_limit_other_pool(void)
{
    gms_runtime *rt = open_rt(4 * GRANULE);
    collector gc = {0};
    gc.ctx = open_ctx(rt, "gc", GMS_LANG_PYTHON);
    gms_context *zig = open_ctx(rt, "gc", GMS_LANG_ZIG);
    CHECK_OK(gms_on_pressure(rt, collect, &gc));
    garbage_add(&gc, WHOLE, 4);
    gms_stats s0 = stats(rt);
    CHECK(s0.held_bytes == 4 * GRANULE);
    gms_buf b = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(zig, MIB, 0, &b));
    CHECK(gc.calls == 1 && gc.n == 0 && gc.free_errors == 0);
    gms_stats s1 = stats(rt);
    CHECK(s1.pressure_events == s0.pressure_events + 1);
    CHECK(s1.pressure_recovered == s0.pressure_recovered + 1);
    CHECK(s1.held_bytes <= 4 * GRANULE);
    if (b != GMS_BUF_NULL)
        CHECK_OK(gms_free(zig, b));
    gms_context_close(zig);
    gms_context_close(gc.ctx);
    gms_runtime_close(rt);
}

/* ---- (2) a quota refusal recovered by the callback ---- */

static void quota_recovered(void)
{
    gms_runtime *rt = open_rt(0);
    collector gc = {0};
    gc.ctx = open_ctx(rt, "q", GMS_LANG_JULIA);
    gc.free_per_call = 1; /* one 256 KiB block is enough for 1000 bytes */
    CHECK_OK(gms_on_pressure(rt, collect, &gc));
    CHECK_OK(gms_tenant_set_quota(rt, "q", MIB, GMS_UNLIMITED));
    garbage_add(&gc, 256 * 1024 - 64, 4); /* 4 blocks of 256 KiB: the whole quota */
    gms_stats s0 = stats(rt);
    CHECK(s0.live_bytes == MIB);
    gms_buf b = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(gc.ctx, 1000, 0, &b));
    CHECK(b != GMS_BUF_NULL);
    CHECK(gc.calls == 1 && gc.n == 3 && gc.free_errors == 0);
    CHECK(gc.last.reason == GMS_E_QUOTA);
    CHECK(gc.last.bytes_wanted == 1000);
    CHECK(strcmp(gc.last_tenant, "q") == 0);
    gms_stats s1 = stats(rt);
    CHECK(s1.pressure_events == s0.pressure_events + 1);
    CHECK(s1.pressure_recovered == s0.pressure_recovered + 1);
    /* Steps 1 and 2 cannot help a quota: only the callbacks ran. */
    CHECK(s1.pressure_steps == s0.pressure_steps + 1);
    CHECK(s1.quota_refusals == s0.quota_refusals); /* recovered: not a refusal */

    /* A collector with nothing left to free: the refusal stands and is
     * counted, as an event not recovered. */
    gms_buf big = (gms_buf)1;
    gc.free_per_call = 0;
    garbage_free_all(&gc); /* the program frees its garbage itself */
    CHECK_OK(gms_alloc(gc.ctx, 700 * 1024, 0, &big));
    gms_stats s2 = stats(rt);
    gms_buf no = (gms_buf)1;
    CHECK_RC(gms_alloc(gc.ctx, 512 * 1024, 0, &no), GMS_E_QUOTA);
    CHECK(no == GMS_BUF_NULL);
    CHECK(gc.calls == 2);
    gms_stats s3 = stats(rt);
    CHECK(s3.pressure_events == s2.pressure_events + 1);
    CHECK(s3.pressure_recovered == s2.pressure_recovered);
    CHECK(s3.pressure_steps == s2.pressure_steps + 1);
    CHECK(s3.quota_refusals == s2.quota_refusals + 1);
    CHECK(s3.live_bytes == s2.live_bytes);
    CHECK(strstr(gms_error_last(), "quota") != NULL);

    CHECK_OK(gms_free(gc.ctx, big));
    CHECK_OK(gms_free(gc.ctx, b));
    gms_context_close(gc.ctx);
    gms_runtime_close(rt);
}

/* ---- (3) no callbacks: a quota refusal runs no step ---- */

static void quota_without_callbacks(void)
{
    gms_runtime *rt = open_rt(0);
    gms_context *c = open_ctx(rt, "nocb", GMS_LANG_C);
    CHECK_OK(gms_tenant_set_quota(rt, "nocb", 4096, 2));
    gms_buf a, b, x = (gms_buf)1;
    CHECK_OK(gms_alloc(c, 1000, 0, &a));
    gms_stats s0 = stats(rt);
    /* By bytes... */
    CHECK_RC(gms_alloc(c, 4000, 0, &x), GMS_E_QUOTA);
    CHECK(x == GMS_BUF_NULL);
    /* ...and by count. */
    CHECK_OK(gms_alloc(c, 100, 0, &b));
    x = (gms_buf)1;
    CHECK_RC(gms_alloc(c, 100, 0, &x), GMS_E_QUOTA);
    CHECK(x == GMS_BUF_NULL);
    gms_stats s1 = stats(rt);
    CHECK(s1.pressure_events == s0.pressure_events && s1.pressure_events == 0);
    CHECK(s1.pressure_steps == s0.pressure_steps && s1.pressure_steps == 0);
    CHECK(s1.pressure_recovered == 0);
    CHECK(s1.quota_refusals == s0.quota_refusals + 2);
    CHECK_OK(gms_free(c, a));
    CHECK_OK(gms_free(c, b));

    /* The device limit without callbacks: steps 1-2 still run (they
     * might help), nothing is freed, the refusal stands. */
    gms_runtime *rt2 = open_rt(2 * GRANULE);
    gms_context *c2 = open_ctx(rt2, "nocb", GMS_LANG_C);
    gms_buf g1, g2, g3 = (gms_buf)1;
    CHECK_OK(gms_alloc(c2, WHOLE, 0, &g1));
    CHECK_OK(gms_alloc(c2, WHOLE, 0, &g2));
    gms_stats t0 = stats(rt2);
    CHECK_RC(gms_alloc(c2, 4096, 0, &g3), GMS_E_NO_MEMORY);
    CHECK(g3 == GMS_BUF_NULL);
    CHECK(strstr(gms_error_last(), "max_held_bytes") != NULL);
    gms_stats t1 = stats(rt2);
    CHECK(t1.pressure_events == t0.pressure_events + 1);
    CHECK(t1.pressure_recovered == t0.pressure_recovered);
    CHECK(t1.pressure_steps > t0.pressure_steps);
    CHECK(t1.live_bytes == t0.live_bytes && t1.held_bytes == 2 * GRANULE);
    CHECK_OK(gms_free(c2, g1));
    CHECK_OK(gms_free(c2, g2));

    gms_context_close(c);
    gms_runtime_close(rt);
    gms_context_close(c2);
    gms_runtime_close(rt2);
}

/* ---- (4) a callback that allocates gets a plain failure ---- */

static void callback_allocates(void)
{
    gms_runtime *rt = open_rt(2 * GRANULE);
    collector gc = {0};
    gc.ctx = open_ctx(rt, "re", GMS_LANG_RUST);
    CHECK_OK(gms_on_pressure(rt, collect, &gc));
    garbage_add(&gc, WHOLE, 2);

    /* Allocates first (memory is still short: refused, no second ladder,
     * no second call), then frees its garbage: the outer call succeeds. */
    gc.alloc_inside = MIB;
    gms_stats s0 = stats(rt);
    gms_buf b = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(gc.ctx, MIB, 0, &b));
    CHECK(gc.calls == 1);
    CHECK(gc.inside_rc == GMS_E_NO_MEMORY);
    CHECK(gc.inside_buf == GMS_BUF_NULL);
    gms_stats s1 = stats(rt);
    CHECK(s1.pressure_events == s0.pressure_events + 1); /* the outer call only */
    CHECK(s1.pressure_recovered == s0.pressure_recovered + 1);

    /* Nothing left to free: the inner allocation fails plainly again and
     * the outer one fails as it would have. */
    garbage_add(&gc, WHOLE, 1);
    gms_buf fill = GMS_BUF_NULL;
    CHECK(gc.n == 1);
    gms_buf take = gc.garbage[0];
    gc.n = 0; /* reachable again: the collector may not free it */
    gms_stats s2 = stats(rt);
    gms_buf no = (gms_buf)1;
    CHECK_RC(gms_alloc(gc.ctx, MIB + 4096, 0, &no), GMS_E_NO_MEMORY);
    CHECK(no == GMS_BUF_NULL);
    CHECK(gc.calls == 2);
    CHECK(gc.inside_rc == GMS_E_NO_MEMORY && gc.inside_buf == GMS_BUF_NULL);
    gms_stats s3 = stats(rt);
    CHECK(s3.pressure_events == s2.pressure_events + 1);
    CHECK(s3.pressure_recovered == s2.pressure_recovered);
    CHECK(s3.live_bytes == s2.live_bytes);
    (void)fill;

    /* Under a quota too: the inner allocation gets GMS_E_QUOTA plainly. */
    CHECK_OK(gms_free(gc.ctx, take));
    CHECK_OK(gms_free(gc.ctx, b));
    CHECK_OK(gms_tenant_set_quota(rt, "re", 64 * 1024, GMS_UNLIMITED));
    garbage_add(&gc, 32 * 1024 - 64, 2); /* the whole quota */
    gc.alloc_inside = 1000;
    gc.free_per_call = 1;
    int calls = gc.calls;
    gms_stats s4 = stats(rt);
    CHECK_OK(gms_alloc(gc.ctx, 1000, 0, &b));
    CHECK(gc.calls == calls + 1);
    CHECK(gc.inside_rc == GMS_E_QUOTA && gc.inside_buf == GMS_BUF_NULL);
    gms_stats s5 = stats(rt);
    CHECK(s5.pressure_events == s4.pressure_events + 1);
    CHECK(s5.pressure_recovered == s4.pressure_recovered + 1);
    CHECK_OK(gms_free(gc.ctx, b));
    garbage_free_all(&gc);
    gms_context_close(gc.ctx);
    gms_runtime_close(rt);
}

/* ---- (5) steps 1 and 2 alone ---- */

static int never_calls;
static void never(void *user, const gms_pressure *p)
{
    (void)user, (void)p;
    never_calls++;
}

static void drain_and_trim(void)
{
    gms_runtime *rt = open_rt(4 * GRANULE);
    CHECK_OK(gms_on_pressure(rt, never, NULL));
    gms_context *py = open_ctx(rt, "dt", GMS_LANG_PYTHON);
    gms_context *jl = open_ctx(rt, "dt", GMS_LANG_JULIA);

    /* Step 2: another pool's cached granules. Julia maps three granules
     * and frees their buffers: the last freed waits in quarantine (its
     * granule stays mapped), the other two granules stay mapped in the
     * pool's cache (below the retain limit). */
    gms_buf j[3], p1, p2, p3;
    for (int i = 0; i < 3; i++)
        CHECK_OK(gms_alloc(jl, WHOLE, 0, &j[i]));
    for (int i = 0; i < 3; i++)
        CHECK_OK(gms_free(jl, j[i]));
    gms_stats s0 = stats(rt);
    CHECK(s0.held_bytes == 3 * GRANULE && s0.live_bytes == 0);
    /* Python needs two granules: 5 > 4 held, so the ladder runs; its own
     * pool has nothing to drain; the trim unmaps Julia's cache. */
    CHECK_OK(gms_alloc(py, 2 * GRANULE - 64, 0, &p1));
    gms_stats s1 = stats(rt);
    CHECK(s1.pressure_events == s0.pressure_events + 1);
    CHECK(s1.pressure_recovered == s0.pressure_recovered + 1);
    CHECK(s1.pressure_steps == s0.pressure_steps + 1); /* step 2 only */
    CHECK(s1.held_bytes <= 4 * GRANULE);
    CHECK(never_calls == 0);

    /* Before any step: a block past the quarantine's byte limit (a whole
     * granule's buffer) goes back to the pool when an allocation would
     * otherwise map memory, so the ladder never runs for it. */
    CHECK_OK(gms_alloc(py, WHOLE, 0, &p2));
    gms_stats s2 = stats(rt);
    CHECK(s2.held_bytes == 4 * GRANULE); /* 2 for p1, 1 for p2, 1 quarantined in Julia */
    CHECK_OK(gms_free(py, p2));
    CHECK(stats(rt).held_bytes == 4 * GRANULE);
    CHECK_OK(gms_alloc(py, MIB, 0, &p3));
    gms_stats s3 = stats(rt);
    CHECK(s3.pressure_events == s2.pressure_events);
    CHECK(s3.held_bytes == 4 * GRANULE);
    CHECK_OK(gms_free(py, p3));

    CHECK(never_calls == 0);
    CHECK_OK(gms_verify(rt, NULL));

    CHECK_OK(gms_free(py, p1));
    gms_context_close(py);
    gms_context_close(jl);
    gms_runtime_close(rt);
}

/* Step 1: the allocating pool's own quarantine, within its limits (4 MiB
 * here), holding a whole granule's buffer; the next allocation does not
 * fit beside the live one. Draining the quarantine frees the granule, and
 * step 1 alone recovers (no trim, no callback). */
static void drain_alone(void)
{
    gms_runtime *rt = open_rt_with(3 * GRANULE, 4 * MIB);
    CHECK_OK(gms_on_pressure(rt, never, NULL));
    gms_context *py = open_ctx(rt, "dq", GMS_LANG_PYTHON);
    gms_buf p1, p2, p3;
    CHECK_OK(gms_alloc(py, 2 * GRANULE - 64, 0, &p1));
    CHECK_OK(gms_alloc(py, WHOLE, 0, &p2));
    CHECK_OK(gms_free(py, p2));
    gms_stats s0 = stats(rt);
    CHECK(s0.held_bytes == 3 * GRANULE && s0.live_bytes == 2 * GRANULE);
    int calls = never_calls;
    CHECK_OK(gms_alloc(py, MIB, 0, &p3));
    gms_stats s1 = stats(rt);
    CHECK(s1.pressure_events == s0.pressure_events + 1);
    CHECK(s1.pressure_recovered == s0.pressure_recovered + 1);
    CHECK(s1.pressure_steps == s0.pressure_steps + 1);
    CHECK(s1.held_bytes == 3 * GRANULE);
    CHECK(never_calls == calls);
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(gms_free(py, p1));
    CHECK_OK(gms_free(py, p3));
    gms_context_close(py);
    gms_runtime_close(rt);
}

/* ---- (6) gms_on_pressure's arguments ---- */

static void noop(void *user, const gms_pressure *p)
{
    (void)user, (void)p;
}

static void registration(void)
{
    gms_runtime *rt = open_rt(0);
    CHECK_RC(gms_on_pressure(NULL, noop, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_on_pressure(rt, NULL, NULL), GMS_E_INVALID_ARG);
    for (int i = 0; i < 16; i++)
        CHECK_OK(gms_on_pressure(rt, noop, NULL));
    CHECK_RC(gms_on_pressure(rt, noop, NULL), GMS_E_BUSY);
    CHECK(strstr(gms_error_last(), "16") != NULL);
    gms_runtime_close(rt);
}

int main(void)
{
    device_limit(0); /* a full collection: all garbage */
    /* An incremental one: one block of a whole granule for a request of
     * half a granule, just enough. The block it frees waits in the
     * quarantine with its granule mapped; the ladder's step 1 empties the
     * quarantine for exactly this reason, so what a callback frees must be
     * reusable by the retry too. */
    device_limit(1);
    device_limit_other_pool();
    quota_recovered();
    quota_without_callbacks();
    callback_allocates();
    drain_and_trim();
    drain_alone();
    registration();
    return test_done();
}
