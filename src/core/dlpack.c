/*
 * dlpack.c: gms buffers as DLPack tensors and back (include/gms/dlpack.h).
 *
 * An exported tensor owns a handle of its own on the buffer (one more
 * holder), so the buffer outlives whichever of the two goes first, and
 * the exporting context too: at its close the handle is orphaned (no
 * holder), not released (gms__handle_orphan). Its deleter releases it by
 * the handle alone, never touching the exporting context.
 * An imported tensor becomes a block that no pool chunk holds: it has a
 * handle like any buffer, its accesses are bounds-checked against the
 * tensor's extent, and its last release calls the tensor's deleter.
 */
#include "core/internal.h"
#include "core/version.h"
#include "gms/dlpack.h"
#include "safety/safety.h"

#include <stdlib.h>
#include <string.h>

/* What an exported tensor points back to. Outstanding exports are listed
 * in their runtime, so that a runtime closing before a consumer calls the
 * deleter can cut them loose: the deleter then only frees the tensor (the
 * handle went with its context). A deleter may run on any thread while
 * the runtime closes, so e->rt and the lists are guarded by exports_lock,
 * which outlives every runtime (a lock inside the runtime could be freed
 * under a deleter waiting for it), and the close waits for the deleters
 * that found their runtime still there to finish with it. */
typedef struct export_ctx {
    gms_runtime *rt; /* NULL once the runtime is gone */
    struct export_ctx *prev, *next;
    gms_buf handle; /* the tensor's own handle */
    int64_t shape[GMS_DLPACK_MAX_DIMS];
    int64_t strides[GMS_DLPACK_MAX_DIMS];
} export_ctx;

static pthread_mutex_t exports_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t exports_released = PTHREAD_COND_INITIALIZER;

static DLDevice device_of(const gms_runtime *rt)
{
    if (strcmp(rt->backend_name, "cuda") == 0)
        return (DLDevice){kDLCUDA, rt->config.device};
    if (strcmp(rt->backend_name, "hip") == 0)
        return (DLDevice){kDLROCM, rt->config.device};
    return (DLDevice){kDLCPU, 0};
}

/* Bytes per element of dtype, 0 if it is not whole bytes. */
static uint64_t item_bytes(DLDataType t)
{
    if (t.bits == 0 || t.bits % 8 || t.lanes == 0)
        return 0;
    return (uint64_t)t.bits / 8 * t.lanes;
}

/* The bytes [lo, hi) a tensor's elements reach, relative to element 0;
 * strides NULL means row-major. An error if a size overflows. */
static int tensor_extent(int32_t ndim, const int64_t *shape, const int64_t *strides, uint64_t item,
                         const char *op, int64_t *lo, int64_t *hi)
{
    if (ndim < 0 || ndim > GMS_DLPACK_MAX_DIMS)
        return gms__fail(GMS_E_INVALID_ARG, "%s: ndim %d is not in 0..%d", op, ndim, GMS_DLPACK_MAX_DIMS);
    if (ndim > 0 && !shape)
        return gms__fail(GMS_E_INVALID_ARG, "%s: shape is NULL", op);
    int64_t count = 1, min = 0, max = 0, row = 1;
    for (int32_t d = ndim - 1; d >= 0; d--) {
        if (shape[d] < 0)
            return gms__fail(GMS_E_INVALID_ARG, "%s: shape[%d] is %lld", op, d, (long long)shape[d]);
        if (__builtin_mul_overflow(count, shape[d], &count))
            goto overflow;
        int64_t stride = strides ? strides[d] : row;
        int64_t reach;
        if (shape[d] > 0 && __builtin_mul_overflow(stride, shape[d] - 1, &reach))
            goto overflow;
        if (shape[d] > 0 && __builtin_add_overflow(reach < 0 ? min : max, reach, reach < 0 ? &min : &max))
            goto overflow;
        if (shape[d] > 0 && __builtin_mul_overflow(row, shape[d], &row))
            goto overflow;
    }
    if (count == 0) {
        *lo = *hi = 0;
        return GMS_OK;
    }
    if (__builtin_mul_overflow(min, (int64_t)item, lo) || __builtin_mul_overflow(max, (int64_t)item, hi) ||
        __builtin_add_overflow(*hi, (int64_t)item, hi))
        goto overflow;
    return GMS_OK;
overflow:
    return gms__fail(GMS_E_INVALID_ARG, "%s: the tensor's size overflows 64 bits", op);
}

