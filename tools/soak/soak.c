/*
 * soak.c: gms-soak, a long run of random multi-tenant, multi-thread work
 * on one runtime (host backend), for as long as it is given, that counts
 * every fault it injects and every one gms missed.
 *
 *   gms-soak [--seconds N | --epochs N] [--threads N] [--seed N] [--tenants N]
 *            [--max-size B] [--progress S] [--verify-ms MS]
 *            [--without FEATURE,...] [--verbose]
 *
 * Each worker thread holds contexts of tenants that all threads share (so
 * pools are shared and contended) and runs random operations on them:
 * allocation and free (sync and async), checked writes, reads, copies
 * and fills checked against what it wrote, shares (mutable and immutable,
 * acquired by its own contexts and, through a board, by other threads,
 * released, revoked), transfers (within a tenant and to another, to hub
 * contexts from which other threads adopt them), DLPack exports imported
 * by itself or by other threads (whose deleters then run there), imports
 * of foreign tensors, quotas, stale and forged handles, context reopens
 * (leaks reclaimed), gms_stats, gms_verify, gms_trim, gms_sync.
 *
 * Faults:
 * - raw corruptions, the classes gms-inject measures that are reported
 *   through the violation callback: bytes past a buffer's end (its
 *   redzone), before its start (a neighbour's), written after its free
 *   (while quarantined), and written into an immutable share through a
 *   raw pointer (the hash path). Each goes into a pool of the worker's own
 *   (no other thread's buffer is blamed) and is forced out by a free,
 *   gms_verify, churn or a context close; it is detected when a violation
 *   callback reports an address in it, in its tenant's memory (on whatever
 *   thread found it; fault.h), and missed otherwise.
 * - backend failures (backend.c): private runtimes whose Nth fallible
 *   call fails, which must fail only cleanly.
 *
 * The violation and log callbacks call back into gms (an allocation and
 * a free), as the docs allow. A violation that matches no injected fault,
 * or one delivered again from inside such a nested call, is a problem.
 *
 * Every few hundred operations per thread the workers stop at a barrier
 * and the main thread checks: gms_verify passes, and every tenant's live
 * bytes and blocks in gms_tenant_stats equal the soak's own bookkeeping
 * (which follows every block through shares, transfers and tensors), as
 * do its quotas and the count of open contexts. It prints a progress line
 * every few seconds, and at the end the operations done and the faults
 * injected, detected and missed. Exit status 0 when nothing was missed and
 * no check failed, 1 otherwise, 2 on a usage error.
 *
 * Deterministic per seed where threads allow: each thread draws from its
 * own stream and runs a fixed number of operations per epoch; with one
 * thread a seed always gives the same operations.
 */
#include "soak.h"

#include "fault.h"
#include "gms/dlpack.h"

#include <execinfo.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define MAX_THREADS 64
#define MAX_SHARED_TENANTS 32
#define MAX_TENANTS (MAX_SHARED_TENANTS + 2 * MAX_THREADS + 1)
#define NCTX 4          /* contexts per worker */
#define NHOLD 48        /* handles a worker holds at most */
#define NDEAD 64        /* dead handles remembered, for probes */
#define EPOCH_OPS 200   /* operations per thread between checkpoints */
#define REDZONE 32      /* the runtime's redzone_bytes */
#define BOARD 32        /* entries of each board */
/* How long a fault's report may take to arrive: one found by another
 * thread is delivered there once it runs again, which on a loaded machine
 * (the 2-core CI, helpers building) can take seconds. */
#define SETTLE_MS 10000
#define INJECT_MAX_SIZE (1u << 20) /* below a granule: a freed block stays mapped */
#define HASH_MAX_SIZE 3800u /* an immutable share's block stays below a page */

/* ---- options ---------------------------------------------------------- */

/* Under TSan the background verifier is off by default: it reads the
 * raw corruptions' memory with no order the soak can give it. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SOAK_TSAN 1
#endif
#endif
#ifdef SOAK_TSAN
#define DEFAULT_VERIFY_MS 0
#else
#define DEFAULT_VERIFY_MS 500
#endif

static struct {
    double seconds;
    uint64_t epochs; /* stop after this many checkpoints instead (0: by time) */
    unsigned threads;
    uint64_t seed;
    unsigned tenants;
    size_t max_size;
    double progress;
    uint32_t verify_ms;
    bool verbose;
} opt = {60, 0, 4, 1, 6, 1u << 20, 5, DEFAULT_VERIFY_MS, false};

/* What --without can turn off; all on by default. */
enum {
    F_REENTRANT,      /* callbacks that call gms */
    F_DLPACK,         /* exports and imports */
    F_IMPORT_TRANSFER, /* transfers of imported buffers */
    F_INJECT,         /* raw corruptions */
    F_BACKEND,        /* backend-failure episodes */
    F_SHARE,
    F_TRANSFER,
    F_QUOTA,
    F_BOARDS,         /* handles, shares and tensors passed between threads */
    F_OUT_NULL,       /* outputs set to NULL by a failed call */
    F_ORPHAN_READ,    /* reads of an import whose exporting context closed */
    NFEATURES
};
static const char *feature_name[NFEATURES] = {"reentrant", "dlpack", "import-transfer", "inject", "backend",
                                              "share", "transfer", "quota", "boards", "out-null",
                                              "orphan-read"};
static bool on[NFEATURES];

/* ---- problems ----------------------------------------------------------- */

static const char *problem_kinds[] = {"contract", "content", "leak", "verify", "missed",
                                      "unexplained", "redelivered", "backend"};
#define NKINDS (sizeof problem_kinds / sizeof problem_kinds[0])
static _Atomic uint64_t problem_count[NKINDS], problems_printed;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

void soak_problem(const char *kind, const char *fmt, ...)
{
    unsigned k = 0;
    while (k < NKINDS - 1 && strcmp(problem_kinds[k], kind) != 0)
        k++;
    atomic_fetch_add(&problem_count[k], 1);
    if (atomic_fetch_add(&problems_printed, 1) >= 50 && !opt.verbose)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&print_lock);
    fprintf(stderr, "gms-soak: %s: %s\n", kind, msg);
    pthread_mutex_unlock(&print_lock);
}

/* rc must be GMS_OK. */
static bool ok(int rc, const char *what)
{
    if (rc == GMS_OK)
        return true;
    soak_problem("contract", "%s returned %s: %s", what, gms_strerror(rc), gms_error_last());
    return false;
}

/* rc must be want. */
static bool want_rc(int rc, int want, const char *what)
{
    if (rc == want)
        return true;
    soak_problem("contract", "%s returned %s, want %s%s%s", what, gms_strerror(rc), gms_strerror(want),
                 rc ? ": " : "", rc ? gms_error_last() : "");
    return false;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- the runtime, its tenants and the soak's own bookkeeping ------------ */

static gms_runtime *rt;

/* Every tenant of rt: the shared ones first, then two per worker for the
 * injected faults, then the callbacks' own. live_* are what the soak
 * believes gms_tenant_stats must say at a checkpoint. */
typedef struct tenant {
    char name[24];
    int64_t live_bytes, live_blocks; /* under book */
    uint64_t max_bytes, max_allocs;  /* as last set, under book */
    atomic_bool limited;             /* a quota was ever set: QUOTA is possible */
} tenant_rec;
static tenant_rec tenants[MAX_TENANTS];
static unsigned ntenants;

struct texport;

/* One gms block as the soak counts it. Its holders are the handles on it
 * the soak knows of (an exported tensor's included); when the last one
 * goes, so do its bytes from its tenant. refs counts the pointers to this
 * record: its holders and the share board's entries. */
typedef struct sbuf {
    int tenant;          /* whose live bytes it counts in; -1: an import, counted nowhere */
    uint64_t block;      /* its block size */
    uint64_t size;
    int holders, refs;   /* under book */
    bool immutable;      /* set before it is published to other threads */
    uint8_t tag;         /* its bytes, once immutable */
    struct texport *tensor; /* an import of one of our exports: its tensor */
} sbuf;

/* One of our DLPack exports. Its tensor holds a handle of its own on
 * origin until its deleter runs, whether or not the exporting context
 * closed first (include/gms/dlpack.h). users counts the threads touching
 * the memory of an import of it; the exporter's close marks it closing
 * and waits them out. */
typedef struct texport {
    sbuf *origin;     /* the buffer, until the deleter runs */
    gms_context *ctx; /* the exporting context, NULL once closed */
    int users;
    bool closing;
    bool probed;      /* read once after its exporter closed (orphan-read) */
    struct texport *prev, *next; /* every live one */
} texport;

static pthread_mutex_t book = PTHREAD_MUTEX_INITIALIZER;
static texport *texports; /* under book */

static sbuf *sbuf_new(int tenant, uint64_t block, uint64_t size)
{
    sbuf *b = calloc(1, sizeof *b);
    if (!b) {
        fprintf(stderr, "gms-soak: out of memory\n");
        exit(2);
    }
    b->tenant = tenant;
    b->block = block;
    b->size = size;
    b->holders = b->refs = 1;
    if (tenant >= 0) {
        pthread_mutex_lock(&book);
        tenants[tenant].live_bytes += (int64_t)block;
        tenants[tenant].live_blocks++;
        pthread_mutex_unlock(&book);
    }
    return b;
}

static void unref_locked(sbuf *b)
{
    if (--b->refs == 0)
        free(b);
}

static void drop_locked(sbuf *b);

/* The tensor's deleter ran (called by us, or by gms when its import
 * died): its handle on the buffer is gone. */
static void tensor_end_locked(texport *t)
{
    if (t->origin)
        drop_locked(t->origin);
    if (t->prev)
        t->prev->next = t->next;
    else
        texports = t->next;
    if (t->next)
        t->next->prev = t->prev;
    free(t);
}

static void tensor_end(texport *t)
{
    pthread_mutex_lock(&book);
    tensor_end_locked(t);
    pthread_mutex_unlock(&book);
}

/* A handle on b is gone; the last one takes the block (and, for an
 * import, the tensor's handle on the buffer it came from). */
static void drop_locked(sbuf *b)
{
    if (--b->holders == 0) {
        if (b->tenant >= 0) {
            tenants[b->tenant].live_bytes -= (int64_t)b->block;
            tenants[b->tenant].live_blocks--;
        }
        if (b->tensor)
            tensor_end_locked(b->tensor);
    }
    unref_locked(b);
}

static void drop(sbuf *b)
{
    pthread_mutex_lock(&book);
    drop_locked(b);
    pthread_mutex_unlock(&book);
}

static void add_holder(sbuf *b)
{
    pthread_mutex_lock(&book);
    b->holders++;
    b->refs++;
    pthread_mutex_unlock(&book);
}

/* A new export of b from ctx: its tensor is one more holder. */
static texport *tensor_new(sbuf *b, gms_context *ctx)
{
    texport *t = calloc(1, sizeof *t);
    if (!t) {
        fprintf(stderr, "gms-soak: out of memory\n");
        exit(2);
    }
    t->origin = b;
    t->ctx = ctx;
    pthread_mutex_lock(&book);
    b->holders++;
    b->refs++;
    t->next = texports;
    if (t->next)
        t->next->prev = t;
    texports = t;
    pthread_mutex_unlock(&book);
    return t;
}

static int holders_of(sbuf *b)
{
    pthread_mutex_lock(&book);
    int n = b->holders;
    pthread_mutex_unlock(&book);
    return n;
}

static int tenant_add(const char *fmt, unsigned i)
{
    tenant_rec *t = &tenants[ntenants];
    snprintf(t->name, sizeof t->name, fmt, i);
    t->max_bytes = t->max_allocs = GMS_UNLIMITED;
    return (int)ntenants++;
}

static gms_context *open_ctx(const char *tenant_name, const char *user, gms_level level, gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant_name;
    d.user = user;
    d.level = level;
    d.language = lang;
    gms_context *c = NULL;
    int rc = gms_context_open(&c, rt, &d);
    if (rc != GMS_OK) {
        fprintf(stderr, "gms-soak: opening a context of '%s': %s (%s)\n", tenant_name, gms_strerror(rc),
                gms_error_last());
        exit(2);
    }
    return c;
}

/* ---- faults: what was injected, and what the callbacks reported -------- */

enum { C_OVERFLOW, C_UNDERFLOW, C_WAF, C_IMMUTABLE, NCLASS };
static const char *class_name[NCLASS] = {"overflow", "underflow", "write_after_free", "immutable_write"};

/* One worker's fault in flight (fault.h): the tenant, buffer and addresses
 * a report must name, and the kinds that count. */
static pthread_mutex_t vlock = PTHREAD_MUTEX_INITIALIZER;
static fault faults[MAX_THREADS];
/* Faults settled lately, so a report arriving after its trial is told
 * from a report of nothing injected. */
static fault settled[256];
static unsigned settled_next;
static uint64_t late_reports, unexplained;

/* The callbacks' own context, for their calls back into gms; closed
 * (NULL) at the end under the write lock. */
static pthread_rwlock_t cb_lock = PTHREAD_RWLOCK_INITIALIZER;
static gms_context *cb_ctx;
static _Thread_local int cb_depth;
static _Atomic uint64_t reentries, log_lines, leak_lines, pressure_calls;

/* The corruptions whose report this thread is delivering now, outermost
 * first (a hash of each message): one delivered again from inside a
 * callback's own call is a report told twice. */
static _Thread_local uint64_t delivering[8];
static _Thread_local unsigned ndelivering;

static uint64_t text_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
    return h;
}

