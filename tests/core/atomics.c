/*
 * atomics.c: checked atomics on the host backend: each op's result and
 * old value at both widths (min and max unsigned and signed, CAS that
 * swaps and one that does not, 4-byte words ignoring the operand's high
 * bits), batches with a results buffer; every wrong input (op, width,
 * misaligned, out of bounds, read-only holder, immutable share, results
 * range) refused with its code and the buffer unchanged.
 */
#include "share/util.h"
#include "gms/access.h"

#include <string.h>

static gms_context *ctx;
static gms_buf buf;

/* Sets the word at 0 to start, runs op, checks old and the new word. */
static void one(uint32_t width, gms_atomic_op op, uint64_t start, uint64_t operand,
                uint64_t compare, uint64_t want)
{
    uint64_t zero = 0;
    CHECK_OK(gms_write(ctx, buf, 0, &zero, 8));
    CHECK_OK(gms_write(ctx, buf, 0, &start, width));
    uint64_t old = 99, now = 0;
    CHECK_OK(gms_atomic(ctx, buf, 0, op, width, operand, compare, NULL, &old));
    CHECK_OK(gms_read(ctx, buf, 0, &now, 8));
    uint64_t mask = width == 4 ? 0xffffffffull : ~0ull;
    if (old != (start & mask) || now != want) {
        printf("op %d width %u start %llx operand %llx: old %llx now %llx, want %llx\n", op, width,
               (unsigned long long)start, (unsigned long long)operand, (unsigned long long)old,
               (unsigned long long)now, (unsigned long long)want);
        CHECK(0);
    }
}

