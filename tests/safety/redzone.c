/*
 * redzone.c: raw writes past the end or before the start of a buffer are
 * caught when it is freed (GMS_E_CORRUPTION, a message naming the offset,
 * one violation callback with kind, handle, offset and size); gms_verify
 * finds a live buffer's broken redzone and the next call on it returns
 * GMS_E_CORRUPTION once; a write into free memory is found by gms_verify.
 */
#include "util.h"

static bool msg_has(const char *needle)
{
    return strstr(gms_error_last(), needle) != NULL;
}

static void overflow_at_free(void)
{
    gms_runtime_options o = safety_opts();
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "alice", GMS_LEVEL_INTERNAL);

    /* One byte past the end. */
    gms_buf b = alloc_or_die(c, 100);
    raw(c, b)[100] ^= 0x5a;
    rec_reset();
    CHECK_RC(gms_free(c, b), GMS_E_CORRUPTION);
    CHECK(msg_has("offset +100"));
    CHECK(msg_has("overflow"));
    CHECK(rec_count() == 1);
    CHECK(rec.e[0].kind == GMS_VIOLATION_OVERFLOW);
    CHECK(rec.e[0].handle == b);
    CHECK(rec.e[0].offset == 100);
    CHECK(rec.e[0].size == 100);
    CHECK(strcmp(rec.e[0].tenant, "t") == 0);
    CHECK(strstr(rec.e[0].message, "allocated by user 'alice'") != NULL);
    /* The handle died all the same. */
    CHECK_RC(gms_free(c, b), GMS_E_INVALID_HANDLE);

    /* The last redzone byte: 224 + 32 fills a 256-byte block exactly. */
    b = alloc_or_die(c, 224);
    raw(c, b)[255] ^= 0x01;
    rec_reset();
    CHECK_RC(gms_free(c, b), GMS_E_CORRUPTION);
    CHECK(msg_has("offset +255"));
    CHECK(rec_count() == 1 && rec.e[0].offset == 255);

    /* Every byte of the redzone, one at a time, on sizes around 256. */
    for (size_t size = 200; size <= 300; size += 7) {
        for (unsigned d = 0; d < 32; d++) {
            b = alloc_or_die(c, size);
            raw(c, b)[size + d] ^= 0x80;
            rec_reset();
            int rc = gms_free(c, b);
            CHECK_RC(rc, GMS_E_CORRUPTION);
            CHECK(rec_count() == 1 && rec.e[0].offset == (int64_t)(size + d));
        }
    }

    /* An untouched buffer frees cleanly and reports nothing. */
    b = alloc_or_die(c, 1000);
    CHECK_OK(gms_fill(c, b, 0, 0xff, 1000));
    rec_reset();
    CHECK_OK(gms_free(c, b));
    CHECK(rec_count() == 0);

    /* A larger redzone is honoured. */
    gms_context_close(c);
    gms_runtime_close(rt);
    o.redzone_bytes = 300;
    rt = safety_open(&o);
    c = ctx_of(rt, "t", "alice", GMS_LEVEL_INTERNAL);
    b = alloc_or_die(c, 256);
    raw(c, b)[256 + 299] ^= 0x10;
    rec_reset();
    CHECK_RC(gms_free(c, b), GMS_E_CORRUPTION);
    CHECK(msg_has("offset +555"));
    gms_context_close(c);
    gms_runtime_close(rt);
}

static void underflow_at_free(void)
{
    gms_runtime_options o = safety_opts();
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "bob", GMS_LEVEL_INTERNAL);
    for (int d = 1; d <= 32; d++) {
        gms_buf n = alloc_or_die(c, 100), b = alloc_or_die(c, 100);
        uint8_t *pn = raw(c, n), *pb = raw(c, b);
        CHECK(pb == pn + 256); /* the neighbour lies right before it */
        if (pb != pn + 256)
            break;
        pb[-d] ^= 0x33;
        rec_reset();
        CHECK_RC(gms_free(c, b), GMS_E_CORRUPTION);
        char want[32];
        snprintf(want, sizeof want, "offset -%d", d);
        CHECK(msg_has(want));
        CHECK(msg_has("underflow"));
        CHECK(rec_count() == 1);
        CHECK(rec.e[0].kind == GMS_VIOLATION_UNDERFLOW);
        CHECK(rec.e[0].handle == b);
        CHECK(rec.e[0].offset == -d);
        /* The free re-armed those bytes: the neighbour is clean. */
        rec_reset();
        CHECK_OK(gms_free(c, n));
        CHECK(rec_count() == 0);
    }
    /* The neighbour freed first sees the same bytes as its own overflow
     * when they lie in its watched redzone (224 + 32 fills its block; a
     * fresh pool, so the two are laid out in order). */
    gms_context_close(c);
    c = ctx_of(rt, "t2", "bob", GMS_LEVEL_INTERNAL);
    gms_buf n = alloc_or_die(c, 224), b = alloc_or_die(c, 100);
    CHECK(raw(c, b) == raw(c, n) + 256);
    raw(c, b)[-1] ^= 0x33;
    rec_reset();
    CHECK_RC(gms_free(c, n), GMS_E_CORRUPTION);
    CHECK(rec_count() == 1 && rec.e[0].handle == n && rec.e[0].kind == GMS_VIOLATION_OVERFLOW);
    CHECK_OK(gms_free(c, b));
    gms_context_close(c);
    gms_runtime_close(rt);
}

