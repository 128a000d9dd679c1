/*
 * rules.c: who may acquire a share and how (docs/sharing.md):
 * access lists by tenant, user and language; read-write on an immutable
 * share; one writer at a time; distinct handles per holder; revoke; the
 * last release from another tenant's context; unguessable share ids.
 */
#include "share/util.h"

static void access_list(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "acme", "core", GMS_LANG_RUST);
    gms_context *elixir = open_ctx(rt, "acme", "control", GMS_LANG_ELIXIR);
    gms_context *python = open_ctx(rt, "acme", "research", GMS_LANG_PYTHON);
    gms_context *other = open_ctx(rt, "globex", "control", GMS_LANG_ELIXIR);
    gms_buf b;
    CHECK_OK(gms_alloc(owner, 4096, 0, &b));
    CHECK_OK(gms_fill(owner, b, 0, 0x5a, 4096));

    /* Elixir of the owner's tenant may read; nobody else is listed. */
    gms_share_id id = 0;
    CHECK_OK(share_one(owner, b, NULL, NULL, GMS_LANG_ELIXIR, GMS_ACCESS_READ, 0, &id));
    CHECK(id != 0 && id != b);
    gms_buf e = 0, x = 0;
    CHECK_RC(gms_acquire(python, id, GMS_ACCESS_READ, &x), GMS_E_ACCESS_DENIED);
    CHECK(x == GMS_BUF_NULL);
    CHECK_RC(gms_acquire(other, id, GMS_ACCESS_READ, &x), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_acquire(elixir, id, GMS_ACCESS_READ_WRITE, &x), GMS_E_ACCESS_DENIED);
    CHECK_OK(gms_acquire(elixir, id, GMS_ACCESS_READ, &e));
    CHECK(e != b && e != id);

    /* The holder reads through its own handle, cannot write, and the
     * owner's handle stays the owner's. */
    unsigned char got[16];
    CHECK_OK(gms_read(elixir, e, 100, got, sizeof got));
    CHECK(got[0] == 0x5a && got[15] == 0x5a);
    CHECK_RC(gms_write(elixir, e, 0, got, 1), GMS_E_READ_ONLY);
    CHECK_RC(gms_fill(elixir, e, 0, 1, 1), GMS_E_READ_ONLY);
    CHECK_RC(gms_read(elixir, b, 0, got, 1), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_read(owner, e, 0, got, 1), GMS_E_ACCESS_DENIED);
    gms_buf_info info;
    CHECK_OK(gms_buf_info(elixir, e, &info));
    CHECK(info.holders == 2 && info.share_id == id && info.access == GMS_ACCESS_READ);
    CHECK(strcmp(info.tenant, "acme") == 0 && strcmp(info.user, "core") == 0);
    CHECK(!info.immutable);

    /* A share id is not a handle, nor a handle a share id. */
    CHECK_RC(gms_read(owner, (gms_buf)id, 0, got, 1), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_acquire(elixir, b, GMS_ACCESS_READ, &x), GMS_E_INVALID_HANDLE);
    /* One share per buffer; only a writer shares. */
    gms_share_id id2;
    CHECK_RC(share_one(owner, b, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id2),
             GMS_E_BUSY);
    CHECK_RC(share_one(elixir, e, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id2),
             GMS_E_READ_ONLY);

    /* Releases: the owner goes first, the holder keeps the data; the
     * holder's double release is caught. */
    CHECK_OK(gms_release(owner, b));
    CHECK_RC(gms_read(owner, b, 0, got, 1), GMS_E_INVALID_HANDLE);
    CHECK_OK(gms_read(elixir, e, 4095, got, 1));
    CHECK(got[0] == 0x5a);
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(gms_release(elixir, e));
    CHECK_RC(gms_release(elixir, e), GMS_E_INVALID_HANDLE);
    /* The share died with its buffer. */
    CHECK_RC(gms_acquire(elixir, id, GMS_ACCESS_READ, &x), GMS_E_INVALID_HANDLE);
    gms_stats st;
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.shares == 0 && st.live_blocks == 0);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(owner);
    gms_context_close(elixir);
    gms_context_close(python);
    gms_context_close(other);
}

