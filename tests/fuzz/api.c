/*
 * api.c: a libFuzzer target for the public API. Each input is a program: a
 * sequence of calls (open/close up to 4 contexts of 3 tenants, alloc of
 * sizes from 0 to huge, free, read/write/copy/fill at offsets and lengths
 * in bounds, at the edge, beyond it and overflowing, uses of random, stale
 * and other contexts' handles, quotas, stats, verify, info, raw pointers,
 * shares acquired, read and released by other contexts, transfers, DLPack
 * exports imported by another context, hostile DLPack tensors, raw
 * corruptions that must be reported, pools of many tenants) on one private
 * runtime, whose violation and log callbacks call back into gms. A model
 * tracks what each call must return and what every live buffer holds; any
 * disagreement traps. Everything is closed at the end of each input.

 */
#include "gms.h"
#include "gms/dlpack.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT(cond)                                                                     \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz_api: %s:%d: expectation failed: %s (last error: %s)\n", \
                    __FILE__, __LINE__, #cond, gms_error_last());                        \
            __builtin_trap();                                                            \
        }                                                                                \
    } while (0)

#define NCTX 4
#define NTEN 3
#define NBUF 48
#define NDEAD 64
#define MAX_OPS 300
#define SCRATCH ((8u << 20) + 4096) /* above any tenant's byte quota */

/* ---- input reader ---- */

typedef struct reader {
    const uint8_t *p;
    size_t n, pos;
} reader;

static uint8_t u8(reader *r)
{
    return r->pos < r->n ? r->p[r->pos++] : 0;
}

/* A number in 1, 2, 4 or 8 bytes (the first byte's low bits say which),
 * so short inputs still reach many calls. */
static uint64_t u64(reader *r)
{
    uint8_t tag = u8(r);
    int bytes = 1 << (tag & 3);
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)u8(r) << (8 * i);
    if (bytes == 1)
        v = (v << 6) | (tag >> 2); /* 14 bits */
    return v;
}

/* ---- the model ---- */

typedef struct mctx {
    gms_context *ctx; /* NULL when closed */
    int tenant;
    gms_level level;
    gms_language lang;
} mctx;

typedef struct mbuf {
    gms_buf h; /* 0: slot unused */
    int ctx;
    uint64_t size;
    uint8_t *shadow;
    int shared; /* made a (mutable) share: a second one is BUSY, no transfer */
    gms_level level;   /* of the pool it lives in: its allocator's, */
    gms_language lang; /* until a transfer copies it elsewhere */
} mbuf;

typedef struct mtenant {
    uint64_t live_bytes, live_blocks, max_bytes, max_allocs;
} mtenant;

static const char *tenant_name[NTEN] = {"t0", "t1", "t2"};
static gms_runtime *rt;
static mctx ctxs[NCTX];
static mbuf bufs[NBUF];
static mtenant tenants[NTEN];
static gms_buf dead[NDEAD];
static unsigned ndead;
static uint8_t *scratch, *scratch2;

/* ---- callbacks that call back into gms ----
 * The violation and log callbacks run with no gms lock held and may call
 * gms (docs/threading.md): each does what cb_mode, set from the input by
 * the operation that may trigger it, says, in a context of its own. It
 * leaves nothing behind, so the model needs no account of it. */

static gms_context *cb_ctx;
static uint8_t cb_mode;
static int cb_depth;
static gms_buf cb_busy;  /* the buffer being freed or closed: not for the callbacks */
static int cb_busy_ctx = -1;
static unsigned violations_seen;

static void reenter(void);

static void fuzz_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)msg;
    if (level <= GMS_LOG_WARN)
        reenter();
}

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    EXPECT(v->message != NULL && v->tenant != NULL);
    violations_seen++;
    reenter();
}

/* Block size (docs/api.md): request plus the redzone (default 32 bytes;
 * safety is on), rounded up to 256. Quotas and stats count this. */
static uint64_t blk_size(uint64_t n)
{
    return (n + 32 + 255) & ~(uint64_t)255;
}

static void kill_buf(mbuf *b)
{
    mtenant *t = &tenants[ctxs[b->ctx].tenant];
    t->live_bytes -= blk_size(b->size);
    t->live_blocks--;
    dead[ndead++ % NDEAD] = b->h;
    free(b->shadow);
    memset(b, 0, sizeof *b);
}

static mbuf *find_live(gms_buf h)
{
    for (int i = 0; i < NBUF; i++)
        if (bufs[i].h && bufs[i].h == h)
            return &bufs[i];
    return NULL;
}

/* The code using handle h from context c must give before any bounds
 * check: OK for its owner, ACCESS_DENIED for another context, else
 * INVALID_HANDLE. */
static int handle_code(int c, gms_buf h)
{
    mbuf *b = find_live(h);
    if (!b)
        return GMS_E_INVALID_HANDLE;
    return b->ctx == c ? GMS_OK : GMS_E_ACCESS_DENIED;
}

static int in_bounds(uint64_t size, uint64_t off, uint64_t len)
{
    return off <= size && len <= size - off;
}

/* An offset and length for a buffer of size bytes, in bounds or not. */
static void pick_range(reader *r, uint64_t size, uint64_t *off, uint64_t *len)
{
    uint8_t mode = u8(r);
    uint64_t a = u64(r), b = u64(r);
    switch (mode % 10) {
    case 0:
    case 1:
    case 2:
    case 3: /* in bounds */
        *off = a % (size + 1);
        *len = b % (size - *off + 1);
        break;
    case 4: /* at the end */
        *off = size;
        *len = a & 1;
        break;
    case 5: /* one too many */
        *off = size ? a % size : 0;
        *len = size - *off + 1 + (b % 3);
        break;
    case 6: /* overflowing */
        *off = UINT64_MAX - (a % 16);
        *len = 1 + b % 64;
        break;
    case 7: /* huge length */
        *off = a % (size + 1);
        *len = SIZE_MAX - (b % 16);
        break;
    case 8: /* anything */
        *off = a;
        *len = b;
        break;
    default: /* past the end */
        *off = size + 1 + (a % 1000);
        *len = b % 8;
        break;
    }
}

