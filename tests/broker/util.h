/*
 * util.h: what the broker tests share: a gmsd of their own (a temporary
 * socket directory and policy; GMSD names the binary, CTest sets it), and
 * a raw protocol client for what libgms would never send.
 */
#ifndef GMS_TEST_BROKER_UTIL_H
#define GMS_TEST_BROKER_UTIL_H

#include "test.h"
#include "backend/broker/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct broker {
    char dir[64], sock[96], policy[96], log[96];
    pid_t pid;
    char args[8][256]; /* the extra arguments, for a restart */
    int nargs;
} broker;

static inline double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline const char *gmsd_path(void)
{
    const char *p = getenv("GMSD");
    return p && *p ? p : "./gmsd";
}

static inline void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Runs gmsd with args (NULL-ended) and stderr to log; its exit status. */
static inline int gmsd_run(const char *log, const char *const *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        dup2(fd, 1);
        const char *argv[16] = {gmsd_path()};
        for (int i = 0; args[i] && i < 14; i++)
            argv[i + 1] = args[i];
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline int raw_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
        return s;
    if (s >= 0)
        close(s);
    return -1;
}

/* Runs gmsd in b's directory with b's arguments (its log appended to) and
 * waits until it takes connections. */
static inline void broker_exec(broker *b)
{
    b->pid = fork();
    if (b->pid == 0) {
        int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        const char *argv[16] = {gmsd_path(), "--policy", b->policy, "--socket", b->sock};
        for (int i = 0; i < b->nargs; i++)
            argv[5 + i] = b->args[i];
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    /* Up to 20 s: a busy CI machine (sanitizer builds beside the tests)
     * can be slow to start a process. */
    int st, exited = 0;
    for (int i = 0; i < 2000 && !exited; i++) {
        int s = raw_connect(b->sock);
        if (s >= 0) {
            close(s);
            return;
        }
        exited = waitpid(b->pid, &st, WNOHANG) == b->pid;
        usleep(10000);
    }
    /* One still starting would hold the test's output open, and CTest
     * would wait for it until the test's timeout. */
    if (!exited) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, &st, 0);
    }
    fprintf(stderr, "gmsd (%s) did not start%s; its log:\n", gmsd_path(),
            exited ? "" : " within 20 s (killed)");
    char cmd[160];
    snprintf(cmd, sizeof cmd, "cat %s >&2", b->log);
    if (system(cmd)) {}
    exit(1);
}

/* Starts gmsd on a fresh directory with the policy text; extra: more
 * arguments (NULL-ended, at most 8), or NULL. "%d" in one is replaced by
 * the directory. */
static inline void broker_start_args(broker *b, const char *policy_text,
                                     const char *const *extra)
{
    snprintf(b->dir, sizeof b->dir, "/tmp/gms-broker-XXXXXX");
    if (!mkdtemp(b->dir) || chmod(b->dir, 0755) != 0) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(b->sock, sizeof b->sock, "%s/gmsd.sock", b->dir);
    snprintf(b->policy, sizeof b->policy, "%s/policy.json", b->dir);
    snprintf(b->log, sizeof b->log, "%s/gmsd.log", b->dir);
    write_file(b->policy, policy_text);
    b->nargs = 0;
    for (int i = 0; extra && extra[i] && i < 8; i++, b->nargs++) {
        const char *at = strstr(extra[i], "%d");
        if (at)
            snprintf(b->args[i], sizeof b->args[i], "%.*s%s%s", (int)(at - extra[i]), extra[i],
                     b->dir, at + 2);
        else
            snprintf(b->args[i], sizeof b->args[i], "%s", extra[i]);
    }
    broker_exec(b);
}

/* Ends gmsd with sig (SIGKILL: a crash) and waits for it, keeping its
 * directory (its socket, state file and log) for broker_exec to start
 * the next one; its exit status. */
