/*
 * gms_torch_alloc.c: a PyTorch allocator plug-in (libgms_torch.so) that puts
 * every CUDA tensor of a PyTorch program in gms memory.
 *
 * torch.cuda.memory.CUDAPluggableAllocator loads this library and calls
 * gms_torch_alloc(size, device, stream) and gms_torch_free(ptr, size,
 * device, stream) for every allocation (PyTorch's caching allocator is
 * replaced, not layered: gms's pools are the cache). PyTorch speaks in raw
 * device pointers and gms in handles, so a small open-addressing hash table
 * maps one to the other. Frees go through gms_free_async on the stream
 * PyTorch gives, so a block is checked, wiped and reused only after the
 * kernels queued on that stream have finished, as with cudaFreeAsync.
 *
 * Each device gets its own private runtime (CUDA backend, safety on), opened
 * at its first allocation, and one context: tenant $GMS_TENANT and user
 * $GMS_USER (default "torch"), language Python. $GMS_TORCH_BACKEND (cuda,
 * host, hip or auto; default cuda) exists for the host-only tests,
 * $GMS_TORCH_SAFETY=off for measuring what safety costs, and
 * $GMS_TORCH_QUARANTINE_BYTES, $GMS_TORCH_RETAIN_BYTES and
 * $GMS_TORCH_MAX_HELD_BYTES set the runtime options of those names
 * (unset: the library's defaults); $GMS_TORCH_TIMING=1 times the two calls
 * for the benchmark (gms_torch_timing). The runtimes are
 * never closed: tensors may be freed during interpreter exit, after any
 * atexit hook, and the process's exit returns the memory.
 *
 * CUDA graphs (torch.cuda.graph), Tensor.record_stream,
 * torch.cuda.empty_cache and set_per_process_memory_fraction reach the
 * plug-in through PyTorch's hooks, which gms.torch.use_gms() sets: see
 * "graphs", "other streams" and "PyTorch's memory counters" below.
 * use_gms() also has a refused allocation thrown to PyTorch
 * (gms_torch_raise.cpp), which does not check for NULL.
 *
 * Only the public API (gms.h) is used. No CUDA header is needed: streams are
 * opaque pointers handed to gms, and the few driver calls that graphs,
 * record_stream and the memory fraction need are looked up in the
 * libcuda.so.1 the process already has. Thread-safe: the table has one
 * lock, held for a probe only, never across a gms call; the graph pools
 * have another, held the same way.
 */
#include <gms.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define GMS_TORCH_API __attribute__((visibility("default")))
#define MAX_DEVICES 64

/* ---- the pointer -> handle table ------------------------------------------
 * Linear probing with backward-shift deletion (no tombstones), grown at 70%
 * load. A key is a device address, never 0, so 0 marks an empty slot. */

struct graph_pool;

typedef struct {
    uint64_t key;
    gms_buf buf;
    int device;
    unsigned nuses;          /* streams Tensor.record_stream added */
    uint64_t size;           /* as PyTorch asked for it */
    struct graph_pool *pool; /* the graph pool it belongs to, or NULL */
    void **uses;             /* those streams (malloc'd), or NULL */
} slot;

static pthread_mutex_t g_table_lock = PTHREAD_MUTEX_INITIALIZER;
static slot *g_slots;
static size_t g_cap;   /* a power of two, or 0 before the first insert */
static size_t g_count;

static size_t home(uint64_t key, size_t cap)
{
    /* Fibonacci hashing; blocks are 256-byte aligned, so the low bits of the
     * address carry nothing and the multiply spreads the rest. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static void put_slot(slot *slots, size_t cap, slot s)
{
    size_t i = home(s.key, cap);
    while (slots[i].key != 0)
        i = (i + 1) & (cap - 1);
    slots[i] = s;
}

/* Called with the lock held. */
static int grow(void)
{
    size_t cap = g_cap ? g_cap * 2 : 4096;
    slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < g_cap; i++)
        if (g_slots[i].key != 0)
            put_slot(slots, cap, g_slots[i]);
    free(g_slots);
    g_slots = slots;
    g_cap = cap;
    return 0;
}

static int table_put(void *ptr, gms_buf buf, int device, uint64_t size, struct graph_pool *pool)
{
    slot s = {(uint64_t)(uintptr_t)ptr, buf, device, 0, size, pool, NULL};
    int rc = 0;
    pthread_mutex_lock(&g_table_lock);
    if ((g_count + 1) * 10 > g_cap * 7)
        rc = grow();
    if (rc == 0) {
        put_slot(g_slots, g_cap, s);
        g_count++;
    }
    pthread_mutex_unlock(&g_table_lock);
    return rc;
}

/* The entry of ptr, or NULL; g_table_lock held. */
static slot *table_slot(const void *ptr)
{
    uint64_t key = (uint64_t)(uintptr_t)ptr;
    if (!g_cap)
        return NULL;
    size_t i = home(key, g_cap);
    while (g_slots[i].key != 0 && g_slots[i].key != key)
        i = (i + 1) & (g_cap - 1);
    return g_slots[i].key == key ? &g_slots[i] : NULL;
}