/* A handle to try: a live one (any context's), a dead one or a random one. */
static gms_buf pick_handle(reader *r, mbuf **live_out)
{
    uint8_t m = u8(r);
    *live_out = NULL;
    if (m % 8 < 5) {
        mbuf *b = &bufs[u8(r) % NBUF];
        if (b->h) {
            *live_out = b;
            return b->h;
        }
    }
    if (m % 8 == 5 && ndead)
        return dead[u8(r) % (ndead < NDEAD ? ndead : NDEAD)];
    if (m % 8 == 6)
        return GMS_BUF_NULL;
    return u64(r);
}

static int pick_ctx(reader *r)
{
    return u8(r) % NCTX;
}

/* rc must be OK when want is OK, else one of the codes that apply. */
static void expect_code(int rc, int want1, int want2, int want3)
{
    int any = want1 || want2 || want3;
    if (!any) {
        EXPECT(rc == GMS_OK);
    } else {
        EXPECT(rc != GMS_OK);
        EXPECT((want1 && rc == want1) || (want2 && rc == want2) || (want3 && rc == want3));
        EXPECT(gms_error_last()[0] != 0);
    }
}

static void check_stats(void)
{
    gms_stats s;
    EXPECT(gms_stats_get(rt, &s) == GMS_OK);
    uint64_t bytes = 0, blocks = 0;
    for (int t = 0; t < NTEN; t++) {
        bytes += tenants[t].live_bytes;
        blocks += tenants[t].live_blocks;
        gms_tenant_stats ts;
        EXPECT(gms_tenant_stats_get(rt, (uint64_t)t, &ts) == GMS_OK);
        EXPECT(strcmp(ts.tenant, tenant_name[t]) == 0);
        EXPECT(ts.live_bytes == tenants[t].live_bytes);
        EXPECT(ts.live_blocks == tenants[t].live_blocks);
        EXPECT(ts.max_bytes == tenants[t].max_bytes);
        EXPECT(ts.max_allocs == tenants[t].max_allocs);
    }
    EXPECT(s.live_bytes == bytes);
    EXPECT(s.live_blocks == blocks);
    EXPECT(s.held_bytes >= s.live_bytes);
    EXPECT(s.fragmentation >= 0.0 && s.fragmentation <= 1.0);
    EXPECT(s.tenants >= NTEN + 1); /* the model's, the callbacks', op_many's */
    uint64_t open = cb_ctx != NULL;
    for (int c = 0; c < NCTX; c++)
        open += ctxs[c].ctx != NULL;
    EXPECT(s.contexts == open);
}

static void check_verify(void)
{
    gms_report rep;
    int rc = gms_verify(rt, &rep);
    if (rc != GMS_OK)
        fprintf(stderr, "fuzz_api: verify: %s\n", rep.first_violation);
    EXPECT(rc == GMS_OK);
    uint64_t live = 0;
    for (int i = 0; i < NBUF; i++)
        live += bufs[i].h != 0;
    EXPECT(rep.live_handles == live);
    EXPECT(rep.live_blocks == live);
    EXPECT(rep.violations == 0);
}

/* A callback's calls into gms: an allocation and a free of its own, the
 * statistics, a nested gms_verify, or a read of a model buffer (not the
 * one whose call is reporting) checked against its shadow. */
static void reenter(void)
{
    if (!cb_ctx || cb_depth >= 3)
        return;
    cb_depth++;
    switch (cb_mode % 6) {
    case 0:
        break;
    case 1:
    case 2: {
        gms_buf h = GMS_BUF_NULL;
        EXPECT(gms_alloc(cb_ctx, 1 + (size_t)cb_mode * 37, cb_mode & 8 ? GMS_ALLOC_ZERO : 0, &h) == GMS_OK);
        EXPECT(gms_free(cb_ctx, h) == GMS_OK);
        break;
    }
    case 3: {
        gms_stats st;
        EXPECT(gms_stats_get(rt, &st) == GMS_OK);
        break;
    }
    case 4: {
        int rc = gms_verify(rt, NULL);
        EXPECT(rc == GMS_OK || rc == GMS_E_CORRUPTION);
        break;
    }
    default:
        for (int i = 0; i < NBUF; i++) {
            mbuf *b = &bufs[(i + cb_mode) % NBUF];
            if (!b->h || b->h == cb_busy || b->ctx == cb_busy_ctx || !ctxs[b->ctx].ctx)
                continue;
            uint64_t n = b->size < 64 ? b->size : 64;
            uint8_t tmp[64];
            EXPECT(gms_read(ctxs[b->ctx].ctx, b->h, 0, tmp, n) == GMS_OK);
            EXPECT(memcmp(tmp, b->shadow, n) == 0);
            break;
        }
        break;
    }
    cb_depth--;
}

static void close_ctx(int c)
{
    if (!ctxs[c].ctx)
        return;
    cb_busy_ctx = c; /* its leaks are logged while it closes */
    gms_context_close(ctxs[c].ctx);
    cb_busy_ctx = -1;
    ctxs[c].ctx = NULL;
    for (int i = 0; i < NBUF; i++)
        if (bufs[i].h && bufs[i].ctx == c)
            kill_buf(&bufs[i]);
}

/* ---- operations ---- */

static void op_open(reader *r)
{
    int c = pick_ctx(r);
    uint8_t d = u8(r);
    uint8_t bad = u8(r);
    gms_context_desc desc;
    gms_context_desc_init(&desc);
    desc.tenant = tenant_name[d % NTEN];
    desc.user = (d & 0x80) ? "user-b" : "user-a";
    desc.level = (gms_level)((d >> 2) % 4);
    desc.language = (gms_language)((d >> 4) % 8);
    if (bad % 16 == 0) {
        /* A malformed descriptor: refused, nothing opened. */
        static const char long_name[] = "0123456789012345678901234567890123456789012345678901234567890123";
        switch ((bad >> 4) % 6) {
        case 0: desc.tenant = NULL; break;
        case 1: desc.tenant = ""; break;
        case 2: desc.tenant = long_name; break;
        case 3: desc.tenant = "bad\x01"; break;
        case 4: desc.level = (gms_level)(4 + (bad >> 6)); break;
        default: desc.version = 7; break;
        }
        gms_context *x = (gms_context *)(uintptr_t)8;
        EXPECT(gms_context_open(&x, rt, &desc) == GMS_E_INVALID_ARG);
        EXPECT(x == NULL);
        return;
    }
    if (ctxs[c].ctx)
        close_ctx(c);
    gms_context *x = NULL;
    EXPECT(gms_context_open(&x, rt, &desc) == GMS_OK);
    EXPECT(x != NULL);
    ctxs[c].ctx = x;
    ctxs[c].tenant = d % NTEN;
    ctxs[c].level = desc.level;
    ctxs[c].lang = desc.language;
}

