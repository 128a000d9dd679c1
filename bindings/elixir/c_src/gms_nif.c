/*
 * gms_nif.c: the NIF behind the Gms Elixir module (lib/gms.ex).
 *
 * Runtimes, contexts and buffers are NIF resources. A buffer resource keeps
 * its context resource alive and a context its runtime, so closes happen in
 * order: a context closes only once no buffer term of it is left.
 *
 * A buffer belongs to a process (the one that allocated or acquired it, or
 * received it by transfer), which it monitors: when that process dies, the
 * down callback releases the handle at once, without waiting for a garbage
 * collection. Terms of a released buffer that live on elsewhere get
 * {:error, :invalid_handle}.
 *
 * Calls whose time grows with a size (copies, scrubs on free, hashes of
 * immutable shares, verification) go to a dirty scheduler above
 * DIRTY_BYTES; releases of large buffers from destructors and down
 * callbacks, which run where the BEAM calls them, go to a releaser thread.
 *
 * Memory pressure: the callback registered on the runtime sends the Elixir
 * reaper (Gms.Reaper) a {:gms_pressure, ...} message; it collects garbage
 * in every process but the allocating one and tells subscribers. On a
 * dirty scheduler or a thread foreign to the BEAM the callback then waits
 * (bounded) for it, so the ladder's retry finds the memory freed. On a
 * normal scheduler it must not block: it does nothing, and Gms.alloc,
 * seeing :quota or :no_memory, collects its own process and retries on a
 * dirty scheduler (alloc_dirty).
 *
 * Access windows (gms/access.h) belong to the handle, not to a process: a
 * buffer released with its window open (its owner died inside
 * with_access) ends the window first, or gms would refuse the release.
 *
 * This file includes gms.h and gms/access.h, so the compiler checks every
 * call against the headers: there are no hand-written declarations of the
 * C ABI here.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <erl_nif.h>
#include <gms.h>
#include <gms/access.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define DIRTY_BYTES (64u * 1024u)  /* more than this: a dirty scheduler */
#define PRESSURE_WAIT_MS 2000      /* the most a pressure callback waits */
#define PRESSURE_QUIET_MS 5        /* ...and for destructors to stop coming */

typedef struct {
    gms_runtime *rt;
} rt_res;

typedef struct {
    gms_context *ctx;
    rt_res *rt; /* kept */
} ctx_res;

typedef struct {
    ErlNifMutex *lock; /* guards handle, owner, mon, monitored */
    ctx_res *ctx;      /* kept */
    gms_buf handle;    /* GMS_BUF_NULL once released */
    uint64_t size;
    ErlNifPid owner;
    ErlNifMonitor mon;
    int monitored;
    int window; /* an access window is open on handle */
} buf_res;

/* What an Elixir term holds: the buffer's state lives in a resource of its
 * own, because the BEAM delays the destructor of a resource with a monitor
 * until the monitored process has handled the demonitor. The term's
 * destructor runs at once and releases the handle; the state follows. */
typedef struct {
    buf_res *b; /* kept */
} buf_term_res;

static ErlNifResourceType *rt_type, *ctx_type, *state_type, *buf_type;

/* ---- process-wide state: the pressure hook and the releaser thread ---- */

typedef struct release_item {
    struct release_item *next;
    ctx_res *ctx; /* kept until released */
    gms_buf handle;
} release_item;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    gms_runtime *rt; /* our reference to the shared runtime, hooked */
    int has_reaper;
    ErlNifPid reaper;
    uint64_t next_token, done_token;
    uint64_t dtors; /* buffer terms collected so far */
    release_item *queue;
    int releasing, stopping;
    ErlNifTid releaser;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* The env of the process whose NIF call is in gms on this thread. */
static __thread ErlNifEnv *tls_env;

static ERL_NIF_TERM a_ok, a_error, a_nil, a_true, a_false, a_gms_pressure, a_unknown;
static ERL_NIF_TERM a_err[12]; /* by -code */
static ERL_NIF_TERM a_level[4], a_lang[8], a_read, a_read_write, a_atomic;

static const char *const err_names[12] = {
    "ok",          "invalid_arg", "invalid_handle", "access_denied",
    "out_of_bounds", "quota",     "no_memory",      "read_only",
    "corruption",  "backend",     "unsupported",    "busy"};

static ERL_NIF_TERM code_atom(int code) {
    return (code <= 0 && code >= -11) ? a_err[-code] : a_unknown;
}

static ERL_NIF_TERM make_bin(ErlNifEnv *env, const char *s) {
    ERL_NIF_TERM t;
    size_t n = strlen(s);
    memcpy(enif_make_new_binary(env, n, &t), s, n);
    return t;
}

/* {:error, code_atom, message}: the Elixir side keeps the atom and uses the
 * message for the exception of the ! variants. */
static ERL_NIF_TERM gms_error(ErlNifEnv *env, int code) {
    return enif_make_tuple3(env, a_error, code_atom(code), make_bin(env, gms_error_last()));
}

static ERL_NIF_TERM own_error(ErlNifEnv *env, int code, const char *msg) {
    return enif_make_tuple3(env, a_error, code_atom(code), make_bin(env, msg));
}

static ERL_NIF_TERM ok_tuple(ErlNifEnv *env, ERL_NIF_TERM t) {
    return enif_make_tuple2(env, a_ok, t);
}

static ERL_NIF_TERM ok_or_error(ErlNifEnv *env, int rc) {
    return rc == GMS_OK ? a_ok : gms_error(env, rc);
}

/* ---- releasing handles -------------------------------------------------- */

