/*
 * conformance.c: the backend contract (src/backend/backend.h), written once
 * and run against each backend, as one test per backend:
 *
 *   test_backend_conformance host|failing|deferred|vmm|cuda|hip
 *
 * host is the host backend; vmm is the GPU backend's code
 * (src/backend/vmm/vmm.c, what cuda and hip run) over the host-memory fake
 * driver of fake_driver.h, without kernels; failing is the failing wrapper
 * over the host backend (never
 * failing: it must pass every call through unchanged; then each fallible
 * call failed once, which must change nothing); deferred is the test
 * device with streams of backend/deferred.h over the host backend; cuda
 * and hip run on device 0 where one is present and exit with the skip
 * code (77) where not. What is checked:
 *   - the ops table: every required op, the stream-ordered ones all or none;
 *   - reserve: aligned, disjoint chunks; nonsense sizes and alignments refused;
 *   - commit gives memory that reads as zeros (not promised with scrub_async),
 *     again after a decommit; decommit leaves the other granules alone, and
 *     half a commit is refused where commits go back whole;
 *     ranges outside the chunk refused;
 *   - write, read, copy (overlapping both ways at many distances) and fill,
 *     at unaligned edges and across granules, against a host mirror;
 *   - a read-only view shows the same memory, can be read and copied from;
 *   - scrub: the pattern byte at address a is byte (a mod 8) of the pattern;
 *     fill and check ranges to the byte, `bad` the first broken address of a
 *     range, a broken range re-armed and nothing outside it touched, stale
 *     results cleared, batches, multipass and verify;
 *   - the stream-ordered ops when present: growing tickets, fills, checks
 *     collected, zero fills, markers, a refused batch counted as run with
 *     its collect failing, done_upto and ticket_done after quiesce;
 *   - in child processes (a device fault can end the context): reading
 *     memory never committed, decommitted, or in the guard space on either
 *     side of a chunk faults or fails, and so does writing through a
 *     read-only view with write, fill, copy or the scrub.
 */
#include "test.h"
#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "backend/deferred.h"
#include "backend/fake_driver.h"
#include "backend/hip/hip.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static gms_backend *backend;
static const gms_backend_ops *ops;
static uint64_t unit;           /* a multiple of the granularity, 64 KiB at least */
static gms_failpoint failpoint; /* the failing backend's */

#define PATTERN 0x8877665544332211ull

/* ---- opening a backend by name ---- */

/* 0, or ENODEV where that backend is not on this machine (*why says why),
 * or another errno value. */
static int open_backend(const char *name, gms_backend **out, const char **why)
{
    gms_backend *inner = NULL;
    int err;
    *out = NULL;
    *why = "";
    if (strcmp(name, "host") == 0)
        return gms__backend_host_create(out);
    if (strcmp(name, "vmm") == 0)
        return fake_vmm_create(out);
    if (strcmp(name, "failing") == 0 || strcmp(name, "deferred") == 0) {
        if ((err = gms__backend_host_create(&inner)) != 0)
            return err;
        err = name[0] == 'f' ? gms__backend_failing_create(inner, &failpoint, out)
                             : deferred_wrap(inner, out);
        if (err)
            inner->ops->destroy(inner);
        return err;
    }
    /* Both say ENODEV where the driver or the device is missing. */
    if (strcmp(name, "cuda") == 0) {
        err = gms__backend_cuda_create(0, out);
        *why = gms__backend_cuda_why();
        return err == ENOTSUP ? ENODEV : err; /* a GPU without virtual memory */
    }
    if (strcmp(name, "hip") == 0) {
        err = gms__backend_hip_create(0, out);
        *why = gms__backend_hip_why();
        return err == ENOTSUP ? ENODEV : err;
    }
    *why = "unknown backend (host, failing, deferred, vmm, cuda or hip)";
    return EINVAL;
}

/* ---- helpers ---- */

static uint8_t pattern_byte(uint64_t pattern, uint64_t a)
{
    return (uint8_t)(pattern >> (8 * (a & 7)));
}

static void random_bytes(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    return p;
}

/* Reads [addr, addr+len) and compares it with want: 1 when equal. */
static int reads_as(uint64_t addr, const uint8_t *want, size_t len)
{
    uint8_t *got = xmalloc(len);
    int ok = ops->read(backend, got, addr, len) == 0 && memcmp(got, want, len) == 0;
    if (!ok)
        for (size_t i = 0; i < len; i++)
            if (got[i] != want[i]) {
                fprintf(stderr, "  at +%zu: 0x%02x, want 0x%02x\n", i, got[i], want[i]);
                break;
            }
    free(got);
    return ok;
}

/* 1 when every byte of [addr, addr+len) reads as byte. */
static int reads_all(uint64_t addr, size_t len, uint8_t byte)
{
    uint8_t *want = xmalloc(len);
    memset(want, byte, len);
    int ok = reads_as(addr, want, len);
    free(want);
    return ok;
}