/* Notes the report of message; false if it is being delivered already. */
static bool delivering_push(const char *message)
{
    uint64_t h = text_hash(message);
    for (unsigned i = 0; i < ndelivering; i++)
        if (delivering[i] == h) {
            soak_problem("redelivered", "a violation delivered again from inside a callback's own gms call "
                         "(known defect 1): %s", message);
            return false;
        }
    if (ndelivering < sizeof delivering / sizeof delivering[0])
        delivering[ndelivering] = h;
    ndelivering++;
    return true;
}

static void delivering_pop(void)
{
    ndelivering--;
}

/* A callback's call back into gms: an allocation and a free in the
 * callbacks' context. */
static void reenter(void)
{
    if (!on[F_REENTRANT] || cb_depth >= 4 || pthread_rwlock_tryrdlock(&cb_lock) != 0)
        return;
    if (cb_ctx) {
        cb_depth++;
        gms_buf h = GMS_BUF_NULL;
        int rc = gms_alloc(cb_ctx, 64 + (size_t)cb_depth, 0, &h);
        if (rc == GMS_OK)
            rc = gms_free(cb_ctx, h);
        if (rc != GMS_OK)
            soak_problem("contract", "an allocation and free from inside a callback: %s", gms_strerror(rc));
        cb_depth--;
        atomic_fetch_add(&reentries, 1);
    }
    pthread_rwlock_unlock(&cb_lock);
}

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    if (!delivering_push(v->message))
        return; /* counted once, when it was first delivered */
    pthread_mutex_lock(&vlock);
    int mine = fault_find(faults, opt.threads, v);
    bool found = mine >= 0, late = false;
    if (found)
        faults[mine].reports++;
    for (unsigned i = 0; i < sizeof settled / sizeof settled[0] && !found && !late; i++)
        late = settled[i].kinds && fault_matches(&settled[i], v);
    late_reports += late;
    unexplained += !found && !late;
    pthread_mutex_unlock(&vlock);
    if (!found && !late)
        soak_problem("unexplained", "a violation that matches no injected fault: %s", v->message);
    else if (late && opt.verbose)
        fprintf(stderr, "gms-soak: a late report of a settled fault: %s\n", v->message);
    reenter();
    delivering_pop();
}

static void on_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    atomic_fetch_add(&log_lines, 1);
    if (strstr(msg, "leak"))
        atomic_fetch_add(&leak_lines, 1);
    if (opt.verbose && level == GMS_LOG_ERROR) {
        pthread_mutex_lock(&print_lock);
        fprintf(stderr, "gms-soak: log: %s\n", msg);
        pthread_mutex_unlock(&print_lock);
    }
    static const char corruption[] = "gms: corruption: ";
    bool report = strncmp(msg, corruption, sizeof corruption - 1) == 0;
    if (report && !delivering_push(msg + sizeof corruption - 1))
        return;
    if (level <= GMS_LOG_WARN)
        reenter();
    if (report)
        delivering_pop();
}

static void on_pressure(void *user, const gms_pressure *p)
{
    (void)user;
    (void)p;
    atomic_fetch_add(&pressure_calls, 1);
}

/* ---- workers ----------------------------------------------------------- */

typedef struct wctx {
    gms_context *c;
    int tenant;
    gms_level level;
    gms_language lang;
} wctx;

/* A handle a worker holds. */
typedef struct hold {
    gms_buf h;
    unsigned ctx;     /* which of the worker's contexts holds it */
    sbuf *b;
    bool write;       /* it may write: read-write and not immutable */
    bool owner;       /* allocated or adopted: it may share, export, transfer */
    bool foreign;     /* an import of a foreign tensor */
    bool tag_known;   /* every byte is tag */
    uint8_t tag;
    gms_share_id share; /* the share it made, 0 if none */
    bool revoked;
} hold;

enum {
    OP_ALLOC, OP_FREE, OP_WRITE, OP_READ, OP_COPY, OP_SHARE, OP_ACQUIRE, OP_REVOKE, OP_EXPORT,
    OP_CONSUME, OP_FOREIGN, OP_TRANSFER, OP_ADOPT, OP_QUOTA, OP_STATS, OP_VERIFY, OP_TRIM,
    OP_REOPEN, OP_PROBE, OP_INJECT, OP_BACKEND, NOPS
};
static const char *op_name[NOPS] = {"alloc", "free", "write", "read", "copy", "share", "acquire", "revoke",
                                    "export", "consume", "foreign", "transfer", "adopt", "quota", "stats",
                                    "verify", "trim", "reopen", "probe", "inject", "backend"};
/* Weights out of 1000, in the order above. */
static const unsigned op_weight[NOPS] = {190, 140, 90, 100, 40, 40, 40, 10, 45, 30, 30,
                                         50, 30, 5, 10, 2, 5, 5, 50, 37, 1};

typedef struct worker {
    unsigned id;
    rng r;
    pthread_t thread;
    wctx ctx[NCTX];
    gms_context *inj; /* the pool its raw corruptions go into */
    int inj_tenant, injc_tenant;
    hold holds[NHOLD];
    unsigned nholds;
    gms_buf dead[NDEAD];
    unsigned ndead;
    uint64_t ops, op_count[NOPS];
    uint64_t injected[NCLASS], detected[NCLASS], missed[NCLASS], repeated[NCLASS], by_fault, skipped;
    uint64_t quota_refusals, verify_found;
    episode_tally ep;
} worker;

static worker workers[MAX_THREADS];
static unsigned nshared; /* shared tenants: indices 0..nshared-1 */
static gms_context *hubs[MAX_SHARED_TENANTS]; /* one per shared tenant, never closed until the end */
static int cb_tenant;
static pthread_barrier_t barrier;
static atomic_bool stopping;
static _Atomic uint64_t foreign_made, foreign_deleted;

static const gms_level levels[] = {GMS_LEVEL_PUBLIC, GMS_LEVEL_INTERNAL, GMS_LEVEL_CONFIDENTIAL};
static const gms_language langs[] = {GMS_LANG_C, GMS_LANG_RUST, GMS_LANG_PYTHON};

static void ctx_reopen(worker *w, unsigned i)
{
    wctx *c = &w->ctx[i];
    c->tenant = (int)rnd_below(&w->r, nshared);
    c->level = levels[rnd_below(&w->r, 3)];
    c->lang = langs[rnd_below(&w->r, 3)];
    char user[16];
    snprintf(user, sizeof user, "w%u", w->id);
    c->c = open_ctx(tenants[c->tenant].name, user, c->level, c->lang);
}

static hold *add_hold(worker *w, gms_buf h, unsigned ctx, sbuf *b)
{
    hold *x = &w->holds[w->nholds++];
    memset(x, 0, sizeof *x);
    x->h = h;
    x->ctx = ctx;
    x->b = b;
    return x;
}

static void remove_hold(worker *w, hold *x)
{
    *x = w->holds[--w->nholds];
}

static void dead_push(worker *w, gms_buf h)
{
    w->dead[w->ndead++ % NDEAD] = h;
}

static hold *pick_hold(worker *w)
{
    return w->nholds ? &w->holds[rnd_below(&w->r, w->nholds)] : NULL;
}

static gms_context *ctx_of(worker *w, const hold *x)
{
    return w->ctx[x->ctx].c;
}

/* An import of another thread's export reads memory that the exporting
 * thread may be writing at that moment. In a program that is the
 * program's race: nothing but the program orders a tensor's producer and
 * its consumers. The soak orders them with this lock (writes of content
 * share it, a read of an import holds it alone), so that TSan reports the
 * library's races, not the soak's. */
static pthread_rwlock_t content_lock = PTHREAD_RWLOCK_INITIALIZER;

static void content_lock_for(const hold *read)
{
    if (read && read->b->tensor)
        pthread_rwlock_wrlock(&content_lock);
    else
        pthread_rwlock_rdlock(&content_lock);
}

static void content_unlock(void)
{
    pthread_rwlock_unlock(&content_lock);
}

/* Before touching the memory of x: an import of one of our exports whose
 * exporting context is closing (or closed: the memory is gone) is left
 * alone. Every pin is matched by an unpin. */
static bool pin(const hold *x)
{
    texport *t = x->b->tensor;
    if (!t)
        return true;
    pthread_mutex_lock(&book);
    bool usable = !t->closing;
    t->users += usable;
    pthread_mutex_unlock(&book);
    return usable;
}

static void unpin(const hold *x)
{
    texport *t = x->b->tensor;
    if (!t)
        return;
    pthread_mutex_lock(&book);
    t->users--;
    pthread_mutex_unlock(&book);
}

/* The byte every byte of x holds, if known; x pinned. */
static bool known_tag(const hold *x, uint8_t *tag)
{
    const sbuf *b = x->b->tensor ? x->b->tensor->origin : x->b;
    if (b->immutable) {
        *tag = b->tag;
        return true;
    }
    *tag = x->tag;
    return x->tag_known && !x->b->tensor;
}

/* Reads [off, off + len) of x and checks it against the tag if known. */
static void check_bytes(worker *w, hold *x, uint64_t off, size_t len, const char *when)
{
    uint8_t buf[4096];
    if (len > sizeof buf)
        len = sizeof buf;
    if (!pin(x))
        return;
    content_lock_for(x);
    int rc = gms_read(ctx_of(w, x), x->h, off, buf, len);
    content_unlock();
    uint8_t tag;
    bool known = known_tag(x, &tag);
    unpin(x);
    if (!ok(rc, "gms_read") || !known)
        return;
    for (size_t i = 0; i < len; i++)
        if (buf[i] != tag) {
            soak_problem("content", "%s: byte %" PRIu64 " of a %" PRIu64 "-byte buffer (handle 0x%016" PRIx64
                         ") reads 0x%02x, want 0x%02x",
                         when, off + i, x->b->size, x->h, buf[i], tag);
            return;
        }
}

