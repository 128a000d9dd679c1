/*
 * cuda.c: the CUDA backend, through the driver API loaded at run time.
 *
 * libcuda.so.1 is opened with dlopen and its entry points looked up by
 * name (the _v2 names where the driver exports versioned ones), so libgms
 * needs neither the toolkit nor a driver to build or to run on the host
 * backend. Memory goes through the virtual memory API (docs/gpu.md): a
 * chunk is a reserved address range with 2 MiB of unmapped guard space on
 * each side; each granule of it is its own physical allocation
 * (cuMemCreate + cuMemMap), so single granules can be returned, as
 * PyTorch's expandable segments do; one cuMemSetAccess covers each commit.
 * A read-only view maps the same physical allocations at another address
 * with read access only, so a kernel writing through it faults.
 *
 * Every entry point makes the device's primary context current on the
 * calling thread (and puts back the caller's afterwards): callers come from
 * any thread. Data movement and the scrub run on one internal non-blocking
 * stream and return when the work is done (synchronous results). The scrub
 * is one cooperative kernel per batch (src/kernels/scrub.cu) whose work
 * list goes up and whose results come back through one pinned buffer.
 */
#include "backend/cuda/cuda.h"
#include "kernels/scrub_plan.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The embedded kernels (scrub_fatbin.c, generated at build time; empty
 * when nvcc was not found). */
extern const unsigned char gms_scrub_fatbin[];
extern const size_t gms_scrub_fatbin_size;

/* ---- the few driver API types and constants we use (cuda.h, CUDA 12/13) ---- */

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long CUmemGenericAllocationHandle;

typedef struct {
    int type; /* CUmemLocationType */
    int id;
} cu_location;

typedef struct {
    int type;                 /* CUmemAllocationType */
    int requestedHandleTypes; /* CUmemAllocationHandleType */
    cu_location location;
    void *win32HandleMetaData;
    struct {
        unsigned char compressionType;
        unsigned char gpuDirectRDMACapable;
        unsigned short usage;
        unsigned char reserved[4];
    } allocFlags;
} cu_alloc_prop;

typedef struct {
    cu_location location;
    int flags; /* CUmemAccess_flags */
} cu_access_desc;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CU_MEM_ALLOCATION_TYPE_PINNED = 1,
    CU_MEM_LOCATION_TYPE_DEVICE = 1,
    CU_MEM_ACCESS_FLAGS_PROT_READ = 1,
    CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3,
    CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0,
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH = 95,
    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 102,
    CU_STREAM_NON_BLOCKING = 1,
    CU_MEMHOSTALLOC_PORTABLE = 1,
    CU_MEMHOSTALLOC_DEVICEMAP = 2
};

