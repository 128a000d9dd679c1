/*
 * shares.c: sharing across tenants through gmsd (docs/broker.md, "Sharing
 * across tenants"), with processes of different uids as different tenants
 * (root only: skipped with 77 otherwise). Tenant t1's owner process shares
 * a mutable and an immutable buffer with tenant t2; t2's processes read
 * them through the public API (gms_acquire by share id), see the writer's
 * changes, cannot write the immutable one (a raw write faults, the owner's
 * bytes stay), cannot get a second writer, and hold no descriptor or
 * mapping of t1's other memory. t3 has no grant. Forged and stale ids,
 * revoke, the last release (freeing exactly once), and kill -9 of an
 * acquirer and of the owner are checked against gmsd's accounting.
 */
#include "util.h"

#include <dirent.h>
#include <grp.h>
#include <sys/mman.h>

#define KIB 1024ull
#define T1 40101
#define T2 40102
#define T3 40103

static broker b;
static int to_owner[2], from_owner[2];

/* ---- the owner, tenant t1: commands on a pipe ---- */

static void owner(void)
{
    become_uid(T1);
    gms_runtime *rt;
    gms_context *ctx;
    broker_open_as(b.sock, "t1", &rt, &ctx, NULL);
    gms_buf secret, data, frozen, extra = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(ctx, 100, 0, &secret)); /* shares its page */
    CHECK_OK(gms_write(ctx, secret, 0, "t1's other secret", 18));
    CHECK_OK(gms_alloc(ctx, 64 * KIB, GMS_ALLOC_PAGES, &data));
    CHECK_OK(gms_write(ctx, data, 0, "version 1", 10));
    CHECK_OK(gms_alloc(ctx, 8 * KIB, GMS_ALLOC_PAGES, &frozen));
    CHECK_OK(gms_write(ctx, frozen, 0, "frozen bytes", 13));
    gms_share_grant rw[] = {{"t2", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ_WRITE}};
    gms_share_grant ro[] = {{"t2", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ}};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = rw;
    sd.ngrants = 1;
    gms_share_id ids[3] = {0, 0, 0};
    /* A buffer sharing its pages cannot go to another tenant through gmsd. */
    CHECK_RC(gms_share(ctx, secret, &sd, &ids[0]), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "GMS_ALLOC_PAGES") != NULL);
    CHECK_OK(gms_share(ctx, data, &sd, &ids[0]));
    gms_buf_info info;
    CHECK_OK(gms_buf_info_get(ctx, data, &info));
    CHECK(info.share_id == ids[0]);
    /* The owner's buffer is the share's memory now, with its bytes. */
    char got[16] = "";
    CHECK_OK(gms_read(ctx, data, 0, got, 10));
    CHECK(strcmp(got, "version 1") == 0);
    sd.grants = ro;
    sd.immutable = 1;
    CHECK_OK(gms_share(ctx, frozen, &sd, &ids[1]));
    CHECK_RC(gms_write(ctx, frozen, 0, "x", 1), GMS_E_READ_ONLY);
    put_bytes(from_owner[1], ids, 2 * sizeof ids[0]);
    for (;;) {
        char c = 'q', ok;
        if (read(to_owner[0], &c, 1) != 1 || c == 'q')
            break;
        int before = test_failed;
        switch (c) {
        case 'v': /* the writer changes the mutable share */
            CHECK_OK(gms_write(ctx, data, 0, "version 2", 10));
            break;
        case 'c': /* the immutable share's bytes are the owner's still */
            CHECK_OK(gms_read(ctx, frozen, 0, got, 13));
            CHECK(strcmp(got, "frozen bytes") == 0);
            break;
        case 'f': /* the owner lets go of the mutable share */
            CHECK_OK(gms_release(ctx, data));
            break;
        case 'r':
            CHECK_OK(gms_revoke(ctx, ids[1]));
            break;
        case 's': /* one more share, for the kills */
            sd.immutable = 0;
            CHECK_OK(gms_alloc(ctx, 16 * KIB, GMS_ALLOC_PAGES, &extra));
            CHECK_OK(gms_write(ctx, extra, 0, "extra", 6));
            CHECK_OK(gms_share(ctx, extra, &sd, &ids[2]));
            break;
        case 'g':
            CHECK_OK(gms_release(ctx, extra));
            break;
        }
        ok = test_failed == before ? 'k' : 'x';
        put_bytes(from_owner[1], &ok, 1);
        if (c == 's') /* then the new share's id */
            put_bytes(from_owner[1], &ids[2], sizeof ids[2]);
    }
    gms_context_close(ctx);
    gms_runtime_close(rt);
    _exit(test_failed ? 1 : 0);
}

