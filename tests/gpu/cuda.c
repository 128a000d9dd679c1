/*
 * tests/gpu/cuda.c: the CUDA backend on a real GPU (docs/gpu.md).
 *
 * With no driver or no GPU it checks that the cuda backend is refused
 * with a reason, then exits with the skip code (77): CTest reports it as
 * not run. On a GPU: data round trips through a runtime on
 * GMS_BACKEND_CUDA, the scrub kernel against the host backend's reference
 * scrub on the same layout (unaligned edges, planted corruption,
 * multipass, verify), redzone overflow and underflow caught at free, a
 * write after free caught, held memory following live memory, use from a
 * second thread, gms_verify; and in child processes (a fault leaves the
 * context unusable), a kernel writing through a read-only view and a
 * kernel writing into a chunk's guard space must fault. Sharing on the
 * GPU: an immutable share of whole granules is a read-only device mapping
 * (a kernel writing it through a holder's pointer faults, in a child), a
 * small one is hashed and a raw device write is found; DLPack tensors say
 * kDLCUDA; gms_transfer_async waits for the stream.
 * GMS_GPU_NO_FAULTS=1 skips the faulting children (compute-sanitizer runs).
 */
#include "test.h"
#include "backend/cuda/cuda.h"
#include "core/internal.h"
#include "gms/dlpack.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1ull << 20)

static gms_runtime *open_cuda(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_CUDA;
    o.chunk_bytes = 1ull << 30;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    return rt;
}

static gms_context *open_ctx(gms_runtime *rt, const char *tenant, gms_level level)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = "gpu-test";
    d.level = level;
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    return ctx;
}

static void test_round_trips(void)
{
    gms_runtime *rt = open_cuda();
    if (!rt)
        return;
    CHECK(strcmp(gms_runtime_backend_name(rt), "cuda") == 0);
    CHECK(rt->backend->ops->scrub_async != NULL); /* the stream-ordered scrub is there */
    gms_context *ctx = open_ctx(rt, "t1", GMS_LEVEL_INTERNAL);
    size_t sizes[] = {1, 255, 1000, 4096, 65537, 3 * MiB + 17, 64 * MiB};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        uint8_t *a = malloc(n), *b = malloc(n);
        for (size_t i = 0; i < n; i++)
            a[i] = (uint8_t)test_random();
        gms_buf x, y, z;
        CHECK_OK(gms_alloc(ctx, n, 0, &x));
        CHECK_OK(gms_alloc(ctx, n, 0, &y));
        CHECK_OK(gms_alloc(ctx, n, GMS_ALLOC_ZERO, &z));
        CHECK_OK(gms_read(ctx, z, 0, b, n));
        size_t nz = 0;
        for (size_t i = 0; i < n; i++)
            nz += b[i] != 0;
        CHECK(nz == 0);
        CHECK_OK(gms_write(ctx, x, 0, a, n));
        CHECK_OK(gms_copy(ctx, y, 0, x, 0, n));
        memset(b, 0, n);
        CHECK_OK(gms_read(ctx, y, 0, b, n));
        CHECK(memcmp(a, b, n) == 0);
        if (n > 2) { /* overlapping copy inside one buffer, both directions */
            size_t d = n / 3 ? n / 3 : 1, len = n - d;
            CHECK_OK(gms_copy(ctx, x, d, x, 0, len));
            CHECK_OK(gms_read(ctx, x, 0, b, n));
            CHECK(memcmp(b + d, a, len) == 0);
            CHECK_OK(gms_write(ctx, x, 0, a, n));
            CHECK_OK(gms_copy(ctx, x, 0, x, d, len));
            CHECK_OK(gms_read(ctx, x, 0, b, n));
            CHECK(memcmp(b, a + d, len) == 0);
        }
        CHECK_OK(gms_fill(ctx, y, 0, 0xab, n));
        CHECK_OK(gms_read(ctx, y, 0, b, n));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += b[i] != 0xab;
        CHECK(bad == 0);
        CHECK_RC(gms_write(ctx, x, 1, a, n), GMS_E_OUT_OF_BOUNDS);
        gms_buf_info info;
        CHECK_OK(gms_buf_info_get(ctx, x, &info));
        CHECK(info.device_ptr % GMS_ALIGNMENT == 0);
        CHECK_OK(gms_free(ctx, x));
        CHECK_OK(gms_free(ctx, y));
        CHECK_OK(gms_free(ctx, z));
        free(a);
        free(b);
    }
    gms_report rep;
    CHECK_OK(gms_verify(rt, &rep));
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