static void op_alloc(reader *r)
{
    int c = pick_ctx(r);
    uint8_t m = u8(r);
    uint64_t v = u64(r);
    uint8_t fl = u8(r);
    if (!ctxs[c].ctx)
        return;
    mbuf *slot = NULL;
    for (int i = 0; i < NBUF && !slot; i++)
        if (!bufs[i].h)
            slot = &bufs[i];
    if (!slot)
        return;
    uint64_t size;
    switch (m % 16) {
    case 0: size = 0; break;
    case 1: size = v; break;                             /* anything */
    case 2: size = (uint64_t)1 << (20 + v % 44); break; /* huge */
    case 3: size = SIZE_MAX - v % 300; break;
    case 4: size = 1 + v % (5u << 20); break;            /* large: past a chunk */
    case 5:
    case 6: size = 1 + v % (256u << 10); break;
    default: size = 1 + v % 4096; break;
    }
    uint32_t flags = fl % 4 == 0 ? GMS_ALLOC_ZERO : 0;
    int bad_flags = fl == 0xff;
    if (bad_flags)
        flags = 0x100;
    mtenant *t = &tenants[ctxs[c].tenant];
    gms_buf h = 12345;
    int rc = gms_alloc(ctxs[c].ctx, (size_t)size, flags, &h);
    if (size == 0 || bad_flags) {
        EXPECT(rc == GMS_E_INVALID_ARG);
        EXPECT(h == GMS_BUF_NULL);
        return;
    }
    int over = size > (1ull << 40) || blk_size(size) > t->max_bytes ||
               t->live_bytes > t->max_bytes - blk_size(size) || t->live_blocks >= t->max_allocs;
    if (over) {
        /* Sizes no device holds may be refused as such. */
        if (size > (1ull << 40))
            EXPECT(rc == GMS_E_QUOTA || rc == GMS_E_NO_MEMORY);
        else
            EXPECT(rc == GMS_E_QUOTA);
        EXPECT(h == GMS_BUF_NULL);
        return;
    }
    EXPECT(rc == GMS_OK);
    EXPECT(h != GMS_BUF_NULL);
    EXPECT(find_live(h) == NULL);
    for (unsigned i = 0; i < NDEAD && i < ndead; i++)
        EXPECT(dead[i] != h); /* never a handle given out before */
    slot->h = h;
    slot->ctx = c;
    slot->level = ctxs[c].level;
    slot->lang = ctxs[c].lang;
    slot->size = size;
    slot->shadow = malloc(size);
    EXPECT(slot->shadow != NULL);
    t->live_bytes += blk_size(size);
    t->live_blocks++;
    if (flags & GMS_ALLOC_ZERO) {
        memset(slot->shadow, 0, size);
        if (size <= 65536) {
            EXPECT(gms_read(ctxs[c].ctx, h, 0, scratch, size) == GMS_OK);
            EXPECT(memcmp(scratch, slot->shadow, size) == 0);
        }
    } else {
        /* Unspecified content: make it known. */
        memset(slot->shadow, 0xa5, size);
        EXPECT(gms_fill(ctxs[c].ctx, h, 0, 0xa5, size) == GMS_OK);
    }
}

static void op_free(reader *r)
{
    int c = pick_ctx(r);
    mbuf *b;
    gms_buf h = pick_handle(r, &b);
    if (!ctxs[c].ctx)
        return;
    int want = handle_code(c, h);
    int rc = gms_free(ctxs[c].ctx, h);
    expect_code(rc, want, 0, 0);
    if (rc == GMS_OK) {
        EXPECT(b != NULL);
        kill_buf(b);
        EXPECT(gms_free(ctxs[c].ctx, h) == GMS_E_INVALID_HANDLE);
    }
}

static void op_write(reader *r, int fill)
{
    int c = pick_ctx(r);
    mbuf *b;
    gms_buf h = pick_handle(r, &b);
    uint64_t size = b ? b->size : 4096;
    uint64_t off, len;
    pick_range(r, size, &off, &len);
    uint8_t seed = u8(r);
    uint8_t flags = u8(r);
    if (!ctxs[c].ctx)
        return;
    int hc = handle_code(c, h);
    int oob = !in_bounds(size, off, len);
    int rc;
    if (fill) {
        int byte = flags % 32 == 0 ? 256 + seed : seed;
        rc = gms_fill(ctxs[c].ctx, h, off, byte, (size_t)len);
        if (byte > 255) {
            expect_code(rc, GMS_E_INVALID_ARG, hc, oob && hc == GMS_OK ? GMS_E_OUT_OF_BOUNDS : 0);
            EXPECT(rc != GMS_OK);
            return;
        }
        expect_code(rc, hc, hc == GMS_OK && oob ? GMS_E_OUT_OF_BOUNDS : 0, 0);
        if (rc == GMS_OK && len)
            memset(b->shadow + off, seed, len);
        return;
    }
    int null_src = flags % 32 == 0 && len > 0;
    uint8_t *src = scratch;
    if (!oob && len)
        for (uint64_t i = 0; i < len; i++)
            src[i] = (uint8_t)(seed + i * 7);
    rc = gms_write(ctxs[c].ctx, h, off, null_src ? NULL : src, (size_t)len);
    if (null_src) {
        EXPECT(rc != GMS_OK);
        expect_code(rc, GMS_E_INVALID_ARG, hc, hc == GMS_OK && oob ? GMS_E_OUT_OF_BOUNDS : 0);
        return;
    }
    expect_code(rc, hc, hc == GMS_OK && oob ? GMS_E_OUT_OF_BOUNDS : 0, 0);
    if (rc == GMS_OK && len)
        memcpy(b->shadow + off, src, len);
}

static void op_read(reader *r)
{
    int c = pick_ctx(r);
    mbuf *b;
    gms_buf h = pick_handle(r, &b);
    uint64_t size = b ? b->size : 4096;
    uint64_t off, len;
    pick_range(r, size, &off, &len);
    if (!ctxs[c].ctx)
        return;
    int hc = handle_code(c, h);
    int oob = !in_bounds(size, off, len);
    memset(scratch2, 0x3c, 256);
    int rc = gms_read(ctxs[c].ctx, h, off, scratch2, (size_t)len);
    expect_code(rc, hc, hc == GMS_OK && oob ? GMS_E_OUT_OF_BOUNDS : 0, 0);
    if (rc == GMS_OK) {
        EXPECT(len == 0 || memcmp(scratch2, b->shadow + off, len) == 0);
    } else {
        for (int i = 0; i < 256; i++)
            EXPECT(scratch2[i] == 0x3c); /* refused: nothing written */
    }
}

