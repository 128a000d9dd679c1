/*
 * runtime.c: the runtime (backend, handle secret, tenants, pools), contexts
 * and quotas. Everything here takes rt->lock and runs at open/close or
 * configuration time, never on the alloc/free path.
 */
#include "core/internal.h"
#include "core/version.h"
#include "gms/testing.h"
#include "safety/safety.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The process-wide runtime that NULL options open. */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static gms_runtime *shared_rt;

void gms__atomic_max(uint64_t _Atomic *v, uint64_t x)
{
    uint64_t cur = atomic_load_explicit(v, memory_order_relaxed);
    while (x > cur && !atomic_compare_exchange_weak(v, &cur, x)) {
    }
}

void *gms__alloc_meta(gms_runtime *rt, size_t size)
{
    if (gms_failpoint_hit(&rt->failpoint))
        return NULL;
    return malloc(size);
}

void gms__log(gms_runtime *rt, gms_log_level level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (rt->log) {
        char saved[GMS_ERROR_MAX];
        gms__error_save(saved);
        rt->log(rt->log_user, level, msg);
        gms__error_restore(saved);
    } else if (level <= GMS_LOG_WARN)
        fprintf(stderr, "%s\n", msg);
}

const char *gms_level_name(gms_level level)
{
    static const char *names[] = {"public", "internal", "confidential", "secret"};
    return (unsigned)level < 4 ? names[level] : "invalid";
}

const char *gms_language_name(gms_language language)
{
    static const char *names[] = {"c", "rust", "elixir", "julia", "zig", "nim", "python", "other"};
    return (unsigned)language < 8 ? names[language] : "invalid";
}

static const gms_backend_factory *factory_of(gms_backend_kind kind)
{
    switch (kind) {
    case GMS_BACKEND_HOST: return &gms_backend_host_factory;
    case GMS_BACKEND_CUDA: return &gms_backend_cuda_factory;
    case GMS_BACKEND_HIP: return &gms_backend_hip_factory;
    default: return NULL;
    }
}

static int resolve_backend(gms_backend_kind kind, gms_backend_kind *out)
{
    if (kind == GMS_BACKEND_AUTO) {
        const char *env = getenv("GMS_BACKEND");
        if (!env || !*env || strcmp(env, "auto") == 0)
            kind = GMS_BACKEND_AUTO;
        else if (strcmp(env, "host") == 0)
            kind = GMS_BACKEND_HOST;
        else if (strcmp(env, "cuda") == 0)
            kind = GMS_BACKEND_CUDA;
        else if (strcmp(env, "hip") == 0)
            kind = GMS_BACKEND_HIP;
        else
            return gms__fail(GMS_E_INVALID_ARG,
                             "GMS_BACKEND=%s: expected auto, host, cuda or hip", env);
    }
    if (kind == GMS_BACKEND_AUTO) { /* a GPU when the driver loads and sees one */
        kind = gms_backend_cuda_factory.available() ? GMS_BACKEND_CUDA : GMS_BACKEND_HOST;
        gms__backend_why_clear(); /* no driver is no failure here */
    }
    /* HIP only when asked for: not yet run on an AMD GPU (docs/hip.md). */
    const gms_backend_factory *f = factory_of(kind);
    if (!f)
        return gms__fail(GMS_E_INVALID_ARG, "unknown backend kind %d", (int)kind);
    if (!f->available()) {
        gms_backend *none = NULL;
        f->create(0, &none); /* only for its reason */
        int rc = gms__fail(GMS_E_UNSUPPORTED,
                           "the %s backend was asked for but cannot run here: %s", f->name,
                           f->why());
        gms__backend_why_clear(); /* said: no later message repeats it */
        return rc;
    }
    *out = kind;
    return GMS_OK;
}

/* A background thread that calls fn(rt) every ms milliseconds until it is
 * stopped: the verifier and the collector. */
typedef struct gms_ticker {
    gms_runtime *rt;
    void (*fn)(gms_runtime *rt);
    uint32_t ms;
    bool stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
} gms_ticker;