#define CU_FNS(X)                                                                          \
    X(Init, "cuInit", (unsigned))                                                          \
    X(DeviceGetCount, "cuDeviceGetCount", (int *))                                         \
    X(DeviceGet, "cuDeviceGet", (CUdevice *, int))                                         \
    X(DeviceGetAttribute, "cuDeviceGetAttribute", (int *, int, CUdevice))                  \
    X(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext *, CUdevice))         \
    X(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (CUdevice))                 \
    X(CtxGetCurrent, "cuCtxGetCurrent", (CUcontext *))                                     \
    X(CtxSetCurrent, "cuCtxSetCurrent", (CUcontext))                                       \
    X(StreamCreate, "cuStreamCreate", (CUstream *, unsigned))                              \
    X(StreamDestroy, "cuStreamDestroy_v2", (CUstream))                                     \
    X(StreamSynchronize, "cuStreamSynchronize", (CUstream))                                \
    X(StreamWaitEvent, "cuStreamWaitEvent", (CUstream, CUevent, unsigned))                 \
    X(EventCreate, "cuEventCreate", (CUevent *, unsigned))                                 \
    X(EventRecord, "cuEventRecord", (CUevent, CUstream))                                   \
    X(EventDestroy, "cuEventDestroy_v2", (CUevent))                                        \
    X(MemAddressReserve, "cuMemAddressReserve",                                            \
      (CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long))                    \
    X(MemAddressFree, "cuMemAddressFree", (CUdeviceptr, size_t))                           \
    X(MemCreate, "cuMemCreate",                                                            \
      (CUmemGenericAllocationHandle *, size_t, const cu_alloc_prop *, unsigned long long)) \
    X(MemRelease, "cuMemRelease", (CUmemGenericAllocationHandle))                          \
    X(MemMap, "cuMemMap",                                                                  \
      (CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long))     \
    X(MemUnmap, "cuMemUnmap", (CUdeviceptr, size_t))                                       \
    X(MemSetAccess, "cuMemSetAccess", (CUdeviceptr, size_t, const cu_access_desc *, size_t)) \
    X(MemGetAllocationGranularity, "cuMemGetAllocationGranularity",                        \
      (size_t *, const cu_alloc_prop *, int))                                              \
    X(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", (CUdeviceptr, const void *, size_t, CUstream)) \
    X(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", (void *, CUdeviceptr, size_t, CUstream))   \
    X(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", (CUdeviceptr, CUdeviceptr, size_t, CUstream)) \
    X(MemsetD8Async, "cuMemsetD8Async", (CUdeviceptr, unsigned char, size_t, CUstream))    \
    X(MemHostAlloc, "cuMemHostAlloc", (void **, size_t, unsigned))                         \
    X(MemFreeHost, "cuMemFreeHost", (void *))                                              \
    X(MemAlloc, "cuMemAlloc_v2", (CUdeviceptr *, size_t))                                  \
    X(MemFree, "cuMemFree_v2", (CUdeviceptr))                                              \
    X(ModuleLoadData, "cuModuleLoadData", (CUmodule *, const void *))                      \
    X(ModuleUnload, "cuModuleUnload", (CUmodule))                                          \
    X(ModuleGetFunction, "cuModuleGetFunction", (CUfunction *, CUmodule, const char *))    \
    X(LaunchCooperativeKernel, "cuLaunchCooperativeKernel",                                \
      (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,   \
       CUstream, void **))                                                                 \
    X(OccupancyMaxActiveBlocksPerMultiprocessor,                                           \
      "cuOccupancyMaxActiveBlocksPerMultiprocessor", (int *, CUfunction, int, size_t))     \
    X(LaunchKernel, "cuLaunchKernel",                                                      \
      (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,   \
       CUstream, void **, void **))                                                        \
    X(MemHostGetDevicePointer, "cuMemHostGetDevicePointer_v2",                             \
      (CUdeviceptr *, void *, unsigned))                                                   \
    X(MemcpyHtoD, "cuMemcpyHtoD_v2", (CUdeviceptr, const void *, size_t))                  \
    X(CtxSynchronize, "cuCtxSynchronize", (void))                                          \
    X(GetErrorString, "cuGetErrorString", (CUresult, const char **))

#define CU_DECL(field, sym, args) CUresult (*field) args;
static struct {
    CU_FNS(CU_DECL)
} cu;
#undef CU_DECL

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_err;           /* errno value: 0 when the driver is usable */
static char load_why[256];
static int device_count;
static _Thread_local char why[256];

static void set_why(const char *fmt, const char *a, CUresult r)
{
    const char *s = NULL;
    if (cu.GetErrorString)
        cu.GetErrorString(r, &s);
    snprintf(why, sizeof why, fmt, a, s ? s : "unknown error", r);
}

/* Maps a driver error to an errno value, noting why on this thread. */
static int cu_fail(const char *what, CUresult r)
{
    set_why("cuda: %s: %s (CUresult %d)", what, r);
    return r == CUDA_ERROR_OUT_OF_MEMORY ? ENOMEM : EIO;
}

const char *gms_backend_cuda_why(void)
{
    return why;
}

static void load_driver(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        load_err = ENODEV;
        snprintf(load_why, sizeof load_why, "cuda: no driver (libcuda.so.1 did not load: %s)",
                 dlerror());
        return;
    }
#define CU_LOAD(field, sym, args)                                                            \
    *(void **)&cu.field = dlsym(lib, sym);                                                    \
    if (!cu.field) {                                                                          \
        load_err = ENODEV;                                                                    \
        snprintf(load_why, sizeof load_why, "cuda: the driver lacks %s (too old?)", sym);    \
        return;                                                                               \
    }
    CU_FNS(CU_LOAD)
#undef CU_LOAD
    CUresult r = cu.Init(0);
    if (r == CUDA_SUCCESS)
        r = cu.DeviceGetCount(&device_count);
    if (r != CUDA_SUCCESS || device_count <= 0) {
        const char *s = NULL;
        cu.GetErrorString(r, &s);
        load_err = ENODEV;
        snprintf(load_why, sizeof load_why, "cuda: no GPU (%s)",
                 r != CUDA_SUCCESS && s ? s : "the driver reports no device");
        device_count = 0;
    }
    /* The library stays loaded for the life of the process. */
}

int gms_backend_cuda_available(void)
{
    pthread_once(&load_once, load_driver);
    if (load_err)
        snprintf(why, sizeof why, "%s", load_why);
    return load_err == 0 && device_count > 0;
}

int gms_backend_cuda_have_kernels(void)
{
    return gms_scrub_fatbin_size > 0;
}

/* ---- the backend ---- */

typedef struct cuda_backend {
    gms_backend base;
    gms_backend_ops ops; /* cuda_ops, less the stream-ordered ones without their kernel */
    CUdevice dev;
    CUcontext ctx;
    CUstream stream;
    CUmodule module;
    CUfunction scrub_fn; /* NULL: kernels not built in or not loadable */
    uint64_t gran;
    unsigned max_grid;   /* co-resident blocks of the scrub kernel */
    cu_alloc_prop prop;
    cu_access_desc rw, ro;
    pthread_mutex_t scrub_lock; /* the staging buffers */
    void *stage_host;           /* pinned */
    CUdeviceptr stage_dev;
    size_t stage_cap;
    /* Stream-ordered scrubs (scrub.h): ticket t uses slot t % ASYNC_SLOTS
     * of a pinned ring (done word and results, which the kernel writes)
     * and of a device ring (results being folded). A slot is taken again
     * only once its last ticket was collected. */
    CUfunction async_fn; /* NULL: stream-ordered scrubs unavailable */
    unsigned async_grid; /* blocks per launch, at most */
    gms_kslot_host *slots_host;
    gms_kslot_host *slots_host_dev; /* the same, as the device sees it */
    gms_kslot_dev *slots_dev;
    uint64_t *slot_issued; /* ticket using each slot; 0: free (async_lock) */
    unsigned char *slot_marker; /* nothing to report: reusable once run */
    unsigned char *slot_failed;
    pthread_mutex_t async_lock; /* next_ticket and slot_issued */
    uint64_t next_ticket;
    uint64_t _Atomic done_upto;
} cuda_backend;