static int owner_do(char c)
{
    char r = 0;
    put_bytes(to_owner[1], &c, 1);
    get_bytes(from_owner[0], &r, 1);
    return r == 'k';
}

/* ---- helpers of the acquirers ---- */

/* The process holds no descriptor of any memfd of gmsd's (the share's was
 * closed once mapped) and maps nothing of t1's leases ("gmsd-t1"); it
 * maps exactly `shares` of t1's shares ("gmsd-share:t1"). */
static void nothing_else_of_t1(int shares)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int fds = 0, leases = 0, mapped = 0;
    while (d && (e = readdir(d))) {
        char path[300], target[300];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        fds += strstr(target, "gmsd-") != NULL;
    }
    if (d)
        closedir(d);
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        leases += strstr(line, "gmsd-t1") != NULL;
        mapped += strstr(line, "gmsd-share:t1") != NULL;
    }
    if (f)
        fclose(f);
    CHECK(fds == 0);
    CHECK(leases == 0);
    CHECK(mapped == shares);
}

/* Runs fn in a child with a signal's default action; 1 if it died of sig. */
static int dies_of(int sig, void (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(sig, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == sig;
}

static void poke(void *p)
{
    *(volatile char *)p = 'X';
}

/* ---- the acquirers ---- */

static gms_share_id ids[3];

/* Tenant t3: no grant names it. */
static void stranger(void)
{
    become_uid(T3);
    gms_runtime *rt;
    gms_context *ctx;
    broker_open_as(b.sock, "t3", &rt, &ctx, NULL);
    gms_buf h;
    CHECK_RC(gms_acquire(ctx, ids[0], GMS_ACCESS_READ, &h), GMS_E_ACCESS_DENIED);
    CHECK(h == GMS_BUF_NULL && strstr(gms_error_last(), "not on the access list") != NULL);
    CHECK_RC(gms_acquire(ctx, ids[1], GMS_ACCESS_READ, &h), GMS_E_ACCESS_DENIED);
    nothing_else_of_t1(0);
    gms_runtime_close(rt);
    _exit(test_failed ? 1 : 0);
}

/* Tenant t2's reader: steps on a pipe. */
static void reader(int in, int out)
{
    become_uid(T2);
    gms_runtime *rt;
    gms_context *ctx;
    broker_open_as(b.sock, "t2", &rt, &ctx, NULL);
    char got[16] = "", step = 0, ok;
    gms_buf data, frozen, h;
    /* Forged and altered ids change nothing and get nothing. */
    CHECK_RC(gms_acquire(ctx, 0x1234567890abcdefull, GMS_ACCESS_READ, &h), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_acquire(ctx, ids[0] ^ 1, GMS_ACCESS_READ, &h), GMS_E_INVALID_HANDLE);
    CHECK_OK(gms_acquire(ctx, ids[0], GMS_ACCESS_READ, &data));
    CHECK_OK(gms_read(ctx, data, 0, got, 10));
    CHECK(strcmp(got, "version 1") == 0);
    CHECK_RC(gms_write(ctx, data, 0, "x", 1), GMS_E_READ_ONLY);
    /* The owner holds the mutable share as its writer: no second one. */
    CHECK_RC(gms_acquire(ctx, ids[0], GMS_ACCESS_READ_WRITE, &h), GMS_E_BUSY);
    CHECK_RC(gms_acquire(ctx, ids[1], GMS_ACCESS_READ_WRITE, &h), GMS_E_READ_ONLY);
    CHECK_RC(gms_revoke(ctx, ids[0]), GMS_E_ACCESS_DENIED); /* the owner's alone */
    CHECK_OK(gms_acquire(ctx, ids[1], GMS_ACCESS_READ, &frozen));
    void *p = NULL, *q = NULL;
    CHECK_OK(gms_buf_ptr(ctx, data, &p));
    CHECK_OK(gms_buf_ptr(ctx, frozen, &q));
    CHECK(p && memcmp(p, "version 1", 10) == 0);
    CHECK(q && memcmp(q, "frozen bytes", 13) == 0);
    /* A reader's mapping cannot be written, nor made writable. */
    if (p && q) {
        CHECK(dies_of(SIGSEGV, poke, p));
        CHECK(dies_of(SIGSEGV, poke, q));
        void *page = (void *)((uintptr_t)q & ~4095ul);
        CHECK(mprotect(page, 4096, PROT_READ | PROT_WRITE) != 0 && errno == EACCES);
        page = (void *)((uintptr_t)p & ~4095ul);
        CHECK(mprotect(page, 4096, PROT_READ | PROT_WRITE) != 0 && errno == EACCES);
        CHECK(memcmp(q, "frozen bytes", 13) == 0);
    }
    nothing_else_of_t1(2);
    ok = test_failed ? 'x' : 'k';
    put_bytes(out, &ok, 1);
    /* Step 2: the owner wrote "version 2": the same memory. */
    get_bytes(in, &step, 1);
    CHECK_OK(gms_read(ctx, data, 0, got, 10));
    CHECK(strcmp(got, "version 2") == 0);
    ok = test_failed ? 'x' : 'k';
    put_bytes(out, &ok, 1);
    /* Step 3: another t2 process wrote "version 3"; the immutable share
     * was revoked, and holders keep theirs. */
    get_bytes(in, &step, 1);
    CHECK_OK(gms_read(ctx, data, 0, got, 10));
    CHECK(strcmp(got, "version 3") == 0);
    CHECK_RC(gms_acquire(ctx, ids[1], GMS_ACCESS_READ, &h), GMS_E_ACCESS_DENIED);
    CHECK(strstr(gms_error_last(), "revoked") != NULL);
    CHECK_OK(gms_read(ctx, frozen, 0, got, 13));
    CHECK(strcmp(got, "frozen bytes") == 0);
    CHECK_OK(gms_release(ctx, data)); /* the last hold: gmsd frees it */
    CHECK_RC(gms_release(ctx, data), GMS_E_INVALID_HANDLE);
    CHECK_OK(gms_release(ctx, frozen));
    nothing_else_of_t1(0);
    /* The freed share's id is stale now. */
    CHECK_RC(gms_acquire(ctx, ids[0], GMS_ACCESS_READ, &h), GMS_E_INVALID_HANDLE);
    ok = test_failed ? 'x' : 'k';
    put_bytes(out, &ok, 1);
    gms_runtime_close(rt);
    _exit(test_failed ? 1 : 0);
}

/* Tenant t2's writer, once the owner let go: one writer at a time. */
static void writer(void)
{
    become_uid(T2);
    gms_runtime *rt;
    gms_context *ctx;
    broker_open_as(b.sock, "t2", &rt, &ctx, NULL);
    gms_buf w, h;
    CHECK_OK(gms_acquire(ctx, ids[0], GMS_ACCESS_READ_WRITE, &w));
    CHECK_RC(gms_acquire(ctx, ids[0], GMS_ACCESS_READ_WRITE, &h), GMS_E_BUSY);
    CHECK_OK(gms_write(ctx, w, 0, "version 3", 10));
    CHECK_OK(gms_release(ctx, w));
    gms_runtime_close(rt);
    _exit(test_failed ? 1 : 0);
}

/* Tenant t2, holding share id until killed; says 'k' once it holds it. */
static void holder(int out, gms_share_id id)
{
    become_uid(T2);
    gms_runtime *rt;
    gms_context *ctx;
    broker_open_as(b.sock, "t2", &rt, &ctx, NULL);
    gms_buf h;
    char got[8] = "";
    CHECK_OK(gms_acquire(ctx, id, GMS_ACCESS_READ, &h));
    CHECK_OK(gms_read(ctx, h, 0, got, 6));
    CHECK(strcmp(got, "extra") == 0);
    char ok = test_failed ? 'x' : 'k';
    put_bytes(out, &ok, 1);
    for (;;)
        pause();
}

static pid_t start_holder(gms_share_id id)
{
    int p[2];
    if (pipe(p))
        exit(1);
    pid_t pid = fork();
    if (pid == 0)
        holder(p[1], id);
    char ok = 0;
    if (read(p[0], &ok, 1) != 1) {}
    close(p[0]);
    close(p[1]);
    CHECK(ok == 'k');
    return pid;
}

int main(void)
{
    if (geteuid() != 0) {
        printf("tenants by uid need root (setuid in the children): skipped\n");
        return TEST_SKIP;
    }
    broker_start(&b, "{\"lease_bytes\": 2097152, \"tenants\": ["
                     "{\"name\": \"t1\", \"uids\": [40101], \"quota_bytes\": 67108864, \"quota_leases\": 16},"
                     "{\"name\": \"t2\", \"uids\": [40102], \"quota_bytes\": 67108864, \"quota_leases\": 16},"
                     "{\"name\": \"t3\", \"uids\": [40103], \"quota_bytes\": 67108864, \"quota_leases\": 16}]}");
    if (pipe(to_owner) || pipe(from_owner))
        return 1;
    pid_t own = fork();
    if (own == 0)
        owner();
    CHECK(read(from_owner[0], ids, 2 * sizeof ids[0]) == 2 * sizeof ids[0]);
    CHECK(ids[0] && ids[1] && ids[0] != ids[1]);
    uint64_t leases_bytes, leases;
    broker_usage_as(b.sock, T1, &leases_bytes, &leases);
    /* The owner's leases, and its two shares: 64 KiB and 8 KiB. */
    leases_bytes -= 72 * KIB;
    leases -= 2;
    CHECK(leases_bytes % (2u << 20) == 0 && leases == leases_bytes / (2u << 20));

    pid_t s = fork();
    if (s == 0)
        stranger();
    CHECK(status_of(s) == 0);

    int rin[2], rout[2];
    if (pipe(rin) || pipe(rout))
        return 1;
    pid_t r = fork();
    if (r == 0)
        reader(rin[0], rout[1]);
    char ok = 0, go = 'g';
    CHECK(read(rout[0], &ok, 1) == 1 && ok == 'k');
    CHECK(owner_do('v'));
    put_bytes(rin[1], &go, 1);
    CHECK(read(rout[0], &ok, 1) == 1 && ok == 'k');
    CHECK(owner_do('c')); /* the reader's faulting writes changed nothing */
    CHECK(owner_do('f')); /* the owner's release: the reader keeps it */
    CHECK(owner_do('r'));
    CHECK(broker_use_becomes(b.sock, T1, leases_bytes + 72 * KIB, leases + 2));
    pid_t w = fork();
    if (w == 0)
        writer();
    CHECK(status_of(w) == 0);
    put_bytes(rin[1], &go, 1);
    CHECK(read(rout[0], &ok, 1) == 1 && ok == 'k');
    CHECK(status_of(r) == 0);
    /* The mutable share's last release freed it, once: its 64 KiB went
     * back to t1's quota; the immutable one is the owner's still. */
    CHECK(broker_use_becomes(b.sock, T1, leases_bytes + 8 * KIB, leases + 1));

    /* kill -9 of an acquirer releases its hold: the share the owner let go
     * of is freed then. */
    uint64_t now_bytes, now_leases;
    broker_usage_as(b.sock, T1, &now_bytes, &now_leases);
    CHECK(owner_do('s'));
    CHECK(read(from_owner[0], &ids[2], sizeof ids[2]) == sizeof ids[2]);
    pid_t k = start_holder(ids[2]);
    CHECK(owner_do('g'));
    CHECK(broker_use_becomes(b.sock, T1, now_bytes + 16 * KIB, now_leases + 1));
    kill(k, SIGKILL);
    waitpid(k, NULL, 0);
    CHECK(broker_use_becomes(b.sock, T1, now_bytes, now_leases));

    /* kill -9 of the owner: its leases go, its shares are revoked, and one
     * still held stays, charged to t1, until its last release. */
    CHECK(owner_do('s'));
    CHECK(read(from_owner[0], &ids[2], sizeof ids[2]) == sizeof ids[2]);
    k = start_holder(ids[2]);
    kill(own, SIGKILL);
    waitpid(own, NULL, 0);
    CHECK(broker_use_becomes(b.sock, T1, 16 * KIB, 1));
    pid_t late = fork();
    if (late == 0) {
        become_uid(T2);
        gms_runtime *rt;
        gms_context *ctx;
        broker_open_as(b.sock, "t2", &rt, &ctx, NULL);
        gms_buf h;
        CHECK_RC(gms_acquire(ctx, ids[2], GMS_ACCESS_READ, &h), GMS_E_ACCESS_DENIED);
        CHECK(strstr(gms_error_last(), "owner's connection ended") != NULL);
        _exit(test_failed ? 1 : 0);
    }
    CHECK(status_of(late) == 0);
    kill(k, SIGKILL);
    waitpid(k, NULL, 0);
    CHECK(broker_use_becomes(b.sock, T1, 0, 0));
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
