/*
 * scrub.cu: the GPU backend's safety kernels, one source for CUDA (nvcc
 * builds it into the fatbin embedded in libgms) and HIP (hipcc builds it
 * into the code object named by GMS_HIP_CODE_OBJECT, docs/hip.md); what
 * the two spell differently is in gpu_compat.h.
 *
 * gms_scrub_kernel is one cooperative launch per batch of gms_scrub_item
 * (backend.h), in phases separated by grid-wide barriers:
 *
 *   1. check: every check range is compared with the poison pattern; the
 *      lowest changed address of each item is kept (atomicMin) and each
 *      changed 16-byte word is written back with the pattern (re-armed);
 *   2. multipass wipe (only items that ask): zeros, ones, random, zeros,
 *      each pass over all of its ranges before the next;
 *   3. fill: the pattern over every fill range;
 *   4. verify (only items that ask): the fill ranges are read back.
 *
 * The barrier between 1 and 3 matters: a redzone is both checked and
 * filled, and a fill racing ahead of the check would hide the corruption.
 * The pattern byte at address a is byte (a mod 8) of the 64-bit pattern
 * (little-endian), so a 16-byte aligned word holds the pattern twice.
 * Memory is moved in 16-byte words where a range covers the whole word and
 * byte by byte at its unaligned edges. Loads stay in L2 (gms_ldcg,
 * ld.global.cg on CUDA): a word may have been written by another
 * multiprocessor in an earlier phase. The wipe passes are volatile stores
 * so that none is dropped as a dead store; note that a write-back L2 may
 * absorb passes over a range smaller than itself (50 MB on the H100)
 * before they reach DRAM.
 * Cost: bandwidth-bound; 16 KiB tiles spread over a persistent grid.
 *
 * gms_scrub_async_kernel is the stream-ordered one (scrub.h).
 */
#include "gpu_compat.h"
#include "scrub.h"

#define TILE (1ull << GMS_KTILE_SHIFT)
#define WPT ((int)(TILE / 16 / GMS_KTHREADS)) /* words per thread per tile */

enum { OP_CHECK = 0, OP_ZERO, OP_ONES, OP_RANDOM, OP_PATTERN, OP_VERIFY };

__device__ __forceinline__ uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: the random pass needs varied bytes, not secrecy. */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The 8 bytes the operation writes at the 8-aligned address a8. */
__device__ __forceinline__ uint64_t word_for(int op, uint64_t a8, uint64_t pattern, uint64_t seed)
{
    switch (op) {
    case OP_ZERO:
        return 0;
    case OP_ONES:
        return ~0ull;
    case OP_RANDOM:
        return mix64(seed ^ a8);
    default:
        return pattern;
    }
}

