/*
 * libgpu.c: a stand-in for libcuda.so.1 and libamdhip64.so over host
 * memory (built twice, as tests' libcuda.so.1 and libamdhip64.so), so that
 * the CUDA and HIP loaders (src/backend/cuda/cuda.c, src/backend/hip/hip.c)
 * and their adapters run here: backend/loader/cuda and backend/loader/hip
 * run the conformance suite through them with LD_LIBRARY_PATH pointing
 * here. Memory is tests/backend/fake_driver.h's (PROT_NONE reservations,
 * memfd allocations, mprotect access); one device, with virtual memory
 * management and without cooperative launch, so no kernels: the loaders'
 * paths without kernels. Names and signatures are the drivers' (only what
 * the loaders look up); what it says of itself is not.
 *
 * STAND_IN_DEVICE_LAG=N gives it a device: cooperative launch, and the
 * scrub kernels run on the host, N launches behind (fake_kernels 2), so
 * that `gms-bench replay --backend cuda` runs the stream-ordered safety
 * pipeline (batches, quarantine, launches and their log) on a real trace
 * without a GPU. Its kernels touch no data: a replay writes none, and a
 * pass must take about as long as on a GPU, since the retain policy's
 * peak marks decay with time. Its times mean nothing; its counts of
 * launches, maps and unmaps, and its fragmentation, are the pipeline's.
 *
 * Stream capture, for the PyTorch plug-in's graph hooks: a test marks a
 * stream as capturing (stand_in_capture), cuStreamIsCapturing says so,
 * and the rules of a capture in the default (global) mode are checked
 * rather than enforced by a graph: work queued into a capturing stream
 * (a launch, copy, fill or event record) is counted as captured
 * (stand_in_captured), and a call that may wait for the device (a
 * synchronisation, a map or unmap) from a thread not in relaxed mode
 * while a capture is under way fails with the driver's
 * CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and is counted
 * (stand_in_unsafe). cuStreamWaitEvent calls are counted too
 * (stand_in_waits).
 */
#include "backend/fake_driver.h"

#include <stddef.h>
#include <stdio.h>

#define API __attribute__((visibility("default")))
#define GRANULE (2u << 20)
static char fake_ctx;

__attribute__((constructor)) static void stand_in_device(void)
{
    const char *lag = getenv("STAND_IN_DEVICE_LAG");
    if (lag && *lag) {
        fake_kernels = 2;
        fake_dataless = 1;
        fake_lag = (unsigned)strtoul(lag, NULL, 10);
    }
}

/* The driver's error names and texts, as cuGetErrorName/String give them
 * (a pointer through an out-parameter) and hipGetErrorName/String (the
 * return value). */
static const char *err_name(int rc)
{
    return rc == 0 ? "SUCCESS" : f_error_name(rc) ? f_error_name(rc) : "FAKE_ERROR_UNKNOWN";
}
static const char *err_text(int rc)
{
    return rc == 0 ? "no error" : f_error_string(rc) ? f_error_string(rc) : "unknown";
}

#ifdef STAND_IN_CUDA
typedef unsigned long long CUdeviceptr;
typedef void *CUstream;

/* ---- stream capture (see the top) ---- */
#define CAPTURE_UNSUPPORTED 900 /* CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED */
static void *capturing[8];
static unsigned long captured_work, unsafe_calls, stream_waits;
static __thread int capture_mode; /* 0 global, 1 thread-local, 2 relaxed */

static bool is_capturing(const void *st)
{
    for (size_t i = 0; i < sizeof capturing / sizeof *capturing; i++)
        if (__atomic_load_n(&capturing[i], __ATOMIC_SEQ_CST) == st && st)
            return true;
    return false;
}
static bool any_capturing(void)
{
    for (size_t i = 0; i < sizeof capturing / sizeof *capturing; i++)
        if (__atomic_load_n(&capturing[i], __ATOMIC_SEQ_CST))
            return true;
    return false;
}
/* Work queued on st: counted when st is capturing. */
static void queued_on(const void *st)
{
    if (is_capturing(st))
        __atomic_add_fetch(&captured_work, 1, __ATOMIC_SEQ_CST);
}
/* A call that may wait for the device: refused during a capture unless
 * this thread is relaxed, or when it waits for a capturing stream. */
