/*
 * tenants.c: tenants by uid and gid, as the kernel reports them
 * (SO_PEERCRED), in processes that setuid to test ids (root only: skipped
 * with 77 otherwise). A tenant receives only descriptors of its own
 * memfds and maps nothing of another's; it cannot release another
 * tenant's lease even knowing its id; one tenant's use never touches
 * another's quota; a uid with no tenant is refused; a gid maps too.
 */
#include "util.h"

#include <dirent.h>
#include <grp.h>
#include <sys/mman.h>

#define MIB (1ull << 20)

static broker b;

static void become(uid_t uid, gid_t gid)
{
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        perror("setuid");
        _exit(2);
    }
}

/* No descriptor of this process and no mapping names another tenant's
 * memfd ("gmsd-<other>"); at least one names ours when we hold some. */
static void only_own(const char *own, const char *other, int holding)
{
    char want[80], bad[80];
    snprintf(want, sizeof want, "gmsd-%s", own);
    snprintf(bad, sizeof bad, "gmsd-%s", other);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int mine = 0, foreign = 0;
    while (d && (e = readdir(d))) {
        char path[300], target[300];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        mine += strstr(target, want) != NULL;
        foreign += strstr(target, bad) != NULL;
    }
    if (d)
        closedir(d);
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        mine += strstr(line, want) != NULL;
        foreign += strstr(line, bad) != NULL;
    }
    if (f)
        fclose(f);
    CHECK(foreign == 0);
    CHECK(!holding || mine > 0);
}

/* Tenant t1: memory through libgms with a secret in it, and a raw lease
 * whose id goes to the parent; holds both until hold closes. */
static void tenant_one(int out, int hold)
{
    become(40001, 40001);
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime *rt = NULL;
    gms_context *ctx = NULL;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "t1";
    d.user = "u1";
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    gms_buf buf;
    void *p = NULL;
    CHECK_OK(gms_alloc(ctx, MIB, 0, &buf));
    CHECK_OK(gms_write(ctx, buf, 0, "tenant one's secret", 20));
    CHECK_OK(gms_buf_ptr(ctx, buf, &p));
    int s = raw_connect(b.sock), fd;
    gms_broker_msg m = {.type = GMS_BROKER_LEASE, .a = MIB};
    CHECK(raw_call(s, &m, &fd) == GMS_BROKER_LEASED);
    only_own("t1", "t2", 1);
    uint64_t msg[2] = {(uint64_t)(uintptr_t)p, m.a};
    if (write(out, msg, sizeof msg) != sizeof msg || write(out, &test_failed, sizeof(int)) < 0)
        _exit(1);
    char c;
    if (read(hold, &c, 1) < 0) {}
    CHECK_OK(gms_free(ctx, buf));
    gms_context_close(ctx);
    gms_runtime_close(rt);
    _exit(test_failed ? 1 : 0);
}

/* Tenant t2, knowing t1's address and lease id. */
static void tenant_two(uint64_t addr, uint64_t id)
{
    become(40002, 40002);
    int s = raw_connect(b.sock), fd;
    gms_broker_msg m = {.type = GMS_BROKER_HELLO};
    CHECK(raw_call(s, &m, &fd) == GMS_BROKER_WELCOME && strcmp(m.tenant, "t2") == 0);
    m = (gms_broker_msg){.type = GMS_BROKER_RELEASE, .a = id};
    CHECK(raw_call(s, &m, &fd) == GMS_BROKER_ERROR && m.code == GMS_E_INVALID_HANDLE);
    /* Its whole quota, whatever t1 holds. */
    unsigned n = 0;
    for (;;) {
        m = (gms_broker_msg){.type = GMS_BROKER_LEASE, .a = 2 * MIB};
        if (raw_call(s, &m, &fd) != GMS_BROKER_LEASED)
            break;
        n++;
        /* Fresh memory: zeros, nothing of t1's. */
        uint8_t *v = mmap(NULL, 2 * MIB, PROT_READ, MAP_SHARED, fd, 0);
        CHECK(v != MAP_FAILED && v[0] == 0 && memchr(v, 't', 2 * MIB) == NULL);
        if (v != MAP_FAILED)
            munmap(v, 2 * MIB);
    }
    CHECK(n == 4 && m.code == GMS_E_QUOTA);
    only_own("t2", "t1", 1);
    /* t1's address means nothing here: unmapped, or none of t1's bytes. */
    void *page = (void *)(uintptr_t)(addr & ~4095ull);
    if (msync(page, 4096, MS_ASYNC) == 0)
        CHECK(memcmp((void *)(uintptr_t)addr, "tenant one's secret", 20) != 0);
    else
        CHECK(errno == ENOMEM);
    _exit(test_failed ? 1 : 0);
}