static void *ticker_main(void *arg)
{
    gms_ticker *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)t->ms * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&t->cond, &t->lock, &until);
        if (t->stop)
            break;
        pthread_mutex_unlock(&t->lock);
        t->fn(t->rt);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static int ticker_start(gms_runtime *rt, void (*fn)(gms_runtime *), uint32_t ms, const char *what,
                        gms_ticker **out)
{
    gms_ticker *t = calloc(1, sizeof *t);
    if (!t)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for the %s", what);
    t->rt = rt;
    t->fn = fn;
    t->ms = ms;
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int err = pthread_cond_init(&t->cond, &a);
    pthread_condattr_destroy(&a);
    if (err || pthread_mutex_init(&t->lock, NULL) != 0) {
        if (!err)
            pthread_cond_destroy(&t->cond);
        free(t);
        return gms__fail(GMS_E_NO_MEMORY, "cannot create the %s's condition variable", what);
    }
    if (pthread_create(&t->thread, NULL, ticker_main, t) != 0) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return gms__fail(GMS_E_NO_MEMORY, "cannot start the %s thread", what);
    }
    *out = t;
    return GMS_OK;
}

static void ticker_stop(gms_ticker **tp)
{
    gms_ticker *t = *tp;
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
    *tp = NULL;
}

static void verify_tick(gms_runtime *rt)
{
    gms_verify(rt, NULL); /* what it finds goes to the callbacks */
}

/* The collector's period: with the device's own time to run a batch, the
 * bound on how late a corruption the device found is reported
 * (docs/stream-ordered.md). */
#define GMS_COLLECT_MS 1

/* Gathers the results of every pool's device work that has run, and
 * delivers what they found, on the collector's thread. The pool list only
 * grows (under rt->lock) and lives as long as the runtime. */
static void collect_tick(gms_runtime *rt)
{
    pthread_mutex_lock(&rt->lock);
    gms_pool *p = rt->pools;
    pthread_mutex_unlock(&rt->lock);
    while (p) {
        /* pending: a racy peek; the lock is taken only when it may be set */
        if (atomic_load_explicit(&p->inflight, memory_order_relaxed) ||
            atomic_load_explicit(&p->pending_open, memory_order_relaxed)) {
            gms__pool_lock(p);
            gms__safety_collect(p, true);
            gms__pool_unlock(p);
            gms__violations_deliver(rt);
        }
        pthread_mutex_lock(&rt->lock);
        p = p->next;
        pthread_mutex_unlock(&rt->lock);
    }
}

uint64_t gms__now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int (*gms__backend_wrap)(gms_backend *inner, gms_backend **out);