/* The first address of [lo, hi) not holding the pattern, 0 if none. */
static uint64_t not_pattern(uint64_t lo, uint64_t hi, uint64_t pattern)
{
    uint8_t *got = xmalloc(hi - lo);
    uint64_t bad = 0;
    if (ops->read(backend, got, lo, hi - lo) != 0)
        bad = lo;
    for (uint64_t a = lo; a < hi && !bad; a++)
        if (got[a - lo] != pattern_byte(pattern, a))
            bad = a;
    free(got);
    return bad;
}

static uint8_t read_byte(uint64_t a)
{
    uint8_t b = 0;
    CHECK(ops->read(backend, &b, a, 1) == 0);
    return b;
}

/* Breaks the pattern at a (writes its complement). */
static void corrupt(uint64_t a, uint64_t pattern)
{
    uint8_t b = (uint8_t)~pattern_byte(pattern, a);
    CHECK(ops->write(backend, a, &b, 1) == 0);
}

static gms_backend_chunk *reserve_chunk(uint64_t size, uint64_t *base)
{
    gms_backend_chunk *c = NULL;
    CHECK(ops->reserve(backend, size, unit, base, &c) == 0 && c);
    return c;
}

static gms_scrub_item item_fill(uint64_t lo, uint64_t hi)
{
    gms_scrub_item it;
    memset(&it, 0, sizeof it);
    it.fill_lo[0] = lo;
    it.fill_hi[0] = hi;
    return it;
}

static gms_scrub_item item_check(uint64_t lo, uint64_t hi)
{
    gms_scrub_item it;
    memset(&it, 0, sizeof it);
    it.check_lo[0] = lo;
    it.check_hi[0] = hi;
    return it;
}

/* ---- the ops table ---- */

static void test_table(void)
{
    CHECK(ops->name && ops->name[0]);
    CHECK((ops->props & ~(uint32_t)(GMS_BACKEND_UNMAP_WIPES | GMS_BACKEND_REMAP_COSTLY |
                                    GMS_BACKEND_WHOLE_COMMITS)) == 0);
    CHECK(ops->reserve && ops->release && ops->commit && ops->decommit);
    CHECK(ops->map_view_readonly && ops->unmap_view);
    CHECK(ops->write && ops->read && ops->copy && ops->fill && ops->scrub && ops->destroy);
    int streams = !!ops->ticket_reserve + !!ops->scrub_async + !!ops->scrub_collect +
                  !!ops->done_upto + !!ops->ticket_done + !!ops->quiesce;
    CHECK(streams == 0 || streams == 6); /* all or none */
    CHECK(!ops->scrub_async || ops->order_after); /* streams: work orders after them */
    uint64_t g = backend->granularity;
    CHECK(g >= 1 && (g & (g - 1)) == 0);
    CHECK(unit % g == 0);
}

/* ---- reserve ---- */

static void test_reserve(void)
{
    uint64_t a = 0, b = 0;
    gms_backend_chunk *ca = reserve_chunk(8 * unit, &a);
    gms_backend_chunk *cb = NULL;
    CHECK(ops->reserve(backend, 4 * unit, 4 * unit, &b, &cb) == 0 && cb);
    CHECK(a % unit == 0);
    CHECK(b % (4 * unit) == 0);
    CHECK(a + 8 * unit <= b || b + 4 * unit <= a); /* disjoint */

    /* Nonsense refused with an errno value, nothing handed out. */
    gms_backend_chunk *no = NULL;
    uint64_t nb = 0;
    CHECK(ops->reserve(backend, 0, unit, &nb, &no) > 0 && !no);
    CHECK(ops->reserve(backend, 8 * unit, 3 * unit, &nb, &no) > 0 && !no);
    if (backend->granularity > 1)
        CHECK(ops->reserve(backend, 8 * unit + backend->granularity / 2, unit, &nb, &no) > 0 &&
              !no);
    if (ca)
        ops->release(backend, ca);
    if (cb)
        ops->release(backend, cb);
}

/* ---- commit and decommit ---- */