/* Releases a handle from a destructor or a down callback: small buffers at
 * once, large ones (whose scrub takes time) on the releaser thread. */
static void release_handle(ctx_res *ctx, gms_buf handle, uint64_t size) {
    if (size <= DIRTY_BYTES) {
        gms_free(ctx->ctx, handle);
        return;
    }
    release_item *it = enif_alloc(sizeof *it);
    if (it == NULL) { /* no memory for the queue entry: free here */
        gms_free(ctx->ctx, handle);
        return;
    }
    enif_keep_resource(ctx);
    it->ctx = ctx;
    it->handle = handle;
    pthread_mutex_lock(&g.lock);
    it->next = g.queue;
    g.queue = it;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
}

static void *releaser_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g.lock);
    for (;;) {
        while (g.queue == NULL && !g.stopping)
            pthread_cond_wait(&g.cond, &g.lock);
        if (g.queue == NULL)
            break; /* stopping, nothing left */
        release_item *it = g.queue;
        g.queue = it->next;
        g.releasing = 1;
        pthread_mutex_unlock(&g.lock);
        gms_free(it->ctx->ctx, it->handle);
        enif_release_resource(it->ctx);
        enif_free(it);
        pthread_mutex_lock(&g.lock);
        g.releasing = 0;
        pthread_cond_broadcast(&g.cond);
    }
    pthread_mutex_unlock(&g.lock);
    return NULL;
}

/* ---- resource callbacks ----------------------------------------------- */

static void rt_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    gms_runtime_close(((rt_res *)obj)->rt);
}

static void ctx_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    ctx_res *c = obj;
    gms_context_close(c->ctx);
    enif_release_resource(c->rt);
}

/* Ends the window still open on handle h of b (b->lock held), so that its
 * release is not refused. */
static void end_window(buf_res *b, gms_buf h) {
    if (b->window && h != GMS_BUF_NULL)
        gms_access_end(b->ctx->ctx, h, NULL);
    b->window = 0;
}

/* The last term of the buffer was collected. */
static void buf_dtor(ErlNifEnv *env, void *obj) {
    buf_res *b = ((buf_term_res *)obj)->b;
    pthread_mutex_lock(&g.lock);
    g.dtors++;
    pthread_mutex_unlock(&g.lock);
    enif_mutex_lock(b->lock);
    gms_buf h = b->handle;
    b->handle = GMS_BUF_NULL;
    if (b->monitored)
        enif_demonitor_process(env, b, &b->mon);
    b->monitored = 0;
    end_window(b, h);
    enif_mutex_unlock(b->lock);
    if (h != GMS_BUF_NULL)
        release_handle(b->ctx, h, b->size);
    enif_release_resource(b);
}

static void state_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    buf_res *b = obj;
    /* A handle is left only when no term was ever made (a failed call). */
    if (b->handle != GMS_BUF_NULL)
        release_handle(b->ctx, b->handle, b->size);
    enif_release_resource(b->ctx);
    enif_mutex_destroy(b->lock);
}

/* The owner died: its buffer goes now, not at the next collection. */
static void buf_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon) {
    (void)env;
    (void)pid;
    buf_res *b = obj;
    gms_buf h = GMS_BUF_NULL;
    enif_mutex_lock(b->lock);
    if (b->monitored && enif_compare_monitors(mon, &b->mon) == 0) {
        h = b->handle;
        b->handle = GMS_BUF_NULL;
        b->monitored = 0;
        end_window(b, h);
    }
    enif_mutex_unlock(b->lock);
    if (h != GMS_BUF_NULL)
        release_handle(b->ctx, h, b->size);
}

/* ---- the pressure callback -------------------------------------------- */

