/*
 * hip.c: the HIP backend's loader (AMD GPUs): the HIP runtime, loaded at
 * run time, as a driver table (src/backend/vmm/driver.h) for the
 * virtual-memory backend (src/backend/vmm/vmm.c), which does the rest, as
 * for CUDA. docs/hip.md says what of it has been verified: it compiles and
 * its no-GPU path is tested; nothing here has yet run on an AMD GPU.
 *
 * libamdhip64.so is opened with dlopen and its entry points looked up by
 * name, so libgms needs neither ROCm nor a GPU to build or to run on the
 * host backend. The few HIP types, enums and prototypes used are declared
 * below from the HIP API reference (no HIP headers are needed). HIP keeps
 * a current device per host thread: that is what vmm.c makes current.
 *
 * The kernels (src/kernels/scrub.cu, built by hipcc through
 * src/kernels/gpu_compat.h) cannot be built into libgms here (no hipcc);
 * they are loaded at run time from the code object file named by
 * GMS_HIP_CODE_OBJECT. Without it, the backend moves data and the scrub
 * fails with ENOSYS and a message saying so.
 */
#include "backend/hip/hip.h"
#include "backend/vmm/vmm.h"

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
 * cubecl-hip-sys, tinygrad and AMDGPU.jl):
 *   hipError_t: hipSuccess 0, hipErrorOutOfMemory 2 (= hipErrorMemoryAllocation),
 *     hipErrorNoDevice 100, hipErrorNotSupported 801.
 *   hipMemAllocationType: hipMemAllocationTypeInvalid 0, hipMemAllocationTypePinned 1.
 *   hipMemAllocationHandleType: hipMemHandleTypeNone 0.
 *   hipMemLocationType: hipMemLocationTypeInvalid 0, hipMemLocationTypeDevice 1.
 *   hipMemAccessFlags: hipMemAccessFlagsProtNone 0, ProtRead 1, ProtReadWrite 3.
 *   hipMemAllocationGranularity_flags: hipMemAllocationGranularityMinimum 0,
 *     hipMemAllocationGranularityRecommended 1.
 *   hipStreamNonBlocking 0x01 (flags of hipStreamCreateWithFlags);
 *   hipEventDisableTiming 0x02; hipHostMallocPortable 0x01,
 *   hipHostMallocMapped 0x02, hipHostMallocCoherent 0x40000000.
 *   hipDeviceAttribute_t (ROCm 5 and later): hipDeviceAttributeCooperativeLaunch 10,
 *     hipDeviceAttributeMultiprocessorCount 63.
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
    hipErrorNotSupported = 801,
    hipMemAllocationTypePinned = 1,
    hipMemHandleTypeNone = 0,
    hipMemHandleTypePosixFileDescriptor = 1,
    hipMemLocationTypeDevice = 1,
    hipMemAccessFlagsProtRead = 1,
    hipMemAccessFlagsProtReadWrite = 3,
    hipMemAllocationGranularityMinimum = 0,
    hipStreamNonBlocking = 1,
    hipEventDisableTiming = 2,
    hipHostMallocPortable = 1,
    hipHostMallocMapped = 2,
    hipDeviceAttributeCooperativeLaunch = 10,
    hipDeviceAttributeMultiprocessorCount = 63
};
#define hipHostMallocCoherent 0x40000000u

/* Required entry points; the cooperative launch is looked up apart (older
 * runtimes lack it: then there is no scrub kernel). */