static bool tenant_limited(int t)
{
    return t >= 0 && atomic_load(&tenants[t].limited);
}

/* ---- operations --------------------------------------------------------- */

static void op_free(worker *w);

static void op_alloc(worker *w)
{
    if (w->nholds == NHOLD) {
        op_free(w);
        return;
    }
    rng *r = &w->r;
    unsigned ci = (unsigned)rnd_below(r, NCTX);
    wctx *c = &w->ctx[ci];
    size_t s = rnd_below(r, 200) == 0 ? (size_t)rnd_in(r, 2 * MiB, 6 * MiB) : rnd_size(r, opt.max_size);
    uint32_t flags = (rnd_below(r, 4) == 0 ? GMS_ALLOC_ZERO : 0) | (rnd_below(r, 16) == 0 ? GMS_ALLOC_PAGES : 0);
    gms_buf h = 1;
    int rc = rnd_below(r, 3) == 0 ? gms_alloc_async(c->c, s, flags, NULL, &h) : gms_alloc(c->c, s, flags, &h);
    if (rc == GMS_E_QUOTA && tenant_limited(c->tenant)) {
        w->quota_refusals++;
        if (h != GMS_BUF_NULL)
            soak_problem("contract", "a refused gms_alloc left its handle set");
        return;
    }
    if (!ok(rc, "gms_alloc"))
        return;
    gms_buf_info i;
    if (!ok(gms_buf_info_get(c->c, h, &i), "gms_buf_info"))
        return;
    if (i.size != s || strcmp(i.tenant, tenants[c->tenant].name) != 0 || i.level != c->level ||
        i.language != c->lang || i.holders != 1 || i.access != GMS_ACCESS_READ_WRITE || i.block_size < s ||
        ((flags & GMS_ALLOC_PAGES) && i.device_ptr % 4096))
        soak_problem("contract", "gms_buf_info of a new %zu-byte buffer: size %" PRIu64 ", tenant '%s', "
                     "holders %u, access %u, block %" PRIu64 ", address 0x%" PRIx64,
                     s, i.size, i.tenant, i.holders, i.access, i.block_size, i.device_ptr);
    if (flags & GMS_ALLOC_ZERO) {
        uint8_t z[256];
        size_t n = s < sizeof z ? s : sizeof z;
        if (ok(gms_read(c->c, h, s - n, z, n), "gms_read"))
            for (size_t k = 0; k < n; k++)
                if (z[k]) {
                    soak_problem("content", "GMS_ALLOC_ZERO: byte %zu of %zu is 0x%02x", s - n + k, s, z[k]);
                    break;
                }
    }
    uint8_t tag = (uint8_t)rnd(r);
    bool known = ok(gms_fill(c->c, h, 0, tag, s), "gms_fill");
    hold *x = add_hold(w, h, ci, sbuf_new(c->tenant, i.block_size, s));
    x->write = x->owner = true;
    x->tag = tag;
    x->tag_known = known;
}

static void op_free(worker *w)
{
    hold *x = pick_hold(w);
    if (!x)
        return;
    gms_context *c = ctx_of(w, x);
    unsigned how = (unsigned)rnd_below(&w->r, 3);
    int rc = how == 0 ? gms_free(c, x->h) : how == 1 ? gms_free_async(c, x->h, NULL) : gms_release(c, x->h);
    ok(rc, how == 0 ? "gms_free" : how == 1 ? "gms_free_async" : "gms_release");
    if (rnd_below(&w->r, 4) == 0)
        want_rc(gms_free(c, x->h), GMS_E_INVALID_HANDLE, "a double gms_free");
    dead_push(w, x->h);
    drop(x->b);
    remove_hold(w, x);
}

/* A random range of a buffer of size bytes, of at most max bytes. */
static void pick_range(rng *r, uint64_t size, size_t max, uint64_t *off, size_t *len)
{
    *off = rnd_below(r, size);
    uint64_t left = size - *off;
    *len = (size_t)rnd_in(r, 1, left < max ? left : max);
}

static void op_write(worker *w)
{
    hold *x = pick_hold(w);
    if (!x || !x->write)
        return;
    rng *r = &w->r;
    gms_context *c = ctx_of(w, x);
    uint64_t size = x->b->size, off;
    size_t len;
    switch (rnd_below(r, 4)) {
    case 0: { /* all of it, a new tag */
        uint8_t tag = (uint8_t)rnd(r);
        content_lock_for(NULL);
        x->tag_known = ok(gms_fill(c, x->h, 0, tag, size), "gms_fill");
        content_unlock();
        x->tag = tag;
        break;
    }
    case 1: { /* a range, with the tag it has */
        if (!x->tag_known)
            return;
        uint8_t buf[4096];
        pick_range(r, size, sizeof buf, &off, &len);
        memset(buf, x->tag, len);
        content_lock_for(NULL);
        x->tag_known = ok(gms_write(c, x->h, off, buf, len), "gms_write");
        content_unlock();
        break;
    }
    case 2: /* a range filled with the tag it has */
        if (!x->tag_known)
            return;
        pick_range(r, size, 1u << 20, &off, &len);
        content_lock_for(NULL);
        x->tag_known = ok(gms_fill(c, x->h, off, x->tag, len), "gms_fill");
        content_unlock();
        break;
    default: { /* past the end: refused, nothing written */
        uint8_t buf[64];
        memset(buf, x->tag ^ 0x5a, sizeof buf);
        off = size - rnd_below(r, size < 32 ? size + 1 : 32);
        len = (size_t)(size - off) + (size_t)rnd_in(r, 1, 32);
        want_rc(rnd_below(r, 2) ? gms_write(c, x->h, off, buf, len) : gms_fill(c, x->h, off, 0x77, len),
                GMS_E_OUT_OF_BOUNDS, "a write past the end");
        if (x->tag_known && size)
            check_bytes(w, x, size - 1, 1, "after a refused write past the end");
        break;
    }
    }
}

static void op_read(worker *w)
{
    hold *x = pick_hold(w);
    if (!x)
        return;
    rng *r = &w->r;
    uint64_t off;
    size_t len;
    if (rnd_below(r, 8) == 0) {
        uint8_t buf[16];
        memset(buf, 0xc3, sizeof buf);
        off = x->b->size - rnd_below(r, 4);
        want_rc(gms_read(ctx_of(w, x), x->h, off, buf, 8 + (size_t)rnd_below(r, 8)), GMS_E_OUT_OF_BOUNDS,
                "a read past the end");
        for (size_t i = 0; i < sizeof buf; i++)
            if (buf[i] != 0xc3) {
                soak_problem("contract", "a refused gms_read wrote its destination");
                break;
            }
        return;
    }
    pick_range(r, x->b->size, 4096, &off, &len);
    check_bytes(w, x, off, len, "gms_read");
}

static void op_copy(worker *w)
{
    hold *src = pick_hold(w), *dst = pick_hold(w);
    if (!src || !dst || !dst->write || src->ctx != dst->ctx)
        return;
    rng *r = &w->r;
    uint64_t most = src->b->size < dst->b->size ? src->b->size : dst->b->size;
    size_t len = (size_t)rnd_in(r, 1, most < 65536 ? most : 65536);
    uint64_t soff = rnd_below(r, src->b->size - len + 1), doff = rnd_below(r, dst->b->size - len + 1);
    if (!pin(src))
        return;
    uint8_t stag, dtag;
    bool sk = known_tag(src, &stag), dk = known_tag(dst, &dtag);
    content_lock_for(src);
    int rc = gms_copy(ctx_of(w, dst), dst->h, doff, src->h, soff, len);
    content_unlock();
    unpin(src);
    if (!ok(rc, "gms_copy")) {
        dst->tag_known = false;
        return;
    }
    dst->tag_known = sk && dk && stag == dtag;
    if (dst->tag_known)
        check_bytes(w, dst, doff, len, "after gms_copy");
}

static const char *any_tenant = "*";

/* ---- the boards: what one thread hands to others ------------------------ */

typedef struct share_post {
    gms_share_id id; /* 0: empty */
    sbuf *b;         /* a reference */
    int owner_tenant;
    bool any;        /* the grant lets in any tenant */
} share_post;

typedef struct tensor_post {
    void *t; /* NULL: empty */
    bool legacy;
    texport *te;
} tensor_post;

typedef struct handoff {
    gms_buf h; /* 0: empty; held by hubs[hub] */
    unsigned hub;
    sbuf *b;
    bool tag_known;
    uint8_t tag;
} handoff;

static pthread_mutex_t board_lock = PTHREAD_MUTEX_INITIALIZER;
static share_post share_board[BOARD];
static tensor_post tensor_board[BOARD];
static handoff handoff_board[BOARD];
static unsigned share_next, tensor_next, handoff_next;

static void tensor_delete(void *t, bool legacy)
{
    if (legacy)
        ((DLManagedTensor *)t)->deleter(t);
    else
        ((DLManagedTensorVersioned *)t)->deleter(t);
}

static void post_share(gms_share_id id, sbuf *b, int owner_tenant, bool any)
{
    pthread_mutex_lock(&board_lock);
    share_post *p = &share_board[share_next++ % BOARD];
    sbuf *old = p->id ? p->b : NULL;
    pthread_mutex_lock(&book);
    b->refs++;
    if (old)
        unref_locked(old);
    pthread_mutex_unlock(&book);
    *p = (share_post){id, b, owner_tenant, any};
    pthread_mutex_unlock(&board_lock);
}

static void post_tensor(void *t, bool legacy, texport *te)
{
    pthread_mutex_lock(&board_lock);
    tensor_post *p = &tensor_board[tensor_next++ % BOARD];
    tensor_post old = *p;
    *p = (tensor_post){t, legacy, te};
    pthread_mutex_unlock(&board_lock);
    if (old.t) { /* nobody took it: its deleter runs here */
        tensor_delete(old.t, old.legacy);
        tensor_end(old.te);
    }
}

static void post_handoff(handoff h)
{
    pthread_mutex_lock(&board_lock);
    handoff *p = &handoff_board[handoff_next++ % BOARD];
    handoff old = *p;
    *p = h;
    pthread_mutex_unlock(&board_lock);
    if (old.h) {
        ok(gms_free(hubs[old.hub], old.h), "gms_free (a hub's handle)");
        drop(old.b);
    }
}

/* ---- sharing ------------------------------------------------------------ */

static unsigned other_ctx(worker *w, unsigned ci)
{
    return (ci + 1 + (unsigned)rnd_below(&w->r, NCTX - 1)) % NCTX;
}

/* An acquire by ctx j of share id on b: the holder is counted first, so
 * the block's bytes are not taken off its tenant while the call runs. */
static void acquire_into(worker *w, unsigned j, gms_share_id id, sbuf *b, int owner_tenant, bool any,
                         bool local)
{
    if (w->nholds == NHOLD) {
        drop(b);
        return;
    }
    rng *r = &w->r;
    gms_access mode = rnd_below(r, 4) == 0 ? GMS_ACCESS_READ_WRITE : GMS_ACCESS_READ;
    gms_buf h = 1;
    int rc = gms_acquire(w->ctx[j].c, id, mode, &h);
    bool let_in = any || w->ctx[j].tenant == owner_tenant;
    bool may = let_in && !(mode == GMS_ACCESS_READ_WRITE && (b->immutable || local));
    if (rc == GMS_OK && !may)
        soak_problem("contract", "gms_acquire (%s, %s share, grant for %s tenant) succeeded",
                     mode == GMS_ACCESS_READ ? "read" : "read-write", b->immutable ? "immutable" : "mutable",
                     let_in ? "this" : "another");
    if (rc != GMS_OK) {
        /* Local: the share is live and we know its state exactly. */
        bool fine = rc == GMS_E_ACCESS_DENIED || rc == GMS_E_BUSY || rc == GMS_E_READ_ONLY ||
                    (!local && rc == GMS_E_INVALID_HANDLE);
        if (local && let_in && mode == GMS_ACCESS_READ)
            fine = false;
        if (!fine)
            soak_problem("contract", "gms_acquire (%s, %s, %s share) returned %s",
                         local ? "this thread's share" : "another thread's share",
                         mode == GMS_ACCESS_READ ? "read" : "read-write", b->immutable ? "immutable" : "mutable",
                         gms_strerror(rc));
        if (h != GMS_BUF_NULL)
            soak_problem("contract", "a refused gms_acquire left its handle set");
        drop(b);
        return;
    }
    hold *x = add_hold(w, h, j, b);
    x->write = mode == GMS_ACCESS_READ_WRITE && !b->immutable;
    check_bytes(w, x, 0, b->size < 256 ? (size_t)b->size : 256, "an acquired share");
}

