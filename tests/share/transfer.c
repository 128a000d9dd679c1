/*
 * transfer.c: gms_transfer moves exclusive ownership. The old handle is
 * dead at once; within a tenant the buffer stays where it is (same
 * address, same data), to another tenant it is copied into the new
 * owner's pool and quota; a buffer with other holders, a share, or a
 * read-only handle cannot be transferred, and a refusal changes nothing.
 */
#include "share/util.h"

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

static void within_tenant(gms_runtime *rt)
{
    gms_context *rust = open_ctx(rt, "acme", "core", GMS_LANG_RUST);
    gms_context *rust2 = open_ctx(rt, "acme", "other", GMS_LANG_RUST);
    gms_context *elixir = open_ctx(rt, "acme", "control", GMS_LANG_ELIXIR);
    gms_buf b, t1, t2, t3;
    CHECK_OK(gms_alloc(rust, 5000, 0, &b));
    CHECK_OK(gms_write(rust, b, 0, "tensor", 6));
    void *p0, *p1;
    CHECK_OK(gms_buf_ptr(rust, b, &p0));

    /* Another language's context: a zero-copy move. */
    CHECK_OK(gms_transfer(rust, b, elixir, &t1));
    CHECK(t1 != b);
    char got[6];
    CHECK_RC(gms_read(rust, b, 0, got, 6), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_free(rust, b), GMS_E_INVALID_HANDLE);
    CHECK_OK(gms_read(elixir, t1, 0, got, 6));
    CHECK(memcmp(got, "tensor", 6) == 0);
    CHECK_OK(gms_buf_ptr(elixir, t1, &p1));
    CHECK(p0 == p1);
    CHECK_OK(gms_write(elixir, t1, 0, "T", 1));
    CHECK_OK(gms_verify(rt, NULL));

    /* Back into the original pool, to another context of it. */
    CHECK_OK(gms_transfer(elixir, t1, rust2, &t2));
    CHECK_RC(gms_read(elixir, t1, 0, got, 1), GMS_E_INVALID_HANDLE);
    CHECK_OK(gms_read(rust2, t2, 0, got, 6));
    CHECK(memcmp(got, "Tensor", 6) == 0);
    CHECK_OK(gms_verify(rt, NULL));
    /* rust2 owns it as its own allocation: closing rust2 would reclaim
     * it; transferring on to rust works the same way. */
    CHECK_OK(gms_transfer(rust2, t2, rust, &t3));
    CHECK_OK(gms_free(rust, t3));
    CHECK_OK(gms_verify(rt, NULL));

    /* To a higher level of the same tenant: copied into its pool. */
    gms_context_desc cd = GMS_CONTEXT_DESC_INIT;
    cd.tenant = "acme";
    cd.user = "vault";
    cd.level = GMS_LEVEL_SECRET;
    gms_context *secret;
    CHECK_OK(gms_context_open(&secret, rt, &cd));
    CHECK_OK(gms_alloc(rust, 5000, 0, &b));
    CHECK_OK(gms_buf_ptr(rust, b, &p0));
    CHECK_OK(gms_write(rust, b, 4000, "lvl", 3));
    CHECK_OK(gms_transfer(rust, b, secret, &t1));
    CHECK_OK(gms_buf_ptr(secret, t1, &p1));
    CHECK(p0 != p1);
    CHECK_OK(gms_read(secret, t1, 4000, got, 3));
    CHECK(memcmp(got, "lvl", 3) == 0);
    gms_buf_info li;
    CHECK_OK(gms_buf_info(secret, t1, &li));
    CHECK(li.level == GMS_LEVEL_SECRET);
    CHECK_OK(gms_free(secret, t1));
    gms_context_close(secret);

    /* Refusals change nothing. */
    CHECK_OK(gms_alloc(rust, 100, 0, &b));
    gms_share_id id;
    gms_buf h, x = 0;
    CHECK_RC(gms_transfer(rust, b, rust, &x), GMS_E_INVALID_ARG);
    CHECK_RC(gms_transfer(rust, b, NULL, &x), GMS_E_INVALID_ARG);
    CHECK_RC(gms_transfer(rust, b, elixir, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_transfer(elixir, b, rust, &x), GMS_E_ACCESS_DENIED);
    CHECK_OK(share_one(rust, b, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id));
    CHECK_RC(gms_transfer(rust, b, elixir, &x), GMS_E_BUSY);
    CHECK_OK(gms_acquire(elixir, id, GMS_ACCESS_READ, &h));
    CHECK_RC(gms_transfer(elixir, h, rust2, &x), GMS_E_READ_ONLY);
    CHECK(x == GMS_BUF_NULL);
    CHECK_OK(gms_read(rust, b, 0, got, 1));
    CHECK_OK(gms_read(elixir, h, 0, got, 1));
    CHECK_OK(gms_release(rust, b));
    CHECK_OK(gms_release(elixir, h));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(rust);
    gms_context_close(rust2);
    gms_context_close(elixir);
}

static void across_tenants(gms_runtime *rt)
{
    gms_context *from = open_ctx(rt, "seller", "a", GMS_LANG_C);
    gms_context *to = open_ctx(rt, "buyer", "b", GMS_LANG_PYTHON);
    gms_buf b, t, x;
    CHECK_OK(gms_alloc(from, 70000, 0, &b));
    CHECK_OK(gms_fill(from, b, 0, 0x77, 70000));
    CHECK_OK(gms_write(from, b, 69990, "end", 3));
    void *p0, *p1;
    CHECK_OK(gms_buf_ptr(from, b, &p0));
    CHECK(tenant(rt, "seller").live_blocks == 1);

    /* The buyer's quota applies, and a refusal leaves the seller whole. */
    CHECK_OK(gms_tenant_set_quota(rt, "buyer", 1000, GMS_UNLIMITED));
    CHECK_RC(gms_transfer(from, b, to, &x), GMS_E_QUOTA);
    char got[3];
    CHECK_OK(gms_read(from, b, 69990, got, 3));
    CHECK_OK(gms_tenant_set_quota(rt, "buyer", GMS_UNLIMITED, GMS_UNLIMITED));

    CHECK_OK(gms_transfer(from, b, to, &t));
    CHECK_RC(gms_read(from, b, 0, got, 1), GMS_E_INVALID_HANDLE);
    CHECK_OK(gms_read(to, t, 69990, got, 3));
    CHECK(memcmp(got, "end", 3) == 0);
    CHECK_OK(gms_read(to, t, 0, got, 1));
    CHECK(got[0] == 0x77);
    CHECK_OK(gms_buf_ptr(to, t, &p1));
    CHECK(p1 != p0); /* tenants never share a page: it moved */
    gms_buf_info info;
    CHECK_OK(gms_buf_info(to, t, &info));
    CHECK(strcmp(info.tenant, "buyer") == 0 && info.holders == 1);
    CHECK(tenant(rt, "seller").live_blocks == 0);
    CHECK(tenant(rt, "buyer").live_blocks == 1);
    CHECK_OK(gms_free(to, t));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(from);
    gms_context_close(to);
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    within_tenant(rt);
    across_tenants(rt);
    gms_runtime_close(rt);
    return test_done();
}