/* The index of the segment holding tile t: the last with tile0 <= t. */
__device__ __forceinline__ uint32_t find_seg(const gms_kseg *s, uint32_t n, uint64_t t)
{
    uint32_t lo = 0, hi = n;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (__ldg(&s[mid].tile0) <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* One tile of one segment: each thread takes WPT 16-byte words. */
__device__ __forceinline__ void do_tile(int op, const gms_kseg *segs, uint32_t nseg, uint64_t t,
                                        const gms_kparams &p)
{
    uint32_t si = find_seg(segs, nseg, t);
    uint64_t slo = __ldg(&segs[si].lo), shi = __ldg(&segs[si].hi);
    uint64_t tbase = ((slo >> GMS_KTILE_SHIFT) + (t - __ldg(&segs[si].tile0))) << GMS_KTILE_SHIFT;
    uint64_t lo = slo > tbase ? slo : tbase;
    uint64_t hi = shi < tbase + TILE ? shi : tbase + TILE;
    uint64_t w0 = lo & ~15ull;
    unsigned long long found = ~0ull;

    if (op == OP_CHECK || op == OP_VERIFY) {
        /* All loads first, then the comparisons: WPT loads in flight. */
        ulonglong2 v[WPT];
        bool full[WPT];
#pragma unroll
        for (int k = 0; k < WPT; k++) {
            uint64_t a = w0 + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16;
            full[k] = a >= lo && a + 16 <= hi;
            if (full[k])
                v[k] = gms_ldcg((const ulonglong2 *)a);
        }
#pragma unroll
        for (int k = 0; k < WPT; k++) {
            uint64_t a = w0 + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16;
            if (a >= hi)
                continue;
            if (full[k]) {
                uint64_t x0 = v[k].x ^ p.pattern, x1 = v[k].y ^ p.pattern;
                if (x0 | x1) {
                    uint64_t bad = x0 ? a + (uint64_t)((__ffsll((long long)x0) - 1) / 8)
                                      : a + 8 + (uint64_t)((__ffsll((long long)x1) - 1) / 8);
                    if (bad < found)
                        found = bad;
                    if (op == OP_CHECK) /* re-arm */
                        gms_stcg((ulonglong2 *)a, make_ulonglong2(p.pattern, p.pattern));
                }
            } else {
                uint64_t b = a > lo ? a : lo, e = a + 16 < hi ? a + 16 : hi;
                for (uint64_t c = b; c < e; c++) {
                    uint8_t want = (uint8_t)(p.pattern >> (8 * (c & 7)));
                    uint8_t got = gms_ldcg((const unsigned char *)c);
                    if (got != want) {
                        if (c < found)
                            found = c;
                        if (op == OP_CHECK)
                            gms_stcg((unsigned char *)c, want);
                    }
                }
            }
        }
        if (found != ~0ull) {
            gms_kres *r = &p.res[__ldg(&segs[si].item)];
            uint32_t range = __ldg(&segs[si].range) & 1;
            atomicMin(op == OP_CHECK ? &r->bad[range] : &r->vbad[range], found);
        }
        return;
    }

    /* Writes: the wipe passes and the pattern. */
#pragma unroll
    for (int k = 0; k < WPT; k++) {
        uint64_t a = w0 + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16;
        if (a >= hi)
            continue;
        if (a >= lo && a + 16 <= hi) {
            uint64_t x0 = word_for(op, a, p.pattern, p.seed);
            uint64_t x1 = word_for(op, a + 8, p.pattern, p.seed);
            if (op == OP_PATTERN)
                gms_stcg((ulonglong2 *)a, make_ulonglong2(x0, x1));
            else
                store16_volatile(a, x0, x1);
        } else {
            uint64_t b = a > lo ? a : lo, e = a + 16 < hi ? a + 16 : hi;
            for (uint64_t c = b; c < e; c++) {
                uint8_t v = (uint8_t)(word_for(op, c & ~7ull, p.pattern, p.seed) >> (8 * (c & 7)));
                if (op == OP_PATTERN)
                    gms_stcg((unsigned char *)c, v);
                else
                    store8_byte_volatile(c, v);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(GMS_KTHREADS) gms_scrub_kernel(gms_kparams p)
{
    cg::grid_group grid = cg::this_grid();
    for (uint64_t t = blockIdx.x; t < p.check_tiles; t += gridDim.x)
        do_tile(OP_CHECK, p.check, p.ncheck, t, p);
    if (p.fill_tiles == 0)
        return; /* uniform across the grid: every block returns here */
    if (p.check_tiles)
        grid.sync();
    if (p.mp_tiles) {
        for (int i = 0; i < 4; i++) { /* zeros, ones, random, zeros */
            int pass = i == 1 ? OP_ONES : i == 2 ? OP_RANDOM : OP_ZERO;
            for (uint64_t t = blockIdx.x; t < p.mp_tiles; t += gridDim.x)
                do_tile(pass, p.fill, p.nfill, t, p);
            grid.sync();
        }
    }
    for (uint64_t t = blockIdx.x; t < p.fill_tiles; t += gridDim.x)
        do_tile(OP_PATTERN, p.fill, p.nfill, t, p);
    if (p.v_hi > p.v_lo) {
        grid.sync();
        for (uint64_t t = p.v_lo + blockIdx.x; t < p.v_hi; t += gridDim.x)
            do_tile(OP_VERIFY, p.fill, p.nfill, t, p);
    }
}

/* ---- the stream-ordered kernel (scrub.h) ---- */

/* One tile of range r, for one thread: its WPT words, through every pass
 * the range asks for, in order. Returns the lowest bad (check) or unread
 * back (verify) address it met, ~0 when none. */
__device__ __forceinline__ unsigned long long async_tile(const gms_krange &r, uint64_t t,
                                                          const gms_kasync &p,
                                                          unsigned long long *vfound)
{
    uint64_t tbase = ((r.lo >> GMS_KTILE_SHIFT) + t) << GMS_KTILE_SHIFT;
    uint64_t lo = r.lo > tbase ? r.lo : tbase;
    uint64_t hi = r.hi < tbase + TILE ? r.hi : tbase + TILE;
    uint64_t w0 = lo & ~15ull;
    unsigned long long found = ~0ull;
    /* The common case, a whole tile of one plain pass, on a lean path: the
     * general one below spends more instructions per word than the memory
     * needs time (the fill ran at a third of the device's bandwidth). */
    if (lo == tbase && hi == tbase + TILE) {
        if (r.op == GMS_KOP_CHECK) {
            ulonglong2 v[WPT];
#pragma unroll
            for (int k = 0; k < WPT; k++)
                v[k] = gms_ldcg((const ulonglong2 *)(tbase + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16));
            uint64_t diff = 0;
#pragma unroll
            for (int k = 0; k < WPT; k++)
                diff |= (v[k].x ^ p.pattern) | (v[k].y ^ p.pattern);
            if (diff == 0)
                return found;
            /* Corruption (rare): the general path finds and re-arms it. */
        } else if (r.flags == 0) {
            /* The pattern at a 16-aligned word is itself twice (scrub.h). */
            uint64_t x = r.op == GMS_KOP_ZERO ? 0 : p.pattern;
#pragma unroll
            for (int k = 0; k < WPT; k++)
                gms_stcg((ulonglong2 *)(tbase + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16),
                       make_ulonglong2(x, x));
            return found;
        }
    }
    if (r.op == GMS_KOP_CHECK) {
        /* All loads first, then the comparisons: WPT loads in flight. */
        ulonglong2 v[WPT];
#pragma unroll
        for (int k = 0; k < WPT; k++) {
            uint64_t a = w0 + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16;
            if (a >= lo && a + 16 <= hi)
                v[k] = gms_ldcg((const ulonglong2 *)a);
        }
#pragma unroll
        for (int k = 0; k < WPT; k++) {
            uint64_t a = w0 + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16;
            if (a >= hi)
                continue;
            if (a >= lo && a + 16 <= hi) {
                uint64_t x0 = v[k].x ^ p.pattern, x1 = v[k].y ^ p.pattern;
                if (x0 | x1) {
                    uint64_t bad = x0 ? a + (uint64_t)((__ffsll((long long)x0) - 1) / 8)
                                      : a + 8 + (uint64_t)((__ffsll((long long)x1) - 1) / 8);
                    found = bad < found ? bad : found;
                    gms_stcg((ulonglong2 *)a, make_ulonglong2(p.pattern, p.pattern)); /* re-arm */
                }
            } else {
                uint64_t b = a > lo ? a : lo, e = a + 16 < hi ? a + 16 : hi;
                for (uint64_t c = b; c < e; c++) {
                    uint8_t want = (uint8_t)(p.pattern >> (8 * (c & 7)));
                    if (gms_ldcg((const unsigned char *)c) != want) {
                        found = c < found ? c : found;
                        gms_stcg((unsigned char *)c, want);
                    }
                }
            }
        }
        return found;
    }
#pragma unroll
    for (int k = 0; k < WPT; k++) {
        uint64_t a = w0 + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16;
        if (a >= hi)
            continue;
        bool full = a >= lo && a + 16 <= hi;
        uint64_t b = a > lo ? a : lo, e = a + 16 < hi ? a + 16 : hi;
        int last = r.op == GMS_KOP_ZERO ? OP_ZERO : OP_PATTERN;
        int npass = (r.flags & GMS_KF_MULTIPASS) ? 5 : 1;
        /* The wipe passes are volatile (none may be dropped as a dead
         * store); the last, what the memory keeps, is a plain store unless
         * it is read back (then nothing may stand in for the memory). */
        bool plain_last = !(r.flags & GMS_KF_VERIFY);
        for (int i = 0; i < npass; i++) {
            int op = i == npass - 1 ? last : i == 1 ? OP_ONES : i == 2 ? OP_RANDOM : OP_ZERO;
            if (full && i == npass - 1 && plain_last) {
                gms_stcg((ulonglong2 *)a, make_ulonglong2(word_for(op, a, p.pattern, p.seed),
                                                        word_for(op, a + 8, p.pattern, p.seed)));
            } else if (full) {
                store16_volatile(a, word_for(op, a, p.pattern, p.seed),
                                 word_for(op, a + 8, p.pattern, p.seed));
            } else {
                for (uint64_t c = b; c < e; c++)
                    store8_byte_volatile(
                        c, (uint8_t)(word_for(op, c & ~7ull, p.pattern, p.seed) >> (8 * (c & 7))));
            }
        }
        if (r.flags & GMS_KF_VERIFY) {
            /* Read back what this thread wrote (its own stores are ordered
             * before its loads): a word at once where it can. */
            bool same = false;
            if (full) {
                ulonglong2 got = gms_ldcg((const ulonglong2 *)a);
                same = got.x == word_for(last, a, p.pattern, p.seed) &&
                       got.y == word_for(last, a + 8, p.pattern, p.seed);
            }
            for (uint64_t c = b; c < e && !same; c++) {
                uint8_t want = (uint8_t)(word_for(last, c & ~7ull, p.pattern, p.seed) >> (8 * (c & 7)));
                if (gms_ldcg((const unsigned char *)c) != want) {
                    *vfound = c < *vfound ? c : *vfound;
                    break;
                }
            }
        }
    }
    return found;
}

/* The range holding tile t of the whole batch: the last with tile0 <= t. */
__device__ __forceinline__ uint32_t find_range(const gms_kasync &p, uint32_t t)
{
    uint32_t lo = 0, hi = p.nranges;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (p.r[mid].tile0 <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

extern "C" __global__ void __launch_bounds__(GMS_KTHREADS) gms_scrub_async_kernel(gms_kasync p)
{
    __shared__ bool s_last;
    for (uint32_t t = blockIdx.x; t < p.tiles; t += gridDim.x) {
        const gms_krange &r = p.r[find_range(p, t)];
        unsigned long long vbad = ~0ull;
        unsigned long long bad = async_tile(r, t - r.tile0, p, &vbad);
        if (bad != ~0ull) /* rare: corruption */
            atomicMin(&p.dev->bad[r.item], bad);
        if (vbad != ~0ull)
            atomicMin(&p.dev->vbad[r.item], vbad);
    }
    /* Every thread's findings are in before its block counts itself done;
     * the last block to finish publishes the results. */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
        s_last = atomicAdd(&p.dev->finished, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!s_last)
        return;
    __threadfence();
    for (uint32_t i = threadIdx.x; i < p.nitems; i += blockDim.x) {
        unsigned long long b = atomicExch(&p.dev->bad[i], ~0ull);
        unsigned long long v = atomicExch(&p.dev->vbad[i], ~0ull);
        p.host->bad[i] = b;
        p.host->vbad[i] = v;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        p.dev->finished = 0;
        __threadfence_system();
        *(volatile unsigned long long *)&p.host->done = p.ticket;
    }
}

/* ---- checked atomics (gms/access.h, docs/ordering.md) ----
 * One thread per word, the word's address already checked by the host.
 * T is the unsigned word type and S the signed one of the same width. */
template <typename T, typename S>
__device__ unsigned long long gms_atomic_word(const gms_katomic &w)
{
    T *a = (T *)(uintptr_t)w.addr;
    T v = (T)w.operand;
    switch (w.op) {
    case 1: return atomicAdd(a, v);
    case 2: return atomicAnd(a, v);
    case 3: return atomicOr(a, v);
    case 4: return atomicXor(a, v);
    case 5: return atomicMin(a, v);
    case 6: return atomicMax(a, v);
    case 7: return (T)atomicMin((S *)a, (S)v);
    case 8: return (T)atomicMax((S *)a, (S)v);
    case 9: return atomicExch(a, v);
    default: return atomicCAS(a, (T)w.compare, v);
    }
}

extern "C" __global__ void __launch_bounds__(GMS_KTHREADS) gms_atomic_kernel(gms_katomics p)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.n)
        return;
    const gms_katomic &w = p.w[i];
    unsigned long long old = w.width == 4 ? gms_atomic_word<unsigned int, int>(w)
                                          : gms_atomic_word<unsigned long long, long long>(w);
    if (w.result)
        *(unsigned long long *)(uintptr_t)w.result = old;
}