/* The scrub kernel against the host backend's scrub, on the same layout:
 * both chunks are 2 MiB aligned, so the position-dependent pattern is the
 * same at the same offset. */
static void test_scrub_matches_host(void)
{
    gms_backend *cb = NULL, *hb = NULL;
    CHECK(gms__backend_cuda_create(0, &cb) == 0);
    CHECK(gms__backend_host_create(&hb) == 0);
    if (!cb || !hb)
        return;
    CHECK(gms__backend_cuda_have_kernels());
    const uint64_t size = 8 * MiB;
    uint64_t cbase = 0, hbase = 0;
    gms_backend_chunk *cc = NULL, *hc = NULL;
    CHECK(cb->ops->reserve(cb, size, 2 * MiB, &cbase, &cc) == 0);
    CHECK(hb->ops->reserve(hb, size, 2 * MiB, &hbase, &hc) == 0);
    CHECK(cc && hc && cbase % (2 * MiB) == 0 && hbase % (2 * MiB) == 0);
    if (!cc || !hc)
        return;
    /* Three commits: the CUDA backend takes each back only whole (the
     * decommit below takes the second, the view the first). */
    CHECK(cb->ops->commit(cb, cc, 0, 2 * MiB) == 0);
    CHECK(cb->ops->commit(cb, cc, 2 * MiB, 2 * MiB) == 0);
    CHECK(cb->ops->commit(cb, cc, 4 * MiB, size - 4 * MiB) == 0);
    CHECK(hb->ops->commit(hb, hc, 0, size) == 0);
    uint8_t *img = malloc(size), *back = malloc(size);
    const uint64_t pattern = 0x1122334455667788ull ^ test_random();
    enum { N = 200 };
    gms_scrub_item hi_[N], ci_[N];
    for (int round = 0; round < 12; round++) {
        /* Random memory, then the pattern over all of it but a few holes. */
        for (uint64_t i = 0; i < size; i++)
            img[i] = (uint8_t)(pattern >> (8 * (i & 7)));
        for (int k = 0; k < 64; k++)
            img[test_random() % size] ^= (uint8_t)(1 + test_random() % 255);
        memcpy((void *)(uintptr_t)hbase, img, size);
        CHECK(cb->ops->write(cb, cbase, img, size) == 0);
        size_t n = 1 + test_random() % N;
        for (size_t i = 0; i < n; i++) {
            gms_scrub_item *it = &hi_[i];
            memset(it, 0, sizeof *it);
            /* Disjoint slots of size/N bytes: items never overlap. */
            uint64_t slot = size / N, s0 = i * slot;
            uint64_t big = round % 3 == 0 ? slot : 600;
            for (int r = 0; r < 2; r++) {
                if (test_random() % 4) {
                    uint64_t lo = s0 + test_random() % (slot / 2);
                    uint64_t len = test_random() % big;
                    it->check_lo[r] = lo;
                    it->check_hi[r] = lo + (len < slot - (lo - s0) ? len : slot - (lo - s0));
                }
                if (test_random() % 4) {
                    uint64_t lo = s0 + test_random() % (slot / 2);
                    uint64_t len = test_random() % big;
                    it->fill_lo[r] = lo;
                    it->fill_hi[r] = lo + (len < slot - (lo - s0) ? len : slot - (lo - s0));
                }
            }
            /* One fill range may overlap a check range of the same item:
             * the check must see the memory before the fill. */
            it->passes = test_random() % 3 == 0 ? GMS_SCRUB_MULTIPASS : 0;
            it->verify = test_random() % 2;
            ci_[i] = *it;
            for (int r = 0; r < 2; r++) {
                ci_[i].check_lo[r] += cbase, ci_[i].check_hi[r] += cbase;
                ci_[i].fill_lo[r] += cbase, ci_[i].fill_hi[r] += cbase;
                hi_[i].check_lo[r] += hbase, hi_[i].check_hi[r] += hbase;
                hi_[i].fill_lo[r] += hbase, hi_[i].fill_hi[r] += hbase;
            }
        }
        CHECK(hb->ops->scrub(hb, hi_, n, pattern, 42) == 0);
        int err = cb->ops->scrub(cb, ci_, n, pattern, 42);
        CHECK(err == 0);
        if (err)
            fprintf(stderr, "scrub: %s\n", gms__backend_cuda_why());
        size_t mism = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t hb_ = hi_[i].bad ? hi_[i].bad - hbase : 0, cb_ = ci_[i].bad ? ci_[i].bad - cbase : 0;
            uint64_t hv = hi_[i].verify_bad ? hi_[i].verify_bad - hbase : 0;
            uint64_t cv = ci_[i].verify_bad ? ci_[i].verify_bad - cbase : 0;
            if (hb_ != cb_ || hv != cv) {
                if (mism++ < 5)
                    fprintf(stderr, "round %d item %zu: bad host %llu cuda %llu, verify %llu %llu\n",
                            round, i, (unsigned long long)hb_, (unsigned long long)cb_,
                            (unsigned long long)hv, (unsigned long long)cv);
            }
        }
        CHECK(mism == 0);
        CHECK(cb->ops->read(cb, back, cbase, size) == 0);
        size_t diff = 0;
        for (uint64_t i = 0; i < size; i++)
            diff += back[i] != ((uint8_t *)(uintptr_t)hbase)[i];
        CHECK(diff == 0);
        if (diff)
            fprintf(stderr, "round %d: %zu bytes differ from the host scrub\n", round, diff);
    }
    /* A large fill (past the tile and the grid) and a check of it. */
    gms_scrub_item one;
    memset(&one, 0, sizeof one);
    one.fill_lo[0] = cbase + 3;
    one.fill_hi[0] = cbase + size - 5;
    one.verify = 1;
    CHECK(cb->ops->scrub(cb, &one, 1, pattern, 7) == 0 && one.verify_bad == 0);
    memset(&one, 0, sizeof one);
    one.check_lo[0] = cbase + 3;
    one.check_hi[0] = cbase + size - 5;
    CHECK(cb->ops->scrub(cb, &one, 1, pattern, 7) == 0 && one.bad == 0);
    uint8_t z = 0;
    CHECK(cb->ops->write(cb, cbase + size - 6, &z, 1) == 0);
    CHECK(cb->ops->scrub(cb, &one, 1, pattern, 7) == 0 && one.bad == cbase + size - 6);
    /* Decommit, recommit: new memory reads as zeros. Half a commit is
     * refused, and changes nothing. */
    CHECK(cb->ops->decommit(cb, cc, 4 * MiB, 2 * MiB) == EINVAL);
    CHECK(cb->ops->decommit(cb, cc, 2 * MiB, 2 * MiB) == 0);
    CHECK(cb->ops->commit(cb, cc, 2 * MiB, 2 * MiB) == 0);
    CHECK(cb->ops->read(cb, back, cbase + 2 * MiB, 2 * MiB) == 0);
    size_t nz = 0;
    for (uint64_t i = 0; i < 2 * MiB; i++)
        nz += back[i] != 0;
    CHECK(nz == 0);
    /* A read-only view shows the same memory. */
    uint64_t view = 0;
    CHECK(cb->ops->map_view_readonly(cb, cc, 0, 2 * MiB, &view) == 0);
    CHECK(cb->ops->write(cb, cbase + 100, "hello", 5) == 0);
    char got[6] = {0};
    CHECK(cb->ops->read(cb, got, view + 100, 5) == 0 && memcmp(got, "hello", 5) == 0);
    cb->ops->unmap_view(cb, view, 2 * MiB);
    free(img);
    free(back);
    cb->ops->release(cb, cc);
    hb->ops->release(hb, hc);
    cb->ops->destroy(cb);
    hb->ops->destroy(hb);
}

