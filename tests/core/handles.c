/*
 * handles.c: buffer handles are generational and keyed. Alloc gives
 * non-zero distinct handles; a freed handle is refused (double free, use
 * after free), also once its slot is reused; a handle of another runtime is
 * refused; 0 is never valid; random 64-bit values are refused (the design
 * bound is < 2^-20 each; we require none of 2,000,000 to pass); flipping any
 * one bit of a live handle makes it invalid, always (the parity bit), even
 * where the flip lands on another live slot of the same generation.
 */
#include "test.h"

/* The handle's layout (core/pool.h), used to recognise when a slot was
 * reused and to aim random values at live slots. */
#include "core/internal.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static gms_runtime *open_rt(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    return rt;
}

static gms_context *open_ctx(gms_runtime *rt, const char *tenant)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "tester";
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    return ctx;
}

#define LIVE 1000

int main(void)
{
    gms_runtime *rt = open_rt();
    gms_context *ctx = open_ctx(rt, "acme");
    if (!rt || !ctx)
        return test_done();

    /* Non-zero, distinct. */
    gms_buf hs[64];
    for (int i = 0; i < 64; i++) {
        CHECK_OK(gms_alloc(ctx, (size_t)(i + 1) * 100, 0, &hs[i]));
        CHECK(hs[i] != GMS_BUF_NULL);
        for (int j = 0; j < i; j++)
            CHECK(hs[i] != hs[j]);
    }
    for (int i = 0; i < 64; i++)
        CHECK_OK(gms_free(ctx, hs[i]));

    /* Double free and use after free. */
    gms_buf a;
    CHECK_OK(gms_alloc(ctx, 1000, 0, &a));
    CHECK_OK(gms_free(ctx, a));
    CHECK_RC(gms_free(ctx, a), GMS_E_INVALID_HANDLE);
    CHECK(gms_error_last()[0] != 0);
    char byte = 0;
    CHECK_RC(gms_read(ctx, a, 0, &byte, 1), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_write(ctx, a, 0, &byte, 1), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_fill(ctx, a, 0, 7, 1), GMS_E_INVALID_HANDLE);
    void *p = (void *)&byte;
    CHECK_RC(gms_buf_ptr(ctx, a, &p), GMS_E_INVALID_HANDLE);
    gms_buf_info info;
    CHECK_RC(gms_buf_info_get(ctx, a, &info), GMS_E_INVALID_HANDLE);

    /* A stale handle after its slot is reused: allocate (keeping them
     * live) until one lands in a's slot. */
    {
        static gms_buf keep[4096];
        int n = 0, reused = -1;
        for (; n < 4096; n++) {
            CHECK_OK(gms_alloc(ctx, 256, 0, &keep[n]));
            if (gms__handle_slot(keep[n]) == gms__handle_slot(a)) {
                reused = n++;
                break;
            }
        }
        CHECK(reused >= 0);
        if (reused >= 0) {
            gms_buf b = keep[reused];
            CHECK(b != a);
            CHECK_RC(gms_free(ctx, a), GMS_E_INVALID_HANDLE);
            CHECK_RC(gms_read(ctx, a, 0, &byte, 1), GMS_E_INVALID_HANDLE);
            CHECK_RC(gms_buf_ptr(ctx, a, &p), GMS_E_INVALID_HANDLE);
            CHECK_OK(gms_write(ctx, b, 0, "x", 1));
            CHECK_OK(gms_read(ctx, b, 0, &byte, 1));
            CHECK(byte == 'x');
            CHECK_OK(gms_buf_ptr(ctx, b, &p));
            /* The stale handle did not free the new buffer. */
            CHECK_OK(gms_buf_info_get(ctx, b, &info));
        }
        for (int i = 0; i < n; i++)
            CHECK_OK(gms_free(ctx, keep[i]));
    }

    /* A handle of another private runtime is refused, both ways. */
    {
        gms_runtime *rt2 = open_rt();
        gms_context *ctx2 = rt2 ? open_ctx(rt2, "acme") : NULL;
        if (ctx2) {
            gms_buf mine, theirs;
            CHECK_OK(gms_alloc(ctx, 512, 0, &mine));
            CHECK_OK(gms_alloc(ctx2, 512, 0, &theirs));
            CHECK_RC(gms_read(ctx, theirs, 0, &byte, 1), GMS_E_INVALID_HANDLE);
            CHECK_RC(gms_buf_ptr(ctx, theirs, &p), GMS_E_INVALID_HANDLE);
            CHECK_RC(gms_free(ctx, theirs), GMS_E_INVALID_HANDLE);
            CHECK_RC(gms_read(ctx2, mine, 0, &byte, 1), GMS_E_INVALID_HANDLE);
            CHECK_RC(gms_free(ctx2, mine), GMS_E_INVALID_HANDLE);
            /* Both still live in their own runtimes. */
            CHECK_OK(gms_buf_ptr(ctx, mine, &p));
            CHECK_OK(gms_buf_ptr(ctx2, theirs, &p));
            CHECK_OK(gms_free(ctx, mine));
            CHECK_OK(gms_free(ctx2, theirs));
        }
        gms_context_close(ctx2);
        gms_runtime_close(rt2);
    }

    /* GMS_BUF_NULL is never valid. */
    {
        int rc = gms_free(ctx, GMS_BUF_NULL);
        CHECK(rc == GMS_E_INVALID_HANDLE || rc == GMS_E_INVALID_ARG);
        rc = gms_read(ctx, GMS_BUF_NULL, 0, &byte, 1);
        CHECK(rc == GMS_E_INVALID_HANDLE || rc == GMS_E_INVALID_ARG);
        rc = gms_buf_ptr(ctx, GMS_BUF_NULL, &p);
        CHECK(rc == GMS_E_INVALID_HANDLE || rc == GMS_E_INVALID_ARG);
        rc = gms_buf_info_get(ctx, GMS_BUF_NULL, &info);
        CHECK(rc == GMS_E_INVALID_HANDLE || rc == GMS_E_INVALID_ARG);
    }

    /* ~1000 live handles, with some churn so generations are above 1. */
    static gms_buf live[LIVE];
    uint64_t seed = 0x5eed1234abcdull;
    for (int i = 0; i < LIVE; i++)
        CHECK_OK(gms_alloc(ctx, 256 + (size_t)(splitmix64(&seed) % 4096), 0, &live[i]));
    for (int i = 0; i < LIVE; i += 3) {
        CHECK_OK(gms_free(ctx, live[i]));
        CHECK_OK(gms_alloc(ctx, 300, 0, &live[i]));
    }

    /* Random 64-bit values: none accepted. Half are wholly random, half
     * keep a live handle's slot and randomise the rest (so the lookup
     * reaches a live slot and must refuse on generation and check bits). */
    {
        uint64_t accepted = 0, wrong_code = 0;
        uint64_t s = 0x0123456789abcdefull;
        for (long i = 0; i < 2000000; i++) {
            uint64_t v = splitmix64(&s);
            if (i & 1) {
                gms_buf h = live[v % LIVE];
                uint64_t r = splitmix64(&s);
                v = (h & ~((1ull << GMS_SLOT_SHIFT) - 1)) | (r & ((1ull << GMS_SLOT_SHIFT) - 1));
            }
            void *q = NULL;
            int rc = gms_buf_ptr(ctx, v, &q);
            if (rc == GMS_OK) {
                /* Only a real live handle may pass (chance 2^-40 here). */
                int real = 0;
                for (int j = 0; j < LIVE; j++)
                    real |= live[j] == v;
                if (!real)
                    accepted++;
            } else if (rc != GMS_E_INVALID_HANDLE) {
                wrong_code++;
            }
        }
        printf("random handles: %" PRIu64 " of 2000000 accepted, %" PRIu64
               " refused with a code other than GMS_E_INVALID_HANDLE\n",
               accepted, wrong_code);
        CHECK(accepted == 0);
        CHECK(wrong_code == 0);
    }

    /* Flipping any single bit of a live handle makes it invalid. */
    {
        int bad = 0;
        for (int i = 0; i < LIVE; i += 7) {
            for (int bit = 0; bit < 64; bit++) {
                gms_buf f = live[i] ^ (1ull << bit);
                void *q = NULL;
                int rc = gms_buf_ptr(ctx, f, &q);
                if (rc != GMS_E_INVALID_HANDLE) {
                    if (bad++ < 10)
                        fprintf(stderr, "handle 0x%016" PRIx64 " bit %d flipped: rc %d\n",
                                live[i], bit, rc);
                }
                rc = gms_free(ctx, f);
                if (rc != GMS_E_INVALID_HANDLE)
                    bad++;
            }
            /* Still live after all that. */
            void *q = NULL;
            CHECK_OK(gms_buf_ptr(ctx, live[i], &q));
        }
        CHECK(bad == 0);
    }

    for (int i = 0; i < LIVE; i++)
        CHECK_OK(gms_free(ctx, live[i]));
    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.live_handles == 0);
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