#define HIP_FNS(X)                                                                          \
    X(Init, "hipInit", (unsigned))                                                          \
    X(GetDeviceCount, "hipGetDeviceCount", (int *))                                         \
    X(GetDevice, "hipGetDevice", (int *))                                                   \
    X(SetDevice, "hipSetDevice", (int))                                                     \
    X(DeviceGetAttribute, "hipDeviceGetAttribute", (int *, int, int))                       \
    X(DeviceSynchronize, "hipDeviceSynchronize", (void))                                    \
    X(StreamCreateWithFlags, "hipStreamCreateWithFlags", (hipStream_t *, unsigned))         \
    X(StreamDestroy, "hipStreamDestroy", (hipStream_t))                                     \
    X(StreamSynchronize, "hipStreamSynchronize", (hipStream_t))                             \
    X(StreamIsCapturing, "hipStreamIsCapturing", (hipStream_t, int *))                      \
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
    X(MemExportToShareableHandle, "hipMemExportToShareableHandle",                          \
      (void *, hipMemGenericAllocationHandle_t, int, unsigned long long))                   \
    X(MemImportFromShareableHandle, "hipMemImportFromShareableHandle",                      \
      (hipMemGenericAllocationHandle_t *, void *, int))                                     \
    X(MemSetAccess, "hipMemSetAccess", (void *, size_t, const hip_access_desc *, size_t))   \
    X(MemGetAllocationGranularity, "hipMemGetAllocationGranularity",                        \
      (size_t *, const hip_alloc_prop *, int))                                              \
    X(MemcpyHtoDAsync, "hipMemcpyHtoDAsync", (void *, const void *, size_t, hipStream_t))   \
    X(MemcpyDtoHAsync, "hipMemcpyDtoHAsync", (void *, void *, size_t, hipStream_t))         \
    X(MemcpyDtoDAsync, "hipMemcpyDtoDAsync", (void *, void *, size_t, hipStream_t))         \
    X(MemsetD8Async, "hipMemsetD8Async", (void *, unsigned char, size_t, hipStream_t))      \
    X(HostMalloc, "hipHostMalloc", (void **, size_t, unsigned))                             \
    X(HostFree, "hipHostFree", (void *))                                                    \
    X(HostGetDevicePointer, "hipHostGetDevicePointer", (void **, void *, unsigned))         \
    X(Malloc, "hipMalloc", (void **, size_t))                                               \
    X(Free, "hipFree", (void *))                                                            \
    X(ModuleLoadData, "hipModuleLoadData", (hipModule_t *, const void *))                   \
    X(ModuleUnload, "hipModuleUnload", (hipModule_t))                                       \
    X(ModuleGetFunction, "hipModuleGetFunction", (hipFunction_t *, hipModule_t, const char *)) \
    X(ModuleOccupancyMaxActiveBlocksPerMultiprocessor,                                      \
      "hipModuleOccupancyMaxActiveBlocksPerMultiprocessor", (int *, hipFunction_t, int, size_t)) \
    X(ModuleLaunchKernel, "hipModuleLaunchKernel",                                          \
      (hipFunction_t, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, \
       hipStream_t, void **, void **))

#define HIP_DECL(field, sym, args) hipError_t (*field) args;
static struct {
    HIP_FNS(HIP_DECL)
    hipError_t (*ModuleLaunchCooperativeKernel)(hipFunction_t, unsigned, unsigned, unsigned,
                                                unsigned, unsigned, unsigned, unsigned,
                                                hipStream_t, void **);
    /* These return the text, unlike cuGetErrorName/String. */
    const char *(*GetErrorName)(hipError_t);
    const char *(*GetErrorString)(hipError_t);
} hip;
#undef HIP_DECL

/* ---- the driver table's calls ---- */

typedef struct hip_dev {
    int dev;
    hip_alloc_prop_padded prop;
    hip_access_desc rw, ro;
} hip_dev;

#define D ((hip_dev *)dd)
#define P(a) ((void *)(uintptr_t)(a))

/* An adapter that only forwards, its arguments as driver.h names them
 * (GMS_DRV_ARGS_<call>). */
#define FWD(call, expr)                       \
    static int h_##call GMS_DRV_ARGS_##call { \
        (void)dd;                              \
        return expr;                           \
    }

static int h_get_current(void *dd, uintptr_t *cur)
{
    (void)dd;
    int d = 0;
    hipError_t r = hip.GetDevice(&d);
    *cur = (uintptr_t)d;
    return r;
}
FWD(set_current, hip.SetDevice((int)cur))
static int h_va_reserve(void *dd, uint64_t *addr, uint64_t size, uint64_t align)
{
    (void)dd;
    void *a = NULL;
    hipError_t r = hip.MemAddressReserve(&a, size, align, NULL, 0);
    *addr = (uint64_t)(uintptr_t)a;
    return r;
}
FWD(va_free, hip.MemAddressFree(P(addr), size))
static int h_mem_create(void *dd, uint64_t *handle, uint64_t size)
{
    hipMemGenericAllocationHandle_t h = NULL;
    hipError_t r = hip.MemCreate(&h, size, &D->prop.p, 0);
    *handle = (uint64_t)(uintptr_t)h;
    return r;
}
FWD(mem_release, hip.MemRelease((hipMemGenericAllocationHandle_t)P(handle)))
FWD(mem_map, hip.MemMap(P(addr), size, 0, (hipMemGenericAllocationHandle_t)P(handle), 0))
FWD(mem_unmap, hip.MemUnmap(P(addr), size))
static int h_mem_create_shareable(void *dd, uint64_t *handle, uint64_t size)
{
    hip_alloc_prop_padded prop = D->prop;
    prop.p.requestedHandleType = hipMemHandleTypePosixFileDescriptor;
    hipMemGenericAllocationHandle_t h = NULL;
    hipError_t r = hip.MemCreate(&h, size, &prop.p, 0);
    *handle = (uint64_t)(uintptr_t)h;
    return r;
}
FWD(mem_export, hip.MemExportToShareableHandle(fd, (hipMemGenericAllocationHandle_t)P(handle),
                                               hipMemHandleTypePosixFileDescriptor, 0))
