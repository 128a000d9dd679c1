/*
 * host.c: the host backend, the embedded default and what CI tests.
 *
 * A chunk is a sparse memfd mapped into a PROT_NONE reservation that has
 * guard space on both sides, so a wild access near a chunk faults. Commit
 * makes granules read-write (pages appear, zeroed, on first touch);
 * decommit punches the pages out of the memfd, which gives the memory back
 * to the kernel, and makes the range PROT_NONE again, so a stale pointer
 * into returned memory faults instead of silently reading zeros. The memfd
 * also lets the same memory be mapped a second time read-only.
 */
#include "backend/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HOST_GUARD_BYTES (2ull << 20)

struct gms_backend_chunk {
    int fd;
    uint8_t *region;      /* whole reservation, guards included */
    uint64_t region_size;
    uint8_t *base;        /* first byte of the chunk proper */
    uint64_t size;
};

/* Maps the size-byte memfd fd into a fresh PROT_NONE reservation with
 * guards, aligned to align; the chunk owns fd from then on (also on
 * failure, when it is closed). */
int gms__backend_host_chunk_from_fd(int fd, uint64_t size, uint64_t align, uint64_t *base,
                                   gms_backend_chunk **out)
{
    long page = sysconf(_SC_PAGESIZE);
    if (size == 0 || align < (uint64_t)page || (align & (align - 1)) ||
        size % (uint64_t)page) {
        close(fd);
        return EINVAL;
    }
    gms_backend_chunk *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return ENOMEM;
    }
    int err = 0;
    c->fd = fd;
    /* Guards on both sides plus slack to align the base. */
    c->region_size = size + 2 * HOST_GUARD_BYTES + align;
    void *r = mmap(NULL, c->region_size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    c->region = r;
    uintptr_t b = ((uintptr_t)r + HOST_GUARD_BYTES + align - 1) & ~(uintptr_t)(align - 1);
    void *m = mmap((void *)b, size, PROT_NONE, MAP_SHARED | MAP_FIXED, c->fd, 0);
    if (m == MAP_FAILED) {
        err = errno;
        munmap(c->region, c->region_size);
        goto fail;
    }
    c->base = m;
    c->size = size;
    *base = (uint64_t)(uintptr_t)m;
    *out = c;
    return 0;
fail:
    close(c->fd);
    free(c);
    return err ? err : ENOMEM;
}

static int host_reserve(gms_backend *be, uint64_t size, uint64_t align,
                        uint64_t *base, gms_backend_chunk **out)
{
    (void)be;
    long page = sysconf(_SC_PAGESIZE);
    if (size == 0 || size % (uint64_t)page)
        return EINVAL;
    int fd = memfd_create("gms-chunk", MFD_CLOEXEC);
    if (fd < 0)
        return errno;
    if (ftruncate(fd, (off_t)size) != 0) {
        int err = errno;
        close(fd);
        return err;
    }
    return gms__backend_host_chunk_from_fd(fd, size, align, base, out);
}

static void host_release(gms_backend *be, gms_backend_chunk *c)
{
    (void)be;
    if (!c)
        return;
    munmap(c->region, c->region_size);
    close(c->fd);
    free(c);
}

static int host_range_ok(const gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    return len != 0 && off <= c->size && len <= c->size - off;
}

static int host_commit(gms_backend *be, gms_backend_chunk *c, uint64_t off,
                       uint64_t len)
{
    (void)be;
    if (!host_range_ok(c, off, len))
        return EINVAL;
    if (mprotect(c->base + off, len, PROT_READ | PROT_WRITE) != 0)
        return errno;
    return 0;
}

static int host_decommit(gms_backend *be, gms_backend_chunk *c, uint64_t off,
                         uint64_t len)
{
    (void)be;
    if (!host_range_ok(c, off, len))
        return EINVAL;
    if (fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)off, (off_t)len) != 0)
        return errno;
    if (mprotect(c->base + off, len, PROT_NONE) != 0)
        return errno;
    return 0;
}

static int host_map_view_readonly(gms_backend *be, gms_backend_chunk *c,
                                  uint64_t off, uint64_t len, uint64_t *view)
{
    (void)be;
    if (!host_range_ok(c, off, len) || off % (uint64_t)sysconf(_SC_PAGESIZE))
        return EINVAL;
    void *v = mmap(NULL, len, PROT_READ, MAP_SHARED, c->fd, (off_t)off);
    if (v == MAP_FAILED)
        return errno;
    *view = (uint64_t)(uintptr_t)v;
    return 0;
}

static void host_unmap_view(gms_backend *be, uint64_t view, uint64_t len)
{
    (void)be;
    munmap((void *)(uintptr_t)view, len);
}

static int host_write(gms_backend *be, uint64_t dst, const void *src, size_t len)
{
    (void)be;
    memcpy((void *)(uintptr_t)dst, src, len);
    return 0;
}

static int host_read(gms_backend *be, void *dst, uint64_t src, size_t len)
{
    (void)be;
    memcpy(dst, (const void *)(uintptr_t)src, len);
    return 0;
}

static int host_copy(gms_backend *be, uint64_t dst, uint64_t src, size_t len)
{
    (void)be;
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, len);
    return 0;
}

static int host_fill(gms_backend *be, uint64_t dst, int byte, size_t len)
{
    (void)be;
    memset((void *)(uintptr_t)dst, byte, len);
    return 0;
}

/* The scrub reads and writes memory that buggy user code may write through
 * raw pointers at the same moment (that race is the corruption it exists to
 * find), so ThreadSanitizer is told not to report it here. */
#define SCRUB_RACY __attribute__((no_sanitize("thread")))