static void timespec_after_ms(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void on_pressure(void *user, const gms_pressure *p) {
    (void)user;
    ErlNifEnv *env = tls_env;
    int thread = enif_thread_type();
    /* A normal scheduler must not wait; a scheduler thread running another
     * library's NIF has no env to send from. */
    if (thread == ERL_NIF_THR_NORMAL_SCHEDULER || (env == NULL && thread != ERL_NIF_THR_UNDEFINED))
        return;
    pthread_mutex_lock(&g.lock);
    if (!g.has_reaper) {
        pthread_mutex_unlock(&g.lock);
        return;
    }
    ErlNifPid reaper = g.reaper;
    uint64_t token = ++g.next_token;
    pthread_mutex_unlock(&g.lock);

    ErlNifEnv *msg_env = enif_alloc_env();
    ErlNifPid self;
    ERL_NIF_TERM caller = (env != NULL && enif_self(env, &self)) ? enif_make_pid(msg_env, &self) : a_nil;
    ERL_NIF_TERM msg = enif_make_tuple5(
        msg_env, a_gms_pressure, enif_make_uint64(msg_env, token), caller,
        make_bin(msg_env, p->tenant != NULL ? p->tenant : ""),
        enif_make_tuple2(msg_env, enif_make_uint64(msg_env, p->bytes_wanted), code_atom(p->reason)));
    int sent = enif_send(env, &reaper, msg_env, msg);
    enif_free_env(msg_env);
    if (!sent)
        return; /* the reaper is gone */

    /* Wait for the reaper's collections, then for the releases they queued.
     * The BEAM may call a collected term's destructor a moment after the
     * collection has answered, so wait on while destructors keep coming,
     * until none came for PRESSURE_QUIET_MS. */
    struct timespec deadline, quiet;
    timespec_after_ms(&deadline, PRESSURE_WAIT_MS);
    pthread_mutex_lock(&g.lock);
    for (int windows = 0; windows < PRESSURE_WAIT_MS / PRESSURE_QUIET_MS; windows++) {
        while (g.done_token < token || g.queue != NULL || g.releasing)
            if (pthread_cond_timedwait(&g.cond, &g.lock, &deadline) == ETIMEDOUT)
                goto out;
        uint64_t seen = g.dtors;
        timespec_after_ms(&quiet, PRESSURE_QUIET_MS);
        while (g.dtors == seen && pthread_cond_timedwait(&g.cond, &g.lock, &quiet) != ETIMEDOUT)
            ;
        if (g.dtors == seen)
            break;
    }
out:
    pthread_mutex_unlock(&g.lock);
}

/* Takes one more reference to the shared runtime, hooked once. */
static int hook_shared_runtime(void) {
    int rc = GMS_OK;
    pthread_mutex_lock(&g.lock);
    if (g.rt == NULL) {
        rc = gms_runtime_open(&g.rt, NULL);
        if (rc == GMS_OK && (rc = gms_on_pressure(g.rt, on_pressure, NULL)) != GMS_OK) {
            gms_runtime_close(g.rt);
            g.rt = NULL;
        }
    }
    pthread_mutex_unlock(&g.lock);
    return rc;
}

/* ---- argument helpers ------------------------------------------------- */

static int get_buf(ErlNifEnv *env, ERL_NIF_TERM t, buf_res **out) {
    buf_term_res *term;
    if (!enif_get_resource(env, t, buf_type, (void **)&term))
        return 0;
    *out = term->b;
    return 1;
}

/* A printable name as a NUL-terminated string; 0 when not a binary of at
 * most GMS_NAME_MAX bytes (gms checks the rest). */
static int get_name(ErlNifEnv *env, ERL_NIF_TERM t, char out[GMS_NAME_MAX + 1]) {
    ErlNifBinary bin;
    if (!enif_inspect_binary(env, t, &bin) || bin.size > GMS_NAME_MAX)
        return 0;
    memcpy(out, bin.data, bin.size);
    out[bin.size] = '\0';
    return memchr(out, '\0', bin.size) == NULL;
}

/* The live handle of b when the calling process owns it. */
static int owned_handle(ErlNifEnv *env, buf_res *b, gms_buf *out, ERL_NIF_TERM *err) {
    ErlNifPid self;
    if (b->handle == GMS_BUF_NULL) {
        *err = own_error(env, GMS_E_INVALID_HANDLE, "the buffer was released");
        return 0;
    }
    if (!enif_self(env, &self) || enif_compare_pids(&self, &b->owner) != 0) {
        *err = own_error(env, GMS_E_ACCESS_DENIED, "only the owner process may do this");
        return 0;
    }
    *out = b->handle;
    return 1;
}

/* The handle, or GMS_BUF_NULL once released or once its owner is dead
 * (whose down callback may still be on its way): a buffer is unusable as
 * soon as anyone can see its owner gone. */
static gms_buf current_handle(ErlNifEnv *env, buf_res *b) {
    enif_mutex_lock(b->lock);
    gms_buf h = b->handle;
    ErlNifPid owner = b->owner;
    enif_mutex_unlock(b->lock);
    return h != GMS_BUF_NULL && enif_is_process_alive(env, &owner) ? h : GMS_BUF_NULL;
}

/* A new buffer resource for handle, owned by pid. 0 when pid is not alive
 * (nothing made, handle untouched). */
static buf_res *new_buf(ErlNifEnv *env, ctx_res *ctx, const ErlNifPid *pid, uint64_t size) {
    buf_res *b = enif_alloc_resource(state_type, sizeof *b);
    memset(b, 0, sizeof *b);
    b->lock = enif_mutex_create("gms_buf");
    b->ctx = ctx;
    enif_keep_resource(ctx);
    b->size = size;
    b->owner = *pid;
    if (enif_monitor_process(env, b, pid, &b->mon) != 0) {
        enif_release_resource(b);
        return NULL;
    }
    b->monitored = 1;
    return b;
}

/* {:ok, term} for b, the term taking over the caller's reference to b. */
static ERL_NIF_TERM buf_term(ErlNifEnv *env, buf_res *b) {
    buf_term_res *term = enif_alloc_resource(buf_type, sizeof *term);
    term->b = b;
    ERL_NIF_TERM t = enif_make_resource(env, term);
    enif_release_resource(term);
    return ok_tuple(env, t);
}

/* Runs fn on a dirty CPU scheduler when bytes is large. */
static ERL_NIF_TERM sized(ErlNifEnv *env, uint64_t bytes, const char *name,
                          ERL_NIF_TERM (*fn)(ErlNifEnv *, int, const ERL_NIF_TERM[]),
                          int argc, const ERL_NIF_TERM argv[]) {
    if (bytes > DIRTY_BYTES && enif_thread_type() == ERL_NIF_THR_NORMAL_SCHEDULER)
        return enif_schedule_nif(env, name, ERL_NIF_DIRTY_JOB_CPU_BOUND, fn, argc, argv);
    return fn(env, argc, argv);
}

/* ---- runtime ------------------------------------------------------------ */

static ERL_NIF_TERM nif_runtime_open(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    (void)argv;
    int rc = hook_shared_runtime();
    if (rc != GMS_OK)
        return gms_error(env, rc);
    gms_runtime *rt;
    if ((rc = gms_runtime_open(&rt, NULL)) != GMS_OK)
        return gms_error(env, rc);
    rt_res *r = enif_alloc_resource(rt_type, sizeof *r);
    r->rt = rt;
    ERL_NIF_TERM t = enif_make_resource(env, r);
    enif_release_resource(r);
    return ok_tuple(env, t);
}

/* runtime_open_broker(path): a private runtime whose memory comes from the
 * gmsd at path (gms_runtime_options.broker, docs/broker.md), with the
 * pressure hook of the shared one. */
static ERL_NIF_TERM nif_runtime_open_broker(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifBinary bin;
    if (!enif_inspect_binary(env, argv[0], &bin))
        return enif_make_badarg(env);
    if (memchr(bin.data, '\0', bin.size) != NULL)
        return own_error(env, GMS_E_INVALID_ARG, "the broker's socket path contains a NUL byte");
    char *path = enif_alloc(bin.size + 1);
    if (path == NULL)
        return own_error(env, GMS_E_NO_MEMORY, "no memory for the broker's socket path");
    memcpy(path, bin.data, bin.size);
    path[bin.size] = '\0';
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.broker = path;
    gms_runtime *rt;
    int rc = gms_runtime_open(&rt, &o);
    enif_free(path); /* libgms keeps no pointer to it */
    if (rc != GMS_OK)
        return gms_error(env, rc);
    if ((rc = gms_on_pressure(rt, on_pressure, NULL)) != GMS_OK) {
        ERL_NIF_TERM err = gms_error(env, rc);
        gms_runtime_close(rt);
        return err;
    }
    rt_res *r = enif_alloc_resource(rt_type, sizeof *r);
    r->rt = rt;
    ERL_NIF_TERM t = enif_make_resource(env, r);
    enif_release_resource(r);
    return ok_tuple(env, t);
}

static ERL_NIF_TERM nif_backend_name(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rt_res *r;
    if (!enif_get_resource(env, argv[0], rt_type, (void **)&r))
        return enif_make_badarg(env);
    return make_bin(env, gms_runtime_backend_name(r->rt));
}

static ERL_NIF_TERM nif_set_quota(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rt_res *r;
    char tenant[GMS_NAME_MAX + 1];
    ErlNifUInt64 max_bytes, max_allocs;
    if (!enif_get_resource(env, argv[0], rt_type, (void **)&r) || !enif_get_uint64(env, argv[2], &max_bytes) ||
        !enif_get_uint64(env, argv[3], &max_allocs))
        return enif_make_badarg(env);
    if (!get_name(env, argv[1], tenant))
        return own_error(env, GMS_E_INVALID_ARG, "a tenant is 1..63 bytes of printable ASCII");
    return ok_or_error(env, gms_tenant_set_quota(r->rt, tenant, max_bytes, max_allocs));
}

#define PUT(key, val) enif_make_map_put(env, m, enif_make_atom(env, key), (val), &m)

static ERL_NIF_TERM nif_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rt_res *r;
    gms_stats s;
    if (!enif_get_resource(env, argv[0], rt_type, (void **)&r))
        return enif_make_badarg(env);
    int rc = gms_stats_get(r->rt, &s);
    if (rc != GMS_OK)
        return gms_error(env, rc);
    ERL_NIF_TERM m = enif_make_new_map(env);
#define U(field) PUT(#field, enif_make_uint64(env, s.field))
    U(live_bytes); U(live_blocks); U(peak_live_bytes); U(held_bytes); U(peak_held_bytes);
    U(reserved_bytes); U(allocs); U(frees); U(quota_refusals); U(leaked_blocks); U(leaked_bytes);
    U(pools); U(contexts); U(tenants); U(shares); U(pressure_events); U(pressure_recovered);
    U(pressure_steps); U(maps); U(unmaps); U(device_waits);
#undef U
    PUT("fragmentation", enif_make_double(env, s.fragmentation));
    return ok_tuple(env, m);
}

