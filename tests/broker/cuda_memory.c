/*
 * cuda_memory.c: gmsd serving CUDA device memory (--memory cuda,
 * docs/broker.md "CUDA memory"). A client's chunks are leases of device
 * memory that gmsd made, zeroed and exported as POSIX descriptors; the
 * client imports and maps them and sub-allocates with the ordinary path.
 * Checked: data round trips, the tenant's quota, close and kill -9
 * returning every lease, what a CUDA gmsd refuses (a host backend, shares
 * across processes), and, as root, a second tenant's leases never
 * counted to the first.
 *
 * In CTest it runs over the stand-in libcuda (tests/backend/stand_in,
 * LD_LIBRARY_PATH; GMS_TEST_STAND_IN=1), which has no kernels, so the
 * clients run with safety off; on a GPU machine (tests/gpu/run.sh) the
 * same program runs over the real driver with safety on. Without a
 * libcuda it is skipped (77).
 */
#include "util.h"

#define MIB (1ull << 20)
#define LEASE (4 * MIB)

static broker b;
static int stand_in;

static gms_context *open_client(gms_runtime **rt, gms_backend_kind kind)
{
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = kind;
    o.safety = stand_in ? GMS_SAFETY_OFF : GMS_SAFETY_ON;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "self";
    d.user = "u";
    gms_context *ctx = NULL;
    *rt = NULL;
    CHECK_OK(gms_runtime_open(rt, &o));
    if (*rt)
        CHECK_OK(gms_context_open(&ctx, *rt, &d));
    return ctx;
}

/* In a child: data through leases of device memory, the quota, close. */
static void child_basic(void)
{
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt, GMS_BACKEND_CUDA);
    if (!ctx)
        return;
    CHECK(strcmp(gms_runtime_backend_name(rt), "broker") == 0);
    static uint8_t data[MIB], back[MIB];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    gms_buf bufs[8];
    unsigned n = 0;
    CHECK_OK(gms_alloc(ctx, 3 * MIB, 0, &bufs[n]));
    CHECK_OK(gms_write(ctx, bufs[n], MIB, data, sizeof data));
    CHECK_OK(gms_read(ctx, bufs[n], MIB, back, sizeof back));
    CHECK(memcmp(data, back, sizeof data) == 0);
    /* Fresh memory reads as zeros, whatever the lease held before. */
    CHECK_OK(gms_read(ctx, bufs[n], 0, back, sizeof back));
    CHECK(back[0] == 0 && memcmp(back, back + 1, sizeof back - 1) == 0);
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == LEASE);
    /* Three leases of 4 MiB: the fourth 3 MiB buffer is refused. */
    int rc;
    while (n < 7 && (rc = gms_alloc(ctx, 3 * MIB, 0, &bufs[++n])) == GMS_OK)
        ;
    CHECK(n == 3);
    CHECK_RC(rc, GMS_E_QUOTA);
    CHECK(strstr(gms_error_last(), "gmsd") != NULL);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 3 && bytes == 3 * LEASE);
    /* A share another tenant could acquire is not served on CUDA memory;
     * one within the tenant stays the process's own. */
    gms_share_grant g = {.tenant = "someone", .language = GMS_ANY_LANGUAGE,
                         .mode = GMS_ACCESS_READ};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = &g;
    sd.ngrants = 1;
    gms_share_id id = 0;
    CHECK_RC(gms_share(ctx, bufs[0], &sd, &id), GMS_E_UNSUPPORTED);
    CHECK(strstr(gms_error_last(), "gmsd serves CUDA memory") != NULL);
    g.tenant = NULL;
    CHECK_OK(gms_share(ctx, bufs[0], &sd, &id));
    gms_buf got;
    CHECK_OK(gms_acquire(ctx, id, GMS_ACCESS_READ, &got));
    CHECK_OK(gms_release(ctx, got));
    CHECK_RC(gms_acquire(ctx, 0x1234567890abcdefull, GMS_ACCESS_READ, &got),
             GMS_E_INVALID_HANDLE);
    for (unsigned i = 0; i < n; i++)
        CHECK_OK(gms_free(ctx, bufs[i]));
    gms_context_close(ctx);
    gms_runtime_close(rt);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
}

/* In a child: the host backend asked of a gmsd serving CUDA memory. */
static void child_wrong_backend(void)
{
    gms_runtime *rt = NULL;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.broker = b.sock;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(rt == NULL && strstr(gms_error_last(), "gmsd serves CUDA memory") != NULL);
}

/* In a child: two leases with data in them, then waits to be killed. */
static void child_victim(int ready)
{
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt, GMS_BACKEND_AUTO);
    gms_buf buf;
    for (int i = 0; ctx && i < 2; i++) {
        CHECK_OK(gms_alloc(ctx, 3 * MIB, 0, &buf));
        CHECK_OK(gms_fill(ctx, buf, 0, 0xab, 3 * MIB));
    }
    if (write(ready, test_failed ? "f" : "r", 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

/* In a child of uid 40021 (tenant "other"): one lease of its own. */
static void child_other(void)
{
    become_uid(40021);
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.safety = stand_in ? GMS_SAFETY_OFF : GMS_SAFETY_ON;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "other";
    d.user = "v";
    gms_runtime *rt = NULL;
    gms_context *ctx = NULL;
    gms_buf buf;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    CHECK_OK(gms_alloc(ctx, MIB, 0, &buf));
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == LEASE);
    CHECK_OK(gms_free(ctx, buf));
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

static int run_child(void (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(test_done());
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(void)
{
    stand_in = getenv("GMS_TEST_STAND_IN") != NULL;
    gms_runtime *probe = NULL;
    gms_runtime_options po = GMS_RUNTIME_OPTIONS_INIT;
    po.backend = GMS_BACKEND_CUDA;
    po.safety = GMS_SAFETY_OFF;
    if (gms_runtime_open(&probe, &po) != GMS_OK) {
        printf("no CUDA backend here (%s): skipped\n", gms_error_last());
        return TEST_SKIP;
    }
    gms_runtime_close(probe);
    char policy[512];
    snprintf(policy, sizeof policy,
             "{\"lease_bytes\": %llu, \"tenants\": ["
             "{\"name\": \"self\", \"uids\": [%u], \"quota_bytes\": %llu, \"quota_leases\": 3},"
             "{\"name\": \"other\", \"uids\": [40021], \"quota_bytes\": %llu, \"quota_leases\": 1}]}",
             (unsigned long long)LEASE, (unsigned)getuid(), (unsigned long long)(3 * LEASE),
             (unsigned long long)LEASE);
    broker_start_with(&b, policy, "--memory", "cuda");

    CHECK(run_child(child_basic) == 0);
    CHECK(run_child(child_wrong_backend) == 0);

    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        child_victim(p[1]);
    }
    close(p[1]);
    char c = 0;
    CHECK(read(p[0], &c, 1) == 1 && c == 'r');
    uint64_t bytes = 0, leases = 0;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 2 && bytes == 2 * LEASE);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    double t0 = now_s(), t;
    while ((t = now_s() - t0) < 2 && raw_usage(b.sock, &bytes, &leases) == 0 && leases)
        usleep(200);
    CHECK(leases == 0 && bytes == 0);
    printf("kill -9: 2 leases of device memory back in the quota %.3f ms after the death\n",
           t * 1e3);
    if (geteuid() == 0) {
        CHECK(run_child(child_other) == 0);
        CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0);
    } else {
        printf("a second tenant needs root (setuid): not run\n");
    }
    CHECK(run_child(child_basic) == 0); /* the quota is whole again */
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
