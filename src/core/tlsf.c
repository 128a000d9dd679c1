/*
 * tlsf.c: two-level segregated fit free lists (Masmano et al., "TLSF: a new
 * dynamic memory allocator for real-time systems"), over host-side block
 * nodes and 64-bit sizes. Finding a block and filing one are O(1): a bit
 * scan picks the first non-empty list whose every block is large enough.
 * Splitting a block and merging freed neighbours keep the blocks tiling
 * their chunk; the pool supplies and takes back the nodes.
 */
#include "core/pool.h"

#define ALIGN_SHIFT 8 /* log2(GMS_ALIGNMENT) */
#define LINEAR_LIMIT (1ull << (ALIGN_SHIFT + GMS_TLSF_SL_SHIFT)) /* 8 KiB */

static inline unsigned fls64(uint64_t x)
{
    return 63u - (unsigned)__builtin_clzll(x);
}

void gms__tlsf_mapping(uint64_t size, unsigned *fl, unsigned *sl)
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

void gms__tlsf_insert(gms_tlsf *t, gms_block *b)
{
    unsigned fl, sl;
    gms__tlsf_mapping(b->size, &fl, &sl);
    gms_block *head = t->heads[fl][sl];
    b->u.free.prev = NULL;
    b->u.free.next = head;
    if (head)
        head->u.free.prev = b;
    t->heads[fl][sl] = b;
    t->fl_bitmap |= 1ull << fl;
    t->sl_bitmap[fl] |= 1u << sl;
}

void gms__tlsf_remove(gms_tlsf *t, gms_block *b)
{
    unsigned fl, sl;
    gms__tlsf_mapping(b->size, &fl, &sl);
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

gms_block *gms__tlsf_find(gms_tlsf *t, uint64_t size)
{
    unsigned fl, sl;
    /* First the head of the size's own class: a block just freed at this
     * size (the commonest case in training loops) is reused in place, its
     * memory still mapped, rather than skipped by the rounding below. */
    gms__tlsf_mapping(size, &fl, &sl);
    if (fl < GMS_TLSF_FL_COUNT && t->heads[fl][sl] && t->heads[fl][sl]->size >= size)
        return t->heads[fl][sl];
    /* Round up to the next class boundary so that any block of the list
     * found is large enough (good fit, no list walk). */
    if (size >= LINEAR_LIMIT)
        size += (1ull << (fls64(size) - GMS_TLSF_SL_SHIFT)) - 1;
    gms__tlsf_mapping(size, &fl, &sl);
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

/* ---- splitting and merging blocks: the lists' neighbours in address
 * order (prev_phys, next_phys) tile a chunk with no gap ---- */

gms_block *gms__tlsf_split_front(gms_tlsf *t, gms_block *b, uint64_t addr, gms_block *front)
{
    *front = *b;
    front->size = addr - b->addr;
    front->next_phys = b;
    if (front->prev_phys)
        front->prev_phys->next_phys = front;
    else
        b->chunk->first = front;
    b->prev_phys = front;
    b->size -= front->size;
    b->addr = addr;
    front->state = GMS_BLOCK_FREE;
    gms__tlsf_insert(t, front);
    return b;
}

void gms__tlsf_split_back(gms_tlsf *t, gms_block *b, uint64_t size, gms_block *rest)
{
    rest->addr = b->addr + size;
    rest->size = b->size - size;
    rest->chunk = b->chunk;
    rest->prev_phys = b;
    rest->next_phys = b->next_phys;
    if (rest->next_phys)
        rest->next_phys->prev_phys = rest;
    b->next_phys = rest;
    b->size = size;
    rest->state = GMS_BLOCK_FREE;
    rest->stream = b->stream;
    rest->ticket = b->ticket;
    gms__tlsf_insert(t, rest);
}

gms_block *gms__tlsf_file_free(gms_tlsf *t, gms_block *b, gms_block *gone[2])
{
    gone[0] = gone[1] = NULL;
    b->state = GMS_BLOCK_FREE;
    gms_block *prev = b->prev_phys, *next = b->next_phys;
    if (next && next->state == GMS_BLOCK_FREE) {
        gms__tlsf_remove(t, next);
        gms__tag_add(&b->stream, &b->ticket, next->stream, next->ticket);
        b->size += next->size;
        b->next_phys = next->next_phys;
        if (b->next_phys)
            b->next_phys->prev_phys = b;
        gone[0] = next;
    }
    if (prev && prev->state == GMS_BLOCK_FREE) {
        gms__tlsf_remove(t, prev);
        gms__tag_add(&prev->stream, &prev->ticket, b->stream, b->ticket);
        prev->size += b->size;
        prev->next_phys = b->next_phys;
        if (prev->next_phys)
            prev->next_phys->prev_phys = prev;
        gone[1] = b;
        b = prev;
    }
    gms__tlsf_insert(t, b);
    return b;
}
