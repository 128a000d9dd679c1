/*
 * client.c: libgms as a broker client (GMS_BROKER): buffers live in leases
 * gmsd made for the process's tenant, the broker's quota is the tenant's,
 * closing returns every lease, and a client killed with SIGKILL has its
 * leases wiped and returned to the quota within a bounded time (2 s here;
 * gmsd acts in the poll turn that sees the hang-up, and the time is
 * printed). Clients are forked processes.
 */
#include "util.h"

#define MIB (1ull << 20)

static broker b;

static gms_context *open_client(gms_runtime **rt)
{
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "self"; /* gmsd's name for this uid */
    d.user = "u";
    gms_context *ctx = NULL;
    CHECK_OK(gms_runtime_open(rt, &o));
    if (*rt)
        CHECK_OK(gms_context_open(&ctx, *rt, &d));
    return ctx;
}

/* In a child: allocation, data, the quota, and close returning it all. */
static void child_basic(void)
{
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt);
    if (!ctx)
        return;
    CHECK(strcmp(gms_runtime_backend_name(rt), "broker") == 0);
    /* Contexts are of gmsd's tenant for this uid, at its level (internal)
     * or above, in its languages (all): anything else is refused. */
    gms_context_desc other = GMS_CONTEXT_DESC_INIT, *o = &other;
    gms_context *no = NULL;
    o->tenant = "someone-else";
    o->user = "u";
    CHECK_RC(gms_context_open(&no, rt, o), GMS_E_ACCESS_DENIED);
    CHECK(no == NULL && strstr(gms_error_last(), "gmsd serves this process as tenant 'self'"));
    o->tenant = "self";
    o->level = GMS_LEVEL_PUBLIC;
    CHECK_RC(gms_context_open(&no, rt, o), GMS_E_ACCESS_DENIED);
    CHECK(strstr(gms_error_last(), "a context of level public is below it") != NULL);
    o->level = GMS_LEVEL_SECRET;
    o->language = GMS_LANG_ZIG;
    CHECK_OK(gms_context_open(&no, rt, o));
    gms_context_close(no);
    gms_buf bufs[8];
    unsigned n = 0;
    uint8_t data[4096], back[4096];
    memset(data, 0x5c, sizeof data);
    CHECK_OK(gms_alloc(ctx, 1536 * 1024, 0, &bufs[n]));
    CHECK_OK(gms_write(ctx, bufs[n], 4096, data, sizeof data));
    CHECK_OK(gms_read(ctx, bufs[n], 4096, back, sizeof back));
    CHECK(memcmp(data, back, sizeof data) == 0);
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == 2 * MIB);
    /* The policy grants 4 leases of 2 MiB: the fifth 1.5 MiB buffer is refused. */
    int rc;
    while (n < 8 && (rc = gms_alloc(ctx, 1536 * 1024, 0, &bufs[++n])) == GMS_OK)
        ;
    CHECK(n == 4);
    CHECK_RC(rc, GMS_E_QUOTA);
    CHECK(strstr(gms_error_last(), "gmsd") != NULL);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 4 && bytes == 8 * MIB);
    CHECK_OK(gms_free(ctx, bufs[--n]));
    CHECK_RC(gms_alloc(ctx, 13 * MIB, 0, &bufs[n]), GMS_E_QUOTA); /* more than the quota */
    for (unsigned i = 0; i < n; i++)
        CHECK_OK(gms_free(ctx, bufs[i]));
    gms_context_close(ctx);
    gms_runtime_close(rt);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
}

/* In a child: takes three leases, says so, and waits to be killed. */
static void child_victim(int ready)
{
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt);
    gms_buf buf;
    for (int i = 0; ctx && i < 3; i++) {
        CHECK_OK(gms_alloc(ctx, 1536 * 1024, 0, &buf));
        CHECK_OK(gms_fill(ctx, buf, 0, 0xab, 1536 * 1024));
    }
    if (write(ready, test_failed ? "f" : "r", 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

static void wrong_setups(void)
{
    gms_runtime *rt;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    setenv("GMS_BROKER", "/nonexistent/gmsd.sock", 1);
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_BACKEND);
    CHECK(strstr(gms_error_last(), "cannot connect to gmsd") != NULL);
    CHECK(rt == NULL);
    setenv("GMS_BROKER", b.sock, 1);
    o.backend = GMS_BACKEND_CUDA;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "gmsd serves host memory") != NULL);
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 4 * MIB; /* the lease, 2 MiB, is no multiple of it */
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "not a multiple of granule_bytes") != NULL);
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0);
    unsetenv("GMS_BROKER");
}

int main(void)
{
    broker_start_one(&b, 12 * MIB, 4, "");

    CHECK(run_child(child_basic) == 0);
    wrong_setups();

    /* kill -9 with three leases held. */
    double ms = 0;
    CHECK(killed_returns(b.sock, child_victim, 6 * MIB, 3, &ms));
    printf("kill -9: 3 leases (6 MiB) back in the tenant's quota %.3f ms after the child's death\n",
           ms);
    /* The quota is whole again: a new client gets all four leases. */
    CHECK(run_child(child_basic) == 0);
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
