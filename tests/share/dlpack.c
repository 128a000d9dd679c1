/*
 * dlpack.c: a gms buffer exported as a DLPack tensor (versioned and
 * legacy) and imported back, in C. The tensor holds a reference of its own
 * and its deleter releases it, whichever goes first; shapes and strides are
 * bounds-checked; immutable shares export read-only; an imported tensor is
 * a checked buffer whose last release calls its deleter exactly once.
 */
#include "share/util.h"
#include "gms/dlpack.h"

static void export_roundtrip(gms_runtime *rt)
{
    gms_context *c = open_ctx(rt, "t", "producer", GMS_LANG_RUST);
    gms_context *py = open_ctx(rt, "t", "consumer", GMS_LANG_PYTHON);
    gms_buf b;
    float data[12];
    for (int i = 0; i < 12; i++)
        data[i] = (float)i * 1.5f;
    CHECK_OK(gms_alloc(c, sizeof data, 0, &b));
    CHECK_OK(gms_write(c, b, 0, data, sizeof data));

    int64_t shape[2] = {3, 4};
    gms_dlpack_desc d = GMS_DLPACK_DESC_INIT;
    d.dtype = (DLDataType){kDLFloat, 32, 1};
    d.ndim = 2;
    d.shape = shape;
    DLManagedTensorVersioned *t = NULL;
    CHECK_OK(gms_dlpack_export(c, b, &d, &t));
    CHECK(t && t->version.major == 1 && t->deleter && !(t->flags & DLPACK_FLAG_BITMASK_READ_ONLY));
    CHECK(t->dl_tensor.device.device_type == kDLCPU && t->dl_tensor.ndim == 2);
    CHECK(t->dl_tensor.shape[0] == 3 && t->dl_tensor.shape[1] == 4 && !t->dl_tensor.strides);
    const float *f = (const float *)((const char *)t->dl_tensor.data + t->dl_tensor.byte_offset);
    CHECK(f[7] == 10.5f);
    gms_buf_info info;
    CHECK_OK(gms_buf_info(c, b, &info));
    CHECK(info.holders == 2);
    /* The producer frees its handle first: the tensor keeps the memory. */
    CHECK_OK(gms_free(c, b));
    CHECK(f[11] == 16.5f);

    /* Another language imports it: a checked buffer over the same bytes. */
    gms_buf in;
    CHECK_OK(gms_dlpack_import(py, t, &in));
    CHECK_OK(gms_buf_info(py, in, &info));
    CHECK(info.size == sizeof data && info.device_ptr == (uint64_t)(uintptr_t)f);
    float got[12];
    CHECK_OK(gms_read(py, in, 0, got, sizeof got));
    CHECK(memcmp(got, data, sizeof data) == 0);
    CHECK_RC(gms_read(py, in, 4, got, sizeof got), GMS_E_OUT_OF_BOUNDS);
    CHECK_OK(gms_write(py, in, 0, &data[5], sizeof(float)));
    CHECK_OK(gms_verify(rt, NULL));
    gms_stats st;
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.live_blocks == 1); /* the original; the import is no pool's */
    /* Releasing the import runs the deleter, which frees the original. */
    CHECK_OK(gms_free(py, in));
    CHECK_RC(gms_free(py, in), GMS_E_INVALID_HANDLE);
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.live_blocks == 0);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(c);
    gms_context_close(py);
}