static bool unsafe_now(const void *waits_for)
{
    if ((any_capturing() && capture_mode != 2) || (waits_for && is_capturing(waits_for))) {
        __atomic_add_fetch(&unsafe_calls, 1, __ATOMIC_SEQ_CST);
        return true;
    }
    return false;
}
API void stand_in_capture(void *st, int on)
{
    for (size_t i = 0; i < sizeof capturing / sizeof *capturing; i++) {
        void *want = on ? NULL : st;
        if (__atomic_compare_exchange_n(&capturing[i], &want, on ? st : NULL, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return;
    }
}
API unsigned long stand_in_captured(void) { return __atomic_load_n(&captured_work, __ATOMIC_SEQ_CST); }
API unsigned long stand_in_unsafe(void) { return __atomic_load_n(&unsafe_calls, __ATOMIC_SEQ_CST); }
API unsigned long stand_in_waits(void) { return __atomic_load_n(&stream_waits, __ATOMIC_SEQ_CST); }
API int cuStreamIsCapturing(void *st, int *status)
{
    *status = is_capturing(st) ? 1 : 0;
    return 0;
}
API int cuThreadExchangeStreamCaptureMode(int *mode)
{
    int old = capture_mode;
    capture_mode = *mode;
    *mode = old;
    return 0;
}
API int cuInit(unsigned f) { (void)f; return 0; }
API int cuDeviceGetCount(int *n) { *n = 1; return 0; }
API int cuDeviceGet(int *d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : FAKE_ERROR_REFUSED; }
API int cuDeviceTotalMem_v2(size_t *bytes, int dev) { *bytes = 16ull << 30; return dev == 0 ? 0 : FAKE_ERROR_REFUSED; }
API int cuDeviceGetAttribute(int *v, int attr, int dev)
{
    (void)dev;
    /* VMM: yes; 4 SMs; cooperative launch only with a device (above) */
    *v = attr == 102 ? 1 : attr == 16 ? 4 : attr == 95 ? fake_kernels == 2 : 0;
    return 0;
}
/* The GPU's UUID: STAND_IN_GPU_UUID's first 16 bytes when set (a test
 * plays two GPUs with it), else "stand-in gpu 0". */
API int cuDeviceGetUuid_v2(unsigned char *uuid, int dev)
{
    const char *env = getenv("STAND_IN_GPU_UUID");
    memset(uuid, 0, 16);
    snprintf((char *)uuid, 16, "%s", env ? env : "stand-in gpu 0");
    return dev == 0 ? 0 : FAKE_ERROR_REFUSED;
}
API int cuDevicePrimaryCtxRetain(void **ctx, int dev) { (void)dev; *ctx = &fake_ctx; return 0; }
API int cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return 0; }
API int cuCtxGetCurrent(void **c) { uintptr_t u; int r = f_get_current(NULL, &u); *c = (void *)u; return r; }
API int cuCtxSetCurrent(void *c) { return f_set_current(NULL, (uintptr_t)c); }
API int cuCtxSynchronize(void) { return unsafe_now(NULL) ? CAPTURE_UNSUPPORTED : f_device_sync(NULL); }
API int cuStreamCreate(void **s, unsigned f) { (void)f; return f_stream_create(NULL, s); }
API int cuStreamDestroy_v2(void *s) { return f_stream_destroy(NULL, s); }
API int cuStreamSynchronize(void *s) { return unsafe_now(s) ? CAPTURE_UNSUPPORTED : f_stream_sync(NULL, s); }
API int cuStreamWaitEvent(void *s, void *e, unsigned f)
{
    (void)f;
    __atomic_add_fetch(&stream_waits, 1, __ATOMIC_SEQ_CST);
    queued_on(s);
    return f_stream_wait_event(NULL, s, e);
}
API int cuEventCreate(void **e, unsigned f) { (void)f; return f_event_create(NULL, e); }
API int cuEventRecord(void *e, void *s) { queued_on(s); return f_event_record(NULL, e, s); }
API int cuEventDestroy_v2(void *e) { return f_event_destroy(NULL, e); }
API int cuMemAddressReserve(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr,
                            unsigned long long flags)
{
    (void)addr, (void)flags;
    uint64_t a = 0;
    int r = f_va_reserve(NULL, &a, size, align ? align : GRANULE);
    *p = a;
    return r;
}
API int cuMemAddressFree(CUdeviceptr p, size_t size) { return f_va_free(NULL, p, size); }
API int cuMemCreate(unsigned long long *h, size_t size, const void *prop, unsigned long long f)
{
    (void)prop, (void)f;
    return unsafe_now(NULL) ? CAPTURE_UNSUPPORTED : f_mem_create(NULL, (uint64_t *)h, size);
}
API int cuMemRelease(unsigned long long h) { return unsafe_now(NULL) ? CAPTURE_UNSUPPORTED : f_mem_release(NULL, h); }
API int cuMemMap(CUdeviceptr p, size_t size, size_t off, unsigned long long h, unsigned long long f)
{
    (void)f;
    if (unsafe_now(NULL))
        return CAPTURE_UNSUPPORTED;
    return off ? FAKE_ERROR_REFUSED : f_mem_map(NULL, p, size, h);
}
/* A POSIX descriptor: the only handle type asked for. */
API int cuMemExportToShareableHandle(void *out, unsigned long long h, int type, unsigned long long f)
{
    (void)f;
    return type != 1 ? FAKE_ERROR_REFUSED : f_mem_export(NULL, h, (int *)out);
}
API int cuMemImportFromShareableHandle(unsigned long long *h, void *fd, int type)
{
    return type != 1 ? FAKE_ERROR_REFUSED : f_mem_import(NULL, (int)(uintptr_t)fd, (uint64_t *)h);
}
API int cuMemUnmap(CUdeviceptr p, size_t size) { return unsafe_now(NULL) ? CAPTURE_UNSUPPORTED : f_mem_unmap(NULL, p, size); }
/* CUmemAccessDesc: location {type, id}, then flags (3: read-write, 1: read). */
API int cuMemSetAccess(CUdeviceptr p, size_t size, const int *desc, size_t count)
{
    return count != 1 ? FAKE_ERROR_REFUSED : f_set_access(NULL, p, size, desc[2] == 3);
}
API int cuMemGetAllocationGranularity(size_t *g, const void *prop, int option)
{
    (void)prop, (void)option;
    *g = GRANULE;
    return 0;
}
API int cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, CUstream st) { queued_on(st); return f_memcpy_htod(NULL, d, s, n, st); }
API int cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, CUstream st) { queued_on(st); return f_memcpy_dtoh(NULL, d, s, n, st); }
API int cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { queued_on(st); return f_memcpy_dtod(NULL, d, s, n, st); }
API int cuMemsetD8Async(CUdeviceptr d, unsigned char b, size_t n, CUstream st) { queued_on(st); return f_memset_d8(NULL, d, b, n, st); }
API int cuMemHostAlloc(void **p, size_t n, unsigned f) { return f_host_alloc(NULL, p, n, (f & 2) != 0); }
API int cuMemFreeHost(void *p) { return f_host_free(NULL, p); }
API int cuMemHostGetDevicePointer_v2(CUdeviceptr *d, void *p, unsigned f) { (void)f; return f_host_device_ptr(NULL, (uint64_t *)d, p); }
API int cuMemAlloc_v2(CUdeviceptr *d, size_t n) { return f_dev_alloc(NULL, (uint64_t *)d, n); }
API int cuMemFree_v2(CUdeviceptr d) { return f_dev_free(NULL, d); }
/* The stream-ordered pool that `gms-bench replay --backend cuda` replays
 * beside gms: plain allocations with no reuse, so its own figures mean
 * nothing here (it reports no reserved memory); the replay's gms side runs
 * gms's CUDA policies on this machine. */