static void unchanged(const uint8_t *before)
{
    uint8_t now[256];
    CHECK_OK(gms_read(ctx, buf, 0, now, sizeof now));
    CHECK(memcmp(before, now, sizeof now) == 0);
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    ctx = open_ctx(rt, "acme", "c", GMS_LANG_C);
    CHECK_OK(gms_alloc(ctx, 256, GMS_ALLOC_ZERO, &buf));

    one(8, GMS_ATOMIC_ADD, 5, 7, 0, 12);
    one(8, GMS_ATOMIC_ADD, ~0ull, 2, 0, 1); /* wraps */
    one(4, GMS_ATOMIC_ADD, 0xffffffff, 0x100000002ull, 0, 1); /* high bits ignored, wraps in 32 */
    one(8, GMS_ATOMIC_AND, 0xff0f, 0x0ff0, 0, 0x0f00);
    one(4, GMS_ATOMIC_OR, 0x10, 0x01, 0, 0x11);
    one(8, GMS_ATOMIC_XOR, 0xff, 0x0f, 0, 0xf0);
    one(8, GMS_ATOMIC_MIN, 5, ~0ull, 0, 5);        /* unsigned: -1 is the largest */
    one(8, GMS_ATOMIC_MIN_SIGNED, 5, ~0ull, 0, ~0ull); /* signed: -1 < 5 */
    one(4, GMS_ATOMIC_MAX, 5, 0xfffffffe, 0, 0xfffffffe);
    one(4, GMS_ATOMIC_MAX_SIGNED, 5, 0xfffffffe, 0, 5);
    one(4, GMS_ATOMIC_MIN_SIGNED, 5, 0xfffffffe, 0, 0xfffffffe);
    one(8, GMS_ATOMIC_MAX_SIGNED, (uint64_t)-3, (uint64_t)-7, 0, (uint64_t)-3);
    one(8, GMS_ATOMIC_EXCHANGE, 1, 42, 0, 42);
    one(8, GMS_ATOMIC_CAS, 9, 42, 9, 42);  /* swaps */
    one(8, GMS_ATOMIC_CAS, 9, 42, 8, 9);   /* does not */
    one(4, GMS_ATOMIC_CAS, 9, 42, 0x100000009ull, 42); /* compare's high bits ignored */
    /* The word next to it is untouched by a 4-byte op. */
    uint64_t pat = 0x1111111122222222ull, got = 0;
    CHECK_OK(gms_write(ctx, buf, 0, &pat, 8));
    CHECK_OK(gms_atomic(ctx, buf, 4, GMS_ATOMIC_EXCHANGE, 4, 0x33333333, 0, NULL, NULL));
    CHECK_OK(gms_read(ctx, buf, 0, &got, 8));
    CHECK(got == 0x3333333322222222ull);

    /* Wrong inputs: refused, nothing changed, old cleared. */
    uint8_t before[256];
    for (int i = 0; i < 256; i++)
        before[i] = (uint8_t)i;
    CHECK_OK(gms_write(ctx, buf, 0, before, sizeof before));
    uint64_t old = 77;
    CHECK_RC(gms_atomic(ctx, buf, 0, (gms_atomic_op)0, 8, 1, 0, NULL, &old), GMS_E_INVALID_ARG);
    CHECK(old == 0);
    CHECK(strstr(gms_error_last(), "op 0") != NULL);
    CHECK_RC(gms_atomic(ctx, buf, 0, (gms_atomic_op)11, 8, 1, 0, NULL, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_atomic(ctx, buf, 0, GMS_ATOMIC_ADD, 2, 1, 0, NULL, NULL), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "width 2") != NULL);
    CHECK_RC(gms_atomic(ctx, buf, 4, GMS_ATOMIC_ADD, 8, 1, 0, NULL, NULL), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "not a multiple") != NULL);
    CHECK_RC(gms_atomic(ctx, buf, 2, GMS_ATOMIC_ADD, 4, 1, 0, NULL, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_atomic(ctx, buf, 256, GMS_ATOMIC_ADD, 8, 1, 0, NULL, NULL), GMS_E_OUT_OF_BOUNDS);
    CHECK(strstr(gms_error_last(), "outside the buffer") != NULL);
    CHECK_RC(gms_atomic(ctx, buf, UINT64_MAX - 7, GMS_ATOMIC_ADD, 8, 1, 0, NULL, NULL),
             GMS_E_OUT_OF_BOUNDS);
    CHECK_RC(gms_atomic(NULL, buf, 0, GMS_ATOMIC_ADD, 8, 1, 0, NULL, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_atomic(ctx, GMS_BUF_NULL, 0, GMS_ATOMIC_ADD, 8, 1, 0, NULL, NULL),
             GMS_E_INVALID_HANDLE);
    gms_context *rd = open_ctx(rt, "acme", "reader", GMS_LANG_RUST);
    gms_share_id id = 0;
    CHECK_OK(share_one(ctx, buf, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id));
    gms_buf r = GMS_BUF_NULL;
    CHECK_OK(gms_acquire(rd, id, GMS_ACCESS_READ, &r));
    CHECK_RC(gms_atomic(rd, r, 0, GMS_ATOMIC_ADD, 8, 1, 0, NULL, &old), GMS_E_READ_ONLY);
    CHECK(strstr(gms_error_last(), "read-only") != NULL);
    CHECK_RC(gms_atomic(rd, buf, 0, GMS_ATOMIC_ADD, 8, 1, 0, NULL, NULL), GMS_E_ACCESS_DENIED);
    gms_atomic_item one_item = {0, 1, 0, GMS_ATOMIC_ADD, 8};
    CHECK_RC(gms_atomic_batch(rd, r, &one_item, 1, GMS_BUF_NULL, 0, NULL), GMS_E_READ_ONLY);
    unchanged(before);

    /* Batches: checked whole before any runs. */
    gms_buf res = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(ctx, 64, GMS_ALLOC_ZERO, &res));
    gms_atomic_item items[4] = {
        {0, 10, 0, GMS_ATOMIC_ADD, 8},
        {8, 0xff, 0, GMS_ATOMIC_AND, 8},
        {16, 5, 0x13121110, GMS_ATOMIC_CAS, 4},
        {20, 0xffffffff, 0, GMS_ATOMIC_OR, 4},
    };
    gms_atomic_item bad[3] = {items[0], items[1], {250, 1, 0, GMS_ATOMIC_ADD, 8}};
    CHECK_RC(gms_atomic_batch(ctx, buf, bad, 3, res, 0, NULL), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "item 2") != NULL);
    bad[2].offset = 256;
    CHECK_RC(gms_atomic_batch(ctx, buf, bad, 3, res, 0, NULL), GMS_E_OUT_OF_BOUNDS);
    CHECK(strstr(gms_error_last(), "item 2") != NULL);
    bad[2] = (gms_atomic_item){8, 1, 0, 99, 8};
    CHECK_RC(gms_atomic_batch(ctx, buf, bad, 3, res, 0, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_atomic_batch(ctx, buf, items, 4, res, 4, NULL), GMS_E_INVALID_ARG); /* misaligned */
    CHECK_RC(gms_atomic_batch(ctx, buf, items, 4, res, 40, NULL), GMS_E_OUT_OF_BOUNDS);
    CHECK(strstr(gms_error_last(), "results") != NULL);
    CHECK_RC(gms_atomic_batch(ctx, buf, items, 4, buf, 16, NULL), GMS_E_INVALID_ARG); /* overlaps */
    CHECK(strstr(gms_error_last(), "results range") != NULL);
    CHECK_RC(gms_atomic_batch(ctx, buf, items, 4, r, 0, NULL), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_atomic_batch(ctx, buf, NULL, 4, res, 0, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_atomic_batch(NULL, buf, items, 4, res, 0, NULL), GMS_E_INVALID_ARG);
    uint64_t results[4] = {0};
    CHECK_OK(gms_read(ctx, res, 0, results, sizeof results));
    CHECK(results[0] == 0 && results[3] == 0);
    unchanged(before);
    CHECK_OK(gms_atomic_batch(ctx, buf, items, 0, res, 0, NULL)); /* nothing */
    unchanged(before);
    CHECK_OK(gms_atomic_batch(ctx, buf, items, 4, res, 32, NULL));
    CHECK_OK(gms_read(ctx, res, 32, results, sizeof results));
    uint64_t w0, w1;
    uint32_t w16, w20;
    memcpy(&w0, before, 8);
    memcpy(&w1, before + 8, 8);
    memcpy(&w16, before + 16, 4);
    memcpy(&w20, before + 20, 4);
    CHECK(results[0] == w0 && results[1] == w1 && results[2] == w16 && results[3] == w20);
    uint64_t n0, n1;
    uint32_t n16, n20;
    CHECK_OK(gms_read(ctx, buf, 0, &n0, 8));
    CHECK_OK(gms_read(ctx, buf, 8, &n1, 8));
    CHECK_OK(gms_read(ctx, buf, 16, &n16, 4));
    CHECK_OK(gms_read(ctx, buf, 20, &n20, 4));
    CHECK(n0 == w0 + 10 && n1 == (w1 & 0xff) && n16 == 5 && n20 == 0xffffffff);
    /* Results in the same buffer, apart from the words. */
    CHECK_OK(gms_atomic_batch(ctx, buf, items, 1, buf, 128, NULL));
    CHECK_OK(gms_read(ctx, buf, 128, &got, 8));
    CHECK(got == w0 + 10);

    /* An immutable share: nobody runs atomics, its owner included. */
    gms_buf im = GMS_BUF_NULL;
    gms_share_id imid = 0;
    CHECK_OK(gms_alloc(ctx, 64, GMS_ALLOC_ZERO, &im));
    CHECK_OK(share_one(ctx, im, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 1, &imid));
    CHECK_RC(gms_atomic(ctx, im, 0, GMS_ATOMIC_ADD, 8, 1, 0, NULL, NULL), GMS_E_READ_ONLY);
    CHECK(strstr(gms_error_last(), "immutable") != NULL);
    CHECK_RC(gms_atomic_batch(ctx, buf, items, 1, im, 0, NULL), GMS_E_READ_ONLY);
    CHECK_OK(gms_free(ctx, im));

    CHECK_OK(gms_release(rd, r));
    CHECK_OK(gms_free(ctx, res));
    CHECK_OK(gms_free(ctx, buf));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(rd);
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
