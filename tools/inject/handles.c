/*
 * handles.c: gms-inject's classes of handle and API misuse: a double free,
 * stale, forged and other tenants' handles in every call, and checked
 * calls out of bounds. Each must be refused and leave the buffers as they
 * were.
 */
#include "inject.h"

#include <inttypes.h>
#include <string.h>

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

void run_double_free(tally *t)
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

void run_stale_handle(tally *t)
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

void run_forged_handle(tally *t)
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

void run_cross_tenant(tally *t)
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

void run_host_oob(tally *t)
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