#define ASYNC_SLOTS 8192u

_Static_assert(GMS_SCRUB_ASYNC_MAX_K == GMS_SCRUB_ASYNC_MAX,
               "the kernel's result slots hold one batch");

struct gms_backend_chunk {
    CUdeviceptr region; /* whole reservation, guards included */
    uint64_t region_size;
    CUdeviceptr base;
    uint64_t size;
    CUmemGenericAllocationHandle *handles; /* one per granule; 0: unmapped */
};

#define CUDA_GUARD_BYTES (2ull << 20)

static cuda_backend *B(gms_backend *be)
{
    return (cuda_backend *)be;
}

uint64_t gms_backend_cuda_granularity(const gms_backend *be)
{
    return ((const cuda_backend *)be)->gran;
}

/* Makes the backend's context current; *saved is the caller's, put back by
 * leave. Cost: one thread-local read when it is current already. */
static int enter(cuda_backend *cb, CUcontext *saved)
{
    CUcontext cur = NULL;
    CUresult r = cu.CtxGetCurrent(&cur);
    if (r != CUDA_SUCCESS)
        return cu_fail("cuCtxGetCurrent", r);
    *saved = cur;
    if (cur != cb->ctx && (r = cu.CtxSetCurrent(cb->ctx)) != CUDA_SUCCESS)
        return cu_fail("cuCtxSetCurrent", r);
    return 0;
}

static void leave(cuda_backend *cb, CUcontext saved)
{
    if (saved != cb->ctx)
        cu.CtxSetCurrent(saved);
}

static int sync_stream(cuda_backend *cb, const char *what)
{
    CUresult r = cu.StreamSynchronize(cb->stream);
    return r == CUDA_SUCCESS ? 0 : cu_fail(what, r);
}

static int cuda_reserve(gms_backend *be, uint64_t size, uint64_t align, uint64_t *base,
                        gms_backend_chunk **out)
{
    cuda_backend *cb = B(be);
    if (size == 0 || size % cb->gran || (align & (align - 1)))
        return EINVAL;
    if (align < cb->gran)
        align = cb->gran;
    gms_backend_chunk *c = calloc(1, sizeof *c);
    if (!c)
        return ENOMEM;
    c->handles = calloc(size / cb->gran, sizeof *c->handles);
    if (!c->handles) {
        free(c);
        return ENOMEM;
    }
    uint64_t guard = (CUDA_GUARD_BYTES + align - 1) & ~(align - 1);
    CUcontext saved;
    int err = enter(cb, &saved);
    if (!err) {
        c->region_size = size + 2 * guard;
        CUresult r = cu.MemAddressReserve(&c->region, c->region_size, align, 0, 0);
        if (r != CUDA_SUCCESS)
            err = cu_fail("cuMemAddressReserve", r);
        leave(cb, saved);
    }
    if (err) {
        free(c->handles);
        free(c);
        return err;
    }
    c->base = c->region + guard;
    c->size = size;
    *base = c->base;
    *out = c;
    return 0;
}

/* Unmaps and releases granules [first, last) that are mapped. */
static void unmap_granules(cuda_backend *cb, gms_backend_chunk *c, uint64_t first, uint64_t last)
{
    for (uint64_t g = first; g < last; g++) {
        if (!c->handles[g])
            continue;
        cu.MemUnmap(c->base + g * cb->gran, cb->gran);
        cu.MemRelease(c->handles[g]);
        c->handles[g] = 0;
    }
}

static void cuda_release(gms_backend *be, gms_backend_chunk *c)
{
    cuda_backend *cb = B(be);
    if (!c)
        return;
    CUcontext saved;
    if (enter(cb, &saved) == 0) {
        unmap_granules(cb, c, 0, c->size / cb->gran);
        cu.MemAddressFree(c->region, c->region_size);
        leave(cb, saved);
    }
    free(c->handles);
    free(c);
}

static int range_ok(const cuda_backend *cb, const gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    return len != 0 && off <= c->size && len <= c->size - off && off % cb->gran == 0 &&
           len % cb->gran == 0;
}

static int cuda_commit(gms_backend *be, gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    cuda_backend *cb = B(be);
    if (!range_ok(cb, c, off, len))
        return EINVAL;
    uint64_t first = off / cb->gran, last = (off + len) / cb->gran;
    for (uint64_t g = first; g < last; g++)
        if (c->handles[g])
            return EINVAL; /* mapped already */
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    CUresult r;
    uint64_t g = first;
    for (; g < last; g++) {
        CUmemGenericAllocationHandle h;
        if ((r = cu.MemCreate(&h, cb->gran, &cb->prop, 0)) != CUDA_SUCCESS) {
            err = cu_fail("cuMemCreate", r);
            break;
        }
        if ((r = cu.MemMap(c->base + g * cb->gran, cb->gran, 0, h, 0)) != CUDA_SUCCESS) {
            cu.MemRelease(h);
            err = cu_fail("cuMemMap", r);
            break;
        }
        c->handles[g] = h;
    }
    /* One access call for the whole range: it costs as much as a
     * cuMemCreate or more (H200, tests/gpu/vmm_sync.cu: create 21 us, set
     * access 44 us), so never per granule. */
    if (!err && (r = cu.MemSetAccess(c->base + off, len, &cb->rw, 1)) != CUDA_SUCCESS)
        err = cu_fail("cuMemSetAccess", r);
    /* backend.h: new memory reads as zeros; with stream-ordered scrubs the
     * core zeroes it on the allocating stream instead, and nothing waits. */
    if (!err && !cb->async_fn) {
        if ((r = cu.MemsetD8Async(c->base + off, 0, len, cb->stream)) != CUDA_SUCCESS)
            err = cu_fail("cuMemsetD8Async", r);
        if (!err)
            err = sync_stream(cb, "cuStreamSynchronize (commit)");
    }
    if (err)
        unmap_granules(cb, c, first, g < last ? g : last);
    leave(cb, saved);
    return err;
}

