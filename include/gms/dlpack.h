/*
 * gms/dlpack.h: gms buffers as DLPack tensors, and DLPack tensors as gms
 * buffers, so a buffer crosses into PyTorch, CuPy, NumPy or JAX without a
 * copy. Thread-safety: as gms.h.
 *
 * The DLPack structures below follow the DLPack specification 1.x (the ABI
 * of dlpack.h). They are defined here because the dlpack.h of many systems
 * predates 1.0 and has no versioned tensor; a program that includes a
 * dlpack.h of 1.0 or later first uses that one instead.
 */
#ifndef GMS_DLPACK_H
#define GMS_DLPACK_H

#include "gms.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(DLPACK_MAJOR_VERSION) && DLPACK_MAJOR_VERSION < 1
#error "gms/dlpack.h needs DLPack 1.0 or later: include it before an older dlpack.h"
#endif

#ifndef DLPACK_MAJOR_VERSION
#define DLPACK_MAJOR_VERSION 1
#define DLPACK_MINOR_VERSION 1

typedef struct {
    uint32_t major;
    uint32_t minor;
} DLPackVersion;

typedef enum {
    kDLCPU = 1,
    kDLCUDA = 2,
    kDLCUDAHost = 3,
    kDLOpenCL = 4,
    kDLVulkan = 7,
    kDLMetal = 8,
    kDLVPI = 9,
    kDLROCM = 10,
    kDLROCMHost = 11,
    kDLExtDev = 12,
    kDLCUDAManaged = 13,
    kDLOneAPI = 14,
    kDLWebGPU = 15,
    kDLHexagon = 16
} DLDeviceType;

typedef struct {
    DLDeviceType device_type;
    int32_t device_id;
} DLDevice;

typedef enum {
    kDLInt = 0,
    kDLUInt = 1,
    kDLFloat = 2,
    kDLOpaqueHandle = 3,
    kDLBfloat = 4,
    kDLComplex = 5,
    kDLBool = 6
} DLDataTypeCode;

typedef struct {
    uint8_t code;   /* a DLDataTypeCode */
    uint8_t bits;
    uint16_t lanes;
} DLDataType;

typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides; /* in elements; NULL: compact row-major */
    uint64_t byte_offset;
} DLTensor;

/* The legacy (pre-1.0) managed tensor. */
typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

#define DLPACK_FLAG_BITMASK_READ_ONLY (1ULL << 0)
#define DLPACK_FLAG_BITMASK_IS_COPIED (1ULL << 1)

typedef struct DLManagedTensorVersioned {
    DLPackVersion version;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned *self);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;
#endif /* DLPACK_MAJOR_VERSION */

/* How to view a buffer as a tensor. NULL for the default: one dimension of
 * bytes (uint8) over the whole buffer. */
#define GMS_DLPACK_DESC_VERSION 1
typedef struct gms_dlpack_desc {
    uint32_t version; /* GMS_DLPACK_DESC_VERSION */
    DLDataType dtype; /* bits a multiple of 8, lanes >= 1 */
    int32_t ndim;     /* 0..GMS_DLPACK_MAX_DIMS */
    const int64_t *shape;   /* ndim entries, each >= 0 */
    const int64_t *strides; /* ndim entries in elements, or NULL: row-major */
    uint64_t byte_offset;   /* where element 0 lies in the buffer */
} gms_dlpack_desc;

#define GMS_DLPACK_MAX_DIMS 16
#define GMS_DLPACK_DESC_INIT { GMS_DLPACK_DESC_VERSION, { 1, 8, 1 }, 0, NULL, NULL, 0 }

/* Exports buf as a versioned DLPack tensor. The tensor holds a reference of
 * its own (a new handle on buf), which its deleter releases: the memory
 * stays valid until the consumer calls the deleter, whether buf is freed
 * or its context closes before (the tensor's handle then stays, charged to
 * the buffer's pool, as DLPack asks of a producer). Every element
 * the shape and strides reach must lie inside the buffer
 * (GMS_E_OUT_OF_BOUNDS otherwise). An immutable share's tensor has
 * DLPACK_FLAG_BITMASK_READ_ONLY set, and so does any tensor of a handle
 * acquired read-only. The device is kDLCPU on the host backend, kDLCUDA
 * on CUDA, kDLROCM on HIP. The deleter may run after the exporting context
 * or even the runtime closed; a runtime's close does reclaim the memory
 * (the deleter then only frees the tensor). */
GMS_API int gms_dlpack_export(gms_context *ctx, gms_buf buf, const gms_dlpack_desc *desc,
                              DLManagedTensorVersioned **out);
/* The same as a legacy DLManagedTensor, for consumers older than DLPack 1.0
 * (it has no read-only flag: an immutable buffer is refused with
 * GMS_E_READ_ONLY rather than handed out writable). */
GMS_API int gms_dlpack_export_legacy(gms_context *ctx, gms_buf buf, const gms_dlpack_desc *desc,
                                     DLManagedTensor **out);

/* Imports another framework's tensor as a buffer of ctx. No pool owns its
 * memory, but its handle is checked like any other, access calls are
 * bounds-checked against the tensor's extent, and gms_free (or context
 * close) calls the tensor's deleter. On success gms owns the tensor; on
 * error the caller still does. A read-only tensor gives a read-only buffer.
 * The tensor must be compact (no strides, or row-major strides) and on
 * this runtime's device (GMS_E_UNSUPPORTED otherwise). */
GMS_API int gms_dlpack_import(gms_context *ctx, DLManagedTensorVersioned *tensor, gms_buf *out);
GMS_API int gms_dlpack_import_legacy(gms_context *ctx, DLManagedTensor *tensor, gms_buf *out);

#ifdef __cplusplus
}
#endif
#endif /* GMS_DLPACK_H */