static void test_commit(void)
{
    /* backend.h: with scrub_async the core zeroes new memory in stream
     * order, so commit need not. */
    int zeroes = ops->scrub_async == NULL;
    if (!zeroes)
        printf("commit: not promised to zero (the backend has scrub_async)\n");
    uint64_t base = 0;
    gms_backend_chunk *c = reserve_chunk(8 * unit, &base);
    if (!c)
        return;
    CHECK(ops->commit(backend, c, unit, 2 * unit) == 0);
    if (zeroes)
        CHECK(reads_all(base + unit, 2 * unit, 0));
    CHECK(ops->fill(backend, base + unit, 0xa5, 2 * unit) == 0);
    CHECK(reads_all(base + unit, 2 * unit, 0xa5));

    /* Decommit one granule run: the next one keeps its data; committed
     * again, the first reads as zeros. Where commits go back only whole,
     * half of one is refused and changes nothing, and the granules are
     * committed one by one first. */
    if (ops->props & GMS_BACKEND_WHOLE_COMMITS) {
        CHECK(ops->decommit(backend, c, unit, unit) > 0);
        CHECK(ops->decommit(backend, c, 2 * unit, unit) > 0);
        CHECK(ops->decommit(backend, c, 0, 2 * unit) > 0);
        CHECK(reads_all(base + unit, 2 * unit, 0xa5));
        CHECK(ops->decommit(backend, c, unit, 2 * unit) == 0);
        CHECK(ops->commit(backend, c, unit, unit) == 0);
        CHECK(ops->commit(backend, c, 2 * unit, unit) == 0);
        CHECK(ops->fill(backend, base + 2 * unit, 0xa5, unit) == 0);
    }
    CHECK(ops->decommit(backend, c, unit, unit) == 0);
    CHECK(reads_all(base + 2 * unit, unit, 0xa5));
    CHECK(ops->commit(backend, c, unit, unit) == 0);
    if (zeroes)
        CHECK(reads_all(base + unit, unit, 0));

    /* The rest of the chunk, to its last byte. */
    CHECK(ops->commit(backend, c, 0, unit) == 0);
    CHECK(ops->commit(backend, c, 3 * unit, 5 * unit) == 0);
    if (zeroes) {
        CHECK(reads_all(base, unit, 0));
        CHECK(reads_all(base + 3 * unit, 5 * unit, 0));
    }
    CHECK(ops->fill(backend, base + 8 * unit - 1, 0x3c, 1) == 0);
    CHECK(read_byte(base + 8 * unit - 1) == 0x3c);

    /* Ranges outside the chunk, or empty: refused. */
    CHECK(ops->commit(backend, c, 7 * unit, 2 * unit) > 0);
    CHECK(ops->commit(backend, c, 9 * unit, unit) > 0);
    CHECK(ops->commit(backend, c, 0, 0) > 0);
    CHECK(ops->decommit(backend, c, 7 * unit, 2 * unit) > 0);
    CHECK(ops->decommit(backend, c, UINT64_MAX - 10, 20) > 0);
    CHECK(ops->decommit(backend, c, 0, 0) > 0);
    CHECK(read_byte(base + 8 * unit - 1) == 0x3c); /* still there */

    CHECK(ops->decommit(backend, c, 0, 8 * unit) == 0);
    ops->release(backend, c);
}

/* ---- data movement ---- */

static void test_data(void)
{
    uint64_t base = 0;
    gms_backend_chunk *c = reserve_chunk(8 * unit, &base);
    if (!c)
        return;
    const size_t span = 4 * unit;
    CHECK(ops->commit(backend, c, 0, span) == 0);
    uint8_t *mirror = xmalloc(span), *src = xmalloc(span);
    memset(mirror, 0x11, span);
    CHECK(ops->fill(backend, base, 0x11, span) == 0);

    /* Round trips, unaligned and across granules; the bytes around
     * untouched. */
    const struct {
        size_t off, len;
    } rt[] = {{0, 1},         {7, 13},       {4093, 4099}, {unit - 5, 10},
              {unit + 3, 2 * unit - 1},      {span - 1, 1}, {0, span}};
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) {
        random_bytes(src, rt[i].len, 100 + i);
        CHECK(ops->write(backend, base + rt[i].off, src, rt[i].len) == 0);
        memcpy(mirror + rt[i].off, src, rt[i].len);
        CHECK(reads_as(base + rt[i].off, src, rt[i].len));
        CHECK(reads_as(base, mirror, span));
    }

    /* Copies: apart, then overlapping both ways at distances from one byte
     * to more than a granule (memmove's result). */
    CHECK(ops->copy(backend, base + 2 * unit + 1, base + 5, unit + 100) == 0);
    memmove(mirror + 2 * unit + 1, mirror + 5, unit + 100);
    CHECK(reads_as(base, mirror, span));
    const size_t dist[] = {1, 3, 8, 64, 4095, 4096, unit / 2 + 3, unit + 1};
    for (size_t i = 0; i < sizeof dist / sizeof dist[0]; i++) {
        size_t len = unit + 17, lo = 100 + i;
        CHECK(ops->copy(backend, base + lo + dist[i], base + lo, len) == 0); /* forward */
        memmove(mirror + lo + dist[i], mirror + lo, len);
        CHECK(reads_as(base, mirror, span));
        CHECK(ops->copy(backend, base + lo, base + lo + dist[i], len) == 0); /* backward */
        memmove(mirror + lo, mirror + lo + dist[i], len);
        CHECK(reads_as(base, mirror, span));
    }
    CHECK(ops->copy(backend, base + 77, base + 77, 1000) == 0); /* onto itself */
    CHECK(reads_as(base, mirror, span));

    /* Fill: every byte value, unaligned, across granules. */
    const struct {
        size_t off, len;
        int byte;
    } fl[] = {{5, 3 * unit, 0xff}, {unit - 1, 2, 0x00}, {4097, 1, 0x5a}, {0, 64, 0x80}};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
        CHECK(ops->fill(backend, base + fl[i].off, fl[i].byte, fl[i].len) == 0);
        memset(mirror + fl[i].off, fl[i].byte, fl[i].len);
        CHECK(reads_as(base, mirror, span));
    }
    free(mirror);
    free(src);
    CHECK(ops->decommit(backend, c, 0, span) == 0);
    ops->release(backend, c);
}

