// vmm_timing.h: what the driver-call probes (vmm_sync.cu, vmm_costs.cu)
// share: a kernel that keeps the device busy, a host clock, a check that
// ends the probe on a failed call, and the device's setup.
#ifndef GMS_TESTS_GPU_VMM_TIMING_H
#define GMS_TESTS_GPU_VMM_TIMING_H

#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

// Spins for about `cycles` clock cycles.
__global__ void spin(unsigned long long cycles)
{
    unsigned long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
}

static double now_us()
{
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

#define CK(x)                                                                 \
    do {                                                                      \
        CUresult r_ = (x);                                                    \
        if (r_ != CUDA_SUCCESS) {                                             \
            printf("%s failed: %d\n", #x, (int)r_);                           \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

// Makes device 0's primary context current; a non-blocking stream of it.
static CUstream device_open()
{
    CK(cuInit(0));
    CUdevice dev;
    CK(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    CUstream s;
    CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    return s;
}

#endif
