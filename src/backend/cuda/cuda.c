/*
 * cuda.c: the CUDA backend's loader: the driver API, loaded at run time,
 * as a driver table (src/backend/vmm/driver.h) for the virtual-memory
 * backend (src/backend/vmm/vmm.c), which does the rest.
 *
 * libcuda.so.1 is opened with dlopen and its entry points looked up by
 * name (the _v2 names where the driver exports versioned ones), so libgms
 * needs neither the toolkit nor a driver to build or to run on the host
 * backend. The device's primary context is what vmm.c makes current; the
 * kernels are the fatbin of src/kernels/scrub.cu embedded at build time.
 */
#include "backend/cuda/cuda.h"
#include "backend/vmm/vmm.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The embedded kernels (scrub_fatbin.c, generated at build time; empty
 * when nvcc was not found). */
extern const unsigned char gms__scrub_fatbin[];
extern const size_t gms__scrub_fatbin_size;
/* The sealed-region kernels (seal_fatbin.c, the same way; src/kernels/seal.cu). */
extern const unsigned char gms__seal_fatbin[];
extern const size_t gms__seal_fatbin_size;

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
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CU_MEM_ALLOCATION_TYPE_PINNED = 1,
    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR = 1,
    CU_MEM_LOCATION_TYPE_DEVICE = 1,
    CU_MEM_ACCESS_FLAGS_PROT_READ = 1,
    CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3,
    CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0,
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH = 95,
    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 102,
    CU_STREAM_NON_BLOCKING = 1,
    CU_EVENT_DISABLE_TIMING = 2,
    CU_MEMHOSTALLOC_PORTABLE = 1,
    CU_MEMHOSTALLOC_DEVICEMAP = 2
};

#define CU_FNS(X)                                                                          \
    X(Init, "cuInit", (unsigned))                                                          \
    X(DeviceGetCount, "cuDeviceGetCount", (int *))                                         \
    X(DeviceGet, "cuDeviceGet", (CUdevice *, int))                                         \
    X(DeviceGetAttribute, "cuDeviceGetAttribute", (int *, int, CUdevice))                  \
    X(DeviceGetUuid, "cuDeviceGetUuid_v2", (unsigned char *, CUdevice))                    \
    X(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext *, CUdevice))         \
    X(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (CUdevice))                 \
    X(CtxGetCurrent, "cuCtxGetCurrent", (CUcontext *))                                     \
    X(CtxSetCurrent, "cuCtxSetCurrent", (CUcontext))                                       \
    X(CtxSynchronize, "cuCtxSynchronize", (void))                                          \
    X(StreamCreate, "cuStreamCreate", (CUstream *, unsigned))                              \
    X(StreamDestroy, "cuStreamDestroy_v2", (CUstream))                                     \
    X(StreamSynchronize, "cuStreamSynchronize", (CUstream))                                \
    X(StreamIsCapturing, "cuStreamIsCapturing", (CUstream, int *))                         \
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
    X(MemExportToShareableHandle, "cuMemExportToShareableHandle",                          \
      (void *, CUmemGenericAllocationHandle, int, unsigned long long))                     \
    X(MemImportFromShareableHandle, "cuMemImportFromShareableHandle",                      \
      (CUmemGenericAllocationHandle *, void *, int))                                       \
    X(MemSetAccess, "cuMemSetAccess", (CUdeviceptr, size_t, const cu_access_desc *, size_t)) \
    X(MemGetAllocationGranularity, "cuMemGetAllocationGranularity",                        \
      (size_t *, const cu_alloc_prop *, int))                                              \
    X(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", (CUdeviceptr, const void *, size_t, CUstream)) \
    X(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", (void *, CUdeviceptr, size_t, CUstream))   \
    X(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", (CUdeviceptr, CUdeviceptr, size_t, CUstream)) \
    X(MemsetD8Async, "cuMemsetD8Async", (CUdeviceptr, unsigned char, size_t, CUstream))    \
    X(MemHostAlloc, "cuMemHostAlloc", (void **, size_t, unsigned))                         \
    X(MemFreeHost, "cuMemFreeHost", (void *))                                              \
    X(MemHostGetDevicePointer, "cuMemHostGetDevicePointer_v2",                             \
      (CUdeviceptr *, void *, unsigned))                                                   \
    X(MemAlloc, "cuMemAlloc_v2", (CUdeviceptr *, size_t))                                  \
    X(MemFree, "cuMemFree_v2", (CUdeviceptr))                                              \
    X(ModuleLoadData, "cuModuleLoadData", (CUmodule *, const void *))                      \
    X(ModuleUnload, "cuModuleUnload", (CUmodule))                                          \
    X(ModuleGetFunction, "cuModuleGetFunction", (CUfunction *, CUmodule, const char *))    \
    X(OccupancyMaxActiveBlocksPerMultiprocessor,                                           \
      "cuOccupancyMaxActiveBlocksPerMultiprocessor", (int *, CUfunction, int, size_t))     \
    X(LaunchKernel, "cuLaunchKernel",                                                      \
      (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,   \
       CUstream, void **, void **))                                                        \
    X(LaunchCooperativeKernel, "cuLaunchCooperativeKernel",                                \
      (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,   \
       CUstream, void **))                                                                 \
    X(GetErrorName, "cuGetErrorName", (CUresult, const char **))                           \
    X(GetErrorString, "cuGetErrorString", (CUresult, const char **))

#define CU_DECL(field, sym, args) CUresult (*field) args;
static struct {
    CU_FNS(CU_DECL)
} cu;
#undef CU_DECL

/* ---- the driver table's calls ---- */

typedef struct cuda_dev {
    CUdevice dev;
    CUcontext ctx;
    cu_alloc_prop prop;
    cu_access_desc rw, ro;
} cuda_dev;

#define D ((cuda_dev *)dd)
#define PTR(a) ((CUdeviceptr)(a))

/* An adapter that only forwards, its arguments as driver.h names them
 * (GMS_DRV_ARGS_<call>). */
#define FWD(call, expr)                       \
    static int c_##call GMS_DRV_ARGS_##call { \
        (void)dd;                              \
        return expr;                           \
    }