static void stranger(void)
{
    become(40003, 40003);
    int s = raw_connect(b.sock), fd;
    gms_broker_msg m = {.type = GMS_BROKER_LEASE, .a = MIB};
    CHECK(raw_call(s, &m, &fd) == GMS_BROKER_ERROR && m.code == GMS_E_ACCESS_DENIED);
    CHECK(fd < 0);
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime *rt;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_BACKEND);
    CHECK(strstr(gms_error_last(), "no tenant in gmsd's policy") != NULL);
    _exit(test_failed ? 1 : 0);
}

static void by_gid(void)
{
    become(40004, 40010);
    int s = raw_connect(b.sock), fd;
    gms_broker_msg m = {.type = GMS_BROKER_HELLO};
    CHECK(raw_call(s, &m, &fd) == GMS_BROKER_WELCOME && strcmp(m.tenant, "t3") == 0);
    CHECK(m.level == GMS_LEVEL_SECRET && m.languages == 1u << GMS_LANG_PYTHON);
    /* libgms holds the process to them: tenant t3, secret, Python. */
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime *rt = NULL;
    gms_context *ctx = NULL;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "t3";
    d.user = "u";
    d.level = GMS_LEVEL_SECRET;
    d.language = GMS_LANG_PYTHON;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    gms_context_close(ctx);
    d.language = GMS_LANG_RUST;
    CHECK_RC(gms_context_open(&ctx, rt, &d), GMS_E_ACCESS_DENIED);
    CHECK(ctx == NULL && strstr(gms_error_last(), "may not use rust (gmsd's policy allows python)"));
    d.language = GMS_LANG_PYTHON;
    d.level = GMS_LEVEL_CONFIDENTIAL;
    CHECK_RC(gms_context_open(&ctx, rt, &d), GMS_E_ACCESS_DENIED);
    CHECK(strstr(gms_error_last(), "is secret in gmsd's policy") != NULL);
    gms_runtime_close(rt);
    _exit(test_failed ? 1 : 0);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("tenants by uid need root (setuid in the children): skipped\n");
        return TEST_SKIP;
    }
    broker_start(&b, "{\"lease_bytes\": 2097152, \"tenants\": ["
                     "{\"name\": \"t1\", \"uids\": [40001], \"quota_bytes\": 8388608, \"quota_leases\": 4},"
                     "{\"name\": \"t2\", \"uids\": [40002], \"quota_bytes\": 8388608, \"quota_leases\": 4},"
                     "{\"name\": \"t3\", \"gids\": [40010], \"level\": \"secret\", \"languages\": [\"python\"],"
                     " \"quota_bytes\": 8388608, \"quota_leases\": 4}]}");
    int out[2], hold[2];
    if (pipe(out) || pipe(hold))
        return 1;
    pid_t one = fork();
    if (one == 0) {
        close(out[0]);
        close(hold[1]);
        tenant_one(out[1], hold[0]);
    }
    close(out[1]);
    close(hold[0]);
    uint64_t msg[2] = {0, 0};
    int one_failed = 1;
    CHECK(read(out[0], msg, sizeof msg) == sizeof msg);
    CHECK(read(out[0], &one_failed, sizeof one_failed) == sizeof one_failed && !one_failed);
    pid_t two = fork();
    if (two == 0)
        tenant_two(msg[0], msg[1]);
    CHECK(status_of(two) == 0);
    pid_t s = fork();
    if (s == 0)
        stranger();
    CHECK(status_of(s) == 0);
    pid_t g = fork();
    if (g == 0)
        by_gid();
    CHECK(status_of(g) == 0);
    close(hold[1]);
    CHECK(status_of(one) == 0);
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
