/*
 * hip.c: the HIP backend (AMD GPUs), through the HIP runtime loaded at run
 * time. docs/hip.md says what of it has been verified: it compiles and its
 * no-GPU path is tested; nothing here has yet run on an AMD GPU.
 *
 * libamdhip64.so is opened with dlopen and its entry points looked up by
 * name, so libgms needs neither ROCm nor a GPU to build or to run on the
 * host backend. The few HIP types, enums and prototypes used are declared
 * below from the HIP API reference (no HIP headers are needed). The design
 * is the CUDA backend's (src/backend/cuda/cuda.c, docs/gpu.md): a chunk is
 * a reserved address range with unmapped guard space on each side; each
 * granule of it is its own physical allocation (hipMemCreate + hipMemMap),
 * so single granules can be returned; one hipMemSetAccess covers each
 * commit. A read-only view maps the same physical allocations at another
 * address with read access only.
 *
 * HIP keeps a current device per host thread: every entry point makes the
 * backend's device current on the calling thread and puts the caller's
 * back afterwards. Data movement and the scrub run on one internal
 * non-blocking stream and return when the work is done.
 *
 * The scrub kernel (src/kernels/scrub_hip.cpp) cannot be built into libgms
 * here (no hipcc); it is loaded at run time from the code object file named
 * by GMS_HIP_CODE_OBJECT. Without it, the backend moves data and the scrub
 * fails with ENOSYS and a message saying so.
 */
#include "backend/hip/hip.h"
#include "kernels/scrub_plan.h"
#include "kernels/scrub_hip.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the few HIP types and constants we use ----
 *
 * Sources (HIP API reference, rocm.docs.amd.com/projects/HIP, "Virtual
 * Memory Management" and "Global enum and defines"; hip_runtime_api.h of
 * ROCm 5.2 to 6.4 and latest; checked against the generated bindings of
 * cubecl-hip-sys and AMDGPU.jl):
 *   hipError_t: hipSuccess 0, hipErrorOutOfMemory 2 (= hipErrorMemoryAllocation),
 *     hipErrorNoDevice 100, hipErrorNotSupported 801.
 *   hipMemAllocationType: hipMemAllocationTypeInvalid 0, hipMemAllocationTypePinned 1.
 *   hipMemAllocationHandleType: hipMemHandleTypeNone 0.
 *   hipMemLocationType: hipMemLocationTypeInvalid 0, hipMemLocationTypeDevice 1.
 *   hipMemAccessFlags: hipMemAccessFlagsProtNone 0, ProtRead 1, ProtReadWrite 3.
 *   hipMemAllocationGranularity_flags: hipMemAllocationGranularityMinimum 0,
 *     hipMemAllocationGranularityRecommended 1.
 *   hipStreamNonBlocking 0x01 (flags of hipStreamCreateWithFlags).
 *   struct hipMemLocation { hipMemLocationType type; int id; };
 *   struct hipMemAccessDesc { hipMemLocation location; hipMemAccessFlags flags; };
 *   struct hipMemAllocationProp { hipMemAllocationType type;
 *     hipMemAllocationHandleType requestedHandleType (a union with
 *     requestedHandleTypes in later releases, same size); hipMemLocation
 *     location; void *win32HandleMetaData; struct { unsigned char
 *     compressionType, gpuDirectRDMACapable; unsigned short usage; }
 *     allocFlags; };
 *   hipDeviceptr_t is void *; hipStream_t, hipModule_t, hipFunction_t and
 *   hipMemGenericAllocationHandle_t are pointers to opaque structs.
 * Enums are C enums (int-sized). */

typedef int hipError_t;
typedef struct ihipStream_t *hipStream_t;
typedef struct ihipEvent_t *hipEvent_t;
typedef struct ihipModule_t *hipModule_t;
typedef struct ihipModuleSymbol_t *hipFunction_t;
typedef struct ihipMemGenericAllocationHandle *hipMemGenericAllocationHandle_t;

typedef struct {
    int type; /* hipMemLocationType */
    int id;   /* device ordinal */
} hip_location;

typedef struct {
    int type;                /* hipMemAllocationType */
    int requestedHandleType; /* hipMemAllocationHandleType */
    hip_location location;
    void *win32HandleMetaData;
    struct {
        unsigned char compressionType;
        unsigned char gpuDirectRDMACapable;
        unsigned short usage;
    } allocFlags;
} hip_alloc_prop;