static void verify_live(void)
{
    gms_runtime_options o = safety_opts();
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "carol", GMS_LEVEL_INTERNAL);
    gms_buf b = alloc_or_die(c, 1000);
    raw(c, b)[1005] ^= 0x01;
    rec_reset();
    gms_report r;
    CHECK_RC(gms_verify(rt, &r), GMS_E_CORRUPTION);
    CHECK(r.violations == 1);
    CHECK(strstr(r.first_violation, "redzone") != NULL);
    CHECK(strstr(r.first_violation, "+1005") != NULL);
    CHECK(rec_count() == 1 && rec.e[0].kind == GMS_VIOLATION_OVERFLOW && rec.e[0].handle == b &&
          rec.e[0].offset == 1005);
    /* The next call on the buffer is told, once. */
    uint8_t x[8];
    CHECK_RC(gms_read(c, b, 0, x, sizeof x), GMS_E_CORRUPTION);
    CHECK(msg_has("+1005"));
    CHECK_OK(gms_read(c, b, 0, x, sizeof x));
    CHECK_OK(gms_verify(rt, NULL)); /* re-armed */
    rec_reset();
    CHECK_OK(gms_free(c, b));
    CHECK(rec_count() == 0);

    /* The same for the bytes before a buffer. */
    gms_buf n = alloc_or_die(c, 300);
    b = alloc_or_die(c, 300);
    CHECK(raw(c, b) == raw(c, n) + 512);
    raw(c, b)[-3] ^= 0x01;
    rec_reset();
    CHECK_RC(gms_verify(rt, &r), GMS_E_CORRUPTION);
    CHECK(rec_count() >= 1);
    bool under = false;
    for (unsigned i = 0; i < rec_count() && i < REC_MAX; i++)
        under |= rec.e[i].kind == GMS_VIOLATION_UNDERFLOW && rec.e[i].handle == b && rec.e[i].offset == -3;
    CHECK(under);
    CHECK_RC(gms_write(c, b, 0, x, 1), GMS_E_CORRUPTION);
    CHECK(msg_has("-3"));
    CHECK_OK(gms_write(c, b, 0, x, 1));
    CHECK_OK(gms_free(c, b));
    gms_free(c, n); /* may also report the bytes after it: not checked */
    CHECK_OK(gms_verify(rt, NULL));

    /* A buffer the verifier flagged is still freed by either free call
     * (the flag is for the calls that use it, not for its release). */
    for (int async = 0; async < 2; async++) {
        b = alloc_or_die(c, 1000);
        raw(c, b)[1001] ^= 0x01;
        CHECK_RC(gms_verify(rt, NULL), GMS_E_CORRUPTION);
        int rc = async ? gms_free_async(c, b, NULL) : gms_free(c, b);
        CHECK(rc == GMS_OK || rc == GMS_E_CORRUPTION);
        CHECK_RC(gms_free(c, b), GMS_E_INVALID_HANDLE);
    }
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(c);
    gms_runtime_close(rt);
}

static void verify_free_memory(void)
{
    gms_runtime_options o = safety_opts();
    o.quarantine_blocks = 1;
    o.quarantine_bytes = 1; /* only the newest freed block waits */
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "dave", GMS_LEVEL_INTERNAL);
    gms_buf keep = alloc_or_die(c, 4096); /* keeps the granule mapped */
    gms_buf b = alloc_or_die(c, 4096);
    uint8_t *p = raw(c, b);
    CHECK_OK(gms_free(c, b));
    CHECK_OK(gms_free(c, alloc_or_die(c, 8192))); /* pushes b out: free memory */
    CHECK_OK(gms_verify(rt, NULL));
    p[77] ^= 0x42;
    rec_reset();
    gms_report r;
    CHECK_RC(gms_verify(rt, &r), GMS_E_CORRUPTION);
    CHECK(r.violations == 1);
    CHECK(strstr(r.first_violation, "free") != NULL);
    CHECK(rec_count() == 1 && rec.e[0].kind == GMS_VIOLATION_FREE_MEMORY &&
          rec.e[0].address == (uint64_t)(uintptr_t)(p + 77));
    CHECK_OK(gms_verify(rt, NULL)); /* reported once, then poisoned again */
    CHECK_OK(gms_free(c, keep));
    gms_context_close(c);
    gms_runtime_close(rt);
}

int main(void)
{
    overflow_at_free();
    underflow_at_free();
    verify_live();
    verify_free_memory();
    return test_done();
}
