/*
 * reentrant_callbacks.c: violation and log callbacks may call gms
 * (threading.md). Each corruption is delivered exactly once however the
 * callbacks call back in: allocating and freeing, verifying, syncing,
 * finding a new corruption of their own (delivered once too, after the
 * call that found it returns). A log line written while gms holds a lock
 * reaches the log function only once the lock is gone, so a log function
 * may take gms locks itself. A callback's own failed calls do not replace
 * the message of the call that reported the corruption. The audit
 * writer's log lines reach the log function on a caller's thread, so a log
 * function may flush the trail. Every scenario runs under an alarm: a
 * deadlock fails the test instead of hanging it.
 */
#include "util.h"

#include "backend/backend.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static gms_runtime *the_rt;
static gms_context *the_ctx, *the_other;

/* What the callbacks do, besides counting. */
enum { DO_ALLOC_FREE = 1, DO_VERIFY = 2, DO_SYNC = 4, DO_CORRUPT_ONCE = 8, DO_FAIL = 16 };
static unsigned behaviour;
static unsigned seen;          /* violation callbacks */
static gms_buf seen_handle[16];
static unsigned log_corruptions; /* log lines about corruption */
static unsigned log_unmaps;      /* log lines about a failed unmap */
static int nested_rc;          /* what the corrupting free inside returned */

static void corrupt_and_free(gms_context *c)
{
    gms_buf b = GMS_BUF_NULL;
    if (gms_alloc(c, 64, 0, &b) != GMS_OK)
        return;
    void *p = NULL;
    if (gms_buf_ptr(c, b, &p) == GMS_OK)
        ((uint8_t *)p)[64] ^= 0x33; /* into the redzone */
    nested_rc = gms_free(c, b);
}

/* Calls back into gms the ways a binding's callback might. */
static void call_back_in(void)
{
    if (behaviour & DO_ALLOC_FREE) {
        gms_buf b[3];
        for (int i = 0; i < 3; i++)
            if (gms_alloc(i == 1 ? the_other : the_ctx, 300, 0, &b[i]) == GMS_OK)
                gms_free(i == 1 ? the_other : the_ctx, b[i]);
    }
    if (behaviour & DO_VERIFY)
        gms_verify(the_rt, NULL);
    if (behaviour & DO_SYNC)
        gms_sync(the_rt);
    if (behaviour & DO_FAIL)
        gms_free(the_ctx, (gms_buf)12345); /* fails: sets this thread's message */
}

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    if (seen < 16)
        seen_handle[seen] = v->handle;
    seen++;
    call_back_in();
    if ((behaviour & DO_CORRUPT_ONCE) && seen == 1)
        corrupt_and_free(the_ctx);
}

static void on_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    if (strstr(msg, "corruption"))
        log_corruptions++;
    if (strstr(msg, "returning"))
        log_unmaps++;
    call_back_in();
    /* Takes the runtime lock and every pool lock: deadlocks if a lock is
     * held while the log function runs. */
    gms_stats st;
    gms_stats_get(the_rt, &st);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "reentrant_callbacks: deadlock (alarm)\n";
    if (write(2, m, sizeof m - 1) < 0) {
    }
    _exit(1);
}

static void open_all(gms_safety_mode safety)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.safety = safety;
    o.log = on_log;
    the_rt = NULL;
    if (gms_runtime_open(&the_rt, &o) != GMS_OK || gms_on_violation(the_rt, on_violation, NULL)) {
        fprintf(stderr, "open: %s\n", gms_error_last());
        exit(2);
    }
    the_ctx = ctx_of(the_rt, "acme", "alice", GMS_LEVEL_INTERNAL);
    the_other = ctx_of(the_rt, "globex", "bob", GMS_LEVEL_INTERNAL);
    seen = log_corruptions = log_unmaps = 0;
    nested_rc = 0;
}

static void close_all(void)
{
    behaviour = 0;
    gms_context_close(the_ctx);
    gms_context_close(the_other);
    gms_runtime_close(the_rt);
}

/* One overflow, found by gms_free, with callbacks doing `how`. */
static void one_overflow(unsigned how)
{
    open_all(GMS_SAFETY_ON);
    behaviour = how;
    gms_buf b = alloc_or_die(the_ctx, 100);
    raw(the_ctx, b)[100] ^= 0x5a;
    CHECK_RC(gms_free(the_ctx, b), GMS_E_CORRUPTION);
    CHECK(strstr(gms_error_last(), "offset +100") != NULL);
    CHECK(seen == 1);
    CHECK(seen_handle[0] == b);
    CHECK(log_corruptions == 1);
    CHECK_OK(gms_verify(the_rt, NULL));
    CHECK(seen == 1);
    close_all();
}

/* The callback makes a corruption of its own: two violations, each once. */
static void nested_corruption(unsigned how)
{
    open_all(GMS_SAFETY_ON);
    behaviour = DO_CORRUPT_ONCE | how;
    gms_buf b = alloc_or_die(the_ctx, 100);
    raw(the_ctx, b)[100] ^= 0x5a;
    CHECK_RC(gms_free(the_ctx, b), GMS_E_CORRUPTION);
    CHECK(strstr(gms_error_last(), "offset +100") != NULL);
    CHECK(nested_rc == GMS_E_CORRUPTION);
    CHECK(seen == 2);
    CHECK(seen_handle[0] == b);
    CHECK(seen >= 2 && seen_handle[1] != b && seen_handle[1] != GMS_BUF_NULL);
    CHECK(log_corruptions == 2);
    CHECK_OK(gms_verify(the_rt, NULL));
    CHECK(seen == 2);
    close_all();
}

