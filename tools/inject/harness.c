/*
 * harness.c: what every gms-inject trial uses: the recorder of violation
 * callbacks and log lines, runtime helpers that die on an error, and the
 * forked children whose write must fault.
 */
#include "inject.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The random stream of inject.h; the driver seeds it for each class. */
uint64_t rng;

/* ---- what gms tells us: violations and log lines ---------------------- */

violation_log V;
uint64_t n_logs, n_leak_logs;

/* Violations the device finds arrive on the runtime's collector thread. */
static pthread_mutex_t V_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    pthread_mutex_lock(&V_lock);
    if (V.n < VMAX) {
        V.kind[V.n] = v->kind;
        V.handle[V.n] = v->handle;
        V.address[V.n] = v->address;
        V.offset[V.n] = v->offset;
        V.history[V.n] = v->message && strstr(v->message, "allocated by user") != NULL;
    }
    V.n++;
    pthread_mutex_unlock(&V_lock);
}

void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    n_logs++;
    if (strstr(msg, "leak"))
        n_leak_logs++;
}

void v_reset(void)
{
    pthread_mutex_lock(&V_lock);
    V.n = 0;
    pthread_mutex_unlock(&V_lock);
}

bool v_for(gms_buf h)
{
    pthread_mutex_lock(&V_lock);
    bool found = false;
    for (unsigned i = 0; i < V.n && i < VMAX && !found; i++)
        found = h == 0 || V.handle[i] == h;
    pthread_mutex_unlock(&V_lock);
    return found;
}

bool v_in(gms_violation_kind k, uint64_t lo, uint64_t hi)
{
    pthread_mutex_lock(&V_lock);
    bool found = false;
    for (unsigned i = 0; i < V.n && i < VMAX && !found; i++)
        found = (k == 0 || V.kind[i] == k) && V.address[i] >= lo && V.address[i] < hi;
    pthread_mutex_unlock(&V_lock);
    return found;
}

/* ---- runtime helpers ------------------------------------------------- */

void die(const char *what, int rc)
{
    fprintf(stderr, "gms-inject: %s: %s (%s)\n", what, gms_strerror(rc), gms_error_last());
    exit(2);
}

gms_runtime *rt_open(uint32_t redzone)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = opt.backend;
    o.granule_bytes = GRANULE;
    o.chunk_bytes = CHUNK;
    o.log = quiet_log;
    o.redzone_bytes = redzone;
    gms_runtime *rt;
    int rc = gms_runtime_open(&rt, &o);
    if (rc)
        die("opening a runtime", rc);
    if ((rc = gms_on_violation(rt, on_violation, NULL)) != GMS_OK)
        die("registering the violation callback", rc);
    return rt;
}

gms_context *ctx_open(gms_runtime *rt, const char *tenant, const char *user, gms_level level,
                      gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = user;
    d.level = level;
    d.language = lang;
    gms_context *c;
    int rc = gms_context_open(&c, rt, &d);
    if (rc)
        die("opening a context", rc);
    return c;
}

gms_buf xalloc(gms_context *c, size_t size)
{
    gms_buf b;
    int rc = gms_alloc(c, size, 0, &b);
    if (rc)
        die("gms_alloc", rc);
    return b;
}

uint8_t *xptr(gms_context *c, gms_buf b)
{
    void *p;
    int rc = gms_buf_ptr(c, b, &p);
    if (rc)
        die("gms_buf_ptr", rc);
    return p;
}

gms_buf_info xinfo(gms_context *c, gms_buf b)
{
    gms_buf_info i;
    int rc = gms_buf_info_get(c, b, &i);
    if (rc)
        die("gms_buf_info", rc);
    return i;
}

void corrupt(uint8_t *p, size_t n)
{
    volatile uint8_t *q = p;
    for (size_t i = 0; i < n; i++)
        q[i] ^= rnd_nonzero_byte();
}

/* ---- forked children whose write must fault ------------------------- */

/* At most opt.jobs in flight. */
static unsigned in_flight;

static void reap_one(tally *t)
{
    int status;
    pid_t pid = wait(&status);
    if (pid < 0) {
        perror("gms-inject: wait");
        exit(2);
    }
    in_flight--;
    bool faulted = WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS);
    if (!faulted)
        miss(t, "child %d: %s %d", (int)pid, WIFSIGNALED(status) ? "signal" : "exit status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    t->by_fault += faulted;
    count(t, faulted);
}

pid_t fork_child(tally *t)
{
    while (in_flight >= opt.jobs)
        reap_one(t);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("gms-inject: fork");
        exit(2);
    }
    if (pid > 0)
        in_flight++;
    return pid;
}

void reap_all(tally *t)
{
    while (in_flight)
        reap_one(t);
}

void child_write(uint8_t *p, size_t n)
{
    /* No core files for the expected faults. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    corrupt(p, n);
    _exit(0);
}