static int h_mem_import(void *dd, int fd, uint64_t *handle)
{
    (void)dd;
    hipMemGenericAllocationHandle_t h = NULL;
    /* A POSIX descriptor travels as the pointer's value (the runtime's ABI). */
    hipError_t r = hip.MemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
                                                    hipMemHandleTypePosixFileDescriptor);
    *handle = (uint64_t)(uintptr_t)h;
    return r;
}
static int h_set_access(void *dd, uint64_t addr, uint64_t size, int writable)
{
    return hip.MemSetAccess(P(addr), size, writable ? &D->rw : &D->ro, 1);
}
FWD(memcpy_htod, hip.MemcpyHtoDAsync(P(dst), src, len, stream))
FWD(memcpy_dtoh, hip.MemcpyDtoHAsync(dst, P(src), len, stream))
FWD(memcpy_dtod, hip.MemcpyDtoDAsync(P(dst), P(src), len, stream))
FWD(memset_d8, hip.MemsetD8Async(P(dst), (unsigned char)byte, len, stream))
FWD(stream_create, hip.StreamCreateWithFlags((hipStream_t *)stream, hipStreamNonBlocking))
FWD(stream_destroy, hip.StreamDestroy(stream))
FWD(stream_sync, hip.StreamSynchronize(stream))

static int h_stream_capturing(void *dd, void *stream, int *capturing)
{
    (void)dd;
    int status = 0; /* hipStreamCaptureStatusNone; Active or Invalidated else */
    int r = hip.StreamIsCapturing(stream, &status);
    *capturing = status != 0;
    return r;
}
FWD(event_create, hip.EventCreateWithFlags((hipEvent_t *)event, hipEventDisableTiming))
FWD(event_record, hip.EventRecord(event, stream))
FWD(event_destroy, hip.EventDestroy(event))
FWD(stream_wait_event, hip.StreamWaitEvent(stream, event, 0))
FWD(device_sync, hip.DeviceSynchronize())
static int h_host_alloc(void *dd, void **ptr, size_t size, int mapped)
{
    (void)dd;
    /* Mapped memory is polled by the host while the device writes it:
     * coherent, not cached by the device. */
    return hip.HostMalloc(ptr, size,
                          hipHostMallocPortable |
                              (mapped ? hipHostMallocMapped | hipHostMallocCoherent : 0));
}
FWD(host_free, hip.HostFree(ptr))
static int h_host_device_ptr(void *dd, uint64_t *dev, void *ptr)
{
    (void)dd;
    void *d = NULL;
    hipError_t r = hip.HostGetDevicePointer(&d, ptr, 0);
    *dev = (uint64_t)(uintptr_t)d;
    return r;
}
static int h_dev_alloc(void *dd, uint64_t *dev, size_t size)
{
    (void)dd;
    void *d = NULL;
    hipError_t r = hip.Malloc(&d, size);
    *dev = (uint64_t)(uintptr_t)d;
    return r;
}
FWD(dev_free, hip.Free(P(dev)))
FWD(module_load, hip.ModuleLoadData((hipModule_t *)module, image))
FWD(module_unload, hip.ModuleUnload(module))
FWD(module_function, hip.ModuleGetFunction((hipFunction_t *)fn, module, name))
FWD(occupancy,
    hip.ModuleOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_sm, fn, (int)block, 0))
FWD(launch, hip.ModuleLaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, stream, args, NULL))
FWD(launch_cooperative,
    hip.ModuleLaunchCooperativeKernel(fn, grid, 1, 1, block, 1, 1, 0, stream, args))

static const char *h_error_name(int rc)
{
    return hip.GetErrorName ? hip.GetErrorName(rc) : NULL;
}
static const char *h_error_string(int rc)
{
    return hip.GetErrorString ? hip.GetErrorString(rc) : NULL;
}
static int h_errno_of(int rc)
{
    return rc == hipErrorOutOfMemory ? ENOMEM : rc == hipErrorNotSupported ? ENOTSUP : EIO;
}