/* Removes ptr's entry into *out; 0 when ptr was not there. */
static int table_take(void *ptr, slot *out)
{
    pthread_mutex_lock(&g_table_lock);
    slot *at = table_slot(ptr);
    if (at) {
        *out = *at;
        g_count--;
        /* Backward shift: pull later entries of the run into the hole when
         * their home position allows it, so probes never need tombstones. */
        size_t mask = g_cap - 1, hole = (size_t)(at - g_slots), j = hole;
        for (;;) {
            j = (j + 1) & mask;
            if (g_slots[j].key == 0)
                break;
            size_t h = home(g_slots[j].key, g_cap);
            /* j's entry may move to the hole unless its home lies
             * cyclically in (hole, j]. */
            int stays = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
            if (!stays) {
                g_slots[hole] = g_slots[j];
                hole = j;
            }
        }
        g_slots[hole].key = 0;
    }
    pthread_mutex_unlock(&g_table_lock);
    return at != NULL;
}

/* Looks ptr up without removing it; 0 when it is not there. */
static int table_find(const void *ptr, slot *out)
{
    pthread_mutex_lock(&g_table_lock);
    slot *at = table_slot(ptr);
    if (at)
        *out = *at;
    pthread_mutex_unlock(&g_table_lock);
    return at != NULL;
}

/* Adds stream to the streams ptr's block is used on (Tensor.record_stream):
 * 0, or -1 when ptr is not there or memory ran out. */
static int table_add_use(const void *ptr, void *stream)
{
    int rc = -1;
    pthread_mutex_lock(&g_table_lock);
    slot *s = table_slot(ptr);
    if (s) {
        rc = 0;
        unsigned k = 0;
        while (k < s->nuses && s->uses[k] != stream)
            k++;
        if (k == s->nuses) {
            void **uses = realloc(s->uses, (s->nuses + 1) * sizeof *uses);
            if (uses) {
                uses[s->nuses++] = stream;
                s->uses = uses;
            } else {
                rc = -1;
            }
        }
    }
    pthread_mutex_unlock(&g_table_lock);
    return rc;
}

/* ---- one runtime and context per device ------------------------------------ */

static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;
static gms_runtime *g_rt[MAX_DEVICES];
static _Atomic(gms_context *) g_ctx[MAX_DEVICES];
static int g_open_failed[MAX_DEVICES];
static atomic_int g_first_device = -1;

/* device, or the first one used for device < 0 (-1 before any). */
static int pick_device(int device)
{
    return device < 0 ? atomic_load(&g_first_device) : device;
}
static _Atomic bool g_timing; /* $GMS_TORCH_TIMING=1 (see gms_torch_timing) */

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* The tenant the plug-in's contexts belong to. */
static const char *tenant_name(void)
{
    return env_or("GMS_TENANT", "torch");
}

/* A byte count from the environment into *out, left alone when unset (0:
 * the library's default). 0 when it is a whole number (decimal, or hex
 * with 0x), -1 otherwise: strtoull alone would take "8G" as 8, "-1" as
 * 2^64-1 and an overflow as the largest value, and a setting that is not
 * what it says must not be used as something else. */
static int u64_from_env(const char *name, uint64_t *out)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    if (*v < '0' || *v > '9') /* no sign, no leading space */
        return -1;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = (uint64_t)n;
    return 0;
}

/* The runtime options the environment sets; NULL, or the name of the
 * variable whose value is not one of those it takes. */
static const char *options_from_env(gms_runtime_options *o)
{
    const char *b = env_or("GMS_TORCH_BACKEND", "cuda");
    if (strcmp(b, "cuda") == 0)
        o->backend = GMS_BACKEND_CUDA;
    else if (strcmp(b, "host") == 0)
        o->backend = GMS_BACKEND_HOST;
    else if (strcmp(b, "hip") == 0)
        o->backend = GMS_BACKEND_HIP;
    else if (strcmp(b, "auto") == 0)
        o->backend = GMS_BACKEND_AUTO;
    else
        return "GMS_TORCH_BACKEND";
    const char *safety = env_or("GMS_TORCH_SAFETY", "on");
    if (strcmp(safety, "off") == 0)
        o->safety = GMS_SAFETY_OFF;
    else if (strcmp(safety, "on") != 0)
        return "GMS_TORCH_SAFETY";
    /* Tuning, with safety on: how many freed bytes wait poisoned before
     * reuse, and a cap on what the runtime maps. Unset keeps the library's
     * defaults. */
    if (u64_from_env("GMS_TORCH_QUARANTINE_BYTES", &o->quarantine_bytes))
        return "GMS_TORCH_QUARANTINE_BYTES";
    if (u64_from_env("GMS_TORCH_MAX_HELD_BYTES", &o->max_held_bytes))
        return "GMS_TORCH_MAX_HELD_BYTES";
    /* Mapped granules kept when no buffer uses them: a training step frees
     * and reallocates gigabytes, and remapping them costs tens of
     * microseconds per 2 MiB. */
    if (u64_from_env("GMS_TORCH_RETAIN_BYTES", &o->retain_bytes))
        return "GMS_TORCH_RETAIN_BYTES";
    return NULL;
}