/* The properties go to the runtime inside zeroed slack, so that a release
 * whose struct grew at the end reads zeros (its "unset") there. */
typedef union {
    hip_alloc_prop p;
    unsigned char slack[128];
} hip_alloc_prop_padded;

typedef struct {
    hip_location location;
    int flags; /* hipMemAccessFlags */
} hip_access_desc;

enum {
    hipSuccess = 0,
    hipErrorOutOfMemory = 2,
    hipErrorNoDevice = 100,
    hipErrorNotSupported = 801,
    hipMemAllocationTypePinned = 1,
    hipMemHandleTypeNone = 0,
    hipMemLocationTypeDevice = 1,
    hipMemAccessFlagsProtRead = 1,
    hipMemAccessFlagsProtReadWrite = 3,
    hipMemAllocationGranularityMinimum = 0,
    hipStreamNonBlocking = 1
};

#define HIP_FNS(X)                                                                          \
    X(Init, "hipInit", (unsigned))                                                          \
    X(GetDeviceCount, "hipGetDeviceCount", (int *))                                         \
    X(GetDevice, "hipGetDevice", (int *))                                                   \
    X(SetDevice, "hipSetDevice", (int))                                                     \
    X(StreamCreateWithFlags, "hipStreamCreateWithFlags", (hipStream_t *, unsigned))         \
    X(StreamDestroy, "hipStreamDestroy", (hipStream_t))                                     \
    X(StreamSynchronize, "hipStreamSynchronize", (hipStream_t))                             \
    X(StreamWaitEvent, "hipStreamWaitEvent", (hipStream_t, hipEvent_t, unsigned))           \
    X(EventCreateWithFlags, "hipEventCreateWithFlags", (hipEvent_t *, unsigned))            \
    X(EventRecord, "hipEventRecord", (hipEvent_t, hipStream_t))                             \
    X(EventDestroy, "hipEventDestroy", (hipEvent_t))                                        \
    X(MemAddressReserve, "hipMemAddressReserve",                                            \
      (void **, size_t, size_t, void *, unsigned long long))                                \
    X(MemAddressFree, "hipMemAddressFree", (void *, size_t))                                \
    X(MemCreate, "hipMemCreate",                                                            \
      (hipMemGenericAllocationHandle_t *, size_t, const hip_alloc_prop *, unsigned long long)) \
    X(MemRelease, "hipMemRelease", (hipMemGenericAllocationHandle_t))                       \
    X(MemMap, "hipMemMap",                                                                  \
      (void *, size_t, size_t, hipMemGenericAllocationHandle_t, unsigned long long))        \
    X(MemUnmap, "hipMemUnmap", (void *, size_t))                                            \
    X(MemSetAccess, "hipMemSetAccess", (void *, size_t, const hip_access_desc *, size_t))   \
    X(MemGetAllocationGranularity, "hipMemGetAllocationGranularity",                        \
      (size_t *, const hip_alloc_prop *, int))                                              \
    X(MemcpyHtoDAsync, "hipMemcpyHtoDAsync", (void *, const void *, size_t, hipStream_t))   \
    X(MemcpyDtoHAsync, "hipMemcpyDtoHAsync", (void *, void *, size_t, hipStream_t))         \
    X(MemcpyDtoDAsync, "hipMemcpyDtoDAsync", (void *, void *, size_t, hipStream_t))         \
    X(MemsetD8Async, "hipMemsetD8Async", (void *, unsigned char, size_t, hipStream_t))      \
    X(Malloc, "hipMalloc", (void **, size_t))                                               \
    X(Free, "hipFree", (void *))                                                            \
    X(ModuleLoadData, "hipModuleLoadData", (hipModule_t *, const void *))                   \
    X(ModuleUnload, "hipModuleUnload", (hipModule_t))                                       \
    X(ModuleGetFunction, "hipModuleGetFunction", (hipFunction_t *, hipModule_t, const char *)) \
    X(ModuleLaunchKernel, "hipModuleLaunchKernel",                                          \
      (hipFunction_t, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, \
       hipStream_t, void **, void **))

#define HIP_DECL(field, sym, args) hipError_t (*field) args;
static struct {
    HIP_FNS(HIP_DECL)
    const char *(*GetErrorString)(hipError_t); /* returns the text, unlike cuGetErrorString */
} hip;
#undef HIP_DECL