static void op_share(worker *w)
{
    hold *x = pick_hold(w);
    if (!x || !x->owner || x->share || x->foreign || x->b->tensor || !x->write)
        return;
    rng *r = &w->r;
    gms_context *c = ctx_of(w, x);
    if (!x->tag_known) {
        x->tag = (uint8_t)rnd(r);
        if (!(x->tag_known = ok(gms_fill(c, x->h, 0, x->tag, x->b->size), "gms_fill")))
            return;
    }
    /* Immutable only while nobody else holds it: other threads read the
     * record's immutable and tag without a lock, once published. */
    bool imm = rnd_below(r, 3) == 0 && holders_of(x->b) == 1, any = rnd_below(r, 3) != 0;
    gms_share_grant g[2] = {{any ? any_tenant : NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ_WRITE},
                            {NULL, "nobody", GMS_LANG_PYTHON, GMS_ACCESS_READ}};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = g;
    d.ngrants = 1 + (size_t)rnd_below(r, 2);
    d.immutable = imm;
    gms_share_id id = 0;
    if (!ok(gms_share(c, x->h, &d, &id), "gms_share"))
        return;
    gms_share_id again;
    want_rc(gms_share(c, x->h, &d, &again), GMS_E_BUSY, "a second gms_share");
    x->share = id;
    if (imm) {
        x->b->immutable = true;
        x->b->tag = x->tag;
        x->write = false;
        uint8_t byte = 0;
        want_rc(gms_write(c, x->h, 0, &byte, 1), GMS_E_READ_ONLY, "the owner's gms_write to an immutable share");
    }
    int owner_tenant = w->ctx[x->ctx].tenant;
    sbuf *b = x->b;
    if (rnd_below(r, 2)) {
        add_holder(b);
        acquire_into(w, other_ctx(w, x->ctx), id, b, owner_tenant, any, true);
    }
    if (on[F_BOARDS] && rnd_below(r, 2))
        post_share(id, b, owner_tenant, any);
}

static void op_acquire(worker *w)
{
    if (!on[F_BOARDS])
        return;
    pthread_mutex_lock(&board_lock);
    share_post p = share_board[rnd_below(&w->r, BOARD)];
    bool live = false;
    if (p.id) {
        pthread_mutex_lock(&book);
        if ((live = p.b->holders > 0)) {
            p.b->holders++;
            p.b->refs++;
        }
        pthread_mutex_unlock(&book);
    }
    pthread_mutex_unlock(&board_lock);
    if (live)
        acquire_into(w, (unsigned)rnd_below(&w->r, NCTX), p.id, p.b, p.owner_tenant, p.any, false);
}

static void op_revoke(worker *w)
{
    hold *x = pick_hold(w);
    if (!x || !x->share || x->revoked)
        return;
    ok(gms_revoke(ctx_of(w, x), x->share), "gms_revoke");
    x->revoked = true;
    unsigned j = other_ctx(w, x->ctx);
    gms_buf h = 1;
    want_rc(gms_acquire(w->ctx[j].c, x->share, GMS_ACCESS_READ, &h), GMS_E_ACCESS_DENIED,
            "gms_acquire of a revoked share");
}

/* ---- DLPack --------------------------------------------------------------- */

/* Imports tensor t (ours or another thread's) into context j; the
 * import's last release will run its deleter. On failure the tensor is
 * still ours: its deleter runs here. */
static void import_into(worker *w, unsigned j, void *t, bool legacy, texport *te)
{
    gms_buf h = 1;
    int rc = legacy ? gms_dlpack_import_legacy(w->ctx[j].c, t, &h) : gms_dlpack_import(w->ctx[j].c, t, &h);
    const DLTensor *dl = legacy ? &((DLManagedTensor *)t)->dl_tensor : &((DLManagedTensorVersioned *)t)->dl_tensor;
    uint64_t bytes = (uint64_t)dl->dtype.bits / 8 * dl->dtype.lanes;
    for (int32_t d = 0; d < dl->ndim; d++)
        bytes *= (uint64_t)dl->shape[d];
    if (rc != GMS_OK || w->nholds == NHOLD) {
        if (rc != GMS_OK && !(rc == GMS_E_INVALID_ARG && bytes == 0))
            soak_problem("contract", "gms_dlpack_import%s of our own export returned %s", legacy ? "_legacy" : "",
                         gms_strerror(rc));
        if (rc == GMS_OK)
            ok(gms_free(w->ctx[j].c, h), "gms_free (an import)");
        else
            tensor_delete(t, legacy);
        tensor_end(te);
        return;
    }
    sbuf *b = sbuf_new(-1, 0, bytes);
    b->tensor = te;
    hold *x = add_hold(w, h, j, b);
    check_bytes(w, x, 0, bytes < 256 ? (size_t)bytes : 256, "an imported export");
}

