/*
 * wipe.c: memory freed by one context is wiped before another context of
 * the same (tenant, level, language) gets it back. For every level (and
 * SECRET with secret_multipass), a buffer holding a secret is freed and
 * allocated again by another user's context until the same address comes
 * back (no quarantine, so that is at once); reading it shows no byte of the
 * secret: each aligned word holds the poison or zeros (memory the host
 * backend unmapped at the free and mapped fresh), never the secret's.
 */
#include "util.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next_rand(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void wipe_case(gms_level level, int multipass, size_t size)
{
    gms_runtime_options o = safety_opts();
    o.quarantine_blocks = 1;
    o.quarantine_bytes = 1; /* the newest freed block only waits */
    o.secret_multipass = multipass;
    gms_runtime *rt = safety_open(&o);
    gms_context *a = ctx_of(rt, "bank", "alice", level);
    gms_context *b = ctx_of(rt, "bank", "mallory", level);
    size_t words = size / 8;
    uint64_t *secret = malloc(words * 8), *seen = malloc(words * 8);
    for (size_t i = 0; i < words; i++)
        do
            secret[i] = next_rand();
        while (secret[i] == 0);
    /* Made before the secret's buffer: freed after it, it pushes that block
     * out of quarantine, and the freed block then joins the free space
     * after it, where the next allocation of that size starts. */
    gms_buf pusher = alloc_or_die(a, 64);
    gms_buf s = alloc_or_die(a, size);
    CHECK_OK(gms_write(a, s, 0, secret, words * 8));
    uint8_t *addr = raw(a, s);
    rec_reset();
    CHECK_OK(gms_free(a, s));
    CHECK_OK(gms_free(a, pusher));
    /* Allocate from the other context until the address comes back. */
    gms_buf got = GMS_BUF_NULL, tries[64];
    int n = 0;
    for (; n < 64; n++) {
        tries[n] = alloc_or_die(b, size);
        if (raw(b, tries[n]) == addr) {
            got = tries[n];
            break;
        }
    }
    CHECK(got != GMS_BUF_NULL);
    if (got) {
        CHECK_OK(gms_read(b, got, 0, seen, words * 8));
        uint64_t poison = 0, leaked = 0, zero = 0;
        for (size_t i = 0; i < words; i++)
            if (seen[i] && !poison)
                poison = seen[i];
        for (size_t i = 0; i < words; i++) {
            leaked += seen[i] == secret[i];
            zero += seen[i] == 0;
            if (seen[i] != 0 && seen[i] != poison)
                leaked++;
        }
        if (leaked)
            fprintf(stderr, "level %s multipass %d size %zu: %llu words not wiped\n",
                    gms_level_name(level), multipass, size, (unsigned long long)leaked);
        CHECK(leaked == 0);
        CHECK(poison != 0);
        for (int i = 0; i < 8; i++) /* no 0x00 or 0xff byte in the poison */
            CHECK(((poison >> (8 * i)) & 0xff) != 0 && ((poison >> (8 * i)) & 0xff) != 0xff);
        /* Only whole unmapped granules may read as zeros. */
        CHECK(size >= (2u << 20) || zero == 0);
    }
    for (int i = 0; i <= n && i < 64; i++)
        CHECK_OK(gms_free(b, tries[i]));
    CHECK(rec_count() == 0); /* no failed wipe, no corruption */
    free(secret);
    free(seen);
    gms_context_close(a);
    gms_context_close(b);
    gms_runtime_close(rt);
}

int main(void)
{
    static const size_t sizes[] = {8, 256, 4096, 100000, 5u << 20};
    for (int level = GMS_LEVEL_PUBLIC; level <= GMS_LEVEL_SECRET; level++)
        for (int multipass = 0; multipass <= 1; multipass++)
            for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
                wipe_case((gms_level)level, multipass, sizes[i]);
    return test_done();
}