/* ---- read-only views ---- */

static void test_views(void)
{
    uint64_t base = 0;
    gms_backend_chunk *c = reserve_chunk(8 * unit, &base);
    if (!c)
        return;
    /* The viewed range [unit, 3 * unit) is one commit of its own: where
     * commits go back only whole, a view must cover whole ones too. */
    CHECK(ops->commit(backend, c, 0, unit) == 0);
    CHECK(ops->commit(backend, c, unit, 2 * unit) == 0);
    CHECK(ops->commit(backend, c, 3 * unit, unit) == 0);
    size_t n = 2 * unit;
    uint8_t *data = xmalloc(n);
    random_bytes(data, n, 7);
    CHECK(ops->write(backend, base + unit, data, n) == 0);

    uint64_t v1 = 0, v2 = 0;
    CHECK(ops->map_view_readonly(backend, c, unit, n, &v1) == 0 && v1);
    CHECK(ops->map_view_readonly(backend, c, unit, n, &v2) == 0 && v2);
    CHECK(v1 != base + unit && v1 != v2);
    if (!v1 || !v2) {
        free(data);
        ops->release(backend, c);
        return;
    }
    CHECK(reads_as(v1, data, n));
    CHECK(reads_as(v2, data, n));
    /* One memory: what is written through the chunk shows in the view. */
    const char msg[] = "seen through the view";
    CHECK(ops->write(backend, base + unit + 100, msg, sizeof msg) == 0);
    memcpy(data + 100, msg, sizeof msg);
    CHECK(ops->fill(backend, base + 2 * unit + 7, 0xee, 4096) == 0);
    memset(data + unit + 7, 0xee, 4096);
    CHECK(reads_as(v1, data, n));
    /* A view is a copy's source. */
    CHECK(ops->copy(backend, base + 3 * unit + 5, v1 + 100, sizeof msg) == 0);
    CHECK(reads_as(base + 3 * unit + 5, (const uint8_t *)msg, sizeof msg));
    /* The scrub reads through it (a clean check writes nothing). */
    if (!backend->no_scrub) {
        gms_scrub_item it = item_fill(base + unit + 8192, base + unit + 16384);
        CHECK(ops->scrub(backend, &it, 1, PATTERN, 1) == 0);
        it = item_check(v1 + 8192, v1 + 16384);
        it.bad = 1;
        CHECK(ops->scrub(backend, &it, 1, PATTERN, 1) == 0);
        CHECK(it.bad == 0);
    }

    /* Ranges outside the chunk, or empty: refused. */
    uint64_t v3 = 0;
    CHECK(ops->map_view_readonly(backend, c, 7 * unit, 2 * unit, &v3) > 0);
    CHECK(ops->map_view_readonly(backend, c, 0, 0, &v3) > 0);
    if (ops->props & GMS_BACKEND_WHOLE_COMMITS) {
        CHECK(ops->map_view_readonly(backend, c, unit, unit, &v3) == ENOTSUP);
        CHECK(ops->map_view_readonly(backend, c, 0, 2 * unit, &v3) == ENOTSUP);
    }
    ops->unmap_view(backend, v1, n);
    ops->unmap_view(backend, v2, n);
    CHECK(reads_all(base + 2 * unit + 7, 4096, 0xee)); /* the chunk unchanged */
    free(data);
    CHECK(ops->decommit(backend, c, 0, 4 * unit) == 0);
    ops->release(backend, c);
}

/* ---- scrub ---- */

