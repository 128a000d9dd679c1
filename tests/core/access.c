/*
 * access.c: gms_write, gms_read, gms_copy and gms_fill move the right bytes;
 * every access not wholly inside the buffer (an overflowing offset plus
 * length included) returns GMS_E_OUT_OF_BOUNDS and changes nothing; a
 * length of 0 is valid up to the end; NULL host pointers with a length are
 * refused; copy within one buffer behaves like memmove; GMS_ALLOC_ZERO
 * gives zeros; gms_buf_ptr agrees with gms_buf_info, which describes the
 * buffer and its owner.
 */
#include "test.h"

#define SIZE 1000u /* not a multiple of the alignment on purpose */
/* Block size with the default options (safety on, 32-byte redzone):
 * request plus redzone, rounded up to the alignment (docs/api.md). */
#define REDZONE 32u
#define BLK(n) (((uint64_t)(n) + REDZONE + GMS_ALIGNMENT - 1) / GMS_ALIGNMENT * GMS_ALIGNMENT)

static gms_runtime *rt;
static gms_context *ctx;

/* The buffer's bytes equal want. */
static int same(gms_buf b, const uint8_t *want, size_t n)
{
    uint8_t *got = malloc(n);
    int ok = got && gms_read(ctx, b, 0, got, n) == GMS_OK && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = "acme";
    d.user = "alice";
    d.level = GMS_LEVEL_CONFIDENTIAL;
    d.language = GMS_LANG_JULIA;
    if (rt)
        CHECK_OK(gms_context_open(&ctx, rt, &d));
    if (!ctx) {
        gms_runtime_close(rt);
        return test_done();
    }

    static uint8_t pat[SIZE], mirror[SIZE], tmp[SIZE + 64];
    for (unsigned i = 0; i < SIZE; i++)
        pat[i] = (uint8_t)(i * 7 + 3);

    gms_buf a, b;
    CHECK_OK(gms_alloc(ctx, SIZE, 0, &a));
    CHECK_OK(gms_alloc(ctx, SIZE, 0, &b));

    /* Round trips. */
    CHECK_OK(gms_write(ctx, a, 0, pat, SIZE));
    memset(tmp, 0, sizeof tmp);
    CHECK_OK(gms_read(ctx, a, 0, tmp, SIZE));
    CHECK(memcmp(tmp, pat, SIZE) == 0);
    memcpy(mirror, pat, SIZE);
    CHECK_OK(gms_write(ctx, a, 100, "hello", 5));
    memcpy(mirror + 100, "hello", 5);
    CHECK_OK(gms_write(ctx, a, SIZE - 1, "Z", 1));
    mirror[SIZE - 1] = 'Z';
    CHECK(same(a, mirror, SIZE));
    CHECK_OK(gms_read(ctx, a, 98, tmp, 9));
    CHECK(memcmp(tmp, mirror + 98, 9) == 0);
    CHECK_OK(gms_fill(ctx, a, 200, 0xab, 50));
    memset(mirror + 200, 0xab, 50);
    CHECK(same(a, mirror, SIZE));
    CHECK_OK(gms_fill(ctx, a, 0, 255, 1));
    mirror[0] = 255;
    CHECK_RC(gms_fill(ctx, a, 0, 256, 1), GMS_E_INVALID_ARG);
    CHECK_RC(gms_fill(ctx, a, 0, -1, 1), GMS_E_INVALID_ARG);
    CHECK(same(a, mirror, SIZE));

    /* Copy between buffers. */
    static uint8_t mb[SIZE];
    CHECK_OK(gms_fill(ctx, b, 0, 0x11, SIZE));
    memset(mb, 0x11, SIZE);
    CHECK_OK(gms_copy(ctx, b, 10, a, 500, 300));
    memcpy(mb + 10, mirror + 500, 300);
    CHECK(same(b, mb, SIZE));
    CHECK(same(a, mirror, SIZE));
    CHECK_OK(gms_copy(ctx, b, 0, a, 0, SIZE));
    memcpy(mb, mirror, SIZE);
    CHECK(same(b, mb, SIZE));

    /* Out of bounds, every form; nothing changes. */
    struct { uint64_t off; size_t len; } oob[] = {
        {SIZE, 1},                 /* off == size, len 1 */
        {SIZE - 7, 8},             /* off + len == size + 1 */
        {SIZE + 1, 0},             /* off > size, even with len 0 */
        {SIZE + 1, 1},
        {1ull << 40, 4},           /* huge off */
        {UINT64_MAX, 1},
        {UINT64_MAX - 3, 8},       /* off + len overflows uint64 */
        {8, SIZE_MAX - 3},         /* len + off overflows the other way */
        {0, SIZE + 1},             /* len > size */
        {0, SIZE_MAX},
    };
    static uint8_t big[SIZE + 64];
    memset(big, 0xee, sizeof big);
    for (size_t i = 0; i < sizeof oob / sizeof oob[0]; i++) {
        /* Lengths beyond our host array are never touched by a correct
         * library (it refuses before copying). */
        uint64_t off = oob[i].off;
        size_t len = oob[i].len;
        CHECK_RC(gms_write(ctx, a, off, big, len), GMS_E_OUT_OF_BOUNDS);
        CHECK_RC(gms_fill(ctx, a, off, 0xee, len), GMS_E_OUT_OF_BOUNDS);
        memset(tmp, 0x5a, sizeof tmp);
        CHECK_RC(gms_read(ctx, a, off, tmp, len), GMS_E_OUT_OF_BOUNDS);
        int untouched = 1;
        for (size_t k = 0; k < sizeof tmp; k++)
            untouched &= tmp[k] == 0x5a;
        CHECK(untouched);
        /* Copy: destination range out, then source range out. */
        CHECK_RC(gms_copy(ctx, b, off, a, 0, len), GMS_E_OUT_OF_BOUNDS);
        CHECK_RC(gms_copy(ctx, b, 0, a, off, len), GMS_E_OUT_OF_BOUNDS);
        CHECK(same(a, mirror, SIZE));
        CHECK(same(b, mb, SIZE));
    }
    /* Copy with one side in bounds and the other just out. */
    CHECK_RC(gms_copy(ctx, b, SIZE - 10, a, 0, 11), GMS_E_OUT_OF_BOUNDS);
    CHECK_RC(gms_copy(ctx, b, 0, a, SIZE - 10, 11), GMS_E_OUT_OF_BOUNDS);
    CHECK_RC(gms_copy(ctx, a, 600, a, 0, SIZE - 599), GMS_E_OUT_OF_BOUNDS);
    CHECK(same(a, mirror, SIZE));
    CHECK(same(b, mb, SIZE));
    CHECK(gms_error_last()[0] != 0);

    /* Bytes past the requested size, inside the block, are not ours. */
    {
        gms_buf_info info;
        CHECK_OK(gms_buf_info_get(ctx, a, &info));
        CHECK(info.block_size == BLK(SIZE)); /* 1000 + 32 rounds up to 1280 */
        CHECK_RC(gms_write(ctx, a, SIZE, big, 24), GMS_E_OUT_OF_BOUNDS);
        CHECK_RC(gms_read(ctx, a, 0, tmp, SIZE + 24), GMS_E_OUT_OF_BOUNDS);
    }

    /* Length 0: valid anywhere up to the end, with any host pointer. */
    CHECK_OK(gms_write(ctx, a, SIZE, big, 0));
    CHECK_OK(gms_read(ctx, a, SIZE, tmp, 0));
    CHECK_OK(gms_fill(ctx, a, SIZE, 1, 0));
    CHECK_OK(gms_copy(ctx, b, SIZE, a, SIZE, 0));
    CHECK_OK(gms_write(ctx, a, 0, NULL, 0));
    CHECK_OK(gms_read(ctx, a, 5, NULL, 0));
    CHECK(same(a, mirror, SIZE));

    /* NULL host pointers with a length. */
    CHECK_RC(gms_write(ctx, a, 0, NULL, 1), GMS_E_INVALID_ARG);
    CHECK_RC(gms_read(ctx, a, 0, NULL, 1), GMS_E_INVALID_ARG);
    CHECK(same(a, mirror, SIZE));

    /* Overlapping copies within one buffer behave like memmove. */
    CHECK_OK(gms_copy(ctx, a, 10, a, 0, 500)); /* forward overlap */
    memmove(mirror + 10, mirror, 500);
    CHECK(same(a, mirror, SIZE));
    CHECK_OK(gms_copy(ctx, a, 3, a, 400, 597)); /* backward overlap */
    memmove(mirror + 3, mirror + 400, 597);
    CHECK(same(a, mirror, SIZE));
    CHECK_OK(gms_copy(ctx, a, 1, a, 0, SIZE - 1)); /* shift by one */
    memmove(mirror + 1, mirror, SIZE - 1);
    CHECK(same(a, mirror, SIZE));
    CHECK_OK(gms_copy(ctx, a, 0, a, 1, SIZE - 1));
    memmove(mirror, mirror + 1, SIZE - 1);
    CHECK(same(a, mirror, SIZE));
    CHECK_OK(gms_copy(ctx, a, 77, a, 77, 100)); /* onto itself */
    CHECK(same(a, mirror, SIZE));

    /* GMS_ALLOC_ZERO gives zeros, also in memory reused from a dirty
     * buffer. */
    for (int round = 0; round < 4; round++) {
        gms_buf dirty, z;
        CHECK_OK(gms_alloc(ctx, 4096, 0, &dirty));
        CHECK_OK(gms_fill(ctx, dirty, 0, 0xcd, 4096));
        CHECK_OK(gms_free(ctx, dirty));
        CHECK_OK(gms_alloc(ctx, 4096, GMS_ALLOC_ZERO, &z));
        static uint8_t zb[4096];
        memset(zb, 0xff, sizeof zb);
        CHECK_OK(gms_read(ctx, z, 0, zb, sizeof zb));
        int zero = 1;
        for (size_t k = 0; k < sizeof zb; k++)
            zero &= zb[k] == 0;
        CHECK(zero);
        gms_buf_info zi;
        CHECK_OK(gms_buf_info_get(ctx, z, &zi));
        CHECK(zi.flags == GMS_ALLOC_ZERO);
        CHECK_OK(gms_free(ctx, z));
    }
    {
        gms_buf x;
        CHECK_RC(gms_alloc(ctx, 64, 0x80000000u, &x), GMS_E_INVALID_ARG);
        CHECK(x == GMS_BUF_NULL);
    }

    /* gms_buf_ptr == info.device_ptr, aligned; info describes the buffer. */
    size_t sizes[] = {1, 255, 256, 257, 1000, 4096, 65537, 3u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        gms_buf h;
        CHECK_OK(gms_alloc(ctx, sizes[i], 0, &h));
        void *p = NULL;
        gms_buf_info info;
        memset(&info, 0x7f, sizeof info);
        CHECK_OK(gms_buf_ptr(ctx, h, &p));
        CHECK_OK(gms_buf_info_get(ctx, h, &info));
        CHECK(p != NULL);
        CHECK((uint64_t)(uintptr_t)p == info.device_ptr);
        CHECK(info.device_ptr % GMS_ALIGNMENT == 0);
        CHECK(info.size == sizes[i]);
        CHECK(info.block_size == BLK(sizes[i]));
        CHECK(strcmp(info.tenant, "acme") == 0);
        CHECK(strcmp(info.user, "alice") == 0);
        CHECK(info.level == GMS_LEVEL_CONFIDENTIAL);
        CHECK(info.language == GMS_LANG_JULIA);
        CHECK(info.flags == 0);
        /* Host backend: the raw pointer reaches the same bytes. */
        CHECK_OK(gms_fill(ctx, h, sizes[i] - 1, 0x42, 1));
        CHECK(((volatile uint8_t *)p)[sizes[i] - 1] == 0x42);
        CHECK_OK(gms_free(ctx, h));
    }
    CHECK_RC(gms_buf_ptr(ctx, a, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_buf_info_get(ctx, a, NULL), GMS_E_INVALID_ARG);

    CHECK_OK(gms_free(ctx, a));
    CHECK_OK(gms_free(ctx, b));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