static void op_export(worker *w)
{
    if (!on[F_DLPACK])
        return;
    hold *x = pick_hold(w);
    if (!x || x->foreign || x->b->tensor)
        return;
    rng *r = &w->r;
    uint64_t size = x->b->size;
    int64_t shape[2];
    gms_dlpack_desc d = GMS_DLPACK_DESC_INIT;
    bool whole = rnd_below(r, 2);
    if (!whole) {
        d.byte_offset = rnd_below(r, size);
        uint64_t left = size - d.byte_offset;
        if (left >= 8 && rnd_below(r, 2)) { /* float32 rows */
            d.dtype = (DLDataType){kDLFloat, 32, 1};
            shape[1] = (int64_t)rnd_in(r, 1, left / 4 < 64 ? left / 4 : 64);
            shape[0] = (int64_t)rnd_in(r, 1, left / 4 / (uint64_t)shape[1]);
            d.ndim = 2;
        } else {
            shape[0] = (int64_t)rnd_in(r, 1, left);
            d.ndim = 1;
        }
        d.shape = shape;
    }
    bool legacy = rnd_below(r, 4) == 0;
    bool read_only = x->b->immutable || !x->write;
    void *t = (void *)(uintptr_t)1;
    int rc = legacy ? gms_dlpack_export_legacy(ctx_of(w, x), x->h, whole ? NULL : &d, (DLManagedTensor **)&t)
                    : gms_dlpack_export(ctx_of(w, x), x->h, whole ? NULL : &d, (DLManagedTensorVersioned **)&t);
    /* A reader of another tenant's buffer gets no pointer to it where the
     * block shares its pages (no read-only mapping of it alone). */
    bool other_reader = !x->owner && !x->write && x->b->tenant >= 0 && x->b->tenant != w->ctx[x->ctx].tenant;
    if (other_reader && rc == GMS_E_ACCESS_DENIED)
        return;
    if (legacy && read_only && x->b->immutable) {
        want_rc(rc, GMS_E_READ_ONLY, "gms_dlpack_export_legacy of an immutable share");
        return;
    }
    if (legacy && read_only && rc == GMS_E_READ_ONLY)
        return; /* a read-only handle: a legacy tensor cannot say so */
    if (!ok(rc, legacy ? "gms_dlpack_export_legacy" : "gms_dlpack_export"))
        return;
    texport *te = tensor_new(x->b, ctx_of(w, x));
    if (!legacy) {
        DLManagedTensorVersioned *vt = t;
        bool ro = (vt->flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0;
        if (ro != read_only || vt->dl_tensor.device.device_type != kDLCPU)
            soak_problem("contract", "an exported tensor: read-only flag %d for a %s handle, device %d", ro,
                         read_only ? "read-only" : "writable", (int)vt->dl_tensor.device.device_type);
    }
    unsigned what = (unsigned)rnd_below(r, 10);
    if (what < 4)
        import_into(w, (unsigned)rnd_below(r, NCTX), t, legacy, te);
    else if (what < 7 || !on[F_BOARDS]) {
        tensor_delete(t, legacy);
        tensor_end(te);
    } else {
        post_tensor(t, legacy, te);
    }
}

static void op_consume(worker *w)
{
    if (!on[F_DLPACK] || !on[F_BOARDS])
        return;
    pthread_mutex_lock(&board_lock);
    tensor_post *p = &tensor_board[rnd_below(&w->r, BOARD)];
    tensor_post got = *p;
    memset(p, 0, sizeof *p);
    pthread_mutex_unlock(&board_lock);
    if (!got.t)
        return;
    if (rnd_below(&w->r, 2)) {
        import_into(w, (unsigned)rnd_below(&w->r, NCTX), got.t, got.legacy, got.te);
    } else {
        tensor_delete(got.t, got.legacy);
        tensor_end(got.te);
    }
}

/* A tensor of another framework: host memory with a deleter that frees
 * it, once. */
typedef struct foreign {
    DLManagedTensorVersioned v;
    DLManagedTensor l;
    int64_t shape[2], strides[2];
    uint8_t *mem;
} foreign;

/* A second call is a use after free, which ASan reports; the counts
 * catch a deleter never called. */
static void foreign_end(foreign *f)
{
    free(f->mem);
    free(f);
    atomic_fetch_add(&foreign_deleted, 1);
}

static void foreign_deleter_v(DLManagedTensorVersioned *t)
{
    foreign_end(t->manager_ctx);
}

static void foreign_deleter_l(DLManagedTensor *t)
{
    foreign_end(t->manager_ctx);
}

static void op_foreign(worker *w)
{
    if (!on[F_DLPACK] || w->nholds == NHOLD)
        return;
    rng *r = &w->r;
    foreign *f = calloc(1, sizeof *f);
    size_t bytes = rnd_size(r, 64 * KiB), lead = rnd_below(r, 4) == 0 ? (size_t)rnd_in(r, 1, 512) : 0;
    uint8_t tag = (uint8_t)rnd(r);
    if (!f || !(f->mem = malloc(lead + bytes))) {
        fprintf(stderr, "gms-soak: out of memory\n");
        exit(2);
    }
    memset(f->mem, tag ^ 0xff, lead);
    memset(f->mem + lead, tag, bytes);
    DLTensor dl = {f->mem, {kDLCPU, 0}, 1, {kDLUInt, 8, 1}, f->shape, NULL, lead};
    f->shape[0] = (int64_t)bytes;
    if (bytes % 4 == 0 && rnd_below(r, 2)) { /* int32 rows, strides given */
        dl.dtype = (DLDataType){kDLInt, 32, 1};
        dl.ndim = 2;
        f->shape[1] = bytes % 16 == 0 ? 4 : 1;
        f->shape[0] = (int64_t)bytes / 4 / f->shape[1];
        f->strides[0] = f->shape[1];
        f->strides[1] = 1;
        dl.strides = f->strides;
    }
    bool legacy = rnd_below(r, 4) == 0, ro = !legacy && rnd_below(r, 4) == 0;
    f->v = (DLManagedTensorVersioned){{1, 1}, f, foreign_deleter_v, ro ? DLPACK_FLAG_BITMASK_READ_ONLY : 0, dl};
    f->l = (DLManagedTensor){dl, f, foreign_deleter_l};
    atomic_fetch_add(&foreign_made, 1);
    unsigned j = (unsigned)rnd_below(r, NCTX);
    gms_buf h = 1;
    int rc = legacy ? gms_dlpack_import_legacy(w->ctx[j].c, &f->l, &h) : gms_dlpack_import(w->ctx[j].c, &f->v, &h);
    if (!ok(rc, "gms_dlpack_import of a foreign tensor")) {
        foreign_end(f);
        return;
    }
    hold *x = add_hold(w, h, j, sbuf_new(-1, 0, bytes));
    x->foreign = true;
    x->write = !ro;
    x->tag = tag;
    x->tag_known = true;
    gms_buf_info i;
    if (ok(gms_buf_info_get(w->ctx[j].c, h, &i), "gms_buf_info (an import)") &&
        (i.size != bytes || i.device_ptr != (uint64_t)(uintptr_t)(f->mem + lead)))
        soak_problem("contract", "an imported tensor of %zu bytes at %p: info says %" PRIu64 " bytes at 0x%" PRIx64,
                     bytes, (void *)(f->mem + lead), i.size, i.device_ptr);
    check_bytes(w, x, 0, bytes < 256 ? bytes : 256, "an imported foreign tensor");
    if (ro) {
        uint8_t byte = 0;
        want_rc(gms_write(w->ctx[j].c, h, 0, &byte, 1), GMS_E_READ_ONLY, "gms_write to a read-only import");
    }
}

/* ---- transfers ---------------------------------------------------------- */

/* Moves handle h on b (tag as given) from context `from` (tenant ft) to
 * context `to` (tenant tt, level tl). On success *nh is the new handle and
 * *nb the record of the block it names (b itself unless it was copied).
 * The old handle must be dead, the bytes the same, and the block in to's
 * tenant; a copy exactly when the rules say (docs/sharing.md). */
static bool transfer(worker *w, gms_context *from, int ft, gms_buf h, sbuf *b, bool imported, bool read_only,
                     bool tag_known, uint8_t tag, gms_context *to, int tt, gms_level tl, gms_buf *nh, sbuf **nb)
{
    gms_buf_info before;
    if (!ok(gms_buf_info_get(from, h, &before), "gms_buf_info (before a transfer)"))
        return false;
    *nh = 1;
    int rc = rnd_below(&w->r, 2) ? gms_transfer(from, h, to, nh) : gms_transfer_async(from, h, to, NULL, nh);
    if (rc == GMS_E_QUOTA && tenant_limited(tt)) {
        w->quota_refusals++;
        gms_buf_info again;
        if (*nh != GMS_BUF_NULL || gms_buf_info_get(from, h, &again) != GMS_OK)
            soak_problem("contract", "a transfer refused for quota changed something");
        return false;
    }
    if (rc == GMS_E_READ_ONLY && read_only)
        return false; /* an import of a read-only tensor stays where it is */
    if (!ok(rc, "gms_transfer"))
        return false;
    dead_push(w, h);
    uint8_t x;
    if (rnd_below(&w->r, 4) == 0)
        want_rc(gms_read(from, h, 0, &x, 1), GMS_E_INVALID_HANDLE, "gms_read of a transferred handle");
    gms_buf_info after;
    if (!ok(gms_buf_info_get(to, *nh, &after), "gms_buf_info (after a transfer)")) {
        *nb = b;
        return true;
    }
    bool copied = after.device_ptr != before.device_ptr;
    if (strcmp(after.tenant, tenants[tt].name) != 0)
        soak_problem("contract",
                     "a transfer of %s %" PRIu64 "-byte buffer from tenant '%s' to '%s' left it in tenant '%s'%s",
                     imported ? "an imported" : "a", before.size, tenants[ft].name, tenants[tt].name, after.tenant,
                     imported ? " (known defect 7)" : "");
    else if (ft != tt && !copied)
        soak_problem("contract", "a transfer of %s buffer to another tenant did not copy it%s",
                     imported ? "an imported" : "a", imported ? " (known defect 7)" : "");
    else if (!imported && copied != (ft != tt || tl > before.level))
        soak_problem("contract", "a transfer from tenant '%s' (%s) to '%s' (%s) %s", tenants[ft].name,
                     gms_level_name(before.level), tenants[tt].name, gms_level_name(tl),
                     copied ? "copied the buffer" : "did not copy the buffer");
    if (copied) {
        *nb = sbuf_new(tt, after.block_size, after.size);
        drop(b); /* the old block (an import: its tensor) is gone */
    } else {
        *nb = b;
    }
    if (tag_known && after.size) {
        uint8_t y = (uint8_t)~tag;
        if (ok(gms_read(to, *nh, rnd_below(&w->r, after.size), &y, 1), "gms_read (transferred)") && y != tag)
            soak_problem("content", "a transferred buffer reads 0x%02x, want 0x%02x", y, tag);
    }
    return true;
}

static void op_transfer(worker *w)
{
    if (!on[F_TRANSFER])
        return;
    hold *x = pick_hold(w);
    rng *r = &w->r;
    if (!x || x->share || x->b->immutable || holders_of(x->b) != 1)
        return;
    bool imported = x->foreign || x->b->tensor;
    if (imported ? !on[F_IMPORT_TRANSFER] : !x->owner)
        return;
    bool to_hub = on[F_BOARDS] && !imported && rnd_below(r, 4) == 0;
    unsigned j = other_ctx(w, x->ctx), hub = (unsigned)rnd_below(r, nshared);
    gms_context *to = to_hub ? hubs[hub] : w->ctx[j].c;
    int tt = to_hub ? (int)hub : w->ctx[j].tenant;
    gms_level tl = to_hub ? GMS_LEVEL_PUBLIC : w->ctx[j].level;
    gms_buf nh;
    sbuf *nb;
    uint8_t tag;
    if (!pin(x))
        return;
    bool known = known_tag(x, &tag);
    texport *te = x->b->tensor;
    /* A transfer of an import copies memory its exporter may be writing:
     * a read of the import, under the content lock as one. */
    content_lock_for(x);
    bool moved = transfer(w, ctx_of(w, x), w->ctx[x->ctx].tenant, x->h, x->b, imported, !x->write, known, tag, to,
                          tt, tl, &nh, &nb);
    content_unlock();
    if (te && (!moved || nb == x->b))
        unpin(x); /* a copied import's tensor is gone */
    if (!moved)
        return;
    if (nb != x->b) { /* copied: a block of our own now */
        x->foreign = false;
        x->owner = x->write = true;
    }
    if (to_hub) {
        post_handoff((handoff){nh, hub, nb, known, tag});
        remove_hold(w, x);
        return;
    }
    x->h = nh;
    x->b = nb;
    x->ctx = j;
    x->tag = tag;
    x->tag_known = known;
}

static void op_adopt(worker *w)
{
    if (!on[F_BOARDS] || !on[F_TRANSFER] || w->nholds == NHOLD)
        return;
    pthread_mutex_lock(&board_lock);
    handoff *p = &handoff_board[rnd_below(&w->r, BOARD)];
    handoff got = *p;
    memset(p, 0, sizeof *p);
    pthread_mutex_unlock(&board_lock);
    if (!got.h)
        return;
    if (rnd_below(&w->r, 3) == 0) {
        ok(gms_free(hubs[got.hub], got.h), "gms_free (a hub's handle)");
        drop(got.b);
        return;
    }
    unsigned j = (unsigned)rnd_below(&w->r, NCTX);
    gms_buf nh;
    sbuf *nb;
    if (!transfer(w, hubs[got.hub], (int)got.hub, got.h, got.b, false, false, got.tag_known, got.tag, w->ctx[j].c,
                  w->ctx[j].tenant, w->ctx[j].level, &nh, &nb)) {
        post_handoff(got); /* still the hub's */
        return;
    }
    hold *x = add_hold(w, nh, j, nb);
    x->owner = x->write = true;
    x->tag = got.tag;
    x->tag_known = got.tag_known;
}

/* ---- the rest ------------------------------------------------------------ */

static void op_quota(worker *w)
{
    if (!on[F_QUOTA])
        return;
    static const uint64_t bytes[] = {GMS_UNLIMITED, GMS_UNLIMITED, GMS_UNLIMITED, 4 * MiB, 16 * MiB, 64 * MiB};
    static const uint64_t allocs[] = {GMS_UNLIMITED, GMS_UNLIMITED, GMS_UNLIMITED, 64, 1000};
    unsigned t = (unsigned)rnd_below(&w->r, nshared);
    uint64_t mb = bytes[rnd_below(&w->r, 6)], ma = allocs[rnd_below(&w->r, 5)];
    pthread_mutex_lock(&book);
    if (ok(gms_tenant_set_quota(rt, tenants[t].name, mb, ma), "gms_tenant_set_quota")) {
        tenants[t].max_bytes = mb;
        tenants[t].max_allocs = ma;
        if (mb != GMS_UNLIMITED || ma != GMS_UNLIMITED)
            atomic_store(&tenants[t].limited, true);
    }
    pthread_mutex_unlock(&book);
}

static void op_stats(worker *w)
{
    gms_stats s;
    if (!ok(gms_stats_get(rt, &s), "gms_stats_get"))
        return;
    if (s.fragmentation < 0 || s.fragmentation > 1 || s.held_bytes < s.live_bytes)
        soak_problem("contract", "gms_stats: fragmentation %g, held %" PRIu64 ", live %" PRIu64, s.fragmentation,
                     s.held_bytes, s.live_bytes);
    gms_tenant_stats t;
    ok(gms_tenant_stats_get(rt, rnd_below(&w->r, s.tenants), &t), "gms_tenant_stats_get");
    /* Other workers add tenants meanwhile: an index just past s.tenants
     * may be valid by now, one a million past it is not. */
    want_rc(gms_tenant_stats_get(rt, s.tenants + (1u << 20) + rnd_below(&w->r, 4), &t), GMS_E_INVALID_ARG,
            "gms_tenant_stats_get past the last tenant");
}

static int verify_now(gms_report *rep);

static void op_verify(worker *w)
{
    /* Another thread's fault may be in flight: a finding here is checked
     * by the callbacks, and the checkpoints' verify is the strict one. */
    gms_report rep;
    int rc = verify_now(&rep);
    if (rc == GMS_E_CORRUPTION)
        w->verify_found++;
    else
        ok(rc, "gms_verify");
}

static void op_trim(worker *w)
{
    if (rnd_below(&w->r, 2))
        ok(gms_trim(rt), "gms_trim");
    else
        ok(gms_sync(rt), "gms_sync");
}

/* Closes one of the worker's contexts. What it holds is reclaimed (as
 * leaks), the handles of the tensors it exported included, which frees
 * their memory under any import of them: nobody may be touching it then. */
static void close_ctx(worker *w, unsigned ci)
{
    gms_context *c = w->ctx[ci].c;
    pthread_mutex_lock(&book);
    for (texport *t = texports; t; t = t->next)
        if (t->ctx == c)
            t->closing = true;
    for (;;) {
        int users = 0;
        for (texport *t = texports; t; t = t->next)
            if (t->ctx == c)
                users += t->users;
        if (!users)
            break;
        pthread_mutex_unlock(&book);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&book);
    }
    pthread_mutex_unlock(&book);
    gms_context_close(c);
    pthread_mutex_lock(&book);
    for (texport *t = texports; t; t = t->next)
        if (t->ctx == c) {
            t->ctx = NULL; /* the tensor keeps origin alive */
            t->closing = false;
        }
    pthread_mutex_unlock(&book);
    for (unsigned i = w->nholds; i-- > 0;)
        if (w->holds[i].ctx == ci) {
            dead_push(w, w->holds[i].h);
            drop(w->holds[i].b);
            remove_hold(w, &w->holds[i]);
        }
    w->ctx[ci].c = NULL;
    if (!on[F_ORPHAN_READ])
        return;
    /* Our imports of its exports: the tensors keep their memory, so a
     * checked read still works and reads what was there. */
    for (unsigned i = 0; i < w->nholds; i++) {
        hold *x = &w->holds[i];
        texport *t = x->b->tensor;
        /* Another worker's close sets t->ctx under book. */
        pthread_mutex_lock(&book);
        bool probe = t && !t->ctx && !t->probed;
        if (probe)
            t->probed = true;
        pthread_mutex_unlock(&book);
        if (!probe)
            continue;
        uint8_t byte, tag;
        content_lock_for(x);
        int rc = gms_read(ctx_of(w, x), x->h, 0, &byte, 1);
        content_unlock();
        if (rc != GMS_OK)
            soak_problem("contract", "a checked gms_read of an imported tensor failed after the context that "
                         "exported it closed (%s): the tensor keeps its memory until its deleter runs",
                         gms_strerror(rc));
        else if (known_tag(x, &tag) && byte != tag)
            soak_problem("content", "an imported tensor reads 0x%02x after its exporter closed, want 0x%02x",
                         byte, tag);
    }
}