static void export_release(export_ctx *e)
{
    pthread_mutex_lock(&exports_lock);
    gms_runtime *rt = e->rt; /* read under the lock: the close may be cutting it loose */
    if (rt) {
        if (e->prev)
            e->prev->next = e->next;
        else
            rt->exports = e->next;
        if (e->next)
            e->next->prev = e->prev;
        rt->export_releases++; /* the runtime's close waits for this release */
    }
    pthread_mutex_unlock(&exports_lock);
    if (!rt) {
        free(e);
        return;
    }
    gms_pool *p = NULL;
    gms_slot *s = gms__slot_lookup(rt, e->handle, &p);
    if (s) {
        gms__pool_lock(p);
        gms_drop d = {0};
        /* Dead already if its context closed (reported there as a leak). */
        if (gms__slot_owned(s, p) && atomic_load(&s->handle) == e->handle &&
            s->kind == GMS_SLOT_HANDLE)
            gms__handle_drop(p, s, s->holder, &d);
        gms__pool_unlock(p);
        gms__drop_finish(&d);
        gms__violations_deliver(rt);
    }
    pthread_mutex_lock(&exports_lock);
    if (--rt->export_releases == 0)
        pthread_cond_broadcast(&exports_released);
    pthread_mutex_unlock(&exports_lock);
    free(e);
}

void gms__dlpack_orphan_all(gms_runtime *rt)
{
    pthread_mutex_lock(&exports_lock);
    for (export_ctx *e = rt->exports, *n; e; e = n) {
        n = e->next;
        e->rt = NULL;
        e->prev = e->next = NULL;
    }
    rt->exports = NULL;
    while (rt->export_releases)
        pthread_cond_wait(&exports_released, &exports_lock);
    pthread_mutex_unlock(&exports_lock);
}

static void versioned_deleter(DLManagedTensorVersioned *t)
{
    export_release(t->manager_ctx);
    free(t);
}

static void legacy_deleter(DLManagedTensor *t)
{
    export_release(t->manager_ctx);
    free(t);
}

/* Checks desc against the buffer, takes the tensor's handle and fills the
 * DLTensor; *read_only says whether it must not be written. */
static int export_common(gms_context *ctx, gms_buf buf, const gms_dlpack_desc *desc, bool legacy,
                         const char *op, DLTensor *t, export_ctx **out_e, bool *read_only)
{
    gms_dlpack_desc whole = GMS_DLPACK_DESC_INIT, given = GMS_DLPACK_DESC_INIT;
    if (desc) {
        int rc = gms__struct_read(&gms__dlpack_desc_versions, op, desc, &given);
        if (rc)
            return rc;
        desc = &given;
    }
    uint64_t item = item_bytes(desc ? desc->dtype : whole.dtype);
    if (!item)
        return gms__fail(GMS_E_INVALID_ARG, "%s: dtype of %u bits x %u lanes is not whole bytes", op,
                         desc->dtype.bits, desc->dtype.lanes);
    export_ctx *e = gms__alloc_meta(ctx->rt, sizeof *e);
    if (!e)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a DLPack tensor");
    memset(e, 0, sizeof *e);
    gms_held h;
    int rc = gms__buf_lock(ctx, buf, op, false, &h);
    if (rc) {
        free(e);
        return rc;
    }
    gms_block *b = h.block;
    if (!desc) {
        whole.ndim = 1;
        e->shape[0] = (int64_t)b->req_size;
        whole.shape = e->shape;
        desc = &whole;
    }
    int64_t lo = 0, hi = 0;
    rc = tensor_extent(desc->ndim, desc->shape, desc->strides, item, op, &lo, &hi);
    if (rc == GMS_OK && desc->byte_offset > b->req_size)
        rc = gms__fail(GMS_E_OUT_OF_BOUNDS, "%s: byte_offset %llu is past the buffer's %llu bytes", op,
                       (unsigned long long)desc->byte_offset, (unsigned long long)b->req_size);
    if (rc == GMS_OK && hi > lo &&
        (lo < -(int64_t)desc->byte_offset || hi > (int64_t)(b->req_size - desc->byte_offset)))
        rc = gms__fail(GMS_E_OUT_OF_BOUNDS,
                       "%s: the tensor reaches bytes [%lld, %lld) of a buffer of %llu bytes", op,
                       (long long)(lo + (int64_t)desc->byte_offset),
                       (long long)(hi + (int64_t)desc->byte_offset), (unsigned long long)b->req_size);
    *read_only = (b->share && b->share->immutable) || h.slot->mode != GMS_ACCESS_READ_WRITE;
    if (rc == GMS_OK && legacy && *read_only)
        rc = gms__fail(GMS_E_READ_ONLY,
                       "%s: buffer 0x%016llx is read-only and a legacy DLPack tensor cannot say so: use gms_dlpack_export",
                       op, (unsigned long long)buf);
    uint64_t data = 0;
    if (rc == GMS_OK)
        rc = gms__holder_pointer(h.pool, h.slot, buf, op, &data);
    if (rc == GMS_OK)
        rc = gms__handle_add(h.pool, b, ctx, h.slot->mode, &e->handle);
    if (rc == GMS_OK) /* it outlives ctx: the consumer reads until the deleter */
        gms__slot_at(ctx->rt, gms__handle_slot(e->handle))->exported = true;
    if (rc) {
        gms__pool_unlock(h.pool);
        free(e);
        return rc;
    }
    if (desc->ndim > 0 && desc->shape != e->shape)
        memcpy(e->shape, desc->shape, (size_t)desc->ndim * sizeof *e->shape);
    if (desc->strides)
        memcpy(e->strides, desc->strides, (size_t)desc->ndim * sizeof *e->strides);
    t->data = (void *)(uintptr_t)data;
    t->device = device_of(ctx->rt);
    t->ndim = desc->ndim;
    t->dtype = desc->dtype;
    t->shape = e->shape;
    t->strides = desc->strides ? e->strides : NULL;
    t->byte_offset = desc->byte_offset;
    gms__pool_unlock(h.pool);
    gms_runtime *rt = ctx->rt;
    pthread_mutex_lock(&exports_lock);
    e->rt = rt;
    e->next = rt->exports;
    if (e->next)
        e->next->prev = e;
    rt->exports = e;
    pthread_mutex_unlock(&exports_lock);
    *out_e = e;
    return GMS_OK;
}