static void test_scrub(void)
{
    uint64_t base = 0;
    gms_backend_chunk *c = reserve_chunk(8 * unit, &base);
    if (!c)
        return;
    CHECK(ops->commit(backend, c, 0, 4 * unit) == 0);
    gms_scrub_item it[3];
    memset(it, 0, sizeof it);
    if (backend->no_scrub) {
        /* Safety needs the scrub: here it must refuse work, not skip it. */
        printf("scrub: unavailable (%s)\n", backend->no_scrub);
        it[0] = item_fill(base, base + 4096);
        CHECK(ops->scrub(backend, it, 1, PATTERN, 1) != 0);
        ops->release(backend, c);
        return;
    }
    CHECK(ops->scrub(backend, it, 0, PATTERN, 1) == 0); /* nothing to do */

    /* Fill two ranges to the byte; stale results cleared; the bytes
     * around untouched. */
    const uint64_t a = base + 3, a_end = base + 1003, b = base + 2005, b_end = base + 2777;
    CHECK(ops->fill(backend, base, 0x77, 8192) == 0);
    it[0] = item_fill(a, a_end);
    it[0].fill_lo[1] = b;
    it[0].fill_hi[1] = b_end;
    it[0].bad = 0xdead;
    it[0].verify_bad = 0xbeef;
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == 0 && it[0].verify_bad == 0);
    CHECK(not_pattern(a, a_end, PATTERN) == 0);
    CHECK(not_pattern(b, b_end, PATTERN) == 0);
    CHECK(read_byte(a - 1) == 0x77 && read_byte(a_end) == 0x77);
    CHECK(read_byte(b - 1) == 0x77 && read_byte(b_end) == 0x77);

    /* A clean check finds nothing and changes nothing. */
    it[0] = item_check(a, a_end);
    it[0].check_lo[1] = b;
    it[0].check_hi[1] = b_end;
    it[0].bad = 0xdead;
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == 0);
    CHECK(read_byte(a - 1) == 0x77 && read_byte(b_end) == 0x77);

    /* One broken byte: bad names it, the range is re-armed, the byte past
     * its end (not the pattern) is left alone. */
    corrupt(a + 497, PATTERN);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == a + 497);
    CHECK(not_pattern(a, a_end, PATTERN) == 0);
    CHECK(read_byte(a_end) == 0x77 && read_byte(b - 1) == 0x77);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == 0);

    /* Two broken bytes in one range: the first. In the second range only:
     * that one. The first and last bytes of a range count. */
    corrupt(a + 900, PATTERN);
    corrupt(a + 600, PATTERN);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == a + 600);
    corrupt(b_end - 1, PATTERN);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == b_end - 1);
    corrupt(a, PATTERN);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == a);
    corrupt(b + 10, PATTERN); /* both ranges broken: the first address */
    corrupt(a + 10, PATTERN);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == a + 10);
    CHECK(not_pattern(a, a_end, PATTERN) == 0 && not_pattern(b, b_end, PATTERN) == 0);

    /* Against another pattern every range is broken from its first byte. */
    it[0] = item_check(a, a_end);
    CHECK(ops->scrub(backend, it, 1, ~PATTERN, 1) == 0);
    CHECK(it[0].bad == a);
    CHECK(not_pattern(a, a_end, ~PATTERN) == 0); /* re-armed with that one */

    /* A batch: each item its own result. */
    const uint64_t c0 = base + 4096 + 1, c1 = base + 8192 + 2, c2 = base + 12288 + 3;
    it[0] = item_fill(c0, c0 + 3000);
    it[1] = item_fill(c1, c1 + 3000);
    it[2] = item_fill(c2, c2 + 3000);
    CHECK(ops->scrub(backend, it, 3, PATTERN, 1) == 0);
    corrupt(c1 + 1234, PATTERN);
    it[0] = item_check(c0, c0 + 3000);
    it[1] = item_check(c1, c1 + 3000);
    it[2] = item_fill(c2 - 3, c2 + 4000);
    it[2].verify = 1;
    CHECK(ops->scrub(backend, it, 3, PATTERN, 1) == 0);
    CHECK(it[0].bad == 0 && it[1].bad == c1 + 1234 && it[2].bad == 0);
    CHECK(it[2].verify_bad == 0);
    CHECK(not_pattern(c2 - 3, c2 + 4000, PATTERN) == 0);

    /* Multipass and verify across a granule boundary: the pattern at the end. */
    it[0] = item_fill(base + unit - 1000, base + unit + 5000);
    it[0].passes = GMS_SCRUB_MULTIPASS;
    it[0].verify = 1;
    CHECK(ops->scrub(backend, it, 1, PATTERN, 99) == 0);
    CHECK(it[0].verify_bad == 0);
    CHECK(not_pattern(base + unit - 1000, base + unit + 5000, PATTERN) == 0);

    /* A range of several granules, broken at its ends. */
    const uint64_t lo = base + 1, hi = base + 4 * unit - 1;
    it[0] = item_fill(lo, hi);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    it[0] = item_check(lo, hi);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == 0);
    corrupt(hi - 1, PATTERN);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == hi - 1);
    corrupt(base + 2 * unit, PATTERN);
    corrupt(hi - 1, PATTERN);
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == base + 2 * unit);
    CHECK(not_pattern(lo, hi, PATTERN) == 0);

    /* The check runs before the fill of the same item (the synchronous
     * scrub): a broken byte under both is still reported. */
    corrupt(base + 3 * unit + 10, PATTERN);
    it[0] = item_check(base + 3 * unit, base + 3 * unit + 4096);
    it[0].fill_lo[0] = base + 3 * unit;
    it[0].fill_hi[0] = base + 3 * unit + 4096;
    CHECK(ops->scrub(backend, it, 1, PATTERN, 1) == 0);
    CHECK(it[0].bad == base + 3 * unit + 10);
    CHECK(not_pattern(base + 3 * unit, base + 3 * unit + 4096, PATTERN) == 0);

    CHECK(ops->decommit(backend, c, 0, 4 * unit) == 0);
    ops->release(backend, c);
}

