/*
 * restart.c: a gmsd restart under live clients (docs/broker.md,
 * "Restarts"), with processes of different uids as different tenants
 * (root only: skipped with 77 otherwise).
 *
 * gmsd is killed with SIGKILL while tenant t1's processes hold leases and
 * a share that t2's process holds. The next gmsd, reading the state file,
 * charges t1 exactly as before, so t1's quota holds (a lease past it is
 * refused); the clients' memory stays readable throughout; a client's
 * next request reconnects, resumes its session and succeeds, and its
 * re-adopted leases are released through the new connection; a process
 * that ends without coming back has its memory returned. A SIGTERM stop
 * leaves the clients' memory as it is (not wiped). A gmsd that lost the
 * state leaves the clients detached: memory readable, every request
 * refused with a message saying why. A client whose gmsd does not come
 * back gets a clear error, and resumes once it does. A share's owner
 * hands its memfd back when it resumes, and the share can be acquired
 * again; gmsd takes back only that very file, and a share revoked before
 * the restart stays revoked.
 */
#include "util.h"

#include <grp.h>
#include <sys/mman.h>

#define KIB 1024ull
#define MIB (1024 * KIB)
#define T1 40401
#define T2 40402
#define BIG (1536 * KIB) /* one buffer, one lease of 2 MiB */
#define SHARED MIB        /* with BIG, more than one lease holds */

static broker b;
static char metrics_sock[100];

/* What a worker answers: the call's result and the library's message. */
typedef struct answer {
    int rc;
    char msg[512];
} answer;

/* A client process of tenant `tenant` (uid), driven by one-letter
 * commands on a pipe:
 *   i  allocate `keep` (one lease) and fill it with a pattern
 *   s  share a 1 MiB buffer with t2, read-only (its id follows)
 *   a  acquire the share id that follows (t2), and check its bytes
 *   r  check the pattern (keep, or the acquired share), no gmsd involved
 *   n  allocate a new buffer (a new lease), then free it
 *   q  close the runtime (releasing its leases and holds) and exit */
typedef struct worker {
    pid_t pid;
    int in, out;
} worker;

static void work(uid_t uid, const char *tenant, int in, int out)
{
    test_failed = 0; /* its own checks: not the parent's so far */
    become_uid(uid);
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = "someone";
    gms_runtime *rt = NULL;
    gms_context *ctx = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    gms_buf keep = GMS_BUF_NULL, shared = GMS_BUF_NULL, held = GMS_BUF_NULL, extra;
    static uint8_t pattern[BIG], back[BIG];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 7 + 3);
    char c;
    while (got_bytes(in, &c, 1) && c != 'q') {
        answer a = {0};
        gms_share_id id = 0;
        switch (c) {
        case 'i':
            a.rc = gms_alloc(ctx, BIG, 0, &keep);
            if (!a.rc)
                a.rc = gms_write(ctx, keep, 0, pattern, BIG);
            break;
        case 's': {
            gms_share_grant ro[] = {{"t2", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ}};
            gms_share_desc sd = GMS_SHARE_DESC_INIT;
            sd.grants = ro;
            sd.ngrants = 1;
            a.rc = gms_alloc(ctx, SHARED, GMS_ALLOC_PAGES, &shared);
            if (!a.rc)
                a.rc = gms_write(ctx, shared, 0, pattern, SHARED);
            if (!a.rc)
                a.rc = gms_share(ctx, shared, &sd, &id);
            break;
        }
        case 'a':
            got_bytes(in, &id, sizeof id);
            a.rc = gms_acquire(ctx, id, GMS_ACCESS_READ, &held);
            break;
        case 'r': {
            gms_buf buf = held ? held : keep;
            size_t n = held ? SHARED : BIG;
            const uint8_t *p = NULL;
            memset(back, 0, n);
            /* Through the raw pointer and through gms_read: neither asks gmsd. */
            a.rc = gms_buf_ptr(ctx, buf, (void **)&p);
            if (!a.rc)
                a.rc = gms_read(ctx, buf, 0, back, n);
            if (!a.rc && (memcmp(back, pattern, n) != 0 || memcmp(p, pattern, n) != 0))
                a.rc = 1;
            break;
        }
        case 'n':
            a.rc = gms_alloc(ctx, BIG, 0, &extra);
            if (!a.rc) {
                a.rc = gms_write(ctx, extra, 0, pattern, 4096);
                gms_free(ctx, extra);
            }
            break;
        }
        if (a.rc)
            snprintf(a.msg, sizeof a.msg, "%s", gms_error_last());
        put_bytes(out, &a, sizeof a);
        if (c == 's')
            put_bytes(out, &id, sizeof id);
    }
    gms_runtime_close(rt);
    _exit(test_failed ? 1 : 0);
}

