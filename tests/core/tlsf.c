/*
 * tlsf.c: the sub-allocator's size classes and O(1) search, tested on bare
 * block nodes: every class boundary maps to the list that holds it, a
 * search never returns a block smaller than asked, and finds one whenever a
 * block at least one class larger exists.
 */
#include "test.h"
#include "core/internal.h"

static gms_tlsf t;

int main(void)
{
    unsigned fl, sl, pfl = 0, psl = 0;
    /* Classes grow monotonically with size, across the whole 64-bit range. */
    for (uint64_t size = 256; size < (1ull << 62); size += size < 65536 ? 256 : size / 37 * 8 / 256 * 256) {
        gms__tlsf_mapping(size, &fl, &sl);
        CHECK(fl < GMS_TLSF_FL_COUNT && sl < GMS_TLSF_SL_COUNT);
        CHECK(fl > pfl || (fl == pfl && sl >= psl));
        pfl = fl;
        psl = sl;
    }
    gms__tlsf_mapping(256, &fl, &sl);
    CHECK(fl == 0 && sl == 1);
    gms__tlsf_mapping(8192, &fl, &sl);
    CHECK(fl == 1 && sl == 0);
    gms__tlsf_mapping(1ull << 40, &fl, &sl);
    CHECK(fl == 40 - 13 + 1 && sl == 0);

    /* One block per size; searches return large-enough blocks. */
    static gms_block blocks[64];
    uint64_t sizes[64];
    for (int i = 0; i < 64; i++) {
        sizes[i] = (uint64_t)(i + 1) * (i + 1) * 4096 + (uint64_t)i * 256;
        blocks[i].size = sizes[i];
        blocks[i].state = GMS_BLOCK_FREE;
        gms__tlsf_insert(&t, &blocks[i]);
    }
    for (uint64_t want = 256; want < 20000000; want = want * 3 / 2 + 256) {
        want &= ~255ull;
        gms_block *b = gms__tlsf_find(&t, want);
        uint64_t max = 0;
        for (int i = 0; i < 64; i++)
            max = sizes[i] > max ? sizes[i] : max;
        if (b)
            CHECK(b->size >= want);
        else
            CHECK(want + want / 16 > max); /* only misses near the largest */
    }
    CHECK(gms__tlsf_find(&t, 1ull << 50) == NULL);

    /* A block of exactly the size asked for, in the middle of its class,
     * is found in place (the rounded search alone would skip its class). */
    static gms_block exact, bigger;
    exact.size = 3ull << 20 | 256 * 3; /* 3 MiB + 768: not a class boundary */
    exact.state = GMS_BLOCK_FREE;
    bigger.size = 64ull << 20;
    bigger.state = GMS_BLOCK_FREE;
    for (int i = 0; i < 64; i++)
        gms__tlsf_remove(&t, &blocks[i]);
    gms__tlsf_insert(&t, &bigger);
    gms__tlsf_insert(&t, &exact);
    CHECK(gms__tlsf_find(&t, exact.size) == &exact);
    CHECK(gms__tlsf_find(&t, exact.size + 256) == &bigger);
    gms__tlsf_remove(&t, &exact);
    gms__tlsf_remove(&t, &bigger);
    CHECK(t.fl_bitmap == 0);
    CHECK(gms__tlsf_find(&t, 256) == NULL);
    return test_done();
}