/* ---- stream-ordered ops ---- */

static uint64_t ticket(void)
{
    uint64_t t = 0;
    CHECK(ops->ticket_reserve(backend, &t) == 0);
    CHECK(t != 0);
    return t;
}

/* Collects t after it has run; EAGAIN is allowed only before quiesce. */
static int collect(uint64_t t, gms_scrub_item *items, size_t n)
{
    int rc = ops->scrub_collect(backend, t, items, n);
    CHECK(rc == 0 || rc == EAGAIN);
    if (rc == EAGAIN) {
        CHECK(ops->quiesce(backend) == 0);
        rc = ops->scrub_collect(backend, t, items, n);
    }
    return rc;
}

static void test_streams(void)
{
    if (!ops->scrub_async) {
        printf("stream-ordered ops: none\n");
        return;
    }
    if (backend->no_scrub) {
        printf("stream-ordered ops: the scrub is unavailable (%s)\n", backend->no_scrub);
        return;
    }
    uint64_t base = 0;
    gms_backend_chunk *c = reserve_chunk(8 * unit, &base);
    if (!c)
        return;
    CHECK(ops->commit(backend, c, 0, 4 * unit) == 0);
    CHECK(ops->order_after(backend, NULL, 0) == 0);
    CHECK(ops->order_after(backend, NULL, 1) == 0);
    gms_scrub_item it[GMS_SCRUB_ASYNC_MAX + 1];

    /* A fill (never collected), then a check of the same range that finds
     * a broken byte written in between. */
    const uint64_t a = base + 3, a_end = base + 5003;
    uint64_t t1 = ticket();
    it[0] = item_fill(a, a_end);
    CHECK(ops->scrub_async(backend, it, 1, PATTERN, 1, NULL, t1) == 0);
    CHECK(ops->quiesce(backend) == 0);
    CHECK(ops->ticket_done(backend, t1) == 1);
    CHECK(ops->done_upto(backend) >= t1);
    CHECK(not_pattern(a, a_end, PATTERN) == 0);
    corrupt(a + 3999, PATTERN);
    uint64_t t2 = ticket();
    CHECK(t2 > t1);
    it[0] = item_check(a, a_end);
    CHECK(ops->scrub_async(backend, it, 1, PATTERN, 1, NULL, t2) == 0);
    it[0].bad = it[0].verify_bad = 0xdead; /* the results come from collect */
    CHECK(collect(t2, it, 1) == 0);
    CHECK(it[0].bad == a + 3999);
    CHECK(ops->quiesce(backend) == 0);
    CHECK(not_pattern(a, a_end, PATTERN) == 0); /* re-armed */

    /* A zero fill: zeros, not the pattern, and nothing around. */
    const uint64_t z = base + unit + 5, z_end = base + unit + 7005;
    CHECK(ops->fill(backend, z - 64, 0x99, 7000 + 128) == 0);
    uint64_t t3 = ticket();
    CHECK(t3 > t2);
    it[0] = item_fill(z, z_end);
    it[0].zero = 1;
    CHECK(ops->scrub_async(backend, it, 1, PATTERN, 1, NULL, t3) == 0);
    CHECK(ops->quiesce(backend) == 0);
    CHECK(ops->ticket_done(backend, t3) == 1);
    CHECK(reads_all(z, z_end - z, 0));
    CHECK(read_byte(z - 1) == 0x99 && read_byte(z_end) == 0x99);

    /* A batch: a clean check, a broken one, a verified multipass fill. */
    const uint64_t c0 = base + 2 * unit, c1 = c0 + 8192 + 1, c2 = c0 + 16384 + 2;
    uint64_t t4 = ticket();
    it[0] = item_fill(c0, c0 + 4000);
    it[1] = item_fill(c1, c1 + 4000);
    CHECK(ops->scrub_async(backend, it, 2, PATTERN, 1, NULL, t4) == 0);
    CHECK(ops->quiesce(backend) == 0);
    corrupt(c1 + 4000 - 1, PATTERN);
    uint64_t t5 = ticket();
    CHECK(t5 > t4 && t4 > t3);
    it[0] = item_check(c0, c0 + 4000);
    it[1] = item_check(c1, c1 + 4000);
    it[2] = item_fill(c2, c2 + 3 * unit / 4);
    it[2].passes = GMS_SCRUB_MULTIPASS;
    it[2].verify = 1;
    CHECK(ops->scrub_async(backend, it, 3, PATTERN, 5, NULL, t5) == 0);
    for (int i = 0; i < 3; i++)
        it[i].bad = it[i].verify_bad = 0xdead;
    CHECK(collect(t5, it, 3) == 0);
    CHECK(it[0].bad == 0 && it[1].bad == c1 + 4000 - 1 && it[2].bad == 0);
    CHECK(it[0].verify_bad == 0 && it[1].verify_bad == 0 && it[2].verify_bad == 0);
    CHECK(ops->quiesce(backend) == 0);
    CHECK(not_pattern(c2, c2 + 3 * unit / 4, PATTERN) == 0);

    /* Markers, many (the backend's ring wraps if it has one). */
    uint64_t last = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t t = ticket();
        CHECK(t > last && t > t5);
        last = t;
        CHECK(ops->scrub_async(backend, it, 0, PATTERN, 1, NULL, t) == 0);
        if (i % 100 == 99)
            CHECK(ops->quiesce(backend) == 0);
    }
    CHECK(ops->quiesce(backend) == 0);
    CHECK(ops->ticket_done(backend, last) == 1);
    CHECK(ops->done_upto(backend) >= last);

    /* A batch refused (too many items): its ticket counts as run, the
     * tickets after it are not held up, and its collect fails. */
    memset(it, 0, sizeof it);
    uint64_t t6 = ticket();
    CHECK(ops->scrub_async(backend, it, GMS_SCRUB_ASYNC_MAX + 1, PATTERN, 1, NULL, t6) != 0);
    uint64_t t7 = ticket();
    CHECK(ops->scrub_async(backend, it, 0, PATTERN, 1, NULL, t7) == 0);
    CHECK(ops->quiesce(backend) == 0);
    CHECK(ops->ticket_done(backend, t6) == 1);
    CHECK(ops->ticket_done(backend, t7) == 1);
    CHECK(ops->done_upto(backend) >= t7);
    int rc = ops->scrub_collect(backend, t6, it, GMS_SCRUB_ASYNC_MAX + 1);
    CHECK(rc > 0 && rc != EAGAIN);

    CHECK(ops->decommit(backend, c, 0, 4 * unit) == 0);
    ops->release(backend, c);
}