static int cuda_decommit(gms_backend *be, gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    cuda_backend *cb = B(be);
    if (!range_ok(cb, c, off, len))
        return EINVAL;
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    unmap_granules(cb, c, off / cb->gran, (off + len) / cb->gran);
    leave(cb, saved);
    return 0;
}

static int cuda_map_view_readonly(gms_backend *be, gms_backend_chunk *c, uint64_t off,
                                  uint64_t len, uint64_t *view)
{
    cuda_backend *cb = B(be);
    if (!range_ok(cb, c, off, len))
        return EINVAL;
    uint64_t first = off / cb->gran, last = (off + len) / cb->gran;
    for (uint64_t g = first; g < last; g++)
        if (!c->handles[g])
            return EINVAL; /* not committed */
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    CUdeviceptr v = 0;
    CUresult r = cu.MemAddressReserve(&v, len, cb->gran, 0, 0);
    if (r != CUDA_SUCCESS) {
        err = cu_fail("cuMemAddressReserve (view)", r);
        goto out;
    }
    uint64_t g = first;
    for (; g < last; g++) {
        /* The physical allocation gains a reference per mapping: a
         * decommit of the chunk's granule leaves the view intact. */
        if ((r = cu.MemMap(v + (g - first) * cb->gran, cb->gran, 0, c->handles[g], 0)) !=
            CUDA_SUCCESS) {
            err = cu_fail("cuMemMap (view)", r);
            break;
        }
    }
    if (!err && (r = cu.MemSetAccess(v, len, &cb->ro, 1)) != CUDA_SUCCESS)
        err = cu_fail("cuMemSetAccess (read-only view)", r);
    if (err) {
        for (uint64_t u = first; u < g; u++)
            cu.MemUnmap(v + (u - first) * cb->gran, cb->gran);
        cu.MemAddressFree(v, len);
    } else {
        *view = v;
    }
out:
    leave(cb, saved);
    return err;
}

static void cuda_unmap_view(gms_backend *be, uint64_t view, uint64_t len)
{
    cuda_backend *cb = B(be);
    CUcontext saved;
    if (enter(cb, &saved) != 0)
        return;
    for (uint64_t o = 0; o < len; o += cb->gran)
        cu.MemUnmap(view + o, cb->gran);
    cu.MemAddressFree(view, len);
    leave(cb, saved);
}

/* Data movement: issued on the internal stream, then waited for. */
static int cuda_write(gms_backend *be, uint64_t dst, const void *src, size_t len)
{
    cuda_backend *cb = B(be);
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    CUresult r = cu.MemcpyHtoDAsync(dst, src, len, cb->stream);
    err = r == CUDA_SUCCESS ? sync_stream(cb, "cuStreamSynchronize (write)")
                            : cu_fail("cuMemcpyHtoDAsync", r);
    leave(cb, saved);
    return err;
}

static int cuda_read(gms_backend *be, void *dst, uint64_t src, size_t len)
{
    cuda_backend *cb = B(be);
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    CUresult r = cu.MemcpyDtoHAsync(dst, src, len, cb->stream);
    err = r == CUDA_SUCCESS ? sync_stream(cb, "cuStreamSynchronize (read)")
                            : cu_fail("cuMemcpyDtoHAsync", r);
    leave(cb, saved);
    return err;
}

static int cuda_copy(gms_backend *be, uint64_t dst, uint64_t src, size_t len)
{
    cuda_backend *cb = B(be);
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    CUresult r = CUDA_SUCCESS;
    /* gms_copy allows overlap; a device copy does not promise memmove
     * semantics, so overlapping ranges go in pieces no longer than the
     * distance, in the safe direction. */
    uint64_t dist = dst > src ? dst - src : src - dst;
    if (dist >= len || dist == 0) {
        if (dist)
            r = cu.MemcpyDtoDAsync(dst, src, len, cb->stream);
    } else if (dst < src) {
        for (uint64_t o = 0; o < len && r == CUDA_SUCCESS; o += dist)
            r = cu.MemcpyDtoDAsync(dst + o, src + o, len - o < dist ? len - o : dist, cb->stream);
    } else {
        for (uint64_t end = len; end > 0 && r == CUDA_SUCCESS;) {
            uint64_t n = end < dist ? end : dist;
            end -= n;
            r = cu.MemcpyDtoDAsync(dst + end, src + end, n, cb->stream);
        }
    }
    err = r == CUDA_SUCCESS ? sync_stream(cb, "cuStreamSynchronize (copy)")
                            : cu_fail("cuMemcpyDtoDAsync", r);
    leave(cb, saved);
    return err;
}

