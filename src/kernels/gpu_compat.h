/*
 * gpu_compat.h: what src/kernels/scrub.cu needs that CUDA and HIP spell
 * differently, so that one source builds with nvcc (CUDA) and with hipcc
 * (HIP, AMD GPUs; docs/hip.md).
 *
 * Under nvcc everything maps to what the kernel used before it was shared,
 * so its machine code is unchanged: loads and stores that stay in L2
 * (ld/st.global.cg: a word may have been written by another
 * multiprocessor in an earlier phase) and the wipe passes as volatile
 * st.global.cg (none may be dropped as a dead store).
 *
 * Under hipcc: loads are volatile (they are not served from a stale
 * per-compute-unit cache line; the phases are separated by grid syncs,
 * which are device-scope fences), plain stores stand in for st.cg, and the
 * wipe passes are volatile stores. The rest (ulonglong2, __ldg, __ffsll,
 * the atomics, the fences, cooperative groups) HIP provides under the
 * same names.
 */
#ifndef GMS_KERNELS_GPU_COMPAT_H
#define GMS_KERNELS_GPU_COMPAT_H

#if defined(__HIP__) || defined(__HIPCC__)

#include <hip/hip_runtime.h>
#include <hip/hip_cooperative_groups.h>
#include <stdint.h>

typedef uint64_t gms_u64x2 __attribute__((ext_vector_type(2)));

__device__ __forceinline__ ulonglong2 gms_ldcg(const ulonglong2 *p)
{
    gms_u64x2 v = *(const volatile gms_u64x2 *)p;
    return make_ulonglong2(v.x, v.y);
}

__device__ __forceinline__ unsigned char gms_ldcg(const unsigned char *p)
{
    return *(const volatile unsigned char *)p;
}

__device__ __forceinline__ void gms_stcg(ulonglong2 *p, ulonglong2 v)
{
    gms_u64x2 w = {v.x, v.y};
    *(gms_u64x2 *)p = w;
}

__device__ __forceinline__ void gms_stcg(unsigned char *p, unsigned char v)
{
    *p = v;
}

__device__ __forceinline__ void store16_volatile(uint64_t a, uint64_t x0, uint64_t x1)
{
    gms_u64x2 w = {x0, x1};
    *(volatile gms_u64x2 *)a = w;
}

__device__ __forceinline__ void store8_byte_volatile(uint64_t a, uint8_t v)
{
    *(volatile uint8_t *)a = v;
}

#else /* nvcc */

#include <cooperative_groups.h>
#include <stdint.h>

#define gms_ldcg __ldcg
#define gms_stcg __stcg

__device__ __forceinline__ void store16_volatile(uint64_t a, uint64_t x0, uint64_t x1)
{
    asm volatile("st.global.cg.v2.u64 [%0], {%1, %2};" ::"l"(a), "l"(x0), "l"(x1) : "memory");
}

__device__ __forceinline__ void store8_byte_volatile(uint64_t a, uint8_t v)
{
    unsigned short w = v;
    asm volatile("st.global.cg.u8 [%0], %1;" ::"l"(a), "h"(w) : "memory");
}

#endif

namespace cg = cooperative_groups;

#endif