static void op_copy(reader *r)
{
    int c = pick_ctx(r);
    mbuf *db, *sb = NULL;
    gms_buf dh = pick_handle(r, &db);
    gms_buf sh = u8(r) % 4 == 0 ? dh : pick_handle(r, &sb);
    if (sh == dh)
        sb = db;
    uint64_t dsize = db ? db->size : 4096, ssize = sb ? sb->size : 4096;
    uint64_t doff, soff, len, dummy;
    pick_range(r, dsize, &doff, &len);
    pick_range(r, ssize, &soff, &dummy);
    if (u8(r) % 2) /* a length that fits both, often */
        len = len % ((ssize - (soff <= ssize ? soff : ssize)) + 1);
    if (!ctxs[c].ctx)
        return;
    int dc = handle_code(c, dh), scode = handle_code(c, sh);
    int doob = dc == GMS_OK && !in_bounds(dsize, doff, len);
    int soob = scode == GMS_OK && !in_bounds(ssize, soff, len);
    int rc = gms_copy(ctxs[c].ctx, dh, doff, sh, soff, (size_t)len);
    if (dc == GMS_OK && scode == GMS_OK && !doob && !soob) {
        EXPECT(rc == GMS_OK);
        if (len)
            memmove(db->shadow + doff, sb->shadow + soff, len);
        return;
    }
    EXPECT(rc != GMS_OK);
    EXPECT((dc && rc == dc) || (scode && rc == scode) ||
           ((doob || soob) && rc == GMS_E_OUT_OF_BOUNDS));
}

/* A mutable share of a live buffer: another context acquires it (if the
 * grant lets it in), reads it against the shadow, is refused a write, and
 * releases it twice (the second is caught). Leaves the model as it was,
 * but for the buffer being shared. */
static void op_share(reader *r)
{
    int c = pick_ctx(r), d = pick_ctx(r);
    mbuf *b = &bufs[u8(r) % NBUF];
    uint8_t g = u8(r);
    if (!b->h || !ctxs[c].ctx || !ctxs[d].ctx)
        return;
    const char *tenant = g % 3 == 0 ? NULL : g % 3 == 1 ? "*" : tenant_name[(g >> 2) % NTEN];
    gms_share_grant grant = {tenant, NULL, (g & 0x20) ? GMS_ANY_LANGUAGE : (int)ctxs[d].lang,
                             GMS_ACCESS_READ};
    gms_share_desc desc = GMS_SHARE_DESC_INIT;
    desc.grants = &grant;
    desc.ngrants = 1;
    gms_share_id id = 0;
    int rc = gms_share(ctxs[c].ctx, b->h, &desc, &id);
    int hc = handle_code(c, b->h);
    expect_code(rc, hc ? hc : b->shared ? GMS_E_BUSY : 0, 0, 0);
    if (rc != GMS_OK)
        return;
    b->shared = 1;
    int owner_tenant = ctxs[b->ctx].tenant;
    int match = !tenant ? ctxs[d].tenant == owner_tenant
                        : strcmp(tenant, "*") == 0 || strcmp(tenant, tenant_name[ctxs[d].tenant]) == 0;
    gms_buf h = 0;
    rc = gms_acquire(ctxs[d].ctx, id, GMS_ACCESS_READ, &h);
    expect_code(rc, match ? 0 : GMS_E_ACCESS_DENIED, 0, 0);
    gms_buf x;
    expect_code(gms_acquire(ctxs[d].ctx, id, GMS_ACCESS_READ_WRITE, &x), GMS_E_ACCESS_DENIED, 0,
                0); /* the grant is read only */
    if (rc != GMS_OK)
        return;
    EXPECT(gms_read(ctxs[d].ctx, h, 0, scratch, b->size) == GMS_OK);
    EXPECT(memcmp(scratch, b->shadow, b->size) == 0);
    expect_code(gms_write(ctxs[d].ctx, h, 0, scratch, 1), GMS_E_READ_ONLY, 0, 0);
    EXPECT(gms_release(ctxs[d].ctx, h) == GMS_OK);
    expect_code(gms_release(ctxs[d].ctx, h), GMS_E_INVALID_HANDLE, 0, 0);
}

/* Transfers a buffer to another context: the old handle dies, the new one
 * reads the same bytes. A copy into another tenant's (or a higher level's)
 * pool may meet that tenant's quota. */
static void op_transfer(reader *r)
{
    int c = pick_ctx(r), d = pick_ctx(r);
    mbuf *b = &bufs[u8(r) % NBUF];
    if (!b->h || !ctxs[c].ctx || !ctxs[d].ctx)
        return;
    gms_buf h = 0;
    int rc = gms_transfer(ctxs[c].ctx, b->h, ctxs[d].ctx, &h);
    int hc = handle_code(c, b->h);
    if (c == d) {
        expect_code(rc, GMS_E_INVALID_ARG, 0, 0);
        return;
    }
    if (hc || b->shared) {
        expect_code(rc, hc ? hc : GMS_E_BUSY, 0, 0);
        return;
    }
    int copy = ctxs[d].tenant != ctxs[c].tenant || ctxs[d].level > ctxs[c].level;
    if (copy && rc == GMS_E_QUOTA) { /* nothing moved: the old handle still works */
        EXPECT(gms_read(ctxs[c].ctx, b->h, 0, scratch, 0) == GMS_OK);
        return;
    }
    expect_code(rc, 0, 0, 0);
    dead[ndead++ % NDEAD] = b->h;
    mtenant *from = &tenants[ctxs[c].tenant], *to = &tenants[ctxs[d].tenant];
    from->live_bytes -= blk_size(b->size);
    from->live_blocks--;
    to->live_bytes += blk_size(b->size);
    to->live_blocks++;
    b->h = h;
    b->ctx = d;
    if (copy) {
        b->level = ctxs[d].level;
        b->lang = ctxs[d].lang;
    }
    EXPECT(gms_read(ctxs[d].ctx, h, 0, scratch, b->size) == GMS_OK);
    EXPECT(memcmp(scratch, b->shadow, b->size) == 0);
}

