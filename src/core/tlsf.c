/*
 * tlsf.c: two-level segregated fit free lists (Masmano et al., "TLSF: a new
 * dynamic memory allocator for real-time systems"), over host-side block
 * nodes and 64-bit sizes. Finding a block and filing one are O(1): a bit
 * scan picks the first non-empty list whose every block is large enough.
 */
#include "core/internal.h"

#define ALIGN_SHIFT 8 /* log2(GMS_ALIGNMENT) */
#define LINEAR_LIMIT (1ull << (ALIGN_SHIFT + GMS_TLSF_SL_SHIFT)) /* 8 KiB */

static inline unsigned fls64(uint64_t x)
{
    return 63u - (unsigned)__builtin_clzll(x);
}

void gms_tlsf_mapping(uint64_t size, unsigned *fl, unsigned *sl)
{
    if (size < LINEAR_LIMIT) {
        *fl = 0;
        *sl = (unsigned)(size >> ALIGN_SHIFT);
    } else {
        unsigned f = fls64(size);
        *fl = f - (ALIGN_SHIFT + GMS_TLSF_SL_SHIFT) + 1;
        *sl = (unsigned)(size >> (f - GMS_TLSF_SL_SHIFT)) ^ GMS_TLSF_SL_COUNT;
    }
}

void gms_tlsf_insert(gms_tlsf *t, gms_block *b)
{
    unsigned fl, sl;
    gms_tlsf_mapping(b->size, &fl, &sl);
    gms_block *head = t->heads[fl][sl];
    b->u.free.prev = NULL;
    b->u.free.next = head;
    if (head)
        head->u.free.prev = b;
    t->heads[fl][sl] = b;
    t->fl_bitmap |= 1ull << fl;
    t->sl_bitmap[fl] |= 1u << sl;
}

void gms_tlsf_remove(gms_tlsf *t, gms_block *b)
{
    unsigned fl, sl;
    gms_tlsf_mapping(b->size, &fl, &sl);
    if (b->u.free.prev)
        b->u.free.prev->u.free.next = b->u.free.next;
    else
        t->heads[fl][sl] = b->u.free.next;
    if (b->u.free.next)
        b->u.free.next->u.free.prev = b->u.free.prev;
    if (!t->heads[fl][sl]) {
        t->sl_bitmap[fl] &= ~(1u << sl);
        if (!t->sl_bitmap[fl])
            t->fl_bitmap &= ~(1ull << fl);
    }
}

gms_block *gms_tlsf_find(gms_tlsf *t, uint64_t size)
{
    unsigned fl, sl;
    /* First the head of the size's own class: a block just freed at this
     * size (the commonest case in training loops) is reused in place, its
     * memory still mapped, rather than skipped by the rounding below. */
    gms_tlsf_mapping(size, &fl, &sl);
    if (fl < GMS_TLSF_FL_COUNT && t->heads[fl][sl] && t->heads[fl][sl]->size >= size)
        return t->heads[fl][sl];
    /* Round up to the next class boundary so that any block of the list
     * found is large enough (good fit, no list walk). */
    if (size >= LINEAR_LIMIT)
        size += (1ull << (fls64(size) - GMS_TLSF_SL_SHIFT)) - 1;
    gms_tlsf_mapping(size, &fl, &sl);
    if (fl >= GMS_TLSF_FL_COUNT)
        return NULL;
    uint32_t sl_map = sl < GMS_TLSF_SL_COUNT ? t->sl_bitmap[fl] & (~0u << sl) : 0;
    if (!sl_map) {
        uint64_t fl_map = fl + 1 < 64 ? t->fl_bitmap & (~0ull << (fl + 1)) : 0;
        if (!fl_map)
            return NULL;
        fl = (unsigned)__builtin_ctzll(fl_map);
        sl_map = t->sl_bitmap[fl];
    }
    sl = (unsigned)__builtin_ctz(sl_map);
    return t->heads[fl][sl];
}
