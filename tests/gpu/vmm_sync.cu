// vmm_sync.cu: does a virtual-memory call wait for the device? Each call is
// timed on the host while a kernel of about 50 ms runs on another stream of
// the same context, so a call that waits shows the kernel's remaining time.
// Informational (docs/gpu.md); run by tests/gpu/run.sh's vmm-sync step.
#include "vmm_timing.h"

int main()
{
    CUstream s = device_open();
    CUmemAllocationProp prop = {};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    size_t gran = 2 << 20;
    CUmemAccessDesc rw = {};
    rw.location = prop.location;
    rw.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CUdeviceptr va;
    CK(cuMemAddressReserve(&va, 64 * gran, 0, 0, 0));
    // A mapping that exists before the kernel, to unmap while it runs.
    CUmemGenericAllocationHandle old;
    CK(cuMemCreate(&old, gran, &prop, 0));
    CK(cuMemMap(va + 32 * gran, gran, 0, old, 0));
    CK(cuMemSetAccess(va + 32 * gran, gran, &rw, 1));
    CK(cuCtxSynchronize());
    for (int busy = 0; busy < 2; busy++) {
        if (busy)
            spin<<<1, 1, 0, (cudaStream_t)s>>>(100000000ull); // ~50 ms at 2 GHz
        double t0 = now_us();
        CUmemGenericAllocationHandle h;
        CK(cuMemCreate(&h, 4 * gran, &prop, 0));
        double t1 = now_us();
        CK(cuMemMap(va + busy * 8 * gran, 4 * gran, 0, h, 0));
        double t2 = now_us();
        CK(cuMemSetAccess(va + busy * 8 * gran, 4 * gran, &rw, 1));
        double t3 = now_us();
        CK(cuMemUnmap(va + 32 * gran + 0, gran));
        double t4 = now_us();
        CK(cuMemRelease(busy ? h : old));
        double t5 = now_us();
        CUresult q = cuStreamQuery(s);
        printf("RESULT vmm_%s create_us=%.1f map_us=%.1f set_access_us=%.1f unmap_us=%.1f release_us=%.1f kernel_still_running=%d\n",
               busy ? "busy" : "idle", t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4,
               q == CUDA_ERROR_NOT_READY);
        if (!busy) { // re-arm the mapping to unmap in the busy round
            CK(cuMemCreate(&old, gran, &prop, 0));
            CK(cuMemMap(va + 32 * gran, gran, 0, old, 0));
            CK(cuMemSetAccess(va + 32 * gran, gran, &rw, 1));
            CK(cuCtxSynchronize());
        }
    }
    CK(cuCtxSynchronize());
    return 0;
}
