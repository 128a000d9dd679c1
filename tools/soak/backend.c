/*
 * backend.c: gms-soak's backend-failure episodes. Each opens a private
 * runtime whose Nth fallible internal operation (a backend call or a
 * metadata allocation: gms_testing_options.fail_nth_call (gms/testing.h), as in
 * tests/core/failing_backend.c) fails, with N drawn at random over the
 * calls a run makes, and runs a short random scenario on it: contexts of
 * two tenants, allocations (some past a chunk), checked writes and reads,
 * copy, fill, a share acquired by the other tenant, a transfer between
 * tenants, a DLPack export imported by another context, frees, closes.
 *
 * Any step may fail, but only cleanly: GMS_E_NO_MEMORY or GMS_E_BACKEND
 * with a message, nothing changed (a failed transfer, export or share
 * leaves the buffer as it was), gms_verify passing afterwards, no
 * violation reported (none was injected), and nothing live once every
 * context is closed. Anything else is a mishandled fault.
 */
#include "soak.h"
#include "gms/testing.h"

/* The failpoint's call counter: whether the run reached its Nth call. */
#include "core/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define NB 8

typedef struct episode {
    gms_runtime *rt;
    rng *r;
    uint64_t n;
    int failed; /* steps that failed cleanly */
    int bad;    /* steps that did something else wrong */
    _Atomic int reports; /* violations reported: none is injected */
} episode;

static void episode_violation(void *user, const gms_violation *v)
{
    episode *e = user;
    atomic_fetch_add(&e->reports, 1);
    soak_problem("backend", "a violation reported with no corruption injected: %s", v->message);
}

static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    (void)msg;
}