static void grants_match(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "t1", "alice", GMS_LANG_C);
    gms_context *bob_zig = open_ctx(rt, "t2", "bob", GMS_LANG_ZIG);
    gms_context *bob_nim = open_ctx(rt, "t2", "bob", GMS_LANG_NIM);
    gms_context *carol = open_ctx(rt, "t3", "carol", GMS_LANG_ZIG);
    gms_buf b, h1, h2, x;
    CHECK_OK(gms_alloc(owner, 1000, 0, &b));
    gms_share_grant g[2] = {{"t2", "bob", GMS_LANG_ZIG, GMS_ACCESS_READ_WRITE},
                            {"*", NULL, GMS_LANG_NIM, GMS_ACCESS_READ}};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = g;
    d.ngrants = 2;
    gms_share_id id;
    CHECK_OK(gms_share(owner, b, &d, &id));
    /* One writer at a time: the owner's own handle writes. */
    CHECK_RC(gms_acquire(bob_zig, id, GMS_ACCESS_READ_WRITE, &x), GMS_E_BUSY);
    CHECK_OK(gms_acquire(bob_nim, id, GMS_ACCESS_READ, &h2));
    CHECK_RC(gms_acquire(bob_nim, id, GMS_ACCESS_READ_WRITE, &x), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_acquire(carol, id, GMS_ACCESS_READ, &x), GMS_E_ACCESS_DENIED);
    CHECK_OK(gms_release(owner, b));
    CHECK_OK(gms_acquire(bob_zig, id, GMS_ACCESS_READ_WRITE, &h1));
    CHECK_OK(gms_write(bob_zig, h1, 0, "zig", 3));
    char got[3];
    CHECK_OK(gms_read(bob_nim, h2, 0, got, 3));
    CHECK(memcmp(got, "zig", 3) == 0);
    CHECK_RC(gms_acquire(bob_zig, id, GMS_ACCESS_READ_WRITE, &x), GMS_E_BUSY);
    /* The same context may hold two handles: each is its own. */
    gms_buf h3;
    CHECK_OK(gms_acquire(bob_nim, id, GMS_ACCESS_READ, &h3));
    CHECK(h3 != h2);
    CHECK_OK(gms_release(bob_nim, h2));
    CHECK_OK(gms_read(bob_nim, h3, 0, got, 3));

    /* Revoke: only the maker; holders keep their handles. */
    CHECK_RC(gms_revoke(bob_zig, id), GMS_E_ACCESS_DENIED);
    CHECK_OK(gms_revoke(owner, id));
    CHECK_RC(gms_acquire(bob_nim, id, GMS_ACCESS_READ, &x), GMS_E_ACCESS_DENIED);
    CHECK_OK(gms_read(bob_nim, h3, 0, got, 3));
    CHECK_OK(gms_release(bob_zig, h1));
    CHECK_OK(gms_release(bob_nim, h3));
    CHECK_RC(gms_revoke(owner, id), GMS_E_INVALID_HANDLE);
    gms_context_close(owner);
    gms_context_close(bob_zig);
    gms_context_close(bob_nim);
    gms_context_close(carol);
}

