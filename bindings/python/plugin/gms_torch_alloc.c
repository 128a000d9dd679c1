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
 * Only the public API (gms.h) is used. No CUDA header is needed: streams are
 * opaque pointers handed to gms. Thread-safe: the table has one lock, held
 * for a probe only, never across a gms call.
 */
#include <gms.h>

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

typedef struct {
    uint64_t key;
    gms_buf buf;
    int device;
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

static int table_put(void *ptr, gms_buf buf, int device)
{
    slot s = {(uint64_t)(uintptr_t)ptr, buf, device};
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

/* Removes ptr's entry into *out; 0 when ptr was not there. */
static int table_take(void *ptr, slot *out)
{
    uint64_t key = (uint64_t)(uintptr_t)ptr;
    int found = 0;
    pthread_mutex_lock(&g_table_lock);
    if (g_cap) {
        size_t mask = g_cap - 1, i = home(key, g_cap);
        while (g_slots[i].key != 0 && g_slots[i].key != key)
            i = (i + 1) & mask;
        if (g_slots[i].key == key) {
            *out = g_slots[i];
            found = 1;
            g_count--;
            /* Backward shift: pull later entries of the run into the hole
             * when their home position allows it, so probes never need
             * tombstones. */
            size_t hole = i, j = i;
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
    }
    pthread_mutex_unlock(&g_table_lock);
    return found;
}

/* Looks ptr up without removing it; 0 when it is not there. */
static int table_find(const void *ptr, slot *out)
{
    uint64_t key = (uint64_t)(uintptr_t)ptr;
    int found = 0;
    pthread_mutex_lock(&g_table_lock);
    if (g_cap) {
        size_t i = home(key, g_cap);
        while (g_slots[i].key != 0 && g_slots[i].key != key)
            i = (i + 1) & (g_cap - 1);
        if (g_slots[i].key == key) {
            *out = g_slots[i];
            found = 1;
        }
    }
    pthread_mutex_unlock(&g_table_lock);
    return found;
}

/* ---- one runtime and context per device ------------------------------------ */

static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;
static gms_runtime *g_rt[MAX_DEVICES];
static _Atomic(gms_context *) g_ctx[MAX_DEVICES];
static int g_open_failed[MAX_DEVICES];
static atomic_int g_first_device = -1;
static _Atomic bool g_timing; /* $GMS_TORCH_TIMING=1 (see gms_torch_timing) */

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
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
        d.tenant = env_or("GMS_TENANT", "torch");
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

/* ---- the two functions PyTorch calls ------------------------------------------ */

/* PyTorch does not check the result: a NULL for a non-empty tensor surfaces
 * as a CUDA error at the first kernel that touches it, so a failure is
 * always reported here, with gms's reason. */
GMS_TORCH_API void *gms_torch_alloc(ssize_t size, int device, void *stream)
{
    if (size <= 0)
        return NULL; /* an empty tensor: PyTorch never dereferences it */
    gms_context *ctx = context_for(device);
    if (!ctx)
        return NULL;
    uint64_t t0 = timing_on() ? now_ns() : 0;
    gms_buf buf;
    void *ptr = NULL;
    /* Stream-ordered, as PyTorch's own allocator: a block this stream freed
     * is reused at once, and nothing waits for the GPU. */
    int rc = gms_alloc_async(ctx, (size_t)size, 0, stream, &buf);
    if (rc == GMS_OK) {
        rc = gms_buf_ptr(ctx, buf, &ptr);
        if (rc == GMS_OK && table_put(ptr, buf, device) != 0)
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
    gms_context *ctx = atomic_load_explicit(&g_ctx[s.device], memory_order_acquire);
    /* On a GPU the free's checks run on the stream later and what they
     * find goes to the log, the audit trail and the callbacks; the host
     * backend (tests) checks at once: GMS_E_CORRUPTION, the block freed. */
    if (gms_free_async(ctx, s.buf, stream) != GMS_OK)
        fprintf(stderr, "gms_torch: free: %s\n", gms_error_last());
    if (t0)
        timing_add(T_FREE, t0);
}

/* ---- for Python (gms.torch) and the benchmark ----------------------------------- */

static int pick_device(int device)
{
    return device < 0 ? atomic_load(&g_first_device) : device;
}

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
