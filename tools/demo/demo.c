/*
 * demo.c: gms-demo, the program `make demo` runs. It walks through what gms
 * does for a process shared by two tenants and three language runtimes:
 * buffers that round-trip their data, a quota that holds, and the refusals
 * (use after free, double free, out of bounds, another tenant's or another
 * language's buffer) that stand where a plain allocator would corrupt memory.
 *
 * Then one buffer is shared read-only across languages and tenants and
 * another changes owner.
 *
 * Every refusal shown is also checked: if gms lets one of those calls
 * through, or refuses it with another code, the demo says so and exits 1.
 */
#include "gms.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KiB (1024ull)
#define MiB (1024ull * KiB)

/* ---- output helpers ---------------------------------------------------- */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("gms-demo: FAILED: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Exits when a call that should succeed did not. */
static void check(int rc, const char *what)
{
    if (rc != GMS_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", gms_error_last());
        fail("%s: %s\n  %s", what, gms_strerror(rc), msg);
    }
}

/* A byte count for a person: "512 B", "64 KiB", "1.5 MiB". The result lives
 * in one of a few rotating buffers, enough for one printf call. */
static const char *human(uint64_t n)
{
    static char bufs[8][32];
    static unsigned next;
    char *b = bufs[next++ % 8];
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    unsigned u = 0;
    uint64_t scale = 1;
    while (u + 1 < sizeof units / sizeof units[0] && n >= scale * 1024) {
        scale *= 1024;
        u++;
    }
    if (n % scale == 0)
        snprintf(b, 32, "%llu %s", (unsigned long long)(n / scale), units[u]);
    else
        snprintf(b, 32, "%.1f %s", (double)n / (double)scale, units[u]);
    return b;
}

static const char *limit(uint64_t n, int bytes)
{
    static char bufs[4][32];
    static unsigned next;
    char *b = bufs[next++ % 4];
    if (n == GMS_UNLIMITED)
        return "none";
    if (bytes)
        return human(n);
    snprintf(b, 32, "%llu", (unsigned long long)n);
    return b;
}

static void section(const char *title)
{
    printf("\n%s\n", title);
}

/* Checks that a call was refused with the code expected and shows the
 * refusal: the code's name and the message of gms_error_last(). */
static void expect_refusal(int rc, int want, const char *label, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", gms_error_last()); /* before any other call */
    if (rc == GMS_OK)
        fail("%s (%s) was allowed; gms should have refused it with %s", label, what,
             gms_strerror(want));
    if (rc != want)
        fail("%s (%s) was refused with %s, expected %s\n  %s", label, what, gms_strerror(rc),
             gms_strerror(want), msg);
    printf("  %-15s %s\n", label, what);
    printf("  %-15s -> %s\n", "", gms_strerror(rc));
    printf("  %-15s    %s\n", "", msg);
}

/* ---- the cast ---------------------------------------------------------- */

typedef struct actor {
    const char *tenant;
    const char *user;
    gms_level level;
    gms_language language;
    size_t size; /* the buffer it allocates */
    gms_context *ctx;
    gms_buf buf;
    char name[40]; /* "acme/c" */
} actor;

/* Fills a host buffer with bytes that depend on a seed and the offset. */
static void pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 131u + seed * 17u + (i >> 8)) & 0xff);
}

/* A tenant's figures by name. */
static gms_tenant_stats tenant_stats(gms_runtime *rt, const char *name)
{
    gms_stats s;
    gms_tenant_stats t;
    check(gms_stats(rt, &s), "gms_stats");
    for (uint64_t i = 0; i < s.tenants; i++) {
        check(gms_tenant_stats_get(rt, i, &t), "gms_tenant_stats_get");
        if (strcmp(t.tenant, name) == 0)
            return t;
    }
    fail("gms_tenant_stats_get: no tenant '%s'", name);
}

/* Allocates a zeroed buffer, checks it reads back as zeros, writes a
 * pattern, reads it back and compares. */