static void op_probe(reader *r)
{
    /* Random, stale and other contexts' handles through the info calls. */
    int c = pick_ctx(r);
    mbuf *b;
    gms_buf h = pick_handle(r, &b);
    uint8_t flip = u8(r);
    if (flip & 0x40) {
        h ^= (uint64_t)1 << (flip % 64);
        b = find_live(h);
    }
    if (!ctxs[c].ctx)
        return;
    int hc = handle_code(c, h);
    void *p = (void *)&p;
    gms_buf_info info;
    memset(&info, 0, sizeof info);
    int rc = gms_buf_ptr(ctxs[c].ctx, h, &p);
    expect_code(rc, hc, 0, 0);
    int rc2 = gms_buf_info_get(ctxs[c].ctx, h, &info);
    expect_code(rc2, hc, 0, 0);
    if (rc != GMS_OK) {
        EXPECT(p == NULL); /* outputs are cleared on failure */
        return;
    }
    EXPECT(b != NULL);
    EXPECT(info.size == b->size);
    EXPECT(info.block_size == blk_size(b->size));
    EXPECT(info.device_ptr == (uint64_t)(uintptr_t)p);
    EXPECT(info.device_ptr % GMS_ALIGNMENT == 0);
    EXPECT(strcmp(info.tenant, tenant_name[ctxs[c].tenant]) == 0);
    EXPECT(info.level == b->level && info.language == b->lang);
    /* Host backend: the raw pointer shows the same bytes. */
    uint64_t n = b->size < 4096 ? b->size : 4096;
    EXPECT(memcmp(p, b->shadow, n) == 0);
}

static void op_quota(reader *r)
{
    static const uint64_t bytes[] = {0, 4096, 1u << 20, 2u << 20, 8u << 20, 6u << 20};
    static const uint64_t allocs[] = {0, 1, 5, 100, GMS_UNLIMITED, 3};
    int t = u8(r) % NTEN;
    uint8_t v = u8(r);
    uint64_t mb = bytes[v % 6], ma = allocs[(v >> 3) % 6];
    EXPECT(gms_tenant_set_quota(rt, tenant_name[t], mb, ma) == GMS_OK);
    tenants[t].max_bytes = mb;
    tenants[t].max_allocs = ma;
}

static void op_misc(reader *r)
{
    uint8_t m = u8(r);
    int c = pick_ctx(r);
    gms_context *x = ctxs[c].ctx;
    switch (m % 8) {
    case 0: check_stats(); break;
    case 1: check_verify(); break;
    case 2: close_ctx(c); break;
    case 3: /* NULL arguments */
        EXPECT(gms_alloc(x, 16, 0, NULL) == GMS_E_INVALID_ARG);
        EXPECT(gms_free(NULL, 1) == GMS_E_INVALID_ARG);
        EXPECT(gms_read(NULL, 1, 0, scratch, 1) == GMS_E_INVALID_ARG);
        EXPECT(gms_stats_get(rt, NULL) == GMS_E_INVALID_ARG);
        EXPECT(gms_tenant_set_quota(rt, NULL, 1, 1) == GMS_E_INVALID_ARG);
        gms_stats st;
        EXPECT(gms_stats_get(rt, &st) == GMS_OK);
        EXPECT(gms_tenant_stats_get(rt, st.tenants + u8(r), (gms_tenant_stats *)scratch) ==
               GMS_E_INVALID_ARG);
        if (x) {
            mbuf *b;
            gms_buf h = pick_handle(r, &b);
            EXPECT(gms_buf_ptr(x, h, NULL) != GMS_OK);
            EXPECT(gms_buf_info_get(x, h, NULL) != GMS_OK);
        }
        break;
    default: {
        /* Read a whole live buffer of this context and compare. */
        for (int i = 0; i < NBUF; i++) {
            mbuf *b = &bufs[(i + m) % NBUF];
            if (!b->h || b->ctx != c || b->size > SCRATCH)
                continue;
            EXPECT(gms_read(x, b->h, 0, scratch2, b->size) == GMS_OK);
            EXPECT(memcmp(scratch2, b->shadow, b->size) == 0);
            break;
        }
        break;
    }
    }
}

/* A raw corruption of a live buffer, as a bug in a kernel would make
 * one: bytes of its redzone, found by its free (or a gms_verify first),
 * or bytes of it after its free, found by gms_verify. Either way a
 * violation callback must be called, and the buffer is gone after. */
static void op_corrupt(reader *r)
{
    mbuf *b = &bufs[u8(r) % NBUF];
    uint8_t how = u8(r);
    uint64_t a = u64(r);
    if (!b->h)
        return;
    gms_context *x = ctxs[b->ctx].ctx;
    uint8_t *p = NULL;
    EXPECT(gms_buf_ptr(x, b->h, (void **)&p) == GMS_OK);
    unsigned before = violations_seen;
    cb_busy = b->h;
    if (how % 3 != 2) {
        uint64_t dist = a % 32, len = 1 + (a >> 8) % (32 - dist);
        for (uint64_t i = 0; i < len; i++)
            p[b->size + dist + i] ^= (uint8_t)(1 + ((a >> 16) + i * 7) % 255);
        int early = how % 3 == 1;
        if (early)
            EXPECT(gms_verify(rt, NULL) == GMS_E_CORRUPTION);
        int rc = gms_free(x, b->h);
        /* Found by the verify: the free may report it again, once. */
        EXPECT(rc == GMS_E_CORRUPTION || (early && rc == GMS_OK));
    } else {
        /* Below a granule (64 KiB here), a freed block stays mapped. */
        if (blk_size(b->size) > (32u << 10)) {
            cb_busy = GMS_BUF_NULL;
            return;
        }
        EXPECT(gms_free(x, b->h) == GMS_OK);
        p[a % b->size] ^= (uint8_t)(1 + (a >> 32) % 255);
        EXPECT(gms_verify(rt, NULL) == GMS_E_CORRUPTION);
    }
    EXPECT(violations_seen > before);
    cb_busy = GMS_BUF_NULL;
    kill_buf(b);
}

/* A buffer exported as a DLPack tensor (whole or a range) and imported by
 * another context, which reads and writes it through the import (the
 * same memory), maybe transfers the import to a third context, and frees
 * it: its deleter runs, and the buffer has one holder again. */
