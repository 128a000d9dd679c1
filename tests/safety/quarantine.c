/*
 * quarantine.c: a raw write into a freed block is caught when the block
 * leaves quarantine (evicted by later frees, drained when the pool's last
 * context closes) or by gms_verify while it waits; the callback gets the
 * kind, the dead handle, the offset and size, and a message saying who
 * allocated and who freed the buffer. A free whose scrub the backend
 * fails leaves its block unpoisoned in quarantine; the block is scrubbed
 * when it leaves, so its overflow is still reported and its bytes never
 * reach the next user.
 */
#include "util.h"
#include "gms/testing.h"

static bool found(gms_violation_kind kind, gms_buf h, int64_t off, uint64_t size)
{
    for (unsigned i = 0; i < rec_count() && i < REC_MAX; i++)
        if (rec.e[i].kind == kind && rec.e[i].handle == h && rec.e[i].offset == off &&
            rec.e[i].size == size)
            return true;
    return false;
}

static void evicted(void)
{
    gms_runtime_options o = safety_opts();
    o.quarantine_blocks = 4;
    o.quarantine_bytes = 64u << 20;
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "acme", "alice", GMS_LEVEL_INTERNAL);
    gms_buf b = alloc_or_die(c, 1000);
    uint8_t *p = raw(c, b);
    CHECK_OK(gms_free(c, b));
    rec_reset();
    p[10] ^= 0x5a; /* write after free */
    p[11] ^= 0x5a;
    uint8_t x;
    CHECK_RC(gms_read(c, b, 0, &x, 1), GMS_E_INVALID_HANDLE);
    /* Still in quarantine: nothing is said yet. */
    for (int i = 0; i < 3; i++)
        CHECK_OK(gms_free(c, alloc_or_die(c, 500)));
    CHECK(rec_count() == 0);
    /* The fifth free pushes it out: its poison is checked. */
    CHECK_OK(gms_free(c, alloc_or_die(c, 500)));
    CHECK(rec_count() == 1);
    CHECK(found(GMS_VIOLATION_WRITE_AFTER_FREE, b, 10, 1000));
    CHECK(rec.e[0].address == (uint64_t)(uintptr_t)(p + 10));
    CHECK(strcmp(rec.e[0].tenant, "acme") == 0);
    CHECK(strstr(rec.e[0].message, "write after free") != NULL);
    CHECK(strstr(rec.e[0].message, "allocated by user 'alice'") != NULL);
    CHECK(strstr(rec.e[0].message, "freed by user 'alice'") != NULL);
    CHECK(strstr(rec.e[0].message, "quarantine") != NULL);
    /* Reported once: the memory was poisoned again before reuse. */
    rec_reset();
    CHECK_OK(gms_verify(rt, NULL));
    for (int i = 0; i < 10; i++)
        CHECK_OK(gms_free(c, alloc_or_die(c, 1000)));
    CHECK(rec_count() == 0);
    gms_context_close(c);
    gms_runtime_close(rt);
}

static void drained_at_close(void)
{
    gms_runtime_options o = safety_opts();
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "acme", "bob", GMS_LEVEL_CONFIDENTIAL);
    gms_buf b = alloc_or_die(c, 70000);
    uint8_t *p = raw(c, b);
    CHECK_OK(gms_free(c, b));
    p[69999] ^= 0x01;
    rec_reset();
    gms_context_close(c); /* the pool's last context: its quarantine drains */
    CHECK(rec_count() == 1);
    CHECK(found(GMS_VIOLATION_WRITE_AFTER_FREE, b, 69999, 70000));
    CHECK(strstr(rec.e[0].message, "freed by user 'bob'") != NULL);
    gms_runtime_close(rt);
}

static void by_verify(void)
{
    gms_runtime_options o = safety_opts();
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "acme", "carol", GMS_LEVEL_PUBLIC);
    gms_buf keep = alloc_or_die(c, 64);
    gms_buf b = alloc_or_die(c, 5000);
    uint8_t *p = raw(c, b);
    CHECK_OK(gms_free(c, b));
    CHECK_OK(gms_verify(rt, NULL));
    p[0] ^= 0xff;
    rec_reset();
    gms_report r;
    CHECK_RC(gms_verify(rt, &r), GMS_E_CORRUPTION);
    CHECK(r.violations == 1);
    CHECK(strstr(r.first_violation, "quarantined") != NULL);
    CHECK(rec_count() == 1 && found(GMS_VIOLATION_WRITE_AFTER_FREE, b, 0, 5000));
    CHECK(strstr(rec.e[0].message, "allocated by user 'carol'") != NULL);
    /* Told once: neither verify nor the drain reports it again. */
    rec_reset();
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(gms_free(c, keep));
    gms_context_close(c);
    CHECK(rec_count() == 0);
    gms_runtime_close(rt);
}

