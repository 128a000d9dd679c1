/*
 * tests/gpu/ordering.cu: access windows and checked atomics on a GPU
 * (include/gms/access.h, docs/ordering.md). Built by nvcc against libgms
 * (tests/CMakeLists.txt, when nvcc is found) and run by tests/gpu/run.sh:
 *
 *   ordering test     (a) a writer kernel on one stream and a reader kernel
 *                     on another, each holder in its own context of one
 *                     share, ordered only by gms windows: 0 torn or stale
 *                     reads in 10,000 rounds; then the same kernels with no
 *                     windows (the control), which must tear, to show that
 *                     the check sees tears. (b) 1,000,000 atomic adds
 *                     through gms_atomic and gms_atomic_batch from two
 *                     threads holding the buffer in two contexts
 *                     (GMS_ACCESS_ATOMIC): the exact sum; the old values
 *                     that came back are all different.
 *   ordering test --quick   the same, smaller, for compute-sanitizer
 *                     memcheck (which runs kernels one at a time: there the
 *                     control cannot tear and its count is only reported)
 *   ordering bench    RESULT lines: a window's begin+end (host side; target
 *                     <= 2 us), one gms_atomic without and with its old
 *                     value, and a batch's cost per item
 *
 * Without a GPU it says so and exits with the skip code (77).
 */
#include <cuda_runtime.h>

#include <algorithm>
#include <ctime>
#include <pthread.h>
#include <vector>

#include "test.h"
#include "gms/access.h"

#define CK(x)                                                                              \
    do {                                                                                   \
        cudaError_t e_ = (x);                                                              \
        if (e_ != cudaSuccess) {                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static bool quick; /* --quick: under compute-sanitizer */

static uint64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double pct(std::vector<double> v, double p)
{
    std::sort(v.begin(), v.end());
    size_t i = (size_t)(p * (double)v.size());
    return v[i < v.size() ? i : v.size() - 1];
}

static gms_context *open_ctx(gms_runtime *rt, const char *user, gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "acme";
    d.user = user;
    d.language = lang;
    gms_context *c = nullptr;
    if (gms_context_open(&c, rt, &d) != GMS_OK) {
        fprintf(stderr, "context: %s\n", gms_error_last());
        exit(1);
    }
    return c;
}

/* The owner, the share's one writer (a mutable share has one), shares a
 * buffer with every user of its tenant; the other holders acquire it in
 * contexts of their own. */
struct shared_buf {
    gms_context *owner;
    gms_buf buf;
    gms_share_id id;
};

static shared_buf share_new(gms_runtime *rt, const char *user, gms_language lang, size_t bytes,
                            gms_access grant)
{
    shared_buf s = {open_ctx(rt, user, lang), GMS_BUF_NULL, 0};
    CHECK_OK(gms_alloc(s.owner, bytes, GMS_ALLOC_ZERO, &s.buf));
    gms_share_grant g = {"acme", nullptr, GMS_ANY_LANGUAGE, grant};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = &g;
    d.ngrants = 1;
    CHECK_OK(gms_share(s.owner, s.buf, &d, &s.id));
    return s;
}

/* ---- (a) windows between two streams ---------------------------------- */

/* Writes round into every word, block by block in slices, pausing between
 * steps so that the kernel lasts tens of microseconds: a reader running
 * meanwhile sees some words of the last round and some of this one. */
__global__ void writer_kernel(volatile uint32_t *p, size_t n, uint32_t round)
{
    size_t slice = (n + gridDim.x - 1) / gridDim.x;
    size_t lo = (size_t)blockIdx.x * slice, hi = min(lo + slice, n);
    for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        p[i] = round;
        __nanosleep(1000);
    }
}

/* The least and greatest word of the buffer as this kernel sees it. */
__global__ void reader_kernel(const volatile uint32_t *p, size_t n, uint32_t *lo, uint32_t *hi)
{
    uint32_t a = 0xffffffffu, b = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t v = p[i];
        a = min(a, v);
        b = max(b, v);
    }
    atomicMin(lo, a);
    atomicMax(hi, b);
}