/* A SHARE (or RESHARE of share id) of an immutable memfd of bytes, the
 * whole of it the buffer, granted to t2 for reading. */
static gms_broker_msg share_to_t2(uint16_t type, uint64_t bytes, uint64_t id)
{
    gms_broker_msg m = {.type = type, .a = bytes, .b = bytes, .d = id, .flags = 1, .ngrants = 1};
    snprintf(m.grants[0].tenant, sizeof m.grants[0].tenant, "t2");
    m.grants[0].language = GMS_ANY_LANGUAGE;
    m.grants[0].mode = GMS_ACCESS_READ;
    return m;
}

/* A raw client of t1 shares two 64 KiB memfds with t2, immutable, and
 * revokes the second; after gmsd's restart (on `go`) it resumes and hands
 * them back: first another memfd of the same size and seals in place of
 * the first (refused), then the real ones, then the first again (refused:
 * taken back already). Writes the share ids, the session, then the four
 * answers' types and codes to `out`. */
static void raw_owner(int out, int go)
{
    enum { BYTES = 64 << 10 };
    become_uid(T1);
    int s = raw_connect(b.sock), fd, fds[2];
    gms_broker_msg m = {.type = GMS_BROKER_HELLO};
    uint64_t session = raw_call(s, &m, &fd) == GMS_BROKER_WELCOME ? m.d : 0, ids[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        m = share_to_t2(GMS_BROKER_SHARE, BYTES, 0);
        fds[i] = -1;
        if (raw_call(s, &m, &fds[i]) != GMS_BROKER_SHARED)
            _exit(2);
        ids[i] = m.a;
        m = (gms_broker_msg){.type = GMS_BROKER_PUBLISH, .a = ids[i]};
        if (raw_call(s, &m, &fd) != GMS_BROKER_PUBLISHED)
            _exit(3);
    }
    m = (gms_broker_msg){.type = GMS_BROKER_REVOKE, .a = ids[1]};
    if (raw_call(s, &m, &fd) != GMS_BROKER_REVOKED)
        _exit(4);
    put_bytes(out, ids, sizeof ids);
    put_bytes(out, &session, sizeof session);
    char c;
    got_bytes(go, &c, 1);
    close(s);
    s = raw_connect(b.sock);
    m = (gms_broker_msg){.type = GMS_BROKER_HELLO, .a = session};
    if (raw_call(s, &m, &fd) != GMS_BROKER_WELCOME || m.flags != 1)
        _exit(5);
    int other = memfd_create("not-the-share", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (other < 0 || ftruncate(other, BYTES) != 0 ||
        fcntl(other, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        _exit(6);
    int give[4] = {other, fds[0], fds[1], fds[0]};
    uint64_t to[4] = {ids[0], ids[0], ids[1], ids[0]};
    int32_t answers[8];
    for (int i = 0; i < 4; i++) {
        m = share_to_t2(GMS_BROKER_RESHARE, BYTES, to[i]);
        answers[2 * i] = raw_call_fd(s, &m, give[i], &fd);
        answers[2 * i + 1] = m.type == GMS_BROKER_ERROR ? m.code : 0;
    }
    put_bytes(out, answers, sizeof answers);
    got_bytes(go, &c, 1);
    _exit(0);
}

/* The type of t2's raw ACQUIRE of share id (read), and its code. */
static int t2_acquires(uint64_t id, int *code)
{
    int p[2];
    if (pipe(p))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        become_uid(T2);
        int s = raw_connect(b.sock), fd;
        gms_broker_msg m = {.type = GMS_BROKER_HELLO};
        int32_t r[2] = {-1, 0};
        if (raw_call(s, &m, &fd) == GMS_BROKER_WELCOME) {
            m = (gms_broker_msg){.type = GMS_BROKER_ACQUIRE, .a = id, .mode = GMS_ACCESS_READ,
                                 .language = GMS_ANY_LANGUAGE};
            r[0] = raw_call(s, &m, &fd);
            r[1] = m.type == GMS_BROKER_ERROR ? m.code : 0;
        }
        put_bytes(p[1], r, sizeof r);
        _exit(0);
    }
    int32_t r[2] = {-1, 0};
    got_bytes(p[0], r, sizeof r);
    waitpid(pid, NULL, 0);
    close(p[0]);
    close(p[1]);
    *code = r[1];
    return r[0];
}

/* Shares after a restart: taken back from their owner, that file only. */
static void shares_handed_back(void)
{
    int rp[2], gp[2];
    if (pipe(rp) || pipe(gp))
        _exit(1);
    pid_t owner = fork();
    if (owner == 0)
        raw_owner(rp[1], gp[0]);
    uint64_t ids[2] = {0, 0}, session = 0;
    CHECK(got_bytes(rp[0], ids, sizeof ids) && got_bytes(rp[0], &session, sizeof session));
    int code = 0;
    CHECK(t2_acquires(ids[0], &code) == GMS_BROKER_ACQUIRED);
    CHECK(broker_end(&b, SIGKILL) == 128 + SIGKILL);
    broker_exec(&b);
    /* Taken over without its memfd: nobody new acquires it yet. */
    CHECK(t2_acquires(ids[0], &code) == GMS_BROKER_ERROR && code == GMS_E_ACCESS_DENIED);
    put_bytes(gp[1], "g", 1);
    int32_t a[8];
    CHECK(got_bytes(rp[0], a, sizeof a));
    CHECK(a[0] == GMS_BROKER_ERROR && a[1] == GMS_E_INVALID_ARG);    /* another memfd */
    CHECK(a[2] == GMS_BROKER_RESHARED);                             /* the share's own */
    CHECK(a[4] == GMS_BROKER_RESHARED);                             /* the revoked one's */
    CHECK(a[6] == GMS_BROKER_ERROR && a[7] == GMS_E_INVALID_HANDLE); /* taken back already */
    CHECK(t2_acquires(ids[0], &code) == GMS_BROKER_ACQUIRED);
    CHECK(t2_acquires(ids[1], &code) == GMS_BROKER_ERROR && code == GMS_E_ACCESS_DENIED);
    put_bytes(gp[1], "g", 1);
    CHECK(status_of(owner) == 0);
    CHECK(broker_use_becomes(b.sock, T1, 0, 0));
    for (int i = 0; i < 2; i++) {
        close(rp[i]);
        close(gp[i]);
    }
}

static worker start(uid_t uid, const char *tenant, const char *reconnect_ms)
{
    int to[2], from[2];
    if (pipe(to) || pipe(from))
        exit(1);
    worker w = {.in = from[0], .out = to[1]};
    w.pid = fork();
    if (w.pid == 0) {
        if (reconnect_ms)
            setenv("GMS_BROKER_RECONNECT_MS", reconnect_ms, 1);
        close(to[1]);
        close(from[0]);
        work(uid, tenant, to[0], from[1]);
    }
    close(to[0]);
    close(from[1]);
    return w;
}

/* Sends command c; the worker's answer (rc -1 when it is gone). */
static answer ask(worker *w, char c)
{
    answer a = {.rc = -1};
    put_bytes(w->out, &c, 1);
    if (!got_bytes(w->in, &a, sizeof a))
        a.rc = -1;
    return a;
}

static int ok(worker *w, char c)
{
    answer a = ask(w, c);
    if (a.rc)
        fprintf(stderr, "worker %d, '%c': %d %s\n", (int)w->pid, c, a.rc, a.msg);
    return a.rc == 0;
}

static int finish(worker *w)
{
    put_bytes(w->out, "q", 1);
    int st = status_of(w->pid);
    close(w->in);
    close(w->out);
    return st;
}

/* How many leases of 2 MiB a fresh connection of uid gets before the
 * quota refuses one (all released again). */
static int leases_left(uid_t uid)
{
    int p[2];
    if (pipe(p))
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        become_uid(uid);
        int s = raw_connect(b.sock), n = 0, fd;
        gms_broker_msg m;
        do {
            m = (gms_broker_msg){.type = GMS_BROKER_LEASE, .a = 2 * MIB};
            if (raw_call(s, &m, &fd) == GMS_BROKER_LEASED)
                n++;
            if (fd >= 0)
                close(fd);
        } while (m.type == GMS_BROKER_LEASED && n < 64);
        if (m.type != GMS_BROKER_ERROR || m.code != GMS_E_QUOTA)
            n = -1;
        close(s); /* returns them */
        put_bytes(p[1], &n, sizeof n);
        _exit(0);
    }
    int n = -2;
    if (read(p[0], &n, sizeof n) != sizeof n) {}
    waitpid(pid, NULL, 0);
    close(p[0]);
    close(p[1]);
    return n;
}

static long long metric_now(const char *name, const char *tenant)
{
    int st;
    char *page = metrics_get_at(metrics_sock, "GET /metrics HTTP/1.0\r\n\r\n", &st);
    return st == 200 ? tenant_metric(page, name, tenant) : -1;
}

static long long orphans_now(void)
{
    int st;
    char *page = metrics_get_at(metrics_sock, "GET /metrics HTTP/1.0\r\n\r\n", &st);
    const char *at = page ? strstr(page, "\ngmsd_orphaned_sessions ") : NULL;
    return at ? strtoll(at + strlen("\ngmsd_orphaned_sessions "), NULL, 10) : -1;
}

int main(void)
{
    if (geteuid() != 0) {
        printf("tenants by uid need root (setuid in the children): skipped\n");
        return TEST_SKIP;
    }
    const char *extra[] = {"--metrics", "unix:%d/metrics.sock", NULL};
    broker_start_args(&b, "{\"lease_bytes\": 2097152, \"tenants\": ["
                          "{\"name\": \"t1\", \"uids\": [40401], \"quota_bytes\": 10485760, "
                          "\"quota_leases\": 5},"
                          "{\"name\": \"t2\", \"uids\": [40402], \"quota_bytes\": 8388608, "
                          "\"quota_leases\": 4}]}",
                      extra);
    snprintf(metrics_sock, sizeof metrics_sock, "%s/metrics.sock", b.dir);
    char state[128];
    snprintf(state, sizeof state, "%s.state", b.sock);

    /* t1: A holds a lease and a share, which t2's B holds; C a lease. */
    worker A = start(T1, "t1", NULL), B = start(T2, "t2", NULL), C = start(T1, "t1", NULL);
    gms_share_id id = 0;
    CHECK(ok(&A, 'i'));
    CHECK(ask(&A, 's').rc == 0 && got_bytes(A.in, &id, sizeof id));
    put_bytes(B.out, "a", 1);
    put_bytes(B.out, &id, sizeof id);
    answer got;
    CHECK(got_bytes(B.in, &got, sizeof got) && got.rc == 0);
    CHECK(ok(&B, 'r'));
    CHECK(ok(&C, 'i'));
    uint64_t t1_bytes, t1_leases; /* A's two leases, C's, the share */
    broker_usage_as(b.sock, T1, &t1_bytes, &t1_leases);
    CHECK(t1_leases == 4 && t1_bytes == 3 * 2 * MIB + SHARED);
    int left = leases_left(T1);
    CHECK(left == 5 - (int)t1_leases);

    /* A crash: the next gmsd charges t1 exactly as before. */
    CHECK(broker_end(&b, SIGKILL) == 128 + SIGKILL);
    CHECK(ok(&A, 'r')); /* the memory is the processes', as it was */
    CHECK(ok(&B, 'r'));
    broker_exec(&b);
    CHECK(broker_use_becomes(b.sock, T1, t1_bytes, t1_leases));
    CHECK(broker_use_becomes(b.sock, T2, 0, 0));
    CHECK(leases_left(T1) == left); /* the quota holds: not one lease more */
    CHECK(orphans_now() == 3);
    CHECK(ok(&A, 'r'));
    CHECK(ok(&B, 'r'));

    /* C ends without coming back: its lease returns. */
    kill(C.pid, SIGKILL);
    waitpid(C.pid, NULL, 0);
    close(C.in);
    close(C.out);
    CHECK(broker_use_becomes(b.sock, T1, t1_bytes - 2 * MIB, t1_leases - 1));
    CHECK(orphans_now() == 2);

    /* Until A comes back, nobody new acquires A's share: the new gmsd has
     * no memfd of it. */
    worker E = start(T2, "t2", NULL);
    put_bytes(E.out, "a", 1);
    put_bytes(E.out, &id, sizeof id);
    CHECK(got_bytes(E.in, &got, sizeof got) && got.rc == GMS_E_ACCESS_DENIED &&
          strstr(got.msg, "not handed its memory back"));

    /* A's next request resumes its session (handing the share's memfd
     * back), then succeeds; E may acquire the share again. */
    CHECK(ok(&A, 'n'));
    CHECK(orphans_now() == 1);
    put_bytes(E.out, "a", 1);
    put_bytes(E.out, &id, sizeof id);
    CHECK(got_bytes(E.in, &got, sizeof got) && got.rc == 0);
    CHECK(ok(&E, 'r'));
    CHECK(finish(&E) == 0);
    CHECK(ok(&B, 'r'));
    /* B's release of its hold resumes B's session first; the share stays A's. */
    CHECK(finish(&B) == 0);
    CHECK(orphans_now() == 0);
    CHECK(metric_now("violations_total", "t2") == 0);
    long long reclaimed = metric_now("reclaimed_leases_total", "t1"); /* C's, the probes' */
    /* A's runtime releases its leases and its share's hold, the ones from
     * before the crash too, through the new connection: each release is
     * of a live lease or hold of that connection (none is a violation),
     * and none is left for the hang-up to reclaim (only C's was). */
    CHECK(finish(&A) == 0);
    CHECK(broker_use_becomes(b.sock, T1, 0, 0));
    CHECK(metric_now("violations_total", "t1") == 0);
    CHECK(metric_now("reclaimed_leases_total", "t1") == reclaimed);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "grep -q 'resumed: ' %s", b.log);
    CHECK(system(cmd) == 0);

    /* Only the very process resumes its session: R holds a lease on a raw
     * connection; after a crash, another process of t1 that names R's
     * session is refused (a violation), and R then resumes it. */
    int rp[2], gp[2]; /* from R, to R */
    CHECK(pipe(rp) == 0 && pipe(gp) == 0);
    pid_t r = fork();
    if (r == 0) {
        become_uid(T1);
        int s = raw_connect(b.sock), fd;
        gms_broker_msg m = {.type = GMS_BROKER_HELLO};
        uint64_t session = raw_call(s, &m, &fd) == GMS_BROKER_WELCOME ? m.d : 0;
        m = (gms_broker_msg){.type = GMS_BROKER_LEASE, .a = 2 * MIB};
        if (raw_call(s, &m, &fd) != GMS_BROKER_LEASED)
            session = 0;
        put_bytes(rp[1], &session, sizeof session);
        char go;
        got_bytes(gp[0], &go, 1); /* gmsd restarted */
        close(s);
        s = raw_connect(b.sock);
        m = (gms_broker_msg){.type = GMS_BROKER_HELLO, .a = session};
        int t = raw_call(s, &m, &fd);
        uint64_t resumed = t == GMS_BROKER_WELCOME && m.flags == 1 && m.e == 1 && m.d == session;
        put_bytes(rp[1], &resumed, sizeof resumed);
        got_bytes(gp[0], &go, 1);
        _exit(0); /* its connection, and the lease, go */
    }
    uint64_t session = 0, resumed = 0;
    CHECK(got_bytes(rp[0], &session, sizeof session) && session != 0);
    CHECK(broker_end(&b, SIGKILL) == 128 + SIGKILL);
    broker_exec(&b);
    CHECK(broker_use_becomes(b.sock, T1, 2 * MIB, 1));
    pid_t thief = fork();
    if (thief == 0) {
        become_uid(T1);
        int s = raw_connect(b.sock), fd;
        gms_broker_msg m = {.type = GMS_BROKER_HELLO, .a = session};
        int t = raw_call(s, &m, &fd);
        _exit(t == GMS_BROKER_WELCOME && m.flags == 0 && m.e == 0 && m.d != session ? 0 : 1);
    }
    int st;
    waitpid(thief, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(metric_now("violations_total", "t1") == 1);
    CHECK(orphans_now() == 1);
    put_bytes(gp[1], "g", 1);
    CHECK(got_bytes(rp[0], &resumed, sizeof resumed) && resumed == 1);
    CHECK(orphans_now() == 0);
    put_bytes(gp[1], "g", 1);
    waitpid(r, NULL, 0);
    CHECK(broker_use_becomes(b.sock, T1, 0, 0));
    for (int i = 0; i < 2; i++) {
        close(rp[i]);
        close(gp[i]);
    }

    shares_handed_back();

    /* A stop (SIGTERM) wipes nothing: D's bytes stay, and D resumes. */
    worker D = start(T1, "t1", "300");
    CHECK(ok(&D, 'i'));
    CHECK(broker_end(&b, SIGTERM) == 0);
    CHECK(ok(&D, 'r'));
    /* No gmsd: a clear error after the wait, the memory as it was. */
    got = ask(&D, 'n');
    CHECK(got.rc == GMS_E_BACKEND && strstr(got.msg, "went away and is not back"));
    if (!strstr(got.msg, "went away and is not back"))
        fprintf(stderr, "got: %s\n", got.msg);
    CHECK(ok(&D, 'r'));
    broker_exec(&b);
    CHECK(broker_use_becomes(b.sock, T1, 2 * MIB, 1));
    CHECK(ok(&D, 'n')); /* resumed */
    CHECK(ok(&D, 'r'));

    /* A gmsd without the state (lost): D is detached, plainly. */
    CHECK(broker_end(&b, SIGKILL) == 128 + SIGKILL);
    CHECK(unlink(state) == 0);
    broker_exec(&b);
    CHECK(broker_use_becomes(b.sock, T1, 0, 0)); /* the new gmsd knows nothing of D */
    got = ask(&D, 'n');
    CHECK(got.rc == GMS_E_BACKEND && strstr(got.msg, "restarted without this process's accounting"));
    if (!strstr(got.msg, "restarted without"))
        fprintf(stderr, "got: %s\n", got.msg);
    got = ask(&D, 'n'); /* and every later request */
    CHECK(got.rc == GMS_E_BACKEND && strstr(got.msg, "close it and open a new one"));
    CHECK(ok(&D, 'r'));
    CHECK(finish(&D) == 0);
    CHECK(broker_use_becomes(b.sock, T1, 0, 0));

    /* A second gmsd on the same state file does not start. */
    const char *args[] = {"--policy", b.policy, "--socket", "/tmp/gms-restart-other.sock", "--state",
                          state, NULL};
    char log[128];
    snprintf(log, sizeof log, "%s/other.log", b.dir);
    CHECK(gmsd_run(log, args) == 1);
    snprintf(cmd, sizeof cmd, "grep -q 'in use by another gmsd' %s", log);
    CHECK(system(cmd) == 0);
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
