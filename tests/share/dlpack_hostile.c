/*
 * dlpack_hostile.c: gms_dlpack_import refuses a tensor whose metadata do
 * not describe memory: a byte_offset that wraps the address space, a
 * tensor that runs past 2^64 or past what any device holds, sizes whose
 * products overflow, negative shapes, strides that are not row-major. A
 * refusal leaves the tensor its caller's (no deleter call) and no checked
 * call can then reach a byte outside the tensor.
 */
#include "share/util.h"
#include "gms/dlpack.h"

static int deleted;

static void deleter(DLManagedTensor *t)
{
    (void)t;
    deleted++;
}

static void versioned_deleter(DLManagedTensorVersioned *t)
{
    (void)t;
    deleted++;
}

/* A legacy tensor over data, described by its fields. */
static DLManagedTensor tensor(void *data, uint64_t byte_offset, int32_t ndim, int64_t *shape,
                              int64_t *strides, uint8_t bits)
{
    DLManagedTensor t;
    memset(&t, 0, sizeof t);
    t.dl_tensor.data = data;
    t.dl_tensor.device = (DLDevice){kDLCPU, 0};
    t.dl_tensor.ndim = ndim;
    t.dl_tensor.dtype = (DLDataType){kDLUInt, bits, 1};
    t.dl_tensor.shape = shape;
    t.dl_tensor.strides = strides;
    t.dl_tensor.byte_offset = byte_offset;
    t.deleter = deleter;
    return t;
}

/* Imports t, which must be refused with want; if it is not, a checked
 * fill of the whole buffer shows where it would have written. */
static void refused(gms_context *c, DLManagedTensor *t, int want, const char *what)
{
    gms_buf b = 1;
    int rc = gms_dlpack_import_legacy(c, t, &b);
    if (rc != want)
        fprintf(stderr, "%s: import returned %d (%s), want %d\n", what, rc, gms_strerror(rc), want);
    CHECK_RC(rc, want);
    CHECK(b == GMS_BUF_NULL);
    if (rc == GMS_OK)
        gms_free(c, b); /* our deleter does not free */
}

static void wrapping_offset(gms_context *c)
{
    /* The tensor claims 16 bytes at data + byte_offset; a byte_offset of
     * 2^64 - 16 is data - 16, inside our own guard bytes. */
    unsigned char *mem = malloc(64);
    memset(mem, 0, 64);
    int64_t shape[1] = {16};
    int was = deleted;
    DLManagedTensor t = tensor(mem + 32, UINT64_MAX - 15, 1, shape, NULL, 8);
    gms_buf b = GMS_BUF_NULL;
    int rc = gms_dlpack_import_legacy(c, &t, &b);
    CHECK_RC(rc, GMS_E_INVALID_ARG);
    if (rc == GMS_OK) {
        CHECK_OK(gms_fill(c, b, 0, 0xee, 16));
        gms_free(c, b);
    }
    for (int i = 0; i < 32; i++)
        CHECK(mem[i] == 0); /* nothing written before the tensor's data */
    /* Any offset that wraps, however small the tensor. */
    t = tensor(mem + 32, UINT64_MAX, 1, (int64_t[1]){1}, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "offset 2^64 - 1");
    t = tensor((void *)(uintptr_t)(UINT64_MAX - 7), 8, 1, (int64_t[1]){1}, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "data + offset = 2^64");
    /* A sane offset past a plausible allocation is refused too. */
    t = tensor(mem, 1ull << 62, 1, shape, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "offset 2^62");
    CHECK(deleted == was);
    free(mem);
}

static void past_the_top(gms_context *c)
{
    /* 1000 bytes from 100 bytes below the top of the address space. */
    int64_t shape[1] = {1000};
    DLManagedTensor t = tensor((void *)(uintptr_t)(UINT64_MAX - 99), 0, 1, shape, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "runs past 2^64");
    /* Exactly up to 2^64: its end is not an address. */
    t = tensor((void *)(uintptr_t)(UINT64_MAX - 999), 0, 1, shape, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "ends at 2^64");
    /* In range of the address space, but more than any device holds. */
    int64_t big[2] = {1ll << 31, 1ll << 31};
    t = tensor((void *)(uintptr_t)4096, 0, 2, big, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "2^62 bytes");
    int64_t huge[1] = {INT64_MAX};
    t = tensor((void *)(uintptr_t)4096, 0, 1, huge, NULL, 64);
    refused(c, &t, GMS_E_INVALID_ARG, "INT64_MAX elements of 8 bytes");
}