static int c_get_current(void *dd, uintptr_t *cur)
{
    (void)dd;
    CUcontext c = NULL;
    CUresult r = cu.CtxGetCurrent(&c);
    *cur = (uintptr_t)c;
    return r;
}
FWD(set_current, cu.CtxSetCurrent((CUcontext)cur))
static int c_va_reserve(void *dd, uint64_t *addr, uint64_t size, uint64_t align)
{
    (void)dd;
    CUdeviceptr a = 0;
    CUresult r = cu.MemAddressReserve(&a, size, align, 0, 0);
    *addr = a;
    return r;
}
FWD(va_free, cu.MemAddressFree(PTR(addr), size))
static int c_mem_create(void *dd, uint64_t *handle, uint64_t size)
{
    CUmemGenericAllocationHandle h = 0;
    CUresult r = cu.MemCreate(&h, size, &D->prop, 0);
    *handle = h;
    return r;
}
FWD(mem_release, cu.MemRelease(handle))
FWD(mem_map, cu.MemMap(PTR(addr), size, 0, handle, 0))
FWD(mem_unmap, cu.MemUnmap(PTR(addr), size))
static int c_mem_create_shareable(void *dd, uint64_t *handle, uint64_t size)
{
    cu_alloc_prop prop = D->prop;
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    CUmemGenericAllocationHandle h = 0;
    CUresult r = cu.MemCreate(&h, size, &prop, 0);
    *handle = h;
    return r;
}
FWD(mem_export, cu.MemExportToShareableHandle(fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0))
static int c_mem_import(void *dd, int fd, uint64_t *handle)
{
    (void)dd;
    CUmemGenericAllocationHandle h = 0;
    /* A POSIX descriptor travels as the pointer's value (the driver's ABI). */
    CUresult r = cu.MemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
                                                 CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    *handle = h;
    return r;
}
static int c_set_access(void *dd, uint64_t addr, uint64_t size, int writable)
{
    return cu.MemSetAccess(PTR(addr), size, writable ? &D->rw : &D->ro, 1);
}
/* Migration: memory on, and access for, another device of the same
 * process (peer access between the two is what makes the copy and the
 * access work; cuMemSetAccess fails without it). */
