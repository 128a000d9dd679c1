/*
 * api.c: a libFuzzer target for the public API. Each input is a program: a
 * sequence of calls (open/close up to 4 contexts of 3 tenants, alloc of
 * sizes from 0 to huge, free, read/write/copy/fill at offsets and lengths
 * in bounds, at the edge, beyond it and overflowing, uses of random, stale
 * and other contexts' handles, quotas, stats, verify, info, raw pointers,
 * shares acquired, read and released by other contexts, transfers)
 * on one private runtime. A model tracks what each call must return and
 * what every live buffer holds; any disagreement traps. Everything is
 * closed at the end of each input.
 */
#include "gms.h"

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

static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    (void)msg;
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
    EXPECT(s.tenants == NTEN);
    uint64_t open = 0;
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

static void close_ctx(int c)
{
    if (!ctxs[c].ctx)
        return;
    gms_context_close(ctxs[c].ctx);
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
        EXPECT(gms_tenant_stats_get(rt, NTEN + u8(r), (gms_tenant_stats *)scratch) ==
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
    o.log = quiet_log;
    EXPECT(gms_runtime_open(&rt, &o) == GMS_OK);
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
        switch (u8(&r) % 14) {
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
    gms_runtime_close(rt);
    rt = NULL;
    return 0;
}
