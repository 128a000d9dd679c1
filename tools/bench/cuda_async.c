/*
 * cuda_async.c: cuMemAllocAsync/cuMemFreeAsync on the device's default
 * memory pool, the baseline for `gms-bench replay --backend cuda`
 * (cuda_async.h). The driver is loaded at run time as in
 * src/backend/cuda/cuda.c; the types and constants below are copied by
 * hand from cuda.h (CUDA 12/13).
 */
#include "cuda_async.h"
#include "bench.h"

#include <dlfcn.h>
#include <stdio.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUmemPoolHandle_st *CUmemoryPool;
typedef bench_cuda_ptr CUdeviceptr;
typedef uint64_t cuuint64_t;

enum {
    CUDA_SUCCESS = 0,
    CU_STREAM_NON_BLOCKING = 1,
    /* CUmemPool_attribute; both take a cuuint64_t, passed by pointer. */
    CU_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4,
    CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH = 6 /* 7 is USED_MEM_CURRENT */
};

/* The _v2 name where cuda.h maps the plain one to it. */
#define CU_FNS(X)                                                                   \
    X(Init, "cuInit", (unsigned))                                                   \
    X(DeviceGet, "cuDeviceGet", (CUdevice *, int))                                  \
    X(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext *, CUdevice))  \
    X(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (CUdevice))          \
    X(CtxSetCurrent, "cuCtxSetCurrent", (CUcontext))                                \
    X(StreamCreate, "cuStreamCreate", (CUstream *, unsigned))                       \
    X(StreamSynchronize, "cuStreamSynchronize", (CUstream))                         \
    X(StreamDestroy, "cuStreamDestroy_v2", (CUstream))                              \
    X(DeviceGetDefaultMemPool, "cuDeviceGetDefaultMemPool", (CUmemoryPool *, CUdevice)) \
    X(MemPoolSetAttribute, "cuMemPoolSetAttribute", (CUmemoryPool, int, void *))    \
    X(MemPoolGetAttribute, "cuMemPoolGetAttribute", (CUmemoryPool, int, void *))    \
    X(MemPoolTrimTo, "cuMemPoolTrimTo", (CUmemoryPool, size_t))                     \
    X(MemAllocAsync, "cuMemAllocAsync", (CUdeviceptr *, size_t, CUstream))          \
    X(MemFreeAsync, "cuMemFreeAsync", (CUdeviceptr, CUstream))                      \
    X(GetErrorString, "cuGetErrorString", (CUresult, const char **))

#define CU_DECL(field, sym, args) CUresult (*field) args;
static struct {
    CU_FNS(CU_DECL)
} cu;
#undef CU_DECL

static CUdevice dev;
static CUcontext ctx;   /* NULL: not retained */
static CUstream stream; /* NULL: not created */
static CUmemoryPool pool;

void bench_cuda_report(const char *what, int r)
{
    const char *s = NULL;
    if (cu.GetErrorString)
        cu.GetErrorString(r, &s);
    fprintf(stderr, "gms-bench: %s: %s (CUresult %d)\n", what, s ? s : "unknown error", r);
}

/* 0, or reports the failed call and gives the bench's failure code. */
static int check(const char *what, CUresult r)
{
    if (r == CUDA_SUCCESS)
        return 0;
    bench_cuda_report(what, r);
    return BENCH_EXIT_FAIL;
}

int bench_cuda_open(int device)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "gms-bench: CUDA is unavailable: libcuda.so.1 did not load: %s\n",
                dlerror());
        return BENCH_EXIT_FAIL;
    }
    /* The library stays loaded for the life of the process. */
#define CU_LOAD(field, sym, args)                                                       \
    *(void **)&cu.field = dlsym(lib, sym);                                               \
    if (!cu.field) {                                                                     \
        fprintf(stderr, "gms-bench: CUDA is unavailable: the driver lacks %s "            \
                "(stream-ordered allocation needs CUDA 11.2 or later)\n", sym);          \
        return BENCH_EXIT_FAIL;                                                          \
    }
    CU_FNS(CU_LOAD)
#undef CU_LOAD
    /* cuInit fails with CUDA_ERROR_NO_DEVICE when there is no GPU. */
    CUresult r = cu.Init(0);
    if (r != CUDA_SUCCESS) {
        bench_cuda_report("CUDA is unavailable: cuInit", r);
        return BENCH_EXIT_FAIL;
    }
    if ((r = cu.DeviceGet(&dev, device)) != CUDA_SUCCESS) {
        bench_cuda_report("CUDA is unavailable: cuDeviceGet", r);
        return BENCH_EXIT_FAIL;
    }
    /* The primary context is the one libgms's CUDA backend uses: the stream
     * must belong to it for gms_alloc_async to queue work on it. */
    cuuint64_t threshold = UINT64_MAX;
    if (check("cuDevicePrimaryCtxRetain", cu.DevicePrimaryCtxRetain(&ctx, dev)) ||
        check("cuCtxSetCurrent", cu.CtxSetCurrent(ctx)) ||
        check("cuStreamCreate", cu.StreamCreate(&stream, CU_STREAM_NON_BLOCKING)) ||
        check("cuDeviceGetDefaultMemPool", cu.DeviceGetDefaultMemPool(&pool, dev)) ||
        /* Never hand memory back at a synchronization: a PyTorch process
         * keeps what it reserved, as a caching allocator does. */
        check("cuMemPoolSetAttribute (release threshold)",
              cu.MemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold))) {
        bench_cuda_close();
        return BENCH_EXIT_FAIL;
    }
    return 0;
}

void bench_cuda_close(void)
{
    /* Errors here change no figure; the run is over. */
    if (stream)
        cu.StreamDestroy(stream);
    if (ctx)
        cu.DevicePrimaryCtxRelease(dev);
    stream = NULL;
    ctx = NULL;
}

void *bench_cuda_stream(void)
{
    return stream;
}

int bench_cuda_alloc(uint64_t size, bench_cuda_ptr *ptr)
{
    *ptr = 0;
    return size ? cu.MemAllocAsync(ptr, (size_t)size, stream) : CUDA_SUCCESS;
}

int bench_cuda_free(bench_cuda_ptr ptr)
{
    return ptr ? cu.MemFreeAsync(ptr, stream) : CUDA_SUCCESS;
}

int bench_cuda_sync(void)
{
    return check("cuStreamSynchronize", cu.StreamSynchronize(stream));
}

int bench_cuda_pool_empty(void)
{
    /* The watermark can only be reset (set to 0); after the trim the pool
     * holds nothing, so from here it counts the next replay alone. */
    cuuint64_t zero = 0;
    return check("cuMemPoolTrimTo", cu.MemPoolTrimTo(pool, 0)) ||
                   check("cuMemPoolSetAttribute (reset reserved high)",
                         cu.MemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, &zero))
               ? BENCH_EXIT_FAIL
               : 0;
}

int bench_cuda_pool_reserved_high(uint64_t *bytes)
{
    cuuint64_t v = 0;
    int ret = check("cuMemPoolGetAttribute (reserved high)",
                    cu.MemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, &v));
    *bytes = v;
    return ret;
}
