/*
 * batch.c: with scrub_batch = 16 freed blocks are checked and poisoned 16
 * at a time (what a GPU backend does by default): a free returns at once,
 * the overflows of a batch are delivered through the callbacks when it
 * runs (the free that runs it returns GMS_E_CORRUPTION only for its own
 * buffer), and closing the pool's last context runs what is pending.
 */
#include "util.h"

int main(void)
{
    gms_runtime_options o = safety_opts();
    o.scrub_batch = 16;
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    gms_buf b[16];
    for (int i = 0; i < 16; i++)
        b[i] = alloc_or_die(c, 100 + (size_t)i);
    /* Overflow three of them: the 2nd, 7th and 16th. */
    raw(c, b[1])[101] ^= 1;
    raw(c, b[6])[106 + 5] ^= 1;
    raw(c, b[15])[115] ^= 1;
    rec_reset();
    for (int i = 0; i < 15; i++)
        CHECK_OK(gms_free(c, b[i]));
    CHECK(rec_count() == 0); /* not checked yet */
    CHECK_RC(gms_free(c, b[15]), GMS_E_CORRUPTION); /* runs the batch; its own overflow */
    CHECK(rec_count() == 3);
    bool s1 = false, s6 = false, s15 = false;
    for (unsigned i = 0; i < rec_count() && i < REC_MAX; i++) {
        CHECK(rec.e[i].kind == GMS_VIOLATION_OVERFLOW);
        s1 |= rec.e[i].handle == b[1] && rec.e[i].offset == 101;
        s6 |= rec.e[i].handle == b[6] && rec.e[i].offset == 111;
        s15 |= rec.e[i].handle == b[15] && rec.e[i].offset == 115;
    }
    CHECK(s1 && s6 && s15);

    /* A batch whose last free is clean returns GMS_OK and still reports. */
    for (int i = 0; i < 16; i++)
        b[i] = alloc_or_die(c, 1000);
    raw(c, b[3])[1000] ^= 0x40;
    rec_reset();
    for (int i = 0; i < 16; i++)
        CHECK_OK(gms_free(c, b[i]));
    CHECK(rec_count() == 1 && rec.e[0].handle == b[3]);

    /* Pending frees run when the pool's last context closes. */
    for (int i = 0; i < 5; i++)
        b[i] = alloc_or_die(c, 4000);
    raw(c, b[2])[4000 + 31] ^= 0x02;
    rec_reset();
    for (int i = 0; i < 5; i++)
        CHECK_OK(gms_free(c, b[i]));
    CHECK(rec_count() == 0);
    gms_context_close(c);
    CHECK(rec_count() == 1 && rec.e[0].handle == b[2] && rec.e[0].offset == 4031);

    /* gms_verify sees a redzone broken while its block waits in the batch?
     * No: pending blocks still hold their data; the batch checks them. */
    c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    gms_buf x = alloc_or_die(c, 64);
    raw(c, x)[64] ^= 1;
    CHECK_OK(gms_free(c, x));
    rec_reset();
    gms_context_close(c);
    CHECK(rec_count() == 1 && rec.e[0].handle == x);
    gms_runtime_close(rt);
    return test_done();
}
