/*
 * handle.c: the handle table. A handle names a slot; the slot names the
 * live block. Pages of slots belong to one pool each and are published
 * once, so looking a handle up takes no lock: one load of the page pointer
 * and one of the slot's handle word. Taking and returning slots happens
 * under the owning pool's lock, so pools never contend here except when a
 * new page is claimed (one atomic increment).
 */
#include "core/internal.h"

#include <stdlib.h>

#define GEN_MASK ((1ull << GMS_GEN_BITS) - 1)
#define CHECK_MASK ((1ull << GMS_CHECK_BITS) - 1)

/* A 64-bit mixer (the splitmix64 finalizer): each output bit depends on
 * every input bit. Keyed by the runtime secret, it makes check bits that a
 * caller cannot predict for a slot and generation it was never given. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static inline uint64_t check_bits(const gms_runtime *rt, uint32_t slot, uint64_t gen)
{
    return mix64(mix64(rt->key[0] ^ slot) ^ gen ^ rt->key[1]) & CHECK_MASK;
}

uint64_t gms__handle_make(const gms_runtime *rt, uint32_t slot, uint64_t gen)
{
    return ((uint64_t)slot << (GMS_GEN_BITS + GMS_CHECK_BITS)) |
           ((gen & GEN_MASK) << GMS_CHECK_BITS) | check_bits(rt, slot, gen);
}

gms_slot *gms__slot_at(gms_runtime *rt, uint32_t index)
{
    gms_slot_page *pg = atomic_load_explicit(&rt->pages[index / GMS_SLOTS_PER_PAGE],
                                             memory_order_acquire);
    return pg ? &pg->slots[index % GMS_SLOTS_PER_PAGE] : NULL;
}

gms_slot *gms__slot_lookup(gms_runtime *rt, gms_buf h, gms_pool **pool)
{
    uint32_t index = (uint32_t)(h >> (GMS_GEN_BITS + GMS_CHECK_BITS));
    if (index == 0)
        return NULL; /* slot 0 is never handed out: 0 is GMS_BUF_NULL */
    gms_slot_page *pg = atomic_load_explicit(&rt->pages[index / GMS_SLOTS_PER_PAGE],
                                             memory_order_acquire);
    if (!pg)
        return NULL;
    *pool = pg->pool;
    return &pg->slots[index % GMS_SLOTS_PER_PAGE];
}

int gms__slot_take(gms_pool *p, uint32_t *index)
{
    gms_runtime *rt = p->rt;
    if (p->free_slots == 0) {
        uint32_t n = atomic_fetch_add(&rt->next_page, 1);
        if (n >= GMS_SLOT_PAGES) {
            atomic_fetch_sub(&rt->next_page, 1);
            return gms__fail(GMS_E_NO_MEMORY,
                             "handle table full (%u live handles at most)",
                             (1u << GMS_SLOT_BITS) - 1);
        }
        gms_slot_page *pg = gms__alloc_meta(rt, sizeof *pg);
        if (!pg) {
            /* The page number stays claimed but empty: lookups of it fail,
             * and claiming is rare enough that the loss does not matter. */
            return gms__fail(GMS_E_NO_MEMORY, "out of host memory for the handle table");
        }
        pg->pool = p;
        /* Thread the new slots onto the free list, lowest first; slot 0 of
         * page 0 stays unused. */
        uint32_t first = n * GMS_SLOTS_PER_PAGE;
        for (uint32_t i = GMS_SLOTS_PER_PAGE; i-- > 0;) {
            gms_slot *s = &pg->slots[i];
            atomic_init(&s->handle, 0);
            s->gen = 1;
            s->block = NULL;
            if (first + i == 0)
                continue;
            s->next_free = p->free_slots;
            p->free_slots = first + i;
        }
        atomic_store_explicit(&rt->pages[n], pg, memory_order_release);
    }
    uint32_t i = p->free_slots;
    gms_slot *s = gms__slot_at(rt, i);
    p->free_slots = s->next_free;
    *index = i;
    return GMS_OK;
}

void gms__slot_put(gms_pool *p, uint32_t index)
{
    gms_slot *s = gms__slot_at(p->rt, index);
    s->next_free = p->free_slots;
    p->free_slots = index;
}

const char *gms__handle_diagnose(const gms_runtime *rt, const gms_slot *s, gms_buf h)
{
    uint32_t slot = (uint32_t)(h >> (GMS_GEN_BITS + GMS_CHECK_BITS));
    uint64_t hgen = (h >> GMS_CHECK_BITS) & GEN_MASK;
    /* The newest full generation below the slot's current one whose low
     * bits match the handle's: if the check bits agree, the handle was real
     * once. */
    uint64_t cur = s->gen;
    if (cur == 0)
        return "forged or corrupted handle";
    uint64_t g = (cur & ~GEN_MASK) | hgen;
    if (g >= cur)
        g -= (1ull << GMS_GEN_BITS);
    if (g < 1 || g >= cur || gms__handle_make(rt, slot, g) != h)
        return "forged or corrupted handle (not issued by this runtime)";
    if (g == cur - 1)
        return "the buffer was freed (double free or use after free)";
    return "stale handle: the buffer was freed and its slot reused";
}