static inline int broker_end(broker *b, int sig)
{
    kill(b->pid, sig);
    int st;
    waitpid(b->pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The same with one more option and its value (opt NULL: none). */
static inline void broker_start_with(broker *b, const char *policy_text, const char *opt,
                                     const char *val)
{
    const char *extra[] = {opt, val, NULL};
    broker_start_args(b, policy_text, opt ? extra : NULL);
}

static inline void broker_start(broker *b, const char *policy_text)
{
    broker_start_with(b, policy_text, NULL, NULL);
}

/* Stops gmsd; its exit status (0: a clean stop). */
static inline int broker_stop(broker *b)
{
    kill(b->pid, SIGTERM);
    int st;
    waitpid(b->pid, &st, 0);
    char cmd[256];
    if (getenv("GMS_TEST_VERBOSE")) {
        snprintf(cmd, sizeof cmd, "cat %s >&2", b->log);
        if (system(cmd)) {}
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", b->dir);
    if (system(cmd)) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The body of GET /metrics from gmsd's metrics socket at path, and the
 * HTTP status; NULL when there is none. */
static inline char *metrics_get_at(const char *path, const char *request, int *status)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    static char page[1 << 16];
    size_t len = 0;
    *status = -1;
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        send(s, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request)) {
        if (s >= 0)
            close(s);
        return NULL;
    }
    for (;;) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        ssize_t n = poll(&p, 1, 3000) == 1 ? recv(s, page + len, sizeof page - 1 - len, 0) : -1;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(s);
    page[len] = 0;
    if (sscanf(page, "HTTP/1.%*d %d", status) != 1)
        return NULL;
    char *body = strstr(page, "\r\n\r\n");
    return body ? body + 4 : NULL;
}

/* The value of a gmsd_tenant_<name> sample of tenant t; -1 when absent. */
static inline long long tenant_metric(const char *page, const char *name, const char *t)
{
    char key[160];
    snprintf(key, sizeof key, "\ngmsd_tenant_%s{tenant=\"%s\"} ", name, t);
    const char *at = page ? strstr(page, key) : NULL;
    return at ? strtoll(at + strlen(key), NULL, 10) : -1;
}

/* Sends m (with fd when >= 0); -1 on failure. */
static inline int raw_send(int s, gms_broker_msg *m, int fd)
{
    return gms__broker_send(s, m, fd, 0);
}

/* Receives one reply into m; *fd its descriptor or -1. 0, -1 on a closed
 * socket or timeout (2 s), or the decoder's reason. */
static inline int raw_recv(int s, gms_broker_msg *m, int *fd)
{
    *fd = -1;
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, 2000) != 1)
        return -1;
    uint8_t buf[GMS_BROKER_MSG_MAX];
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                        .msg_controllen = sizeof ctl};
    ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == ECONNRESET) /* reported once, before a queued refusal */
        n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n <= 0)
        return -1;
    unsigned nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            nfds += (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(fd, CMSG_DATA(cm), sizeof *fd);
        }
    return gms__broker_decode(buf, (size_t)n, nfds, 1, m);
}

/* One request (with descriptor send_fd when >= 0) and its reply; the
 * reply's type, or -1. An ERROR of sequence 0 (gmsd refusing the
 * connection as it closes it) answers any request, and may be there even
 * when the request could not be sent. */
static inline int raw_call_fd(int s, gms_broker_msg *m, int send_fd, int *fd)
{
    static uint32_t seq;
    m->seq = ++seq;
    uint32_t want = m->seq;
    raw_send(s, m, send_fd);
    if (raw_recv(s, m, fd) != 0 || (m->seq != want && !(m->type == GMS_BROKER_ERROR && !m->seq)))
        return -1;
    return m->type;
}

static inline int raw_call(int s, gms_broker_msg *m, int *fd)
{
    return raw_call_fd(s, m, -1, fd);
}

/* The tenant's bytes and leases in use (through a new connection). */
static inline int raw_usage(const char *sock, uint64_t *bytes, uint64_t *leases)
{
    int s = raw_connect(sock), fd;
    gms_broker_msg m = {.type = GMS_BROKER_USAGE};
    int t = s < 0 ? -1 : raw_call(s, &m, &fd);
    if (s >= 0)
        close(s);
    *bytes = m.a;
    *leases = m.b;
    return t == GMS_BROKER_USED ? 0 : -1;
}

/* Pipes between a test and its processes: a short write, or a short read
 * where get_bytes is used, ends the process; got_bytes says whether all n
 * bytes came (0 once the other end is gone). */
static inline void put_bytes(int fd, const void *p, size_t n)
{
    if (write(fd, p, n) != (ssize_t)n)
        _exit(3);
}

static inline int got_bytes(int fd, void *p, size_t n)
{
    return read(fd, p, n) == (ssize_t)n;
}

static inline void get_bytes(int fd, void *p, size_t n)
{
    if (!got_bytes(fd, p, n))
        _exit(3);
}