/* o: options of the current version (gms__struct_read). */
static int runtime_create(gms_runtime **out, const gms_runtime_options *o, uint64_t fail_nth_call)
{
    if (o->reserved)
        return gms__fail(GMS_E_INVALID_ARG,
                         "gms_runtime_options.reserved is %llu: must be 0 (fail_nth_call moved to "
                         "gms/testing.h, gms_testing_runtime_open)",
                         (unsigned long long)o->reserved);
    uint64_t granule = o->granule_bytes ? o->granule_bytes : (2ull << 20);
    uint64_t chunk = o->chunk_bytes ? o->chunk_bytes : (16ull << 30);
    if (granule < 4096 || (granule & (granule - 1)) || granule > (1ull << 32))
        return gms__fail(GMS_E_INVALID_ARG,
                         "granule_bytes %llu: must be a power of two from 4096 to 4 GiB",
                         (unsigned long long)granule);
    if (chunk < granule || chunk % granule || chunk > (1ull << 46))
        return gms__fail(GMS_E_INVALID_ARG,
                         "chunk_bytes %llu: must be a multiple of the granule, at most 64 TiB",
                         (unsigned long long)chunk);
    if ((unsigned)o->safety > GMS_SAFETY_OFF)
        return gms__fail(GMS_E_INVALID_ARG, "safety %d: expected GMS_SAFETY_ON or GMS_SAFETY_OFF",
                         (int)o->safety);
    if ((unsigned)o->on_corruption > GMS_ON_CORRUPTION_ABORT)
        return gms__fail(GMS_E_INVALID_ARG, "on_corruption %d: expected REPORT or ABORT",
                         (int)o->on_corruption);
    if (o->redzone_bytes > 4096)
        return gms__fail(GMS_E_INVALID_ARG, "redzone_bytes %u: at most 4096", o->redzone_bytes);
    if (o->scrub_batch > 65536)
        return gms__fail(GMS_E_INVALID_ARG, "scrub_batch %u: at most 65536", o->scrub_batch);
    gms_backend_kind kind = GMS_BACKEND_HOST;
    int rc = resolve_backend(o->backend, &kind);
    if (rc)
        return rc;

    gms_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for the runtime");
    rt->failpoint.nth = fail_nth_call;
    rt->granule = granule;
    rt->granule_shift = (unsigned)__builtin_ctzll(granule);
    rt->chunk_bytes = chunk;
    rt->retain_bytes = o->retain_bytes;
    rt->log = o->log;
    rt->log_user = o->log_user;
    rt->max_held = o->max_held_bytes;
    rt->device = o->device;
    rt->safety = o->safety == GMS_SAFETY_ON;
    rt->redzone = o->redzone_bytes ? o->redzone_bytes : 32;
    rt->quarantine_max_bytes = o->quarantine_bytes;
    rt->quarantine_max_blocks = o->quarantine_blocks ? o->quarantine_blocks : 1024;
    rt->verify_interval_ms = o->verify_interval_ms;
    rt->abort_on_corruption = o->on_corruption == GMS_ON_CORRUPTION_ABORT;
    rt->secret_multipass = o->secret_multipass != 0;
    rt->tenants_tail = &rt->tenants;
    rt->pools_tail = &rt->pools;
    if ((rc = gms__random_bytes(rt->key, sizeof rt->key)) != 0 ||
        (rc = gms__random_bytes(rt->share_key, sizeof rt->share_key)) != 0 ||
        (rc = gms__random_bytes(&rt->pattern, sizeof rt->pattern)) != 0 ||
        (rc = gms__random_bytes(&rt->wipe_seed, sizeof rt->wipe_seed)) != 0)
        goto fail;
    /* No 0x00 or 0xff byte in the poison: zeroed or all-ones memory (the
     * commonest stray writes, and the wipe passes) never looks poisoned. */
    for (int i = 0; i < 8; i++) {
        uint8_t byte = (uint8_t)(rt->pattern >> (8 * i));
        if (byte == 0x00 || byte == 0xff)
            rt->pattern ^= (uint64_t)0x5a << (8 * i);
    }
    if (pthread_mutex_init(&rt->lock, NULL) != 0) {
        rc = gms__fail(GMS_E_NO_MEMORY, "cannot create the runtime lock");
        goto fail;
    }
    if ((rc = gms__handle_table_init(rt)) != GMS_OK) {
        pthread_mutex_destroy(&rt->lock);
        goto fail;
    }
    if (pthread_mutex_init(&rt->mail_lock, NULL) != 0) {
        gms__handle_table_destroy(rt);
        pthread_mutex_destroy(&rt->lock);
        rc = gms__fail(GMS_E_NO_MEMORY, "cannot create the runtime's log lock");
        goto fail;
    }
    const gms_backend_factory *f = factory_of(kind);
    gms_backend *be = NULL;
    int err = gms_failpoint_hit(&rt->failpoint) ? ENOMEM : f->create(o->device, &be);
    if (err) {
        rc = gms__fail(err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND,
                       "%s backend on device %d: %s", f->name, o->device,
                       err == ENOMEM && !be ? "out of memory" : f->why());
        gms__backend_why_clear();
        goto fail_lock;
    }
    if (rt->safety && be->no_scrub) {
        /* Poisoning runs the scrub, even for the first allocation. */
        rc = gms__fail(GMS_E_UNSUPPORTED, "%s backend: safety needs the scrub, which cannot run: %s",
                       f->name, be->no_scrub);
        be->ops->destroy(be);
        goto fail_lock;
    }
    if (granule % be->granularity || chunk % be->granularity) {
        rc = gms__fail(GMS_E_INVALID_ARG,
                       "granule_bytes %llu and chunk_bytes %llu must be multiples of the device's "
                       "mapping granularity, %llu bytes",
                       (unsigned long long)granule, (unsigned long long)chunk,
                       (unsigned long long)be->granularity);
        be->ops->destroy(be);
        goto fail_lock;
    }
    rt->backend_name = be->ops->name;
    rt->view_unit = be->granularity;
    if (rt->failpoint.nth) {
        gms_backend *wrapped;
        if (gms_backend_failing_create(be, &rt->failpoint, &wrapped) != 0) {
            be->ops->destroy(be);
            rc = gms__fail(GMS_E_NO_MEMORY, "out of host memory for the failing backend");
            goto fail_lock;
        }
        be = wrapped;
    }
    if (gms__backend_wrap) {
        gms_backend *wrapped;
        if (gms__backend_wrap(be, &wrapped) != 0) {
            be->ops->destroy(be);
            rc = gms__fail(GMS_E_NO_MEMORY, "the test's backend wrapper failed");
            goto fail_lock;
        }
        be = wrapped;
    }
    rt->backend = be;
    /* The writer's thread logs through the runtime's mail: a log function
     * that calls gms could otherwise wait there for the writer itself. */
    gms_runtime_options audit_opts = *o;
    audit_opts.log = gms__log_mail;
    audit_opts.log_user = rt;
    if ((rc = gms__audit_open(&rt->audit, &audit_opts)) != GMS_OK) {
        be->ops->destroy(be);
        goto fail_lock;
    }
    if ((rt->verify_interval_ms &&
         (rc = ticker_start(rt, verify_tick, rt->verify_interval_ms, "background verifier",
                            &rt->verifier)) != GMS_OK) ||
        (be->ops->scrub_async &&
         (rc = ticker_start(rt, collect_tick, GMS_COLLECT_MS, "collector", &rt->collector)) !=
             GMS_OK)) {
        ticker_stop(&rt->verifier);
        gms__audit_close(rt->audit);
        be->ops->destroy(be);
        goto fail_lock;
    }
    if (rt->audit) {
        gms_audit_event e = {.op = GMS_AUDIT_RUNTIME_OPEN, .size = rt->granule, .level = -1,
                             .language = -1, .detail = rt->backend_name};
        gms__audit_emit(rt->audit, &e);
    }
    const char *map_log = getenv("GMS_DEBUG_MAPS");
    if (map_log && *map_log)
        rt->map_log = fopen(map_log, "a");
    *out = rt;
    return GMS_OK;
fail_lock:
    pthread_mutex_destroy(&rt->mail_lock);
    gms__handle_table_destroy(rt);
    pthread_mutex_destroy(&rt->lock);
fail:
    free(rt);
    return rc;
}

