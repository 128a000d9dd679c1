/*
 * background.c: the background verifier (verify_interval_ms = 20) finds a
 * live buffer's broken redzone within a second without any call from the
 * program, calls the violation callback from its own thread, and the next
 * call on the buffer returns GMS_E_CORRUPTION; it also finds a write after
 * free while the block waits in quarantine. Clean buffers are never
 * reported, and closing the runtime stops it.
 */
#include "util.h"

static bool wait_for(unsigned n, unsigned ms)
{
    for (unsigned t = 0; t < ms; t += 5) {
        if (rec_count() >= n)
            return true;
        sleep_ms(5);
    }
    return rec_count() >= n;
}

int main(void)
{
    gms_runtime_options o = safety_opts();
    o.verify_interval_ms = 20;
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    gms_buf clean[32];
    for (int i = 0; i < 32; i++) {
        clean[i] = alloc_or_die(c, 1000 * (size_t)(i + 1));
        CHECK_OK(gms_fill(c, clean[i], 0, 0xab, 1000 * (size_t)(i + 1)));
    }
    rec_reset();
    sleep_ms(100); /* several passes over clean memory */
    CHECK(rec_count() == 0);

    gms_buf b = alloc_or_die(c, 333);
    raw(c, b)[333 + 7] ^= 0x21;
    CHECK(wait_for(1, 1000));
    CHECK(rec.e[0].kind == GMS_VIOLATION_OVERFLOW && rec.e[0].handle == b && rec.e[0].offset == 340);
    CHECK(strstr(rec.e[0].message, "verifier") != NULL);
    uint8_t x;
    CHECK_RC(gms_read(c, b, 0, &x, 1), GMS_E_CORRUPTION);
    CHECK(strstr(gms_error_last(), "+340") != NULL);
    CHECK_OK(gms_read(c, b, 0, &x, 1));
    CHECK_OK(gms_free(c, b));

    /* A write after free, found while the block waits in quarantine. */
    gms_buf w = alloc_or_die(c, 2000);
    uint8_t *p = raw(c, w);
    CHECK_OK(gms_free(c, w));
    rec_reset();
    p[1999] ^= 0x01;
    CHECK(wait_for(1, 1000));
    CHECK(rec.e[0].kind == GMS_VIOLATION_WRITE_AFTER_FREE && rec.e[0].handle == w &&
          rec.e[0].offset == 1999);

    for (int i = 0; i < 32; i++)
        CHECK_OK(gms_free(c, clean[i]));
    gms_context_close(c);
    gms_runtime_close(rt); /* joins the verifier */
    return test_done();
}