/* The exit status of child pid, once it ends (128 + the signal that
 * killed it). */
static inline int status_of(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs fn in a child, whose checks count there; its exit status (0: every
 * check held), said on stderr when not 0. */
static inline int run_child(void (*fn)(void))
{
    fflush(stdout); /* or the child writes it again */
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(test_done());
    }
    int rc = status_of(pid);
    if (rc)
        fprintf(stderr, "child: status %d\n", rc);
    return rc;
}

/* Starts gmsd whose one tenant, "self", is this process's uid: leases of
 * 2 MiB, the quota given; more: more keys of the tenant ("" none). */
static inline void broker_start_one(broker *b, uint64_t quota_bytes, unsigned quota_leases,
                                    const char *more)
{
    char policy[320];
    snprintf(policy, sizeof policy,
             "{\"lease_bytes\": 2097152, \"tenants\": [{\"name\": \"self\", \"uids\": [%u], "
             "\"quota_bytes\": %llu, \"quota_leases\": %u%s}]}",
             (unsigned)getuid(), (unsigned long long)quota_bytes, quota_leases, more);
    broker_start(b, policy);
}

/* The same with 1 GiB in 256 leases, named to libgms by GMS_BROKER. */
static inline void broker_start_self(broker *b)
{
    broker_start_one(b, 1ull << 30, 256, "");
    setenv("GMS_BROKER", b->sock, 1);
}

/* A runtime through the gmsd at sock and one context of tenant on it (a
 * second in *c, unless c is NULL). */
static inline void broker_open_as(const char *sock, const char *tenant, gms_runtime **rt,
                                  gms_context **a, gms_context **c)
{
    setenv("GMS_BROKER", sock, 1);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = "someone";
    *rt = NULL;
    *a = NULL;
    CHECK_OK(gms_runtime_open(rt, &o));
    CHECK_OK(gms_context_open(a, *rt, &d));
    if (c)
        CHECK_OK(gms_context_open(c, *rt, &d));
}

/* A context of tenant "self" (gmsd's name for this uid) on rt, for the
 * client thread id (user "u<id>"); NULL when refused. */
static inline gms_context *thread_context(gms_runtime *rt, long id)
{
    char user[16];
    snprintf(user, sizeof user, "u%ld", id);
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "self";
    d.user = user;
    gms_context *ctx = NULL;
    return gms_context_open(&ctx, rt, &d) == GMS_OK ? ctx : NULL;
}

/* One round of a client thread (threads_*.c): n buffers (1 or 2) of size
 * bytes, word written into each at two thirds of it and read back, all
 * freed. The failures; an allocation's is said on stderr, and ends the
 * round. */
static inline long lease_round(gms_context *ctx, uint64_t word, size_t size, int n)
{
    gms_buf buf[2];
    uint64_t back = 0, at = size / 3 * 2;
    long bad = 0;
    for (int k = 0; k < n; k++) {
        if (gms_alloc(ctx, size, 0, &buf[k]) != GMS_OK) {
            fprintf(stderr, "word 0x%llx: %s\n", (unsigned long long)word, gms_error_last());
            while (k--)
                gms_free(ctx, buf[k]);
            return bad + 1;
        }
        bad += gms_write(ctx, buf[k], at, &word, sizeof word) != GMS_OK;
    }
    for (int k = 0; k < n; k++) {
        bad += gms_read(ctx, buf[k], at, &back, sizeof back) != GMS_OK || back != word;
        bad += gms_free(ctx, buf[k]) != GMS_OK;
    }
    return bad;
}

/* The calling process becomes user and group uid (a test's tenant). */
static inline void become_uid(uid_t uid)
{
    if (setgroups(0, NULL) != 0 || setgid(uid) != 0 || setuid(uid) != 0) {
        perror("setuid");
        _exit(2);
    }
}

/* The bytes and leases uid's tenant uses in the gmsd at sock, asked by a
 * process of uid; ~0 each when it could not tell. */
static inline void broker_usage_as(const char *sock, uid_t uid, uint64_t *bytes, uint64_t *leases)
{
    int p[2];
    if (pipe(p))
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        become_uid(uid);
        uint64_t u[2] = {~0ull, ~0ull};
        raw_usage(sock, &u[0], &u[1]);
        _exit(write(p[1], u, sizeof u) == sizeof u ? 0 : 3);
    }
    uint64_t u[2] = {~0ull, ~0ull};
    if (read(p[0], u, sizeof u) != sizeof u) {
        /* the child died first: ~0 says so */
    }
    waitpid(pid, NULL, 0);
    close(p[0]);
    close(p[1]);
    *bytes = u[0];
    *leases = u[1];
}