static gms_context *context_for(int device)
{
    if (device < 0 || device >= MAX_DEVICES) {
        fprintf(stderr, "gms_torch: device %d out of range\n", device);
        return NULL;
    }
    gms_context *ctx = atomic_load_explicit(&g_ctx[device], memory_order_acquire);
    if (ctx)
        return ctx;
    pthread_mutex_lock(&g_open_lock);
    ctx = atomic_load_explicit(&g_ctx[device], memory_order_relaxed);
    if (!ctx && !g_open_failed[device]) {
        gms_runtime_options o;
        gms_runtime_options_init(&o);
        o.device = device;
        const char *bad = options_from_env(&o);
        gms_context_desc d;
        gms_context_desc_init(&d);
        d.tenant = tenant_name();
        d.user = env_or("GMS_USER", "torch");
        d.language = GMS_LANG_PYTHON;
        gms_runtime *rt = NULL;
        /* Said once: every later allocation on the device fails quietly. */
        if (bad) {
            fprintf(stderr, "gms_torch: cannot open gms on device %d: $%s=\"%s\" is not a value it takes\n",
                    device, bad, getenv(bad));
            ctx = NULL;
            g_open_failed[device] = 1;
        } else if (gms_runtime_open(&rt, &o) != GMS_OK || gms_context_open(&ctx, rt, &d) != GMS_OK) {
            fprintf(stderr, "gms_torch: cannot open gms on device %d: %s\n", device,
                    gms_error_last());
            gms_runtime_close(rt);
            ctx = NULL;
            g_open_failed[device] = 1;
        } else {
            g_rt[device] = rt;
            atomic_store(&g_timing, strcmp(env_or("GMS_TORCH_TIMING", "0"), "1") == 0);
            int none = -1;
            atomic_compare_exchange_strong(&g_first_device, &none, device);
            atomic_store_explicit(&g_ctx[device], ctx, memory_order_release);
        }
    }
    pthread_mutex_unlock(&g_open_lock);
    return ctx;
}

/* ---- where the host's time goes (GMS_TORCH_TIMING=1) ------------------------
 * For the benchmark: nanoseconds spent inside the two calls below, their
 * counts and the longest call of each, so that a step that is slower on
 * gms can be split into the allocator's own host time and the rest. Off
 * unless the variable is set when the first runtime opens (it reads no
 * clock then; on, a clock read costs about 20 ns a call). */
enum { T_ALLOC, T_FREE };
static _Atomic uint64_t g_time_ns[2], g_time_calls[2], g_time_max_ns[2];