static void op_reopen(worker *w)
{
    unsigned ci = (unsigned)rnd_below(&w->r, NCTX);
    close_ctx(w, ci);
    ctx_reopen(w, ci);
}

/* Dead, forged and other contexts' handles: refused, nothing touched. */
static void op_probe(worker *w)
{
    rng *r = &w->r;
    unsigned ci = (unsigned)rnd_below(r, NCTX);
    gms_context *c = w->ctx[ci].c;
    gms_buf h;
    int want = GMS_E_INVALID_HANDLE;
    unsigned kind = (unsigned)rnd_below(r, 3);
    if (kind == 0 && w->ndead)
        h = w->dead[rnd_below(r, w->ndead < NDEAD ? w->ndead : NDEAD)];
    else if (kind == 1 && w->nholds) {
        hold *x = pick_hold(w);
        if (x->ctx == ci)
            return;
        h = x->h;
        want = GMS_E_ACCESS_DENIED;
    } else
        h = rnd(r) | 1;
    uint8_t buf[8];
    memset(buf, 0x3c, sizeof buf);
    void *p = buf;
    gms_buf_info info;
    switch (rnd_below(r, 5)) {
    case 0: want_rc(gms_read(c, h, 0, buf, 1), want, "gms_read of a bad handle"); break;
    case 1: want_rc(gms_write(c, h, 0, buf, 1), want, "gms_write of a bad handle"); break;
    case 2: want_rc(gms_free(c, h), want, "gms_free of a bad handle"); break;
    case 3: want_rc(gms_buf_info_get(c, h, &info), want, "gms_buf_info of a bad handle"); break;
    default:
        want_rc(gms_buf_ptr(c, h, &p), want, "gms_buf_ptr of a bad handle");
        if (on[F_OUT_NULL] && p != NULL)
            soak_problem("contract", "a failed gms_buf_ptr left *out set (known defect 14)");
        break;
    }
    if (buf[0] != 0x3c)
        soak_problem("contract", "a refused call with a bad handle wrote its destination");
}

/* ---- injected raw corruptions ----------------------------------------------- */

/* A raw write races, by design, with whatever reads that memory: only
 * gms_verify of another thread does (and the background verifier, which
 * is off under TSan). The write and this thread's verifies are ordered
 * with this lock, so that TSan sees the library's races, not the fault's. */
static pthread_rwlock_t raw_lock = PTHREAD_RWLOCK_INITIALIZER;

static int verify_now(gms_report *rep)
{
    pthread_rwlock_rdlock(&raw_lock);
    int rc = gms_verify(rt, rep);
    pthread_rwlock_unlock(&raw_lock);
    return rc;
}

static void corrupt_unlocked(rng *r, uint8_t *p, size_t n)
{
    volatile uint8_t *q = p;
    for (size_t i = 0; i < n; i++)
        q[i] ^= (uint8_t)(1 + rnd_below(r, 255));
}

static void corrupt(rng *r, uint8_t *p, size_t n)
{
    pthread_rwlock_wrlock(&raw_lock);
    corrupt_unlocked(r, p, n);
    pthread_rwlock_unlock(&raw_lock);
}

/* A write that faults (memory already given back) is caught here, on
 * the thread that made it. */
static _Thread_local sigjmp_buf fault_env;
static _Thread_local volatile sig_atomic_t fault_armed;