static void mishandled(episode *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mishandled(episode *e, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    e->bad++;
    soak_problem("backend", "fail_nth_call %llu: %s", (unsigned long long)e->n, what);
}

/* gms_verify must pass; it may meet the failure itself (it reads memory),
 * and must then say so with a clean code and pass when run again. */
static void verify_clean(episode *e, const char *after)
{
    if (!e->rt)
        return;
    gms_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = gms_verify(e->rt, &rep);
    if (rc == GMS_E_BACKEND || rc == GMS_E_NO_MEMORY) {
        e->failed++;
        rc = gms_verify(e->rt, &rep);
    }
    if (rc != GMS_OK)
        mishandled(e, "gms_verify after %s: %s: %s", after, gms_strerror(rc), rep.first_violation);
}

/* 0 if the step succeeded, 1 if it failed (cleanly or not). */
static int step(episode *e, int rc, const char *what)
{
    if (rc == GMS_OK)
        return 0;
    if (rc != GMS_E_NO_MEMORY && rc != GMS_E_BACKEND)
        mishandled(e, "%s returned %s: %s", what, gms_strerror(rc), gms_error_last());
    else if (!gms_error_last()[0])
        mishandled(e, "%s returned %s with no message", what, gms_strerror(rc));
    else
        e->failed++;
    verify_clean(e, what);
    return 1;
}

typedef struct ebuf {
    gms_context *ctx;
    gms_buf h;
    size_t size;
    uint8_t tag; /* its bytes, once written */
    bool known;
} ebuf;

static gms_context *open_ctx(episode *e, const char *tenant, gms_level level, gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = "episode";
    d.level = level;
    d.language = lang;
    gms_context *c = (gms_context *)(uintptr_t)1;
    if (step(e, gms_context_open(&c, e->rt, &d), "gms_context_open")) {
        if (c)
            mishandled(e, "a failed gms_context_open left its output set");
        return NULL;
    }
    return c;
}

static void alloc_one(episode *e, ebuf *b, gms_context *c)
{
    memset(b, 0, sizeof *b);
    if (!c)
        return;
    b->ctx = c;
    b->size = rnd_below(e->r, 4) == 0 ? (size_t)rnd_in(e->r, MiB, 3 * MiB) : rnd_size(e->r, 256 * KiB);
    gms_buf h = 77;
    int rc = rnd_below(e->r, 2) ? gms_alloc(c, b->size, rnd_below(e->r, 4) ? 0 : GMS_ALLOC_ZERO, &h)
                                : gms_alloc_async(c, b->size, 0, NULL, &h);
    if (step(e, rc, "gms_alloc")) {
        if (h != GMS_BUF_NULL)
            mishandled(e, "a failed gms_alloc left its handle set");
        return;
    }
    b->h = h;
}

/* Fills the buffer with its tag, then reads some of it back. */
static void round_trip(episode *e, ebuf *b)
{
    if (!b->h)
        return;
    uint8_t tag = (uint8_t)rnd(e->r);
    if (step(e, gms_fill(b->ctx, b->h, 0, tag, b->size), "gms_fill")) {
        b->known = false; /* a failed fill may have written part */
        return;
    }
    b->tag = tag;
    b->known = true;
    uint8_t in[256];
    size_t n = b->size < sizeof in ? b->size : sizeof in;
    uint64_t off = rnd_below(e->r, b->size - n + 1);
    if (step(e, gms_read(b->ctx, b->h, off, in, n), "gms_read"))
        return;
    for (size_t i = 0; i < n; i++)
        if (in[i] != tag) {
            mishandled(e, "read back byte %llu of a %zu-byte buffer: 0x%02x, want 0x%02x",
                       (unsigned long long)(off + i), b->size, in[i], tag);
            return;
        }
}

static void free_one(episode *e, ebuf *b)
{
    if (!b->h)
        return;
    int rc = rnd_below(e->r, 2) ? gms_free(b->ctx, b->h) : gms_free_async(b->ctx, b->h, NULL);
    if (step(e, rc, "gms_free")) {
        /* Either the buffer survived the failed free or it is gone: a
         * second free settles which. */
        rc = gms_free(b->ctx, b->h);
        if (rc != GMS_OK && rc != GMS_E_INVALID_HANDLE)
            mishandled(e, "a second gms_free after a failed one returned %s", gms_strerror(rc));
    } else if ((rc = gms_free(b->ctx, b->h)) != GMS_E_INVALID_HANDLE) {
        mishandled(e, "a double free returned %s", gms_strerror(rc));
    }
    b->h = GMS_BUF_NULL;
}

/* The holders and share of a buffer, to see that a failed call changed
 * nothing. */
static bool holders_of(ebuf *b, uint32_t *holders, uint64_t *share)
{
    gms_buf_info i;
    if (gms_buf_info_get(b->ctx, b->h, &i) != GMS_OK)
        return false;
    *holders = i.holders;
    *share = i.share_id;
    return true;
}

static void share_one(episode *e, ebuf *b, gms_context *reader)
{
    if (!b->h || !reader)
        return;
    gms_share_grant g = {"*", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = &g;
    d.ngrants = 1;
    d.immutable = (int)rnd_below(e->r, 2);
    gms_share_id id = 5;
    if (step(e, gms_share(b->ctx, b->h, &d, &id), "gms_share")) {
        uint32_t holders;
        uint64_t share;
        if (holders_of(b, &holders, &share) && share != 0)
            mishandled(e, "a failed gms_share left the buffer shared");
        return;
    }
    gms_buf rh = 9;
    if (step(e, gms_acquire(reader, id, GMS_ACCESS_READ, &rh), "gms_acquire")) {
        if (rh != GMS_BUF_NULL)
            mishandled(e, "a failed gms_acquire left its handle set");
        return;
    }
    uint8_t x[64];
    size_t n = b->size < sizeof x ? b->size : sizeof x;
    if (!step(e, gms_read(reader, rh, 0, x, n), "gms_read (reader)") && b->known)
        for (size_t i = 0; i < n; i++)
            if (x[i] != b->tag) {
                mishandled(e, "the reader of a share read 0x%02x, want 0x%02x", x[i], b->tag);
                break;
            }
    int rc = gms_release(reader, rh);
    if (step(e, rc, "gms_release")) {
        rc = gms_release(reader, rh);
        if (rc != GMS_OK && rc != GMS_E_INVALID_HANDLE)
            mishandled(e, "a second gms_release returned %s", gms_strerror(rc));
    }
}

/* A transfer to another tenant: a copy. On failure the buffer must still
 * be the sender's, unchanged. */
static void transfer_one(episode *e, ebuf *b, gms_context *to)
{
    if (!b->h || !to)
        return;
    gms_buf nh = 3;
    int rc = rnd_below(e->r, 2) ? gms_transfer(b->ctx, b->h, to, &nh)
                                : gms_transfer_async(b->ctx, b->h, to, NULL, &nh);
    if (step(e, rc, "gms_transfer")) {
        if (nh != GMS_BUF_NULL)
            mishandled(e, "a failed gms_transfer left its handle set");
        uint8_t x;
        int r2 = gms_read(b->ctx, b->h, 0, &x, 1);
        if (r2 != GMS_OK && r2 != GMS_E_BACKEND)
            mishandled(e, "after a failed gms_transfer the sender's handle gives %s: the buffer is lost",
                       gms_strerror(r2));
        if (r2 == GMS_OK && b->known && x != b->tag)
            mishandled(e, "a failed gms_transfer changed the buffer");
        return;
    }
    b->ctx = to;
    b->h = nh;
    if (b->known) {
        uint8_t x;
        if (!step(e, gms_read(to, nh, b->size - 1, &x, 1), "gms_read (transferred)") && x != b->tag)
            mishandled(e, "a transferred buffer reads 0x%02x, want 0x%02x", x, b->tag);
    }
}

/* A DLPack export imported by another context, read, then freed (which
 * runs the tensor's deleter). */
static void dlpack_one(episode *e, ebuf *b, gms_context *importer)
{
    if (!b->h || !importer)
        return;
    uint32_t h0 = 0, h1 = 0;
    uint64_t s0 = 0, s1 = 0;
    bool before = holders_of(b, &h0, &s0);
    DLManagedTensorVersioned *t = (DLManagedTensorVersioned *)(uintptr_t)1;
    if (step(e, gms_dlpack_export(b->ctx, b->h, NULL, &t), "gms_dlpack_export")) {
        if (t)
            mishandled(e, "a failed gms_dlpack_export left its output set");
        if (before && holders_of(b, &h1, &s1) && h1 != h0)
            mishandled(e, "a failed gms_dlpack_export changed the holders from %u to %u", h0, h1);
        return;
    }
    gms_buf ih = 4;
    if (step(e, gms_dlpack_import(importer, t, &ih), "gms_dlpack_import")) {
        if (ih != GMS_BUF_NULL)
            mishandled(e, "a failed gms_dlpack_import left its handle set");
        t->deleter(t); /* still ours */
        return;
    }
    uint8_t x;
    if (!step(e, gms_read(importer, ih, 0, &x, 1), "gms_read (import)") && b->known && x != b->tag)
        mishandled(e, "an imported tensor reads 0x%02x, want 0x%02x", x, b->tag);
    int rc = gms_free(importer, ih);
    if (step(e, rc, "gms_free (import)")) {
        rc = gms_free(importer, ih);
        if (rc != GMS_OK && rc != GMS_E_INVALID_HANDLE)
            mishandled(e, "a second free of an import returned %s", gms_strerror(rc));
    }
}

void backend_episode(rng *r, episode_tally *t)
{
    if (t->max_calls < 100)
        t->max_calls = 100;
    episode e = {NULL, r, 1 + rnd_below(r, t->max_calls + t->max_calls / 8), 0, 0, 0};
    t->episodes++;

    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 * KiB;
    o.chunk_bytes = 1 * MiB;
    o.retain_bytes = 64 * KiB;
    o.quarantine_bytes = 64 * KiB;
    o.quarantine_blocks = 4;
    o.log = quiet_log;
    gms_runtime *rt = (gms_runtime *)(uintptr_t)1;
    gms_testing_options fail = {.fail_nth_call = e.n};
    int rc = gms_testing_runtime_open(&rt, &o, &fail);
    if (step(&e, rc, "gms_runtime_open")) {
        if (rt)
            mishandled(&e, "a failed gms_runtime_open left its output set");
        t->injected++;
        t->surfaced += e.bad == 0;
        t->mishandled += e.bad != 0;
        return;
    }
    e.rt = rt;
    if (gms_on_violation(rt, episode_violation, &e) != GMS_OK)
        mishandled(&e, "gms_on_violation failed");

    step(&e, gms_tenant_set_quota(rt, "ep-a", 64 * MiB, 1000), "gms_tenant_set_quota");
    gms_context *a = open_ctx(&e, "ep-a", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_context *b = open_ctx(&e, "ep-b", rnd_below(r, 2) ? GMS_LEVEL_SECRET : GMS_LEVEL_PUBLIC,
                              GMS_LANG_RUST);
    gms_context *a2 = open_ctx(&e, "ep-a", GMS_LEVEL_INTERNAL, GMS_LANG_PYTHON);

    ebuf bufs[NB];
    gms_context *owners[3] = {a, b, a2};
    for (int i = 0; i < NB; i++)
        alloc_one(&e, &bufs[i], owners[rnd_below(r, 3)]);
    for (int i = 0; i < NB; i++)
        round_trip(&e, &bufs[i]);
    if (bufs[0].h && bufs[1].h && bufs[0].ctx == bufs[1].ctx) {
        size_t n = bufs[0].size < bufs[1].size ? bufs[0].size : bufs[1].size;
        if (step(&e, gms_copy(bufs[0].ctx, bufs[1].h, 0, bufs[0].h, 0, n), "gms_copy") || n != bufs[1].size ||
            bufs[0].tag != bufs[1].tag)
            bufs[1].known = false;
    }
    dlpack_one(&e, &bufs[2], a2 && bufs[2].ctx != a2 ? a2 : b);
    transfer_one(&e, &bufs[3], bufs[3].ctx == b ? a : b);
    share_one(&e, &bufs[4], bufs[4].ctx == b ? a : b);
    free_one(&e, &bufs[5]);
    alloc_one(&e, &bufs[5], owners[rnd_below(r, 3)]);
    round_trip(&e, &bufs[5]);
    verify_clean(&e, "the scenario");

    /* Free some, leave the rest to the closes (reclaimed as leaks). */
    for (int i = 0; i < NB; i++)
        if (rnd_below(r, 2))
            free_one(&e, &bufs[i]);
    gms_context_close(a2);
    gms_context_close(b);
    gms_context_close(a);
    gms_stats st;
    if (gms_stats_get(rt, &st) != GMS_OK)
        mishandled(&e, "gms_stats_get failed");
    else if (st.live_blocks || st.live_bytes || st.contexts)
        mishandled(&e, "after every context closed: %llu live blocks, %llu live bytes, %llu contexts",
                   (unsigned long long)st.live_blocks, (unsigned long long)st.live_bytes,
                   (unsigned long long)st.contexts);
    verify_clean(&e, "closing the contexts");
    uint64_t calls = atomic_load(&rt->failpoint.calls);
    gms_runtime_close(rt);

    if (calls > t->max_calls)
        t->max_calls = calls;
    if (atomic_load(&e.reports))
        e.bad++;
    if (calls < e.n)
        return; /* never reached: no fault injected */
    t->injected++;
    if (e.bad)
        t->mishandled++;
    else if (e.failed)
        t->surfaced++;
    else
        t->absorbed++;
}