static void bad_shapes(gms_context *c)
{
    unsigned char mem[64];
    DLManagedTensor t;
    int64_t neg[2] = {-1, -16};
    t = tensor(mem, 0, 2, neg, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "negative shape (product positive)");
    int64_t over[3] = {1ll << 40, 1ll << 40, 0};
    t = tensor(mem, 0, 3, over, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "shape product overflows before a zero");
    int64_t zero[2] = {0, 8};
    t = tensor(mem, 0, 2, zero, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "no elements");
    t = tensor(mem, 0, 40, neg, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "ndim 40");
    t = tensor(mem, 0, -1, neg, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "ndim -1");
    t = tensor(mem, 0, 1, NULL, NULL, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "shape NULL");
    /* Strides: negative, zero, or products that overflow. */
    int64_t shape[2] = {4, 4};
    int64_t negs[2] = {-4, 1}, zeros[2] = {0, 1}, wrap[2] = {INT64_MIN, 1};
    t = tensor(mem + 48, 0, 2, shape, negs, 8);
    refused(c, &t, GMS_E_UNSUPPORTED, "negative stride");
    t = tensor(mem, 0, 2, shape, zeros, 8);
    refused(c, &t, GMS_E_UNSUPPORTED, "zero stride");
    t = tensor(mem, 0, 2, shape, wrap, 8);
    refused(c, &t, GMS_E_UNSUPPORTED, "stride INT64_MIN");
    /* Dimensions of one element may carry any stride; the rest must be
     * row-major, and their products must not overflow. */
    int64_t ones[3] = {1, 4, 4}, ok[3] = {INT64_MIN, 4, 1};
    gms_buf b;
    t = tensor(mem, 0, 3, ones, ok, 8);
    CHECK_OK(gms_dlpack_import_legacy(c, &t, &b));
    gms_buf_info info;
    CHECK_OK(gms_buf_info(c, b, &info));
    CHECK(info.size == 16);
    int was = deleted;
    CHECK_OK(gms_free(c, b));
    CHECK(deleted == was + 1);
    int64_t long_shape[3] = {3, 1ll << 31, 1ll << 31};
    int64_t long_strides[3] = {1ll << 62, 1ll << 31, 1};
    t = tensor(mem, 0, 3, long_shape, long_strides, 8);
    refused(c, &t, GMS_E_INVALID_ARG, "row-major strides of an overflowing shape");
}

/* The versioned entry point runs the same checks. */
static void versioned(gms_context *c)
{
    unsigned char mem[64];
    int64_t shape[1] = {16};
    DLManagedTensorVersioned t;
    memset(&t, 0, sizeof t);
    t.version = (DLPackVersion){1, 0};
    t.dl_tensor.data = mem + 32;
    t.dl_tensor.device = (DLDevice){kDLCPU, 0};
    t.dl_tensor.ndim = 1;
    t.dl_tensor.dtype = (DLDataType){kDLUInt, 8, 1};
    t.dl_tensor.shape = shape;
    t.dl_tensor.byte_offset = UINT64_MAX - 15;
    t.deleter = versioned_deleter;
    gms_buf b = 1;
    int rc = gms_dlpack_import(c, &t, &b);
    CHECK_RC(rc, GMS_E_INVALID_ARG);
    CHECK(b == GMS_BUF_NULL);
    if (rc == GMS_OK)
        gms_free(c, b);
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    gms_context *c = open_ctx(rt, "t", "importer", GMS_LANG_PYTHON);
    wrapping_offset(c);
    past_the_top(c);
    bad_shapes(c);
    versioned(c);
    CHECK(deleted == 1); /* only the one accepted tensor */
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(c);
    gms_runtime_close(rt);
    return test_done();
}