static void export_checks(gms_runtime *rt)
{
    gms_context *c = open_ctx(rt, "t", "producer", GMS_LANG_C);
    gms_context *r = open_ctx(rt, "t", "reader", GMS_LANG_JULIA);
    gms_buf b;
    CHECK_OK(gms_alloc(c, 1000, 0, &b));
    DLManagedTensorVersioned *t = NULL;
    DLManagedTensor *lt = NULL;
    gms_dlpack_desc d = GMS_DLPACK_DESC_INIT;
    int64_t shape[2] = {10, 26}, strides[2] = {25, 1};
    d.dtype = (DLDataType){kDLFloat, 32, 1};
    d.ndim = 2;
    d.shape = shape;
    CHECK_RC(gms_dlpack_export(c, b, &d, &t), GMS_E_OUT_OF_BOUNDS); /* 1040 bytes */
    shape[1] = 25;
    d.byte_offset = 8;
    CHECK_RC(gms_dlpack_export(c, b, &d, &t), GMS_E_OUT_OF_BOUNDS); /* 8 + 1000 */
    d.byte_offset = 0;
    d.strides = strides;
    strides[0] = 1000;
    CHECK_RC(gms_dlpack_export(c, b, &d, &t), GMS_E_OUT_OF_BOUNDS);
    strides[0] = INT64_MAX / 2;
    CHECK_RC(gms_dlpack_export(c, b, &d, &t), GMS_E_INVALID_ARG); /* overflows */
    strides[0] = 25;
    d.dtype.bits = 12;
    CHECK_RC(gms_dlpack_export(c, b, &d, &t), GMS_E_INVALID_ARG);
    d.dtype.bits = 32;
    d.ndim = GMS_DLPACK_MAX_DIMS + 1;
    CHECK_RC(gms_dlpack_export(c, b, &d, &t), GMS_E_INVALID_ARG);
    d.ndim = 2;
    CHECK(t == NULL);
    gms_buf_info info;
    CHECK_OK(gms_buf_info(c, b, &info));
    CHECK(info.holders == 1); /* no refusal took a reference */
    CHECK_OK(gms_dlpack_export(c, b, &d, &t));
    CHECK(t->dl_tensor.strides && t->dl_tensor.strides[0] == 25);
    CHECK_OK(gms_dlpack_export_legacy(c, b, NULL, &lt));
    CHECK(lt->dl_tensor.ndim == 1 && lt->dl_tensor.shape[0] == 1000 && lt->dl_tensor.dtype.bits == 8);
    /* The producer's context closes first: the tensors' handles go with
     * it (a leak it reports); their deleters later do nothing harmful. */
    gms_context_close(c);
    t->deleter(t);
    lt->deleter(lt);
    gms_stats st;
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.live_blocks == 0);

    /* Immutable: read-only versioned tensors; no legacy tensor at all. */
    c = open_ctx(rt, "t", "producer", GMS_LANG_C);
    gms_share_id id;
    gms_buf rh;
    CHECK_OK(gms_alloc(c, 256, 0, &b));
    CHECK_OK(share_one(c, b, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 1, &id));
    CHECK_OK(gms_acquire(r, id, GMS_ACCESS_READ, &rh));
    CHECK_OK(gms_dlpack_export(r, rh, NULL, &t));
    CHECK(t->flags & DLPACK_FLAG_BITMASK_READ_ONLY);
    CHECK_RC(gms_dlpack_export_legacy(c, b, NULL, &lt), GMS_E_READ_ONLY);
    /* A read-only tensor imports as a read-only buffer. */
    gms_buf in;
    CHECK_OK(gms_dlpack_import(c, t, &in));
    CHECK_RC(gms_write(c, in, 0, "x", 1), GMS_E_READ_ONLY);
    CHECK_OK(gms_free(c, in));
    CHECK_OK(gms_free(c, b));
    CHECK_OK(gms_release(r, rh));
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.live_blocks == 0 && st.shares == 0);
    gms_context_close(c);
    gms_context_close(r);
}

/* A tensor from "another framework": host memory with its own deleter. */
static int deleted;

static void foreign_deleter(DLManagedTensor *t)
{
    deleted++;
    free(t->dl_tensor.data);
    free(t);
}