enum { WORDS = 1 << 18, GRID = 16, BLOCK = 256 };

struct rounds {
    int n;
    uint32_t *lo, *hi; /* device: per round */
};

static void rounds_reset(rounds *r)
{
    CK(cudaMemset(r->lo, 0xff, r->n * sizeof(uint32_t)));
    CK(cudaMemset(r->hi, 0, r->n * sizeof(uint32_t)));
}

/* Rounds in which the reader saw two different values (torn), and with
 * first_round, those in which it saw anything but its round (stale). */
static void rounds_count(const rounds *r, uint32_t first_round, int *torn, int *stale)
{
    std::vector<uint32_t> lo(r->n), hi(r->n);
    CK(cudaMemcpy(lo.data(), r->lo, r->n * sizeof(uint32_t), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hi.data(), r->hi, r->n * sizeof(uint32_t), cudaMemcpyDeviceToHost));
    *torn = *stale = 0;
    for (int k = 0; k < r->n; k++) {
        *torn += lo[k] != hi[k];
        *stale += lo[k] != first_round + (uint32_t)k || hi[k] != first_round + (uint32_t)k;
    }
}

static void test_windows(gms_runtime *rt)
{
    shared_buf s = share_new(rt, "py-writer", GMS_LANG_PYTHON, WORDS * sizeof(uint32_t),
                             GMS_ACCESS_READ);
    gms_context *py = s.owner, *jl = open_ctx(rt, "jl-reader", GMS_LANG_JULIA);
    gms_buf wb = s.buf, rb;
    CHECK_OK(gms_acquire(jl, s.id, GMS_ACCESS_READ, &rb));
    void *wp = nullptr, *rp = nullptr;
    CHECK_OK(gms_buf_ptr(py, wb, &wp));
    CHECK_OK(gms_buf_ptr(jl, rb, &rp));
    if (!wp || !rp)
        return;
    cudaStream_t ws, rs;
    CK(cudaStreamCreateWithFlags(&ws, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&rs, cudaStreamNonBlocking));
    rounds r = {quick ? 200 : 10000, nullptr, nullptr};
    CK(cudaMalloc(&r.lo, r.n * sizeof(uint32_t)));
    CK(cudaMalloc(&r.hi, r.n * sizeof(uint32_t)));

    /* Windows: round k's reader comes after round k's writer, and round
     * k+1's writer after round k's reader, by gms's events alone (the
     * host never waits: every begin finds the last window ended). */
    rounds_reset(&r);
    int bad_calls = 0;
    uint64_t t0 = now_ns();
    for (int k = 0; k < r.n; k++) {
        bad_calls += gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, GMS_ACCESS_NOWAIT, ws) != GMS_OK;
        writer_kernel<<<GRID, BLOCK, 0, ws>>>((uint32_t *)wp, WORDS, 1u + (uint32_t)k);
        bad_calls += gms_access_end(py, wb, ws) != GMS_OK;
        bad_calls += gms_access_begin(jl, rb, GMS_ACCESS_READ, GMS_ACCESS_NOWAIT, rs) != GMS_OK;
        reader_kernel<<<GRID, BLOCK, 0, rs>>>((const uint32_t *)rp, WORDS, r.lo + k, r.hi + k);
        bad_calls += gms_access_end(jl, rb, rs) != GMS_OK;
    }
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(ws));
    CK(cudaStreamSynchronize(rs));
    double ms = (double)(now_ns() - t0) / 1e6;
    CHECK(bad_calls == 0);
    int torn, stale;
    rounds_count(&r, 1, &torn, &stale);
    printf("windows: %d rounds in %.1f ms: %d torn, %d stale reads\n", r.n, ms, torn, stale);
    printf("RESULT ordering_windows rounds=%d torn=%d stale=%d\n", r.n, torn, stale);
    CHECK(torn == 0);
    CHECK(stale == 0);

    /* The control: the same kernels on the same streams, no windows. */
    rounds_reset(&r);
    const uint32_t base = 1000000;
    for (int k = 0; k < r.n; k++) {
        writer_kernel<<<GRID, BLOCK, 0, ws>>>((uint32_t *)wp, WORDS, base + (uint32_t)k);
        reader_kernel<<<GRID, BLOCK, 0, rs>>>((const uint32_t *)rp, WORDS, r.lo + k, r.hi + k);
    }
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(ws));
    CK(cudaStreamSynchronize(rs));
    int ctorn, cstale;
    rounds_count(&r, base, &ctorn, &cstale);
    printf("control (no windows): %d rounds: %d torn, %d stale reads\n", r.n, ctorn, cstale);
    printf("RESULT ordering_control rounds=%d torn=%d stale=%d\n", r.n, ctorn, cstale);
    if (!quick) /* memcheck runs one kernel at a time: no tears there */
        CHECK(ctorn > 0);

    CK(cudaFree(r.lo));
    CK(cudaFree(r.hi));
    CK(cudaStreamDestroy(ws));
    CK(cudaStreamDestroy(rs));
    CHECK_OK(gms_release(jl, rb));
    CHECK_OK(gms_free(py, wb));
    gms_context_close(jl);
    gms_context_close(py);
}