/* Many corruptions found by one gms_verify, callbacks freeing and
 * allocating meanwhile: each delivered once. */
static void verify_finds_many(void)
{
    open_all(GMS_SAFETY_ON);
    enum { N = 40 };
    gms_buf b[N];
    for (int i = 0; i < N; i++) {
        b[i] = alloc_or_die(the_ctx, 100);
        raw(the_ctx, b[i])[101] ^= 0x11;
    }
    behaviour = DO_ALLOC_FREE | DO_SYNC;
    CHECK_RC(gms_verify(the_rt, NULL), GMS_E_CORRUPTION);
    CHECK(seen == N);
    CHECK(log_corruptions == N);
    for (int i = 0; i < N; i++)
        gms_free(the_ctx, b[i]); /* each reports its flag once more */
    close_all();
}

/* ---- a log line written under a pool lock ---- */

static gms_backend_ops failing_ops;
static const gms_backend_ops *inner_ops;
static bool decommit_fails;

static int failing_decommit(gms_backend *be, gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    if (decommit_fails)
        return EIO;
    return inner_ops->decommit(be, c, off, len);
}

/* Wraps the host backend in place: its decommit fails on demand. */
static int wrap(gms_backend *inner, gms_backend **out)
{
    inner_ops = inner->ops;
    failing_ops = *inner->ops;
    failing_ops.decommit = failing_decommit;
    inner->ops = &failing_ops;
    *out = inner;
    return 0;
}

static void log_under_lock(void)
{
    gms__backend_wrap = wrap;
    open_all(GMS_SAFETY_OFF); /* frees go straight to the granule cache */
    gms__backend_wrap = NULL;
    behaviour = DO_ALLOC_FREE;
    gms_buf b = alloc_or_die(the_ctx, 3u << 20);
    CHECK_OK(gms_free(the_ctx, b));
    decommit_fails = true;
    /* Returning the cached granules fails: logged, under the pool lock
     * before the fix, and on_log then waits for that lock. */
    CHECK_OK(gms_trim(the_rt));
    CHECK(log_unmaps == 1);
    decommit_fails = false;
    CHECK_OK(gms_trim(the_rt));
    CHECK(log_unmaps == 1);
    CHECK_OK(gms_verify(the_rt, NULL));
    close_all();
}

/* ---- the audit writer's log lines ---- */

static unsigned audit_logs, audit_logs_elsewhere;
static pthread_t main_thread;

static void on_audit_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    if (!strstr(msg, "audit trail"))
        return;
    audit_logs++;
    if (!pthread_equal(pthread_self(), main_thread))
        audit_logs_elsewhere++;
    if (!the_ctx)
        return; /* the runtime is closing: not to be used (threading.md) */
    gms_audit_flush(the_rt); /* waits for the writer: deadlocks on its thread */
    gms_buf b;
    if (gms_alloc(the_ctx, 100, 0, &b) == GMS_OK)
        gms_free(the_ctx, b);
}

static void log_from_audit_writer(void)
{
    static const uint8_t key[32] = "reentrant-callbacks-test-key-32";
    char dir[] = "/tmp/gms-reentrant-XXXXXX", blocker[64];
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.log = on_audit_log;
    o.audit_dir = dir;
    o.audit_key = key;
    o.audit_key_len = sizeof key;
    o.audit_segment_bytes = 1; /* the smallest: rotates every few records */
    main_thread = pthread_self();
    the_rt = NULL;
    CHECK_OK(gms_runtime_open(&the_rt, &o));
    if (!the_rt)
        return;
    the_ctx = ctx_of(the_rt, "acme", "alice", GMS_LEVEL_INTERNAL);
    /* The writer's next segment cannot be made: it says so in the log. */
    snprintf(blocker, sizeof blocker, "%s/.gms-audit-new", dir);
    CHECK(mkdir(blocker, 0700) == 0);
    for (int i = 0; i < 200; i++) {
        gms_buf b = alloc_or_die(the_ctx, 100);
        gms_free(the_ctx, b);
    }
    gms_audit_flush(the_rt); /* fails: the trail is broken */
    gms_buf b = alloc_or_die(the_ctx, 100); /* delivers the writer's line */
    gms_free(the_ctx, b);
    CHECK(audit_logs >= 1);
    CHECK(audit_logs_elsewhere == 0);
    gms_context_close(the_ctx);
    the_ctx = NULL;
    gms_runtime_close(the_rt);
    CHECK(audit_logs_elsewhere == 0);
    rmdir(blocker);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir); /* mkdtemp's name: no quote */
    CHECK(system(cmd) == 0);
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    alarm(60);
    one_overflow(0);
    one_overflow(DO_ALLOC_FREE);
    one_overflow(DO_ALLOC_FREE | DO_VERIFY | DO_SYNC);
    one_overflow(DO_FAIL);
    nested_corruption(0);
    nested_corruption(DO_ALLOC_FREE | DO_VERIFY);
    verify_finds_many();
    log_under_lock();
    log_from_audit_writer();
    return test_done();
}