static void context_close_locked(gms_context *ctx, char *leak, size_t leak_size);

/* The caller holds the last reference: no other thread uses rt. */
static void runtime_destroy(gms_runtime *rt)
{
    char leak[256];
    ticker_stop(&rt->verifier);
    ticker_stop(&rt->collector);
    gms__dlpack_orphan_all(rt);
    while (rt->contexts) {
        context_close_locked(rt->contexts, leak, sizeof leak);
        if (leak[0])
            gms__log(rt, GMS_LOG_WARN, "%s", leak);
        gms__violations_deliver(rt);
    }
    for (gms_pool *p = rt->pools; p; p = p->next) {
        gms__pool_lock(p);
        gms__safety_drain(p); /* last checks of what waits in quarantine */
        gms__pool_unlock(p);
        gms__violations_deliver(rt);
    }
    gms__device_quiesce(rt); /* nothing may run on memory about to be unmapped */
    gms__violations_deliver(rt);
    for (gms_pool *p = rt->pools, *n; p; p = n) {
        n = p->next;
        gms__pool_destroy(p);
    }
    for (gms_tenant *t = rt->tenants, *n; t; t = n) {
        n = t->next;
        free(t);
    }
    gms__handle_table_destroy(rt);
    if (rt->audit) {
        gms_audit_event e = {.op = GMS_AUDIT_RUNTIME_CLOSE, .level = -1, .language = -1};
        gms__audit_emit(rt->audit, &e);
        gms_audit *a = rt->audit;
        rt->audit = NULL; /* a log function's gms_audit_flush: unsupported now */
        gms__audit_close(a);
        gms__violations_deliver(rt); /* the writer's last words */
    }
    rt->backend->ops->destroy(rt->backend);
    if (rt->map_log)
        fclose(rt->map_log);
    pthread_mutex_destroy(&rt->mail_lock);
    pthread_mutex_destroy(&rt->lock);
    free(rt);
}

/* A private runtime: the caller's options of any version, read into the
 * current one's shape. */
static int runtime_open_private(const char *fn, gms_runtime **out, const gms_runtime_options *opts,
                                uint64_t fail_nth_call)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    int rc = opts ? gms__struct_read(&gms__runtime_options_versions, fn, opts, &o) : GMS_OK;
    return rc ? rc : runtime_create(out, &o, fail_nth_call);
}

