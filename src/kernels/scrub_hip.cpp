/*
 * scrub_hip.cpp: the HIP backend's safety kernel (src/backend/hip/hip.c),
 * the algorithm of the CUDA kernel (src/kernels/scrub.cu) for AMD GPUs.
 *
 * NOT COMPILED HERE: the machine gms is developed on has no hipcc and no
 * AMD GPU, so this file has never been compiled or run. Build it into a
 * code object on a ROCm machine and point GMS_HIP_CODE_OBJECT at it:
 *
 *   hipcc --genco -O3 --offload-arch=gfx90a,gfx942 -Isrc/kernels \
 *         src/kernels/scrub_hip.cpp -o scrub_hip.co
 *
 * (list the gfx targets of the GPUs it will run on; docs/hip.md).
 *
 * One batch of gms_scrub_item (backend.h) is a sequence of launches of one
 * kernel on one stream, one per phase (scrub_hip.h), in this order:
 *
 *   1. check: every check range is compared with the poison pattern; the
 *      lowest changed address of each item and range is kept (atomicMin)
 *      and each changed word is written back with the pattern (re-armed);
 *   2. multipass wipe (only items that ask): zeros, ones, random, zeros,
 *      each pass a launch over all of the multipass ranges;
 *   3. fill: the pattern over every fill range;
 *   4. verify (only items that ask): the fill ranges are read back.
 *
 * Stream order separates the phases: a launch starts after the previous
 * one has finished and its writes are visible device-wide, which the CUDA
 * kernel gets from grid-wide barriers. The order matters: a redzone is both
 * checked and filled, and a fill racing ahead of the check would hide the
 * corruption. Within a phase each byte is touched by one thread only.
 *
 * The pattern byte at address a is byte (a mod 8) of the 64-bit pattern
 * (little-endian), so a 16-byte aligned word holds the pattern twice.
 * Memory is moved in 16-byte words where a range covers the whole word and
 * byte by byte at its unaligned edges. The wipe passes are volatile stores
 * so that none is dropped as a dead store.
 */
#include <hip/hip_runtime.h>
#include <stdint.h>

#include "scrub.h"
#include "scrub_hip.h"

#define TILE (1ull << GMS_KTILE_SHIFT)
#define WPT ((int)(TILE / 16 / GMS_KTHREADS)) /* words per thread per tile */

typedef uint64_t u64x2 __attribute__((ext_vector_type(2)));

__device__ __forceinline__ uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: the random pass needs varied bytes, not secrecy. */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The 8 bytes the operation writes at the 8-aligned address a8. */
__device__ __forceinline__ uint64_t word_for(uint32_t op, uint64_t a8, uint64_t pattern,
                                             uint64_t seed)
{
    switch (op) {
    case GMS_HOP_ZERO:
        return 0;
    case GMS_HOP_ONES:
        return ~0ull;
    case GMS_HOP_RANDOM:
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
        if (s[mid].tile0 <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* One tile of one segment: each thread takes WPT 16-byte words. */
__device__ __forceinline__ void do_tile(uint32_t op, const gms_kseg *segs, uint32_t nseg,
                                        uint64_t t, const gms_kparams &p)
{
    uint32_t si = find_seg(segs, nseg, t);
    uint64_t slo = segs[si].lo, shi = segs[si].hi;
    uint64_t tbase = ((slo >> GMS_KTILE_SHIFT) + (t - segs[si].tile0)) << GMS_KTILE_SHIFT;
    uint64_t lo = slo > tbase ? slo : tbase;
    uint64_t hi = shi < tbase + TILE ? shi : tbase + TILE;
    uint64_t w0 = lo & ~15ull;
    unsigned long long found = ~0ull;

    if (op == GMS_HOP_CHECK || op == GMS_HOP_VERIFY) {
        /* All loads first, then the comparisons: WPT loads in flight. */
        u64x2 v[WPT];
        bool full[WPT];
#pragma unroll
        for (int k = 0; k < WPT; k++) {
            uint64_t a = w0 + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16;
            full[k] = a >= lo && a + 16 <= hi;
            if (full[k])
                v[k] = *(const volatile u64x2 *)a;
        }
#pragma unroll
        for (int k = 0; k < WPT; k++) {
            uint64_t a = w0 + ((uint64_t)threadIdx.x + (uint64_t)k * GMS_KTHREADS) * 16;
            if (a >= hi)
                continue;
            if (full[k]) {
                uint64_t x0 = v[k].x ^ p.pattern, x1 = v[k].y ^ p.pattern;
                if (x0 | x1) {
                    uint64_t bad = x0 ? a + (uint64_t)(__builtin_ctzll(x0) / 8)
                                      : a + 8 + (uint64_t)(__builtin_ctzll(x1) / 8);
                    if (bad < found)
                        found = bad;
                    if (op == GMS_HOP_CHECK) { /* re-arm */
                        u64x2 pat = {p.pattern, p.pattern};
                        *(u64x2 *)a = pat;
                    }
                }
            } else {
                uint64_t b = a > lo ? a : lo, e = a + 16 < hi ? a + 16 : hi;
                for (uint64_t c = b; c < e; c++) {
                    uint8_t want = (uint8_t)(p.pattern >> (8 * (c & 7)));
                    uint8_t got = *(const volatile uint8_t *)c;
                    if (got != want) {
                        if (c < found)
                            found = c;
                        if (op == GMS_HOP_CHECK)
                            *(uint8_t *)c = want;
                    }
                }
            }
        }
        if (found != ~0ull) {
            gms_kres *r = &p.res[segs[si].item];
            uint32_t range = segs[si].range & 1;
            atomicMin(op == GMS_HOP_CHECK ? &r->bad[range] : &r->vbad[range], found);
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
            u64x2 x = {word_for(op, a, p.pattern, p.seed), word_for(op, a + 8, p.pattern, p.seed)};
            if (op == GMS_HOP_PATTERN)
                *(u64x2 *)a = x;
            else
                *(volatile u64x2 *)a = x;
        } else {
            uint64_t b = a > lo ? a : lo, e = a + 16 < hi ? a + 16 : hi;
            for (uint64_t c = b; c < e; c++) {
                uint8_t v = (uint8_t)(word_for(op, c & ~7ull, p.pattern, p.seed) >> (8 * (c & 7)));
                if (op == GMS_HOP_PATTERN)
                    *(uint8_t *)c = v;
                else
                    *(volatile uint8_t *)c = v;
            }
        }
    }
}

/* One phase: blocks stride over the phase's tiles (hip.c launches at most
 * a few thousand blocks). The phase decides the segment array and the
 * tile range; op is uniform across the grid. */
extern "C" __global__ void __launch_bounds__(GMS_KTHREADS)
    gms_scrub_hip_phase(gms_kparams p, uint32_t op)
{
    const gms_kseg *segs = p.fill;
    uint32_t nseg = p.nfill;
    uint64_t t0 = 0, t1 = p.fill_tiles;
    switch (op) {
    case GMS_HOP_CHECK:
        segs = p.check;
        nseg = p.ncheck;
        t1 = p.check_tiles;
        break;
    case GMS_HOP_ZERO:
    case GMS_HOP_ONES:
    case GMS_HOP_RANDOM:
        t1 = p.mp_tiles;
        break;
    case GMS_HOP_VERIFY:
        t0 = p.v_lo;
        t1 = p.v_hi;
        break;
    default: /* GMS_HOP_PATTERN */
        break;
    }
    for (uint64_t t = t0 + blockIdx.x; t < t1; t += gridDim.x)
        do_tile(op, segs, nseg, t, p);
}
