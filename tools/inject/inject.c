/*
 * inject.c: gms-inject, a fault-injection campaign that measures how much
 * of each class of memory misuse gms detects.
 *
 * For each class it runs many randomized trials (buffer sizes log-uniform
 * from 1 B to 1 MiB, random offsets, lengths, byte patterns and detection
 * paths), each on new buffers, and counts the trials in which gms noticed:
 * an error code, a violation callback, a leak count, or a hardware fault
 * (counted in a child process, or caught around the one raw write that
 * may fault). It prints, per class, the detection rate and its one-sided
 * 95% lower confidence bound (Clopper-Pearson; with no miss in n trials
 * that is 0.05^(1/n), so 30,000 clean trials prove 99.99%).
 *
 * On --backend cuda the same classes run on CUDA runtimes: the raw
 * pointers are device addresses, written with the driver's copy functions
 * (loaded with dlopen, as the backend does), and the writes that must fault
 * (wild_write, the chunk-guard trials of underflow_raw, the read-only-view
 * trials of immutable_write) are made from child processes with their own
 * CUDA contexts (see run_device_children).
 *
 * Only the public API is used: what the campaign measures is what a
 * language binding gets. A corrupting write always changes memory: the
 * injected bytes are the bytes found there XOR a random non-zero mask (a
 * write of the very bytes already there corrupts nothing).
 *
 *   gms-inject [--json] [--trials N] [--class NAME] [--seed S]
 *              [--backend host|cuda|auto] [--max-size B] [--jobs N] [--verbose]
 *
 * Exit status: 0 when every trial of every class run was detected, 1 when
 * some trial was missed, 2 on a usage or setup error.
 */
#include "gms.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TRIALS 30000u
#define DEFAULT_MAX_SIZE (1u << 20)
#define GRANULE (2ull << 20)
#define CHUNK (16ull << 30)
#define TARGET 0.9999

/* ---- options, randomness, clock -------------------------------------- */

static struct {
    uint64_t trials;
    uint64_t seed;
    bool json, verbose;
    const char *only;
    gms_backend_kind backend;
    const char *backend_arg;
    unsigned jobs; /* children in flight for the forking classes */
    uint64_t max_size; /* sizes are log-uniform in [1, max_size] */
    const char *child; /* internal: a batch of device-fault trials (cuda) */
} opt = {DEFAULT_TRIALS, 1, false, false, NULL, GMS_BACKEND_HOST, "host", 0, DEFAULT_MAX_SIZE, NULL};

/* Whether the runtimes run on the CUDA backend: raw pointers are device
 * addresses, written through the driver (below). */
static bool on_cuda;

static uint64_t rng;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static uint64_t rnd_in(uint64_t lo, uint64_t hi)
{
    return lo + (hi - lo == UINT64_MAX ? rnd() : rnd() % (hi - lo + 1));
}

static double rnd_unit(void)
{
    return (double)(rnd() >> 11) * 0x1.0p-53;
}

/* Log-uniform in [1, opt.max_size]. */
static size_t rnd_size(void)
{
    double top = log2((double)opt.max_size) + 1e-9;
    size_t s = (size_t)floor(exp2(rnd_unit() * top));
    return s < 1 ? 1 : s > opt.max_size ? (size_t)opt.max_size : s;
}

static uint8_t rnd_nonzero_byte(void)
{
    return (uint8_t)(1 + rnd() % 255);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- what gms tells us: violations and log lines ---------------------- */

#define VMAX 64
static struct {
    unsigned n; /* callbacks since the last reset */
    gms_violation_kind kind[VMAX];
    gms_buf handle[VMAX];
    uint64_t address[VMAX];
    int64_t offset[VMAX];
    bool history[VMAX]; /* the message names who allocated (and freed) */
} V;
static uint64_t n_logs, n_leak_logs;

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

static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    n_logs++;
    if (strstr(msg, "leak"))
        n_leak_logs++;
}

static void v_reset(void)
{
    pthread_mutex_lock(&V_lock);
    V.n = 0;
    pthread_mutex_unlock(&V_lock);
}

/* Whether a callback since the reset named handle h (0: any handle). */
static bool v_for(gms_buf h)
{
    pthread_mutex_lock(&V_lock);
    bool found = false;
    for (unsigned i = 0; i < V.n && i < VMAX && !found; i++)
        found = h == 0 || V.handle[i] == h;
    pthread_mutex_unlock(&V_lock);
    return found;
}

/* Whether a callback of kind k (0: any) reported an address in [lo, hi). */
static bool v_in(gms_violation_kind k, uint64_t lo, uint64_t hi)
{
    pthread_mutex_lock(&V_lock);
    bool found = false;
    for (unsigned i = 0; i < V.n && i < VMAX && !found; i++)
        found = (k == 0 || V.kind[i] == k) && V.address[i] >= lo && V.address[i] < hi;
    pthread_mutex_unlock(&V_lock);
    return found;
}

/* ---- runtime helpers ------------------------------------------------- */

static void die(const char *what, int rc)
{
    fprintf(stderr, "gms-inject: %s: %s (%s)\n", what, gms_strerror(rc), gms_error_last());
    exit(2);
}

/* A runtime with the default options but the given redzone. */
static gms_runtime *rt_open(uint32_t redzone)
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

static gms_context *ctx_open(gms_runtime *rt, const char *tenant, const char *user, gms_level level,
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

static gms_buf xalloc(gms_context *c, size_t size)
{
    gms_buf b;
    int rc = gms_alloc(c, size, 0, &b);
    if (rc)
        die("gms_alloc", rc);
    return b;
}

static uint8_t *xptr(gms_context *c, gms_buf b)
{
    void *p;
    int rc = gms_buf_ptr(c, b, &p);
    if (rc)
        die("gms_buf_ptr", rc);
    return p;
}

static gms_buf_info xinfo(gms_context *c, gms_buf b)
{
    gms_buf_info i;
    int rc = gms_buf_info_get(c, b, &i);
    if (rc)
        die("gms_buf_info", rc);
    return i;
}

/* XORs n bytes at p with random non-zero masks: every byte changes. */
static void corrupt(uint8_t *p, size_t n)
{
    volatile uint8_t *q = p;
    for (size_t i = 0; i < n; i++)
        q[i] ^= rnd_nonzero_byte();
}


/* ---- the CUDA driver, for writes through device addresses -------------
 *
 * On the CUDA backend gms_buf_ptr gives a device address: the raw classes
 * write through it with the driver's copy functions, loaded here with
 * dlopen as the backend does (no toolkit needed to build). gms puts back
 * the caller's context after each call, so this thread holds the primary
 * context of device 0 (the backend's, o.device = 0) current itself; gms
 * then finds it current and switches nothing. */

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef unsigned long long CUdeviceptr;

static struct {
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
    CUresult (*CtxSynchronize)(void);
    CUresult (*GetErrorName)(CUresult, const char **);
} cu;

/* Loads the driver and makes device 0's primary context current on this
 * thread (retained for the life of the process). */
static void cu_attach(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "gms-inject: --backend cuda: libcuda.so.1 did not load: %s\n", dlerror());
        exit(2);
    }
    static const struct {
        const char *sym;
        void **fn;
    } fns[] = {
        {"cuInit", (void **)&cu.Init},
        {"cuDeviceGet", (void **)&cu.DeviceGet},
        {"cuDevicePrimaryCtxRetain", (void **)&cu.DevicePrimaryCtxRetain},
        {"cuCtxSetCurrent", (void **)&cu.CtxSetCurrent},
        {"cuMemcpyHtoD_v2", (void **)&cu.MemcpyHtoD},
        {"cuMemcpyDtoH_v2", (void **)&cu.MemcpyDtoH},
        {"cuMemsetD8_v2", (void **)&cu.MemsetD8},
        {"cuCtxSynchronize", (void **)&cu.CtxSynchronize},
        {"cuGetErrorName", (void **)&cu.GetErrorName},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        if (!(*fns[i].fn = dlsym(lib, fns[i].sym))) {
            fprintf(stderr, "gms-inject: --backend cuda: the driver lacks %s\n", fns[i].sym);
            exit(2);
        }
    }
    CUdevice dev;
    CUcontext ctx;
    CUresult r = cu.Init(0);
    if (!r)
        r = cu.DeviceGet(&dev, 0);
    if (!r)
        r = cu.DevicePrimaryCtxRetain(&ctx, dev);
    if (!r)
        r = cu.CtxSetCurrent(ctx);
    if (r) {
        fprintf(stderr, "gms-inject: --backend cuda: entering device 0's primary context: CUresult %d\n", r);
        exit(2);
    }
}

static const char *cu_name(CUresult r)
{
    const char *s = NULL;
    if (cu.GetErrorName)
        cu.GetErrorName(r, &s);
    return s ? s : "unknown CUresult";
}

/* XORs n <= 64 bytes at device address a with random non-zero masks (the
 * bytes there are read first, so every byte changes), then waits for the
 * copy. Returns the driver's result: non-zero when it refused or faulted. */
static CUresult dev_corrupt(uint64_t a, size_t n)
{
    uint8_t buf[64];
    if (n > sizeof buf)
        n = sizeof buf;
    CUresult r = cu.MemcpyDtoH(buf, (CUdeviceptr)a, n);
    if (r)
        return r;
    for (size_t i = 0; i < n; i++)
        buf[i] ^= rnd_nonzero_byte();
    if ((r = cu.MemcpyHtoD((CUdeviceptr)a, buf, n)) != 0)
        return r;
    return cu.CtxSynchronize();
}

/* A corrupting write through a raw pointer that must land (in mapped
 * memory): through the CPU on the host backend, the driver on cuda. */
static void raw_corrupt(uint8_t *p, size_t n)
{
    if (!on_cuda) {
        corrupt(p, n);
        return;
    }
    CUresult r = dev_corrupt((uint64_t)(uintptr_t)p, n);
    if (r) {
        fprintf(stderr, "gms-inject: a write of %zu bytes at device address 0x%" PRIx64 " failed: %s (%d)\n",
                n, (uint64_t)(uintptr_t)p, cu_name(r), r);
        exit(2);
    }
}

