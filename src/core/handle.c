/*
 * handle.c: the handle table. A handle names a slot; the slot names the
 * live block and the pool it belongs to. Pages of slots are published once
 * and kept until the runtime closes, so looking a handle up takes no lock:
 * one load of the page pointer, one of the slot's owner, one of its handle
 * word. A slot's generation is never reset, so a stale handle stays stale
 * whichever pool its slot serves next.
 *
 * The table is shared by all tenants. A pool takes free slots from the
 * runtime's list GMS_SLOT_BATCH at a time and gives back what it does not
 * need (and all of them when it falls idle), so the runtime-wide lock is
 * taken once per batch, never per handle, and slots follow the handles
 * live, not the pools ever seen. The last 1/32 of the table is kept for
 * tenants holding few handles: one tenant cannot leave another without a
 * slot to start with.
 */
#include "core/pool.h"

#include <stdlib.h>
#include <string.h>

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
    return mix64(mix64(rt->handles.key[0] ^ slot) ^ gen ^ rt->handles.key[1]) & CHECK_MASK;
}

uint64_t gms__handle_make(const gms_runtime *rt, uint32_t slot, uint64_t gen)
{
    uint64_t word = ((uint64_t)slot << GMS_SLOT_SHIFT) | ((gen & GEN_MASK) << GMS_CHECK_BITS) |
                    check_bits(rt, slot, gen);
    return word | (uint64_t)__builtin_parityll(word) << 63;
}

gms_slot *gms__slot_at(gms_runtime *rt, uint32_t index)
{
    gms_slot_page *pg = atomic_load_explicit(&rt->handles.pages[index / GMS_SLOTS_PER_PAGE],
                                             memory_order_acquire);
    return pg ? &pg->slots[index % GMS_SLOTS_PER_PAGE] : NULL;
}

gms_slot *gms__slot_lookup(gms_runtime *rt, gms_buf h, gms_pool **pool)
{
    uint32_t index = gms__handle_slot(h);
    if (index == 0)
        return NULL; /* slot 0 is never handed out: 0 is GMS_BUF_NULL */
    gms_slot *s = gms__slot_at(rt, index);
    gms_pool *p = s ? atomic_load_explicit(&s->pool, memory_order_acquire) : NULL;
    if (!p)
        return NULL;
    *pool = p;
    return s;
}

/* Testing hook (core/pool.h). */
uint32_t gms__handle_slots_max;

int gms__handle_table_init(gms_runtime *rt)
{
    if (pthread_mutex_init(&rt->handles.lock, NULL) != 0)
        return gms__fail(GMS_E_NO_MEMORY, "cannot create the handle table's lock");
    uint64_t all = (1ull << GMS_SLOT_BITS) - 1; /* slot 0 is never used */
    rt->handles.slots_max = gms__handle_slots_max && gms__handle_slots_max < all ? gms__handle_slots_max : all;
    rt->handles.slots_reserve = rt->handles.slots_max / GMS_SLOT_RESERVE_SHARE;
    return GMS_OK;
}

void gms__handle_table_destroy(gms_runtime *rt)
{
    for (uint32_t i = 0; i < rt->handles.next_page; i++)
        free(atomic_load(&rt->handles.pages[i]));
    pthread_mutex_destroy(&rt->handles.lock);
}

/* A new page onto the runtime's free list (rt->handles.lock held). */
static int page_add(gms_runtime *rt)
{
    uint32_t n = rt->handles.next_page;
    if (n >= GMS_SLOT_PAGES) /* cannot happen while slots_out < slots_max */
        return gms__fail(GMS_E_NO_MEMORY, "handle table full");
    gms_slot_page *pg = gms__alloc_meta(rt, sizeof *pg);
    if (!pg)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for the handle table");
    memset(pg, 0, sizeof *pg);
    /* Threaded lowest first; slot 0 and slots past the table's size stay
     * out of every list. */
    uint32_t first = n * GMS_SLOTS_PER_PAGE;
    for (uint32_t i = GMS_SLOTS_PER_PAGE; i-- > 0;) {
        gms_slot *s = &pg->slots[i];
        atomic_init(&s->handle, 0);
        atomic_init(&s->pool, NULL);
        s->gen = 1;
        if (first + i == 0 || first + i > rt->handles.slots_max)
            continue;
        s->next_free = rt->handles.free_slots;
        rt->handles.free_slots = first + i;
    }
    atomic_store_explicit(&rt->handles.pages[n], pg, memory_order_release);
    rt->handles.next_page = n + 1;
    return GMS_OK;
}