int gms_testing_runtime_open(gms_runtime **out, const gms_runtime_options *opts,
                             const gms_testing_options *testing)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_testing_runtime_open: out is NULL");
    *out = NULL;
    return runtime_open_private("gms_testing_runtime_open", out, opts,
                                testing ? testing->fail_nth_call : 0);
}

int gms_runtime_open(gms_runtime **out, const gms_runtime_options *opts)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_runtime_open: out is NULL");
    *out = NULL;
    if (opts)
        return runtime_open_private("gms_runtime_open", out, opts, 0);
    pthread_mutex_lock(&shared_lock);
    int rc = GMS_OK;
    if (!shared_rt) {
        gms_runtime_options d = GMS_RUNTIME_OPTIONS_INIT;
        rc = runtime_create(&shared_rt, &d, 0);
        if (rc == GMS_OK)
            shared_rt->shared = true;
    }
    if (rc == GMS_OK) {
        shared_rt->refs++;
        *out = shared_rt;
    }
    pthread_mutex_unlock(&shared_lock);
    return rc;
}

void gms_runtime_close(gms_runtime *rt)
{
    if (!rt)
        return;
    if (rt->shared) {
        pthread_mutex_lock(&shared_lock);
        bool last = --rt->refs == 0;
        if (last)
            shared_rt = NULL;
        pthread_mutex_unlock(&shared_lock);
        if (!last)
            return;
    }
    runtime_destroy(rt);
}

int gms_audit_flush(gms_runtime *rt)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_audit_flush: runtime is NULL");
    if (!rt->audit)
        return gms__fail(GMS_E_UNSUPPORTED, "gms_audit_flush: this runtime has no audit trail");
    return gms__audit_flush(rt->audit);
}

void gms__audit_ctx_record(const gms_context *ctx, gms_audit_op op, uint64_t handle,
                           uint64_t size, int result, const char *detail)
{
    gms_audit_event e = {
        .op = op, .result = result, .handle = handle, .size = size, .context_id = ctx->id,
        .tenant = ctx->tenant->name, .user = ctx->user, .level = (int)ctx->level,
        .language = (int)ctx->language, .detail = detail,
    };
    gms__audit_emit(ctx->rt->audit, &e);
}

const char *gms_runtime_backend_name(const gms_runtime *rt)
{
    return rt ? rt->backend_name : "none";
}

/* ---- tenants ---- */

int gms__name_check(const char *what, const char *name)
{
    if (!name)
        return gms__fail(GMS_E_INVALID_ARG, "%s is NULL", what);
    size_t n = 0;
    for (; name[n]; n++) {
        if (n >= GMS_NAME_MAX)
            return gms__fail(GMS_E_INVALID_ARG, "%s is longer than %d bytes", what, GMS_NAME_MAX);
        if (name[n] < 0x20 || name[n] > 0x7e)
            return gms__fail(GMS_E_INVALID_ARG,
                             "%s has a byte 0x%02x at %zu: printable ASCII only", what,
                             (unsigned char)name[n], n);
    }
    if (n == 0)
        return gms__fail(GMS_E_INVALID_ARG, "%s is empty", what);
    return GMS_OK;
}