/* ---- (b) atomics from two contexts ------------------------------------ */

enum { OLDS_EVERY = 500, BATCH = 1000 };

struct adder {
    gms_runtime *rt;
    gms_share_id id;
    const char *user;
    gms_language lang;
    long singles, batches; /* adds of 1 by gms_atomic; batches of BATCH */
    std::vector<uint64_t> olds;
    int failures;
};

static void *adder_main(void *arg)
{
    adder *a = (adder *)arg;
    gms_context *ctx = open_ctx(a->rt, a->user, a->lang);
    gms_buf b;
    if (gms_acquire(ctx, a->id, (gms_access)GMS_ACCESS_ATOMIC, &b) != GMS_OK) {
        fprintf(stderr, "%s: acquire: %s\n", a->user, gms_error_last());
        a->failures++;
        gms_context_close(ctx);
        return nullptr;
    }
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    std::vector<gms_atomic_item> items(BATCH);
    for (auto &it : items)
        it = gms_atomic_item{0, 1, 0, GMS_ATOMIC_ADD, 8};
    long singles = a->singles, batches = a->batches;
    while (singles > 0 || batches > 0) {
        /* Interleaved, so the two kinds of call race each other too. */
        for (int i = 0; i < 100 && singles > 0; i++, singles--) {
            if (singles % OLDS_EVERY == 0) {
                uint64_t old = ~0ull;
                a->failures += gms_atomic(ctx, b, 0, GMS_ATOMIC_ADD, 8, 1, 0, s, &old) != GMS_OK;
                a->olds.push_back(old);
            } else {
                a->failures += gms_atomic(ctx, b, 0, GMS_ATOMIC_ADD, 8, 1, 0, s, nullptr) != GMS_OK;
            }
        }
        if (batches > 0) {
            a->failures += gms_atomic_batch(ctx, b, items.data(), BATCH, GMS_BUF_NULL, 0, s) != GMS_OK;
            batches--;
        }
    }
    if (a->failures)
        fprintf(stderr, "%s: %d calls failed, the last: %s\n", a->user, a->failures, gms_error_last());
    CK(cudaStreamSynchronize(s));
    CK(cudaStreamDestroy(s));
    if (gms_release(ctx, b) != GMS_OK)
        a->failures++;
    gms_context_close(ctx);
    return nullptr;
}