/* Moves free slots from the runtime to pool p, for a slot that tenant t
 * is to hold (pool->lock held): a batch while the table is far from full,
 * one at a time from the reserve, which only a tenant holding few handles
 * may draw on. */
static int slots_refill(gms_pool *p, gms_tenant *t)
{
    gms_runtime *rt = p->rt;
    pthread_mutex_lock(&rt->handles.lock);
    uint64_t left = rt->handles.slots_max - rt->handles.slots_out;
    uint64_t want = left > rt->handles.slots_reserve ? left - rt->handles.slots_reserve : 0;
    if (want > GMS_SLOT_BATCH)
        want = GMS_SLOT_BATCH;
    int rc = GMS_OK;
    uint64_t held = atomic_load_explicit(&t->handles, memory_order_relaxed);
    if (want == 0 && left && held >= GMS_SLOT_SMALL_TENANT)
        rc = gms__fail(GMS_E_QUOTA,
                       "tenant '%s' holds %llu buffer handles and share ids: the last %llu slots of "
                       "the handle table, which all tenants share, are kept for tenants holding "
                       "fewer than %u (free or release some)",
                       t->name, (unsigned long long)held, (unsigned long long)left,
                       GMS_SLOT_SMALL_TENANT);
    else if (want == 0 && left)
        want = 1;
    else if (!left)
        rc = gms__fail(GMS_E_NO_MEMORY, "handle table full (%llu live handles and share ids at most)",
                       (unsigned long long)rt->handles.slots_max);
    for (uint64_t i = 0; rc == GMS_OK && i < want; i++) {
        if (!rt->handles.free_slots && (rc = page_add(rt)) != GMS_OK)
            break;
        uint32_t index = rt->handles.free_slots;
        gms_slot *s = gms__slot_at(rt, index);
        rt->handles.free_slots = s->next_free;
        rt->handles.slots_out++;
        atomic_store_explicit(&s->pool, p, memory_order_release);
        s->next_free = p->free_slots;
        p->free_slots = index;
        p->nfree_slots++;
    }
    pthread_mutex_unlock(&rt->handles.lock);
    return p->free_slots ? GMS_OK : rc; /* a part of a batch will do */
}

/* Gives up to n free slots of the pool back to the runtime (pool->lock). */
static void slots_return(gms_pool *p, uint32_t n)
{
    gms_runtime *rt = p->rt;
    pthread_mutex_lock(&rt->handles.lock);
    while (n-- && p->free_slots) {
        uint32_t index = p->free_slots;
        gms_slot *s = gms__slot_at(rt, index);
        p->free_slots = s->next_free;
        p->nfree_slots--;
        atomic_store_explicit(&s->pool, NULL, memory_order_release);
        s->next_free = rt->handles.free_slots;
        rt->handles.free_slots = index;
        rt->handles.slots_out--;
    }
    pthread_mutex_unlock(&rt->handles.lock);
}

void gms__slots_give_back(gms_pool *p)
{
    slots_return(p, UINT32_MAX);
}

int gms__slot_take_for(gms_pool *p, gms_tenant *t, uint32_t *index)
{
    if (!p->free_slots) {
        int rc = slots_refill(p, t);
        if (rc)
            return rc;
    }
    uint32_t i = p->free_slots;
    gms_slot *s = gms__slot_at(p->rt, i);
    p->free_slots = s->next_free;
    p->nfree_slots--;
    s->holder = NULL; /* a handle's caller names one, of tenant t */
    atomic_fetch_add_explicit(&t->handles, 1, memory_order_relaxed);
    *index = i;
    return GMS_OK;
}

int gms__slot_take(gms_pool *p, uint32_t *index)
{
    return gms__slot_take_for(p, p->tenant, index);
}

void gms__slot_put(gms_pool *p, uint32_t index)
{
    gms_slot *s = gms__slot_at(p->rt, index);
    gms_tenant *t = s->holder ? s->holder->tenant : p->tenant;
    atomic_fetch_sub_explicit(&t->handles, 1, memory_order_relaxed);
    s->holder = NULL;
    s->next_free = p->free_slots;
    p->free_slots = index;
    if (++p->nfree_slots > 2 * GMS_SLOT_BATCH)
        slots_return(p, GMS_SLOT_BATCH);
}

const char *gms__handle_diagnose(const gms_runtime *rt, const gms_slot *s, gms_buf h)
{
    uint32_t slot = gms__handle_slot(h);
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