gms_tenant *gms__tenant_find(gms_runtime *rt, const char *name)
{
    for (gms_tenant *t = rt->tenants; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* Finds or creates a tenant (rt->lock held). */
static int tenant_get(gms_runtime *rt, const char *name, gms_tenant **out)
{
    gms_tenant *t = gms__tenant_find(rt, name);
    if (!t) {
        t = gms__alloc_meta(rt, sizeof *t);
        if (!t)
            return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a tenant");
        memset(t, 0, sizeof *t);
        strcpy(t->name, name);
        t->index = rt->ntenants++;
        atomic_init(&t->max_bytes, GMS_UNLIMITED);
        atomic_init(&t->max_allocs, GMS_UNLIMITED);
        *rt->tenants_tail = t;
        rt->tenants_tail = &t->next;
    }
    *out = t;
    return GMS_OK;
}

int gms_tenant_set_quota(gms_runtime *rt, const char *tenant, uint64_t max_bytes,
                         uint64_t max_allocs)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_tenant_set_quota: runtime is NULL");
    int rc = gms__name_check("tenant", tenant);
    if (rc)
        return rc;
    pthread_mutex_lock(&rt->lock);
    gms_tenant *t;
    rc = tenant_get(rt, tenant, &t);
    if (rc == GMS_OK) {
        atomic_store(&t->max_bytes, max_bytes);
        atomic_store(&t->max_allocs, max_allocs);
    }
    pthread_mutex_unlock(&rt->lock);
    if (rc == GMS_OK && rt->audit) {
        char detail[96];
        snprintf(detail, sizeof detail, "quota max_bytes=%llu max_allocs=%llu",
                 (unsigned long long)max_bytes, (unsigned long long)max_allocs);
        gms_audit_event e = {.op = GMS_AUDIT_CONFIG, .size = max_bytes, .handle = max_allocs,
                             .tenant = tenant, .level = -1, .language = -1, .detail = detail};
        gms__audit_emit(rt->audit, &e);
    }
    return rc;
}

/* ---- contexts ---- */

const char *gms__user_name(const gms_pool *p, uint32_t i)
{
    if (i == GMS_USER_ELSEWHERE)
        return "(a holder in another pool)";
    return i < p->nusers ? p->users[i] : "?";
}

/* The index of a user name in the pool's table, added if new (pool->lock):
 * blocks name who allocated and freed them by index. */
static int pool_user_index(gms_pool *p, const char *user, uint32_t *out)
{
    for (uint32_t i = 0; i < p->nusers; i++)
        if (strcmp(p->users[i], user) == 0) {
            *out = i;
            return GMS_OK;
        }
    if (p->nusers == 0 || (p->nusers >= 4 && !(p->nusers & (p->nusers - 1)))) {
        /* grow: 4, 8, 16... */
        uint32_t cap = p->nusers ? 2 * p->nusers : 4;
        if (gms_failpoint_hit(&p->rt->failpoint))
            return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a pool's user names");
        char(*u)[GMS_NAME_MAX + 1] = realloc(p->users, cap * sizeof *u);
        if (!u)
            return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a pool's user names");
        p->users = u;
    }
    strcpy(p->users[p->nusers], user);
    *out = p->nusers++;
    return GMS_OK;
}

/* ---- pools: made, retired, reused ---- */

/* Gives back everything pool p holds once nothing of it is in use: no
 * context, no live or imported buffer, nothing the device still runs
 * (rt->lock and pool->lock held). Its quarantine is checked and emptied,
 * its memory unmapped, its chunks and node slabs released, its handle
 * slots returned to the runtime; the record then waits, idle, for the
 * next new (tenant, level, language). False while something is in use. */
static bool pool_retire(gms_runtime *rt, gms_pool *p)
{
    if (p->idle || p->contexts || p->live_blocks || p->imports)
        return false;
    gms__safety_drain(p);
    gms__pool_trim(p, 0);
    if (p->quarantine_blocks || p->inflight_head || !gms__pool_release_chunks(p))
        return false; /* a check or an unmap failed: the next sweep tries again */
    gms__slots_give_back(p);
    rt->retired_allocs += p->allocs; /* gms_stats counts them still */
    rt->retired_frees += p->frees;
    p->allocs = p->frees = 0;
    p->idle = true;
    rt->npools--;
    return true;
}

/* The last context of p closed (rt->lock and pool->lock held): its memory
 * goes back, and the pool retires now or, while another context still
 * holds one of its buffers, at a later sweep. */
static void pool_unused(gms_runtime *rt, gms_pool *p)
{
    gms__safety_drain(p);
    gms__pool_trim(p, 0);
    if (!pool_retire(rt, p) && !p->orphan) {
        p->orphan = true;
        rt->orphan_pools++;
    }
}

/* Retires the pools no context uses whose last buffers have gone since
 * (rt->lock held): at every context open and close, while there are any. */
static void pools_sweep(gms_runtime *rt)
{
    for (gms_pool *p = rt->pools; p && rt->orphan_pools; p = p->next) {
        if (!p->orphan)
            continue;
        gms__pool_lock(p);
        if (pool_retire(rt, p)) {
            p->orphan = false;
            rt->orphan_pools--;
        }
        gms__pool_unlock(p);
    }
}

/* The pool serving (t, level, lang) (rt->lock held); a new triple gets an
 * idle pool record if there is one, else a new one at the list's end. */
static int pool_get(gms_runtime *rt, gms_tenant *t, gms_level level, gms_language lang,
                    gms_pool **out)
{
    gms_pool *idle = NULL, *p;
    for (p = rt->pools; p; p = p->next) {
        if (p->idle) {
            idle = idle ? idle : p;
            continue;
        }
        if (p->tenant == t && p->level == level && p->language == lang) {
            *out = p;
            return GMS_OK;
        }
    }
    if (idle) {
        p = idle;
        gms__pool_lock(p);
        gms__pool_reuse(p, t, level, lang);
        p->id = ++rt->next_id;
        gms__pool_unlock(p);
    } else {
        int rc = gms__pool_create(rt, t, level, lang, &p);
        if (rc)
            return rc;
        p->id = p->rank = ++rt->next_id; /* ranks grow along the list */
        *rt->pools_tail = p;
        rt->pools_tail = &p->next;
    }
    rt->npools++;
    *out = p;
    return GMS_OK;
}

int gms_context_open(gms_context **out, gms_runtime *rt, const gms_context_desc *given)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_context_open: out is NULL");
    *out = NULL;
    if (!rt || !given)
        return gms__fail(GMS_E_INVALID_ARG, "gms_context_open: %s is NULL", rt ? "desc" : "runtime");
    gms_context_desc current = GMS_CONTEXT_DESC_INIT;
    const gms_context_desc *desc = &current;
    int rc = gms__struct_read(&gms__context_desc_versions, "gms_context_open", given, &current);
    if (rc)
        return rc;
    if ((rc = gms__name_check("tenant", desc->tenant)) || (rc = gms__name_check("user", desc->user)))
        return rc;
    if ((unsigned)desc->level > GMS_LEVEL_SECRET)
        return gms__fail(GMS_E_INVALID_ARG, "level %d is not a gms_level", (int)desc->level);
    if ((unsigned)desc->language > GMS_LANG_OTHER)
        return gms__fail(GMS_E_INVALID_ARG, "language %d is not a gms_language", (int)desc->language);

    gms_context *ctx = gms__alloc_meta(rt, sizeof *ctx);
    if (!ctx)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a context");
    memset(ctx, 0, sizeof *ctx);
    if (pthread_mutex_init(&ctx->holds_lock, NULL) != 0) {
        free(ctx);
        return gms__fail(GMS_E_NO_MEMORY, "cannot create a context's lock");
    }
    pthread_mutex_lock(&rt->lock);
    gms_tenant *t;
    rc = tenant_get(rt, desc->tenant, &t);
    gms_pool *p = NULL;
    if (rc == GMS_OK) {
        pools_sweep(rt);
        rc = pool_get(rt, t, desc->level, desc->language, &p);
    }
    if (rc == GMS_OK) {
        gms__pool_lock(p);
        rc = pool_user_index(p, desc->user, &ctx->user_index);
        gms__pool_unlock(p);
    }
    if (rc) {
        if (p && p->contexts == 0) { /* made or reused for nothing */
            gms__pool_lock(p);
            pool_unused(rt, p);
            gms__pool_unlock(p);
        }
        pthread_mutex_unlock(&rt->lock);
        pthread_mutex_destroy(&ctx->holds_lock);
        free(ctx);
        gms__violations_deliver(rt); /* what the sweep found; keeps the message */
        return rc;
    }
    ctx->rt = rt;
    ctx->pool = p;
    ctx->tenant = t;
    strcpy(ctx->user, desc->user);
    ctx->level = desc->level;
    ctx->language = desc->language;
    ctx->id = ++rt->next_id;
    if (p->orphan) { /* in use again */
        p->orphan = false;
        rt->orphan_pools--;
    }
    p->contexts++;
    ctx->next = rt->contexts;
    if (rt->contexts)
        rt->contexts->prev = ctx;
    rt->contexts = ctx;
    rt->ncontexts++;
    pthread_mutex_unlock(&rt->lock);
    gms__violations_deliver(rt); /* what the sweep found */
    gms__audit_ctx(ctx, GMS_AUDIT_CONTEXT_OPEN, 0, 0, GMS_OK, NULL);
    *out = ctx;
    return GMS_OK;
}