/* tenant_stats(rt, tenant): gms_tenant_stats of the tenant of that name. */
static ERL_NIF_TERM nif_tenant_stats(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rt_res *r;
    char tenant[GMS_NAME_MAX + 1];
    gms_stats all;
    gms_tenant_stats s;
    if (!enif_get_resource(env, argv[0], rt_type, (void **)&r))
        return enif_make_badarg(env);
    if (!get_name(env, argv[1], tenant))
        return own_error(env, GMS_E_INVALID_ARG, "a tenant is 1..63 bytes of printable ASCII");
    int rc = gms_stats_get(r->rt, &all);
    for (uint64_t i = 0; rc == GMS_OK && i < all.tenants; i++) {
        if ((rc = gms_tenant_stats_get(r->rt, i, &s)) != GMS_OK || strcmp(s.tenant, tenant) != 0)
            continue;
        ERL_NIF_TERM m = enif_make_new_map(env);
#define U(field) PUT(#field, enif_make_uint64(env, s.field))
        U(live_bytes); U(live_blocks); U(peak_live_bytes); U(held_bytes); U(max_bytes); U(max_allocs);
        U(quota_refusals); U(leaked_blocks); U(leaked_bytes);
#undef U
        return ok_tuple(env, m);
    }
    return rc != GMS_OK ? gms_error(env, rc) : own_error(env, GMS_E_INVALID_ARG, "no such tenant");
}

static ERL_NIF_TERM nif_verify(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rt_res *r;
    if (!enif_get_resource(env, argv[0], rt_type, (void **)&r))
        return enif_make_badarg(env);
    return ok_or_error(env, gms_verify(r->rt, NULL));
}

static ERL_NIF_TERM nif_trim(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rt_res *r;
    if (!enif_get_resource(env, argv[0], rt_type, (void **)&r))
        return enif_make_badarg(env);
    return ok_or_error(env, gms_trim(r->rt));
}

