/*
 * A stand-in for HIP's hip/hip_runtime.h: just what src/kernels/scrub.cu
 * uses, from clang's amdgcn builtins, so that tests/kernels/hip_compile.sh
 * can compile the kernels' HIP path (src/kernels/gpu_compat.h) where ROCm
 * is not installed. It checks that the source compiles for an AMD GPU, not
 * that it agrees with the real headers. Never part of a real build.
 */
#ifndef GMS_TEST_HIP_RUNTIME_STUB_H
#define GMS_TEST_HIP_RUNTIME_STUB_H

#include <stdint.h>

#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(n) __attribute__((amdgpu_flat_work_group_size(1, n)))

struct gms_stub_dim {
    unsigned x;
};
__device__ inline unsigned gms_stub_group_size(void)
{
    return ((const uint16_t *)__builtin_amdgcn_dispatch_ptr())[2];
}
__device__ inline unsigned gms_stub_grid_groups(void)
{
    return ((const uint32_t *)__builtin_amdgcn_dispatch_ptr())[3] / gms_stub_group_size();
}
#define threadIdx (gms_stub_dim{__builtin_amdgcn_workitem_id_x()})
#define blockIdx (gms_stub_dim{__builtin_amdgcn_workgroup_id_x()})
#define blockDim (gms_stub_dim{gms_stub_group_size()})
#define gridDim (gms_stub_dim{gms_stub_grid_groups()})

struct ulonglong2 {
    unsigned long long x, y;
};
__device__ inline ulonglong2 make_ulonglong2(unsigned long long x, unsigned long long y)
{
    return ulonglong2{x, y};
}

template <typename T> __device__ inline T __ldg(const T *p)
{
    return *p;
}
__device__ inline int __ffsll(long long x)
{
    return __builtin_ffsll(x);
}
__device__ inline void __syncthreads(void)
{
    __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
    __builtin_amdgcn_s_barrier();
    __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}
__device__ inline void __threadfence(void)
{
    __builtin_amdgcn_fence(__ATOMIC_SEQ_CST, "agent");
}
__device__ inline void __threadfence_system(void)
{
    __builtin_amdgcn_fence(__ATOMIC_SEQ_CST, "");
}
__device__ inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v)
{
    return __atomic_fetch_min(p, v, __ATOMIC_RELAXED);
}
__device__ inline unsigned long long atomicExch(unsigned long long *p, unsigned long long v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}
__device__ inline unsigned atomicAdd(unsigned *p, unsigned v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/* The atomics of the checked-atomics kernel, for both word widths. */
#define GMS_STUB_ATOMICS(T)                                                              \
    __device__ inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); } \
    __device__ inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }   \
    __device__ inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); } \
    __device__ inline T atomicMax(T *p, T v) { return __atomic_fetch_max(p, v, __ATOMIC_RELAXED); } \
    __device__ inline T atomicCAS(T *p, T c, T v)                                        \
    {                                                                                    \
        __atomic_compare_exchange_n(p, &c, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);  \
        return c;                                                                        \
    }
GMS_STUB_ATOMICS(unsigned)
GMS_STUB_ATOMICS(unsigned long long)
__device__ inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
__device__ inline unsigned atomicMin(unsigned *p, unsigned v)
{
    return __atomic_fetch_min(p, v, __ATOMIC_RELAXED);
}
__device__ inline unsigned atomicExch(unsigned *p, unsigned v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}
__device__ inline int atomicMin(int *p, int v) { return __atomic_fetch_min(p, v, __ATOMIC_RELAXED); }
__device__ inline int atomicMax(int *p, int v) { return __atomic_fetch_max(p, v, __ATOMIC_RELAXED); }
__device__ inline long long atomicMin(long long *p, long long v)
{
    return __atomic_fetch_min(p, v, __ATOMIC_RELAXED);
}
__device__ inline long long atomicMax(long long *p, long long v)
{
    return __atomic_fetch_max(p, v, __ATOMIC_RELAXED);
}

#endif