/* Releases the handles ctx holds on blocks outside its live list
 * (acquired, transferred, exported, imported), each under its block's pool
 * lock; adds them to the leak counts. */
static void context_drop_holds(gms_context *ctx, uint64_t *blocks, uint64_t *bytes)
{
    for (;;) {
        pthread_mutex_lock(&ctx->holds_lock);
        gms_slot *s = ctx->holds;
        gms_buf h = s ? atomic_load(&s->handle) : GMS_BUF_NULL;
        pthread_mutex_unlock(&ctx->holds_lock);
        if (!s)
            return;
        gms_pool *p = gms__handle_pool(ctx->rt, h);
        if (!p)
            continue; /* dropped meanwhile (a DLPack deleter) and its slot given back */
        gms__pool_lock(p);
        /* Between the two locks another thread (a DLPack deleter) may have
         * released it: look again before using it. */
        if (!gms__slot_owned(s, p) || atomic_load(&s->handle) != h || s->kind != GMS_SLOT_HANDLE ||
            s->holder != ctx) {
            gms__pool_unlock(p);
            continue;
        }
        if (s->exported) {
            /* The tensor's consumer still reads the buffer: it lives until
             * the tensor's deleter runs, not a leak. */
            gms__handle_orphan(p, s);
            gms__pool_unlock(p);
            continue;
        }
        gms_block *b = s->block;
        (*blocks)++;
        *bytes += b->size;
        gms__audit_ctx(ctx, GMS_AUDIT_LEAK, h, b->req_size, GMS_OK,
                       "held handle released at context close");
        gms_drop d;
        gms__handle_drop(p, s, ctx, &d);
        gms__pool_unlock(p);
        gms__drop_finish(&d);
    }
}