static void round_trip(actor *a, unsigned seed)
{
    unsigned char *out = malloc(a->size), *in = malloc(a->size);
    if (!out || !in)
        fail("out of host memory");
    check(gms_alloc(a->ctx, a->size, GMS_ALLOC_ZERO, &a->buf), "gms_alloc");
    check(gms_read(a->ctx, a->buf, 0, in, a->size), "gms_read");
    for (size_t i = 0; i < a->size; i++)
        if (in[i] != 0)
            fail("%s: byte %zu of a zeroed buffer reads 0x%02x", a->name, i, in[i]);
    pattern(out, a->size, seed);
    check(gms_write(a->ctx, a->buf, 0, out, a->size), "gms_write");
    memset(in, 0, a->size);
    check(gms_read(a->ctx, a->buf, 0, in, a->size), "gms_read");
    if (memcmp(in, out, a->size) != 0)
        fail("%s: the data read back differs from the data written", a->name);
    gms_buf_info info;
    check(gms_buf_info(a->ctx, a->buf, &info), "gms_buf_info");
    if (info.size != a->size || strcmp(info.tenant, a->tenant) != 0 ||
        info.language != a->language || info.level != a->level)
        fail("%s: gms_buf_info does not describe the buffer allocated", a->name);
    printf("  %-15s %-9s 0x%016llx  zeroed, written, read back: ok\n", a->name,
           human(a->size), (unsigned long long)a->buf);
    free(out);
    free(in);
}

/* Corruption reports reach the callbacks registered with gms_on_violation. */
static unsigned violations_seen;
static gms_violation_kind last_kind;

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    violations_seen++;
    last_kind = v->kind;
    printf("  %-15s %s\n", "report", v->message);
}

/* Raw-pointer bugs, which no bounds check sees: caught by the redzones and
 * the quarantine. Host memory only: on a GPU backend the raw pointer is a
 * device address the CPU cannot write. */
static void corruption(gms_runtime *rt, actor *a)
{
    section("Corruption caught (raw-pointer writes no bounds check can see)");
    if (strcmp(gms_runtime_backend_name(rt), "host") != 0) {
        printf("  %-15s skipped: raw device pointers are not host-writable on %s\n", "note",
               gms_runtime_backend_name(rt));
        return;
    }
    check(gms_on_violation(rt, on_violation, NULL), "gms_on_violation");
    gms_buf b;
    void *raw;
    check(gms_alloc(a->ctx, 1000, 0, &b), "gms_alloc");
    check(gms_buf_ptr(a->ctx, b, &raw), "gms_buf_ptr");
    memset((char *)raw + 1000, 0x41, 4); /* 4 bytes past the end */
    printf("  %-15s %s writes 4 bytes past the end of a 1000-byte buffer, then frees it\n",
           "overflow", a->name);
    expect_refusal(gms_free(a->ctx, b), GMS_E_CORRUPTION, "caught at free", "gms_free");
    if (violations_seen != 1 || last_kind != GMS_VIOLATION_OVERFLOW)
        fail("the overflow did not reach the violation callback");

    check(gms_alloc(a->ctx, 512, 0, &b), "gms_alloc");
    check(gms_buf_ptr(a->ctx, b, &raw), "gms_buf_ptr");
    check(gms_free(a->ctx, b), "gms_free");
    ((char *)raw)[100] = 0x42; /* the block waits in quarantine, poisoned */
    printf("  %-15s %s frees a 512-byte buffer, then writes one byte into it\n",
           "after free", a->name);
    expect_refusal(gms_verify(rt, NULL), GMS_E_CORRUPTION, "caught by verify", "gms_verify");
    if (violations_seen != 2 || last_kind != GMS_VIOLATION_WRITE_AFTER_FREE)
        fail("the write after free did not reach the violation callback");
}

/* Writes one byte through p in a child process; the signal that ended the
 * child, 0 if the write went through. */
