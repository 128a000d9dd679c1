/*
 * failing_windows.c: access windows and checked atomics under injected
 * failures. For N = 1, 2, 3, ... the Nth fallible operation fails in a
 * fixed scenario of three holders of one share (a Python writer, a Julia
 * reader, a Rust atomic holder): windows opened and ended, checked writes
 * and reads inside them, atomics with and without old values, batches
 * with results, releases and frees. Any step may fail, but only cleanly
 * (GMS_E_NO_MEMORY or GMS_E_BACKEND) and changing nothing: a failed begin
 * leaves no window (its end is refused), a failed atomic leaves the
 * counter as it was and old 0; gms_verify passes; nothing leaks (ASan).
 *
 * Two sweeps: the host backend, where the failpoint also fails the core's
 * metadata allocations (gms_testing_runtime_open); and the virtual-memory
 * backend over the fake driver (tests/backend/fake_driver.h) behind the
 * failing wrapper, where event_create, event_record, stream_wait and the
 * pinned result words fail too, and every event made is destroyed.
 */
#include "test.h"
#include "backend/fake_driver.h"
#include "gms/access.h"
#include "gms/testing.h"

/* For the failpoint's call counter: whether the scenario reached call N. */
#include "core/internal.h"

#define MAX_N 5000

static uint64_t cur_n;
static const char *sweep;
static int failures, bad;
/* Failures seen of the kinds each sweep must meet (so that a wrapper that
 * stopped failing them would be noticed). */
static int window_meta_failed, stream_wait_failed, word_take_failed, absorbed;

static void quiet(void *user, gms_log_level level, const char *msg)
{
    (void)user, (void)level, (void)msg;
}

static int step(gms_runtime *rt, int rc, const char *what)
{
    if (rc == GMS_OK)
        return 0;
    failures++;
    int clean = rc == GMS_E_NO_MEMORY || rc == GMS_E_BACKEND;
    if (!clean) {
        fprintf(stderr, "%s N=%" PRIu64 ": %s failed with %s: %s\n", sweep, cur_n, what,
                gms_strerror(rc), gms_error_last());
        bad++;
    }
    CHECK(clean);
    CHECK(gms_error_last()[0] != 0);
    const char *e = gms_error_last();
    window_meta_failed += strstr(e, "out of host memory for the window") != NULL;
    stream_wait_failed += strstr(e, "ordering the window's stream after the last ones") != NULL;
    word_take_failed += strstr(e, "backend atomic of 8 bytes failed: Cannot allocate memory") != NULL;
    if (rt) {
        int v = gms_verify(rt, NULL);
        if (v == GMS_E_BACKEND || v == GMS_E_NO_MEMORY)
            v = gms_verify(rt, NULL);
        CHECK_OK(v);
    }
    return 1;
}

static gms_context *ctx_open(gms_runtime *rt, const char *user, gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "acme";
    d.user = user;
    d.language = lang;
    gms_context *c = NULL;
    if (step(rt, gms_context_open(&c, rt, &d), "gms_context_open"))
        return NULL;
    return c;
}

/* A window of mode on h, with a checked access inside: a failed begin
 * must leave no window, a failed end none either. */
static void window(gms_runtime *rt, gms_context *c, gms_buf h, gms_access mode, void *stream)
{
    if (step(rt, gms_access_begin(c, h, mode, GMS_ACCESS_NOWAIT, stream), "gms_access_begin")) {
        CHECK_RC(gms_access_end(c, h, stream), GMS_E_INVALID_ARG);
        return;
    }
    uint8_t bytes[32];
    memset(bytes, (int)cur_n, sizeof bytes);
    if (mode == GMS_ACCESS_READ_WRITE)
        step(rt, gms_write(c, h, 64, bytes, sizeof bytes), "gms_write");
    else
        step(rt, gms_read(c, h, 64, bytes, sizeof bytes), "gms_read");
    if (step(rt, gms_access_end(c, h, stream), "gms_access_end"))
        CHECK_RC(gms_access_end(c, h, stream), GMS_E_INVALID_ARG); /* ended all the same */
}

/* The scenario on rt (whose open succeeded); streams s1, s2 (NULL on the
 * host). Returns after closing the contexts. */