static void bad_arguments(gms_runtime *rt)
{
    gms_context *c = open_ctx(rt, "t1", "alice", GMS_LANG_C);
    gms_buf b, x;
    gms_share_id id;
    CHECK_OK(gms_alloc(c, 512, 0, &b));
    gms_share_grant g = {NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    CHECK_RC(gms_share(c, b, &d, &id), GMS_E_INVALID_ARG); /* no grants */
    d.grants = &g;
    d.ngrants = GMS_SHARE_GRANTS_MAX + 1;
    CHECK_RC(gms_share(c, b, &d, &id), GMS_E_INVALID_ARG);
    d.ngrants = 1;
    g.mode = 7;
    CHECK_RC(gms_share(c, b, &d, &id), GMS_E_INVALID_ARG);
    g.mode = GMS_ACCESS_READ;
    g.language = 99;
    CHECK_RC(gms_share(c, b, &d, &id), GMS_E_INVALID_ARG);
    g.language = GMS_ANY_LANGUAGE;
    g.tenant = "bad\ttenant";
    CHECK_RC(gms_share(c, b, &d, &id), GMS_E_INVALID_ARG);
    g.tenant = NULL;
    d.immutable = 2;
    CHECK_RC(gms_share(c, b, &d, &id), GMS_E_INVALID_ARG);
    d.immutable = 0;
    d.version = 99;
    CHECK_RC(gms_share(c, b, &d, &id), GMS_E_INVALID_ARG);
    d.version = GMS_SHARE_DESC_VERSION;
    CHECK_RC(gms_share(c, b, NULL, &id), GMS_E_INVALID_ARG);
    CHECK_RC(gms_share(c, b, &d, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_share(NULL, b, &d, &id), GMS_E_INVALID_ARG);
    CHECK_RC(gms_share(c, b ^ 1, &d, &id), GMS_E_INVALID_HANDLE);
    /* Nothing above changed anything: the buffer is still unshared. */
    gms_buf_info info;
    CHECK_OK(gms_buf_info(c, b, &info));
    CHECK(info.share_id == 0 && info.holders == 1);
    CHECK_OK(gms_share(c, b, &d, &id));
    CHECK_RC(gms_acquire(c, id, 0, &x), GMS_E_INVALID_ARG);
    CHECK_RC(gms_acquire(c, id, GMS_ACCESS_READ, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_acquire(NULL, id, GMS_ACCESS_READ, &x), GMS_E_INVALID_ARG);
    CHECK_RC(gms_acquire(c, 0, GMS_ACCESS_READ, &x), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_revoke(NULL, id), GMS_E_INVALID_ARG);
    /* Share ids are keyed like handles: random values and bit flips fail. */
    unsigned accepted = 0;
    uint64_t r = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        accepted += gms_acquire(c, r, GMS_ACCESS_READ, &x) == GMS_OK;
    }
    for (int bit = 0; bit < 64; bit++)
        accepted += gms_acquire(c, id ^ (1ull << bit), GMS_ACCESS_READ, &x) == GMS_OK;
    CHECK(accepted == 0);
    CHECK_OK(gms_free(c, b));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(c);
}

/* The last holder is another tenant's context: the memory goes back to the
 * owner's tenant's quota and pool, wiped by the safety pipeline. */
static void last_release_elsewhere(gms_runtime *rt)
{
    CHECK_OK(gms_tenant_set_quota(rt, "owner-t", 1 << 20, GMS_UNLIMITED));
    gms_context *owner = open_ctx(rt, "owner-t", "a", GMS_LANG_C);
    gms_context *guest = open_ctx(rt, "guest-t", "b", GMS_LANG_JULIA);
    gms_buf b, g;
    CHECK_OK(gms_alloc(owner, 600 * 1024, 0, &b));
    gms_share_id id;
    CHECK_OK(share_one(owner, b, "guest-t", NULL, GMS_LANG_JULIA, GMS_ACCESS_READ, 0, &id));
    CHECK_OK(gms_acquire(guest, id, GMS_ACCESS_READ, &g));
    CHECK_OK(gms_release(owner, b));
    /* Still the owner tenant's: its quota has no room for another. */
    gms_buf x;
    CHECK_RC(gms_alloc(owner, 600 * 1024, 0, &x), GMS_E_QUOTA);
    gms_tenant_stats ts;
    CHECK_OK(gms_tenant_stats_get(rt, 0, &ts));
    uint64_t t0 = 0;
    gms_stats st;
    CHECK_OK(gms_stats(rt, &st));
    for (uint64_t i = 0; i < st.tenants; i++) {
        CHECK_OK(gms_tenant_stats_get(rt, i, &ts));
        if (strcmp(ts.tenant, "owner-t") == 0)
            t0 = i;
    }
    CHECK_OK(gms_tenant_stats_get(rt, t0, &ts));
    CHECK(ts.live_blocks == 1);
    CHECK_OK(gms_release(guest, g));
    CHECK_OK(gms_tenant_stats_get(rt, t0, &ts));
    CHECK(ts.live_blocks == 0 && ts.live_bytes == 0);
    CHECK_OK(gms_alloc(owner, 600 * 1024, 0, &x));
    CHECK_OK(gms_free(owner, x));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(owner);
    gms_context_close(guest);
}

/* A context closing with handles it acquired releases them (a leak,
 * reported); the buffer lives on for the other holders. */
static void close_with_holds(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "t1", "a", GMS_LANG_C);
    gms_context *guest = open_ctx(rt, "t1", "b", GMS_LANG_PYTHON);
    gms_buf b, g1, g2;
    CHECK_OK(gms_alloc(owner, 300, 0, &b));
    gms_share_id id;
    CHECK_OK(share_one(owner, b, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id));
    CHECK_OK(gms_acquire(guest, id, GMS_ACCESS_READ, &g1));
    CHECK_OK(gms_acquire(guest, id, GMS_ACCESS_READ, &g2));
    gms_stats before, after;
    CHECK_OK(gms_stats(rt, &before));
    gms_context_close(guest);
    CHECK_OK(gms_stats(rt, &after));
    CHECK(after.leaked_blocks == before.leaked_blocks + 2);
    gms_buf_info info;
    CHECK_OK(gms_buf_info(owner, b, &info));
    CHECK(info.holders == 1);
    CHECK_OK(gms_verify(rt, NULL));
    /* The owner closes holding it: reclaimed. */
    gms_context_close(owner);
    CHECK_OK(gms_stats(rt, &after));
    CHECK(after.live_blocks == 0 && after.shares == 0);
    CHECK_OK(gms_verify(rt, NULL));
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    access_list(rt);
    grants_match(rt);
    bad_arguments(rt);
    last_release_elsewhere(rt);
    close_with_holds(rt);
    gms_runtime_close(rt);
    return test_done();
}