static int c_mem_create_on(void *dd, uint64_t *handle, uint64_t size, int device)
{
    cu_alloc_prop prop = D->prop;
    CUdevice dev = 0;
    CUresult r = cu.DeviceGet(&dev, device);
    if (r != CUDA_SUCCESS)
        return r;
    prop.location.id = dev;
    CUmemGenericAllocationHandle h = 0;
    r = cu.MemCreate(&h, size, &prop, 0);
    *handle = h;
    return r;
}
static int c_set_access_on(void *dd, uint64_t addr, uint64_t size, int device, int writable)
{
    cu_access_desc a = writable ? D->rw : D->ro;
    CUdevice dev = 0;
    CUresult r = cu.DeviceGet(&dev, device);
    if (r != CUDA_SUCCESS)
        return r;
    a.location.id = dev;
    return cu.MemSetAccess(PTR(addr), size, &a, 1);
}
static int c_device_count(void *dd, int *count)
{
    (void)dd;
    return cu.DeviceGetCount(count);
}
FWD(memcpy_htod, cu.MemcpyHtoDAsync(PTR(dst), src, len, stream))
FWD(memcpy_dtoh, cu.MemcpyDtoHAsync(dst, PTR(src), len, stream))
FWD(memcpy_dtod, cu.MemcpyDtoDAsync(PTR(dst), PTR(src), len, stream))
FWD(memset_d8, cu.MemsetD8Async(PTR(dst), (unsigned char)byte, len, stream))
FWD(stream_create, cu.StreamCreate((CUstream *)stream, CU_STREAM_NON_BLOCKING))
FWD(stream_destroy, cu.StreamDestroy(stream))
FWD(stream_sync, cu.StreamSynchronize(stream))

static int c_stream_capturing(void *dd, void *stream, int *capturing)
{
    (void)dd;
    int status = 0; /* CU_STREAM_CAPTURE_STATUS_NONE; ACTIVE or INVALIDATED else */
    CUresult r = cu.StreamIsCapturing(stream, &status);
    *capturing = status != 0;
    return r;
}
FWD(event_create, cu.EventCreate((CUevent *)event, CU_EVENT_DISABLE_TIMING))
FWD(event_record, cu.EventRecord(event, stream))
FWD(event_destroy, cu.EventDestroy(event))
FWD(stream_wait_event, cu.StreamWaitEvent(stream, event, 0))
FWD(device_sync, cu.CtxSynchronize())
FWD(host_alloc,
    cu.MemHostAlloc(ptr, size, CU_MEMHOSTALLOC_PORTABLE | (mapped ? CU_MEMHOSTALLOC_DEVICEMAP : 0)))
FWD(host_free, cu.MemFreeHost(ptr))
static int c_host_device_ptr(void *dd, uint64_t *dev, void *ptr)
{
    (void)dd;
    CUdeviceptr d = 0;
    CUresult r = cu.MemHostGetDevicePointer(&d, ptr, 0);
    *dev = d;
    return r;
}
static int c_dev_alloc(void *dd, uint64_t *dev, size_t size)
{
    (void)dd;
    CUdeviceptr d = 0;
    CUresult r = cu.MemAlloc(&d, size);
    *dev = d;
    return r;
}
FWD(dev_free, cu.MemFree(PTR(dev)))
FWD(module_load, cu.ModuleLoadData((CUmodule *)module, image))
FWD(module_unload, cu.ModuleUnload(module))
FWD(module_function, cu.ModuleGetFunction((CUfunction *)fn, module, name))
FWD(occupancy, cu.OccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_sm, fn, (int)block, 0))
FWD(launch, cu.LaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, stream, args, NULL))
FWD(launch_cooperative, cu.LaunchCooperativeKernel(fn, grid, 1, 1, block, 1, 1, 0, stream, args))

static const char *c_error_name(int rc)
{
    const char *s = NULL;
    return cu.GetErrorName && cu.GetErrorName(rc, &s) == CUDA_SUCCESS ? s : NULL;
}
static const char *c_error_string(int rc)
{
    const char *s = NULL;
    return cu.GetErrorString && cu.GetErrorString(rc, &s) == CUDA_SUCCESS ? s : NULL;
}
static int c_errno_of(int rc)
{
    return rc == CUDA_ERROR_OUT_OF_MEMORY ? ENOMEM : rc == CUDA_ERROR_NOT_SUPPORTED ? ENOTSUP : EIO;
}

