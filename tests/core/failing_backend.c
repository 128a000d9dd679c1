/*
 * failing_backend.c: the failing-backend sweep. For N = 1, 2, 3, ... a
 * private runtime whose Nth fallible internal operation (backend call or
 * metadata allocation) fails runs one fixed scenario: open contexts of two
 * tenants, set quotas, allocate a mix of sizes (one larger than a chunk, so
 * a second chunk is reserved), write, read, copy, fill, free some, close.
 * Any step may fail, but only with a clean code (GMS_E_NO_MEMORY or
 * GMS_E_BACKEND), leaving state that gms_verify accepts; a failed open
 * leaves nothing behind (ASan checks leaks). The sweep ends at the first N
 * the scenario never reaches; at least 5 values of N must produce a failure.
 */
#include "test.h"
#include "gms/testing.h"

/* For the failpoint's call counter: whether the scenario reached call N. */
#include "core/internal.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define MAX_N 20000

static uint64_t cur_n;
static int failures; /* failed steps in this run */
static int bad;      /* checks that failed in this run */

static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    (void)msg;
}



/* gms_verify must pass. It may itself meet the injected failure (it reads
 * device memory to check the poison): then it must say so with a backend
 * code, not report corruption, and pass when run again. */
static void verify_clean(gms_runtime *rt, const char *after)
{
    gms_report r;
    memset(&r, 0, sizeof r);
    int rc = gms_verify(rt, &r);
    if (rc == GMS_E_BACKEND || rc == GMS_E_NO_MEMORY) {
        failures++;
        rc = gms_verify(rt, &r);
    }
    if (rc != GMS_OK) {
        fprintf(stderr, "N=%" PRIu64 ": gms_verify after %s: %s (%s)\n", cur_n, after,
                gms_strerror(rc), r.first_violation);
        bad++;
    }
    CHECK_OK(rc);
}

/* Accounts for a step's result: 0 if it succeeded, 1 if it failed cleanly
 * (then verify must pass). */
static int step(gms_runtime *rt, int rc, const char *what)
{
    if (rc == GMS_OK)
        return 0;
    failures++;
    int clean = rc == GMS_E_NO_MEMORY || rc == GMS_E_BACKEND;
    if (!clean) {
        fprintf(stderr, "N=%" PRIu64 ": %s failed with %s: %s\n", cur_n, what,
                gms_strerror(rc), gms_error_last());
        bad++;
    }
    CHECK(clean);
    CHECK(gms_error_last()[0] != 0);
    if (rt)
        verify_clean(rt, what);
    return 1;
}

static gms_context *ctx_open(gms_runtime *rt, const char *tenant, gms_level level,
                             gms_language lang)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "sweeper";
    d.level = level;
    d.language = lang;
    gms_context *c = (gms_context *)(uintptr_t)1;
    int rc = gms_context_open(&c, rt, &d);
    if (step(rt, rc, "gms_context_open")) {
        CHECK(c == NULL);
        return NULL;
    }
    return c;
}

typedef struct buf {
    gms_context *ctx;
    gms_buf h;
    size_t size;
} buf;

static void alloc_one(gms_runtime *rt, buf *b, gms_context *c, size_t size, uint32_t flags)
{
    b->ctx = c;
    b->size = size;
    b->h = GMS_BUF_NULL;
    if (!c)
        return;
    gms_stats before, after;
    CHECK_OK(gms_stats_get(rt, &before));
    gms_buf h = 77;
    int rc = gms_alloc(c, size, flags, &h);
    if (step(rt, rc, "gms_alloc")) {
        CHECK(h == GMS_BUF_NULL);
        CHECK_OK(gms_stats_get(rt, &after));
        CHECK(after.live_blocks == before.live_blocks);
        CHECK(after.live_bytes == before.live_bytes);
        return;
    }
    b->h = h;
    if (flags & GMS_ALLOC_ZERO) {
        uint8_t z[256];
        size_t k = size < sizeof z ? size : sizeof z;
        memset(z, 0xff, sizeof z);
        if (!step(rt, gms_read(c, h, size - k, z, k), "gms_read")) {
            int zero = 1;
            for (size_t i = 0; i < k; i++)
                zero &= z[i] == 0;
            CHECK(zero);
        }
    }
}

/* Writes a pattern at both ends and reads it back. */
static void round_trip(gms_runtime *rt, buf *b, uint8_t seed)
{
    if (!b->h)
        return;
    uint8_t out[512], in[512];
    size_t n = b->size < sizeof out ? b->size : sizeof out;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(seed + i * 13);
    uint64_t offs[2] = {0, b->size - n};
    for (int k = 0; k < 2; k++) {
        if (step(rt, gms_write(b->ctx, b->h, offs[k], out, n), "gms_write"))
            continue;
        memset(in, 0, sizeof in);
        if (step(rt, gms_read(b->ctx, b->h, offs[k], in, n), "gms_read"))
            continue;
        if (memcmp(in, out, n) != 0) {
            fprintf(stderr, "N=%" PRIu64 ": read back differs\n", cur_n);
            bad++;
        }
        CHECK(memcmp(in, out, n) == 0);
    }
}