static int violations[8];
static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    if ((unsigned)v->kind < 8)
        violations[v->kind]++;
}

static void test_detection(void)
{
    gms_runtime *rt = open_cuda();
    if (!rt)
        return;
    CHECK_OK(gms_on_violation(rt, on_violation, NULL));
    gms_context *ctx = open_ctx(rt, "t2", GMS_LEVEL_CONFIDENTIAL);
    gms_backend *be = rt->backend;
    gms_buf a, b, c;
    gms_buf_info ia, ib, ic;
    CHECK_OK(gms_alloc(ctx, 1000, 0, &a));
    CHECK_OK(gms_alloc(ctx, 1000, 0, &b));
    CHECK_OK(gms_alloc(ctx, 5000, 0, &c));
    CHECK_OK(gms_buf_info_get(ctx, a, &ia));
    CHECK_OK(gms_buf_info_get(ctx, b, &ib));
    CHECK_OK(gms_buf_info_get(ctx, c, &ic));
    uint8_t x = 0x00;
    /* The frees' scrubs run on the device after the free returns: their
     * findings come through the callback, here gathered by gms_sync. */
    CHECK_OK(gms_sync(rt));
    /* One byte past a: an overflow, found by a's scrub. */
    CHECK(be->ops->write(be, ia.device_ptr + 1000, &x, 1) == 0);
    CHECK_OK(gms_free(ctx, a));
    CHECK_OK(gms_sync(rt));
    CHECK(violations[GMS_VIOLATION_OVERFLOW] == 1);
    /* One byte before c (c follows b): an underflow. */
    CHECK(ic.device_ptr > ib.device_ptr);
    CHECK(be->ops->write(be, ic.device_ptr - 1, &x, 1) == 0);
    CHECK_OK(gms_free(ctx, c));
    CHECK_OK(gms_sync(rt));
    CHECK(violations[GMS_VIOLATION_UNDERFLOW] == 1);
    /* A write after free into quarantined b, after its scrub ran:
     * gms_verify finds it. */
    CHECK_OK(gms_free(ctx, b));
    CHECK_OK(gms_sync(rt));
    CHECK(be->ops->write(be, ib.device_ptr + 10, &x, 1) == 0);
    CHECK_RC(gms_verify(rt, NULL), GMS_E_CORRUPTION);
    CHECK(violations[GMS_VIOLATION_WRITE_AFTER_FREE] + violations[GMS_VIOLATION_FREE_MEMORY] >= 1);
    /* Re-armed: the next walk is clean. */
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

static void test_held_follows_live(void)
{
    gms_runtime *rt = open_cuda();
    if (!rt)
        return;
    gms_context *ctx = open_ctx(rt, "t3", GMS_LEVEL_SECRET);
    enum { K = 48 };
    gms_buf bufs[K];
    for (int i = 0; i < K; i++)
        CHECK_OK(gms_alloc(ctx, 16 * MiB, 0, &bufs[i]));
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    /* Live bytes count whole blocks (the size rounded up with its redzone). */
    CHECK(st.live_bytes >= K * 16 * MiB && st.live_bytes <= K * (16 * MiB + 4096));
    CHECK(st.held_bytes >= st.live_bytes && st.held_bytes <= st.live_bytes + st.live_bytes / 8 + 8 * MiB);
    printf("held %.1f MiB for %.1f MiB live\n", (double)st.held_bytes / (double)MiB,
           (double)st.live_bytes / (double)MiB);
    for (int i = 0; i < K; i++)
        CHECK_OK(gms_free(ctx, bufs[i]));
    /* Freed granules stay mapped while the recent peak holds (a training
     * loop allocates them again next step, with no mapping and no wait);
     * gms_trim returns them at once. */
    usleep(150 * 1000);
    gms_buf one;
    CHECK_OK(gms_alloc(ctx, 4096, 0, &one));
    CHECK_OK(gms_free(ctx, one));
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.live_bytes == 0);
    CHECK(st.held_bytes >= K * 16 * MiB);
    CHECK_OK(gms_trim(rt));
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.held_bytes <= 24 * MiB);
    if (st.held_bytes > 24 * MiB)
        fprintf(stderr, "held after freeing all: %llu\n", (unsigned long long)st.held_bytes);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