/* Both exports: a versioned or a legacy managed tensor in *out. */
static int export_tensor(gms_context *ctx, gms_buf buf, const gms_dlpack_desc *desc, bool legacy,
                         const char *op, void **out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "%s: out is NULL", op);
    *out = NULL;
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", op);
    size_t size = legacy ? sizeof(DLManagedTensor) : sizeof(DLManagedTensorVersioned);
    void *mem = gms__alloc_meta(ctx->rt, size);
    if (!mem)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a DLPack tensor");
    memset(mem, 0, size);
    DLManagedTensor *lt = mem;
    DLManagedTensorVersioned *vt = mem;
    export_ctx *e = NULL;
    bool ro = false;
    int rc = export_common(ctx, buf, desc, legacy, op, legacy ? &lt->dl_tensor : &vt->dl_tensor,
                           &e, &ro);
    if (rc) {
        free(mem);
        return rc;
    }
    if (legacy) {
        lt->manager_ctx = e;
        lt->deleter = legacy_deleter;
    } else {
        vt->version = (DLPackVersion){DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION};
        vt->manager_ctx = e;
        vt->deleter = versioned_deleter;
        vt->flags = ro ? DLPACK_FLAG_BITMASK_READ_ONLY : 0;
    }
    *out = mem;
    return GMS_OK;
}

int gms_dlpack_export(gms_context *ctx, gms_buf buf, const gms_dlpack_desc *desc,
                      DLManagedTensorVersioned **out)
{
    return export_tensor(ctx, buf, desc, false, "gms_dlpack_export", (void **)out);
}

int gms_dlpack_export_legacy(gms_context *ctx, gms_buf buf, const gms_dlpack_desc *desc,
                             DLManagedTensor **out)
{
    return export_tensor(ctx, buf, desc, true, "gms_dlpack_export_legacy", (void **)out);
}