/* ---- one class's tally ----------------------------------------------- */

typedef struct tally {
    const char *cls;
    const char *how;
    uint64_t trials, detected, by_fault, misses_shown;
    double seconds;
} tally;

static void miss(tally *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void miss(tally *t, const char *fmt, ...)
{
    if (!opt.verbose || t->misses_shown++ >= 20)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gms-inject: %s: missed: ", t->cls);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void count(tally *t, bool detected)
{
    t->trials++;
    t->detected += detected;
}

/* ---- statistics: the one-sided 95% Clopper-Pearson lower bound -------- */

/* The continued fraction of the incomplete beta function (Lentz). */
static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < tiny)
        d = tiny;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 100000; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15)
            break;
    }
    return h;
}

/* The regularized incomplete beta function I_x(a, b). */
static double betai(double a, double b, double x)
{
    if (x <= 0)
        return 0;
    if (x >= 1)
        return 1;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2))
        return exp(lbt) * betacf(a, b, x) / a;
    return 1 - exp(lbt) * betacf(b, a, 1 - x) / b;
}

/* The p at which P(X >= x | n, p) = 0.05: the one-sided 95% lower bound. */
static double lower95(uint64_t x, uint64_t n)
{
    if (n == 0 || x == 0)
        return 0;
    if (x == n)
        return pow(0.05, 1.0 / (double)n);
    double lo = 0, hi = (double)x / (double)n;
    for (int i = 0; i < 200; i++) {
        double mid = (lo + hi) / 2;
        /* P(X >= x) = I_p(x, n - x + 1), increasing in p. */
        if (betai((double)x, (double)(n - x + 1), mid) < 0.05)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* ---- handle misuse: one call with a handle that must be refused ------- */

enum { OP_FREE, OP_READ, OP_WRITE, OP_FILL, OP_COPY_DST, OP_COPY_SRC, OP_INFO, OP_PTR, OP_COUNT };
static const char *op_names[] = {"free", "read", "write", "fill", "copy-dst", "copy-src", "info", "ptr"};

/* Calls op with handle h in ctx (mine: a live buffer of ctx for the other
 * side of a copy; atk: the byte a write would put at offset 0). Returns
 * the code; *touched is set if anything came back or went out anyway. */
static int misuse(gms_context *ctx, gms_buf h, gms_buf mine, int op, uint8_t atk, bool *touched)
{
    uint8_t host[16];
    memset(host, atk, sizeof host);
    gms_buf_info info;
    void *p = NULL;
    int rc;
    *touched = false;
    switch (op) {
    case OP_FREE: return gms_free(ctx, h);
    case OP_READ:
        rc = gms_read(ctx, h, 0, host, 1);
        *touched = host[0] != atk;
        return rc;
    case OP_WRITE: return gms_write(ctx, h, 0, host, 1);
    case OP_FILL: return gms_fill(ctx, h, 0, atk, 1);
    case OP_COPY_DST:
        if (gms_write(ctx, mine, 0, host, 1) != GMS_OK)
            die("gms_write", GMS_E_INVALID_ARG);
        return gms_copy(ctx, h, 0, mine, 0, 1);
    case OP_COPY_SRC: return gms_copy(ctx, mine, 0, h, 0, 1);
    case OP_INFO:
        memset(&info, 0, sizeof info);
        rc = gms_buf_info_get(ctx, h, &info);
        *touched = info.device_ptr != 0;
        return rc;
    default:
        rc = gms_buf_ptr(ctx, h, &p);
        *touched = p != NULL;
        return rc;
    }
}

static bool refused(int rc)
{
    return rc == GMS_E_INVALID_HANDLE || rc == GMS_E_ACCESS_DENIED;
}

/* A live buffer with a known first byte, to see that misuse did not reach it. */
typedef struct victim {
    gms_context *ctx;
    gms_buf h;
    uint8_t first;
} victim;

static victim victim_new(gms_context *ctx)
{
    victim v = {ctx, xalloc(ctx, rnd_size()), (uint8_t)rnd()};
    if (gms_write(ctx, v.h, 0, &v.first, 1) != GMS_OK)
        die("gms_write", GMS_E_INVALID_ARG);
    return v;
}

/* The victim is still live, untouched, and its redzones are intact. */
static bool victim_intact(const victim *v)
{
    uint8_t b;
    return gms_read(v->ctx, v->h, 0, &b, 1) == GMS_OK && b == v->first;
}

static bool victim_free(const victim *v)
{
    return gms_free(v->ctx, v->h) == GMS_OK;
}

/* ---- classes ---------------------------------------------------------- */

static void run_double_free(tally *t)
{
    t->how = "a second gms_free of a freed handle (sometimes after its slot was reused by a new "
             "buffer) returns GMS_E_INVALID_HANDLE, and the buffer now in the slot stays live and "
             "untouched";
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "df", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_buf h = xalloc(c, rnd_size());
        victim others[4];
        unsigned k = (unsigned)rnd_in(0, 3);
        for (unsigned j = 0; j < k; j++)
            others[j] = victim_new(c);
        bool ok = gms_free(c, h) == GMS_OK;
        bool reuse = rnd() & 1;
        victim n = {0};
        if (reuse)
            n = victim_new(c);
        int rc = gms_free(c, h);
        bool d = ok && rc == GMS_E_INVALID_HANDLE && (!reuse || victim_intact(&n));
        for (unsigned j = 0; j < k; j++)
            d &= victim_intact(&others[j]) && victim_free(&others[j]);
        if (reuse)
            d &= victim_free(&n);
        if (!d)
            miss(t, "trial %" PRIu64 ": second free returned %d", i, rc);
        count(t, d);
    }
    gms_runtime_close(rt);
}

static void run_stale_handle(tally *t)
{
    t->how = "a freed handle whose slot was reused 1..4 times by newer buffers, used in a random "
             "call (free, read, write, fill, copy either side, info, ptr), returns "
             "GMS_E_INVALID_HANDLE and leaves the newer buffers untouched";
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "stale", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf mine = xalloc(c, 64);
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_buf h = xalloc(c, rnd_size());
        bool d = gms_free(c, h) == GMS_OK;
        unsigned cycles = (unsigned)rnd_in(1, 4);
        victim n = {0};
        for (unsigned j = 0; j < cycles; j++) {
            if (j)
                d &= victim_free(&n);
            n = victim_new(c);
        }
        int op = (int)(rnd() % OP_COUNT);
        bool touched;
        int rc = misuse(c, h, mine, op, (uint8_t)~n.first, &touched);
        d &= rc == GMS_E_INVALID_HANDLE && !touched && victim_intact(&n);
        d &= victim_free(&n);
        if (!d)
            miss(t, "trial %" PRIu64 ": %s with a stale handle returned %d", i, op_names[op], rc);
        count(t, d);
    }
    gms_runtime_close(rt);
}