static void scenario(gms_runtime *rt, void *s1, void *s2)
{
    gms_context *py = ctx_open(rt, "py", GMS_LANG_PYTHON);
    gms_context *jl = ctx_open(rt, "jl", GMS_LANG_JULIA);
    gms_context *rs = ctx_open(rt, "rs", GMS_LANG_RUST);
    gms_buf w = GMS_BUF_NULL, r = GMS_BUF_NULL, a = GMS_BUF_NULL;
    gms_share_id id = 0;
    if (!py || !jl || !rs || step(rt, gms_alloc(py, 4096, GMS_ALLOC_ZERO, &w), "gms_alloc"))
        goto close;
    gms_share_grant g[2] = {{NULL, "jl", GMS_ANY_LANGUAGE, GMS_ACCESS_READ},
                            {NULL, "rs", GMS_ANY_LANGUAGE, GMS_ACCESS_READ_WRITE}};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = g;
    d.ngrants = 2;
    if (step(rt, gms_share(py, w, &d, &id), "gms_share"))
        goto close;
    step(rt, gms_acquire(jl, id, GMS_ACCESS_READ, &r), "gms_acquire");
    step(rt, gms_acquire(rs, id, (gms_access)GMS_ACCESS_ATOMIC, &a), "gms_acquire atomic");

    uint64_t count = 0; /* what the counter at 0 must hold */
    gms_atomic_item items[4];
    for (int i = 0; i < 4; i++)
        items[i] = (gms_atomic_item){0, 1, 0, GMS_ATOMIC_ADD, 8};
    for (int round = 0; round < 3; round++) {
        window(rt, py, w, GMS_ACCESS_READ_WRITE, s1);
        if (r)
            window(rt, jl, r, GMS_ACCESS_READ, s2);
        if (a) {
            uint64_t old = 99;
            if (!step(rt, gms_atomic(rs, a, 0, GMS_ATOMIC_ADD, 8, 1, 0, s2, &old), "gms_atomic")) {
                CHECK(old == count);
                count++;
            } else if (strstr(gms_error_last(), "may have run")) {
                /* Queued, and only the wait for its old value failed. */
                CHECK(old == 0);
                uint64_t v = count; /* the failpoint fails one call: this read works */
                if (!step(rt, gms_read(py, w, 0, &v, 8), "gms_read counter"))
                    CHECK(v == count || v == count + 1);
                count = v;
            } else {
                CHECK(old == 0);
            }
            if (!step(rt, gms_atomic(rs, a, 0, GMS_ATOMIC_ADD, 8, 1, 0, s2, NULL), "gms_atomic"))
                count++;
        }
        /* A batch whose results go to the same buffer, apart from its word. */
        if (!step(rt, gms_atomic_batch(py, w, items, 4, w, 1024, s1), "gms_atomic_batch")) {
            uint64_t res[4] = {0};
            if (!step(rt, gms_read(py, w, 1024, res, sizeof res), "gms_read results"))
                CHECK(res[0] == count && res[3] == count + 3);
            count += 4;
        }
        uint64_t v = 0;
        if (!step(rt, gms_read(py, w, 0, &v, 8), "gms_read counter"))
            CHECK(v == count);
    }
    if (r)
        step(rt, gms_release(jl, r), "gms_release");
    if (a)
        step(rt, gms_release(rs, a), "gms_release");
    step(rt, s1 ? gms_free_async(py, w, s1) : gms_free(py, w), "gms_free");
close:
    gms_context_close(rs);
    gms_context_close(jl);
    gms_context_close(py);
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.live_blocks == 0 && st.contexts == 0);
}

/* ---- the host, metadata allocations included ---- */

static int host_run(uint64_t n)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.log = quiet;
    gms_testing_options t = {.fail_nth_call = n};
    gms_runtime *rt = NULL;
    if (step(NULL, gms_testing_runtime_open(&rt, &o, &t), "gms_runtime_open")) {
        CHECK(rt == NULL);
        return 1;
    }
    scenario(rt, NULL, NULL);
    CHECK_OK(gms_verify(rt, NULL));
    int reached = atomic_load(&rt->failpoint.calls) >= n;
    gms_runtime_close(rt);
    return reached;
}

/* ---- the vmm backend over the fake driver, behind the failing wrapper ---- */

static gms_failpoint fake_fp;

static int failing_fake(gms_backend *inner, gms_backend **out)
{
    inner->ops->destroy(inner);
    gms_backend *vmm;
    int err = fake_vmm_create(&vmm);
    if (err)
        return err;
    return gms__backend_failing_create(vmm, &fake_fp, out);
}

static char streams[3];

static int fake_run(uint64_t n)
{
    fake_fp.nth = n;
    atomic_store(&fake_fp.calls, 0);
    unsigned long long made0 = fake_calls(GMS_DRV_event_create) - fake_fails(GMS_DRV_event_create);
    unsigned long long gone0 = fake_calls(GMS_DRV_event_destroy);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.safety = GMS_SAFETY_OFF; /* the fake driver runs no scrub */
    o.log = quiet;
    gms_runtime *rt = NULL;
    if (!step(NULL, gms_runtime_open(&rt, &o), "gms_runtime_open")) {
        scenario(rt, &streams[1], &streams[2]);
        gms_runtime_close(rt);
    }
    unsigned long long made = fake_calls(GMS_DRV_event_create) - fake_fails(GMS_DRV_event_create);
    CHECK(made - made0 == fake_calls(GMS_DRV_event_destroy) - gone0); /* no event leaked */
    return atomic_load(&fake_fp.calls) >= n;
}

static void run_sweep(const char *name, int (*run)(uint64_t))
{
    sweep = name;
    int failing = 0;
    uint64_t n = 1;
    for (; n <= MAX_N; n++) {
        cur_n = n;
        failures = bad = 0;
        int reached = run(n);
        failing += failures > 0;
        absorbed += reached && !failures;
        if (bad)
            fprintf(stderr, "%s N=%" PRIu64 ": %d problems\n", name, n, bad);
        if (!reached && !failures)
            break;
    }
    printf("%s sweep: %" PRIu64 " runs, %d with a failed step\n", name, n, failing);
    CHECK(n <= MAX_N);
    CHECK(failing >= 10);
}

int main(void)
{
    run_sweep("host", host_run);
    CHECK(window_meta_failed > 0);
    gms__backend_wrap = failing_fake;
    fake_kernels = 1; /* the atomics' kernel, run on the host */
    absorbed = 0;
    run_sweep("vmm", fake_run);
    printf("vmm: %d failed stream waits, %d failed result words, %d failures absorbed "
           "(an end's record: its stream waited for instead)\n",
           stream_wait_failed, word_take_failed, absorbed);
    CHECK(stream_wait_failed > 0 && word_take_failed > 0 && absorbed > 0);
    gms__backend_wrap = NULL;
    return test_done();
}