static void op_dlpack(reader *r)
{
    int c = pick_ctx(r), d = pick_ctx(r), e = pick_ctx(r);
    mbuf *b;
    gms_buf h = pick_handle(r, &b);
    uint8_t m = u8(r);
    uint64_t a = u64(r), n = u64(r);
    if (!ctxs[c].ctx || !ctxs[d].ctx)
        return;
    int hc = handle_code(c, h);
    uint64_t size = b ? b->size : 4096, off = 0, len = size;
    int64_t shape[1];
    gms_dlpack_desc desc = GMS_DLPACK_DESC_INIT;
    int whole = m & 1, legacy = (m & 2) != 0;
    if (!whole) {
        off = a % (size + 1 + (m & 4 ? 64 : 0));
        len = n % (size + 2);
        shape[0] = (int64_t)len;
        desc.ndim = 1;
        desc.shape = shape;
        desc.byte_offset = off;
    }
    void *t = (void *)&t;
    int rc = legacy ? gms_dlpack_export_legacy(ctxs[c].ctx, h, whole ? NULL : &desc, (DLManagedTensor **)&t)
                    : gms_dlpack_export(ctxs[c].ctx, h, whole ? NULL : &desc, (DLManagedTensorVersioned **)&t);
    if (hc || (!whole && !in_bounds(size, off, len))) {
        expect_code(rc, hc ? hc : GMS_E_OUT_OF_BOUNDS, 0, 0);
        EXPECT(t == NULL);
        return;
    }
    EXPECT(rc == GMS_OK);
    DLTensor *dl = legacy ? &((DLManagedTensor *)t)->dl_tensor : &((DLManagedTensorVersioned *)t)->dl_tensor;
    void *p = NULL;
    EXPECT(gms_buf_ptr(ctxs[c].ctx, h, &p) == GMS_OK);
    EXPECT((uint8_t *)dl->data + dl->byte_offset == (uint8_t *)p + off);
    gms_buf ih = 5;
    rc = legacy ? gms_dlpack_import_legacy(ctxs[d].ctx, t, &ih) : gms_dlpack_import(ctxs[d].ctx, t, &ih);
    if (len == 0) { /* no elements: refused, the tensor still ours */
        expect_code(rc, GMS_E_INVALID_ARG, 0, 0);
        EXPECT(ih == GMS_BUF_NULL);
        if (legacy)
            ((DLManagedTensor *)t)->deleter(t);
        else
            ((DLManagedTensorVersioned *)t)->deleter(t);
        return;
    }
    EXPECT(rc == GMS_OK);
    EXPECT(gms_read(ctxs[d].ctx, ih, 0, scratch, len) == GMS_OK);
    EXPECT(memcmp(scratch, b->shadow + off, len) == 0);
    expect_code(gms_read(ctxs[d].ctx, ih, len, scratch, 1), GMS_E_OUT_OF_BOUNDS, 0, 0);
    if (m & 8) {
        uint64_t k = a % len;
        scratch[0] = (uint8_t)(n >> 8);
        EXPECT(gms_write(ctxs[d].ctx, ih, k, scratch, 1) == GMS_OK);
        b->shadow[off + k] = scratch[0];
    }
    int holder = d;
    if ((m & 16) && e != d && ctxs[e].ctx) {
        gms_buf th = 7;
        rc = gms_transfer(ctxs[d].ctx, ih, ctxs[e].ctx, &th);
        int other = ctxs[e].tenant != ctxs[d].tenant;
        if (other && rc == GMS_E_QUOTA) { /* the copy did not fit e's quota: nothing moved */
            EXPECT(th == GMS_BUF_NULL);
            EXPECT(gms_read(ctxs[d].ctx, ih, 0, scratch, 0) == GMS_OK);
        } else {
            EXPECT(rc == GMS_OK);
            gms_buf_info info;
            EXPECT(gms_buf_info_get(ctxs[e].ctx, th, &info) == GMS_OK);
            /* Known defect 7: an import moved to another tenant with no
             * copy, still reported as the old tenant's. */
            EXPECT(strcmp(info.tenant, tenant_name[ctxs[e].tenant]) == 0);
            EXPECT(!other || info.device_ptr != (uint64_t)(uintptr_t)p + off);
            EXPECT(gms_read(ctxs[e].ctx, th, 0, scratch2, len) == GMS_OK);
            EXPECT(memcmp(scratch2, b->shadow + off, len) == 0);
            ih = th;
            holder = e;
            /* A copy may wipe what it copied from, the exporter's bytes:
             * take them as they are now. */
            if (other)
                EXPECT(gms_read(ctxs[c].ctx, h, 0, b->shadow, b->size) == GMS_OK);
        }
    }
    EXPECT(gms_free(ctxs[holder].ctx, ih) == GMS_OK);
    expect_code(gms_free(ctxs[holder].ctx, ih), GMS_E_INVALID_HANDLE, 0, 0);
    gms_buf_info info;
    EXPECT(gms_buf_info_get(ctxs[c].ctx, h, &info) == GMS_OK);
    EXPECT(info.holders == 1);
}

/* ---- hostile DLPack tensors ----
 * Built from the input: any data pointer (NULL, inside a canary-guarded
 * buffer, near the top of the address space), device, dtype, ndim, shape
 * (negative, zero, huge), strides (negative, zero, not compact) and byte
 * offset (wrapping). A reference says which ones gms must refuse; a
 * refused tensor is still the caller's (its deleter not called). An
 * accepted one must say exactly the address and size the tensor does,
 * and checked writes through it must stay inside it. */

#define HOSTILE_DIMS 24
#define HOSTILE_BYTES 4096u
#define CANARY 64u
static uint8_t backing[CANARY + HOSTILE_BYTES + CANARY];

typedef struct hostile {
    DLManagedTensorVersioned v;
    DLManagedTensor l;
    int deleted;
    int64_t shape[HOSTILE_DIMS], strides[HOSTILE_DIMS];
} hostile;
static hostile H;

static void hostile_deleter_v(DLManagedTensorVersioned *t)
{
    ((hostile *)t->manager_ctx)->deleted++;
}

static void hostile_deleter_l(DLManagedTensor *t)
{
    ((hostile *)t->manager_ctx)->deleted++;
}

/* Whether gms may accept the tensor; *wraps when only its address range
 * (past 2^64) says no; *extent its size in bytes. */