static gms_drv cuda_drv = {
    .name = "cuda",
    .result_type = "CUresult",
    .call_names = {
        [GMS_DRV_get_current] = "cuCtxGetCurrent",
        [GMS_DRV_set_current] = "cuCtxSetCurrent",
        [GMS_DRV_va_reserve] = "cuMemAddressReserve",
        [GMS_DRV_va_free] = "cuMemAddressFree",
        [GMS_DRV_mem_create] = "cuMemCreate",
        [GMS_DRV_mem_release] = "cuMemRelease",
        [GMS_DRV_mem_map] = "cuMemMap",
        [GMS_DRV_mem_unmap] = "cuMemUnmap",
        [GMS_DRV_mem_create_shareable] = "cuMemCreate",
        [GMS_DRV_mem_export] = "cuMemExportToShareableHandle",
        [GMS_DRV_mem_import] = "cuMemImportFromShareableHandle",
        [GMS_DRV_set_access] = "cuMemSetAccess",
        [GMS_DRV_memcpy_htod] = "cuMemcpyHtoDAsync",
        [GMS_DRV_memcpy_dtoh] = "cuMemcpyDtoHAsync",
        [GMS_DRV_memcpy_dtod] = "cuMemcpyDtoDAsync",
        [GMS_DRV_memset_d8] = "cuMemsetD8Async",
        [GMS_DRV_stream_create] = "cuStreamCreate",
        [GMS_DRV_stream_destroy] = "cuStreamDestroy",
        [GMS_DRV_stream_sync] = "cuStreamSynchronize",
        [GMS_DRV_stream_capturing] = "cuStreamIsCapturing",
        [GMS_DRV_event_create] = "cuEventCreate",
        [GMS_DRV_event_record] = "cuEventRecord",
        [GMS_DRV_event_destroy] = "cuEventDestroy",
        [GMS_DRV_stream_wait_event] = "cuStreamWaitEvent",
        [GMS_DRV_device_sync] = "cuCtxSynchronize",
        [GMS_DRV_host_alloc] = "cuMemHostAlloc",
        [GMS_DRV_host_free] = "cuMemFreeHost",
        [GMS_DRV_host_device_ptr] = "cuMemHostGetDevicePointer",
        [GMS_DRV_dev_alloc] = "cuMemAlloc",
        [GMS_DRV_dev_free] = "cuMemFree",
        [GMS_DRV_module_load] = "cuModuleLoadData",
        [GMS_DRV_module_unload] = "cuModuleUnload",
        [GMS_DRV_module_function] = "cuModuleGetFunction",
        [GMS_DRV_occupancy] = "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        [GMS_DRV_launch] = "cuLaunchKernel",
        [GMS_DRV_launch_cooperative] = "cuLaunchCooperativeKernel",
    },
    .error_name = c_error_name,
    .error_string = c_error_string,
    .errno_of = c_errno_of,
#define C_FIELD(name) .name = c_##name,
    GMS_DRV_CALLS(C_FIELD)
#undef C_FIELD
    .mem_create_on = c_mem_create_on,
    .set_access_on = c_set_access_on,
    .device_count = c_device_count,
};

/* ---- loading ---- */

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_err; /* errno value: 0 when the driver is usable */
static char load_why[256];
static int device_count;

const char *gms__backend_cuda_why(void)
{
    return gms__backend_why();
}

/* A setup call through the wrapper (counted; on failure, noted). */
static int setup(const char *call, CUresult r)
{
    return gms__drv_check(&cuda_drv, GMS_DRV_setup, call, r);
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
    int err = setup("cuInit", cu.Init(0));
    if (!err)
        err = setup("cuDeviceGetCount", cu.DeviceGetCount(&device_count));
    if (err || device_count <= 0) {
        load_err = ENODEV;
        snprintf(load_why, sizeof load_why, "cuda: no GPU (%s)",
                 err ? gms__backend_why() : "the driver reports no device");
        device_count = 0;
    }
    /* The library stays loaded for the life of the process. */
}