/* ---- the failing wrapper's failures ---- */

/* The next fallible call fails. */
static void fail_next(void)
{
    failpoint.nth = failpoint.calls + 1;
}

static void test_failures(void)
{
    uint64_t base = 0, nb = 0;
    gms_backend_chunk *no = NULL;
    fail_next();
    CHECK(ops->reserve(backend, 8 * unit, unit, &nb, &no) == ENOMEM && !no);
    gms_backend_chunk *c = reserve_chunk(8 * unit, &base);
    if (!c)
        return;
    fail_next();
    CHECK(ops->commit(backend, c, 0, unit) == ENOMEM);
    CHECK(ops->commit(backend, c, 0, unit) == 0); /* the failed one mapped nothing */

    uint8_t data[256], other[256];
    random_bytes(data, sizeof data, 3);
    memset(other, 0x42, sizeof other);
    CHECK(ops->write(backend, base + 10, data, sizeof data) == 0);
    fail_next();
    CHECK(ops->write(backend, base + 10, other, sizeof other) == EIO);
    fail_next();
    CHECK(ops->fill(backend, base + 10, 0x42, sizeof other) == EIO);
    fail_next();
    CHECK(ops->copy(backend, base + 10, base + 1000, sizeof other) == EIO);
    fail_next();
    gms_scrub_item it = item_fill(base + 10, base + 10 + sizeof other);
    CHECK(ops->scrub(backend, &it, 1, PATTERN, 1) == EIO);
    fail_next();
    CHECK(ops->read(backend, other, base + 10, sizeof other) == EIO);
    CHECK(reads_as(base + 10, data, sizeof data)); /* none of them wrote */
    uint64_t v = 0;
    fail_next();
    CHECK(ops->map_view_readonly(backend, c, 0, unit, &v) == EIO && v == 0);
    fail_next();
    CHECK(ops->decommit(backend, c, 0, unit) == EIO);
    CHECK(reads_as(base + 10, data, sizeof data)); /* still mapped */
    failpoint.nth = 0;
    CHECK(ops->decommit(backend, c, 0, unit) == 0);
    ops->release(backend, c);
}

/* ---- what must fault, in child processes ---- */