/* 16-byte vectors (GCC/Clang vector extensions: SSE2 on x86-64, NEON on
 * Arm): the poison is checked and written 64 bytes per step. */
typedef uint64_t v2u64 __attribute__((vector_size(16)));

SCRUB_RACY static inline v2u64 load16(const uint8_t *p)
{
    v2u64 v;
    memcpy(&v, p, 16);
    return v;
}

/* The first address in [lo, hi) not holding the pattern, 0 if none:
 * memory bandwidth bound. */
SCRUB_RACY static uint64_t pattern_find_bad(uint64_t lo, uint64_t hi, uint64_t pattern)
{
    const uint8_t *p = (const uint8_t *)(uintptr_t)lo;
    uint64_t a = lo;
    for (; a < hi && (a & 7); a++, p++)
        if (*p != (uint8_t)(pattern >> (8 * (a & 7))))
            return a;
    const v2u64 pat = {pattern, pattern};
    for (; a + 64 <= hi; a += 64, p += 64) {
        v2u64 acc = (load16(p) ^ pat) | (load16(p + 16) ^ pat) | (load16(p + 32) ^ pat) |
                    (load16(p + 48) ^ pat);
        if (acc[0] | acc[1])
            break; /* find the byte below */
    }
    for (; a + 8 <= hi; a += 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (w != pattern)
            for (unsigned i = 0; i < 8; i++)
                if (p[i] != (uint8_t)(pattern >> (8 * i)))
                    return a + i;
    }
    for (; a < hi; a++, p++)
        if (*p != (uint8_t)(pattern >> (8 * (a & 7))))
            return a;
    return 0;
}

SCRUB_RACY static void pattern_fill(uint64_t lo, uint64_t hi, uint64_t pattern)
{
    uint8_t *p = (uint8_t *)(uintptr_t)lo;
    uint64_t a = lo;
    for (; a < hi && (a & 7); a++, p++)
        *p = (uint8_t)(pattern >> (8 * (a & 7)));
    const v2u64 pat = {pattern, pattern};
    for (; a + 64 <= hi; a += 64, p += 64) {
        memcpy(p, &pat, 16);
        memcpy(p + 16, &pat, 16);
        memcpy(p + 32, &pat, 16);
        memcpy(p + 48, &pat, 16);
    }
    for (; a + 8 <= hi; a += 8, p += 8)
        memcpy(p, &pattern, 8);
    for (; a < hi; a++, p++)
        *p = (uint8_t)(pattern >> (8 * (a & 7)));
}

static void random_fill(uint64_t lo, uint64_t hi, uint64_t seed)
{
    uint64_t x = seed ^ lo;
    for (uint64_t a = lo; a < hi; a += 8) {
        x ^= x << 13; /* xorshift64: fast, and the bytes only need to vary */
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t n = hi - a < 8 ? hi - a : 8;
        memcpy((void *)(uintptr_t)a, &x, n);
    }
}

static int host_scrub(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                      uint64_t seed)
{
    (void)be;
    for (size_t i = 0; i < n; i++) {
        gms_scrub_item *it = &items[i];
        it->bad = 0;
        it->verify_bad = 0;
        for (int r = 0; r < 2; r++) {
            if (it->check_lo[r] >= it->check_hi[r])
                continue;
            uint64_t bad = pattern_find_bad(it->check_lo[r], it->check_hi[r], pattern);
            if (bad) {
                it->bad = it->bad ? it->bad : bad;
                pattern_fill(it->check_lo[r], it->check_hi[r], pattern); /* re-arm */
            }
        }
        for (int r = 0; r < 2; r++) {
            uint64_t lo = it->fill_lo[r], hi = it->fill_hi[r];
            if (lo >= hi)
                continue;
            void *f = (void *)(uintptr_t)lo;
            if (it->passes & GMS_SCRUB_MULTIPASS) {
                memset(f, 0x00, hi - lo);
                memset(f, 0xff, hi - lo);
                random_fill(lo, hi, seed | 1);
                memset(f, 0x00, hi - lo);
                /* Keep the compiler from dropping the passes as dead stores. */
                __asm__ volatile("" : : "r"(f) : "memory");
            }
            pattern_fill(lo, hi, pattern);
            if (it->verify && !it->verify_bad)
                it->verify_bad = pattern_find_bad(lo, hi, pattern);
        }
    }
    return 0;
}

static void host_destroy(gms_backend *be)
{
    free(be);
}

const gms_backend_ops gms__backend_host_ops = {
    .name = "host",
    .props = GMS_BACKEND_UNMAP_WIPES,
    .reserve = host_reserve,
    .release = host_release,
    .commit = host_commit,
    .decommit = host_decommit,
    .map_view_readonly = host_map_view_readonly,
    .unmap_view = host_unmap_view,
    .write = host_write,
    .read = host_read,
    .copy = host_copy,
    .fill = host_fill,
    .scrub = host_scrub,
    .destroy = host_destroy,
};

int gms__backend_host_create(gms_backend **out)
{
    gms_backend *be = malloc(sizeof *be);
    if (!be)
        return ENOMEM;
    be->ops = &gms__backend_host_ops;
    be->granularity = (uint64_t)sysconf(_SC_PAGESIZE); /* mprotect and views work in pages */
    be->no_scrub = NULL;
    *out = be;
    return 0;
}

static int host_available(void)
{
    return 1;
}

static int host_create_on(int device, gms_backend **out)
{
    (void)device;
    return gms__backend_host_create(out);
}

static const char *host_why(void)
{
    return "host memory could not be mapped";
}

const gms_backend_factory gms__backend_host_factory = {
    .name = "host",
    .available = host_available,
    .create = host_create_on,
    .why = host_why,
};