static int write_in_child(volatile unsigned char *p)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail("fork: cannot start the child that writes");
    if (pid == 0) {
        *p = (unsigned char)(*p ^ 0xff);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* A buffer made by acme/c is shared immutable with acme/rust and with
 * globex/python; then acme/rust hands another buffer to acme/c. */
static void sharing(gms_runtime *rt, actor *c, actor *rust, actor *py)
{
    section("Sharing (one buffer, three languages, two tenants)");
    const size_t size = 1 * MiB;
    gms_buf model, r, p, x;
    /* GMS_ALLOC_PAGES: whole pages, so the share can be a read-only mapping. */
    check(gms_alloc(c->ctx, size, GMS_ALLOC_PAGES, &model), "gms_alloc");
    unsigned char *data = malloc(size), *back = malloc(size);
    if (!data || !back)
        fail("out of host memory");
    pattern(data, size, 42);
    check(gms_write(c->ctx, model, 0, data, size), "gms_write");
    gms_share_grant grants[2] = {{"acme", NULL, GMS_LANG_RUST, GMS_ACCESS_READ},
                                 {"globex", "research", GMS_LANG_PYTHON, GMS_ACCESS_READ}};
    gms_share_desc desc = GMS_SHARE_DESC_INIT;
    desc.grants = grants;
    desc.ngrants = 2;
    desc.immutable = 1;
    gms_share_id id;
    check(gms_share(c->ctx, model, &desc, &id), "gms_share");
    printf("  %-15s %s shares %s as 0x%016llx: immutable, read by acme/rust and globex/python\n",
           "share", c->name, human(size), (unsigned long long)id);
    check(gms_acquire(rust->ctx, id, GMS_ACCESS_READ, &r), "gms_acquire");
    check(gms_acquire(py->ctx, id, GMS_ACCESS_READ, &p), "gms_acquire");
    check(gms_read(rust->ctx, r, 0, back, size), "gms_read");
    if (memcmp(back, data, size) != 0)
        fail("acme/rust reads other bytes than acme/c wrote");
    gms_buf_info info;
    check(gms_buf_info(py->ctx, p, &info), "gms_buf_info");
    printf("  %-15s acme/rust 0x%016llx, globex/python 0x%016llx: %u holders, own handles\n",
           "acquire", (unsigned long long)r, (unsigned long long)p, info.holders);
    printf("  %-15s acme/rust reads all %s: the bytes acme/c wrote\n", "read", human(size));
    expect_refusal(gms_write(py->ctx, p, 0, "x", 1), GMS_E_READ_ONLY, "checked write",
                   "globex/python writes one byte with gms_write");
    expect_refusal(gms_acquire(py->ctx, id, GMS_ACCESS_READ_WRITE, &x), GMS_E_READ_ONLY,
                   "write access", "globex/python acquires the share read-write");
    expect_refusal(gms_acquire(c->ctx, id + 1, GMS_ACCESS_READ, &x), GMS_E_INVALID_HANDLE,
                   "guessed id", "acme/c acquires share id + 1");
    unsigned char *raw;
    check(gms_buf_ptr(py->ctx, p, (void **)&raw), "gms_buf_ptr");
    if (info.read_only_view && strcmp(gms_runtime_backend_name(rt), "host") == 0) {
        int sig = write_in_child(raw + 4096);
        if (sig != SIGSEGV && sig != SIGBUS)
            fail("a write through the read-only mapping did not fault (child ended with %d)", sig);
        printf("  %-15s globex/python writes through its raw pointer, in a child process\n",
               "raw write");
        printf("  %-15s -> the child dies of %s: the pointer is a read-only mapping\n", "",
               sig == SIGSEGV ? "SIGSEGV" : "SIGBUS");
    } else {
        printf("  %-15s the raw pointer is a read-only device mapping: a kernel writing it faults "
               "(tests/gpu)\n", "raw write");
    }
    check(gms_release(c->ctx, model), "gms_release");
    check(gms_release(rust->ctx, r), "gms_release");
    gms_stats s;
    check(gms_stats(rt, &s), "gms_stats");
    uint64_t live = s.live_blocks;
    check(gms_release(py->ctx, p), "gms_release");
    check(gms_stats(rt, &s), "gms_stats");
    if (s.live_blocks != live - 1 || s.shares != 0)
        fail("the last release did not free the shared buffer");
    printf("  %-15s acme/c, acme/rust, then globex/python: the last release (another tenant's)\n"
           "  %-15s frees it, wiped, back on acme's quota\n", "release", "");

    section("Transfer (ownership moves; the old handle dies)");
    gms_buf result, mine;
    check(gms_alloc(rust->ctx, 64 * KiB, 0, &result), "gms_alloc");
    check(gms_write(rust->ctx, result, 0, "logits", 6), "gms_write");
    void *before, *after;
    check(gms_buf_ptr(rust->ctx, result, &before), "gms_buf_ptr");
    check(gms_transfer(rust->ctx, result, c->ctx, &mine), "gms_transfer");
    check(gms_buf_ptr(c->ctx, mine, &after), "gms_buf_ptr");
    char word[6];
    check(gms_read(c->ctx, mine, 0, word, sizeof word), "gms_read");
    if (memcmp(word, "logits", 6) != 0 || before != after)
        fail("the transferred buffer moved or changed");
    printf("  %-15s acme/rust hands 0x%016llx (%s) to acme/c as 0x%016llx: same memory, no copy\n",
           "transfer", (unsigned long long)result, human(64 * KiB), (unsigned long long)mine);
    expect_refusal(gms_read(rust->ctx, result, 0, word, sizeof word), GMS_E_INVALID_HANDLE,
                   "old handle", "acme/rust reads through the handle it gave away");
    check(gms_free(c->ctx, mine), "gms_free");
    printf("  %-15s acme/c frees it\n", "free");
    free(data);
    free(back);
}

int main(void)
{
    gms_runtime *rt;
    check(gms_runtime_open(&rt, NULL), "gms_runtime_open");

    printf("gms demo: two tenants, three language runtimes, one %s backend\n",
           gms_runtime_backend_name(rt));

    section("Runtime");
    printf("  %-15s %d.%d.%d\n", "gms version", GMS_VERSION_MAJOR, GMS_VERSION_MINOR,
           GMS_VERSION_PATCH);
    printf("  %-15s %s\n", "backend", gms_runtime_backend_name(rt));

    actor cast[] = {
        {"acme", "ingest", GMS_LEVEL_INTERNAL, GMS_LANG_C, 64 * KiB, NULL, 0, ""},
        {"acme", "inference", GMS_LEVEL_CONFIDENTIAL, GMS_LANG_RUST, 1 * MiB, NULL, 0, ""},
        {"globex", "research", GMS_LEVEL_PUBLIC, GMS_LANG_PYTHON, 256 * KiB, NULL, 0, ""},
    };
    enum { N = sizeof cast / sizeof cast[0] };
    actor *acme_c = &cast[0], *acme_rust = &cast[1], *globex_py = &cast[2];

    section("Contexts (who is acting; each gets the pool of its tenant, level, language)");
    printf("  %-15s %-8s %-10s %-9s %s\n", "context", "tenant", "user", "language", "level");
    for (int i = 0; i < N; i++) {
        actor *a = &cast[i];
        gms_context_desc d = GMS_CONTEXT_DESC_INIT;
        d.tenant = a->tenant;
        d.user = a->user;
        d.level = a->level;
        d.language = a->language;
        check(gms_context_open(&a->ctx, rt, &d), "gms_context_open");
        snprintf(a->name, sizeof a->name, "%s/%s", a->tenant, gms_language_name(a->language));
        printf("  %-15s %-8s %-10s %-9s %s\n", a->name, a->tenant, a->user,
               gms_language_name(a->language), gms_level_name(a->level));
    }

    section("Buffers");
    printf("  %-15s %-9s %s\n", "context", "size", "handle");
    for (int i = 0; i < N; i++)
        round_trip(&cast[i], (unsigned)i + 1);

    /* A quota on globex: 1 MiB live, 8 buffers. It already holds 256 KiB. */
    section("Quota");
    const uint64_t quota = 1 * MiB;
    check(gms_tenant_set_quota(rt, "globex", quota, 8), "gms_tenant_set_quota");
    printf("  %-15s %s and %d buffers for tenant globex\n", "limit", human(quota), 8);
    gms_buf extra = GMS_BUF_NULL, refused = GMS_BUF_NULL;
    check(gms_alloc(globex_py->ctx, 512 * KiB, 0, &extra), "gms_alloc within the quota");
    gms_tenant_stats ts = tenant_stats(rt, "globex");
    printf("  %-15s %s more as %s: ok (%s live of %s, redzones included)\n", "allocate",
           human(512 * KiB), globex_py->name, human(ts.live_bytes), human(ts.max_bytes));
    char what[128];
    snprintf(what, sizeof what, "%s more as %s", human(512 * KiB), globex_py->name);
    expect_refusal(gms_alloc(globex_py->ctx, 512 * KiB, 0, &refused), GMS_E_QUOTA, "allocate",
                   what);
    if (refused != GMS_BUF_NULL)
        fail("a refused gms_alloc returned a handle");

    section("Refusals (each would be silent corruption with a plain allocator)");
    unsigned char bytes[16] = {0};
    gms_buf gone;
    check(gms_alloc(acme_c->ctx, 4 * KiB, 0, &gone), "gms_alloc");
    check(gms_free(acme_c->ctx, gone), "gms_free");
    expect_refusal(gms_read(acme_c->ctx, gone, 0, bytes, sizeof bytes), GMS_E_INVALID_HANDLE,
                   "use after free", "acme/c reads a buffer it has freed");
    expect_refusal(gms_free(acme_c->ctx, gone), GMS_E_INVALID_HANDLE, "double free",
                   "acme/c frees the same buffer again");
    snprintf(what, sizeof what, "acme/c writes %zu bytes at offset %llu of its %s buffer",
             sizeof bytes, (unsigned long long)(acme_c->size - 8), human(acme_c->size));
    expect_refusal(gms_write(acme_c->ctx, acme_c->buf, acme_c->size - 8, bytes, sizeof bytes),
                   GMS_E_OUT_OF_BOUNDS, "out of bounds", what);
    expect_refusal(gms_read(globex_py->ctx, acme_c->buf, 0, bytes, sizeof bytes),
                   GMS_E_ACCESS_DENIED, "cross-tenant", "globex/python reads acme/c's buffer");
    expect_refusal(gms_read(acme_rust->ctx, acme_c->buf, 0, bytes, sizeof bytes),
                   GMS_E_ACCESS_DENIED, "cross-language",
                   "acme/rust reads acme/c's buffer (no share was made)");

    corruption(rt, acme_c);
    sharing(rt, acme_c, acme_rust, globex_py);

    /* The runtime's figures, while the buffers are live. */
    section("Statistics");
    gms_stats s;
    check(gms_stats(rt, &s), "gms_stats");
    printf("  %-15s %s in %llu buffers (peak %s)\n", "live", human(s.live_bytes),
           (unsigned long long)s.live_blocks, human(s.peak_live_bytes));
    printf("  %-15s %s (peak %s); %.1f%% of it not live\n", "held", human(s.held_bytes),
           human(s.peak_held_bytes), 100.0 * s.fragmentation);
    printf("  %-15s %s of address space (reserving costs no memory)\n", "reserved",
           human(s.reserved_bytes));
    printf("  %-15s %llu\n", "allocations", (unsigned long long)s.allocs);
    printf("  %-15s %llu\n", "frees", (unsigned long long)s.frees);
    printf("  %-15s %llu\n", "quota refusals", (unsigned long long)s.quota_refusals);
    printf("  %-15s %llu\n", "leaked buffers", (unsigned long long)s.leaked_blocks);
    printf("  %-15s %llu pools, %llu contexts, %llu tenants\n", "objects",
           (unsigned long long)s.pools, (unsigned long long)s.contexts,
           (unsigned long long)s.tenants);
    if (s.quota_refusals < 1)
        fail("the statistics count no quota refusal");

    printf("\n  %-8s %10s %8s %10s %10s %10s %12s %9s\n", "tenant", "live", "buffers", "peak",
           "held", "quota", "max buffers", "refusals");
    for (uint64_t i = 0; i < s.tenants; i++) {
        gms_tenant_stats t;
        check(gms_tenant_stats_get(rt, i, &t), "gms_tenant_stats_get");
        printf("  %-8s %10s %8llu %10s %10s %10s %12s %9llu\n", t.tenant, human(t.live_bytes),
               (unsigned long long)t.live_blocks, human(t.peak_live_bytes), human(t.held_bytes),
               limit(t.max_bytes, 1), limit(t.max_allocs, 0),
               (unsigned long long)t.quota_refusals);
    }

    section("Verify (gms_verify walks all state and checks the invariants)");
    gms_report r;
    int vrc = gms_verify(rt, &r);
    printf("  %-15s %llu pools, %llu chunks\n", "walked", (unsigned long long)r.pools,
           (unsigned long long)r.chunks);
    printf("  %-15s %llu live, %llu free; %llu live handles\n", "blocks",
           (unsigned long long)r.live_blocks, (unsigned long long)r.free_blocks,
           (unsigned long long)r.live_handles);
    if (vrc != GMS_OK || r.violations != 0)
        fail("gms_verify found %llu violations: %s", (unsigned long long)r.violations,
             r.first_violation);
    printf("  %-15s none: every invariant holds\n", "violations");

    /* Everything goes back; nothing is left for the leak report. */
    section("Cleanup");
    unsigned freed = 0;
    check(gms_free(globex_py->ctx, extra), "gms_free");
    freed++;
    for (int i = 0; i < N; i++) {
        check(gms_free(cast[i].ctx, cast[i].buf), "gms_free");
        freed++;
    }
    check(gms_stats(rt, &s), "gms_stats");
    if (s.live_bytes != 0 || s.live_blocks != 0)
        fail("after every free, %llu buffers (%s) are still live",
             (unsigned long long)s.live_blocks, human(s.live_bytes));
    check(gms_verify(rt, NULL), "gms_verify after the frees");
    for (int i = 0; i < N; i++)
        gms_context_close(cast[i].ctx);
    gms_runtime_close(rt);
    printf("  %-15s %u buffers freed, %d contexts and the runtime closed, no leaks\n", "done",
           freed, (int)N);

    printf("\ngms demo: every refusal happened as expected\n");
    return 0;
}