static int cuda_fill(gms_backend *be, uint64_t dst, int byte, size_t len)
{
    cuda_backend *cb = B(be);
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    CUresult r = cu.MemsetD8Async(dst, (unsigned char)byte, len, cb->stream);
    err = r == CUDA_SUCCESS ? sync_stream(cb, "cuStreamSynchronize (fill)")
                            : cu_fail("cuMemsetD8Async", r);
    leave(cb, saved);
    return err;
}

/* ---- scrub ---- */

/* Grows the pinned and device staging buffers to at least need bytes. */
static int stage_reserve(cuda_backend *cb, size_t need)
{
    if (need <= cb->stage_cap)
        return 0;
    size_t cap = cb->stage_cap ? cb->stage_cap : 64 * 1024;
    while (cap < need)
        cap *= 2;
    void *h = NULL;
    CUdeviceptr d = 0;
    CUresult r = cu.MemHostAlloc(&h, cap, CU_MEMHOSTALLOC_PORTABLE);
    if (r != CUDA_SUCCESS)
        return cu_fail("cuMemHostAlloc (scrub staging)", r);
    if ((r = cu.MemAlloc(&d, cap)) != CUDA_SUCCESS) {
        cu.MemFreeHost(h);
        return cu_fail("cuMemAlloc (scrub staging)", r);
    }
    if (cb->stage_host) {
        cu.MemFreeHost(cb->stage_host);
        cu.MemFree(cb->stage_dev);
    }
    cb->stage_host = h;
    cb->stage_dev = d;
    cb->stage_cap = cap;
    return 0;
}

static int cuda_scrub_locked(cuda_backend *cb, gms_scrub_item *items, size_t n, uint64_t pattern,
                             uint64_t seed)
{
    gms_scrub_plan plan = gms_scrub_plan_size(items, n);
    if (plan.bytes == 0)
        return 0;
    if (!cb->scrub_fn) {
        snprintf(why, sizeof why,
                 "cuda: the scrub kernel is missing (gms was built without nvcc, or the driver "
                 "could not load it)");
        return ENOSYS;
    }
    if (n > UINT32_MAX)
        return EINVAL;
    int err = stage_reserve(cb, plan.bytes);
    if (err)
        return err;
    gms_kparams p;
    gms_scrub_plan_build(&plan, items, n, cb->stage_host, cb->stage_dev, pattern, seed, &p);
    uint64_t work = p.check_tiles > p.fill_tiles ? p.check_tiles : p.fill_tiles;
    unsigned grid = work < cb->max_grid ? (unsigned)work : cb->max_grid;
    if (grid == 0)
        grid = 1;
    CUresult r = cu.MemcpyHtoDAsync(cb->stage_dev, cb->stage_host, plan.bytes, cb->stream);
    if (r != CUDA_SUCCESS)
        return cu_fail("cuMemcpyHtoDAsync (scrub work list)", r);
    void *args[] = {&p};
    r = cu.LaunchCooperativeKernel(cb->scrub_fn, grid, 1, 1, GMS_KTHREADS, 1, 1, 0, cb->stream, args);
    if (r != CUDA_SUCCESS)
        return cu_fail("cuLaunchCooperativeKernel (scrub)", r);
    r = cu.MemcpyDtoHAsync((char *)cb->stage_host + plan.seg_bytes, cb->stage_dev + plan.seg_bytes,
                           n * sizeof(gms_kres), cb->stream);
    if (r != CUDA_SUCCESS)
        return cu_fail("cuMemcpyDtoHAsync (scrub results)", r);
    if ((err = sync_stream(cb, "scrub kernel")) != 0)
        return err;
    gms_scrub_plan_results(&plan, cb->stage_host, items, n);
    return 0;
}

static int cuda_scrub(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                      uint64_t seed)
{
    cuda_backend *cb = B(be);
    for (size_t i = 0; i < n; i++)
        items[i].bad = items[i].verify_bad = 0;
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    pthread_mutex_lock(&cb->scrub_lock);
    err = cuda_scrub_locked(cb, items, n, pattern, seed);
    pthread_mutex_unlock(&cb->scrub_lock);
    leave(cb, saved);
    return err;
}

/* A stream-ordered free: the internal stream, where every scrub runs,
 * waits for an event recorded on the caller's stream. */
static int cuda_order_after(gms_backend *be, void *stream, int wait)
{
    cuda_backend *cb = B(be);
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    CUresult r;
    if (wait) {
        r = cu.StreamSynchronize((CUstream)stream);
        err = r == CUDA_SUCCESS ? 0 : cu_fail("cuStreamSynchronize (caller's stream)", r);
    } else {
        CUevent ev;
        enum { CU_EVENT_DISABLE_TIMING = 2 };
        r = cu.EventCreate(&ev, CU_EVENT_DISABLE_TIMING);
        if (r == CUDA_SUCCESS) {
            r = cu.EventRecord(ev, (CUstream)stream);
            if (r == CUDA_SUCCESS)
                r = cu.StreamWaitEvent(cb->stream, ev, 0);
            cu.EventDestroy(ev); /* released once the wait has passed */
        }
        err = r == CUDA_SUCCESS ? 0 : cu_fail("ordering after the caller's stream", r);
    }
    leave(cb, saved);
    return err;
}

/* ---- stream-ordered scrub ---- */