static gms_drv hip_drv = {
    .name = "hip",
    .result_type = "hipError_t",
    .call_names = {
        [GMS_DRV_get_current] = "hipGetDevice",
        [GMS_DRV_set_current] = "hipSetDevice",
        [GMS_DRV_va_reserve] = "hipMemAddressReserve",
        [GMS_DRV_va_free] = "hipMemAddressFree",
        [GMS_DRV_mem_create] = "hipMemCreate",
        [GMS_DRV_mem_release] = "hipMemRelease",
        [GMS_DRV_mem_map] = "hipMemMap",
        [GMS_DRV_mem_unmap] = "hipMemUnmap",
        [GMS_DRV_mem_create_shareable] = "hipMemCreate",
        [GMS_DRV_mem_export] = "hipMemExportToShareableHandle",
        [GMS_DRV_mem_import] = "hipMemImportFromShareableHandle",
        [GMS_DRV_set_access] = "hipMemSetAccess",
        [GMS_DRV_memcpy_htod] = "hipMemcpyHtoDAsync",
        [GMS_DRV_memcpy_dtoh] = "hipMemcpyDtoHAsync",
        [GMS_DRV_memcpy_dtod] = "hipMemcpyDtoDAsync",
        [GMS_DRV_memset_d8] = "hipMemsetD8Async",
        [GMS_DRV_stream_create] = "hipStreamCreateWithFlags",
        [GMS_DRV_stream_destroy] = "hipStreamDestroy",
        [GMS_DRV_stream_sync] = "hipStreamSynchronize",
        [GMS_DRV_stream_capturing] = "hipStreamIsCapturing",
        [GMS_DRV_event_create] = "hipEventCreateWithFlags",
        [GMS_DRV_event_record] = "hipEventRecord",
        [GMS_DRV_event_destroy] = "hipEventDestroy",
        [GMS_DRV_stream_wait_event] = "hipStreamWaitEvent",
        [GMS_DRV_device_sync] = "hipDeviceSynchronize",
        [GMS_DRV_host_alloc] = "hipHostMalloc",
        [GMS_DRV_host_free] = "hipHostFree",
        [GMS_DRV_host_device_ptr] = "hipHostGetDevicePointer",
        [GMS_DRV_dev_alloc] = "hipMalloc",
        [GMS_DRV_dev_free] = "hipFree",
        [GMS_DRV_module_load] = "hipModuleLoadData",
        [GMS_DRV_module_unload] = "hipModuleUnload",
        [GMS_DRV_module_function] = "hipModuleGetFunction",
        [GMS_DRV_occupancy] = "hipModuleOccupancyMaxActiveBlocksPerMultiprocessor",
        [GMS_DRV_launch] = "hipModuleLaunchKernel",
        [GMS_DRV_launch_cooperative] = "hipModuleLaunchCooperativeKernel",
    },
    .error_name = h_error_name,
    .error_string = h_error_string,
    .errno_of = h_errno_of,
#define H_FIELD(name) .name = h_##name,
    GMS_DRV_CALLS(H_FIELD)
#undef H_FIELD
};

/* ---- loading ---- */

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

const char *gms__backend_hip_why(void)
{
    return gms__backend_why();
}

/* A setup call through the wrapper (counted; on failure, noted). */
static int setup(const char *call, hipError_t r)
{
    return gms__drv_check(&hip_drv, GMS_DRV_setup, call, r);
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
    HIP_LOAD(GetErrorName, "hipGetErrorName", ())
    HIP_LOAD(GetErrorString, "hipGetErrorString", ())
#undef HIP_LOAD
    *(void **)&hip.ModuleLaunchCooperativeKernel = dlsym(lib, "hipModuleLaunchCooperativeKernel");
    if (!hip.ModuleLaunchCooperativeKernel)
        hip_drv.launch_cooperative = NULL; /* vmm.c: no scrub kernel */
    int err = setup("hipInit", hip.Init(0));
    if (!err)
        err = setup("hipGetDeviceCount", hip.GetDeviceCount(&device_count));
    if (err || device_count <= 0) {
        load_err = ENODEV;
        snprintf(load_why, sizeof load_why, "hip: libamdhip64 loaded but found no GPU (%s)",
                 err ? gms__backend_why() : "the runtime reports no device");
        device_count = 0;
    }
    /* The library stays loaded for the life of the process. */
}

int gms__backend_hip_available(void)
{
    pthread_once(&load_once, load_runtime);
    return load_err == 0 && device_count > 0;
}

uint64_t gms__backend_hip_granularity(const gms_backend *be)
{
    return be->granularity;
}

int gms__backend_hip_have_kernels(const gms_backend *be)
{
    return gms__vmm_have_kernels(be);
}