static char fake_pool;
API int cuDeviceGetDefaultMemPool(void **p, int dev) { (void)dev; *p = &fake_pool; return 0; }
API int cuMemPoolSetAttribute(void *p, int attr, void *v) { (void)p, (void)attr, (void)v; return 0; }
API int cuMemPoolGetAttribute(void *p, int attr, uint64_t *v) { (void)p, (void)attr; *v = 0; return 0; }
API int cuMemPoolTrimTo(void *p, size_t keep) { (void)p, (void)keep; return 0; }
API int cuMemAllocAsync(CUdeviceptr *d, size_t n, CUstream st) { (void)st; return f_dev_alloc(NULL, (uint64_t *)d, n); }
API int cuMemFreeAsync(CUdeviceptr d, CUstream st) { (void)st; return f_dev_free(NULL, d); }
API int cuModuleLoadData(void **m, const void *image) { return f_module_load(NULL, m, image); }
API int cuModuleUnload(void *m) { return f_module_unload(NULL, m); }
API int cuModuleGetFunction(void **fn, void *m, const char *name) { return f_module_function(NULL, fn, m, name); }
API int cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, void *fn, int block, size_t shm)
{
    (void)shm;
    return f_occupancy(NULL, n, fn, (unsigned)block);
}
API int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz, unsigned shm, void *st, void **args, void **extra)
{
    (void)gy, (void)gz, (void)by, (void)bz, (void)shm, (void)extra;
    queued_on(st);
    return f_launch(NULL, fn, gx, bx, st, args);
}
API int cuLaunchCooperativeKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                  unsigned by, unsigned bz, unsigned shm, void *st, void **args)
{
    (void)gy, (void)gz, (void)by, (void)bz, (void)shm;
    queued_on(st);
    return f_launch_cooperative(NULL, fn, gx, bx, st, args);
}
API int cuGetErrorName(int rc, const char **s) { *s = err_name(rc); return 0; }
API int cuGetErrorString(int rc, const char **s) { *s = err_text(rc); return 0; }
#endif