static int hostile_valid(const DLTensor *t, int versioned, uint32_t major, int *wraps, uint64_t *extent)
{
    *wraps = 0;
    if (versioned && major != 1)
        return 0;
    if (t->device.device_type != kDLCPU || t->device.device_id != 0)
        return 0;
    if (t->dtype.bits == 0 || t->dtype.bits % 8 || t->dtype.lanes == 0)
        return 0;
    if (t->ndim < 0 || t->ndim > GMS_DLPACK_MAX_DIMS || (t->ndim > 0 && !t->shape))
        return 0;
    int64_t count = 1, item = (int64_t)t->dtype.bits / 8 * t->dtype.lanes, row = 1;
    for (int32_t d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] <= 0 || __builtin_mul_overflow(count, t->shape[d], &count))
            return 0;
        if (t->strides && t->shape[d] > 1 && t->strides[d] != row)
            return 0;
        row = count;
    }
    int64_t bytes;
    if (__builtin_mul_overflow(count, item, &bytes) || !t->data)
        return 0;
    *extent = (uint64_t)bytes;
    uint64_t start, end;
    *wraps = __builtin_add_overflow((uint64_t)(uintptr_t)t->data, t->byte_offset, &start) ||
             __builtin_add_overflow(start, *extent - 1, &end);
    return !*wraps;
}

static void op_hostile(reader *r)
{
    static const int64_t shapes[] = {1, 2, 3, 16, 64, 0, -1, INT64_MAX, INT64_MAX / 2 + 1, (int64_t)1 << 32,
                                     4096, INT64_MIN, (int64_t)1 << 62, 5};
    static const uint8_t bits[] = {8, 8, 16, 32, 64, 0, 1, 7, 12, 248, 128};
    static const uint16_t lanes[] = {1, 1, 1, 2, 4, 0, 65535, 3};
    int c = pick_ctx(r);
    uint8_t m = u8(r), dm = u8(r), pm = u8(r), om = u8(r), tm = u8(r);
    uint64_t k = u64(r), k2 = u64(r);
    if (!ctxs[c].ctx)
        return;
    memset(&H, 0, sizeof H);
    memset(backing, 0xca, sizeof backing);
    uint8_t *base = backing + CANARY;
    DLTensor t;
    memset(&t, 0, sizeof t);
    switch (pm % 8) {
    case 0: t.data = NULL; break;
    case 1: t.data = (void *)(uintptr_t)(UINTPTR_MAX - k % 8192); break;
    case 2: t.data = (void *)(uintptr_t)((uint64_t)1 << 63); break;
    case 3: t.data = (void *)(uintptr_t)k; break;
    case 4: t.data = base + k % HOSTILE_BYTES; break;
    default: t.data = base; break;
    }
    t.device = (DLDevice){kDLCPU, 0};
    if (dm % 4 == 0)
        t.device.device_type = (DLDeviceType)((dm >> 2) % 20);
    if (dm % 8 == 1)
        t.device.device_id = (int32_t)k2;
    t.dtype = (DLDataType){(uint8_t)(tm % 8), bits[(tm >> 3) % sizeof bits],
                           lanes[(tm >> 5) % (sizeof lanes / sizeof lanes[0])]};
    if (m % 8 == 7)
        t.ndim = (int32_t)(int8_t)u8(r) % HOSTILE_DIMS; /* negative, or past the limit */
    else
        t.ndim = m % 4;
    t.shape = m & 0x40 && t.ndim > 0 ? NULL : H.shape;
    for (int i = 0; i < HOSTILE_DIMS; i++) {
        uint8_t s = u8(r);
        H.shape[i] = s & 0x80 ? shapes[s % (sizeof shapes / sizeof shapes[0])] : 1 + s % 24;
    }
    if (m & 0x20) {
        t.strides = H.strides;
        int64_t row = 1;
        for (int i = t.ndim > 0 ? t.ndim - 1 : -1; i >= 0 && i < HOSTILE_DIMS; i--) {
            H.strides[i] = row;
            if (__builtin_mul_overflow(row, H.shape[i] > 0 ? H.shape[i] : 1, &row))
                row = 1;
        }
        if (m & 0x10 && t.ndim > 0) /* not compact: negative, zero, huge */
            H.strides[k2 % (uint64_t)(t.ndim > 0 ? t.ndim : 1) % HOSTILE_DIMS] =
                (int64_t[]){-1, 0, INT64_MAX, -(int64_t)k2, 2}[(k2 >> 8) % 5];
    }
    switch (om % 6) {
    case 0:
    case 1: t.byte_offset = 0; break;
    case 2: t.byte_offset = k % HOSTILE_BYTES; break;
    case 3: t.byte_offset = UINT64_MAX - k % HOSTILE_BYTES; break; /* wraps: before data */
    case 4: t.byte_offset = (uint64_t)1 << 63; break;
    default: t.byte_offset = k; break;
    }
    int versioned = !(om & 0x40);
    uint32_t major = om & 0x80 ? (uint32_t)(k2 % 3) : 1;
    H.v = (DLManagedTensorVersioned){{major, 1}, &H, hostile_deleter_v,
                                     dm & 0x80 ? DLPACK_FLAG_BITMASK_READ_ONLY : 0, t};
    H.l = (DLManagedTensor){t, &H, hostile_deleter_l};
    int wraps;
    uint64_t extent = 0;
    int valid = hostile_valid(&t, versioned, major, &wraps, &extent);
    gms_buf h = 9;
    int rc = versioned ? gms_dlpack_import(ctxs[c].ctx, &H.v, &h) : gms_dlpack_import_legacy(ctxs[c].ctx, &H.l, &h);
    EXPECT(H.deleted == 0);
    if (rc != GMS_OK) {
        EXPECT(h == GMS_BUF_NULL);
        EXPECT(rc == GMS_E_INVALID_ARG || rc == GMS_E_UNSUPPORTED || rc == GMS_E_OUT_OF_BOUNDS);
        EXPECT(gms_error_last()[0] != 0);
        return;
    }
    if (!valid)
        fprintf(stderr, "fuzz_api: accepted a tensor at %p + byte_offset %llu, %llu bytes%s\n", t.data,
                (unsigned long long)t.byte_offset, (unsigned long long)extent, wraps ? ", past 2^64" : "");
    EXPECT(valid);
    gms_buf_info info;
    EXPECT(gms_buf_info_get(ctxs[c].ctx, h, &info) == GMS_OK);
    EXPECT(info.size == extent);
    EXPECT(info.device_ptr == (uint64_t)(uintptr_t)t.data + t.byte_offset);
    uint64_t lo = (uint64_t)(uintptr_t)base, at = info.device_ptr;
    if (valid && at >= lo && at - lo <= HOSTILE_BYTES && extent <= HOSTILE_BYTES - (at - lo)) {
        /* Inside our buffer: checked writes stay inside the tensor. */
        int ro = versioned && (dm & 0x80);
        uint8_t byte = (uint8_t)(k2 | 1);
        int frc = gms_fill(ctxs[c].ctx, h, 0, byte, extent);
        EXPECT(frc == (ro ? GMS_E_READ_ONLY : GMS_OK));
        expect_code(gms_fill(ctxs[c].ctx, h, extent, byte, 1), GMS_E_OUT_OF_BOUNDS, ro ? GMS_E_READ_ONLY : 0, 0);
        expect_code(gms_write(ctxs[c].ctx, h, UINT64_MAX - 3, scratch, 8), GMS_E_OUT_OF_BOUNDS,
                    ro ? GMS_E_READ_ONLY : 0, 0);
        for (uint64_t i = 0; i < sizeof backing; i++) {
            uint64_t ai = (uint64_t)(uintptr_t)backing + i;
            int inside = !ro && ai >= at && ai < at + extent;
            EXPECT(backing[i] == (inside ? byte : 0xca));
        }
        EXPECT(gms_read(ctxs[c].ctx, h, 0, scratch2, extent) == GMS_OK);
    }
    EXPECT(gms_free(ctxs[c].ctx, h) == GMS_OK);
    EXPECT(H.deleted == 1);
}

