/*
 * runtime.c: the runtime: its options, backend, secrets, audit trail and
 * background threads, opened and closed; the process-wide runtime shared
 * by reference count. Tenants are in tenant.c, contexts and the pools
 * they use in context.c, the background threads in background.c.
 * Everything here runs at open/close, never on the alloc/free path.
 */
#include "core/internal.h"
#include "core/seal.h"
#include "core/version.h"
#include "gms/testing.h"
#include "safety/safety.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* The process-wide runtime that NULL options open. */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static gms_runtime *shared_rt;

static const gms_backend_factory *factory_of(gms_backend_kind kind)
{
    switch (kind) {
    case GMS_BACKEND_HOST: return &gms__backend_host_factory;
    case GMS_BACKEND_CUDA: return &gms__backend_cuda_factory;
    case GMS_BACKEND_HIP: return &gms__backend_hip_factory;
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
        kind = gms__backend_cuda_factory.available() ? GMS_BACKEND_CUDA : GMS_BACKEND_HOST;
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

int (*gms__backend_wrap)(gms_backend *inner, gms_backend **out);

/* gmsd's socket (docs/broker.md): the option, else GMS_BROKER (empty
 * there is unset); *path NULL for none. *from names where it came from,
 * for messages. A path connect() cannot take, or HIP, which gmsd never
 * serves, is refused here, before anything is made; whether the backend
 * asked for is the memory gmsd serves is known once gmsd answers. */
static int broker_socket(const gms_runtime_options *o, const char **path, const char **from)
{
    const char *env = getenv("GMS_BROKER");
    *path = o->broker ? o->broker : env && *env ? env : NULL;
    *from = o->broker ? "gms_runtime_options.broker" : "GMS_BROKER";
    if (!*path)
        return GMS_OK;
    size_t len = strlen(*path), max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    if (len == 0)
        return gms__fail(GMS_E_INVALID_ARG,
                         "gms_runtime_options.broker is \"\": give gmsd's socket path, or NULL "
                         "for none");
    if (len > max)
        return gms__fail(GMS_E_INVALID_ARG,
                         "%s=%.40s...: the path is %zu bytes; a Unix socket's is at most %zu",
                         *from, *path, len, max);
    if (o->backend == GMS_BACKEND_HIP)
        return gms__fail(GMS_E_INVALID_ARG,
                         "%s=%s is set, and gmsd serves host or CUDA memory, never HIP: backend "
                         "%d asked for", *from, *path, (int)o->backend);
    return GMS_OK;
}

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
    const char *broker, *broker_from;
    int rc = broker_socket(o, &broker, &broker_from);
    if (rc)
        return rc;
    gms_backend_kind kind = GMS_BACKEND_HOST;
    rc = broker ? GMS_OK : resolve_backend(o->backend, &kind);
    if (rc)
        return rc;

    gms_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for the runtime");
    rt->failpoint.nth = fail_nth_call;
    rt->config.granule = granule;
    rt->config.granule_shift = (unsigned)__builtin_ctzll(granule);
    rt->config.chunk_bytes = chunk;
    rt->config.retain_bytes = o->retain_bytes;
    rt->callbacks.log = o->log;
    rt->callbacks.log_user = o->log_user;
    rt->config.max_held = o->max_held_bytes;
    rt->config.device = o->device;
    rt->safety.on = o->safety == GMS_SAFETY_ON;
    rt->safety.redzone = o->redzone_bytes ? o->redzone_bytes : 32;
    rt->safety.quarantine_max_bytes = o->quarantine_bytes;
    rt->safety.quarantine_max_blocks = o->quarantine_blocks ? o->quarantine_blocks : 1024;
    rt->background.verify_interval_ms = o->verify_interval_ms;
    rt->safety.abort_on_corruption = o->on_corruption == GMS_ON_CORRUPTION_ABORT;
    rt->safety.secret_multipass = o->secret_multipass != 0;
    rt->tenants_tail = &rt->tenants;
    rt->pools_tail = &rt->pools;
    if ((rc = gms__random_bytes(rt->handles.key, sizeof rt->handles.key)) != 0 ||
        (rc = gms__random_bytes(rt->safety.share_key, sizeof rt->safety.share_key)) != 0 ||
        (rc = gms__random_bytes(&rt->safety.pattern, sizeof rt->safety.pattern)) != 0 ||
        (rc = gms__random_bytes(&rt->safety.wipe_seed, sizeof rt->safety.wipe_seed)) != 0)
        goto fail;
    /* No 0x00 or 0xff byte in the poison: zeroed or all-ones memory (the
     * commonest stray writes, and the wipe passes) never looks poisoned. */
    for (int i = 0; i < 8; i++) {
        uint8_t byte = (uint8_t)(rt->safety.pattern >> (8 * i));
        if (byte == 0x00 || byte == 0xff)
            rt->safety.pattern ^= (uint64_t)0x5a << (8 * i);
    }
    if (pthread_mutex_init(&rt->lock, NULL) != 0) {
        rc = gms__fail(GMS_E_NO_MEMORY, "cannot create the runtime lock");
        goto fail;
    }
    if ((rc = gms__handle_table_init(rt)) != GMS_OK) {
        pthread_mutex_destroy(&rt->lock);
        goto fail;
    }
    if (pthread_mutex_init(&rt->notes.mail_lock, NULL) != 0) {
        gms__handle_table_destroy(rt);
        pthread_mutex_destroy(&rt->lock);
        rc = gms__fail(GMS_E_NO_MEMORY, "cannot create the runtime's log lock");
        goto fail;
    }
    const gms_backend_factory *f = factory_of(kind);
    gms_backend *be = NULL;
    int err;
    if (broker) {
        char why[320];
        uint64_t lease = 0;
        err = gms__failpoint_hit(&rt->failpoint)
                  ? ENOMEM
                  : gms__backend_broker_create(broker, (int)o->backend, o->device, &lease,
                                               &rt->broker, &be, &rt->broker_be, why, sizeof why);
        if (err) {
            rc = gms__fail(err == ENOMEM  ? GMS_E_NO_MEMORY
                           : err == EINVAL ? GMS_E_INVALID_ARG
                                           : GMS_E_BACKEND,
                           "%s=%s: %s", broker_from, broker, err == ENOMEM ? "out of memory" : why);
            goto fail_lock;
        }
        rt->brokered = true;
        /* A chunk is a lease: the broker's size unless the caller chose. */
        if (!o->chunk_bytes)
            chunk = rt->config.chunk_bytes = lease;
        if (chunk % granule) {
            rc = gms__fail(GMS_E_INVALID_ARG,
                           "%s=%s: the broker's lease of %llu bytes is not a multiple of "
                           "granule_bytes %llu",
                           broker_from, broker, (unsigned long long)chunk,
                           (unsigned long long)granule);
            be->ops->destroy(be);
            goto fail_lock;
        }
    } else {
        err = gms__failpoint_hit(&rt->failpoint) ? ENOMEM : f->create(o->device, &be);
    }
    if (err) {
        rc = gms__fail(err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND,
                       "%s backend on device %d: %s", f->name, o->device,
                       err == ENOMEM && !be ? "out of memory" : f->why());
        gms__backend_why_clear();
        goto fail_lock;
    }
    if (rt->safety.on && be->no_scrub) {
        /* Poisoning runs the scrub, even for the first allocation. */
        rc = gms__fail(GMS_E_UNSUPPORTED, "%s backend: safety needs the scrub, which cannot run: %s",
                       be->ops->name, be->no_scrub);
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
    rt->config.view_unit = be->granularity;
    rt->config.pages_alone = rt->brokered && rt->broker.memory != GMS_BROKER_MEMORY_HOST;
    if (rt->failpoint.nth) {
        gms_backend *wrapped;
        if (gms__backend_failing_create(be, &rt->failpoint, &wrapped) != 0) {
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
    if (rt->safety.on && be->ops->poison_ahead)
        be->ops->poison_ahead(be, rt->safety.pattern);
    /* The writer's thread logs through the runtime's mail: a log function
     * that calls gms could otherwise wait there for the writer itself. */
    gms_runtime_options audit_opts = *o;
    audit_opts.log = gms__log_mail;
    audit_opts.log_user = rt;
    if ((rc = gms__audit_open(&rt->audit, &audit_opts)) != GMS_OK) {
        be->ops->destroy(be);
        goto fail_lock;
    }
    if ((rc = gms__background_start(rt)) != GMS_OK) {
        gms__audit_close(rt->audit);
        be->ops->destroy(be);
        goto fail_lock;
    }
    if (rt->audit) {
        gms_audit_event e = {.op = GMS_AUDIT_RUNTIME_OPEN, .size = rt->config.granule, .level = -1,
                             .language = -1, .detail = rt->backend_name};
        gms__audit_emit(rt->audit, &e);
    }
    const char *map_log = getenv("GMS_DEBUG_MAPS");
    if (map_log && *map_log)
        rt->config.map_log = fopen(map_log, "a");
    *out = rt;
    return GMS_OK;
fail_lock:
    pthread_mutex_destroy(&rt->notes.mail_lock);
    gms__handle_table_destroy(rt);
    pthread_mutex_destroy(&rt->lock);
fail:
    free(rt);
    return rc;
}

/* The caller holds the last reference: no other thread uses rt. */
static void runtime_destroy(gms_runtime *rt)
{
    char leak[320];
    gms__background_stop(rt);
    gms__dlpack_orphan_all(rt);
    while (rt->contexts) {
        gms__context_close_locked(rt->contexts, leak, sizeof leak);
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
    gms__seal_runtime_close(rt);
    if (rt->audit) {
        gms_audit_event e = {.op = GMS_AUDIT_RUNTIME_CLOSE, .level = -1, .language = -1};
        gms__audit_emit(rt->audit, &e);
        gms_audit *a = rt->audit;
        rt->audit = NULL; /* a log function's gms_audit_flush: unsupported now */
        gms__audit_close(a);
        gms__violations_deliver(rt); /* the writer's last words */
    }
    rt->backend->ops->destroy(rt->backend);
    if (rt->config.map_log)
        fclose(rt->config.map_log);
    pthread_mutex_destroy(&rt->notes.mail_lock);
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