const char *gms__backend_hip_kernels_why(const gms_backend *be)
{
    return be->no_scrub ? be->no_scrub : "";
}

void gms__backend_hip_dump_calls(FILE *f)
{
    gms__drv_dump(&hip_drv, f);
}

/* Reads the code object named by GMS_HIP_CODE_OBJECT: the image, or NULL
 * with why said in why. */
static void *read_code_object(char *why, size_t cap)
{
    const char *path = getenv("GMS_HIP_CODE_OBJECT");
    if (!path || !*path) {
        snprintf(why, cap, "GMS_HIP_CODE_OBJECT is not set");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, cap, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *image = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0 ||
        (image = malloc((size_t)size)) == NULL || fread(image, 1, (size_t)size, f) != (size_t)size) {
        snprintf(why, cap, "cannot read %s", path);
        free(image);
        image = NULL;
    }
    fclose(f);
    return image;
}

static void hip_dev_free(void *dd)
{
    free(dd);
}

/* The HIP granule: at least 2 MiB (docs/design.md#memory). */
#define HIP_MIN_GRANULE (2ull << 20)

int gms__backend_hip_create(int device, gms_backend **out)
{
    gms__backend_why_clear();
    if (!gms__backend_hip_available()) {
        gms__backend_note("%s", load_why);
        return ENODEV;
    }
    if (device < 0 || device >= device_count) {
        gms__backend_note("hip: device %d does not exist (%d found)", device, device_count);
        return ENODEV;
    }
    hip_dev *hd = calloc(1, sizeof *hd);
    if (!hd)
        return ENOMEM;
    hd->dev = device;
    hd->prop.p.type = hipMemAllocationTypePinned;
    hd->prop.p.requestedHandleType = hipMemHandleTypeNone;
    hd->prop.p.location.type = hipMemLocationTypeDevice;
    hd->prop.p.location.id = device;
    hd->rw.location = hd->prop.p.location;
    hd->rw.flags = hipMemAccessFlagsProtReadWrite;
    hd->ro.location = hd->prop.p.location;
    hd->ro.flags = hipMemAccessFlagsProtRead;
    int coop = 0, sms = 0;
    hip.DeviceGetAttribute(&coop, hipDeviceAttributeCooperativeLaunch, device);
    hip.DeviceGetAttribute(&sms, hipDeviceAttributeMultiprocessorCount, device);
    /* The granularity is asked with the device current, the caller's put
     * back after. */
    size_t g = 0;
    int saved = 0;
    hipError_t r = hipSuccess;
    int err = setup("hipGetDevice", hip.GetDevice(&saved));
    if (!err && (err = setup("hipSetDevice", hip.SetDevice(device))) == 0) {
        r = hip.MemGetAllocationGranularity(&g, &hd->prop.p, hipMemAllocationGranularityMinimum);
        hip.SetDevice(saved);
        if (r == hipErrorNotSupported) {
            gms__backend_note("hip: device %d has no virtual memory management "
                              "(hipMemGetAllocationGranularity: %s)",
                              device, h_error_string(r) ? h_error_string(r) : "not supported");
            err = ENOTSUP;
        } else {
            err = setup("hipMemGetAllocationGranularity", r);
        }
    }
    if (err) {
        free(hd);
        return err;
    }
    char kernel_why[256];
    void *image = read_code_object(kernel_why, sizeof kernel_why);
    gms_vmm_config cfg = {
        .drv = &hip_drv,
        .dd = hd,
        .dd_free = hip_dev_free,
        .current = (uintptr_t)device,
        /* Both powers of two, or vmm.c refuses the device. */
        .granularity = g == 0 || g > HIP_MIN_GRANULE || (g & (g - 1)) ? g : HIP_MIN_GRANULE,
        .sms = sms,
        .cooperative = coop,
        .image = image,
        .no_image = kernel_why,
        .kernel_hint = "; build src/kernels/scrub.cu with hipcc --genco and name the file in "
                       "GMS_HIP_CODE_OBJECT (docs/hip.md)",
        .sync_scrub = getenv("GMS_HIP_SYNC_SCRUB") && getenv("GMS_HIP_SYNC_SCRUB")[0] == '1',
    };
    err = gms__vmm_create(&cfg, out); /* the module keeps its own copy of the image */
    free(image);
    return err;
}

const gms_backend_factory gms__backend_hip_factory = {
    .name = "hip",
    .available = gms__backend_hip_available,
    .create = gms__backend_hip_create,
    .why = gms__backend_hip_why,
};