/* ---- contexts ------------------------------------------------------------ */

/* context_open(rt, tenant, user, level) */
static ERL_NIF_TERM nif_context_open(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rt_res *r;
    char tenant[GMS_NAME_MAX + 1], user[GMS_NAME_MAX + 1];
    int level;
    if (!enif_get_resource(env, argv[0], rt_type, (void **)&r) || !enif_get_int(env, argv[3], &level))
        return enif_make_badarg(env);
    if (!get_name(env, argv[1], tenant) || !get_name(env, argv[2], user))
        return own_error(env, GMS_E_INVALID_ARG, "tenant and user are 1..63 bytes of printable ASCII");
    gms_context_desc desc = GMS_CONTEXT_DESC_INIT;
    desc.tenant = tenant;
    desc.user = user;
    desc.level = (gms_level)level;
    desc.language = GMS_LANG_ELIXIR;
    gms_context *ctx;
    int rc = gms_context_open(&ctx, r->rt, &desc);
    if (rc != GMS_OK)
        return gms_error(env, rc);
    ctx_res *c = enif_alloc_resource(ctx_type, sizeof *c);
    c->ctx = ctx;
    c->rt = r;
    enif_keep_resource(r);
    ERL_NIF_TERM t = enif_make_resource(env, c);
    enif_release_resource(c);
    return ok_tuple(env, t);
}

/* ---- buffers ------------------------------------------------------------- */

/* alloc(ctx, size, flags); alloc_dirty is the same on a dirty I/O scheduler,
 * where a pressure callback may wait for the reaper. */
static ERL_NIF_TERM nif_alloc(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ctx_res *c;
    ErlNifUInt64 size;
    unsigned flags;
    ErlNifPid self;
    if (!enif_get_resource(env, argv[0], ctx_type, (void **)&c) || !enif_get_uint64(env, argv[1], &size) ||
        !enif_get_uint(env, argv[2], &flags) || !enif_self(env, &self))
        return enif_make_badarg(env);
    buf_res *b = new_buf(env, c, &self, size);
    if (b == NULL)
        return enif_make_badarg(env); /* self is alive: cannot happen */
    tls_env = env;
    int rc = gms_alloc(c->ctx, (size_t)size, flags, &b->handle);
    tls_env = NULL;
    if (rc != GMS_OK) {
        ERL_NIF_TERM err = gms_error(env, rc);
        enif_release_resource(b);
        return err;
    }
    return buf_term(env, b);
}

static ERL_NIF_TERM do_free(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    gms_buf h;
    ERL_NIF_TERM err;
    if (!get_buf(env, argv[0], &b))
        return enif_make_badarg(env);
    enif_mutex_lock(b->lock);
    if (!owned_handle(env, b, &h, &err)) {
        enif_mutex_unlock(b->lock);
        return err;
    }
    int rc = gms_free(b->ctx->ctx, h);
    if (rc == GMS_OK) {
        b->handle = GMS_BUF_NULL;
        enif_demonitor_process(env, b, &b->mon);
        b->monitored = 0;
    }
    enif_mutex_unlock(b->lock);
    return ok_or_error(env, rc);
}

static ERL_NIF_TERM nif_free(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    buf_res *b;
    if (!get_buf(env, argv[0], &b))
        return enif_make_badarg(env);
    return sized(env, b->size, "free", do_free, argc, argv);
}

/* read(buf, off, len) -> {:ok, binary} */
static ERL_NIF_TERM do_read(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    ErlNifUInt64 off, len;
    ErlNifBinary out;
    if (!get_buf(env, argv[0], &b) || !enif_get_uint64(env, argv[1], &off) || !enif_get_uint64(env, argv[2], &len))
        return enif_make_badarg(env);
    if (len > b->size)
        return own_error(env, GMS_E_OUT_OF_BOUNDS, "the read is longer than the buffer");
    if (!enif_alloc_binary((size_t)len, &out))
        return own_error(env, GMS_E_NO_MEMORY, "no memory for the binary");
    int rc = gms_read(b->ctx->ctx, current_handle(env, b), off, out.data, out.size);
    if (rc != GMS_OK) {
        ERL_NIF_TERM err = gms_error(env, rc);
        enif_release_binary(&out);
        return err;
    }
    return ok_tuple(env, enif_make_binary(env, &out));
}

static ERL_NIF_TERM nif_read(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    ErlNifUInt64 len;
    if (!enif_get_uint64(env, argv[2], &len))
        return enif_make_badarg(env);
    return sized(env, len, "read", do_read, argc, argv);
}

/* write(buf, off, binary) */
static ERL_NIF_TERM do_write(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    ErlNifUInt64 off;
    ErlNifBinary data;
    if (!get_buf(env, argv[0], &b) || !enif_get_uint64(env, argv[1], &off) ||
        !enif_inspect_binary(env, argv[2], &data))
        return enif_make_badarg(env);
    return ok_or_error(env, gms_write(b->ctx->ctx, current_handle(env, b), off, data.data, data.size));
}

static ERL_NIF_TERM nif_write(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    ErlNifBinary data;
    if (!enif_inspect_binary(env, argv[2], &data))
        return enif_make_badarg(env);
    return sized(env, data.size, "write", do_write, argc, argv);
}

/* fill(buf, off, byte, len) */
static ERL_NIF_TERM do_fill(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    ErlNifUInt64 off, len;
    unsigned byte;
    if (!get_buf(env, argv[0], &b) || !enif_get_uint64(env, argv[1], &off) || !enif_get_uint(env, argv[2], &byte) ||
        byte > 255 || !enif_get_uint64(env, argv[3], &len))
        return enif_make_badarg(env);
    return ok_or_error(env, gms_fill(b->ctx->ctx, current_handle(env, b), off, (int)byte, (size_t)len));
}

