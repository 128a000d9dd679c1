/*
 * import_transfer.c: a buffer imported through DLPack changes tenant (or
 * level) only as a copy, like any other buffer. The new owner's writes
 * never reach the first tenant's tensor, the copy is on the new tenant's
 * quota and reports the new tenant, and the tensor goes back to its
 * framework (its deleter runs) once the copy is made. A refused transfer
 * (the new tenant's quota) changes nothing.
 */
#include "share/util.h"
#include "gms/dlpack.h"

static gms_tenant_stats tenant(gms_runtime *rt, const char *name)
{
    gms_stats st;
    gms_tenant_stats ts = {0};
    gms_stats(rt, &st);
    for (uint64_t i = 0; i < st.tenants; i++) {
        gms_tenant_stats_get(rt, i, &ts);
        if (strcmp(ts.tenant, name) == 0)
            return ts;
    }
    memset(&ts, 0, sizeof ts);
    return ts;
}

enum { NBYTES = 4096 };

static int deleted;

static void deleter(DLManagedTensor *t)
{
    deleted++;
    free(t->dl_tensor.data);
    free(t);
}

/* A tensor of another framework: NBYTES of host memory holding 0x5a. */
static DLManagedTensor *foreign_tensor(void)
{
    static int64_t shape[1] = {NBYTES};
    DLManagedTensor *t = calloc(1, sizeof *t);
    t->dl_tensor.data = malloc(NBYTES);
    memset(t->dl_tensor.data, 0x5a, NBYTES);
    t->dl_tensor.device = (DLDevice){kDLCPU, 0};
    t->dl_tensor.ndim = 1;
    t->dl_tensor.dtype = (DLDataType){kDLUInt, 8, 1};
    t->dl_tensor.shape = shape;
    t->deleter = deleter;
    return t;
}

/* Imports a tensor in `from` and transfers it to `to`, which must copy:
 * afterwards `to` owns a buffer of its own pool, the tensor is untouched
 * by its writes and was handed back. */
static void transfer_copies(gms_runtime *rt, gms_context *from, gms_context *to,
                            const char *to_tenant)
{
    DLManagedTensor *t = foreign_tensor();
    uintptr_t data = (uintptr_t)t->dl_tensor.data; /* freed by the transfer */
    gms_buf in, moved;
    CHECK_OK(gms_dlpack_import_legacy(from, t, &in));
    CHECK_OK(gms_write(from, in, 10, "seller", 6));
    gms_tenant_stats before = tenant(rt, to_tenant);
    int was_deleted = deleted;
    CHECK_OK(gms_transfer(from, in, to, &moved));
    CHECK_RC(gms_read(from, in, 0, (char[1]){0}, 1), GMS_E_INVALID_HANDLE);
    /* The tensor is back with its framework, as after a release. */
    CHECK(deleted == was_deleted + 1);
    char got[6];
    CHECK_OK(gms_read(to, moved, 10, got, 6));
    CHECK(memcmp(got, "seller", 6) == 0);
    gms_buf_info info;
    CHECK_OK(gms_buf_info(to, moved, &info));
    CHECK(strcmp(info.tenant, to_tenant) == 0 && info.size == NBYTES && info.holders == 1);
    void *p = NULL;
    CHECK_OK(gms_buf_ptr(to, moved, &p));
    CHECK(p != NULL && ((uintptr_t)p + NBYTES <= data || (uintptr_t)p >= data + NBYTES));
    gms_tenant_stats after = tenant(rt, to_tenant);
    CHECK(after.live_blocks == before.live_blocks + 1);
    CHECK(after.live_bytes >= before.live_bytes + NBYTES);
    CHECK_OK(gms_fill(to, moved, 0, 0xee, NBYTES));
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(gms_free(to, moved));
    CHECK(tenant(rt, to_tenant).live_blocks == before.live_blocks);
}

static void across_tenants(gms_runtime *rt)
{
    gms_context *from = open_ctx(rt, "seller", "a", GMS_LANG_PYTHON);
    gms_context *to = open_ctx(rt, "buyer", "b", GMS_LANG_PYTHON);
    transfer_copies(rt, from, to, "buyer");

    /* The new owner's quota holds; a refusal leaves the import as it was. */
    DLManagedTensor *t = foreign_tensor();
    gms_buf in, x = 1;
    CHECK_OK(gms_dlpack_import_legacy(from, t, &in));
    CHECK_OK(gms_tenant_set_quota(rt, "buyer", 100, GMS_UNLIMITED));
    int was_deleted = deleted;
    CHECK_RC(gms_transfer(from, in, to, &x), GMS_E_QUOTA);
    CHECK(x == GMS_BUF_NULL && deleted == was_deleted);
    CHECK(tenant(rt, "buyer").live_blocks == 0);
    CHECK_OK(gms_write(from, in, 0, "still", 5));
    CHECK(memcmp(t->dl_tensor.data, "still", 5) == 0);
    CHECK_OK(gms_tenant_set_quota(rt, "buyer", GMS_UNLIMITED, GMS_UNLIMITED));
    CHECK_OK(gms_free(from, in));
    CHECK(deleted == was_deleted + 1);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(from);
    gms_context_close(to);
}

static void to_higher_level(gms_runtime *rt)
{
    gms_context *from = open_ctx(rt, "lab", "a", GMS_LANG_C);
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "lab";
    d.user = "b";
    d.level = GMS_LEVEL_SECRET;
    gms_context *to = NULL;
    CHECK_OK(gms_context_open(&to, rt, &d));
    transfer_copies(rt, from, to, "lab");
    gms_context_close(from);
    gms_context_close(to);
}

/* Within a tenant, to the same level, nothing moves: same memory. */
static void within_tenant(gms_runtime *rt)
{
    gms_context *from = open_ctx(rt, "lab", "a", GMS_LANG_C);
    gms_context *to = open_ctx(rt, "lab", "c", GMS_LANG_RUST);
    DLManagedTensor *t = foreign_tensor();
    gms_buf in, moved;
    CHECK_OK(gms_dlpack_import_legacy(from, t, &in));
    int was_deleted = deleted;
    CHECK_OK(gms_transfer(from, in, to, &moved));
    void *p = NULL;
    CHECK_OK(gms_buf_ptr(to, moved, &p));
    CHECK(p == t->dl_tensor.data && deleted == was_deleted);
    CHECK_OK(gms_free(to, moved));
    CHECK(deleted == was_deleted + 1);
    gms_context_close(from);
    gms_context_close(to);
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    across_tenants(rt);
    to_higher_level(rt);
    within_tenant(rt);
    CHECK_OK(gms_verify(rt, NULL));
    gms_runtime_close(rt);
    return test_done();
}