int gms__backend_cuda_available(void)
{
    pthread_once(&load_once, load_driver);
    if (load_err)
        gms__backend_note("%s", load_why);
    return load_err == 0 && device_count > 0;
}

int gms__backend_cuda_have_kernels(void)
{
    return gms__scrub_fatbin_size > 0;
}

uint64_t gms__backend_cuda_granularity(const gms_backend *be)
{
    return be->granularity;
}

void gms__backend_cuda_dump_calls(FILE *f)
{
    gms__drv_dump(&cuda_drv, f);
}

static void cuda_dev_free(void *dd)
{
    cu.DevicePrimaryCtxRelease(D->dev);
    free(dd);
}

int gms__backend_cuda_create(int device, gms_backend **out)
{
    gms__backend_why_clear();
    if (!gms__backend_cuda_available())
        return ENODEV; /* noted by available */
    if (device < 0 || device >= device_count) {
        gms__backend_note("cuda: device %d does not exist (%d found)", device, device_count);
        return ENODEV;
    }
    cuda_dev *cd = calloc(1, sizeof *cd);
    if (!cd)
        return ENOMEM;
    int err, vmm = 0, coop = 0, sms = 0;
    if ((err = setup("cuDeviceGet", cu.DeviceGet(&cd->dev, device))) != 0) {
        free(cd);
        return err;
    }
    cu.DeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, cd->dev);
    cu.DeviceGetAttribute(&coop, CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, cd->dev);
    cu.DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, cd->dev);
    if (!vmm) {
        gms__backend_note("cuda: device %d has no virtual memory management", device);
        free(cd);
        return ENOTSUP;
    }
    cd->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    cd->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    cd->prop.location.id = cd->dev;
    cd->rw.location = cd->prop.location;
    cd->rw.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    cd->ro.location = cd->prop.location;
    cd->ro.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
    if ((err = setup("cuDevicePrimaryCtxRetain", cu.DevicePrimaryCtxRetain(&cd->ctx, cd->dev))) !=
        0) {
        free(cd);
        return err;
    }
    /* The granularity is asked with the context current, the caller's put
     * back after. */
    size_t gran = 0;
    CUcontext saved = NULL;
    if ((err = setup("cuCtxGetCurrent", cu.CtxGetCurrent(&saved))) == 0 &&
        (err = setup("cuCtxSetCurrent", cu.CtxSetCurrent(cd->ctx))) == 0) {
        err = setup("cuMemGetAllocationGranularity",
                    cu.MemGetAllocationGranularity(&gran, &cd->prop,
                                                   CU_MEM_ALLOC_GRANULARITY_MINIMUM));
        cu.CtxSetCurrent(saved);
    }
    if (err) {
        cuda_dev_free(cd);
        return err;
    }
    /* GMS_CUDA_SYNC_SCRUB=1: the old, waiting scrub (for comparison). */
    const char *sync_env = getenv("GMS_CUDA_SYNC_SCRUB");
    gms_vmm_config cfg = {
        .drv = &cuda_drv,
        .dd = cd,
        .dd_free = cuda_dev_free,
        .current = (uintptr_t)cd->ctx,
        .granularity = gran,
        .sms = sms,
        .cooperative = coop,
        .image = gms__scrub_fatbin_size > 0 ? gms__scrub_fatbin : NULL,
        .no_image = "the scrub kernel was not built in (nvcc was not found at build time)",
        .sync_scrub = sync_env && sync_env[0] == '1',
        .seal_image = gms__seal_fatbin_size > 0 ? gms__seal_fatbin : NULL,
    };
    /* Which GPU this is, whatever CUDA_VISIBLE_DEVICES numbers it: gmsd's
     * clients must map its leases on the GPU that holds them. */
    unsigned char uuid[16] = {0};
    if ((err = setup("cuDeviceGetUuid", cu.DeviceGetUuid(uuid, cd->dev))) != 0) {
        cuda_dev_free(cd);
        return err;
    }
    if ((err = gms__vmm_create(&cfg, out)) == 0)
        memcpy((*out)->device_uuid, uuid, sizeof uuid);
    return err;
}

const gms_backend_factory gms__backend_cuda_factory = {
    .name = "cuda",
    .available = gms__backend_cuda_available,
    .create = gms__backend_cuda_create,
    .why = gms__backend_cuda_why,
};