/* Where the runtime is looked for: the unversioned name (a ROCm install or
 * LD_LIBRARY_PATH), the versioned sonames of ROCm 7, 6 and 5, then ROCm's
 * default prefix. */
static const char *const hip_lib_names[] = {
    "libamdhip64.so",   "libamdhip64.so.7", "libamdhip64.so.6",
    "libamdhip64.so.5", "/opt/rocm/lib/libamdhip64.so",
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_err; /* errno value: 0 when the runtime is usable */
static char load_why[320];
static int device_count;
static _Thread_local char why[512];

static const char *err_text(hipError_t r)
{
    const char *s = hip.GetErrorString ? hip.GetErrorString(r) : NULL;
    return s ? s : "unknown error";
}

/* Maps a runtime error to an errno value, noting why on this thread. */
static int hip_fail(const char *what, hipError_t r)
{
    snprintf(why, sizeof why, "hip: %s: %s (hipError_t %d)", what, err_text(r), r);
    return r == hipErrorOutOfMemory ? ENOMEM : r == hipErrorNotSupported ? ENOTSUP : EIO;
}

const char *gms_backend_hip_why(void)
{
    return why;
}

static void load_runtime(void)
{
    void *lib = NULL;
    char first[200] = "";
    for (size_t i = 0; i < sizeof hip_lib_names / sizeof *hip_lib_names && !lib; i++) {
        lib = dlopen(hip_lib_names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib && !first[0]) {
            const char *e = dlerror();
            snprintf(first, sizeof first, "%s", e ? e : "not found");
        }
    }
    if (!lib) {
        load_err = ENODEV;
        snprintf(load_why, sizeof load_why,
                 "hip: no HIP runtime (libamdhip64.so and its versioned names did not load: %s)",
                 first);
        return;
    }
#define HIP_LOAD(field, sym, args)                                                           \
    *(void **)&hip.field = dlsym(lib, sym);                                                   \
    if (!hip.field) {                                                                         \
        load_err = ENODEV;                                                                    \
        snprintf(load_why, sizeof load_why, "hip: libamdhip64 lacks %s (too old?)", sym);    \
        return;                                                                               \
    }
    HIP_FNS(HIP_LOAD)
    HIP_LOAD(GetErrorString, "hipGetErrorString", ())
#undef HIP_LOAD
    hipError_t r = hip.Init(0);
    if (r == hipSuccess)
        r = hip.GetDeviceCount(&device_count);
    if (r != hipSuccess || device_count <= 0) {
        load_err = ENODEV;
        snprintf(load_why, sizeof load_why, "hip: libamdhip64 loaded but found no GPU (%s)",
                 r != hipSuccess ? err_text(r) : "the runtime reports no device");
        device_count = 0;
    }
    /* The library stays loaded for the life of the process. */
}

int gms_backend_hip_available(void)
{
    pthread_once(&load_once, load_runtime);
    return load_err == 0 && device_count > 0;
}

/* ---- the backend ---- */

#define HIP_MIN_GRANULE (2ull << 20) /* docs/design.md#memory: 2 MiB granules */
#define HIP_GUARD_BYTES (2ull << 20)
#define HIP_MAX_GRID 2048u /* blocks per scrub launch; each strides over its tiles */

typedef struct hip_backend {
    gms_backend base;
    int dev;
    hipStream_t stream;
    hipModule_t module;
    hipFunction_t scrub_fn; /* NULL: no code object loaded */
    char kernel_why[256];   /* why scrub_fn is NULL */
    uint64_t gran;
    hip_alloc_prop_padded prop;
    hip_access_desc rw, ro;
    pthread_mutex_t scrub_lock; /* the staging buffers */
    void *stage_host;           /* malloc: pageable, the copies are waited for */
    void *stage_dev;            /* hipMalloc */
    size_t stage_cap;
} hip_backend;

struct gms_backend_chunk {
    uint64_t region; /* whole reservation, guards and alignment slack included */
    uint64_t region_size;
    uint64_t base;
    uint64_t size;
    hipMemGenericAllocationHandle_t *handles; /* one per granule; NULL: unmapped */
};

static hip_backend *B(gms_backend *be)
{
    return (hip_backend *)be;
}

static void *P(uint64_t a)
{
    return (void *)(uintptr_t)a;
}

uint64_t gms_backend_hip_granularity(const gms_backend *be)
{
    return ((const hip_backend *)be)->gran;
}

int gms_backend_hip_have_kernels(const gms_backend *be)
{
    return ((const hip_backend *)be)->scrub_fn != NULL;
}

const char *gms_backend_hip_kernels_why(const gms_backend *be)
{
    return ((const hip_backend *)be)->kernel_why;
}

/* Makes the backend's device current on this thread; *saved is the
 * caller's, put back by leave. */
static int enter(hip_backend *hb, int *saved)
{
    int cur = 0;
    hipError_t r = hip.GetDevice(&cur);
    if (r != hipSuccess)
        return hip_fail("hipGetDevice", r);
    *saved = cur;
    if (cur != hb->dev && (r = hip.SetDevice(hb->dev)) != hipSuccess)
        return hip_fail("hipSetDevice", r);
    return 0;
}

static void leave(hip_backend *hb, int saved)
{
    if (saved != hb->dev)
        hip.SetDevice(saved);
}

static int sync_stream(hip_backend *hb, const char *what)
{
    hipError_t r = hip.StreamSynchronize(hb->stream);
    return r == hipSuccess ? 0 : hip_fail(what, r);
}

static int hip_reserve(gms_backend *be, uint64_t size, uint64_t align, uint64_t *base,
                       gms_backend_chunk **out)
{
    hip_backend *hb = B(be);
    if (size == 0 || size % hb->gran || (align & (align - 1)))
        return EINVAL;
    if (align < hb->gran)
        align = hb->gran;
    gms_backend_chunk *c = calloc(1, sizeof *c);
    if (!c)
        return ENOMEM;
    c->handles = calloc(size / hb->gran, sizeof *c->handles);
    if (!c->handles) {
        free(c);
        return ENOMEM;
    }
    /* The base is aligned by hand inside slack of align - gran bytes rather
     * than trusting the alignment argument (address space costs nothing). */
    uint64_t slack = align - hb->gran;
    int saved;
    int err = enter(hb, &saved);
    if (!err) {
        void *r0 = NULL;
        c->region_size = size + 2 * HIP_GUARD_BYTES + slack;
        hipError_t r = hip.MemAddressReserve(&r0, c->region_size, hb->gran, NULL, 0);
        if (r != hipSuccess)
            err = hip_fail("hipMemAddressReserve", r);
        c->region = (uint64_t)(uintptr_t)r0;
        leave(hb, saved);
    }
    if (err) {
        free(c->handles);
        free(c);
        return err;
    }
    c->base = (c->region + HIP_GUARD_BYTES + align - 1) & ~(align - 1);
    c->size = size;
    *base = c->base;
    *out = c;
    return 0;
}

/* Unmaps and releases granules [first, last) that are mapped. */
static void unmap_granules(hip_backend *hb, gms_backend_chunk *c, uint64_t first, uint64_t last)
{
    for (uint64_t g = first; g < last; g++) {
        if (!c->handles[g])
            continue;
        hip.MemUnmap(P(c->base + g * hb->gran), hb->gran);
        hip.MemRelease(c->handles[g]);
        c->handles[g] = NULL;
    }
}

static void hip_release(gms_backend *be, gms_backend_chunk *c)
{
    hip_backend *hb = B(be);
    if (!c)
        return;
    int saved;
    if (enter(hb, &saved) == 0) {
        unmap_granules(hb, c, 0, c->size / hb->gran);
        hip.MemAddressFree(P(c->region), c->region_size);
        leave(hb, saved);
    }
    free(c->handles);
    free(c);
}

static int range_ok(const hip_backend *hb, const gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    return len != 0 && off <= c->size && len <= c->size - off && off % hb->gran == 0 &&
           len % hb->gran == 0;
}

static int hip_commit(gms_backend *be, gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    hip_backend *hb = B(be);
    if (!range_ok(hb, c, off, len))
        return EINVAL;
    uint64_t first = off / hb->gran, last = (off + len) / hb->gran;
    for (uint64_t g = first; g < last; g++)
        if (c->handles[g])
            return EINVAL; /* mapped already */
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    hipError_t r;
    uint64_t g = first;
    for (; g < last; g++) {
        hipMemGenericAllocationHandle_t h = NULL;
        if ((r = hip.MemCreate(&h, hb->gran, &hb->prop.p, 0)) != hipSuccess) {
            err = hip_fail("hipMemCreate", r);
            break;
        }
        if ((r = hip.MemMap(P(c->base + g * hb->gran), hb->gran, 0, h, 0)) != hipSuccess) {
            hip.MemRelease(h);
            err = hip_fail("hipMemMap", r);
            break;
        }
        c->handles[g] = h;
    }
    /* One access call for the whole range, never per granule. */
    if (!err && (r = hip.MemSetAccess(P(c->base + off), len, &hb->rw, 1)) != hipSuccess)
        err = hip_fail("hipMemSetAccess", r);
    /* backend.h: new memory reads as zeros. */
    if (!err && (r = hip.MemsetD8Async(P(c->base + off), 0, len, hb->stream)) != hipSuccess)
        err = hip_fail("hipMemsetD8Async", r);
    if (!err)
        err = sync_stream(hb, "hipStreamSynchronize (commit)");
    if (err)
        unmap_granules(hb, c, first, g < last ? g : last);
    leave(hb, saved);
    return err;
}

static int hip_decommit(gms_backend *be, gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    hip_backend *hb = B(be);
    if (!range_ok(hb, c, off, len))
        return EINVAL;
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    unmap_granules(hb, c, off / hb->gran, (off + len) / hb->gran);
    leave(hb, saved);
    return 0;
}

static int hip_map_view_readonly(gms_backend *be, gms_backend_chunk *c, uint64_t off, uint64_t len,
                                 uint64_t *view)
{
    hip_backend *hb = B(be);
    if (!range_ok(hb, c, off, len))
        return EINVAL;
    uint64_t first = off / hb->gran, last = (off + len) / hb->gran;
    for (uint64_t g = first; g < last; g++)
        if (!c->handles[g])
            return EINVAL; /* not committed */
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    void *v0 = NULL;
    hipError_t r = hip.MemAddressReserve(&v0, len, hb->gran, NULL, 0);
    if (r != hipSuccess) {
        err = hip_fail("hipMemAddressReserve (view)", r);
        goto out;
    }
    uint64_t v = (uint64_t)(uintptr_t)v0;
    uint64_t g = first;
    for (; g < last; g++) {
        /* A second mapping of the same physical allocation. */
        if ((r = hip.MemMap(P(v + (g - first) * hb->gran), hb->gran, 0, c->handles[g], 0)) !=
            hipSuccess) {
            err = hip_fail("hipMemMap (view)", r);
            break;
        }
    }
    if (!err && (r = hip.MemSetAccess(v0, len, &hb->ro, 1)) != hipSuccess)
        err = hip_fail("hipMemSetAccess (read-only view)", r);
    if (err) {
        for (uint64_t u = first; u < g; u++)
            hip.MemUnmap(P(v + (u - first) * hb->gran), hb->gran);
        hip.MemAddressFree(v0, len);
    } else {
        *view = v;
    }
out:
    leave(hb, saved);
    return err;
}

static void hip_unmap_view(gms_backend *be, uint64_t view, uint64_t len)
{
    hip_backend *hb = B(be);
    int saved;
    if (enter(hb, &saved) != 0)
        return;
    for (uint64_t o = 0; o < len; o += hb->gran)
        hip.MemUnmap(P(view + o), hb->gran);
    hip.MemAddressFree(P(view), len);
    leave(hb, saved);
}

/* Data movement: issued on the internal stream, then waited for. */
static int hip_write(gms_backend *be, uint64_t dst, const void *src, size_t len)
{
    hip_backend *hb = B(be);
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    hipError_t r = hip.MemcpyHtoDAsync(P(dst), src, len, hb->stream);
    err = r == hipSuccess ? sync_stream(hb, "hipStreamSynchronize (write)")
                          : hip_fail("hipMemcpyHtoDAsync", r);
    leave(hb, saved);
    return err;
}

static int hip_read(gms_backend *be, void *dst, uint64_t src, size_t len)
{
    hip_backend *hb = B(be);
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    hipError_t r = hip.MemcpyDtoHAsync(dst, P(src), len, hb->stream);
    err = r == hipSuccess ? sync_stream(hb, "hipStreamSynchronize (read)")
                          : hip_fail("hipMemcpyDtoHAsync", r);
    leave(hb, saved);
    return err;
}

static int hip_copy(gms_backend *be, uint64_t dst, uint64_t src, size_t len)
{
    hip_backend *hb = B(be);
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    hipError_t r = hipSuccess;
    /* gms_copy allows overlap; a device copy does not promise memmove
     * semantics, so overlapping ranges go in pieces no longer than the
     * distance, in the safe direction (as the CUDA backend does). */
    uint64_t dist = dst > src ? dst - src : src - dst;
    if (dist >= len || dist == 0) {
        if (dist)
            r = hip.MemcpyDtoDAsync(P(dst), P(src), len, hb->stream);
    } else if (dst < src) {
        for (uint64_t o = 0; o < len && r == hipSuccess; o += dist)
            r = hip.MemcpyDtoDAsync(P(dst + o), P(src + o), len - o < dist ? len - o : dist,
                                    hb->stream);
    } else {
        for (uint64_t end = len; end > 0 && r == hipSuccess;) {
            uint64_t n = end < dist ? end : dist;
            end -= n;
            r = hip.MemcpyDtoDAsync(P(dst + end), P(src + end), n, hb->stream);
        }
    }
    err = r == hipSuccess ? sync_stream(hb, "hipStreamSynchronize (copy)")
                          : hip_fail("hipMemcpyDtoDAsync", r);
    leave(hb, saved);
    return err;
}

static int hip_fill(gms_backend *be, uint64_t dst, int byte, size_t len)
{
    hip_backend *hb = B(be);
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    hipError_t r = hip.MemsetD8Async(P(dst), (unsigned char)byte, len, hb->stream);
    err = r == hipSuccess ? sync_stream(hb, "hipStreamSynchronize (fill)")
                          : hip_fail("hipMemsetD8Async", r);
    leave(hb, saved);
    return err;
}

/* ---- scrub ---- */

/* Grows the host and device staging buffers to at least need bytes. */
static int stage_reserve(hip_backend *hb, size_t need)
{
    if (need <= hb->stage_cap)
        return 0;
    size_t cap = hb->stage_cap ? hb->stage_cap : 64 * 1024;
    while (cap < need)
        cap *= 2;
    void *h = malloc(cap), *d = NULL;
    if (!h)
        return ENOMEM;
    hipError_t r = hip.Malloc(&d, cap);
    if (r != hipSuccess) {
        free(h);
        return hip_fail("hipMalloc (scrub staging)", r);
    }
    if (hb->stage_dev)
        hip.Free(hb->stage_dev);
    free(hb->stage_host);
    hb->stage_host = h;
    hb->stage_dev = d;
    hb->stage_cap = cap;
    return 0;
}

/* Queues one phase of the kernel over `tiles` tiles. */
static int launch_phase(hip_backend *hb, gms_kparams *p, uint32_t op, uint64_t tiles)
{
    if (tiles == 0)
        return 0;
    unsigned grid = tiles < HIP_MAX_GRID ? (unsigned)tiles : HIP_MAX_GRID;
    void *args[] = {p, &op};
    hipError_t r = hip.ModuleLaunchKernel(hb->scrub_fn, grid, 1, 1, GMS_KTHREADS, 1, 1, 0,
                                          hb->stream, args, NULL);
    return r == hipSuccess ? 0 : hip_fail("hipModuleLaunchKernel (scrub)", r);
}

static int hip_scrub_locked(hip_backend *hb, gms_scrub_item *items, size_t n, uint64_t pattern,
                            uint64_t seed)
{
    gms_scrub_plan plan = gms_scrub_plan_size(items, n);
    if (plan.bytes == 0)
        return 0;
    if (!hb->scrub_fn) {
        snprintf(why, sizeof why,
                 "hip: the scrub kernel is missing (%s); build src/kernels/scrub_hip.cpp with "
                 "hipcc --genco and name the file in GMS_HIP_CODE_OBJECT (docs/hip.md)",
                 hb->kernel_why);
        return ENOSYS;
    }
    if (n > UINT32_MAX)
        return EINVAL;
    int err = stage_reserve(hb, plan.bytes);
    if (err)
        return err;
    uint64_t dev = (uint64_t)(uintptr_t)hb->stage_dev;
    gms_kparams p;
    gms_scrub_plan_build(&plan, items, n, hb->stage_host, dev, pattern, seed, &p);

    hipError_t r = hip.MemcpyHtoDAsync(hb->stage_dev, hb->stage_host, plan.bytes, hb->stream);
    if (r != hipSuccess)
        return hip_fail("hipMemcpyHtoDAsync (scrub work list)", r);
    /* One launch per phase; stream order is the barrier between phases, and
     * the check must finish before any fill of the same redzone. */
    if ((err = launch_phase(hb, &p, GMS_HOP_CHECK, p.check_tiles)) != 0)
        return err;
    if (p.mp_tiles) {
        static const uint32_t passes[4] = {GMS_HOP_ZERO, GMS_HOP_ONES, GMS_HOP_RANDOM,
                                           GMS_HOP_ZERO};
        for (int i = 0; i < 4; i++)
            if ((err = launch_phase(hb, &p, passes[i], p.mp_tiles)) != 0)
                return err;
    }
    if ((err = launch_phase(hb, &p, GMS_HOP_PATTERN, p.fill_tiles)) != 0)
        return err;
    if (p.v_hi > p.v_lo && (err = launch_phase(hb, &p, GMS_HOP_VERIFY, p.v_hi - p.v_lo)) != 0)
        return err;
    r = hip.MemcpyDtoHAsync((char *)hb->stage_host + plan.seg_bytes, P(dev + plan.seg_bytes),
                            n * sizeof(gms_kres), hb->stream);
    if (r != hipSuccess)
        return hip_fail("hipMemcpyDtoHAsync (scrub results)", r);
    if ((err = sync_stream(hb, "scrub kernel")) != 0)
        return err;
    gms_scrub_plan_results(&plan, hb->stage_host, items, n);
    return 0;
}

static int hip_scrub(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                     uint64_t seed)
{
    hip_backend *hb = B(be);
    for (size_t i = 0; i < n; i++)
        items[i].bad = items[i].verify_bad = 0;
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    pthread_mutex_lock(&hb->scrub_lock);
    err = hip_scrub_locked(hb, items, n, pattern, seed);
    pthread_mutex_unlock(&hb->scrub_lock);
    leave(hb, saved);
    return err;
}

static void hip_destroy(gms_backend *be)
{
    hip_backend *hb = B(be);
    int saved;
    if (enter(hb, &saved) == 0) {
        /* After a device fault these may fail; the process is then past
         * saving anyway, and the runtime frees device memory at exit. */
        if (hb->stage_dev)
            hip.Free(hb->stage_dev);
        if (hb->module)
            hip.ModuleUnload(hb->module);
        if (hb->stream)
            hip.StreamDestroy(hb->stream);
        leave(hb, saved);
    }
    free(hb->stage_host);
    pthread_mutex_destroy(&hb->scrub_lock);
    free(hb);
}

/* A stream-ordered free, as on CUDA: the internal stream waits for an
 * event recorded on the caller's stream (hipEventDisableTiming = 2, HIP
 * API reference). Not run on a device (docs/hip.md). */
static int hip_order_after(gms_backend *be, void *stream, int wait)
{
    hip_backend *hb = B(be);
    int saved;
    int err = enter(hb, &saved);
    if (err)
        return err;
    hipError_t r;
    if (wait) {
        r = hip.StreamSynchronize((hipStream_t)stream);
    } else {
        hipEvent_t ev;
        r = hip.EventCreateWithFlags(&ev, 2);
        if (r == hipSuccess) {
            r = hip.EventRecord(ev, (hipStream_t)stream);
            if (r == hipSuccess)
                r = hip.StreamWaitEvent(hb->stream, ev, 0);
            hip.EventDestroy(ev);
        }
    }
    err = r == hipSuccess ? 0 : hip_fail("ordering after the caller's stream", r);
    leave(hb, saved);
    return err;
}

static const gms_backend_ops hip_ops = {
    .name = "hip",
    .props = GMS_BACKEND_REMAP_COSTLY, /* a fill kernel is cheap on a GPU, remapping is not */
    .reserve = hip_reserve,
    .release = hip_release,
    .commit = hip_commit,
    .decommit = hip_decommit,
    .map_view_readonly = hip_map_view_readonly,
    .unmap_view = hip_unmap_view,
    .write = hip_write,
    .read = hip_read,
    .copy = hip_copy,
    .fill = hip_fill,
    .scrub = hip_scrub,
    .order_after = hip_order_after,
    .destroy = hip_destroy,
};

/* Loads the scrub kernel from the code object named by GMS_HIP_CODE_OBJECT
 * (the device is current). Failure is not an error here: kernel_why says
 * what went wrong, and the scrub reports it. */
static void load_kernels(hip_backend *hb)
{
    const char *path = getenv("GMS_HIP_CODE_OBJECT");
    if (!path || !*path) {
        snprintf(hb->kernel_why, sizeof hb->kernel_why, "GMS_HIP_CODE_OBJECT is not set");
        return;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(hb->kernel_why, sizeof hb->kernel_why, "cannot open %s: %s", path,
                 strerror(errno));
        return;
    }
    unsigned char *image = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (image = malloc((size_t)size)) != NULL && fread(image, 1, (size_t)size, f) == (size_t)size) {
        hipError_t r = hip.ModuleLoadData(&hb->module, image);
        if (r != hipSuccess) {
            hb->module = NULL;
            snprintf(hb->kernel_why, sizeof hb->kernel_why,
                     "hipModuleLoadData(%s): %s (built for another GPU?)", path, err_text(r));
        } else if ((r = hip.ModuleGetFunction(&hb->scrub_fn, hb->module, GMS_HIP_SCRUB_KERNEL)) !=
                   hipSuccess) {
            hb->scrub_fn = NULL;
            hip.ModuleUnload(hb->module);
            hb->module = NULL;
            snprintf(hb->kernel_why, sizeof hb->kernel_why, "%s has no %s: %s", path,
                     GMS_HIP_SCRUB_KERNEL, err_text(r));
        }
    } else {
        snprintf(hb->kernel_why, sizeof hb->kernel_why, "cannot read %s", path);
    }
    free(image);
    fclose(f);
}