static void on_fault(int sig)
{
    if (fault_armed) {
        fault_armed = 0;
        siglongjmp(fault_env, sig);
    }
    /* A crash of its own: say where, for the report, then die of it. */
    static const char msg[] = "gms-soak: fatal signal; the stack:\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    void *frames[64];
    backtrace_symbols_fd(frames, backtrace(frames, 64), 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

static bool guarded_corrupt(rng *r, uint8_t *p, size_t n)
{
    pthread_rwlock_wrlock(&raw_lock);
    volatile bool faulted = false;
    if (sigsetjmp(fault_env, 1)) {
        faulted = true;
    } else {
        fault_armed = 1;
        corrupt_unlocked(r, p, n);
        fault_armed = 0;
    }
    pthread_rwlock_unlock(&raw_lock);
    return faulted;
}

/* Arms the worker's fault: bytes [lo, hi) of tenant t's memory (of
 * buffer h, if reports must name it). */
static void fault_arm(worker *w, int t, gms_buf h, uint64_t lo, uint64_t hi, unsigned kinds)
{
    pthread_mutex_lock(&vlock);
    faults[w->id] = (fault){true, tenants[t].name, h, lo, hi, kinds, 0};
    pthread_mutex_unlock(&vlock);
}

static unsigned fault_reports(worker *w)
{
    pthread_mutex_lock(&vlock);
    unsigned n = faults[w->id].reports;
    pthread_mutex_unlock(&vlock);
    return n;
}

/* Waits (a little) for the report of the armed fault, then settles it:
 * detected or missed. */
static void fault_settle(worker *w, unsigned cls, bool by_fault, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fault_settle(worker *w, unsigned cls, bool by_fault, const char *fmt, ...)
{
    unsigned n = fault_reports(w);
    for (int ms = 0; !n && !by_fault && ms < SETTLE_MS; ms++) {
        /* A report found by another thread is delivered there after its
         * lock is gone: give it a moment. */
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
        n = fault_reports(w);
    }
    pthread_mutex_lock(&vlock);
    n = faults[w->id].reports;
    faults[w->id].active = false;
    settled[settled_next++ % (sizeof settled / sizeof settled[0])] = faults[w->id];
    pthread_mutex_unlock(&vlock);
    w->injected[cls]++;
    if (n || by_fault) {
        w->detected[cls]++;
        w->by_fault += by_fault;
        w->repeated[cls] += n > 1 ? n - 1 : 0;
        return;
    }
    w->missed[cls]++;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    soak_problem("missed", "%s: %s: no violation reported", class_name[cls], what);
}

/* Accepts GMS_OK or GMS_E_CORRUPTION (the call met the fault). */
static int may_report(int rc, const char *what)
{
    if (rc != GMS_OK && rc != GMS_E_CORRUPTION)
        soak_problem("contract", "%s during a fault trial returned %s: %s", what, gms_strerror(rc), gms_error_last());
    return rc;
}

static bool inj_alloc(gms_context *c, size_t s, gms_buf *h, uint8_t **p, uint64_t *block)
{
    if (!ok(gms_alloc(c, s, 0, h), "gms_alloc (fault trial)"))
        return false;
    gms_buf_info i;
    if (!ok(gms_buf_ptr(c, *h, (void **)p), "gms_buf_ptr") || !ok(gms_buf_info_get(c, *h, &i), "gms_buf_info")) {
        gms_free(c, *h);
        return false;
    }
    if (block)
        *block = i.block_size;
    return true;
}

static size_t inj_size(worker *w)
{
    return rnd_size(&w->r, opt.max_size < INJECT_MAX_SIZE ? opt.max_size : INJECT_MAX_SIZE);
}

#define KIND(k) (1u << (k))

static void inject_overflow(worker *w)
{
    rng *r = &w->r;
    size_t s = inj_size(w);
    gms_buf b, next = GMS_BUF_NULL;
    uint8_t *p, *pn;
    if (!inj_alloc(w->inj, s, &b, &p, NULL))
        return;
    if (rnd_below(r, 2) && !inj_alloc(w->inj, inj_size(w), &next, &pn, NULL))
        next = GMS_BUF_NULL;
    uint64_t dist = rnd_below(r, REDZONE), len = rnd_in(r, 1, REDZONE - dist);
    uint64_t lo = (uint64_t)(uintptr_t)p + s + dist;
    fault_arm(w, w->inj_tenant, GMS_BUF_NULL, lo, lo + len, KIND(GMS_VIOLATION_OVERFLOW) | KIND(GMS_VIOLATION_UNDERFLOW));
    corrupt(r, p + s + dist, len);
    unsigned path = (unsigned)rnd_below(r, 4);
    uint8_t x = 1;
    if (path == 1)
        may_report(verify_now(NULL), "gms_verify");
    else if (path == 2)
        may_report(gms_write(w->inj, b, 0, &x, 1), "gms_write");
    if (next && path == 3)
        may_report(gms_free(w->inj, next), "gms_free (the neighbour)");
    int rc = may_report(gms_free(w->inj, b), "gms_free");
    if (next && path != 3)
        may_report(gms_free(w->inj, next), "gms_free (the neighbour)");
    fault_settle(w, C_OVERFLOW, false, "size %zu, bytes [+%" PRIu64 ", +%" PRIu64 ") past the end, path %u, free %s",
                 s, dist, dist + len, path, gms_strerror(rc));
}

static void inject_underflow(worker *w)
{
    rng *r = &w->r;
    size_t s = inj_size(w);
    gms_buf n, b;
    uint8_t *pn, *pb;
    uint64_t nblock;
    for (int tries = 0;; tries++) {
        if (tries == 20) {
            w->skipped++;
            return;
        }
        if (!inj_alloc(w->inj, inj_size(w), &n, &pn, &nblock))
            return;
        if (!inj_alloc(w->inj, s, &b, &pb, NULL)) {
            gms_free(w->inj, n);
            return;
        }
        if (pn + nblock == pb)
            break;
        ok(gms_free(w->inj, b), "gms_free");
        ok(gms_free(w->inj, n), "gms_free");
    }
    uint64_t dist = rnd_below(r, REDZONE), len = rnd_in(r, 1, REDZONE - dist);
    uint64_t lo = (uint64_t)(uintptr_t)pb - dist - len;
    /* The bytes lie in the neighbour's block: once it is freed (path 2),
     * a verifier that gets there first reports them as written after its
     * free, rightly (docs/safety.md: a byte between two blocks is blamed
     * on whichever is checked first). */
    fault_arm(w, w->inj_tenant, GMS_BUF_NULL, lo, lo + len,
              KIND(GMS_VIOLATION_OVERFLOW) | KIND(GMS_VIOLATION_UNDERFLOW) |
                  KIND(GMS_VIOLATION_WRITE_AFTER_FREE) | KIND(GMS_VIOLATION_FREE_MEMORY));
    corrupt(r, pb - dist - len, len);
    unsigned path = (unsigned)rnd_below(r, 3);
    if (path == 1)
        may_report(verify_now(NULL), "gms_verify");
    int rc;
    if (path == 2) {
        may_report(gms_free(w->inj, n), "gms_free (the neighbour)");
        rc = may_report(gms_free(w->inj, b), "gms_free");
    } else {
        rc = may_report(gms_free(w->inj, b), "gms_free");
        may_report(gms_free(w->inj, n), "gms_free (the neighbour)");
    }
    fault_settle(w, C_UNDERFLOW, false, "size %zu, bytes [-%" PRIu64 ", -%" PRIu64 ") before the start, path %u, free %s",
                 s, dist + len, dist, path, gms_strerror(rc));
}

static void inject_waf(worker *w)
{
    rng *r = &w->r;
    unsigned path = (unsigned)rnd_below(r, 3);
    gms_context *c = w->inj;
    if (path == 2) { /* a pool of its own, whose last context closes */
        char user[16];
        snprintf(user, sizeof user, "w%u", w->id);
        c = open_ctx(tenants[w->injc_tenant].name, user, GMS_LEVEL_INTERNAL, GMS_LANG_C);
    }
    size_t s = inj_size(w);
    gms_buf b;
    uint8_t *p;
    if (!inj_alloc(c, s, &b, &p, NULL)) {
        if (path == 2)
            gms_context_close(c);
        return;
    }
    ok(gms_free(c, b), "gms_free");
    uint64_t off = rnd_below(r, s), len = rnd_in(r, 1, s - off < 64 ? s - off : 64);
    uint64_t lo = (uint64_t)(uintptr_t)p + off;
    fault_arm(w, path == 2 ? w->injc_tenant : w->inj_tenant, b, lo, lo + len,
              KIND(GMS_VIOLATION_WRITE_AFTER_FREE) | KIND(GMS_VIOLATION_FREE_MEMORY));
    bool faulted = guarded_corrupt(r, p + off, len);
    if (faulted || path == 0) {
        may_report(verify_now(NULL), "gms_verify"); /* what landed before a fault, too */
    } else if (path == 1) {
        for (uint64_t churned = 0; churned < 8 * MiB && !fault_reports(w);) {
            size_t cs = (size_t)rnd_in(r, 64 * KiB, 256 * KiB);
            gms_buf x;
            if (!ok(gms_alloc(c, cs, 0, &x), "gms_alloc (churn)"))
                break;
            may_report(gms_free(c, x), "gms_free (churn)");
            churned += cs;
        }
    }
    if (path == 2)
        gms_context_close(c);
    fault_settle(w, C_WAF, faulted, "size %zu, bytes [%" PRIu64 ", +%" PRIu64 "), path %u", s, off, len, path);
}

static void inject_immutable(worker *w)
{
    rng *r = &w->r;
    size_t s = (size_t)rnd_in(r, 1, HASH_MAX_SIZE);
    gms_buf b, rh = GMS_BUF_NULL;
    uint8_t *p;
    if (!inj_alloc(w->inj, s, &b, &p, NULL))
        return;
    ok(gms_fill(w->inj, b, 0, (uint8_t)rnd(r), s), "gms_fill");
    gms_share_grant g = {any_tenant, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = &g;
    d.ngrants = 1;
    d.immutable = 1;
    gms_share_id id;
    gms_buf_info i;
    unsigned j = (unsigned)rnd_below(r, NCTX);
    if (!ok(gms_share(w->inj, b, &d, &id), "gms_share (fault trial)") ||
        !ok(gms_acquire(w->ctx[j].c, id, GMS_ACCESS_READ, &rh), "gms_acquire (fault trial)") ||
        !ok(gms_buf_info_get(w->inj, b, &i), "gms_buf_info") || i.read_only_view) {
        /* A read-only view would make the write fault: not this class. */
        if (rh)
            ok(gms_release(w->ctx[j].c, rh), "gms_release");
        ok(gms_free(w->inj, b), "gms_free");
        w->skipped++;
        return;
    }
    uint64_t off = rnd_below(r, s), lo = (uint64_t)(uintptr_t)p;
    fault_arm(w, w->inj_tenant, GMS_BUF_NULL, lo, lo + s, KIND(GMS_VIOLATION_IMMUTABLE_WRITE));
    corrupt(r, p + off, 1);
    unsigned path = (unsigned)rnd_below(r, 3);
    if (path == 0)
        may_report(verify_now(NULL), "gms_verify");
    int rc;
    if (path == 2) { /* the owner first: the reader's release is the last */
        may_report(gms_free(w->inj, b), "gms_free");
        rc = may_report(gms_release(w->ctx[j].c, rh), "gms_release (the last)");
    } else {
        may_report(gms_release(w->ctx[j].c, rh), "gms_release");
        rc = may_report(gms_free(w->inj, b), "gms_free (the last)");
    }
    fault_settle(w, C_IMMUTABLE, false, "size %zu, byte %" PRIu64 ", path %u, last release %s", s, off, path,
                 gms_strerror(rc));
}

static void op_inject(worker *w)
{
    if (!on[F_INJECT])
        return;
    switch (rnd_below(&w->r, NCLASS)) {
    case C_OVERFLOW: inject_overflow(w); break;
    case C_UNDERFLOW: inject_underflow(w); break;
    case C_WAF: inject_waf(w); break;
    default: inject_immutable(w); break;
    }
}

static void op_backend(worker *w)
{
    if (on[F_BACKEND])
        backend_episode(&w->r, &w->ep);
}

/* ---- the worker's loop ----------------------------------------------------- */

static unsigned weight_total;

static void step(worker *w)
{
    unsigned x = (unsigned)rnd_below(&w->r, weight_total), op = 0;
    while (op < NOPS - 1 && x >= op_weight[op])
        x -= op_weight[op++];
    w->op_count[op]++;
    w->ops++;
    switch (op) {
    case OP_ALLOC: op_alloc(w); break;
    case OP_FREE: op_free(w); break;
    case OP_WRITE: op_write(w); break;
    case OP_READ: op_read(w); break;
    case OP_COPY: op_copy(w); break;
    case OP_SHARE: if (on[F_SHARE]) op_share(w); break;
    case OP_ACQUIRE: if (on[F_SHARE]) op_acquire(w); break;
    case OP_REVOKE: op_revoke(w); break;
    case OP_EXPORT: op_export(w); break;
    case OP_CONSUME: op_consume(w); break;
    case OP_FOREIGN: op_foreign(w); break;
    case OP_TRANSFER: op_transfer(w); break;
    case OP_ADOPT: op_adopt(w); break;
    case OP_QUOTA: op_quota(w); break;
    case OP_STATS: op_stats(w); break;
    case OP_VERIFY: op_verify(w); break;
    case OP_TRIM: op_trim(w); break;
    case OP_REOPEN: op_reopen(w); break;
    case OP_PROBE: op_probe(w); break;
    case OP_INJECT: op_inject(w); break;
    default: op_backend(w); break;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (;;) {
        for (unsigned i = 0; i < EPOCH_OPS; i++)
            step(w);
        pthread_barrier_wait(&barrier); /* the checkpoint runs */
        pthread_barrier_wait(&barrier);
        if (atomic_load(&stopping))
            break;
    }
    /* Drop everything, then close. */
    while (w->nholds) {
        hold *x = &w->holds[w->nholds - 1];
        ok(gms_release(ctx_of(w, x), x->h), "gms_release (the end)");
        drop(x->b);
        w->nholds--;
    }
    for (unsigned i = 0; i < NCTX; i++)
        close_ctx(w, i);
    gms_context_close(w->inj);
    return NULL;
}

/* ---- checkpoints ----------------------------------------------------------- */

static uint64_t checkpoints, verify_ok;

/* Everything idle: gms_verify passes, and every tenant's figures are the
 * soak's own. */
static void checkpoint(uint64_t contexts)
{
    checkpoints++;
    pthread_mutex_lock(&vlock);
    for (unsigned i = 0; i < opt.threads; i++)
        if (faults[i].active)
            soak_problem("contract", "thread %u's fault is still armed at a checkpoint", i);
    pthread_mutex_unlock(&vlock);
    gms_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = gms_verify(rt, &rep);
    if (rc == GMS_OK)
        verify_ok++;
    else
        soak_problem("verify", "gms_verify with every thread idle: %s: %s", gms_strerror(rc), rep.first_violation);
    gms_stats st;
    if (!ok(gms_stats_get(rt, &st), "gms_stats_get"))
        return;
    int64_t sum_bytes = 0, sum_blocks = 0;
    pthread_mutex_lock(&book);
    for (unsigned t = 0; t < ntenants; t++) {
        tenant_rec *te = &tenants[t];
        sum_bytes += te->live_bytes;
        sum_blocks += te->live_blocks;
        gms_tenant_stats ts;
        bool found = false;
        for (uint64_t k = 0; k < st.tenants && !found; k++)
            found = gms_tenant_stats_get(rt, k, &ts) == GMS_OK && strcmp(ts.tenant, te->name) == 0;
        if (!found) {
            if (te->live_blocks)
                soak_problem("leak", "tenant '%s' is not in gms_tenant_stats", te->name);
            continue;
        }
        if ((int64_t)ts.live_bytes != te->live_bytes || (int64_t)ts.live_blocks != te->live_blocks)
            soak_problem("leak", "tenant '%s': gms says %" PRIu64 " live bytes in %" PRIu64
                         " blocks, the soak counts %" PRId64 " in %" PRId64,
                         te->name, ts.live_bytes, ts.live_blocks, te->live_bytes, te->live_blocks);
        if (ts.max_bytes != te->max_bytes || ts.max_allocs != te->max_allocs)
            soak_problem("contract", "tenant '%s': quota %" PRIu64 " bytes / %" PRIu64 " allocations, set %" PRIu64
                         " / %" PRIu64,
                         te->name, ts.max_bytes, ts.max_allocs, te->max_bytes, te->max_allocs);
    }
    pthread_mutex_unlock(&book);
    if ((int64_t)st.live_bytes != sum_bytes || (int64_t)st.live_blocks != sum_blocks)
        soak_problem("leak", "gms_stats: %" PRIu64 " live bytes in %" PRIu64 " blocks, the soak counts %" PRId64
                     " in %" PRId64,
                     st.live_bytes, st.live_blocks, sum_bytes, sum_blocks);
    if (st.contexts != contexts)
        soak_problem("leak", "gms_stats: %" PRIu64 " contexts open, the soak has %" PRIu64, st.contexts, contexts);
}

/* ---- main ------------------------------------------------------------------ */

static void totals(uint64_t *ops, uint64_t *inj, uint64_t *det, uint64_t *miss)
{
    *ops = *inj = *det = *miss = 0;
    for (unsigned i = 0; i < opt.threads; i++) {
        *ops += workers[i].ops;
        for (unsigned c = 0; c < NCLASS; c++) {
            *inj += workers[i].injected[c];
            *det += workers[i].detected[c];
            *miss += workers[i].missed[c];
        }
    }
}

static uint64_t problems_total(void)
{
    uint64_t n = 0;
    for (unsigned k = 0; k < NKINDS; k++)
        n += atomic_load(&problem_count[k]);
    return n;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: gms-soak [--seconds N | --epochs N] [--threads N] [--seed N] [--tenants N]\n"
            "                [--max-size B] [--progress S] [--verify-ms MS] [--without FEATURE,...]\n"
            "                [--verbose]\n"
            "Random multi-tenant, multi-thread work on one host runtime for N seconds (default 60)\n"
            "or N epochs of %u operations per thread, with injected raw corruptions and backend\n"
            "failures; exits 1 if any fault was missed or any check failed. Features (all on): ",
            EPOCH_OPS);
    for (unsigned f = 0; f < NFEATURES; f++)
        fprintf(stderr, "%s%s", f ? ", " : "", feature_name[f]);
    fprintf(stderr, "\n");
    exit(2);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    *out = strtoull(s, &end, 0);
    return *s && !*end;
}

static void parse(int argc, char **argv)
{
    for (unsigned f = 0; f < NFEATURES; f++)
        on[f] = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n = 0;
        if (strcmp(a, "--verbose") == 0) {
            opt.verbose = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--seconds") == 0) {
            char *end;
            opt.seconds = strtod(v, &end);
            if (*end || opt.seconds < 0)
                usage();
        } else if (strcmp(a, "--progress") == 0) {
            char *end;
            opt.progress = strtod(v, &end);
            if (*end || opt.progress <= 0)
                usage();
        } else if (strcmp(a, "--threads") == 0 && parse_u64(v, &n) && n >= 1 && n <= MAX_THREADS) {
            opt.threads = (unsigned)n;
        } else if (strcmp(a, "--epochs") == 0 && parse_u64(v, &n) && n >= 1) {
            opt.epochs = n;
        } else if (strcmp(a, "--seed") == 0 && parse_u64(v, &n)) {
            opt.seed = n;
        } else if (strcmp(a, "--tenants") == 0 && parse_u64(v, &n) && n >= 1 && n <= MAX_SHARED_TENANTS) {
            opt.tenants = (unsigned)n;
        } else if (strcmp(a, "--max-size") == 0 && parse_u64(v, &n) && n >= 64 && n <= (1u << 30)) {
            opt.max_size = (size_t)n;
        } else if (strcmp(a, "--verify-ms") == 0 && parse_u64(v, &n) && n <= 600000) {
            opt.verify_ms = (uint32_t)n;
        } else if (strcmp(a, "--without") == 0) {
            char list[256];
            snprintf(list, sizeof list, "%s", v);
            for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                unsigned f = 0;
                while (f < NFEATURES && strcmp(feature_name[f], tok) != 0)
                    f++;
                if (f == NFEATURES) {
                    fprintf(stderr, "gms-soak: unknown feature '%s'\n", tok);
                    usage();
                }
                on[f] = false;
            }
        } else {
            usage();
        }
    }
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    for (unsigned k = 0; k < NOPS; k++)
        weight_total += op_weight[k];
    setvbuf(stdout, NULL, _IOLBF, 0);

    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.chunk_bytes = 256 * MiB;
    o.redzone_bytes = REDZONE;
    o.verify_interval_ms = opt.verify_ms;
    o.log = on_log;
    int rc = gms_runtime_open(&rt, &o);
    if (rc != GMS_OK) {
        fprintf(stderr, "gms-soak: gms_runtime_open: %s (%s)\n", gms_strerror(rc), gms_error_last());
        return 2;
    }
    if (gms_on_violation(rt, on_violation, NULL) != GMS_OK || gms_on_pressure(rt, on_pressure, NULL) != GMS_OK) {
        fprintf(stderr, "gms-soak: registering the callbacks: %s\n", gms_error_last());
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);

    nshared = opt.tenants;
    for (unsigned t = 0; t < nshared; t++) {
        tenant_add("t%u", t);
        hubs[t] = open_ctx(tenants[t].name, "hub", GMS_LEVEL_PUBLIC, GMS_LANG_OTHER);
    }
    for (unsigned i = 0; i < opt.threads; i++) {
        worker *w = &workers[i];
        w->id = i;
        w->r.s = opt.seed * 0x100000001b3ull + i;
        w->inj_tenant = tenant_add("inj%u", i);
        w->injc_tenant = tenant_add("injc%u", i);
        char user[16];
        snprintf(user, sizeof user, "w%u", i);
        w->inj = open_ctx(tenants[w->inj_tenant].name, user, GMS_LEVEL_INTERNAL, GMS_LANG_C);
        for (unsigned c = 0; c < NCTX; c++)
            ctx_reopen(w, c);
    }
    cb_tenant = tenant_add("callbacks", 0);
    cb_ctx = open_ctx(tenants[cb_tenant].name, "callback", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    uint64_t contexts = nshared + (uint64_t)opt.threads * (NCTX + 1) + 1;

    printf("gms-soak: %g s, %u threads, seed %" PRIu64 ", %u shared tenants, buffers up to %zu bytes", opt.seconds,
           opt.threads, opt.seed, nshared, opt.max_size);
    for (unsigned f = 0, first = 1; f < NFEATURES; f++)
        if (!on[f]) {
            printf("%s%s", first ? ", without " : ",", feature_name[f]);
            first = 0;
        }
    printf("\n");

    pthread_barrier_init(&barrier, NULL, opt.threads + 1);
    for (unsigned i = 0; i < opt.threads; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "gms-soak: cannot start thread %u\n", i);
            return 2;
        }
    double start = now_s(), last = start;
    for (;;) {
        pthread_barrier_wait(&barrier);
        checkpoint(contexts);
        double t = now_s();
        bool stop = opt.epochs ? checkpoints >= opt.epochs : t - start >= opt.seconds;
        if (t - last >= opt.progress || stop) {
            uint64_t ops, inj, det, miss;
            totals(&ops, &inj, &det, &miss);
            gms_stats st;
            gms_stats_get(rt, &st);
            printf("gms-soak: %6.0f s  %10" PRIu64 " ops  faults %" PRIu64 " injected, %" PRIu64 " detected, %" PRIu64
                   " missed  problems %" PRIu64 "  live %.1f MiB in %" PRIu64 " blocks\n",
                   t - start, ops, inj, det, miss, problems_total(), (double)st.live_bytes / (double)MiB,
                   st.live_blocks);
            last = t;
        }
        if (stop)
            atomic_store(&stopping, true);
        pthread_barrier_wait(&barrier);
        if (stop)
            break;
    }
    for (unsigned i = 0; i < opt.threads; i++)
        pthread_join(workers[i].thread, NULL);
    double elapsed = now_s() - start;

    /* What is left on the boards. */
    for (unsigned i = 0; i < BOARD; i++) {
        if (share_board[i].id) {
            pthread_mutex_lock(&book);
            unref_locked(share_board[i].b);
            pthread_mutex_unlock(&book);
        }
        if (tensor_board[i].t) {
            tensor_delete(tensor_board[i].t, tensor_board[i].legacy);
            tensor_end(tensor_board[i].te);
        }
        if (handoff_board[i].h) {
            ok(gms_free(hubs[handoff_board[i].hub], handoff_board[i].h), "gms_free (a hub's handle)");
            drop(handoff_board[i].b);
        }
    }
    checkpoint(nshared + 1);
    for (unsigned t = 0; t < ntenants; t++)
        if (tenants[t].live_blocks)
            soak_problem("leak", "tenant '%s' still has %" PRId64 " blocks at the end", tenants[t].name,
                         tenants[t].live_blocks);
    for (unsigned t = 0; t < nshared; t++)
        gms_context_close(hubs[t]);
    pthread_rwlock_wrlock(&cb_lock);
    gms_context_close(cb_ctx);
    cb_ctx = NULL;
    pthread_rwlock_unlock(&cb_lock);
    gms_stats st;
    if (ok(gms_stats_get(rt, &st), "gms_stats_get") && (st.contexts || st.live_blocks || st.live_bytes))
        soak_problem("leak", "at the end: %" PRIu64 " contexts, %" PRIu64 " live blocks, %" PRIu64 " live bytes",
                     st.contexts, st.live_blocks, st.live_bytes);
    if (atomic_load(&foreign_made) != atomic_load(&foreign_deleted))
        soak_problem("leak", "%" PRIu64 " foreign tensors imported, %" PRIu64 " deleted", atomic_load(&foreign_made),
                     atomic_load(&foreign_deleted));
    gms_runtime_close(rt);

    /* The figures. */
    uint64_t ops, inj, det, miss;
    totals(&ops, &inj, &det, &miss);
    uint64_t per_op[NOPS] = {0}, cls_inj[NCLASS] = {0}, cls_det[NCLASS] = {0}, cls_miss[NCLASS] = {0};
    uint64_t cls_rep[NCLASS] = {0}, by_fault = 0, skipped = 0, refusals = 0, vfound = 0;
    episode_tally ep = {0};
    for (unsigned i = 0; i < opt.threads; i++) {
        worker *w = &workers[i];
        for (unsigned k = 0; k < NOPS; k++)
            per_op[k] += w->op_count[k];
        for (unsigned c = 0; c < NCLASS; c++) {
            cls_inj[c] += w->injected[c];
            cls_det[c] += w->detected[c];
            cls_miss[c] += w->missed[c];
            cls_rep[c] += w->repeated[c];
        }
        by_fault += w->by_fault;
        skipped += w->skipped;
        refusals += w->quota_refusals;
        vfound += w->verify_found;
        ep.episodes += w->ep.episodes;
        ep.injected += w->ep.injected;
        ep.surfaced += w->ep.surfaced;
        ep.absorbed += w->ep.absorbed;
        ep.mishandled += w->ep.mishandled;
    }
    printf("\ngms-soak: %.1f s, %u threads, seed %" PRIu64 "\n", elapsed, opt.threads, opt.seed);
    printf("operations:      %" PRIu64 " (%.0f/s):", ops, (double)ops / elapsed);
    for (unsigned k = 0; k < NOPS; k++)
        printf(" %s %" PRIu64, op_name[k], per_op[k]);
    printf("\nfaults injected: %" PRIu64 ":", inj + ep.injected);
    for (unsigned c = 0; c < NCLASS; c++)
        printf(" %s %" PRIu64, class_name[c], cls_inj[c]);
    printf(", backend failures %" PRIu64 " (in %" PRIu64 " episodes)\n", ep.injected, ep.episodes);
    printf("faults detected: %" PRIu64 ":", det + ep.surfaced + ep.absorbed);
    for (unsigned c = 0; c < NCLASS; c++)
        printf(" %s %" PRIu64, class_name[c], cls_det[c]);
    printf(" (%" PRIu64 " by a fault), backend failures %" PRIu64 " returned cleanly, %" PRIu64 " absorbed\n",
           by_fault, ep.surfaced, ep.absorbed);
    printf("faults missed:   %" PRIu64 ":", miss + ep.mishandled);
    for (unsigned c = 0; c < NCLASS; c++)
        printf(" %s %" PRIu64, class_name[c], cls_miss[c]);
    printf(", backend failures mishandled %" PRIu64 "\n", ep.mishandled);
    printf("reported again:");
    for (unsigned c = 0; c < NCLASS; c++)
        printf(" %s %" PRIu64, class_name[c], cls_rep[c]);
    printf(" (within the trial), %" PRIu64 " after it\n", late_reports);
    printf("checks:          %" PRIu64 " checkpoints (gms_verify passed %" PRIu64 "), quota refusals %" PRIu64
           ", callbacks' calls into gms %" PRIu64 ", trials skipped %" PRIu64
           ", mid-run verifies that found a fault %" PRIu64 ", log lines %" PRIu64 " (leaks %" PRIu64
           "), pressure callbacks %" PRIu64 ", foreign tensors %" PRIu64 "\n",
           checkpoints, verify_ok, refusals, atomic_load(&reentries), skipped, vfound, atomic_load(&log_lines),
           atomic_load(&leak_lines), atomic_load(&pressure_calls), atomic_load(&foreign_made));
    printf("problems:        %" PRIu64 ":", problems_total());
    for (unsigned k = 0; k < NKINDS; k++)
        printf(" %s %" PRIu64, problem_kinds[k], atomic_load(&problem_count[k]));
    bool pass = problems_total() == 0 && miss == 0 && ep.mishandled == 0;
    printf("\nresult:          %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}