static void import_foreign(gms_runtime *rt)
{
    gms_context *c = open_ctx(rt, "t", "importer", GMS_LANG_C);
    DLManagedTensor *t = calloc(1, sizeof *t);
    static int64_t shape[3] = {2, 3, 4};
    t->dl_tensor.data = calloc(24, sizeof(int32_t));
    t->dl_tensor.device = (DLDevice){kDLCPU, 0};
    t->dl_tensor.ndim = 3;
    t->dl_tensor.dtype = (DLDataType){kDLInt, 32, 1};
    t->dl_tensor.shape = shape;
    t->deleter = foreign_deleter;
    gms_buf in;
    /* Refusals leave the tensor the caller's. */
    t->dl_tensor.device.device_type = kDLCUDA;
    CHECK_RC(gms_dlpack_import_legacy(c, t, &in), GMS_E_UNSUPPORTED);
    t->dl_tensor.device.device_type = kDLCPU;
    static int64_t strides[3] = {1, 2, 6}; /* column-major: not compact row-major */
    t->dl_tensor.strides = strides;
    CHECK_RC(gms_dlpack_import_legacy(c, t, &in), GMS_E_UNSUPPORTED);
    t->dl_tensor.strides = NULL;
    CHECK_RC(gms_dlpack_import_legacy(c, NULL, &in), GMS_E_INVALID_ARG);
    CHECK(deleted == 0);
    CHECK_OK(gms_dlpack_import_legacy(c, t, &in));
    int32_t v = 42, w = 0;
    CHECK_OK(gms_write(c, in, 23 * sizeof v, &v, sizeof v));
    CHECK_RC(gms_write(c, in, 24 * sizeof v, &v, sizeof v), GMS_E_OUT_OF_BOUNDS);
    CHECK(((int32_t *)t->dl_tensor.data)[23] == 42);
    /* Share the imported buffer with another context; the deleter waits
     * for the last holder. */
    gms_context *r = open_ctx(rt, "t", "reader", GMS_LANG_NIM);
    gms_share_id id;
    gms_buf rh;
    CHECK_OK(share_one(c, in, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id));
    CHECK_OK(gms_acquire(r, id, GMS_ACCESS_READ, &rh));
    CHECK_OK(gms_free(c, in));
    CHECK(deleted == 0);
    CHECK_OK(gms_read(r, rh, 23 * sizeof w, &w, sizeof w));
    CHECK(w == 42);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(r); /* a leak: releases the last handle */
    CHECK(deleted == 1);
    gms_context_close(c);
    CHECK(deleted == 1);
}

/* The exporting context closes while another reads the tensor (through
 * an import, or its raw pointer): the memory stays until the deleter, it
 * is not reclaimed as a leak, and then it goes. */
static void export_outlives_its_context(gms_runtime *rt)
{
    gms_context *c = open_ctx(rt, "t", "producer", GMS_LANG_RUST);
    gms_context *py = open_ctx(rt, "t", "consumer", GMS_LANG_PYTHON);
    gms_buf b, in;
    uint8_t data[4096], got[4096];
    memset(data, 0x5a, sizeof data);
    CHECK_OK(gms_alloc(c, sizeof data, 0, &b));
    CHECK_OK(gms_write(c, b, 0, data, sizeof data));
    DLManagedTensorVersioned *t = NULL;
    CHECK_OK(gms_dlpack_export(c, b, NULL, &t));
    const uint8_t *raw = (const uint8_t *)t->dl_tensor.data;
    CHECK_OK(gms_dlpack_import(py, t, &in));
    gms_stats st;
    CHECK_OK(gms_stats(rt, &st));
    uint64_t leaks = st.leaked_blocks;
    gms_context_close(c); /* with b live: b is a leak, the tensor's handle is not */
    CHECK_OK(gms_read(py, in, 0, got, sizeof got));
    CHECK(memcmp(got, data, sizeof data) == 0);
    CHECK(raw[100] == 0x5a); /* not scrubbed: still the tensor's */
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.live_blocks == 1 && st.leaked_blocks == leaks + 1);
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(gms_free(py, in)); /* the deleter: now the memory goes */
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.live_blocks == 0);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(py);
}

/* A consumer may delete a tensor after the runtime closed: the deleter
 * then only frees it (ASan would see any use of the freed runtime). */
static void deleter_after_runtime(void)
{
    gms_runtime *rt = open_runtime();
    gms_context *c = open_ctx(rt, "t", "late", GMS_LANG_PYTHON);
    gms_buf b;
    DLManagedTensorVersioned *t = NULL, *kept = NULL;
    CHECK_OK(gms_alloc(c, 4096, 0, &b));
    CHECK_OK(gms_dlpack_export(c, b, NULL, &t));
    CHECK_OK(gms_dlpack_export(c, b, NULL, &kept));
    kept->deleter(kept); /* one deleted while all is open */
    gms_runtime_close(rt);
    t->deleter(t);
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    export_roundtrip(rt);
    export_checks(rt);
    import_foreign(rt);
    export_outlives_its_context(rt);
    gms_runtime_close(rt);
    deleter_after_runtime();
    return test_done();
}
