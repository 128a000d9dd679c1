/*
 * off.c: safety = GMS_SAFETY_OFF really turns redzones, poison and
 * quarantine off (a raw overflow and a write after free go unnoticed, by
 * design: the mode exists to measure what safety costs), while everything
 * else holds: handles are checked, accesses are bounds-checked, quotas and
 * leaks are counted, alloc/free pairs work. The same program with safety
 * on catches both writes.
 */
#include "util.h"

/* Overflow + write after free; returns how many were reported. */
static unsigned corrupt_run(gms_safety_mode mode, int *free_rc)
{
    gms_runtime_options o = safety_opts();
    o.safety = mode;
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    rec_reset();
    gms_buf b = alloc_or_die(c, 100);
    raw(c, b)[100] ^= 1;
    *free_rc = gms_free(c, b);
    gms_buf w = alloc_or_die(c, 100);
    uint8_t *p = raw(c, w);
    CHECK_OK(gms_free(c, w));
    p[5] ^= 1;
    int vrc = gms_verify(rt, NULL);
    CHECK(mode == GMS_SAFETY_OFF ? vrc == GMS_OK : vrc == GMS_E_CORRUPTION);
    gms_context_close(c);
    gms_runtime_close(rt);
    return rec_count();
}

int main(void)
{
    int rc;
    CHECK(corrupt_run(GMS_SAFETY_OFF, &rc) == 0);
    CHECK_OK(rc);
    CHECK(corrupt_run(GMS_SAFETY_ON, &rc) == 2);
    CHECK_RC(rc, GMS_E_CORRUPTION);

    gms_runtime_options o = safety_opts();
    o.safety = GMS_SAFETY_OFF;
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_SECRET);
    rec_reset();
    gms_context *other = ctx_of(rt, "t2", "u", GMS_LEVEL_SECRET);
    /* No redzone: 256 bytes take one 256-byte block. */
    gms_buf b = alloc_or_die(c, 256);
    gms_buf_info info;
    CHECK_OK(gms_buf_info_get(c, b, &info));
    CHECK(info.block_size == 256);
    /* Pairs work, and memory is reused at once (no quarantine). */
    uint8_t *first = NULL;
    int same = 0;
    for (int i = 0; i < 10000; i++) {
        gms_buf x = alloc_or_die(c, 1 + (size_t)(i * 7919) % 100000);
        uint8_t *p = raw(c, x);
        if (i == 0)
            first = p;
        same += p == first;
        CHECK_OK(gms_free(c, x));
    }
    CHECK(same > 100);
    /* Handles and bounds are still checked. */
    uint8_t buf[300] = {0};
    CHECK_RC(gms_write(c, b, 1, buf, 256), GMS_E_OUT_OF_BOUNDS);
    CHECK_RC(gms_read(c, b, UINT64_MAX, buf, 2), GMS_E_OUT_OF_BOUNDS);
    CHECK_RC(gms_read(other, b, 0, buf, 1), GMS_E_ACCESS_DENIED);
    CHECK_OK(gms_free(c, b));
    CHECK_RC(gms_free(c, b), GMS_E_INVALID_HANDLE);
    /* Leaks are still counted. */
    alloc_or_die(c, 10);
    gms_context_close(c);
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.leaked_blocks == 1);
    CHECK_OK(gms_verify(rt, NULL));
    CHECK(rec_count() == 0);
    gms_context_close(other);
    gms_runtime_close(rt);
    return test_done();
}