/* ---- pools of many tenants ----
 * New (tenant, level, language) triples, each with one buffer at a time
 * (up to 128 per call: a new pool costs about a millisecond, and an
 * input of 32 such calls already sees more triples than the handle table
 * has pages) or up to 32 alive together, then freed and closed. Shared
 * metadata must not run out for ever (known defect 3): every allocation
 * succeeds. */
static unsigned many_counter;

static void op_many(reader *r)
{
    uint8_t m = u8(r);
    uint64_t n = u64(r);
    int together = (m & 1) != 0;
    unsigned count = together ? 1 + (unsigned)(n % 32) : 1 + (unsigned)(n % 128);
    gms_context *held[32];
    gms_buf hb[32];
    for (unsigned i = 0; i < count; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%u", many_counter++);
        gms_context_desc desc;
        gms_context_desc_init(&desc);
        desc.tenant = name;
        desc.user = "many";
        desc.level = (gms_level)((m >> 1) % 4);
        desc.language = (gms_language)((m >> 3) % 8);
        gms_context *x = NULL;
        EXPECT(gms_context_open(&x, rt, &desc) == GMS_OK);
        gms_buf h = GMS_BUF_NULL;
        EXPECT(gms_alloc(x, 1 + (size_t)((n >> 10) + i) % 4096, 0, &h) == GMS_OK);
        if (together) {
            held[i] = x;
            hb[i] = h;
            continue;
        }
        EXPECT(gms_free(x, h) == GMS_OK);
        gms_context_close(x);
    }
    for (unsigned i = 0; together && i < count; i++) {
        EXPECT(gms_free(held[i], hb[i]) == GMS_OK);
        gms_context_close(held[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!scratch) {
        scratch = malloc(SCRATCH);
        scratch2 = malloc(SCRATCH);
        if (!scratch || !scratch2)
            return 0;
    }
    reader r = {data, size, 0};
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64u << 10;
    o.chunk_bytes = 4u << 20;
    o.log = fuzz_log;
    EXPECT(gms_runtime_open(&rt, &o) == GMS_OK);
    EXPECT(gms_on_violation(rt, on_violation, NULL) == GMS_OK);
    many_counter = 0;
    cb_mode = 0;
    memset(ctxs, 0, sizeof ctxs);
    memset(bufs, 0, sizeof bufs);
    memset(dead, 0, sizeof dead);
    ndead = 0;
    for (int t = 0; t < NTEN; t++) {
        tenants[t].live_bytes = tenants[t].live_blocks = 0;
        tenants[t].max_bytes = 8u << 20;
        tenants[t].max_allocs = GMS_UNLIMITED;
        EXPECT(gms_tenant_set_quota(rt, tenant_name[t], tenants[t].max_bytes,
                                    tenants[t].max_allocs) == GMS_OK);
    }
    gms_context_desc cd;
    gms_context_desc_init(&cd);
    cd.tenant = "callbacks";
    cd.user = "cb";
    EXPECT(gms_context_open(&cb_ctx, rt, &cd) == GMS_OK);
    /* Two contexts to start with, so short inputs do something. */
    for (int c = 0; c < 2; c++) {
        gms_context_desc d;
        gms_context_desc_init(&d);
        d.tenant = tenant_name[c];
        d.user = "u";
        EXPECT(gms_context_open(&ctxs[c].ctx, rt, &d) == GMS_OK);
        ctxs[c].tenant = c;
        ctxs[c].level = d.level;
        ctxs[c].lang = d.language;
    }

    for (int ops = 0; ops < MAX_OPS && r.pos < r.n; ops++) {
        uint8_t op = u8(&r);
        cb_mode = (uint8_t)(op * 0x9d) >> 3; /* what the callbacks do meanwhile */
        switch (op % 19) {
        case 14: op_corrupt(&r); break;
        case 15: op_dlpack(&r); break;
        case 16: op_hostile(&r); break;
        case 17: op_many(&r); break;
        case 18: op_corrupt(&r); break;
        case 0: op_open(&r); break;
        case 12: op_share(&r); break;
        case 13: op_transfer(&r); break;
        case 1:
        case 2: op_alloc(&r); break;
        case 3: op_free(&r); break;
        case 4: op_write(&r, 0); break;
        case 5: op_write(&r, 1); break;
        case 6: op_read(&r); break;
        case 7: op_copy(&r); break;
        case 8: op_probe(&r); break;
        case 9: op_quota(&r); break;
        default: op_misc(&r); break;
        }
    }

    check_stats();
    check_verify();
    for (int c = 0; c < NCTX; c++)
        close_ctx(c);
    for (int t = 0; t < NTEN; t++)
        EXPECT(tenants[t].live_blocks == 0 && tenants[t].live_bytes == 0);
    check_stats();
    check_verify();
    gms_context *x = cb_ctx;
    cb_ctx = NULL;
    gms_context_close(x);
    gms_runtime_close(rt);
    rt = NULL;
    return 0;
}