static void test_atomics(gms_runtime *rt)
{
    shared_buf s = share_new(rt, "owner", GMS_LANG_C, 4096, GMS_ACCESS_READ_WRITE);
    /* 1,000,000 adds: each holder 250,000 calls and 250 batches of 1000. */
    long singles = quick ? 2000 : 250000, batches = quick ? 3 : 250;
    adder a[2] = {{rt, s.id, "py-counter", GMS_LANG_PYTHON, singles, batches, {}, 0},
                  {rt, s.id, "rs-counter", GMS_LANG_RUST, singles, batches, {}, 0}};
    uint64_t t0 = now_ns();
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], nullptr, adder_main, &a[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], nullptr);
    double secs = (double)(now_ns() - t0) / 1e9;
    uint64_t want = 2 * (uint64_t)(singles + batches * BATCH), got = 0;
    CHECK_OK(gms_read(s.owner, s.buf, 0, &got, 8));
    printf("atomics: %llu adds from two contexts in %.2f s: sum %llu\n", (unsigned long long)want, secs,
           (unsigned long long)got);
    printf("RESULT ordering_atomics adds=%llu sum=%llu\n", (unsigned long long)want,
           (unsigned long long)got);
    CHECK(a[0].failures == 0 && a[1].failures == 0);
    CHECK(got == want);
    if (!quick)
        CHECK(want == 1000000);
    /* Each old value is the count just before one add: never twice. */
    std::vector<uint64_t> olds = a[0].olds;
    olds.insert(olds.end(), a[1].olds.begin(), a[1].olds.end());
    std::sort(olds.begin(), olds.end());
    CHECK(olds.size() == (size_t)(2 * (singles / OLDS_EVERY)));
    CHECK(std::adjacent_find(olds.begin(), olds.end()) == olds.end());
    CHECK(!olds.empty() && olds.back() < want);
    CHECK_OK(gms_free(s.owner, s.buf));
    gms_context_close(s.owner);
}

/* ---- (c) what a call costs --------------------------------------------- */

