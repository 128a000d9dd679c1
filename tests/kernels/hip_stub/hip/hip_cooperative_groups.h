/*
 * A stand-in for HIP's hip/hip_cooperative_groups.h (see hip_runtime.h
 * here): a grid whose sync compiles. Compile checks only.
 */
#ifndef GMS_TEST_HIP_CG_STUB_H
#define GMS_TEST_HIP_CG_STUB_H

namespace cooperative_groups {
struct grid_group {
    __device__ void sync(void)
    {
        __threadfence();
        __syncthreads();
    }
};
__device__ inline grid_group this_grid(void)
{
    return grid_group{};
}
} // namespace cooperative_groups

#endif