/* Makes a buffer of ctx over tensor t (versioned or not). */
static int import_common(gms_context *ctx, const DLTensor *t, void *tensor, int versioned,
                         bool read_only, const char *op, gms_buf *out)
{
    DLDevice want = device_of(ctx->rt);
    if (t->device.device_type != want.device_type || t->device.device_id != want.device_id)
        return gms__fail(GMS_E_UNSUPPORTED,
                         "%s: the tensor is on device type %d id %d; this runtime's %s backend is type %d id %d",
                         op, (int)t->device.device_type, t->device.device_id, ctx->rt->backend_name,
                         (int)want.device_type, want.device_id);
    uint64_t item = item_bytes(t->dtype);
    if (!item)
        return gms__fail(GMS_E_INVALID_ARG, "%s: dtype of %u bits x %u lanes is not whole bytes", op,
                         t->dtype.bits, t->dtype.lanes);
    int64_t lo, hi;
    int rc = tensor_extent(t->ndim, t->shape, NULL, item, op, &lo, &hi);
    if (rc)
        return rc;
    if (hi == 0)
        return gms__fail(GMS_E_INVALID_ARG, "%s: the tensor has no elements", op);
    if (t->strides) {
        /* Row-major or nothing: a buffer is one run of bytes. Dimensions
         * of one element may carry any stride. */
        int64_t row = 1;
        for (int32_t d = t->ndim - 1; d >= 0; d--) {
            if (t->shape[d] > 1 && t->strides[d] != row)
                return gms__fail(GMS_E_UNSUPPORTED,
                                 "%s: the tensor is not compact row-major (stride %lld of dimension %d, want %lld)",
                                 op, (long long)t->strides[d], d, (long long)row);
            if (__builtin_mul_overflow(row, t->shape[d], &row))
                return gms__fail(GMS_E_INVALID_ARG, "%s: the tensor's size overflows 64 bits", op);
        }
    }
    if (!t->data)
        return gms__fail(GMS_E_INVALID_ARG, "%s: the tensor's data is NULL", op);
    /* Its bytes are [data + byte_offset, + hi): addresses that wrap, or a
     * reach past what any device holds, describe no memory, and a checked
     * access would land outside the tensor. */
    uint64_t data = (uint64_t)(uintptr_t)t->data, addr, end;
    if (t->byte_offset > GMS_MAX_ALLOC || (uint64_t)hi > GMS_MAX_ALLOC - t->byte_offset)
        return gms__fail(GMS_E_INVALID_ARG,
                         "%s: the tensor's byte_offset %llu plus its %llu bytes pass %llu bytes, more than any device holds",
                         op, (unsigned long long)t->byte_offset, (unsigned long long)hi,
                         (unsigned long long)GMS_MAX_ALLOC);
    if (__builtin_add_overflow(data, t->byte_offset, &addr) ||
        __builtin_add_overflow(addr, (uint64_t)hi, &end))
        return gms__fail(GMS_E_INVALID_ARG,
                         "%s: the tensor's %llu bytes at data 0x%llx + byte_offset %llu run past the end of the address space",
                         op, (unsigned long long)hi, (unsigned long long)data,
                         (unsigned long long)t->byte_offset);
    gms_runtime *rt = ctx->rt;
    gms_block *b = gms__alloc_meta(rt, sizeof *b);
    gms_import *imp = gms__alloc_meta(rt, sizeof *imp);
    if (!b || !imp) {
        free(b);
        free(imp);
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for an imported tensor");
    }
    memset(b, 0, sizeof *b);
    *imp = (gms_import){.tensor = tensor, .versioned = versioned};
    b->addr = addr;
    b->size = b->req_size = (uint64_t)hi;
    b->state = GMS_BLOCK_LIVE;
    b->import = imp;
    b->alloc_ns = gms__now_ns();
    b->alloc_user = ctx->user_index;
    gms_pool *p = ctx->pool;
    gms__pool_lock(p);
    gms_buf h;
    rc = gms__handle_add(p, b, ctx, read_only ? GMS_ACCESS_READ : GMS_ACCESS_READ_WRITE, &h);
    if (rc == GMS_OK) {
        b->handle = h;
        gms__live_push(&p->imports, b);
    }
    gms__pool_unlock(p);
    if (rc) {
        free(b);
        free(imp);
        return rc;
    }
    gms__audit_ctx(ctx, GMS_AUDIT_ALLOC, h, b->req_size, GMS_OK, "imported from a DLPack tensor");
    *out = h;
    return GMS_OK;
}

int gms_dlpack_import(gms_context *ctx, DLManagedTensorVersioned *tensor, gms_buf *out)
{
    const char *op = "gms_dlpack_import";
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "%s: out is NULL", op);
    *out = GMS_BUF_NULL;
    if (!ctx || !tensor)
        return gms__fail(GMS_E_INVALID_ARG, "%s: %s is NULL", op, ctx ? "tensor" : "context");
    if (tensor->version.major != 1)
        return gms__fail(GMS_E_UNSUPPORTED, "%s: DLPack version %u.%u; this gms reads 1.x", op,
                         tensor->version.major, tensor->version.minor);
    return import_common(ctx, &tensor->dl_tensor, tensor, 1,
                         (tensor->flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0, op, out);
}

int gms_dlpack_import_legacy(gms_context *ctx, DLManagedTensor *tensor, gms_buf *out)
{
    const char *op = "gms_dlpack_import_legacy";
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "%s: out is NULL", op);
    *out = GMS_BUF_NULL;
    if (!ctx || !tensor)
        return gms__fail(GMS_E_INVALID_ARG, "%s: %s is NULL", op, ctx ? "tensor" : "context");
    return import_common(ctx, &tensor->dl_tensor, tensor, 0, false, op, out);
}