static ERL_NIF_TERM nif_fill(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    ErlNifUInt64 len;
    if (!enif_get_uint64(env, argv[3], &len))
        return enif_make_badarg(env);
    return sized(env, len, "fill", do_fill, argc, argv);
}

static ERL_NIF_TERM nif_info(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    gms_buf_info i;
    if (!get_buf(env, argv[0], &b))
        return enif_make_badarg(env);
    enif_mutex_lock(b->lock);
    ErlNifPid owner = b->owner;
    enif_mutex_unlock(b->lock);
    int rc = gms_buf_info_get(b->ctx->ctx, current_handle(env, b), &i);
    if (rc != GMS_OK)
        return gms_error(env, rc);
    ERL_NIF_TERM m = enif_make_new_map(env);
    PUT("size", enif_make_uint64(env, i.size));
    PUT("block_size", enif_make_uint64(env, i.block_size));
    PUT("pool_id", enif_make_uint64(env, i.pool_id));
    PUT("level", i.level <= GMS_LEVEL_SECRET ? a_level[i.level] : a_unknown);
    PUT("language", i.language <= GMS_LANG_OTHER ? a_lang[i.language] : a_unknown);
    PUT("tenant", make_bin(env, i.tenant));
    PUT("user", make_bin(env, i.user));
    PUT("access", i.access == GMS_ACCESS_READ ? a_read : i.access == GMS_ACCESS_ATOMIC ? a_atomic : a_read_write);
    PUT("holders", enif_make_uint(env, i.holders));
    PUT("share_id", i.share_id ? enif_make_uint64(env, i.share_id) : a_nil);
    PUT("immutable", i.immutable ? a_true : a_false);
    PUT("owner", enif_make_pid(env, &owner));
    return ok_tuple(env, m);
}

/* transfer(buf, pid): the same handle, a new owner process. */
static ERL_NIF_TERM nif_transfer(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    ErlNifPid to;
    ErlNifMonitor mon;
    gms_buf h;
    ERL_NIF_TERM err;
    if (!get_buf(env, argv[0], &b) || !enif_get_local_pid(env, argv[1], &to))
        return enif_make_badarg(env);
    enif_mutex_lock(b->lock);
    if (!owned_handle(env, b, &h, &err)) {
        enif_mutex_unlock(b->lock);
        return err;
    }
    if (enif_monitor_process(env, b, &to, &mon) != 0) {
        enif_mutex_unlock(b->lock);
        return own_error(env, GMS_E_INVALID_ARG, "the receiving process is not alive");
    }
    enif_demonitor_process(env, b, &b->mon);
    b->owner = to;
    b->mon = mon;
    enif_mutex_unlock(b->lock);
    return a_ok;
}

/* transfer_context(buf, ctx, pid): gms_transfer into ctx, the result owned
 * by pid; buf is dead afterwards. */
static ERL_NIF_TERM do_transfer_context(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    ctx_res *to;
    ErlNifPid pid;
    gms_buf h;
    ERL_NIF_TERM err;
    if (!get_buf(env, argv[0], &b) || !enif_get_resource(env, argv[1], ctx_type, (void **)&to) ||
        !enif_get_local_pid(env, argv[2], &pid))
        return enif_make_badarg(env);
    buf_res *nb = new_buf(env, to, &pid, b->size);
    if (nb == NULL)
        return own_error(env, GMS_E_INVALID_ARG, "the receiving process is not alive");
    enif_mutex_lock(b->lock);
    if (!owned_handle(env, b, &h, &err)) {
        enif_mutex_unlock(b->lock);
        enif_release_resource(nb);
        return err;
    }
    tls_env = env;
    int rc = gms_transfer(b->ctx->ctx, h, to->ctx, &nb->handle);
    tls_env = NULL;
    if (rc == GMS_OK) {
        b->handle = GMS_BUF_NULL;
        enif_demonitor_process(env, b, &b->mon);
        b->monitored = 0;
    }
    enif_mutex_unlock(b->lock);
    if (rc != GMS_OK) {
        err = gms_error(env, rc);
        enif_release_resource(nb);
        return err;
    }
    return buf_term(env, nb);
}

static ERL_NIF_TERM nif_transfer_context(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    buf_res *b;
    if (!get_buf(env, argv[0], &b))
        return enif_make_badarg(env);
    return sized(env, b->size, "transfer_context", do_transfer_context, argc, argv);
}

/* ---- sharing --------------------------------------------------------------- */

/* share(buf, grants, immutable): grants is a list of
 * {tenant | nil, user | nil, language (-1: any), mode}. */