static void *thread_main(void *arg)
{
    gms_context *ctx = arg;
    char buf[64] = "from another thread", back[64] = {0};
    gms_buf b;
    if (gms_alloc(ctx, sizeof buf, 0, &b) != GMS_OK)
        return (void *)1;
    int ok = gms_write(ctx, b, 0, buf, sizeof buf) == GMS_OK &&
             gms_read(ctx, b, 0, back, sizeof back) == GMS_OK && memcmp(buf, back, sizeof buf) == 0;
    gms_free(ctx, b);
    return ok ? NULL : (void *)1;
}

static void test_threads(void)
{
    gms_runtime *rt = open_cuda();
    if (!rt)
        return;
    gms_context *ctx = open_ctx(rt, "t4", GMS_LEVEL_INTERNAL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, thread_main, ctx) == 0);
    for (int i = 0; i < 4; i++) {
        void *r = (void *)1;
        pthread_join(t[i], &r);
        CHECK(r == NULL);
    }
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

/* ---- sharing on the GPU ---- */

static unsigned immutable_reports;
static void on_immutable(void *user, const gms_violation *v)
{
    (void)user;
    immutable_reports += v->kind == GMS_VIOLATION_IMMUTABLE_WRITE;
}

static void test_sharing(void)
{
    gms_runtime *rt = open_cuda();
    CHECK_OK(gms_on_violation(rt, on_immutable, NULL));
    gms_context *owner = open_ctx(rt, "gpu-share", GMS_LEVEL_INTERNAL);
    gms_context *reader = open_ctx(rt, "gpu-share", GMS_LEVEL_PUBLIC);
    gms_share_grant g = {NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = &g;
    d.ngrants = 1;
    d.immutable = 1;

    /* Whole granules: a read-only view, readable by kernels and copies. */
    gms_buf b, r;
    gms_share_id id;
    CHECK_OK(gms_alloc(owner, 5 * MiB, GMS_ALLOC_PAGES, &b));
    CHECK_OK(gms_fill(owner, b, 0, 0x3c, 5 * MiB));
    CHECK_OK(gms_share(owner, b, &d, &id));
    CHECK_OK(gms_acquire(reader, id, GMS_ACCESS_READ, &r));
    gms_buf_info info;
    CHECK_OK(gms_buf_info(reader, r, &info));
    CHECK(info.read_only_view && info.device_ptr % (2 * MiB) == 0);
    CHECK_RC(gms_write(owner, b, 0, "x", 1), GMS_E_READ_ONLY);
    unsigned char got[64];
    CHECK_OK(gms_read(reader, r, 5 * MiB - 64, got, 64));
    CHECK(got[0] == 0x3c && got[63] == 0x3c);
    unsigned char host[64];
    CHECK(rt->backend->ops->read(rt->backend, host, info.device_ptr + 4096, 64) == 0 &&
          host[0] == 0x3c);
    DLManagedTensorVersioned *t = NULL;
    CHECK_OK(gms_dlpack_export(reader, r, NULL, &t));
    CHECK(t && t->dl_tensor.device.device_type == kDLCUDA &&
          (t->flags & DLPACK_FLAG_BITMASK_READ_ONLY) && t->dl_tensor.data == (void *)(uintptr_t)info.device_ptr);
    CHECK_OK(gms_release(owner, b));
    CHECK_OK(gms_release(reader, r));
    t->deleter(t); /* the last reference: the view goes, the memory is wiped */
    CHECK_OK(gms_verify(rt, NULL));

    /* A small block: hashed; a raw device write is found. */
    gms_buf pad, s;
    CHECK_OK(gms_alloc(owner, 1000, 0, &pad));
    CHECK_OK(gms_alloc(owner, 5000, 0, &s));
    CHECK_OK(gms_fill(owner, s, 0, 0x11, 5000));
    void *raw;
    CHECK_OK(gms_buf_ptr(owner, s, &raw));
    CHECK_OK(gms_share(owner, s, &d, &id));
    CHECK_OK(gms_buf_info(owner, s, &info));
    CHECK(info.immutable && !info.read_only_view);
    CHECK_OK(gms_verify(rt, NULL));
    unsigned char evil = 0x12;
    CHECK(rt->backend->ops->write(rt->backend, (uint64_t)(uintptr_t)raw + 4321, &evil, 1) == 0);
    unsigned before = immutable_reports;
    CHECK_RC(gms_verify(rt, NULL), GMS_E_CORRUPTION);
    CHECK(immutable_reports == before + 1);
    CHECK_RC(gms_release(owner, s), GMS_E_CORRUPTION);
    CHECK_OK(gms_free(owner, pad));

    /* A transfer ordered after a stream's work: the receiver reads what
     * the stream wrote. (The stream here is the default stream.) */
    gms_buf a, moved;
    CHECK_OK(gms_alloc(owner, 1 * MiB, 0, &a));
    CHECK_OK(gms_fill(owner, a, 0, 0x5e, 1 * MiB));
    CHECK_OK(gms_transfer_async(owner, a, reader, NULL, &moved));
    CHECK_OK(gms_read(reader, moved, 1 * MiB - 1, got, 1));
    CHECK(got[0] == 0x5e);
    CHECK_OK(gms_free(reader, moved));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(owner);
    gms_context_close(reader);
    gms_runtime_close(rt);
}

/* ---- children that must fault ---- */

/* A holder of an immutable share writes through its raw pointer with a
 * kernel (the scrub's fill): the pointer is a read-only mapping. */
static int child_share_view(void)
{
    gms_runtime *rt = open_cuda();
    gms_context *owner = open_ctx(rt, "gpu-share", GMS_LEVEL_INTERNAL);
    gms_context *reader = open_ctx(rt, "gpu-share", GMS_LEVEL_PUBLIC);
    gms_buf b, r;
    gms_share_id id;
    gms_share_grant g = {NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = &g;
    d.ngrants = 1;
    d.immutable = 1;
    void *view;
    gms_buf_info info;
    if (gms_alloc(owner, 3 * MiB, GMS_ALLOC_PAGES, &b) || gms_share(owner, b, &d, &id) ||
        gms_acquire(reader, id, GMS_ACCESS_READ, &r) || gms_buf_ptr(reader, r, &view) ||
        gms_buf_info(reader, r, &info) || !info.read_only_view)
        return 3;
    gms_scrub_item it;
    memset(&it, 0, sizeof it);
    it.fill_lo[0] = (uint64_t)(uintptr_t)view + 8192;
    it.fill_hi[0] = it.fill_lo[0] + 4096;
    int err = rt->backend->ops->scrub(rt->backend, &it, 1, 0x0102030405060708ull, 0);
    printf("child share_view: scrub through the share's pointer returned %d: %s\n", err,
           gms__backend_cuda_why());
    fflush(stdout);
    return err != 0 ? 0 : 1;
}

static int child(const char *what)
{
    if (strcmp(what, "share_view") == 0)
        return child_share_view();
    gms_backend *be = NULL;
    if (gms__backend_cuda_create(0, &be) != 0)
        return 3;
    uint64_t base = 0;
    gms_backend_chunk *c = NULL;
    if (be->ops->reserve(be, 4 * MiB, 2 * MiB, &base, &c) || be->ops->commit(be, c, 0, 2 * MiB) ||
        be->ops->commit(be, c, 2 * MiB, 2 * MiB)) /* the view takes the first whole */
        return 3;
    gms_scrub_item it;
    memset(&it, 0, sizeof it);
    if (strcmp(what, "readonly") == 0) {
        uint64_t view = 0;
        if (be->ops->map_view_readonly(be, c, 0, 2 * MiB, &view))
            return 3;
        /* Reading through the view works (a check kernel). */
        it.check_lo[0] = view;
        it.check_hi[0] = view + 4096;
        if (be->ops->scrub(be, &it, 1, 0, 0) != 0)
            return 4;
        memset(&it, 0, sizeof it);
        it.fill_lo[0] = view;
        it.fill_hi[0] = view + 4096;
    } else { /* guard: just below the chunk */
        it.fill_lo[0] = base - 4096;
        it.fill_hi[0] = base;
    }
    int err = be->ops->scrub(be, &it, 1, 0x0102030405060708ull, 0);
    printf("child %s: scrub returned %d: %s\n", what, err, gms__backend_cuda_why());
    fflush(stdout);
    return err != 0 ? 0 : 1; /* 0: it faulted, as it must */
}

static void test_faults(const char *self)
{
    const char *kinds[] = {"readonly", "guard", "share_view"};
    for (int k = 0; k < 3; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(self, self, "--child", kinds[k], (char *)NULL);
            _exit(5);
        }
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "fault child %s: status 0x%x\n", kinds[k], status);
    }
}