int gms_backend_hip_create(int device, gms_backend **out)
{
    why[0] = 0;
    if (!gms_backend_hip_available()) {
        snprintf(why, sizeof why, "%s", load_why);
        return ENODEV;
    }
    if (device < 0 || device >= device_count) {
        snprintf(why, sizeof why, "hip: device %d does not exist (%d found)", device,
                 device_count);
        return ENODEV;
    }
    hip_backend *hb = calloc(1, sizeof *hb);
    if (!hb)
        return ENOMEM;
    hb->base.ops = &hip_ops;
    hb->dev = device;
    if (pthread_mutex_init(&hb->scrub_lock, NULL) != 0) {
        free(hb);
        return ENOMEM;
    }
    int saved, err = enter(hb, &saved);
    if (err)
        goto fail;
    hb->prop.p.type = hipMemAllocationTypePinned;
    hb->prop.p.requestedHandleType = hipMemHandleTypeNone;
    hb->prop.p.location.type = hipMemLocationTypeDevice;
    hb->prop.p.location.id = device;
    hb->rw.location = hb->prop.p.location;
    hb->rw.flags = hipMemAccessFlagsProtReadWrite;
    hb->ro.location = hb->prop.p.location;
    hb->ro.flags = hipMemAccessFlagsProtRead;
    size_t g = 0;
    hipError_t r = hip.MemGetAllocationGranularity(&g, &hb->prop.p,
                                                   hipMemAllocationGranularityMinimum);
    if (r != hipSuccess || g == 0 || (g & (g - 1))) {
        if (r == hipErrorNotSupported) {
            snprintf(why, sizeof why,
                     "hip: device %d has no virtual memory management "
                     "(hipMemGetAllocationGranularity: %s)", device, err_text(r));
            err = ENOTSUP;
        } else if (r != hipSuccess) {
            err = hip_fail("hipMemGetAllocationGranularity", r);
        } else {
            snprintf(why, sizeof why, "hip: device %d reports granularity %zu", device, g);
            err = EIO;
        }
        goto fail_enter;
    }
    hb->gran = g > HIP_MIN_GRANULE ? g : HIP_MIN_GRANULE; /* both powers of two */
    if ((r = hip.StreamCreateWithFlags(&hb->stream, hipStreamNonBlocking)) != hipSuccess) {
        err = hip_fail("hipStreamCreateWithFlags", r);
        goto fail_enter;
    }
    load_kernels(hb);
    leave(hb, saved);
    hb->base.granularity = hb->gran;
    hb->base.no_scrub = hb->scrub_fn ? NULL : hb->kernel_why;
    *out = &hb->base;
    return 0;
fail_enter:
    leave(hb, saved);
fail:
    pthread_mutex_destroy(&hb->scrub_lock);
    free(hb);
    return err;
}

const gms_backend_factory gms_backend_hip_factory = {
    .name = "hip",
    .available = gms_backend_hip_available,
    .create = gms_backend_hip_create,
    .why = gms_backend_hip_why,
};