#ifdef STAND_IN_HIP
#define U(p) ((uint64_t)(uintptr_t)(p))
API int hipInit(unsigned f) { (void)f; return 0; }
API int hipGetDeviceCount(int *n) { *n = 1; return 0; }
API int hipGetDevice(int *d) { uintptr_t u; int r = f_get_current(NULL, &u); *d = (int)u; return r; }
API int hipSetDevice(int d) { return d == 0 ? f_set_current(NULL, 0) : FAKE_ERROR_REFUSED; }
API int hipDeviceGetAttribute(int *v, int attr, int dev)
{
    (void)dev;
    *v = attr == 63 ? 4 : 0; /* 4 compute units; no cooperative launch */
    return 0;
}
API int hipDeviceSynchronize(void) { return f_device_sync(NULL); }
API int hipStreamCreateWithFlags(void **s, unsigned f) { (void)f; return f_stream_create(NULL, s); }
API int hipStreamDestroy(void *s) { return f_stream_destroy(NULL, s); }
API int hipStreamSynchronize(void *s) { return f_stream_sync(NULL, s); }
API int hipStreamIsCapturing(void *s, int *status) /* no captures played here */
{
    (void)s;
    *status = 0;
    return 0;
}
API int hipStreamWaitEvent(void *s, void *e, unsigned f) { (void)f; return f_stream_wait_event(NULL, s, e); }
API int hipEventCreateWithFlags(void **e, unsigned f) { (void)f; return f_event_create(NULL, e); }
API int hipEventRecord(void *e, void *s) { return f_event_record(NULL, e, s); }
API int hipEventDestroy(void *e) { return f_event_destroy(NULL, e); }
API int hipMemAddressReserve(void **p, size_t size, size_t align, void *addr, unsigned long long f)
{
    (void)addr, (void)f;
    uint64_t a = 0;
    int r = f_va_reserve(NULL, &a, size, align ? align : GRANULE);
    *p = (void *)(uintptr_t)a;
    return r;
}
API int hipMemAddressFree(void *p, size_t size) { return f_va_free(NULL, U(p), size); }
API int hipMemCreate(void **h, size_t size, const void *prop, unsigned long long f)
{
    (void)prop, (void)f;
    uint64_t u = 0;
    int r = f_mem_create(NULL, &u, size);
    *h = (void *)(uintptr_t)u;
    return r;
}
API int hipMemRelease(void *h) { return f_mem_release(NULL, U(h)); }
API int hipMemMap(void *p, size_t size, size_t off, void *h, unsigned long long f)
{
    (void)f;
    return off ? FAKE_ERROR_REFUSED : f_mem_map(NULL, U(p), size, U(h));
}
API int hipMemExportToShareableHandle(void *out, void *h, int type, unsigned long long f)
{
    (void)f;
    return type != 1 ? FAKE_ERROR_REFUSED : f_mem_export(NULL, U(h), (int *)out);
}
API int hipMemImportFromShareableHandle(void **h, void *fd, int type)
{
    uint64_t u = 0;
    int r = type != 1 ? FAKE_ERROR_REFUSED : f_mem_import(NULL, (int)(uintptr_t)fd, &u);
    *h = (void *)(uintptr_t)u;
    return r;
}
API int hipMemUnmap(void *p, size_t size) { return f_mem_unmap(NULL, U(p), size); }
API int hipMemSetAccess(void *p, size_t size, const int *desc, size_t count)
{
    return count != 1 ? FAKE_ERROR_REFUSED : f_set_access(NULL, U(p), size, desc[2] == 3);
}
API int hipMemGetAllocationGranularity(size_t *g, const void *prop, int option)
{
    (void)prop, (void)option;
    *g = GRANULE;
    return 0;
}
API int hipMemcpyHtoDAsync(void *d, const void *s, size_t n, void *st) { return f_memcpy_htod(NULL, U(d), s, n, st); }
API int hipMemcpyDtoHAsync(void *d, void *s, size_t n, void *st) { return f_memcpy_dtoh(NULL, d, U(s), n, st); }
API int hipMemcpyDtoDAsync(void *d, void *s, size_t n, void *st) { return f_memcpy_dtod(NULL, U(d), U(s), n, st); }
API int hipMemsetD8Async(void *d, unsigned char b, size_t n, void *st) { return f_memset_d8(NULL, U(d), b, n, st); }
API int hipHostMalloc(void **p, size_t n, unsigned f) { return f_host_alloc(NULL, p, n, (f & 2) != 0); }
API int hipHostFree(void *p) { return f_host_free(NULL, p); }
API int hipHostGetDevicePointer(void **d, void *p, unsigned f)
{
    (void)f;
    *d = p;
    return 0;
}
API int hipMalloc(void **d, size_t n)
{
    uint64_t u = 0;
    int r = f_dev_alloc(NULL, &u, n);
    *d = (void *)(uintptr_t)u;
    return r;
}
API int hipFree(void *d) { return f_dev_free(NULL, U(d)); }
API int hipModuleLoadData(void **m, const void *image) { return f_module_load(NULL, m, image); }
API int hipModuleUnload(void *m) { return f_module_unload(NULL, m); }
API int hipModuleGetFunction(void **fn, void *m, const char *name) { return f_module_function(NULL, fn, m, name); }
API int hipModuleOccupancyMaxActiveBlocksPerMultiprocessor(int *n, void *fn, int block, size_t shm)
{
    (void)shm;
    return f_occupancy(NULL, n, fn, (unsigned)block);
}
API int hipModuleLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                              unsigned by, unsigned bz, unsigned shm, void *st, void **args,
                              void **extra)
{
    (void)gy, (void)gz, (void)by, (void)bz, (void)shm, (void)extra;
    return f_launch(NULL, fn, gx, bx, st, args);
}
API const char *hipGetErrorName(int rc) { return err_name(rc); }
API const char *hipGetErrorString(int rc) { return err_text(rc); }
#endif