/* ---- a free ordered after a stream (gms_free_async) ---- */

static unsigned async_violations;
static void count_violation(void *user, const gms_violation *v)
{
    (void)user;
    (void)v;
    async_violations++;
}

/* The caller's stream writes the buffer for a while; gms_free_async must
 * keep the scrub (poison) and the quarantine check after those writes: a
 * write landing after the poison would be reported as a write after free. */
static void test_free_async(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        CHECK(!"libcuda.so.1 loads");
        return;
    }
    typedef int (*retain_fn)(void **, int);
    typedef int (*setcur_fn)(void *);
    typedef int (*stream_fn)(void **, unsigned);
    typedef int (*memset_fn)(uint64_t, unsigned char, size_t, void *);
    typedef int (*sync_fn)(void *);
    retain_fn retain = (retain_fn)dlsym(lib, "cuDevicePrimaryCtxRetain");
    setcur_fn setcur = (setcur_fn)dlsym(lib, "cuCtxSetCurrent");
    stream_fn mkstream = (stream_fn)dlsym(lib, "cuStreamCreate");
    memset_fn memset8 = (memset_fn)dlsym(lib, "cuMemsetD8Async");
    sync_fn destroy = (sync_fn)dlsym(lib, "cuStreamDestroy_v2");
    CHECK(retain && setcur && mkstream && memset8 && destroy);
    if (!retain || !setcur || !mkstream || !memset8 || !destroy)
        return;
    gms_runtime *rt = open_cuda();
    if (!rt)
        return;
    CHECK_OK(gms_on_violation(rt, count_violation, NULL));
    gms_context *ctx = open_ctx(rt, "t5", GMS_LEVEL_INTERNAL);
    void *pctx = NULL, *stream = NULL;
    CHECK(retain(&pctx, 0) == 0 && setcur(pctx) == 0);
    CHECK(mkstream(&stream, 1 /* non-blocking */) == 0);
    const size_t size = 256 * MiB;
    for (int round = 0; round < 8; round++) {
        gms_buf b;
        void *p = NULL;
        CHECK_OK(gms_alloc(ctx, size, 0, &b));
        CHECK_OK(gms_buf_ptr(ctx, b, &p));
        CHECK(setcur(pctx) == 0); /* gms leaves the thread as it found it */
        for (int k = 0; k < 16; k++) /* about 1.5 ms of writes */
            CHECK(memset8((uint64_t)(uintptr_t)p, (unsigned char)(k + 1), size, stream) == 0);
        /* GMS_GPU_UNORDERED=1 frees without the stream, to show what the
         * ordering prevents (writes landing after the poison). */
        if (getenv("GMS_GPU_UNORDERED"))
            CHECK_OK(gms_free(ctx, b));
        else
            CHECK_OK(gms_free_async(ctx, b, stream));
        CHECK_RC(gms_free(ctx, b), GMS_E_INVALID_HANDLE); /* dead at once */
    }
    gms_context_close(ctx); /* drains the quarantine: every block checked */
    printf("free_async: %u violations over 8 %s frees of 256 MiB\n", async_violations,
           getenv("GMS_GPU_UNORDERED") ? "UNORDERED" : "ordered");
    if (!getenv("GMS_GPU_UNORDERED"))
        CHECK(async_violations == 0);
    CHECK(setcur(pctx) == 0 && destroy(stream) == 0);
    gms_runtime_close(rt);
    dlclose(lib);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return child(argv[2]);
    if (!gms__backend_cuda_available()) {
        /* The explicit request is refused with a reason; auto is host. */
        gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
        o.backend = GMS_BACKEND_CUDA;
        gms_runtime *rt = NULL;
        CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_UNSUPPORTED);
        CHECK(strstr(gms_error_last(), "cuda") != NULL);
        gms_backend *be = NULL;
        CHECK(gms__backend_cuda_create(0, &be) == ENODEV && be == NULL);
        o.backend = GMS_BACKEND_AUTO;
        if (!getenv("GMS_BACKEND") || strcmp(getenv("GMS_BACKEND"), "cuda") != 0) {
            CHECK_OK(gms_runtime_open(&rt, &o));
            CHECK(rt && strcmp(gms_runtime_backend_name(rt), "host") == 0);
            gms_runtime_close(rt);
        }
        char why[512];
        snprintf(why, sizeof why, "no GPU (%s)", gms__backend_cuda_why());
        return test_skip(why);
    }
    test_round_trips();
    test_scrub_matches_host();
    test_detection();
    test_held_follows_live();
    test_threads();
    test_free_async();
    test_sharing();
    if (!getenv("GMS_GPU_NO_FAULTS"))
        test_faults("/proc/self/exe");
    return test_done();
}