/* Many blocks written after free, found in one drain: each is reported
 * (up to what one call delivers; see docs/safety.md). */
static void several(void)
{
    gms_runtime_options o = safety_opts();
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "acme", "dave", GMS_LEVEL_INTERNAL);
    gms_buf b[4];
    uint8_t *p[4];
    for (int i = 0; i < 4; i++) {
        b[i] = alloc_or_die(c, 300 + 100 * (size_t)i);
        p[i] = raw(c, b[i]);
    }
    for (int i = 0; i < 4; i++)
        CHECK_OK(gms_free(c, b[i]));
    for (int i = 0; i < 4; i++)
        p[i][i] ^= 0x10;
    rec_reset();
    gms_context_close(c);
    CHECK(rec_count() == 4);
    for (int i = 0; i < 4; i++)
        CHECK(found(GMS_VIOLATION_WRITE_AFTER_FREE, b[i], i, 300 + 100 * (uint64_t)i));
    gms_runtime_close(rt);
}

/* A backend failure at the scrub of a free (found by failing the Nth
 * backend call, N = 1, 2, ..., until one free's own scrub fails). */
static void failed_scrub(void)
{
    bool hit = false;
    for (uint64_t n = 1; n < 400 && !hit; n++) {
        gms_runtime_options o = safety_opts();
        o.quarantine_blocks = 1;
        gms_testing_options t = {.fail_nth_call = n};
        gms_runtime *rt = NULL;
        if (gms_testing_runtime_open(&rt, &o, &t) != GMS_OK)
            continue;
        CHECK_OK(gms_on_violation(rt, rec_violation, NULL));
        gms_context_desc d = GMS_CONTEXT_DESC_INIT;
        d.tenant = "acme";
        d.user = "erin";
        gms_context *c = NULL;
        gms_buf a = GMS_BUF_NULL;
        uint8_t *p = NULL;
        if (gms_context_open(&c, rt, &d) != GMS_OK || gms_alloc(c, 1000, 0, &a) != GMS_OK ||
            gms_buf_ptr(c, a, (void **)&p) != GMS_OK) {
            if (c)
                gms_context_close(c);
            gms_runtime_close(rt);
            continue;
        }
        for (int i = 0; i < 1000; i++)
            p[i] = (uint8_t)(7 * i + 1); /* data no poison looks like */
        p[1000] ^= 0x5a; /* an overflow, to be found at the free */
        rec_reset();
        rec.logs = 0;
        int rc = gms_free(c, a);
        hit = rc == GMS_OK && rec.logs > 0 && strstr(rec.last_log, "scrub of a freed block failed");
        if (hit) {
            CHECK(rec_count() == 0); /* nothing checked yet */
            /* The next free pushes it out of quarantine: scrubbed then. */
            CHECK_OK(gms_free(c, alloc_or_die(c, 500)));
            CHECK(rec_count() == 1 && rec.e[0].kind == GMS_VIOLATION_OVERFLOW &&
                  rec.e[0].handle == a && rec.e[0].offset == 1000);
            /* Its memory comes back holding the poison (a pattern of 8
             * bytes), not the data. */
            gms_buf again[4];
            bool same = false;
            for (int k = 0; k < 4; k++) {
                again[k] = alloc_or_die(c, 1000);
                if (raw(c, again[k]) != p)
                    continue;
                same = true;
                bool poison = true;
                for (int i = 8; i < 1000; i++)
                    poison &= p[i] == p[i - 8];
                CHECK(poison);
            }
            CHECK(same);
            for (int k = 0; k < 4; k++)
                CHECK_OK(gms_free(c, again[k]));
        }
        gms_context_close(c);
        gms_runtime_close(rt);
    }
    CHECK(hit);
}

int main(void)
{
    evicted();
    drained_at_close();
    by_verify();
    several();
    failed_scrub();
    return test_done();
}