static ERL_NIF_TERM do_share(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    unsigned n;
    int immutable;
    gms_buf h;
    ERL_NIF_TERM err, head, tail;
    gms_share_grant grants[GMS_SHARE_GRANTS_MAX];
    char names[GMS_SHARE_GRANTS_MAX][2][GMS_NAME_MAX + 1];
    if (!get_buf(env, argv[0], &b) || !enif_get_list_length(env, argv[1], &n) ||
        !enif_get_int(env, argv[2], &immutable))
        return enif_make_badarg(env);
    if (n == 0 || n > GMS_SHARE_GRANTS_MAX)
        return own_error(env, GMS_E_INVALID_ARG, "a share has 1..16 grants");
    tail = argv[1];
    for (unsigned i = 0; enif_get_list_cell(env, tail, &head, &tail); i++) {
        const ERL_NIF_TERM *f;
        int arity, lang, mode;
        if (!enif_get_tuple(env, head, &arity, &f) || arity != 4 || !enif_get_int(env, f[2], &lang) ||
            !enif_get_int(env, f[3], &mode))
            return enif_make_badarg(env);
        for (int k = 0; k < 2; k++)
            if (enif_is_identical(f[k], a_nil))
                names[i][k][0] = '\0';
            else if (!get_name(env, f[k], names[i][k]))
                return own_error(env, GMS_E_INVALID_ARG, "a grant's tenant and user are 1..63 bytes of printable ASCII");
        grants[i].tenant = names[i][0][0] ? names[i][0] : NULL;
        grants[i].user = names[i][1][0] ? names[i][1] : NULL;
        grants[i].language = lang;
        grants[i].mode = (gms_access)mode;
    }
    gms_share_desc desc = GMS_SHARE_DESC_INIT;
    desc.grants = grants;
    desc.ngrants = n;
    desc.immutable = immutable;
    gms_share_id id;
    enif_mutex_lock(b->lock);
    if (!owned_handle(env, b, &h, &err)) {
        enif_mutex_unlock(b->lock);
        return err;
    }
    int rc = gms_share(b->ctx->ctx, h, &desc, &id);
    enif_mutex_unlock(b->lock);
    return rc == GMS_OK ? ok_tuple(env, enif_make_uint64(env, id)) : gms_error(env, rc);
}

static ERL_NIF_TERM nif_share(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    buf_res *b;
    if (!get_buf(env, argv[0], &b))
        return enif_make_badarg(env);
    return sized(env, b->size, "share", do_share, argc, argv);
}

/* acquire(ctx, share_id, mode) */
static ERL_NIF_TERM nif_acquire(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ctx_res *c;
    ErlNifUInt64 id;
    int mode;
    ErlNifPid self;
    gms_buf_info info;
    if (!enif_get_resource(env, argv[0], ctx_type, (void **)&c) || !enif_get_uint64(env, argv[1], &id) ||
        !enif_get_int(env, argv[2], &mode) || !enif_self(env, &self))
        return enif_make_badarg(env);
    buf_res *b = new_buf(env, c, &self, 0);
    if (b == NULL)
        return enif_make_badarg(env);
    int rc = gms_acquire(c->ctx, id, (gms_access)mode, &b->handle);
    if (rc == GMS_OK && (rc = gms_buf_info_get(c->ctx, b->handle, &info)) == GMS_OK)
        b->size = info.size;
    if (rc != GMS_OK) {
        ERL_NIF_TERM err = gms_error(env, rc);
        enif_release_resource(b); /* its destructor releases a handle got */
        return err;
    }
    return buf_term(env, b);
}

/* revoke(ctx, share_id) */
static ERL_NIF_TERM nif_revoke(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ctx_res *c;
    ErlNifUInt64 id;
    if (!enif_get_resource(env, argv[0], ctx_type, (void **)&c) || !enif_get_uint64(env, argv[1], &id))
        return enif_make_badarg(env);
    return ok_or_error(env, gms_revoke(c->ctx, id));
}

/* ---- the pressure hook's Elixir side -------------------------------------- */

/* set_reaper(pid): the process the pressure callback sends to. */
static ERL_NIF_TERM nif_set_reaper(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifPid pid;
    if (!enif_get_local_pid(env, argv[0], &pid))
        return enif_make_badarg(env);
    pthread_mutex_lock(&g.lock);
    g.reaper = pid;
    g.has_reaper = 1;
    pthread_mutex_unlock(&g.lock);
    return a_ok;
}

/* pressure_done(token): the reaper has collected for every token so far. */
static ERL_NIF_TERM nif_pressure_done(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifUInt64 token;
    if (!enif_get_uint64(env, argv[0], &token))
        return enif_make_badarg(env);
    pthread_mutex_lock(&g.lock);
    if (token > g.done_token)
        g.done_token = token;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    return a_ok;
}

/* Waits (on a dirty scheduler) until the releaser thread has nothing left. */
static ERL_NIF_TERM nif_drain_releases(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)env;
    (void)argc;
    (void)argv;
    pthread_mutex_lock(&g.lock);
    while (g.queue != NULL || g.releasing)
        pthread_cond_wait(&g.cond, &g.lock);
    pthread_mutex_unlock(&g.lock);
    return a_ok;
}

/* ---- loading ---------------------------------------------------------------- */

/* ---- access windows and checked atomics (gms/access.h) ----------------
 * Elixir has no CUDA streams: everything goes on the default stream. */

/* access_begin(buf, mode, nowait): the waiting form runs on a dirty I/O
 * scheduler, since gms waits on the host for a conflicting window. */
static ERL_NIF_TERM nif_access_begin(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    int mode, nowait;
    if (!get_buf(env, argv[0], &b) || !enif_get_int(env, argv[1], &mode) || !enif_get_int(env, argv[2], &nowait))
        return enif_make_badarg(env);
    gms_buf h = current_handle(env, b);
    int rc = gms_access_begin(b->ctx->ctx, h, (gms_access)mode, nowait ? GMS_ACCESS_NOWAIT : 0, NULL);
    if (rc == GMS_OK) {
        enif_mutex_lock(b->lock);
        b->window = 1;
        enif_mutex_unlock(b->lock);
    }
    return ok_or_error(env, rc);
}