static void free_one(gms_runtime *rt, buf *b)
{
    if (!b->h)
        return;
    int rc = gms_free(b->ctx, b->h);
    if (step(rt, rc, "gms_free")) {
        /* Either the buffer survived the failed free, or it is gone: a
         * second free settles which, and nothing else is acceptable. */
        rc = gms_free(b->ctx, b->h);
        CHECK(rc == GMS_OK || rc == GMS_E_INVALID_HANDLE);
        verify_clean(rt, "second gms_free");
    } else {
        CHECK_RC(gms_free(b->ctx, b->h), GMS_E_INVALID_HANDLE);
    }
    b->h = GMS_BUF_NULL;
}

/* One run of the scenario with the Nth call failing. Returns whether the
 * Nth call was reached. */
static int scenario(uint64_t n)
{
    cur_n = n;
    failures = 0;
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 * KiB;
    o.chunk_bytes = 1 * MiB;
    /* Return freed memory soon: more backend calls to fail, and less
     * poisoned memory for each gms_verify to check. */
    o.retain_bytes = 64 * KiB;
    o.quarantine_bytes = 64 * KiB;
    o.quarantine_blocks = 4;
    o.log = quiet_log;
    gms_testing_options t = {.fail_nth_call = n};
    gms_runtime *rt = (gms_runtime *)(uintptr_t)1;
    int rc = gms_testing_runtime_open(&rt, &o, &t);
    if (step(NULL, rc, "gms_runtime_open")) {
        CHECK(rt == NULL);
        return 1;
    }

    step(rt, gms_tenant_set_quota(rt, "alpha", 256 * MiB, 1000), "gms_tenant_set_quota");
    gms_context *a = ctx_open(rt, "alpha", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_context *b = ctx_open(rt, "beta", GMS_LEVEL_SECRET, GMS_LANG_RUST);
    gms_context *a2 = ctx_open(rt, "alpha", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    step(rt, gms_tenant_set_quota(rt, "beta", 512 * MiB, GMS_UNLIMITED), "gms_tenant_set_quota");

    enum { NB = 10 };
    buf bufs[NB];
    size_t sizes[NB] = {100, 4096, 300 * KiB + 1, 17 * MiB, 300, 600 * KiB, 600 * KiB, 256, 2 * MiB + 5, 70000};
    for (int i = 0; i < NB; i++) {
        gms_context *c = i % 3 == 0 ? a : i % 3 == 1 ? b : a2;
        alloc_one(rt, &bufs[i], c, sizes[i], i == 4 || i == 6 ? GMS_ALLOC_ZERO : 0);
    }
    for (int i = 0; i < NB; i++)
        round_trip(rt, &bufs[i], (uint8_t)i);

    /* Copy and fill within a context. */
    if (bufs[0].h && bufs[3].h) {
        step(rt, gms_copy(a, bufs[3].h, 1000, bufs[0].h, 0, 100), "gms_copy");
        step(rt, gms_fill(a, bufs[3].h, 5 * MiB, 0x5c, 64 * KiB), "gms_fill");
    }

    /* Free some, then reuse the room. */
    free_one(rt, &bufs[1]);
    free_one(rt, &bufs[3]);
    free_one(rt, &bufs[5]);
    alloc_one(rt, &bufs[1], b, 3 * MiB / 2, 0);
    alloc_one(rt, &bufs[3], a, 900 * KiB, 0);
    round_trip(rt, &bufs[1], 0x31);
    round_trip(rt, &bufs[3], 0x33);
    free_one(rt, &bufs[8]);
    free_one(rt, &bufs[0]);

    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    /* Mid-scenario, with buffers live: the injected failure may land in
     * gms_verify's own device reads. */
    verify_clean(rt, "the scenario");

    /* Close: a2 and b with what they hold (leaks, reclaimed), a after
     * freeing its buffers. */
    for (int i = 0; i < NB; i++)
        if (bufs[i].ctx == a)
            free_one(rt, &bufs[i]);
    gms_context_close(a2);
    gms_context_close(b);
    gms_context_close(a);
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.live_blocks == 0 && st.live_bytes == 0 && st.contexts == 0);
    verify_clean(rt, "closing the contexts");
    int reached = atomic_load(&rt->failpoint.calls) >= n;
    gms_runtime_close(rt);
    return reached;
}

int main(void)
{
    int failing_runs = 0, silent_runs = 0;
    uint64_t n = 1;
    for (; n <= MAX_N; n++) {
        bad = 0;
        int reached = scenario(n);
        if (failures)
            failing_runs++;
        else if (reached)
            silent_runs++; /* a failure the library absorbed (a decommit) */
        if (bad)
            fprintf(stderr, "N=%" PRIu64 ": %d problems\n", n, bad);
        if (!reached && !failures)
            break;
    }
    printf("failing-backend sweep: %" PRIu64 " runs, %d with a failed step, %d absorbed, last "
           "run clean\n",
           n, failing_runs, silent_runs);
    CHECK(n <= MAX_N);
    CHECK(failing_runs >= 5);
    return test_done();
}