static uint64_t slot_done(const cuda_backend *cb, uint32_t slot)
{
    return atomic_load_explicit((const uint64_t _Atomic *)&cb->slots_host[slot].done,
                                memory_order_acquire);
}

static int cuda_ticket_reserve(gms_backend *be, uint64_t *ticket)
{
    cuda_backend *cb = B(be);
    pthread_mutex_lock(&cb->async_lock);
    uint64_t t = cb->next_ticket;
    uint32_t slot = (uint32_t)(t % ASYNC_SLOTS);
    uint64_t prev = cb->slot_issued[slot];
    if (prev && !(cb->slot_marker[slot] && slot_done(cb, slot) >= prev)) {
        pthread_mutex_unlock(&cb->async_lock);
        snprintf(why, sizeof why, "cuda: %u stream-ordered scrubs in flight", ASYNC_SLOTS);
        return EBUSY;
    }
    cb->slot_issued[slot] = t;
    cb->slot_marker[slot] = 0;
    cb->slot_failed[slot] = 0;
    cb->next_ticket = t + 1;
    pthread_mutex_unlock(&cb->async_lock);
    *ticket = t;
    return 0;
}

static int cuda_scrub_async(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                            uint64_t seed, void *stream, uint64_t t)
{
    cuda_backend *cb = B(be);
    uint32_t slot = (uint32_t)(t % ASYNC_SLOTS);
    int err = n > GMS_SCRUB_ASYNC_MAX ? EINVAL : 0;
    /* The work list travels in the launch's parameters. */
    gms_kasync p;
    p.pattern = pattern;
    p.seed = seed;
    p.nranges = 0;
    p.nitems = (uint32_t)n;
    p.tiles = 0;
    bool reports = false;
    for (size_t i = 0; i < n && !err; i++) {
        const gms_scrub_item *it = &items[i];
        reports |= it->verify && !it->zero;
        uint8_t flags = (uint8_t)(((it->passes & GMS_SCRUB_MULTIPASS) ? GMS_KF_MULTIPASS : 0) |
                                  (it->verify && !it->zero ? GMS_KF_VERIFY : 0));
        for (int r = 0; r < 4; r++) {
            uint64_t lo = r < 2 ? it->check_lo[r] : it->fill_lo[r - 2];
            uint64_t hi = r < 2 ? it->check_hi[r] : it->fill_hi[r - 2];
            if (lo >= hi)
                continue;
            uint8_t op = r < 2 ? GMS_KOP_CHECK : it->zero ? GMS_KOP_ZERO : GMS_KOP_FILL;
            uint64_t tiles = gms_scrub_tiles(lo, hi);
            if (p.tiles + tiles > UINT32_MAX) { /* 64 TiB in one batch: not a device's */
                err = EINVAL;
                break;
            }
            p.r[p.nranges++] = (gms_krange){.lo = lo, .hi = hi, .item = (uint16_t)i, .op = op,
                                            .flags = r < 2 ? 0 : flags, .tile0 = p.tiles};
            p.tiles += (uint32_t)tiles;
            reports |= op == GMS_KOP_CHECK;
        }
    }
    cb->slot_marker[slot] = !reports; /* never collected: reusable once run */
    p.ticket = t;
    p.dev = (gms_kslot_dev *)(uintptr_t)(cb->slots_dev + slot);
    p.host = cb->slots_host_dev + slot;
    /* One block at least: the last one writes the done word. */
    unsigned grid = p.tiles < cb->async_grid ? (p.tiles ? p.tiles : 1) : cb->async_grid;
    CUcontext saved;
    if (!err && (err = enter(cb, &saved)) == 0) {
        void *args[] = {&p};
        CUresult r = cu.LaunchKernel(cb->async_fn, grid, 1, 1, GMS_KTHREADS, 1, 1, 0,
                                     (CUstream)stream, args, NULL);
        if (r != CUDA_SUCCESS)
            err = cu_fail("cuLaunchKernel (stream-ordered scrub)", r);
        leave(cb, saved);
    }
    if (err) {
        /* Nothing was queued: the ticket completes now, as a failure, so
         * that the tickets after it are not held up. */
        cb->slot_failed[slot] = 1;
        atomic_store_explicit((uint64_t _Atomic *)&cb->slots_host[slot].done, t,
                              memory_order_release);
        return err;
    }
    return 0;
}


static int cuda_scrub_collect(gms_backend *be, uint64_t ticket, gms_scrub_item *items, size_t n)
{
    cuda_backend *cb = B(be);
    uint32_t slot = (uint32_t)(ticket % ASYNC_SLOTS);
    if (slot_done(cb, slot) < ticket)
        return EAGAIN;
    const gms_kslot_host *h = &cb->slots_host[slot];
    int failed = cb->slot_failed[slot];
    for (size_t i = 0; i < n && i < GMS_SCRUB_ASYNC_MAX; i++) {
        items[i].bad = failed || h->bad[i] == ~0ull ? 0 : h->bad[i];
        items[i].verify_bad = failed || h->vbad[i] == ~0ull ? 0 : h->vbad[i];
    }
    pthread_mutex_lock(&cb->async_lock);
    cb->slot_issued[slot] = 0;
    pthread_mutex_unlock(&cb->async_lock);
    if (failed) {
        snprintf(why, sizeof why, "cuda: a stream-ordered scrub could not be queued");
        return EIO;
    }
    return 0;
}