static ERL_NIF_TERM nif_access_end(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    if (!get_buf(env, argv[0], &b))
        return enif_make_badarg(env);
    gms_buf h = current_handle(env, b); /* takes b->lock itself */
    enif_mutex_lock(b->lock);
    int rc = gms_access_end(b->ctx->ctx, h, NULL);
    if (rc == GMS_OK)
        b->window = 0;
    enif_mutex_unlock(b->lock);
    return ok_or_error(env, rc);
}

/* atomic(buf, offset, op, width, operand, compare) -> {:ok, old}; on a
 * dirty I/O scheduler: on a GPU, fetching the old value syncs the stream. */
static ERL_NIF_TERM nif_atomic(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    buf_res *b;
    ErlNifUInt64 off, operand, compare;
    unsigned op, width;
    if (!get_buf(env, argv[0], &b) || !enif_get_uint64(env, argv[1], &off) || !enif_get_uint(env, argv[2], &op) ||
        !enif_get_uint(env, argv[3], &width) || !enif_get_uint64(env, argv[4], &operand) ||
        !enif_get_uint64(env, argv[5], &compare))
        return enif_make_badarg(env);
    uint64_t old = 0;
    int rc = gms_atomic(b->ctx->ctx, current_handle(env, b), off, (gms_atomic_op)op, width, operand, compare, NULL,
                        &old);
    return rc == GMS_OK ? ok_tuple(env, enif_make_uint64(env, old)) : gms_error(env, rc);
}

static ErlNifResourceType *open_type(ErlNifEnv *env, const char *name, ErlNifResourceDtor *dtor,
                                     ErlNifResourceDown *down) {
    /* members counts the callbacks given: without it the BEAM ignores them
     * all, the destructor included, and nothing is ever freed. */
    ErlNifResourceTypeInit init = {.dtor = dtor, .stop = NULL, .down = down, .members = 3, .dyncall = NULL};
    return enif_init_resource_type(env, name, &init, ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
}

static int load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info) {
    (void)priv;
    (void)info;
    rt_type = open_type(env, "gms_runtime", rt_dtor, NULL);
    ctx_type = open_type(env, "gms_context", ctx_dtor, NULL);
    state_type = open_type(env, "gms_buffer_state", state_dtor, buf_down);
    buf_type = open_type(env, "gms_buffer", buf_dtor, NULL);
    if (rt_type == NULL || ctx_type == NULL || state_type == NULL || buf_type == NULL)
        return 1;
    a_ok = enif_make_atom(env, "ok");
    a_error = enif_make_atom(env, "error");
    a_nil = enif_make_atom(env, "nil");
    a_true = enif_make_atom(env, "true");
    a_false = enif_make_atom(env, "false");
    a_gms_pressure = enif_make_atom(env, "gms_pressure");
    a_unknown = enif_make_atom(env, "unknown");
    a_read = enif_make_atom(env, "read");
    a_read_write = enif_make_atom(env, "read_write");
    a_atomic = enif_make_atom(env, "atomic");
    for (int i = 0; i < 12; i++)
        a_err[i] = enif_make_atom(env, err_names[i]);
    for (int i = 0; i <= GMS_LEVEL_SECRET; i++)
        a_level[i] = enif_make_atom(env, gms_level_name((gms_level)i));
    for (int i = 0; i <= GMS_LANG_OTHER; i++)
        a_lang[i] = enif_make_atom(env, gms_language_name((gms_language)i));
    /* The runtime may be unavailable now (runtime_open then says why). */
    (void)hook_shared_runtime();
    g.stopping = 0;
    return enif_thread_create("gms_releaser", &g.releaser, releaser_main, NULL, NULL) != 0;
}

static void unload(ErlNifEnv *env, void *priv) {
    (void)env;
    (void)priv;
    pthread_mutex_lock(&g.lock);
    g.stopping = 1;
    g.has_reaper = 0;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    enif_thread_join(g.releaser, NULL);
    gms_runtime_close(g.rt);
    g.rt = NULL;
}

static ErlNifFunc funcs[] = {
    {"runtime_open", 0, nif_runtime_open, 0},
    {"runtime_open_broker", 1, nif_runtime_open_broker, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"backend_name", 1, nif_backend_name, 0},
    {"set_quota", 4, nif_set_quota, 0},
    {"stats", 1, nif_stats, 0},
    {"tenant_stats", 2, nif_tenant_stats, 0},
    {"verify", 1, nif_verify, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"trim", 1, nif_trim, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"context_open", 4, nif_context_open, 0},
    {"alloc", 3, nif_alloc, 0},
    {"alloc_dirty", 3, nif_alloc, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"free", 1, nif_free, 0},
    {"read", 3, nif_read, 0},
    {"write", 3, nif_write, 0},
    {"fill", 4, nif_fill, 0},
    {"info", 1, nif_info, 0},
    {"transfer", 2, nif_transfer, 0},
    {"transfer_context", 3, nif_transfer_context, 0},
    {"share", 3, nif_share, 0},
    {"acquire", 3, nif_acquire, 0},
    {"revoke", 2, nif_revoke, 0},
    {"set_reaper", 1, nif_set_reaper, 0},
    {"pressure_done", 1, nif_pressure_done, 0},
    {"drain_releases", 0, nif_drain_releases, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"access_begin", 3, nif_access_begin, 0},
    {"access_begin_dirty", 3, nif_access_begin, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"access_end", 1, nif_access_end, 0},
    {"atomic", 6, nif_atomic, ERL_NIF_DIRTY_JOB_IO_BOUND},
};

ERL_NIF_INIT(Elixir.Gms.Nif, funcs, load, NULL, NULL, unload)