/* Reclaims what the context holds and unlinks it (rt->lock held); leak
 * gets the report to log once no lock is held, "" when nothing leaked. */
static void context_close_locked(gms_context *ctx, char *leak, size_t leak_size)
{
    gms_runtime *rt = ctx->rt;
    gms_pool *p = ctx->pool;
    uint64_t blocks = ctx->held_leaks, bytes = ctx->held_leak_bytes;
    context_drop_holds(ctx, &blocks, &bytes); /* what gms_context_close left */
    gms__pool_lock(p);
    blocks += ctx->live_blocks;
    bytes += ctx->live_bytes;
    while (ctx->live) {
        gms_block *b = ctx->live;
        gms__audit_ctx(ctx, GMS_AUDIT_LEAK, b->handle, b->req_size, GMS_OK,
                       "reclaimed at context close");
        gms_drop d;
        gms__handle_drop(p, gms__slot_at(rt, b->u.live.slot), ctx, &d);
    }
    if (--p->contexts == 0) /* nobody uses the pool: return what it holds */
        pool_unused(rt, p);
    gms__pool_unlock(p);
    leak[0] = 0;
    if (blocks) {
        atomic_fetch_add(&ctx->tenant->leaked_blocks, blocks);
        atomic_fetch_add(&ctx->tenant->leaked_bytes, bytes);
        snprintf(leak, leak_size,
                 "gms: leak: context of tenant '%s' user '%s' (%s, %s) closed holding %llu buffer%s, %llu bytes; reclaimed",
                 ctx->tenant->name, ctx->user, gms_language_name(ctx->language),
                 gms_level_name(ctx->level), (unsigned long long)blocks, blocks == 1 ? "" : "s",
                 (unsigned long long)bytes);
    }
    gms__audit_ctx(ctx, GMS_AUDIT_CONTEXT_CLOSE, 0, blocks, GMS_OK, NULL);
    if (ctx->prev)
        ctx->prev->next = ctx->next;
    else
        rt->contexts = ctx->next;
    if (ctx->next)
        ctx->next->prev = ctx->prev;
    rt->ncontexts--;
    pthread_mutex_destroy(&ctx->holds_lock);
    free(ctx);
}

void gms_context_close(gms_context *ctx)
{
    if (!ctx)
        return;
    gms_runtime *rt = ctx->rt;
    char leak[256];
    /* Held handles first, with no runtime lock: dropping the last handle
     * of an imported tensor calls its framework's deleter. */
    context_drop_holds(ctx, &ctx->held_leaks, &ctx->held_leak_bytes);
    pthread_mutex_lock(&rt->lock);
    context_close_locked(ctx, leak, sizeof leak);
    pools_sweep(rt);
    pthread_mutex_unlock(&rt->lock);
    if (leak[0])
        gms__log(rt, GMS_LOG_WARN, "%s", leak);
    gms__violations_deliver(rt);
}