static uint64_t cuda_done_upto(gms_backend *be)
{
    cuda_backend *cb = B(be);
    uint64_t w = atomic_load_explicit(&cb->done_upto, memory_order_acquire), start = w;
    /* A slot's done word only grows, and a slot is reused only once its
     * ticket was collected, so done >= t says that ticket t has run. */
    while (slot_done(cb, (uint32_t)((w + 1) % ASYNC_SLOTS)) >= w + 1)
        w++;
    while (w > start && !atomic_compare_exchange_weak(&cb->done_upto, &start, w))
        ; /* another thread may have gone further */
    return atomic_load_explicit(&cb->done_upto, memory_order_acquire);
}

static int cuda_ticket_done(gms_backend *be, uint64_t ticket)
{
    /* A slot is taken again only once its ticket ran: a later ticket's
     * done word in it says so too. */
    return slot_done(B(be), (uint32_t)(ticket % ASYNC_SLOTS)) >= ticket;
}

static int cuda_quiesce(gms_backend *be)
{
    cuda_backend *cb = B(be);
    CUcontext saved;
    int err = enter(cb, &saved);
    if (err)
        return err;
    CUresult r = cu.CtxSynchronize();
    leave(cb, saved);
    return r == CUDA_SUCCESS ? 0 : cu_fail("cuCtxSynchronize", r);
}

/* The rings, made once at creation (a wait is fine there). */
static int async_init(cuda_backend *cb, int sms)
{
    size_t hbytes = ASYNC_SLOTS * sizeof(gms_kslot_host);
    size_t dbytes = ASYNC_SLOTS * sizeof(gms_kslot_dev);
    void *h = NULL;
    CUdeviceptr hd = 0, d = 0;
    CUresult r = cu.MemHostAlloc(&h, hbytes, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP);
    if (r != CUDA_SUCCESS)
        return cu_fail("cuMemHostAlloc (scrub results)", r);
    memset(h, 0, hbytes);
    if ((r = cu.MemHostGetDevicePointer(&hd, h, 0)) != CUDA_SUCCESS ||
        (r = cu.MemAlloc(&d, dbytes)) != CUDA_SUCCESS) {
        cu.MemFreeHost(h);
        return cu_fail("stream-ordered scrub rings", r);
    }
    gms_kslot_dev *init = malloc(dbytes);
    cb->slot_issued = calloc(ASYNC_SLOTS, sizeof *cb->slot_issued);
    cb->slot_failed = calloc(ASYNC_SLOTS, 1);
    cb->slot_marker = calloc(ASYNC_SLOTS, 1);
    if (!init || !cb->slot_issued || !cb->slot_failed || !cb->slot_marker) {
        free(init);
        cu.MemFree(d);
        cu.MemFreeHost(h);
        return ENOMEM;
    }
    memset(init, 0xff, dbytes);
    for (unsigned i = 0; i < ASYNC_SLOTS; i++)
        init[i].finished = 0;
    r = cu.MemcpyHtoD(d, init, dbytes);
    free(init);
    if (r != CUDA_SUCCESS) {
        cu.MemFree(d);
        cu.MemFreeHost(h);
        return cu_fail("cuMemcpyHtoD (scrub rings)", r);
    }
    cb->slots_host = h;
    cb->slots_host_dev = (gms_kslot_host *)(uintptr_t)hd;
    cb->slots_dev = (gms_kslot_dev *)(uintptr_t)d;
    cb->next_ticket = 1;
    /* Enough blocks to fill the GPU on one large free: as many as fit on
     * it at once (the replays on the H200 ran at a fraction of the memory's
     * bandwidth with two per multiprocessor and range). */
    int per_sm = 0;
    if (cu.OccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cb->async_fn, GMS_KTHREADS, 0) !=
            CUDA_SUCCESS ||
        per_sm <= 0)
        per_sm = 2;
    cb->async_grid = (unsigned)(per_sm * (sms > 0 ? sms : 32));
    return 0;
}

static void cuda_destroy(gms_backend *be)
{
    cuda_backend *cb = B(be);
    CUcontext saved;
    if (enter(cb, &saved) == 0) {
        /* After a device fault the context is unusable: these fail, and
         * the driver frees everything with the context. */
        if (cb->stage_host) {
            cu.MemFreeHost(cb->stage_host);
            cu.MemFree(cb->stage_dev);
        }
        if (cb->slots_host) {
            cu.MemFreeHost(cb->slots_host);
            cu.MemFree((CUdeviceptr)(uintptr_t)cb->slots_dev);
        }
        if (cb->module)
            cu.ModuleUnload(cb->module);
        cu.StreamDestroy(cb->stream);
        leave(cb, saved);
    }
    cu.DevicePrimaryCtxRelease(cb->dev);
    pthread_mutex_destroy(&cb->scrub_lock);
    pthread_mutex_destroy(&cb->async_lock);
    free(cb->slot_issued);
    free(cb->slot_failed);
    free(cb->slot_marker);
    free(cb);
}