static void run_forged_handle(tally *t)
{
    t->how = "a random 64-bit value, a live handle with 1..3 bits flipped, or a live handle of "
             "another runtime, used in a random call, is refused (GMS_E_INVALID_HANDLE or "
             "GMS_E_ACCESS_DENIED) and the real buffer stays untouched";
    gms_runtime *rt = rt_open(0), *other = rt_open(0);
    gms_context *c = ctx_open(rt, "forge", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_context *oc = ctx_open(other, "forge", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf mine = xalloc(c, 64);
    enum { POP = 64 };
    victim pop[POP], opop[POP];
    for (int j = 0; j < POP; j++) {
        pop[j] = victim_new(c);
        opop[j] = victim_new(oc);
    }
    for (uint64_t i = 0; i < opt.trials; i++) {
        /* New buffers each trial: replace one of each population. */
        unsigned r = (unsigned)(rnd() % POP);
        bool d = victim_free(&pop[r]) && victim_free(&opop[r]);
        pop[r] = victim_new(c);
        opop[r] = victim_new(oc);
        gms_buf h;
        unsigned kind = (unsigned)(rnd() % 3);
        victim *v = &pop[rnd() % POP];
        if (kind == 0) {
            h = rnd();
        } else if (kind == 1) {
            h = v->h;
            unsigned flips = (unsigned)rnd_in(1, 3);
            uint64_t mask = 0;
            while ((unsigned)__builtin_popcountll(mask) < flips)
                mask |= 1ull << (rnd() % 64);
            h ^= mask;
        } else {
            /* The same slot and generation in another runtime is likely:
             * only the keyed check bits tell them apart. */
            h = opop[rnd() % POP].h;
        }
        int op = (int)(rnd() % OP_COUNT);
        bool touched;
        int rc = misuse(c, h, mine, op, (uint8_t)~v->first, &touched);
        d &= refused(rc) && !touched && victim_intact(v);
        if (!d)
            miss(t, "trial %" PRIu64 ": %s with forged handle 0x%016" PRIx64 " (kind %u) returned %d",
                 i, op_names[op], h, kind, rc);
        count(t, d);
    }
    gms_runtime_close(rt);
    gms_runtime_close(other);
}

static void run_cross_tenant(tally *t)
{
    t->how = "a live buffer of one tenant, used through a context of another tenant (random "
             "levels and languages on both sides) in a random call, is refused "
             "(GMS_E_ACCESS_DENIED or GMS_E_INVALID_HANDLE); the owner's buffer stays live and "
             "untouched";
    gms_runtime *rt = rt_open(0);
    enum { NT = 3, NCTX = NT * 2 * 2 };
    static const char *tenants[NT] = {"alice", "bob", "carol"};
    gms_context *ctx[NCTX];
    gms_buf mine[NCTX];
    for (int j = 0; j < NCTX; j++) {
        ctx[j] = ctx_open(rt, tenants[j / 4], "u", (j & 1) ? GMS_LEVEL_SECRET : GMS_LEVEL_INTERNAL,
                          (j & 2) ? GMS_LANG_PYTHON : GMS_LANG_RUST);
        mine[j] = xalloc(ctx[j], 64);
    }
    for (uint64_t i = 0; i < opt.trials; i++) {
        unsigned o = (unsigned)(rnd() % NCTX), a;
        do
            a = (unsigned)(rnd() % NCTX);
        while (a / 4 == o / 4);
        victim v = victim_new(ctx[o]);
        int op = (int)(rnd() % OP_COUNT);
        bool touched;
        int rc = misuse(ctx[a], v.h, mine[a], op, (uint8_t)~v.first, &touched);
        bool d = refused(rc) && !touched && victim_intact(&v);
        d &= victim_free(&v);
        if (!d)
            miss(t, "trial %" PRIu64 ": %s across tenants returned %d", i, op_names[op], rc);
        count(t, d);
    }
    gms_runtime_close(rt);
}

static void run_host_oob(tally *t)
{
    t->how = "a bounds-checked call (write, read, fill, copy either side) just past the end, far "
             "past it, before the start (offsets of 2^64-k), or with offset+length overflowing "
             "64 bits returns GMS_E_OUT_OF_BOUNDS and touches nothing: the buffer's last bytes "
             "and the host memory are unchanged and gms_free finds its redzones intact";
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "oob", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    enum { TAIL = 64 };
    static uint8_t host[TAIL], tail0[TAIL], tail1[TAIL];
    for (uint64_t i = 0; i < opt.trials; i++) {
        uint64_t s = rnd_size(), s2 = rnd_size();
        gms_buf b = xalloc(c, s), other = xalloc(c, s2);
        uint64_t tl = s < TAIL ? s : TAIL;
        for (uint64_t j = 0; j < tl; j++)
            tail0[j] = (uint8_t)rnd();
        if (gms_write(c, b, s - tl, tail0, tl) != GMS_OK)
            die("gms_write", GMS_E_INVALID_ARG);
        uint64_t off;
        size_t len;
        switch (rnd() % 5) {
        case 0: /* just past the end */
            off = rnd_in(0, s);
            len = (size_t)(s - off + rnd_in(1, 128));
            break;
        case 1: /* far past the end */
            off = s + rnd_in(1, 1ull << 40);
            len = (size_t)rnd_in(0, 64);
            break;
        case 2: /* "before the start": a negative offset as uint64 */
            off = (uint64_t)0 - rnd_in(1, 1ull << 20);
            len = (size_t)rnd_in(1, 64);
            break;
        case 3: /* off + len wraps around to a small in-bounds end */
            off = (uint64_t)0 - rnd_in(1, 1ull << 32);
            len = (size_t)((uint64_t)0 - off + rnd_in(0, s));
            break;
        default: /* a huge length */
            off = rnd_in(0, s);
            len = (size_t)(UINT64_MAX - rnd_in(0, 1ull << 32));
            break;
        }
        memset(host, 0x5c, sizeof host);
        int op = (int)(rnd() % 5), rc;
        switch (op) {
        case 0: rc = gms_write(c, b, off, host, len); break;
        case 1: rc = gms_read(c, b, off, host, len); break;
        case 2: rc = gms_fill(c, b, off, 0x5c, len); break;
        case 3: rc = gms_copy(c, b, off, other, 0, len); break;
        default: rc = gms_copy(c, other, 0, b, off, len); break;
        }
        bool d = rc == GMS_E_OUT_OF_BOUNDS;
        for (size_t j = 0; j < sizeof host; j++)
            d &= host[j] == 0x5c;
        d &= gms_read(c, b, s - tl, tail1, tl) == GMS_OK && memcmp(tail0, tail1, tl) == 0;
        v_reset();
        d &= gms_free(c, b) == GMS_OK && gms_free(c, other) == GMS_OK && V.n == 0;
        if (!d)
            miss(t, "trial %" PRIu64 ": op %d size %" PRIu64 " off %" PRIu64 " len %zu returned %d", i,
                 op, s, off, len, rc);
        count(t, d);
    }
    gms_runtime_close(rt);
}

/* Redzone size the raw classes inject into. */
#define REDZONE 32u

static void run_overflow_raw(tally *t)
{
    t->how = "bytes 1..R=32 past the end (a random run inside the redzone) XORed through the raw "
             "pointer; detected when gms_free returns GMS_E_CORRUPTION or a violation callback "
             "names the buffer or a neighbour after it (detection path: free at once, gms_verify "
             "first, a bounds-checked call first, or the neighbour after freed first)";
    if (on_cuda)
        t->how = "bytes 1..R=32 past the end (a random run inside the redzone) XORed through the raw "
                 "device pointer (cuMemcpyDtoH_v2 of the bytes there, cuMemcpyHtoD_v2 of them XOR a "
                 "non-zero mask, cuCtxSynchronize); detection path as on the host (free at once, "
                 "gms_verify first, a bounds-checked call first, or the neighbour after freed "
                 "first). On cuda the frees' scrubs run on the device after gms_free returns, so "
                 "each trial then calls gms_sync to gather what they found; detected when gms_free "
                 "returns GMS_E_CORRUPTION or a violation callback names the buffer or its "
                 "neighbour";
    gms_runtime *rt = rt_open(REDZONE);
    gms_context *c = ctx_open(rt, "over", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    for (uint64_t i = 0; i < opt.trials; i++) {
        size_t s = rnd_size();
        gms_buf b = xalloc(c, s);
        gms_buf next = rnd() & 1 ? xalloc(c, rnd_size()) : 0; /* a neighbour after, often */
        uint8_t *p = xptr(c, b);
        uint64_t dist = rnd_in(0, REDZONE - 1), len = rnd_in(1, REDZONE - dist);
        v_reset();
        raw_corrupt(p + s + dist, len);
        unsigned path = (unsigned)(rnd() % 4);
        bool early = false;
        if (path == 1) {
            early = gms_verify(rt, NULL) == GMS_E_CORRUPTION;
        } else if (path == 2) {
            uint8_t x = 1;
            early = gms_write(c, b, 0, &x, 1) == GMS_E_CORRUPTION;
        }
        /* Sometimes the neighbour after goes first: the bytes just before
         * it are its to check too. */
        int rcn = next && path == 3 ? gms_free(c, next) : GMS_OK;
        int rc = gms_free(c, b);
        if (next && path != 3)
            rcn = gms_free(c, next);
        if (on_cuda)
            gms_sync(rt); /* the frees' scrubs ran on the device: gather what they found */
        bool d = rc == GMS_E_CORRUPTION || rcn == GMS_E_CORRUPTION || v_for(b) || (next && v_for(next)) || early;
        if (!d)
            miss(t, "trial %" PRIu64 ": size %zu, bytes [%" PRIu64 ", +%" PRIu64 ") past the end, path %u: free returned %d",
                 i, s, dist, len, path, rc);
        count(t, d);
    }
    gms_runtime_close(rt);
}

/* Children of the forking trials: at most opt.jobs in flight. */
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

static pid_t fork_child(tally *t)
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

static void reap_all(tally *t)
{
    while (in_flight)
        reap_one(t);
}

/* ---- device faults on cuda: batches of trials in fresh processes ------
 *
 * A write that must fault on the GPU is made from a child process: a
 * context that faults is lost for good, and a CUDA context cannot be used
 * across fork. So the child is this program again (fork + exec of
 * /proc/self/exe with --child KIND), which opens its own runtime and
 * context, runs up to DEV_BATCH trials and reports each on a pipe: an
 * 'A' record just before the write, an 'R' record with the driver's
 * results after it. A trial is detected when the write (cuMemcpyHtoD_v2 or
 * cuMemsetD8_v2) or the cuCtxSynchronize after it returns an error, or
 * when the child dies of a signal between the two records. After a failed
 * synchronize (the context is gone) the child exits 3 and the rest of its
 * batch goes to a new child. */

#define DEV_BATCH 1000u
#define DEV_JOBS 8u

typedef struct dev_rec {
    char tag; /* 'A' armed, 'R' result */
    uint8_t method; /* 0: cuMemcpyHtoD_v2, 1: cuMemsetD8_v2 */
    uint16_t pad;
    int32_t rw, rs; /* the write's and the synchronize's results */
} dev_rec;

static const char *dev_method[] = {"cuMemcpyHtoD_v2", "cuMemsetD8_v2"};

/* Outcomes seen, for the class's `how`. */
#define HMAX 24
static struct {
    int method, rw, rs, sig;
    uint64_t n;
} hist[HMAX];
static unsigned nhist;

static void hist_add(int method, int rw, int rs, int sig)
{
    for (unsigned i = 0; i < nhist; i++)
        if (hist[i].method == method && hist[i].rw == rw && hist[i].rs == rs && hist[i].sig == sig) {
            hist[i].n++;
            return;
        }
    if (nhist < HMAX) {
        hist[nhist].method = method;
        hist[nhist].rw = rw;
        hist[nhist].rs = rs;
        hist[nhist].sig = sig;
        hist[nhist++].n = 1;
    }
}

/* Appends the outcomes to buf. */
static void hist_format(char *buf, size_t size)
{
    size_t at = strlen(buf);
    for (unsigned i = 0; i < nhist && at < size; i++) {
        const char *sep = i ? "; " : " Outcomes: ";
        int w;
        if (hist[i].sig)
            w = snprintf(buf + at, size - at, "%schild killed by signal %d during %s: %" PRIu64, sep,
                         hist[i].sig, dev_method[hist[i].method], hist[i].n);
        else if (hist[i].rw)
            w = snprintf(buf + at, size - at, "%s%s returned %s (%d): %" PRIu64, sep,
                         dev_method[hist[i].method], cu_name(hist[i].rw), hist[i].rw, hist[i].n);
        else if (hist[i].rs)
            w = snprintf(buf + at, size - at, "%s%s returned success, then cuCtxSynchronize %s (%d), the context lost: %" PRIu64,
                         sep, dev_method[hist[i].method], cu_name(hist[i].rs), hist[i].rs, hist[i].n);
        else
            w = snprintf(buf + at, size - at, "%s%s succeeded (missed): %" PRIu64, sep,
                         dev_method[hist[i].method], hist[i].n);
        at += w > 0 ? (size_t)w : 0;
    }
    if (at < size)
        snprintf(buf + at, size - at, ".");
}

static pid_t dev_spawn(const char *kind, uint64_t seed, uint64_t n, int *fd)
{
    int pfd[2];
    if (pipe(pfd)) {
        perror("gms-inject: pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("gms-inject: fork");
        exit(2);
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        char a_seed[32], a_n[32], a_max[32];
        snprintf(a_seed, sizeof a_seed, "%" PRIu64, seed);
        snprintf(a_n, sizeof a_n, "%" PRIu64, n);
        snprintf(a_max, sizeof a_max, "%" PRIu64, opt.max_size);
        execl("/proc/self/exe", "gms-inject", "--backend", "cuda", "--child", kind, "--seed", a_seed,
              "--trials", a_n, "--max-size", a_max, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    *fd = pfd[0];
    return pid;
}

/* Runs `trials` trials of kind in children, DEV_JOBS at a time. */
static void run_device_children(tally *t, const char *kind, uint64_t trials)
{
    struct {
        pid_t pid;
        int fd;
        uint64_t n;
    } kids[DEV_JOBS];
    unsigned nk = 0, jobs = opt.jobs < DEV_JOBS ? opt.jobs : DEV_JOBS;
    uint64_t left = trials;
    static dev_rec recs[2 * DEV_BATCH + 2];
    while (left || nk) {
        while (left && nk < jobs) {
            uint64_t n = left < DEV_BATCH ? left : DEV_BATCH;
            kids[nk].pid = dev_spawn(kind, rnd(), n, &kids[nk].fd);
            kids[nk].n = n;
            nk++;
            left -= n;
        }
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            perror("gms-inject: wait");
            exit(2);
        }
        unsigned k = 0;
        while (k < nk && kids[k].pid != pid)
            k++;
        if (k == nk)
            continue;
        /* The child is gone: what it wrote (at most 24 KB) waits in the pipe. */
        size_t got_bytes = 0;
        for (;;) {
            ssize_t r = read(kids[k].fd, (char *)recs + got_bytes, sizeof recs - got_bytes);
            if (r > 0)
                got_bytes += (size_t)r;
            else if (r == 0 || errno != EINTR)
                break;
        }
        close(kids[k].fd);
        uint64_t done = 0;
        bool armed = false;
        int method = 0;
        for (size_t i = 0; i < got_bytes / sizeof *recs; i++) {
            const dev_rec *r = &recs[i];
            if (r->tag == 'A') {
                armed = true;
                method = r->method;
                continue;
            }
            armed = false;
            done++;
            bool d = r->rw != 0 || r->rs != 0;
            hist_add(r->method, r->rw, r->rs, 0);
            if (!d)
                miss(t, "%s: %s succeeded on an address that should not be writable", kind,
                     dev_method[r->method]);
            t->by_fault += d;
            count(t, d);
        }
        if (done < kids[k].n) {
            if (armed && WIFSIGNALED(status)) {
                hist_add(method, 0, 0, WTERMSIG(status));
                t->by_fault++;
                count(t, true);
                done++;
            } else if (armed || !WIFEXITED(status) || WEXITSTATUS(status) != 3) {
                /* It failed outside a write: a miss, so each child uses up a trial. */
                fprintf(stderr, "gms-inject: %s: a child %s %d after %" PRIu64 " of %" PRIu64 " trials\n", kind,
                        WIFSIGNALED(status) ? "died of signal" : "exited with status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), done, kids[k].n);
                count(t, false);
                done++;
            }
        }
        left += kids[k].n - done;
        kids[k] = kids[--nk];
    }
}

static void dev_put(const dev_rec *r)
{
    if (write(1, r, sizeof *r) != (ssize_t)sizeof *r)
        _exit(2);
}

/* One write that must not land, in a child; exits 3 once the context is lost. */
static void dev_wild(uint64_t target, size_t n)
{
    uint8_t buf[64];
    if (n > sizeof buf)
        n = sizeof buf;
    for (size_t i = 0; i < n; i++)
        buf[i] = rnd_nonzero_byte();
    dev_rec r = {'A', (uint8_t)(rnd() & 1), 0, 0, 0};
    dev_put(&r);
    r.tag = 'R';
    r.rw = r.method == 0 ? cu.MemcpyHtoD((CUdeviceptr)target, buf, n)
                         : cu.MemsetD8((CUdeviceptr)target, buf[0], n);
    r.rs = cu.CtxSynchronize();
    dev_put(&r);
    if (r.rs)
        _exit(3);
}

/* A write expected to fault, in a child: the child dies of it. */
static void child_write(uint8_t *p, size_t n)
{
    /* No core files for the expected faults. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    corrupt(p, n);
    _exit(0);
}

static void run_underflow_raw(tally *t)
{
    t->how = "bytes 1..R=32 before the start XORed through the raw pointer. With a neighbour "
             "before it in its chunk (allocated first): detected when gms_free returns "
             "GMS_E_CORRUPTION or a violation callback names the buffer or the neighbour. "
             "1 trial in 32 targets the first block of a new chunk instead, in a child process: "
             "detected when the write faults on the chunk's guard";
    gms_runtime *rt = rt_open(REDZONE);
    gms_context *c = ctx_open(rt, "under", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    uint64_t not_adjacent = 0, deferred = 0;
    nhist = 0;
    for (uint64_t i = 0; i < opt.trials; i++) {
        uint64_t dist = rnd_in(0, REDZONE - 1), len = rnd_in(1, REDZONE - dist);
        size_t s = rnd_size();
        if (rnd() % 32 == 0) {
            if (on_cuda) { /* in child processes, after this loop */
                deferred++;
                continue;
            }
            if (fork_child(t) == 0) {
                /* A new pool, so a new chunk: its first block sits right
                 * after the chunk's guard. */
                gms_context *fc = ctx_open(rt, "fresh", "u", GMS_LEVEL_PUBLIC, GMS_LANG_ZIG);
                gms_buf b = xalloc(fc, s);
                child_write(xptr(fc, b) - dist - len, len);
            }
            continue;
        }
        /* The neighbour first, then the buffer: retry until the buffer
         * lands right after it (the free lists may place it elsewhere). */
        gms_buf n, b;
        uint8_t *pn, *pb;
        gms_buf_info ni;
        for (int tries = 0;; tries++) {
            n = xalloc(c, rnd_size());
            b = xalloc(c, s);
            pn = xptr(c, n);
            pb = xptr(c, b);
            ni = xinfo(c, n);
            if (pn + ni.block_size == pb)
                break;
            not_adjacent++;
            gms_free(c, b);
            gms_free(c, n);
            if (tries == 100)
                die("no adjacent pair in 100 tries", GMS_E_INVALID_ARG);
        }
        v_reset();
        raw_corrupt(pb - dist - len, len);
        unsigned path = (unsigned)(rnd() % 4);
        bool early = false;
        if (path == 1)
            early = gms_verify(rt, NULL) == GMS_E_CORRUPTION;
        int rc = GMS_OK, rcn = GMS_OK;
        if (path == 2) { /* the neighbour first: its own redzone check sees it */
            rcn = gms_free(c, n);
            rc = gms_free(c, b);
        } else {
            rc = gms_free(c, b);
            rcn = gms_free(c, n);
        }
        if (on_cuda)
            gms_sync(rt); /* the frees' scrubs ran on the device: gather what they found */
        bool d = rc == GMS_E_CORRUPTION || rcn == GMS_E_CORRUPTION || v_for(b) || v_for(n) || early;
        if (!d)
            miss(t, "trial %" PRIu64 ": size %zu, bytes [-%" PRIu64 ", -%" PRIu64 "), path %u: free returned %d",
                 i, s, dist + len, dist, path, rc);
        count(t, d);
    }
    reap_all(t);
    if (on_cuda) {
        run_device_children(t, "under", deferred);
        static char how[2048];
        snprintf(how, sizeof how,
                 "bytes 1..R=32 before the start XORed through the raw device pointer "
                 "(cuMemcpyDtoH_v2, cuMemcpyHtoD_v2 of the bytes XOR a non-zero mask, "
                 "cuCtxSynchronize). With a neighbour before it in its chunk (allocated first): "
                 "each trial then calls gms_sync (the frees' scrubs run on the device after "
                 "gms_free returns); detected when gms_free returns "
                 "GMS_E_CORRUPTION or a violation callback names the buffer or the neighbour. "
                 "1 trial in 32 (%" PRIu64 " here) targets the first block of a new chunk instead: "
                 "in child processes (fork + exec, a fresh CUDA context each, up to %u trials per "
                 "child, a new runtime per trial) the bytes before it, in the chunk's unmapped "
                 "guard, are written with cuMemcpyHtoD_v2 or cuMemsetD8_v2 (at random); detected when the copy or the "
                 "cuCtxSynchronize after it fails, or the child dies.",
                 deferred, DEV_BATCH);
        hist_format(how, sizeof how);
        t->how = how;
    }
    if (opt.verbose)
        fprintf(stderr, "gms-inject: underflow_raw: %" PRIu64 " pairs were not adjacent (retried)\n",
                not_adjacent);
    gms_runtime_close(rt);
}

/* A raw write that may fault (a hollowed freed block): caught here. */
static sigjmp_buf fault_env;
static volatile sig_atomic_t fault_armed;

static void on_fault(int sig)
{
    if (fault_armed) {
        fault_armed = 0;
        siglongjmp(fault_env, sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static bool guarded_corrupt(uint8_t *p, size_t n)
{
    if (on_cuda) /* a refused copy is the fault: nothing was written */
        return dev_corrupt((uint64_t)(uintptr_t)p, n) != 0;
    if (sigsetjmp(fault_env, 1))
        return true;
    fault_armed = 1;
    corrupt(p, n);
    fault_armed = 0;
    return false;
}

static void run_write_after_free_raw(tally *t)
{
    t->how = "1..64 bytes of a buffer XORed through its raw pointer after gms_free, while the "
             "block waits in quarantine; detected when a violation callback (write after free, or "
             "free memory written) reports an address in the block, once forced out: by "
             "gms_verify, by freeing other blocks until it leaves quarantine (at most 8 MiB), or "
             "by closing the pool's last context; a write that faults counts as detected";
    if (on_cuda)
        t->how = "1..64 bytes of a buffer XORed through its raw device pointer (cuMemcpyDtoH_v2, "
                 "cuMemcpyHtoD_v2 of the bytes XOR a non-zero mask, cuCtxSynchronize) after "
                 "gms_free, while the block waits in quarantine; detected when a violation callback "
                 "(write after free, or free memory written) reports an address in the block, once "
                 "forced out: by gms_verify, by freeing other blocks until it leaves quarantine (at "
                 "most 8 MiB), or by closing the pool's last context; a copy the driver refuses "
                 "counts as detected. Default runtime options: the free queues its scrub on the "
                 "default stream before it returns, so the write lands on poisoned memory; the "
                 "device's findings are gathered by gms_sync after the churn";
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "waf", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    struct sigaction sa, old_segv, old_bus;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    for (uint64_t i = 0; i < opt.trials; i++) {
        unsigned path = (unsigned)(rnd() % 3);
        /* Path 2 closes its context: a pool of its own, with no other. */
        gms_context *tc = path == 2 ? ctx_open(rt, "waf-close", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C) : c;
        size_t s = rnd_size();
        gms_buf b = xalloc(tc, s);
        uint8_t *p = xptr(tc, b);
        uint64_t bsize = xinfo(tc, b).block_size;
        uint64_t lo = (uint64_t)(uintptr_t)p;
        bool d = gms_free(tc, b) == GMS_OK;
        uint64_t off = rnd_in(0, s - 1), len = rnd_in(1, s - off < 64 ? s - off : 64);
        v_reset();
        if (guarded_corrupt(p + off, len)) {
            t->by_fault++;
            gms_verify(rt, NULL); /* what was written before the fault */
            if (path == 2)
                gms_context_close(tc);
            count(t, d);
            continue;
        }
        if (path == 0) {
            gms_verify(rt, NULL);
        } else if (path == 1) {
            for (uint64_t churned = 0; churned < (8u << 20) && !v_in(0, lo, lo + bsize);) {
                size_t cs = (size_t)rnd_in(64u << 10, 256u << 10);
                gms_buf x = xalloc(c, cs);
                gms_free(c, x);
                churned += cs;
            }
            gms_sync(rt); /* what the device found, if not yet delivered */
        } else {
            gms_context_close(tc);
        }
        d &= v_in(GMS_VIOLATION_WRITE_AFTER_FREE, lo, lo + bsize) ||
             v_in(GMS_VIOLATION_FREE_MEMORY, lo, lo + bsize);
        if (!d)
            miss(t, "trial %" PRIu64 ": size %zu, bytes [%" PRIu64 ", +%" PRIu64 "), path %u: %u callbacks",
                 i, s, off, len, path, V.n);
        count(t, d);
    }
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    gms_runtime_close(rt);
}

static void run_leak(tally *t)
{
    t->how = "a context closed while holding 1..8 buffers (others allocated and freed around "
             "them): gms_stats leaked_blocks and the tenant's leaked_blocks grow by exactly that "
             "count, leaked_bytes by their block sizes, and the tenant's live count returns";
    gms_runtime *rt = rt_open(0);
    gms_context *anchor = ctx_open(rt, "leaky", "anchor", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf keep = xalloc(anchor, 100); /* the pool stays in use */
    (void)keep;
    gms_stats st;
    gms_tenant_stats ts;
    uint64_t tindex = 0;
    gms_stats_get(rt, &st);
    for (uint64_t j = 0; j < st.tenants; j++)
        if (gms_tenant_stats_get(rt, j, &ts) == GMS_OK && strcmp(ts.tenant, "leaky") == 0)
            tindex = j;
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_stats s0, s1;
        gms_tenant_stats t0, t1;
        gms_stats_get(rt, &s0);
        gms_tenant_stats_get(rt, tindex, &t0);
        gms_context *c = ctx_open(rt, "leaky", "leaker", GMS_LEVEL_INTERNAL, GMS_LANG_C);
        unsigned k = (unsigned)rnd_in(1, 8), extra = (unsigned)rnd_in(0, 3);
        uint64_t bytes = 0;
        gms_buf tmp[3];
        for (unsigned j = 0; j < extra; j++)
            tmp[j] = xalloc(c, rnd_size());
        for (unsigned j = 0; j < k; j++)
            bytes += xinfo(c, xalloc(c, rnd_size())).block_size;
        for (unsigned j = 0; j < extra; j++)
            gms_free(c, tmp[j]);
        uint64_t logs = n_leak_logs;
        gms_context_close(c);
        gms_stats_get(rt, &s1);
        gms_tenant_stats_get(rt, tindex, &t1);
        bool d = s1.leaked_blocks - s0.leaked_blocks == k && s1.leaked_bytes - s0.leaked_bytes == bytes &&
                 t1.leaked_blocks - t0.leaked_blocks == k && t1.live_blocks == t0.live_blocks &&
                 n_leak_logs == logs + 1;
        if (!d)
            miss(t, "trial %" PRIu64 ": %u leaked, stats say %" PRIu64, i, k,
                 s1.leaked_blocks - s0.leaked_blocks);
        count(t, d);
    }
    gms_runtime_close(rt);
}

static void run_quota(tally *t)
{
    t->how = "with the tenant's byte quota set below what a request needs (live bytes + the "
             "request rounded to 256 B, minus 1..the request), or its allocation quota at or "
             "below the live count, gms_alloc returns GMS_E_QUOTA with a null handle and the "
             "runtime's and tenant's live bytes and blocks are unchanged";
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "quota", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_stats st;
    gms_tenant_stats ts;
    uint64_t tindex = 0;
    gms_stats_get(rt, &st);
    for (uint64_t j = 0; j < st.tenants; j++)
        if (gms_tenant_stats_get(rt, j, &ts) == GMS_OK && strcmp(ts.tenant, "quota") == 0)
            tindex = j;
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_buf held[4];
        unsigned k = (unsigned)rnd_in(0, 4);
        for (unsigned j = 0; j < k; j++)
            held[j] = xalloc(c, rnd_size());
        gms_stats s0, s1;
        gms_tenant_stats t0, t1;
        gms_stats_get(rt, &s0);
        gms_tenant_stats_get(rt, tindex, &t0);
        size_t s = rnd_size();
        uint64_t need = (s + 255) / 256 * 256;
        uint64_t max_bytes = GMS_UNLIMITED, max_allocs = GMS_UNLIMITED;
        if (rnd() & 1) {
            uint64_t under = rnd_in(1, need);
            max_bytes = t0.live_bytes + need - under;
        } else {
            max_allocs = t0.live_blocks - rnd_in(0, t0.live_blocks);
        }
        if (gms_tenant_set_quota(rt, "quota", max_bytes, max_allocs) != GMS_OK)
            die("gms_tenant_set_quota", GMS_E_INVALID_ARG);
        gms_buf b = (gms_buf)1;
        int rc = gms_alloc(c, s, rnd() & 1 ? GMS_ALLOC_ZERO : 0, &b);
        gms_stats_get(rt, &s1);
        gms_tenant_stats_get(rt, tindex, &t1);
        bool d = rc == GMS_E_QUOTA && b == GMS_BUF_NULL && s1.live_bytes == s0.live_bytes &&
                 s1.live_blocks == s0.live_blocks && t1.live_bytes == t0.live_bytes &&
                 t1.live_blocks == t0.live_blocks && t1.quota_refusals == t0.quota_refusals + 1;
        if (rc == GMS_OK)
            gms_free(c, b);
        gms_tenant_set_quota(rt, "quota", GMS_UNLIMITED, GMS_UNLIMITED);
        for (unsigned j = 0; j < k; j++)
            gms_free(c, held[j]);
        if (!d)
            miss(t, "trial %" PRIu64 ": size %zu, max_bytes %" PRIu64 " max_allocs %" PRIu64 " live %" PRIu64 "/%" PRIu64 ": returned %d",
                 i, s, max_bytes, max_allocs, t0.live_bytes, t0.live_blocks, rc);
        count(t, d);
    }
    gms_runtime_close(rt);
}

/* A wild address for one trial: before the chunk, in the guard after it,
 * or in its unmapped part above every mapped granule so far (`high`, which
 * the new buffer b may raise). */
static uint64_t wild_target(gms_context *c, gms_buf b, uint64_t base, uint64_t *high)
{
    uint64_t p = (uint64_t)(uintptr_t)xptr(c, b), end = p + xinfo(c, b).block_size;
    uint64_t mapped_end = (end + GRANULE - 1) / GRANULE * GRANULE;
    if (mapped_end > *high)
        *high = mapped_end;
    switch (rnd() % 4) {
    case 0: return base - rnd_in(1, 2ull << 20);
    case 1: return base + CHUNK + rnd_in(0, (2ull << 20) - 1);
    case 2: return *high + rnd_in(0, 4095);
    default: return rnd_in(*high, base + CHUNK - 1);
    }
}

static void run_wild_write(tally *t)
{
    t->how = "a write through a pointer outside any mapped memory of a chunk, in a forked child: "
             "into the guard before the chunk (1 B..2 MiB before it), into the guard after it, "
             "just past the chunk's mapped granules, or anywhere in its unmapped rest; detected "
             "when the child dies of SIGSEGV or SIGBUS";
    if (on_cuda) {
        static char how[2048];
        nhist = 0;
        run_device_children(t, "wild", opt.trials);
        snprintf(how, sizeof how,
                 "a write of 1..8 bytes to a device address outside any mapped memory of a chunk: "
                 "into the guard before the chunk (1 B..2 MiB before it), into the guard after it, "
                 "just past the chunk's mapped granules, or anywhere in its unmapped rest; made "
                 "with cuMemcpyHtoD_v2 or cuMemsetD8_v2 (at random) then cuCtxSynchronize, in "
                 "child processes (fork + exec, a fresh runtime and CUDA context each, up to %u "
                 "trials per child, a new child after a lost context); detected when the write "
                 "or the synchronize returns an error, or the child dies.",
                 DEV_BATCH);
        hist_format(how, sizeof how);
        t->how = how;
        return;
    }
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "wild", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    /* The first block of a new runtime's first pool sits at its chunk's base. */
    gms_buf first = xalloc(c, 256);
    uint64_t base = (uint64_t)(uintptr_t)xptr(c, first);
    uint64_t high = base + GRANULE; /* mapped granules lie below this */
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_buf b = xalloc(c, rnd_size());
        uint64_t target = wild_target(c, b, base, &high);
        size_t n = (size_t)rnd_in(1, 8);
        if (fork_child(t) == 0)
            child_write((uint8_t *)(uintptr_t)target, n);
        gms_free(c, b);
    }
    reap_all(t);
    gms_runtime_close(rt);
}


/* ---- the children of run_device_children (cuda) ----------------------- */

static void child_wild(void)
{
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "wild", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf first = xalloc(c, 256);
    uint64_t base = (uint64_t)(uintptr_t)xptr(c, first);
    uint64_t high = base + GRANULE;
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_buf b = xalloc(c, rnd_size());
        uint64_t target = wild_target(c, b, base, &high);
        size_t n = (size_t)rnd_in(1, 8);
        if (target + n > base + CHUNK && target < base + CHUNK)
            n = (size_t)(base + CHUNK - target); /* stays in the guard after */
        dev_wild(target, n);
        gms_free(c, b);
    }
    gms_runtime_close(rt);
}

static void child_under(void)
{
    for (uint64_t i = 0; i < opt.trials; i++) {
        uint64_t dist = rnd_in(0, REDZONE - 1), len = rnd_in(1, REDZONE - dist);
        size_t s = rnd_size();
        /* A new runtime: its first block sits right after its chunk's guard. */
        gms_runtime *rt = rt_open(REDZONE);
        gms_context *fc = ctx_open(rt, "fresh", "u", GMS_LEVEL_PUBLIC, GMS_LANG_ZIG);
        gms_buf b = xalloc(fc, s);
        dev_wild((uint64_t)(uintptr_t)xptr(fc, b) - dist - len, (size_t)len);
        gms_runtime_close(rt);
    }
}

/* ---- immutable shares --------------------------------------------------
 *
 * An immutable share is enforced two ways (gms_share_desc.immutable): where
 * the block owns whole pages (granules on a GPU) every holder's raw pointer
 * is a read-only view, so a write through it faults; elsewhere the bytes
 * are hashed at gms_share and checked by gms_verify and at the last
 * release. immutable_write alternates the two paths trial by trial.
 *
 * View trials alternate between two ways to get a block that owns whole
 * view units (pages; granules on a GPU): a pool that only ever holds such
 * blocks (a chunk base is granule-aligned and every block size a multiple
 * of the unit, so every block starts on a unit boundary), and
 * GMS_ALLOC_PAGES in a pool that also holds small buffers. Either way the
 * view is certain, and a trial where gms_buf_info does not say
 * read_only_view counts as missed. Hash trials use buffers below one page
 * in another runtime, so no block there can own a page, and gms_verify
 * walks only small pools. */

/* How often a trial takes the view path: every DEV_VIEW_EVERY-th trial
 * (2: alternating). On cuda each view trial runs in a child process and a
 * write that faults (rather than being refused by the driver) costs that
 * child its CUDA context, so a larger value here bounds the campaign's
 * time there if needed. */
#define VIEW_EVERY 2u
#define DEV_VIEW_EVERY 2u
/* Largest hash-path buffer: its block (size + 32, rounded up to 256) stays
 * below a page, so it can never own one. */
#define HASH_MAX_SIZE 3800u

/* Who acquires the share: another language or user of the owner's tenant,
 * or another tenant, each let in by a grant of its own kind. */
static const struct {
    const char *tenant, *user;
    gms_language lang;
    const char *grant_tenant, *grant_user; /* NULL: owner's tenant / any user */
    int grant_lang;
} IMM_READERS[] = {
    {"imm", "reader", GMS_LANG_RUST, NULL, NULL, GMS_LANG_RUST},
    {"imm", "py", GMS_LANG_PYTHON, NULL, "py", GMS_ANY_LANGUAGE},
    {"imm-other", "u", GMS_LANG_ZIG, "*", NULL, GMS_ANY_LANGUAGE},
    {"imm-other", "v", GMS_LANG_JULIA, "imm-other", "v", GMS_LANG_JULIA},
};
#define NREADERS (sizeof IMM_READERS / sizeof IMM_READERS[0])

typedef struct imm_side {
    gms_runtime *rt;
    gms_context *owner; /* whole-unit blocks only (view side), or small ones */
    gms_context *mixed; /* GMS_ALLOC_PAGES among small buffers (view side) */
    gms_context *readers[NREADERS];
} imm_side;

static void imm_open(imm_side *s)
{
    s->rt = rt_open(REDZONE);
    s->owner = ctx_open(s->rt, "imm", "maker", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    s->mixed = ctx_open(s->rt, "imm", "maker", GMS_LEVEL_INTERNAL, GMS_LANG_ELIXIR);
    for (size_t r = 0; r < NREADERS; r++)
        s->readers[r] = ctx_open(s->rt, IMM_READERS[r].tenant, IMM_READERS[r].user,
                                 GMS_LEVEL_INTERNAL, IMM_READERS[r].lang);
}

/* A size whose block is exactly k view units (k log-uniform in [1, kmax]):
 * size + the 32-byte redzone, rounded up to 256, is k * unit, and the size
 * rounded up to the unit is k * unit too, so the block owns its pages. */
static size_t view_size(uint64_t unit, uint64_t kmax)
{
    uint64_t k = (uint64_t)floor(exp2(rnd_unit() * (log2((double)kmax) + 1e-9)));
    k = k < 1 ? 1 : k > kmax ? kmax : k;
    return (size_t)(k * unit - rnd_in(REDZONE, REDZONE + GMS_ALIGNMENT - 1));
}

/* Shares b (held by the owner) immutable with one grant for reader r (of
 * mode READ or, since immutability overrides it, READ_WRITE) and acquires
 * it there for reading. Returns the reader's handle, 0 on failure (why in
 * *why). */
static gms_buf imm_share(imm_side *s, gms_context *owner, gms_buf b, size_t r, const char **why)
{
    gms_share_grant g = {IMM_READERS[r].grant_tenant, IMM_READERS[r].grant_user,
                         IMM_READERS[r].grant_lang,
                         rnd() & 1 ? GMS_ACCESS_READ : GMS_ACCESS_READ_WRITE};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = &g;
    d.ngrants = 1;
    d.immutable = 1;
    gms_share_id id;
    gms_buf rb = GMS_BUF_NULL, rw = (gms_buf)1;
    if (gms_share(owner, b, &d, &id) != GMS_OK) {
        *why = "gms_share failed";
        return 0;
    }
    if (gms_acquire(s->readers[r], id, GMS_ACCESS_READ_WRITE, &rw) != GMS_E_READ_ONLY || rw) {
        *why = "a read-write acquire of an immutable share was not refused with GMS_E_READ_ONLY";
        if (rw)
            gms_release(s->readers[r], rw);
        gms_revoke(owner, id);
        return 0;
    }
    if (gms_acquire(s->readers[r], id, GMS_ACCESS_READ, &rb) != GMS_OK) {
        *why = "gms_acquire (read) failed";
        return 0;
    }
    return rb;
}

/* One checked write (write, fill or copy onto itself, one byte at a
 * random offset) by holder `who` of h: it must return GMS_E_READ_ONLY. */
static bool checked_write_refused(gms_context *who, gms_buf h, uint64_t size)
{
    uint8_t x = (uint8_t)rnd();
    uint64_t off = rnd_in(0, size - 1);
    switch (rnd() % 3) {
    case 0: return gms_write(who, h, off, &x, 1) == GMS_E_READ_ONLY;
    case 1: return gms_fill(who, h, off, x, 1) == GMS_E_READ_ONLY;
    default: return gms_copy(who, h, off, h, rnd_in(0, size - 1), 1) == GMS_E_READ_ONLY;
    }
}

/* The setup of a trial: the share is immutable, its view as expected, and
 * checked writes by the owner and by the reader are refused. */
static bool imm_check(gms_context *owner, gms_buf b, gms_context *reader, gms_buf rb, size_t size,
                      int want_view, const char **why)
{
    gms_buf_info oi, ri;
    if (gms_buf_info_get(owner, b, &oi) != GMS_OK || gms_buf_info_get(reader, rb, &ri) != GMS_OK) {
        *why = "gms_buf_info failed";
        return false;
    }
    if (oi.immutable != 1 || ri.immutable != 1 || ri.access != GMS_ACCESS_READ ||
        oi.share_id == 0 || oi.share_id != ri.share_id || oi.holders != 2) {
        *why = "gms_buf_info does not describe an immutable share with two holders";
        return false;
    }
    if (ri.read_only_view != want_view || oi.read_only_view != want_view) {
        *why = want_view ? "no read-only view for a block of whole pages (setup failure)"
                         : "a read-only view for a block smaller than a page (setup failure)";
        return false;
    }
    if (!checked_write_refused(owner, b, size) || !checked_write_refused(reader, rb, size)) {
        *why = "a checked write to an immutable share was not refused with GMS_E_READ_ONLY";
        return false;
    }
    return true;
}

/* Drops both handles, the owner's or the reader's first; dies on an error
 * (no hash here, nothing to find). */
static void imm_release_both(gms_context *owner, gms_buf b, gms_context *reader, gms_buf rb)
{
    int rc;
    if (rnd() & 1) {
        if ((rc = gms_release(reader, rb)) != GMS_OK || (rc = gms_free(owner, b)) != GMS_OK)
            die("releasing an immutable share", rc);
    } else {
        if ((rc = gms_release(owner, b)) != GMS_OK || (rc = gms_release(reader, rb)) != GMS_OK)
            die("releasing an immutable share", rc);
    }
}

/* The hash path: a buffer below a page, its bytes changed through the
 * owner's raw pointer taken before the share. Detection alternates between
 * gms_verify (GMS_E_CORRUPTION with an IMMUTABLE_WRITE violation naming the
 * buffer; a gms_verify just before the write must pass) and the last
 * release (GMS_E_CORRUPTION, the release before it GMS_OK; whose release
 * is last, the owner's or the reader's, is random). */
static bool imm_hash_trial(tally *t, imm_side *s, uint64_t i, unsigned path)
{
    size_t size = (size_t)rnd_in(1, HASH_MAX_SIZE);
    size_t r = (size_t)(rnd() % NREADERS);
    gms_context *reader = s->readers[r];
    gms_buf b = xalloc(s->owner, size);
    uint8_t *raw = xptr(s->owner, b); /* before the share: the real memory */
    const char *why = NULL;
    gms_buf rb = imm_share(s, s->owner, b, r, &why);
    if (!rb || !imm_check(s->owner, b, reader, rb, size, 0, &why)) {
        miss(t, "trial %" PRIu64 " (hash path): %s", i, why);
        if (rb)
            gms_release(reader, rb);
        gms_free(s->owner, b);
        return false;
    }
    uint64_t off = rnd_in(0, size - 1);
    bool d;
    if (path == 0) {
        int pre = gms_verify(s->rt, NULL);
        v_reset();
        raw_corrupt(raw + off, 1);
        int rc = gms_verify(s->rt, NULL);
        bool named = false;
        for (unsigned k = 0; k < V.n && k < VMAX; k++)
            named |= V.kind[k] == GMS_VIOLATION_IMMUTABLE_WRITE && V.handle[k] == b;
        d = pre == GMS_OK && rc == GMS_E_CORRUPTION && named;
        if (!d)
            miss(t, "trial %" PRIu64 " (hash path, gms_verify): size %zu, byte %" PRIu64
                    ": verify before the write %d, after it %d, IMMUTABLE_WRITE reported: %s",
                 i, size, off, pre, rc, named ? "yes" : "no");
        /* The last release finds the change again: not counted here. */
        gms_release(reader, rb);
        gms_free(s->owner, b);
    } else {
        v_reset();
        raw_corrupt(raw + off, 1);
        bool owner_last = rnd() & 1;
        int first = owner_last ? gms_release(reader, rb) : gms_release(s->owner, b);
        int last = owner_last ? (rnd() & 1 ? gms_free(s->owner, b) : gms_release(s->owner, b))
                              : gms_release(reader, rb);
        d = first == GMS_OK && last == GMS_E_CORRUPTION;
        if (!d)
            miss(t, "trial %" PRIu64 " (hash path, last release by the %s): size %zu, byte %" PRIu64
                    ": first release %d, last %d",
                 i, owner_last ? "owner" : "reader", size, off, first, last);
    }
    return d;
}

/* One view-path trial's buffers. */
typedef struct imm_view {
    gms_context *owner, *reader;
    gms_buf b, rb;
    size_t size;
    bool pages;        /* GMS_ALLOC_PAGES in the mixed pool */
    gms_buf small[2];  /* its neighbours there, live during the trial */
    unsigned nsmall;
    uint8_t *view;     /* the reader's raw pointer */
} imm_view;

static void imm_view_end(imm_view *v)
{
    imm_release_both(v->owner, v->b, v->reader, v->rb);
    for (unsigned k = 0; k < v->nsmall; k++)
        if (gms_free(v->owner, v->small[k]) != GMS_OK)
            die("freeing a neighbour", GMS_E_INVALID_HANDLE);
}

/* The view path's setup, the same on both backends: a block of whole view
 * units, either k units exactly in the pool of such blocks, or any size
 * (log-uniform up to --max-size) with GMS_ALLOC_PAGES in the mixed pool,
 * after 0..2 small buffers there; shared immutable and acquired read-only
 * by a random reader. False (why in *why, nothing left held) on failure. */
static bool imm_view_setup(imm_side *s, bool pages, uint64_t unit, uint64_t kmax, imm_view *v,
                           const char **why)
{
    memset(v, 0, sizeof *v);
    v->pages = pages;
    v->owner = pages ? s->mixed : s->owner;
    if (pages) {
        v->nsmall = (unsigned)rnd_in(0, 2);
        for (unsigned k = 0; k < v->nsmall; k++)
            v->small[k] = xalloc(v->owner, (size_t)rnd_in(1, HASH_MAX_SIZE));
    }
    v->size = pages ? rnd_size() : view_size(unit, kmax);
    size_t r = (size_t)(rnd() % NREADERS);
    v->reader = s->readers[r];
    if (gms_alloc(v->owner, v->size, pages ? GMS_ALLOC_PAGES : 0, &v->b) != GMS_OK)
        die(pages ? "gms_alloc with GMS_ALLOC_PAGES" : "gms_alloc", GMS_E_NO_MEMORY);
    uint8_t *before = xptr(v->owner, v->b);
    v->rb = imm_share(s, v->owner, v->b, r, why);
    if (v->rb && imm_check(v->owner, v->b, v->reader, v->rb, v->size, 1, why)) {
        v->view = xptr(v->reader, v->rb);
        if (v->view == before) {
            *why = "the reader's raw pointer is the owner's writable mapping";
            v->view = NULL;
        }
    }
    if (!v->view) {
        if (v->rb)
            gms_release(v->reader, v->rb);
        gms_free(v->owner, v->b);
        for (unsigned k = 0; k < v->nsmall; k++)
            gms_free(v->owner, v->small[k]);
        return false;
    }
    return true;
}

static void run_immutable_write(tally *t)
{
    static char how[4096];
    uint64_t every = on_cuda ? DEV_VIEW_EVERY : VIEW_EVERY;
    uint64_t unit = on_cuda ? GRANULE : (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t kmax = opt.max_size / unit ? opt.max_size / unit : 1;
    uint64_t n_view = 0, n_pages = 0, n_hash[2] = {0, 0}, det_hash[2] = {0, 0};
    imm_side hs, vs = {0};
    imm_open(&hs);
    if (!on_cuda)
        imm_open(&vs);
    nhist = 0;
    for (uint64_t i = 0; i < opt.trials; i++) {
        if (i % every == 0) {
            bool pages = n_view++ % 2 == 1; /* whole units, GMS_ALLOC_PAGES, ... */
            n_pages += pages;
            if (on_cuda) /* in child processes, after this loop */
                continue;
            imm_view v;
            const char *why = NULL;
            if (!imm_view_setup(&vs, pages, unit, kmax, &v, &why)) {
                miss(t, "trial %" PRIu64 " (view path%s): %s", i, pages ? ", GMS_ALLOC_PAGES" : "", why);
                count(t, false);
                continue;
            }
            /* The view shows the buffer's bytes. */
            uint64_t off = rnd_in(0, v.size - 1);
            uint8_t x;
            if (gms_read(v.owner, v.b, off, &x, 1) != GMS_OK || v.view[off] != x) {
                miss(t, "trial %" PRIu64 " (view path): the view does not show the buffer", i);
                count(t, false);
                imm_view_end(&v);
                continue;
            }
            /* The child has its own copy of the mapping: the parent
             * releases at once. */
            if (fork_child(t) == 0)
                child_write(v.view + off, 1);
            imm_view_end(&v);
            continue;
        }
        unsigned path = (unsigned)((n_hash[0] + n_hash[1]) % 2); /* verify, release, ... */
        bool d = imm_hash_trial(t, &hs, i, path);
        n_hash[path]++;
        det_hash[path] += d;
        count(t, d);
    }
    reap_all(t);
    char view_how[1536];
    if (on_cuda) {
        run_device_children(t, "immview", n_view);
        snprintf(view_how, sizeof view_how,
                 "View path (%" PRIu64 " trials, 1 in %" PRIu64 "): a buffer whose block is "
                 "whole 2 MiB granules, alternately of k x 2 MiB - 32..287 B (exactly k "
                 "granules) in a pool holding only such blocks, or of any size with "
                 "GMS_ALLOC_PAGES after 0..2 small buffers in its pool (%" PRIu64 " trials), "
                 "shared immutable; gms_buf_info "
                 "must say read_only_view (else a miss); a random reader acquires it read-only "
                 "and one byte at a random offset of its raw device pointer (the view) is written "
                 "with cuMemcpyHtoD_v2 or cuMemsetD8_v2 (at random) then cuCtxSynchronize, in "
                 "child processes (fork + exec, one runtime and CUDA context each, up to %u "
                 "trials per child, a new child after a lost context); detected when the write "
                 "or the synchronize returns an error (a write the driver refuses counts as "
                 "detected), or the child dies.",
                 n_view, every, n_pages, DEV_BATCH);
        hist_format(view_how, sizeof view_how);
    } else {
        snprintf(view_how, sizeof view_how,
                 "View path (%" PRIu64 " trials, 1 in %" PRIu64 "): a buffer whose block is "
                 "whole pages, alternately of k x 4 KiB - 32..287 B (k log-uniform in 1..%" PRIu64
                 ", so the block is exactly k pages) in a pool holding only such blocks, or of "
                 "any size (log-uniform 1 B..%" PRIu64 " B) with GMS_ALLOC_PAGES after 0..2 "
                 "small buffers in its pool (%" PRIu64 " trials), shared immutable; "
                 "gms_buf_info must say read_only_view (else a miss) and the view "
                 "must show the buffer's bytes; a random reader acquires it read-only and writes "
                 "one byte at a random offset through its raw pointer (the view) in a forked "
                 "child; detected when the child dies of SIGSEGV or SIGBUS (%" PRIu64 " did).",
                 n_view, every, kmax, opt.max_size, n_pages, t->by_fault);
    }
    snprintf(how, sizeof how,
             "an immutable share (gms_share with immutable = 1, one grant: another language or "
             "user of the owner's tenant, or another tenant; READ or READ_WRITE, which "
             "immutability overrides) written all the same. Every trial first checks that a "
             "read-write gms_acquire returns GMS_E_READ_ONLY and that a checked write (gms_write, "
             "gms_fill or gms_copy, at random) by the owner and by the reader returns "
             "GMS_E_READ_ONLY; a trial where either fails is a miss. %s Hash path (%" PRIu64
             " trials): a buffer of 1..%u bytes (its block is below a page, so gms_buf_info must "
             "say read_only_view = 0), shared immutable and acquired read-only; one byte at a "
             "random offset changed (XOR a non-zero mask) through the owner's raw pointer taken "
             "before the share (%s); detected, alternately, when gms_verify returns "
             "GMS_E_CORRUPTION and a violation callback reports GMS_VIOLATION_IMMUTABLE_WRITE "
             "for the buffer, a gms_verify just before the write having passed (%" PRIu64
             " of %" PRIu64 "), or when the last release (the owner's gms_free/gms_release or "
             "the reader's gms_release, at random) returns GMS_E_CORRUPTION, the release before "
             "it GMS_OK (%" PRIu64 " of %" PRIu64 ")",
             view_how, n_hash[0] + n_hash[1], HASH_MAX_SIZE,
             on_cuda ? "cuMemcpyDtoH_v2 of the byte, cuMemcpyHtoD_v2 of it XOR the mask, "
                       "cuCtxSynchronize"
                     : "a plain store",
             det_hash[0], n_hash[0], det_hash[1], n_hash[1]);
    t->how = how;
    gms_runtime_close(hs.rt);
    if (vs.rt)
        gms_runtime_close(vs.rt);
}

/* The view path on cuda, in a child of run_device_children: one runtime
 * for the batch; exits 3 once a write has cost the context. A failed setup
 * ends the child outside a write, which the parent counts as a miss. */
static void child_immview(void)
{
    imm_side s;
    imm_open(&s);
    uint64_t kmax = opt.max_size / GRANULE ? opt.max_size / GRANULE : 1;
    for (uint64_t i = 0; i < opt.trials; i++) {
        imm_view v;
        const char *why = NULL;
        if (!imm_view_setup(&s, rnd() & 1, GRANULE, kmax, &v, &why)) {
            fprintf(stderr, "gms-inject: immutable_write (view path, cuda): %s\n", why);
            _exit(4);
        }
        dev_wild((uint64_t)(uintptr_t)v.view + rnd_in(0, v.size - 1), 1);
        imm_view_end(&v);
    }
    gms_runtime_close(s.rt);
}

/* ---- driver ----------------------------------------------------------- */

typedef struct cls {
    const char *name;
    void (*run)(tally *t);
} cls;

static const cls classes[] = {
    {"double_free", run_double_free},
    {"stale_handle", run_stale_handle},
    {"forged_handle", run_forged_handle},
    {"cross_tenant", run_cross_tenant},
    {"host_oob", run_host_oob},
    {"overflow_raw", run_overflow_raw},
    {"underflow_raw", run_underflow_raw},
    {"write_after_free_raw", run_write_after_free_raw},
    {"leak", run_leak},
    {"quota", run_quota},
    {"wild_write", run_wild_write},
    {"immutable_write", run_immutable_write},
};
#define NCLASSES (sizeof classes / sizeof classes[0])

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void report(const tally *t, const char *backend)
{
    double rate = t->trials ? (double)t->detected / (double)t->trials : 0;
    double lb = lower95(t->detected, t->trials);
    if (opt.json) {
        printf("{\"class\":\"%s\",\"trials\":%" PRIu64 ",\"detected\":%" PRIu64
               ",\"rate\":%.6f,\"lower95\":%.8f,\"backend\":\"%s\",\"by_fault\":%" PRIu64
               ",\"seconds\":%.2f,\"seed\":%" PRIu64 ",\"how\":",
               t->cls, t->trials, t->detected, rate, lb, backend, t->by_fault, t->seconds, opt.seed);
        json_string(t->how);
        printf("}\n");
    } else {
        printf("%-22s %8" PRIu64 " %8" PRIu64 " %9.5f%% %9.5f%% %8" PRIu64 " %7.1f  %s\n", t->cls,
               t->trials, t->detected, 100 * rate, 100 * lb, t->by_fault, t->seconds,
               lb >= TARGET ? "yes" : t->detected == t->trials ? "more trials" : "NO");
    }
    fflush(stdout);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gms-inject [--json] [--trials N] [--class NAME] [--seed S]\n"
            "                  [--backend host|cuda|auto] [--max-size B] [--jobs N] [--verbose]\n"
            "Runs a fault-injection campaign and prints, per class, how many injected\n"
            "faults gms detected and the one-sided 95%% lower bound on the detection rate.\n"
            "  --trials N   trials per class (default %u)\n"
            "  --max-size B largest buffer size; sizes are log-uniform from 1 (default 1 MiB)\n"
            "  --class NAME run one class:",
            DEFAULT_TRIALS);
    for (size_t i = 0; i < NCLASSES; i++)
        fprintf(f, " %s", classes[i].name);
    fprintf(f, "\n  --jobs N     child processes in flight for the forking classes (default: 2 x CPUs)\n"
               "  --verbose    describe missed trials on stderr\n");
}

static uint64_t parse_u64(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || !*s || *end || *s == '-') {
        fprintf(stderr, "gms-inject: %s: '%s' is not a number\n", flag, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(a, "--json") == 0) {
            opt.json = true;
        } else if (strcmp(a, "--verbose") == 0) {
            opt.verbose = true;
        } else if (strcmp(a, "--trials") == 0 && has) {
            opt.trials = parse_u64(a, argv[++i]);
        } else if (strcmp(a, "--seed") == 0 && has) {
            opt.seed = parse_u64(a, argv[++i]);
        } else if (strcmp(a, "--max-size") == 0 && has) {
            opt.max_size = parse_u64(a, argv[++i]);
            if (opt.max_size < 1 || opt.max_size > (1ull << 32)) {
                fprintf(stderr, "gms-inject: --max-size: 1 to 4 GiB\n");
                return 2;
            }
        } else if (strcmp(a, "--jobs") == 0 && has) {
            opt.jobs = (unsigned)parse_u64(a, argv[++i]);
        } else if (strcmp(a, "--child") == 0 && has) {
            opt.child = argv[++i];
        } else if (strcmp(a, "--class") == 0 && has) {
            opt.only = argv[++i];
        } else if (strcmp(a, "--backend") == 0 && has) {
            opt.backend_arg = argv[++i];
            if (strcmp(opt.backend_arg, "host") == 0)
                opt.backend = GMS_BACKEND_HOST;
            else if (strcmp(opt.backend_arg, "cuda") == 0)
                opt.backend = GMS_BACKEND_CUDA;
            else if (strcmp(opt.backend_arg, "auto") == 0)
                opt.backend = GMS_BACKEND_AUTO;
            else {
                fprintf(stderr, "gms-inject: --backend %s: expected host, cuda or auto\n", opt.backend_arg);
                return 2;
            }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (opt.trials == 0) {
        fprintf(stderr, "gms-inject: --trials must be at least 1\n");
        return 2;
    }
    if (opt.only) {
        size_t i = 0;
        while (i < NCLASSES && strcmp(classes[i].name, opt.only) != 0)
            i++;
        if (i == NCLASSES) {
            fprintf(stderr, "gms-inject: unknown class '%s'\n", opt.only);
            usage(stderr);
            return 2;
        }
    }
    if (opt.child) { /* a batch of run_device_children: records on stdout */
        if (opt.backend != GMS_BACKEND_CUDA)
            return 2;
        on_cuda = true;
        cu_attach();
        rng = opt.seed;
        if (strcmp(opt.child, "wild") == 0)
            child_wild();
        else if (strcmp(opt.child, "under") == 0)
            child_under();
        else if (strcmp(opt.child, "immview") == 0)
            child_immview();
        else
            return 2;
        return 0;
    }
    if (opt.jobs == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        opt.jobs = n > 0 ? 2 * (unsigned)n : 2;
    }
    /* The backend first: the raw classes write through host pointers on
     * the host backend, through the CUDA driver on cuda. */
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = opt.backend;
    o.log = quiet_log;
    gms_runtime *probe;
    int rc = gms_runtime_open(&probe, &o);
    if (rc) {
        fprintf(stderr, "gms-inject: backend '%s' is not available: %s\n", opt.backend_arg, gms_error_last());
        return 2;
    }
    char backend[16];
    snprintf(backend, sizeof backend, "%s", gms_runtime_backend_name(probe));
    gms_runtime_close(probe);
    if (strcmp(backend, "cuda") == 0) {
        on_cuda = true;
        cu_attach();
    } else if (strcmp(backend, "host") != 0) {
        fprintf(stderr, "gms-inject: backend '%s': the campaign runs on the host and cuda backends only\n",
                backend);
        return 2;
    }
    if (!opt.json)
        printf("%-22s %8s %8s %10s %10s %8s %7s  %s\n", "class", "trials", "detected", "rate",
               "lower95", "by_fault", "seconds", ">= 99.99%");
    bool all = true;
    for (size_t i = 0; i < NCLASSES; i++) {
        if (opt.only && strcmp(classes[i].name, opt.only) != 0)
            continue;
        /* Each class draws from its own stream: --class gives the same trials. */
        rng = opt.seed * 0x2545f4914f6cdd1dull + i;
        tally t = {.cls = classes[i].name};
        double t0 = now_s();
        classes[i].run(&t);
        t.seconds = now_s() - t0;
        report(&t, backend);
        all &= t.detected == t.trials;
    }
    return all ? 0 : 1;
}
