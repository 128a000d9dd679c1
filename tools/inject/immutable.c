/*
 * immutable.c: gms-inject's class of writes to immutable shares, through
 * read-only views and past the keyed hash.
 */
#include "inject.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

void run_immutable_write(tally *t)
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
    dev_outcomes_reset();
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
        dev_outcomes_format(view_how, sizeof view_how);
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
void child_immview(void)
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