static const gms_backend_ops cuda_ops = {
    .name = "cuda",
    .props = GMS_BACKEND_REMAP_COSTLY, /* a fill kernel is cheap on a GPU, remapping is not */
    .reserve = cuda_reserve,
    .release = cuda_release,
    .commit = cuda_commit,
    .decommit = cuda_decommit,
    .map_view_readonly = cuda_map_view_readonly,
    .unmap_view = cuda_unmap_view,
    .write = cuda_write,
    .read = cuda_read,
    .copy = cuda_copy,
    .fill = cuda_fill,
    .scrub = cuda_scrub,
    .order_after = cuda_order_after,
    .ticket_reserve = cuda_ticket_reserve,
    .scrub_async = cuda_scrub_async,
    .scrub_collect = cuda_scrub_collect,
    .done_upto = cuda_done_upto,
    .ticket_done = cuda_ticket_done,
    .quiesce = cuda_quiesce,
    .destroy = cuda_destroy,
};

int gms_backend_cuda_create(int device, gms_backend **out)
{
    why[0] = 0;
    if (!gms_backend_cuda_available()) {
        snprintf(why, sizeof why, "%s", load_why);
        return ENODEV;
    }
    if (device < 0 || device >= device_count) {
        snprintf(why, sizeof why, "cuda: device %d does not exist (%d found)", device, device_count);
        return ENODEV;
    }
    cuda_backend *cb = calloc(1, sizeof *cb);
    if (!cb)
        return ENOMEM;
    cb->base.ops = &cuda_ops;
    if (pthread_mutex_init(&cb->scrub_lock, NULL) != 0) {
        free(cb);
        return ENOMEM;
    }
    if (pthread_mutex_init(&cb->async_lock, NULL) != 0) {
        pthread_mutex_destroy(&cb->scrub_lock);
        free(cb);
        return ENOMEM;
    }
    int err = 0, vmm = 0, coop = 0, sms = 0;
    CUresult r;
    if ((r = cu.DeviceGet(&cb->dev, device)) != CUDA_SUCCESS) {
        err = cu_fail("cuDeviceGet", r);
        goto fail;
    }
    cu.DeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, cb->dev);
    cu.DeviceGetAttribute(&coop, CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, cb->dev);
    cu.DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, cb->dev);
    if (!vmm) {
        snprintf(why, sizeof why, "cuda: device %d has no virtual memory management", device);
        err = ENOTSUP;
        goto fail;
    }
    if ((r = cu.DevicePrimaryCtxRetain(&cb->ctx, cb->dev)) != CUDA_SUCCESS) {
        err = cu_fail("cuDevicePrimaryCtxRetain", r);
        goto fail;
    }
    CUcontext saved;
    if ((err = enter(cb, &saved)) != 0)
        goto fail_ctx;
    cb->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    cb->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    cb->prop.location.id = cb->dev;
    cb->rw.location = cb->prop.location;
    cb->rw.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    cb->ro.location = cb->prop.location;
    cb->ro.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
    size_t gran = 0;
    if ((r = cu.MemGetAllocationGranularity(&gran, &cb->prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM)) !=
            CUDA_SUCCESS ||
        gran == 0) {
        err = cu_fail("cuMemGetAllocationGranularity", r);
        goto fail_enter;
    }
    cb->gran = gran;
    if ((r = cu.StreamCreate(&cb->stream, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS) {
        err = cu_fail("cuStreamCreate", r);
        goto fail_enter;
    }
    /* The kernel: missing kernels are reported by the scrub, not here, so
     * that a build without nvcc can still move data. */
    if (gms_scrub_fatbin_size > 0 && coop &&
        cu.ModuleLoadData(&cb->module, gms_scrub_fatbin) == CUDA_SUCCESS &&
        cu.ModuleGetFunction(&cb->scrub_fn, cb->module, "gms_scrub_kernel") == CUDA_SUCCESS) {
        int per_sm = 0;
        if (cu.OccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cb->scrub_fn, GMS_KTHREADS, 0) !=
                CUDA_SUCCESS ||
            per_sm <= 0)
            per_sm = 1;
        cb->max_grid = (unsigned)(per_sm * (sms > 0 ? sms : 1));
        /* GMS_CUDA_SYNC_SCRUB=1: the old, waiting scrub (for comparison). */
        const char *sync_env = getenv("GMS_CUDA_SYNC_SCRUB");
        if (!(sync_env && sync_env[0] == '1') &&
            cu.ModuleGetFunction(&cb->async_fn, cb->module, "gms_scrub_async_kernel") == CUDA_SUCCESS &&
            async_init(cb, sms) != 0)
            cb->async_fn = NULL;
    } else {
        cb->scrub_fn = NULL;
    }
    cb->ops = cuda_ops;
    if (!cb->async_fn) /* without the stream-ordered kernel every scrub waits */
        gms_backend_ops_without_streams(&cb->ops);
    cb->base.ops = &cb->ops;
    leave(cb, saved);
    cb->base.granularity = cb->gran;
    cb->base.no_scrub = cb->scrub_fn ? NULL
                                     : "the scrub kernel was not built in (nvcc was not found at build time)";
    *out = &cb->base;
    return 0;
fail_enter:
    leave(cb, saved);
fail_ctx:
    cu.DevicePrimaryCtxRelease(cb->dev);
fail:
    pthread_mutex_destroy(&cb->scrub_lock);
    pthread_mutex_destroy(&cb->async_lock);
    free(cb);
    return err;
}

const gms_backend_factory gms_backend_cuda_factory = {
    .name = "cuda",
    .available = gms_backend_cuda_available,
    .create = gms_backend_cuda_create,
    .why = gms_backend_cuda_why,
};
