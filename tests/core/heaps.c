/*
 * heaps.c: small buffers (up to 1 MiB) and large ones come from separate
 * heaps of a pool (core/pool.h), so a small buffer allocated between two
 * large ones never splits the room they leave: once both large ones are
 * freed, one buffer of their combined size takes their place, mapping
 * nothing new. Mixed in one heap, the small one would sit between them.
 */
#include "test.h"

#define MIB ((size_t)1 << 20)

static uint64_t addr_of(gms_context *ctx, gms_buf b)
{
    void *p = NULL;
    CHECK_OK(gms_buf_ptr(ctx, b, &p));
    return (uint64_t)(uintptr_t)p;
}

static uint64_t held(gms_runtime *rt)
{
    gms_stats s;
    CHECK_OK(gms_stats_get(rt, &s));
    return s.held_bytes;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.safety = GMS_SAFETY_OFF; /* freed memory is reusable at once */
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = "t";
    d.user = "u";
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, rt, &d));

    gms_buf l1, s, l2, both;
    CHECK_OK(gms_alloc(ctx, 4 * MIB, 0, &l1));
    CHECK_OK(gms_alloc(ctx, 4096, 0, &s));
    CHECK_OK(gms_alloc(ctx, 4 * MIB, 0, &l2));
    uint64_t a1 = addr_of(ctx, l1), as = addr_of(ctx, s), a2 = addr_of(ctx, l2);
    CHECK(a2 == a1 + 4 * MIB); /* the large ones adjacent ... */
    CHECK(as < a1 || as >= a2 + 4 * MIB); /* ... the small one elsewhere */

    uint64_t before = held(rt);
    CHECK_OK(gms_free(ctx, l1));
    CHECK_OK(gms_free(ctx, l2));
    CHECK_OK(gms_alloc(ctx, 8 * MIB, 0, &both));
    CHECK(addr_of(ctx, both) == a1);
    CHECK(held(rt) <= before);

    CHECK_OK(gms_free(ctx, both));
    CHECK_OK(gms_free(ctx, s));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