static bool timing_on(void)
{
    return atomic_load_explicit(&g_timing, memory_order_relaxed);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void timing_add(int which, uint64_t t0)
{
    uint64_t ns = now_ns() - t0;
    atomic_fetch_add_explicit(&g_time_ns[which], ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_time_calls[which], 1, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&g_time_max_ns[which], memory_order_relaxed);
    while (ns > max && !atomic_compare_exchange_weak_explicit(&g_time_max_ns[which], &max, ns,
                                                              memory_order_relaxed,
                                                              memory_order_relaxed))
        ;
}

/* out[6]: ns in gms_torch_alloc, its calls, its longest call's ns, then the
 * same for gms_torch_free; all zero unless GMS_TORCH_TIMING=1. */
GMS_TORCH_API void gms_torch_timing(uint64_t out[6])
{
    if (!out)
        return;
    for (int w = 0; w < 2; w++) {
        out[3 * w] = atomic_load(&g_time_ns[w]);
        out[3 * w + 1] = atomic_load(&g_time_calls[w]);
        out[3 * w + 2] = atomic_load(&g_time_max_ns[w]);
    }
}

/* ---- the driver calls that graphs and other streams need ------------------------
 * Looked up in the libcuda.so.1 already loaded (PyTorch's; gms's CUDA
 * backend opens the same one). On the host backend there is none, and
 * nothing to capture or order: every stream then reads as not capturing. */
enum { CAPTURE_STATUS_NONE = 0, CAPTURE_MODE_RELAXED = 2 };

static struct {
    int (*is_capturing)(void *stream, int *status);
    int (*exchange_capture_mode)(int *mode);
    int (*event_create)(void **event, unsigned flags);
    int (*event_record)(void *event, void *stream);
    int (*stream_wait_event)(void *stream, void *event, unsigned flags);
    int (*event_destroy)(void *event);
    int (*ctx_synchronize)(void);
    int (*device_get)(int *device, int ordinal);
    int (*device_total_mem)(size_t *bytes, int device);
} cu;
static pthread_once_t cu_once = PTHREAD_ONCE_INIT;

static void cu_resolve(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        return;
    /* dlsym gives a void *; the driver's entry points are functions. */
    *(void **)&cu.is_capturing = dlsym(h, "cuStreamIsCapturing");
    *(void **)&cu.exchange_capture_mode = dlsym(h, "cuThreadExchangeStreamCaptureMode");
    *(void **)&cu.event_create = dlsym(h, "cuEventCreate");
    *(void **)&cu.event_record = dlsym(h, "cuEventRecord");
    *(void **)&cu.stream_wait_event = dlsym(h, "cuStreamWaitEvent");
    *(void **)&cu.event_destroy = dlsym(h, "cuEventDestroy_v2");
    *(void **)&cu.ctx_synchronize = dlsym(h, "cuCtxSynchronize");
    *(void **)&cu.device_get = dlsym(h, "cuDeviceGet");
    *(void **)&cu.device_total_mem = dlsym(h, "cuDeviceTotalMem_v2");
}

static void cu_load(void)
{
    pthread_once(&cu_once, cu_resolve);
}

/* Whether a capture into a CUDA graph is under way on stream. A query: it
 * waits for nothing, and is allowed during a capture. */
static bool stream_capturing(void *stream)
{
    cu_load();
    int status = CAPTURE_STATUS_NONE;
    return cu.is_capturing && cu.is_capturing(stream, &status) == 0 && status != CAPTURE_STATUS_NONE;
}

/* While a capture in the default (global) mode is under way anywhere, a
 * thread may not make calls that could wait for the device; gms's calls
 * outside the captured stream may. Relaxed lifts that for this thread
 * until it is restored; returns the mode to restore, or -1. */
static int capture_mode_relaxed(void)
{
    cu_load();
    int mode = CAPTURE_MODE_RELAXED;
    return cu.exchange_capture_mode && cu.exchange_capture_mode(&mode) == 0 ? mode : -1;
}

static void capture_mode_restore(int mode)
{
    if (mode >= 0)
        cu.exchange_capture_mode(&mode);
}

/* ---- other streams (Tensor.record_stream) ------------------------------------------
 * PyTorch frees a block on the stream it was allocated on. A tensor also
 * used on other streams is marked with record_stream, and its memory must
 * not be reused before their work is done either. The free is then
 * ordered after that work: each such stream gets an event, and the
 * freeing stream waits for it (on the device, not the host) before
 * gms_free_async puts the block's scrub and reuse behind it. */
static void order_after_uses(void *stream, void *const *uses, unsigned n)
{
    if (n)
        cu_load();
    for (unsigned i = 0; i < n; i++) {
        if (uses[i] == stream)
            continue;
        void *ev = NULL;
        bool ok = cu.event_create && cu.event_create(&ev, 2 /* disable timing */) == 0;
        if (ok) {
            ok = cu.event_record(ev, uses[i]) == 0 && cu.stream_wait_event(stream, ev, 0) == 0;
            cu.event_destroy(ev); /* released once its record has run */
        }
        if (!ok && cu.ctx_synchronize) {
            /* Not ordered on the device: wait on the host instead, rather
             * than reuse memory another stream may still read. */
            fprintf(stderr, "gms_torch: cannot order a free after stream %p; waiting for the device\n",
                    uses[i]);
            cu.ctx_synchronize();
            return;
        }
    }
}

/* ---- graphs (torch.cuda.graph, torch.compile's "reduce-overhead") -----------------
 * A captured graph replays its kernels at the addresses they were captured
 * with, again and again, until it is released. PyTorch tells the
 * allocator: begin_allocate_to_pool before a capture into a memory pool
 * starts, end_allocate_to_pool after it ends, release_pool when a graph
 * using the pool is destroyed. Then, as PyTorch's own allocator does:
 *
 * - a block allocated on a capturing stream belongs to the pool. When it
 *   is freed (during the capture, or after it: a graph's output) it is
 *   kept for the pool (parked), not freed to gms, since replays still
 *   write it; later allocations into the pool take it again (on the same
 *   stream while its capture lasts). The pool's blocks go back to gms,
 *   scrubbed as any free, once every graph using it is released;
 * - nothing of gms's is queued into a capture: new memory for the pool is
 *   made ready before the call returns (gms_alloc, off the captured
 *   stream), and a block of another owner freed on a capturing stream is
 *   freed once that capture ends (its scrub would be captured otherwise);
 *   the pool's start flushes gms's pending scrubs, so that none of them is
 *   launched into the capture afterwards.
 *
 * PyTorch's hooks also pass a filter (a C++ std::function) naming the
 * capture's streams; C cannot call it, so "the stream is capturing" stands
 * for it. With captures into two pools at once on one device, the pool
 * begun last takes the allocations of both. */
typedef struct parked {
    gms_buf buf;
    void *ptr;
    uint64_t size;
    void *stream;     /* freed on */
    uint64_t capture; /* freed during the pool's capture number capture, or 0 */
    struct parked *next;
} parked;

typedef struct graph_pool {
    uint64_t id[2];
    int device;
    unsigned refs;      /* captures begun into it whose graph is not released */
    unsigned capturing; /* captures into it under way */
    uint64_t captures;  /* captures begun into it so far */
    uint64_t live;      /* its blocks PyTorch holds */
    parked *free;       /* its blocks PyTorch freed */
    struct graph_pool *next;
} graph_pool;

typedef struct deferred {
    int device;
    gms_buf buf;
    void *stream;
    unsigned nuses;
    void **uses;
    struct deferred *next;
} deferred;

static pthread_mutex_t g_graph_lock = PTHREAD_MUTEX_INITIALIZER;
static graph_pool *g_pools;        /* the pool begun last first */
static deferred *g_deferred;       /* frees that wait for their capture's end */
static atomic_uint g_capturing[MAX_DEVICES]; /* captures under way: read on every alloc */

static bool device_capturing(int device)
{
    return device >= 0 && device < MAX_DEVICES &&
           atomic_load_explicit(&g_capturing[device], memory_order_relaxed) != 0;
}

/* The pool of (device, id); with begin set, made when missing and put
 * first (the pool begun last); g_graph_lock held. */
static graph_pool *pool_find(int device, const uint64_t id[2], bool begin)
{
    for (graph_pool **pp = &g_pools; *pp; pp = &(*pp)->next) {
        graph_pool *p = *pp;
        if (p->device == device && p->id[0] == id[0] && p->id[1] == id[1]) {
            if (begin) {
                *pp = p->next;
                p->next = g_pools;
                g_pools = p;
            }
            return p;
        }
    }
    graph_pool *p = begin ? calloc(1, sizeof *p) : NULL;
    if (p) {
        p->id[0] = id[0];
        p->id[1] = id[1];
        p->device = device;
        p->next = g_pools;
        g_pools = p;
    }
    return p;
}

/* Forgets a pool that is released and holds nothing; g_graph_lock held. */
static void pool_forget_if_done(graph_pool *p)
{
    if (p->refs || p->live || p->free)
        return;
    for (graph_pool **pp = &g_pools; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            free(p);
            return;
        }
}

GMS_TORCH_API void gms_torch_begin_allocate_to_pool(int device, uint64_t id0, uint64_t id1,
                                                    const void *filter)
{
    (void)filter; /* a std::function: see above */
    gms_context *ctx = context_for(device);
    if (!ctx)
        return;
    /* Scrubs gathered but not launched would be launched by the collector
     * on their stream, which may be the one about to be captured. */
    if (gms_sync(g_rt[device]) != GMS_OK)
        fprintf(stderr, "gms_torch: before a capture: %s\n", gms_error_last());
    const uint64_t id[2] = {id0, id1};
    pthread_mutex_lock(&g_graph_lock);
    graph_pool *p = pool_find(device, id, true);
    if (p) {
        p->refs++;
        p->capturing++;
        p->captures++;
        atomic_fetch_add(&g_capturing[device], 1);
    }
    pthread_mutex_unlock(&g_graph_lock);
    if (!p)
        fprintf(stderr, "gms_torch: no memory for a graph pool: the capture's memory is not kept apart\n");
}

GMS_TORCH_API void gms_torch_end_allocate_to_pool(int device, uint64_t id0, uint64_t id1)
{
    if (device < 0 || device >= MAX_DEVICES)
        return;
    const uint64_t id[2] = {id0, id1};
    deferred *ready = NULL, **keep;
    pthread_mutex_lock(&g_graph_lock);
    graph_pool *p = pool_find(device, id, false);
    if (p && p->capturing) {
        p->capturing--;
        atomic_fetch_sub(&g_capturing[device], 1);
    }
    /* The frees that waited for a capture that has ended. */
    keep = &g_deferred;
    while (*keep) {
        deferred *d = *keep;
        if (!stream_capturing(d->stream)) {
            *keep = d->next;
            d->next = ready;
            ready = d;
        } else {
            keep = &d->next;
        }
    }
    pthread_mutex_unlock(&g_graph_lock);
    int mode = ready ? capture_mode_relaxed() : -1; /* another capture may be under way */
    while (ready) {
        deferred *d = ready;
        ready = d->next;
        order_after_uses(d->stream, d->uses, d->nuses);
        if (gms_free_async(atomic_load(&g_ctx[d->device]), d->buf, d->stream) != GMS_OK)
            fprintf(stderr, "gms_torch: free: %s\n", gms_error_last());
        free(d->uses);
        free(d);
    }
    capture_mode_restore(mode);
}

GMS_TORCH_API void gms_torch_release_pool(int device, uint64_t id0, uint64_t id1)
{
    if (device < 0 || device >= MAX_DEVICES)
        return;
    const uint64_t id[2] = {id0, id1};
    parked *blocks = NULL;
    pthread_mutex_lock(&g_graph_lock);
    graph_pool *p = pool_find(device, id, false);
    if (p && p->refs && --p->refs == 0) {
        blocks = p->free;
        p->free = NULL;
        pool_forget_if_done(p);
    }
    pthread_mutex_unlock(&g_graph_lock);
    if (!blocks)
        return;
    /* The graph may still be running a replay that writes them; PyTorch
     * destroys it without waiting. Rare: once per graph. */
    int mode = capture_mode_relaxed(); /* another capture may be under way */
    if (cu.ctx_synchronize)
        cu.ctx_synchronize();
    gms_context *ctx = atomic_load(&g_ctx[device]);
    while (blocks) {
        parked *b = blocks;
        blocks = b->next;
        if (gms_free(ctx, b->buf) != GMS_OK)
            fprintf(stderr, "gms_torch: free: %s\n", gms_error_last());
        free(b);
    }
    capture_mode_restore(mode);
}

/* An allocation on a capturing stream: a block the pool holds, or new
 * memory made ready off the captured stream. NULL on failure. */
static void *graph_alloc(gms_context *ctx, int device, uint64_t size, void *stream)
{
    parked *got = NULL;
    graph_pool *pool = NULL;
    pthread_mutex_lock(&g_graph_lock);
    for (graph_pool *p = g_pools; p && !pool; p = p->next)
        if (p->device == device && p->capturing)
            pool = p;
    if (pool) {
        /* The smallest that fits, at most twice the request; one freed in
         * this capture only on its own stream (the capture orders nothing
         * else after its free). */
        parked **best = NULL;
        for (parked **b = &pool->free; *b; b = &(*b)->next) {
            parked *c = *b;
            if (c->size < size || c->size > 2 * size ||
                (c->capture == pool->captures && c->stream != stream))
                continue;
            if (!best || c->size < (*best)->size)
                best = b;
        }
        if (best) {
            got = *best;
            *best = got->next;
        }
        pool->live++; /* counted now: the pool stays while this call runs */
    }
    pthread_mutex_unlock(&g_graph_lock);
    gms_buf buf;
    void *ptr = NULL;
    int rc = GMS_OK;
    if (got) {
        buf = got->buf;
        ptr = got->ptr;
        free(got);
    } else {
        rc = gms_alloc(ctx, size, 0, &buf); /* ready when it returns: nothing queued */
        if (rc == GMS_OK && (rc = gms_buf_ptr(ctx, buf, &ptr)) != GMS_OK)
            gms_free(ctx, buf);
    }
    if (rc == GMS_OK && table_put(ptr, buf, device, size, pool) != 0) {
        gms_free(ctx, buf);
        rc = GMS_E_NO_MEMORY;
    }
    if (rc != GMS_OK) {
        fprintf(stderr, "gms_torch: allocating %llu bytes for a graph on device %d failed: %s\n",
                (unsigned long long)size, device, gms_error_last());
        ptr = NULL;
        if (pool) {
            pthread_mutex_lock(&g_graph_lock);
            pool->live--;
            pool_forget_if_done(pool);
            pthread_mutex_unlock(&g_graph_lock);
        }
    }
    return ptr;
}

/* The free of a pool's block: kept for the pool while a graph uses it (1),
 * or 0 once every graph is released (then it is freed as any block). */
static int graph_free(const slot *s, void *stream)
{
    graph_pool *p = s->pool;
    parked *b = NULL;
    pthread_mutex_lock(&g_graph_lock);
    if (p->refs && (b = malloc(sizeof *b)) != NULL) {
        b->buf = s->buf;
        b->ptr = (void *)(uintptr_t)s->key;
        b->size = s->size;
        b->stream = stream;
        b->capture = p->capturing ? p->captures : 0;
        b->next = p->free;
        p->free = b;
    }
    /* Out of memory for the note: the block stays allocated, as it must
     * while a graph may write it, and is not reused. */
    int kept = p->refs != 0;
    p->live--;
    pool_forget_if_done(p);
    pthread_mutex_unlock(&g_graph_lock);
    return kept;
}

/* The free of another block on a capturing stream: kept until the capture
 * ends (1), or 0 when there is no memory to keep it (freed then). */
static int defer_free(const slot *s, void *stream)
{
    deferred *d = malloc(sizeof *d);
    if (!d)
        return 0;
    *d = (deferred){s->device, s->buf, stream, s->nuses, s->uses, NULL};
    pthread_mutex_lock(&g_graph_lock);
    d->next = g_deferred;
    g_deferred = d;
    pthread_mutex_unlock(&g_graph_lock);
    return 1;
}

/* ---- the two functions PyTorch calls ------------------------------------------ */

/* PyTorch does not check the result: a NULL for a non-empty tensor surfaces
 * as a CUDA error at the first kernel that touches it, so a failure is
 * always reported here, with gms's reason. */
/* ---- PyTorch's memory counters ------------------------------------------------------
 * torch.cuda.memory_allocated() and its kin ask the allocator for
 * counters a pluggable one does not have (PyTorch raises). gms.torch
 * answers them from these: the bytes and tensors PyTorch holds now on a
 * device, and the bytes' peak since the last reset; what is mapped comes
 * from gms_stats. Two atomic operations a call. */
static _Atomic uint64_t g_bytes[MAX_DEVICES], g_peak[MAX_DEVICES], g_tensors[MAX_DEVICES];

static void counted_alloc(int device, uint64_t size)
{
    uint64_t now = atomic_fetch_add_explicit(&g_bytes[device], size, memory_order_relaxed) + size;
    atomic_fetch_add_explicit(&g_tensors[device], 1, memory_order_relaxed);
    uint64_t peak = atomic_load_explicit(&g_peak[device], memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(&g_peak[device], &peak, now,
                                                                memory_order_relaxed,
                                                                memory_order_relaxed))
        ;
}

static void counted_free(int device, uint64_t size)
{
    atomic_fetch_sub_explicit(&g_bytes[device], size, memory_order_relaxed);
    atomic_fetch_sub_explicit(&g_tensors[device], 1, memory_order_relaxed);
}

/* out[3]: the bytes PyTorch holds on device (< 0: the first used; all 0
 * before any allocation), their peak since the last reset, and its
 * tensors; GMS_E_INVALID_ARG for a device out of range. */
GMS_TORCH_API int gms_torch_memory(int device, uint64_t out[3])
{
    if (!out)
        return GMS_E_INVALID_ARG;
    out[0] = out[1] = out[2] = 0;
    device = pick_device(device);
    if (device >= MAX_DEVICES)
        return GMS_E_INVALID_ARG;
    if (device >= 0) {
        out[0] = atomic_load(&g_bytes[device]);
        out[1] = atomic_load(&g_peak[device]);
        out[2] = atomic_load(&g_tensors[device]);
    }
    return GMS_OK;
}

/* torch.cuda.reset_peak_memory_stats: the peak starts again from now. */
GMS_TORCH_API int gms_torch_reset_peak(int device)
{
    device = pick_device(device);
    if (device < 0)
        return GMS_OK; /* nothing allocated yet */
    if (device >= MAX_DEVICES)
        return GMS_E_INVALID_ARG;
    atomic_store(&g_peak[device], atomic_load(&g_bytes[device]));
    return GMS_OK;
}

static void *alloc_ordered(gms_context *ctx, ssize_t size, int device, void *stream);

/* gms_torch_raise.cpp: throws why to the caller, as PyTorch's own
 * allocator throws when it runs out of memory. */
__attribute__((noreturn)) void gms_torch_raise(const char *why);

/* Whether a refused allocation is thrown (gms.torch.use_gms() turns it on:
 * PyTorch does not check for NULL) or returned as NULL (a C or ctypes
 * caller, which cannot catch a C++ exception). */
static atomic_bool g_raise;

GMS_TORCH_API void gms_torch_raise_on_failure(int on)
{
    atomic_store(&g_raise, on != 0);
}

/* NULL, or thrown when the plug-in raises (reason NULL: gms's last
 * error); no lock is held here. */
static void *refused(ssize_t size, int device, const char *reason)
{
    if (atomic_load(&g_raise)) {
        char why[512];
        snprintf(why, sizeof why, "gms: allocating %zd bytes on device %d failed: %s", size,
                 device, reason ? reason : gms_error_last());
        gms_torch_raise(why);
    }
    return NULL;
}

GMS_TORCH_API void *gms_torch_alloc(ssize_t size, int device, void *stream)
{
    if (size <= 0)
        return NULL; /* an empty tensor: PyTorch never dereferences it */
    gms_context *ctx = context_for(device);
    if (!ctx)
        return refused(size, device, "gms is not open on this device (the first try said why)");
    void *ptr;
    if (!device_capturing(device)) {
        ptr = alloc_ordered(ctx, size, device, stream);
    } else {
        /* A capture is under way: mapping memory is a call it forbids on
         * every thread not relaxed, whatever the stream (PyTorch's own
         * allocator relaxes around cudaMalloc in the same way). */
        int mode = capture_mode_relaxed();
        ptr = stream_capturing(stream) ? graph_alloc(ctx, device, (uint64_t)size, stream)
                                       : alloc_ordered(ctx, size, device, stream);
        capture_mode_restore(mode);
    }
    if (!ptr)
        return refused(size, device, NULL);
    counted_alloc(device, (uint64_t)size);
    return ptr;
}

static void *alloc_ordered(gms_context *ctx, ssize_t size, int device, void *stream)
{
    uint64_t t0 = timing_on() ? now_ns() : 0;
    gms_buf buf;
    void *ptr = NULL;
    /* Stream-ordered, as PyTorch's own allocator: a block this stream freed
     * is reused at once, and nothing waits for the GPU. */
    int rc = gms_alloc_async(ctx, (size_t)size, 0, stream, &buf);
    if (rc == GMS_OK) {
        rc = gms_buf_ptr(ctx, buf, &ptr);
        if (rc == GMS_OK && table_put(ptr, buf, device, (uint64_t)size, NULL) != 0)
            rc = GMS_E_NO_MEMORY;
        if (rc != GMS_OK) {
            gms_free(ctx, buf);
            ptr = NULL;
        }
    }
    if (rc != GMS_OK)
        fprintf(stderr, "gms_torch: allocating %zd bytes on device %d failed: %s\n", size,
                device, gms_error_last());
    if (t0)
        timing_add(T_ALLOC, t0);
    return ptr;
}

GMS_TORCH_API void gms_torch_free(void *ptr, ssize_t size, int device, void *stream)
{
    (void)size;
    (void)device; /* the table knows the device the block came from */
    if (!ptr)
        return;
    uint64_t t0 = timing_on() ? now_ns() : 0;
    slot s;
    if (!table_take(ptr, &s)) {
        fprintf(stderr, "gms_torch: free of %p, which gms_torch did not allocate\n", ptr);
        return;
    }
    counted_free(s.device, s.size); /* PyTorch's no more, whatever happens to the block */
    if (s.pool && graph_free(&s, stream)) {
        free(s.uses);
        return;
    }
    bool capturing = device_capturing(s.device);
    if (capturing && stream_capturing(stream) && defer_free(&s, stream))
        return; /* its uses go with it */
    gms_context *ctx = atomic_load_explicit(&g_ctx[s.device], memory_order_acquire);
    int mode = capturing ? capture_mode_relaxed() : -1; /* as in alloc */
    order_after_uses(stream, s.uses, s.nuses);
    free(s.uses);
    /* On a GPU the free's checks run on the stream later and what they
     * find goes to the log, the audit trail and the callbacks; the host
     * backend (tests) checks at once: GMS_E_CORRUPTION, the block freed. */
    if (gms_free_async(ctx, s.buf, stream) != GMS_OK)
        fprintf(stderr, "gms_torch: free: %s\n", gms_error_last());
    capture_mode_restore(mode);
    if (t0)
        timing_add(T_FREE, t0);
}

/* Tensor.record_stream(stream): the block is used on stream too, so its
 * free waits for the work queued there (see "Other streams"). */
GMS_TORCH_API void gms_torch_record_stream(void *ptr, void *stream)
{
    if (ptr && table_add_use(ptr, stream) != 0)
        fprintf(stderr, "gms_torch: record_stream of %p, which gms_torch did not allocate "
                        "(or no memory to note it)\n", ptr);
}


/* ---- for Python (gms.torch) and the benchmark ----------------------------------- */

/* The runtime of a device (device < 0: the first one used), or NULL before
 * its first allocation. It stays the plug-in's: never close it. */
GMS_TORCH_API gms_runtime *gms_torch_runtime(int device)
{
    device = pick_device(device);
    if (device < 0 || device >= MAX_DEVICES ||
        !atomic_load_explicit(&g_ctx[device], memory_order_acquire))
        return NULL;
    return g_rt[device];
}

GMS_TORCH_API gms_context *gms_torch_context(int device)
{
    device = pick_device(device);
    if (device < 0 || device >= MAX_DEVICES)
        return NULL;
    return atomic_load_explicit(&g_ctx[device], memory_order_acquire);
}

/* gms_stats of a device's runtime (device < 0: the first one used);
 * GMS_E_INVALID_ARG before any allocation there. */
GMS_TORCH_API int gms_torch_stats(int device, gms_stats *out)
{
    gms_runtime *rt = gms_torch_runtime(device);
    if (!rt || !out)
        return GMS_E_INVALID_ARG;
    return gms_stats_get(rt, out);
}

/* Returns unused mapped memory of every device to the driver (gms_trim). */
GMS_TORCH_API int gms_torch_trim(void)
{
    int rc = GMS_OK;
    for (int d = 0; d < MAX_DEVICES; d++)
        if (gms_torch_runtime(d)) {
            int r = gms_trim(g_rt[d]);
            if (r != GMS_OK)
                rc = r;
        }
    return rc;
}

/* torch.cuda.set_per_process_memory_fraction(fraction, device): the
 * plug-in's tenant may hold at most that fraction of the device's memory
 * in live blocks on it (a gms quota: past it an allocation is refused, and
 * raised to PyTorch as its own allocator's limit is). Said and ignored
 * when the device's size is not known (the host backend). */
GMS_TORCH_API void gms_torch_set_memory_fraction(double fraction, int device)
{
    gms_context *ctx = context_for(device);
    cu_load();
    int dev = 0;
    size_t total = 0;
    if (!ctx || !cu.device_get || !cu.device_total_mem || cu.device_get(&dev, device) != 0 ||
        cu.device_total_mem(&total, dev) != 0 || !(fraction >= 0 && fraction <= 1)) {
        fprintf(stderr, "gms_torch: set_per_process_memory_fraction(%g) on device %d: not "
                        "applied (no CUDA device size known, or a fraction outside [0, 1])\n",
                fraction, device);
        return;
    }
    uint64_t limit = (uint64_t)(fraction * (double)total);
    if (gms_tenant_set_quota(g_rt[device], tenant_name(), limit, GMS_UNLIMITED) !=
        GMS_OK)
        fprintf(stderr, "gms_torch: set_per_process_memory_fraction: %s\n", gms_error_last());
}

/* torch.cuda.empty_cache(): gms_trim of every device. */
GMS_TORCH_API void gms_torch_empty_cache(void)
{
    if (gms_torch_trim() != GMS_OK)
        fprintf(stderr, "gms_torch: empty_cache: %s\n", gms_error_last());
}

/* The gms handle (and device) of a pointer gms_torch_alloc returned and
 * PyTorch has not freed: 1, or 0 when the pointer is not one of them (an
 * address inside a block is not looked up). For tests and tools. */
GMS_TORCH_API int gms_torch_lookup(const void *ptr, gms_buf *buf, int *device)
{
    slot s;
    if (!ptr || !table_find(ptr, &s))
        return 0;
    if (buf)
        *buf = s.buf;
    if (device)
        *device = s.device;
    return 1;
}

/* Pointers allocated and not yet freed, all devices together. */
GMS_TORCH_API uint64_t gms_torch_live_pointers(void)
{
    pthread_mutex_lock(&g_table_lock);
    uint64_t n = g_count;
    pthread_mutex_unlock(&g_table_lock);
    return n;
}