/* 1 once uid's tenant uses bytes in leases, within 2 s. */
static inline int broker_use_becomes(const char *sock, uid_t uid, uint64_t bytes, uint64_t leases)
{
    uint64_t ub = 0, ul = 0;
    for (double t0 = now_s(); now_s() - t0 < 2; usleep(10000)) {
        broker_usage_as(sock, uid, &ub, &ul);
        if (ub == bytes && ul == leases)
            return 1;
    }
    fprintf(stderr, "uid %u's tenant uses %llu bytes in %llu leases, want %llu in %llu\n",
            (unsigned)uid, (unsigned long long)ub, (unsigned long long)ul,
            (unsigned long long)bytes, (unsigned long long)leases);
    return 0;
}

/* Joins the n threads, each of which returns NULL when all went well. */
static inline void threads_join_clean(pthread_t *t, int n)
{
    for (int i = 0; i < n; i++) {
        void *bad = (void *)1;
        pthread_join(t[i], &bad);
        CHECK(bad == NULL);
    }
}

/* 1 once the calling uid's tenant holds nothing at the gmsd at sock,
 * within 2 s. */
static inline int usage_empties(const char *sock)
{
    uint64_t bytes = 1, leases = 1;
    for (double t0 = now_s(); now_s() - t0 < 2; usleep(1000))
        if (raw_usage(sock, &bytes, &leases) == 0 && bytes == 0 && leases == 0)
            return 1;
    return 0;
}

/* In a child: whether the CUDA backend opens here (exit 0). */
static inline void cuda_probe(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_CUDA;
    o.safety = GMS_SAFETY_OFF;
    gms_runtime *r = NULL;
    if (gms_runtime_open(&r, &o) != GMS_OK)
        _exit(1);
    gms_runtime_close(r);
    _exit(0); /* no check ran, and none should count */
}

static inline int median_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return (a > c) - (a < c);
}

/* The median of v[0..n) (sorts v). */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, median_cmp);
    return v[n / 2];
}

/* Forks victim(fd), which writes 'r' to fd once it holds leases (any
 * other byte: it failed), checks that the tenant at sock then uses bytes
 * in leases, kills it with SIGKILL, and waits up to 2 s for gmsd to
 * return them all. 1 when it did; *ms: how long after the death. */
static inline int killed_returns(const char *sock, void (*victim)(int fd), uint64_t bytes,
                                 uint64_t leases, double *ms)
{
    int p[2];
    *ms = 0;
    if (pipe(p) != 0)
        return 0;
    fflush(stdout); /* or the child writes it again */
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        victim(p[1]);
        _exit(1);
    }
    close(p[1]);
    char c = 0;
    uint64_t b = 0, l = 0;
    int held = read(p[0], &c, 1) == 1 && c == 'r' && raw_usage(sock, &b, &l) == 0 &&
               b == bytes && l == leases;
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    double t0 = now_s(), t;
    while ((t = now_s() - t0) < 2 && raw_usage(sock, &b, &l) == 0 && l)
        usleep(200);
    *ms = t * 1e3;
    return held && b == 0 && l == 0;
}

/* Open descriptors of process pid. */
static inline int fd_count(pid_t pid)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "ls /proc/%d/fd | wc -l", (int)pid);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    return n;
}

/* 1 once pid holds at most want descriptors, within 2 s (gmsd may still
 * be accepting and dropping connections the test has closed). */
static inline int fd_count_settles(pid_t pid, int want)
{
    double t0 = now_s();
    int n;
    while ((n = fd_count(pid)) > want && now_s() - t0 < 2)
        usleep(10000);
    if (n > want)
        fprintf(stderr, "gmsd holds %d descriptors, want at most %d\n", n, want);
    return n <= want;
}

/* gmsd's descriptors at rest: the fewest seen over 300 ms (a connection
 * the test closed just before may not be dropped yet). */
static inline int fd_baseline(pid_t pid)
{
    int least = fd_count(pid);
    for (int i = 0; i < 30; i++) {
        usleep(10000);
        int n = fd_count(pid);
        least = n < least ? n : least;
    }
    return least;
}

#endif