static void bench(gms_runtime *rt)
{
    shared_buf s = share_new(rt, "py-writer", GMS_LANG_PYTHON, 1 << 20, GMS_ACCESS_READ);
    gms_context *py = s.owner, *jl = open_ctx(rt, "jl-reader", GMS_LANG_JULIA);
    gms_buf wb = s.buf, rb;
    CHECK_OK(gms_acquire(jl, s.id, GMS_ACCESS_READ, &rb));
    cudaStream_t ws, rs;
    CK(cudaStreamCreateWithFlags(&ws, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&rs, cudaStreamNonBlocking));
    const int N = 10000;
    int fails = 0;

    /* A writer and a reader on two streams, alternating: each begin
     * queues a wait for the other's last end, each end records an event. */
    std::vector<double> wv, rv, same;
    for (int i = 0; i < N + 100; i++) {
        uint64_t t0 = now_ns();
        fails += gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, 0, ws) != GMS_OK;
        fails += gms_access_end(py, wb, ws) != GMS_OK;
        uint64_t t1 = now_ns();
        fails += gms_access_begin(jl, rb, GMS_ACCESS_READ, 0, rs) != GMS_OK;
        fails += gms_access_end(jl, rb, rs) != GMS_OK;
        uint64_t t2 = now_ns();
        if (i >= 100) {
            wv.push_back((double)(t1 - t0) / 1e3);
            rv.push_back((double)(t2 - t1) / 1e3);
        }
    }
    /* One holder on one stream: no waits to queue, one event per end. */
    for (int i = 0; i < N + 100; i++) {
        uint64_t t0 = now_ns();
        fails += gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, 0, ws) != GMS_OK;
        fails += gms_access_end(py, wb, ws) != GMS_OK;
        if (i >= 100)
            same.push_back((double)(now_ns() - t0) / 1e3);
    }
    CK(cudaStreamSynchronize(ws));
    CK(cudaStreamSynchronize(rs));
    printf("RESULT window_begin_end_us writer_two_streams median=%.2f p99=%.2f reader_two_streams "
           "median=%.2f p99=%.2f one_stream median=%.2f p99=%.2f (target <= 2)\n",
           pct(wv, 0.5), pct(wv, 0.99), pct(rv, 0.5), pct(rv, 0.99), pct(same, 0.5), pct(same, 0.99));
    CHECK(fails == 0);

    /* gms_atomic, old == NULL: queued, never waits (synchronised every 256
     * calls, outside the timing, so the launch queue never fills). */
    std::vector<double> av, ov, bv64, bv1k;
    for (int i = 0; i < 20000; i++) {
        uint64_t t0 = now_ns();
        fails += gms_atomic(py, wb, 8, GMS_ATOMIC_ADD, 8, 1, 0, ws, nullptr) != GMS_OK;
        av.push_back((double)(now_ns() - t0) / 1e3);
        if (i % 256 == 255)
            CK(cudaStreamSynchronize(ws));
    }
    CK(cudaStreamSynchronize(ws));
    /* With old: the call waits for the stream to run it. */
    for (int i = 0; i < 2000; i++) {
        uint64_t old = 0, t0 = now_ns();
        fails += gms_atomic(py, wb, 8, GMS_ATOMIC_ADD, 8, 1, 0, ws, &old) != GMS_OK;
        ov.push_back((double)(now_ns() - t0) / 1e3);
    }
    /* Batches, results to a buffer: 64 items (one launch) and 1024. */
    std::vector<gms_atomic_item> items(1024);
    for (size_t i = 0; i < items.size(); i++)
        items[i] = gms_atomic_item{4096 + 8 * (uint64_t)i, 1, 0, GMS_ATOMIC_ADD, 8};
    for (int i = 0; i < 2200; i++) {
        size_t n = i % 2 ? 1024 : 64;
        uint64_t t0 = now_ns();
        fails += gms_atomic_batch(py, wb, items.data(), n, wb, 65536, ws) != GMS_OK;
        double us = (double)(now_ns() - t0) / 1e3;
        if (i >= 200)
            (n == 64 ? bv64 : bv1k).push_back(us);
        if (i % 16 == 15)
            CK(cudaStreamSynchronize(ws));
    }
    CK(cudaStreamSynchronize(ws));
    printf("RESULT atomic_call_us old_null median=%.2f p99=%.2f with_old median=%.2f p99=%.2f\n",
           pct(av, 0.5), pct(av, 0.99), pct(ov, 0.5), pct(ov, 0.99));
    printf("RESULT atomic_batch_us n64 median=%.2f per_item=%.3f n1024 median=%.2f per_item=%.3f\n",
           pct(bv64, 0.5), pct(bv64, 0.5) / 64, pct(bv1k, 0.5), pct(bv1k, 0.5) / 1024);
    CHECK(fails == 0);
    uint64_t v = 0;
    CHECK_OK(gms_read(py, wb, 8, &v, 8));
    CHECK(v == 22000);

    CK(cudaStreamDestroy(ws));
    CK(cudaStreamDestroy(rs));
    CHECK_OK(gms_release(jl, rb));
    CHECK_OK(gms_free(py, wb));
    gms_context_close(jl);
    gms_context_close(py);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "test";
    quick = argc > 2 && strcmp(argv[2], "--quick") == 0;
    if (strcmp(what, "test") != 0 && strcmp(what, "bench") != 0) {
        fprintf(stderr, "usage: %s [test [--quick] | bench]\n", argv[0]);
        return 2;
    }
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
        return test_skip("no GPU");
    CK(cudaSetDevice(0));
    CK(cudaFree(nullptr)); /* the primary context, which gms uses too */
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_CUDA;
    gms_runtime *rt = nullptr;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();
    if (strcmp(what, "bench") == 0) {
        bench(rt);
    } else {
        test_windows(rt);
        test_atomics(rt);
    }
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.leaked_blocks == 0 && st.live_blocks == 0);
    gms_runtime_close(rt);
    return test_done();
}