enum { PROBE_REFUSED = 10, PROBE_SETUP = 3 };

/* The child: sets up, then makes one access that must fault (die of
 * SIGSEGV or SIGBUS, as on the host) or be refused (a non-zero return,
 * as from a device). Exit 0: the access went through. */
static int probe(const char *name, const char *what)
{
    const char *why;
    if (open_backend(name, &backend, &why) != 0)
        return PROBE_SETUP;
    ops = backend->ops;
    unit = backend->granularity < (64u << 10) ? 64u << 10 : backend->granularity;
    alarm(120);
    /* Die of the signal itself (a sanitizer would catch it and exit). */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    uint64_t base = 0, view = 0;
    gms_backend_chunk *c = NULL;
    /* Two commits: where commits go back only whole, the view and the
     * decommit below each take one. */
    if (ops->reserve(backend, 8 * unit, unit, &base, &c) ||
        ops->commit(backend, c, 2 * unit, unit) || ops->commit(backend, c, 3 * unit, unit))
        return PROBE_SETUP;
    uint8_t b[64] = {1};
    if (strncmp(what, "view_", 5) == 0 &&
        ops->map_view_readonly(backend, c, 2 * unit, unit, &view))
        return PROBE_SETUP;
    int rc;
    if (strcmp(what, "uncommitted") == 0) {
        rc = ops->read(backend, b, base + unit, 1);
    } else if (strcmp(what, "guard_below") == 0) {
        rc = ops->read(backend, b, base - 1, 1);
    } else if (strcmp(what, "guard_above") == 0) {
        rc = ops->read(backend, b, base + 8 * unit, 1);
    } else if (strcmp(what, "decommitted") == 0) {
        if (ops->decommit(backend, c, 2 * unit, unit))
            return PROBE_SETUP;
        rc = ops->read(backend, b, base + 2 * unit + 100, 1);
    } else if (strcmp(what, "view_write") == 0) {
        rc = ops->write(backend, view + 100, b, sizeof b);
    } else if (strcmp(what, "view_fill") == 0) {
        rc = ops->fill(backend, view + 100, 0x42, 64);
    } else if (strcmp(what, "view_copy") == 0) {
        rc = ops->copy(backend, view + 100, base + 3 * unit, 64);
    } else if (strcmp(what, "view_scrub") == 0) {
        gms_scrub_item it = item_fill(view + 4096, view + 8192);
        rc = ops->scrub(backend, &it, 1, PATTERN, 1);
    } else {
        return PROBE_SETUP;
    }
    printf("probe %s on %s: returned %d\n", what, name, rc);
    fflush(stdout);
    return rc != 0 ? PROBE_REFUSED : 0;
}

static void test_faults(const char *name)
{
    const char *what[] = {"uncommitted", "guard_below", "guard_above", "decommitted",
                          "view_write",  "view_fill",   "view_copy",   "view_scrub"};
    for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
        if (backend->no_scrub && strcmp(what[i], "view_scrub") == 0)
            continue;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", "test_backend_conformance", "--probe", name, what[i],
                  (char *)NULL);
            _exit(PROBE_SETUP);
        }
        int st = 0;
        CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
        int faulted = WIFSIGNALED(st) && (WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS);
        int refused = WIFEXITED(st) && WEXITSTATUS(st) == PROBE_REFUSED;
        CHECK(faulted || refused);
        if (!faulted && !refused)
            fprintf(stderr, "probe %s: the access went through (status 0x%x)\n", what[i], st);
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--probe") == 0)
        _exit(probe(argv[2], argv[3])); /* no leak check: the child frees nothing */
    if (argc != 2) {
        fprintf(stderr, "usage: %s host|failing|deferred|vmm|cuda|hip\n", argv[0]);
        return 2;
    }
    const char *name = argv[1], *why;
    int err = open_backend(name, &backend, &why);
    if (err == ENODEV) {
        char msg[512];
        snprintf(msg, sizeof msg, "no %s backend here (%s)", name, why);
        return test_skip(msg);
    }
    CHECK(err == 0 && backend);
    if (err) {
        fprintf(stderr, "%s: %s\n", name, why);
        return test_done();
    }
    ops = backend->ops;
    unit = backend->granularity < (64u << 10) ? 64u << 10 : backend->granularity;
    printf("backend %s (ops \"%s\"): granularity %llu, unit %llu, scrub %s, stream-ordered ops %s\n",
           name, ops->name, (unsigned long long)backend->granularity,
           (unsigned long long)unit, backend->no_scrub ? "unavailable" : "yes",
           ops->scrub_async ? "yes" : "no");
    test_table();
    test_reserve();
    test_commit();
    test_data();
    test_views();
    test_scrub();
    test_streams();
    if (strcmp(name, "failing") == 0)
        test_failures();
    test_faults(name);
    ops->destroy(backend);
    return test_done();
}
