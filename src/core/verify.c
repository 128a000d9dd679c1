/*
 * verify.c: gms_verify walks all state with every pool locked and checks
 * the invariants (docs/design.md#invariants):
 *  1. blocks tile each chunk without overlap; every free block is filed in
 *     the right TLSF list and no two free blocks touch (coalescing);
 *  2. a pool's chunks are its own, granule-aligned, and no two chunks of the
 *     runtime overlap;
 *  3. every live handle names a live block of its pool and back, and each
 *     block is on its owner context's list;
 *  4. redzones of live blocks, quarantined blocks and all mapped free
 *     memory hold the poison pattern (checked through the backend's scrub,
 *     in batches; what is found goes to the violation callbacks too);
 *  5. quota accounting equals the sum of live blocks per tenant;
 *  plus the granule accounting: a granule is mapped iff a live block
 *  overlaps it or it sits in the cache, and held bytes match.
 * Cost: linear in blocks, granules and slots. Not a fast path.
 */
#include "core/internal.h"
#include "safety/safety.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vstate {
    gms_report r;
    int backend_err; /* a check that could not run: not corruption */
} vstate;

static void violation(vstate *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(vstate *v, const char *fmt, ...)
{
    if (v->r.violations++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->r.first_violation, sizeof v->r.first_violation, fmt, ap);
        va_end(ap);
    }
}

static int tlsf_holds(const gms_tlsf *t, const gms_block *b)
{
    unsigned fl, sl;
    gms__tlsf_mapping(b->size, &fl, &sl);
    for (const gms_block *x = t->heads[fl][sl]; x; x = x->u.free.next)
        if (x == b)
            return 1;
    return 0;
}

/* One heap's lists: their bitmaps and blocks; counts what they list into
 * *listed, stopping once past free_blocks (a cycle). */
static void verify_heap(vstate *v, const gms_pool *p, const gms_tlsf *t, uint64_t free_blocks,
                        uint64_t *listed)
{
    for (unsigned fl = 0; fl < GMS_TLSF_FL_COUNT; fl++) {
        if (!!(t->fl_bitmap & (1ull << fl)) != !!t->sl_bitmap[fl])
            violation(v, "pool %llu: first-level bitmap bit %u disagrees with its lists",
                      (unsigned long long)p->id, fl);
        for (unsigned sl = 0; sl < GMS_TLSF_SL_COUNT; sl++) {
            const gms_block *h = t->heads[fl][sl];
            if (!!(t->sl_bitmap[fl] & (1u << sl)) != !!h)
                violation(v, "pool %llu: bitmap of list (%u,%u) disagrees with the list",
                          (unsigned long long)p->id, fl, sl);
            for (const gms_block *b = h; b; b = b->u.free.next) {
                ++*listed;
                unsigned f2, s2;
                gms__tlsf_mapping(b->size, &f2, &s2);
                if (b->state != GMS_BLOCK_FREE || f2 != fl || s2 != sl || &p->tlsf[b->chunk->heap] != t)
                    violation(v, "pool %llu: block at 0x%llx in free list (%u,%u) is not a free block of that class and heap",
                              (unsigned long long)p->id, (unsigned long long)b->addr, fl, sl);
                if (*listed > free_blocks + 1)
                    return; /* a cycle: stop walking */
            }
        }
    }
}

static void verify_tlsf(vstate *v, const gms_pool *p, uint64_t free_blocks)
{
    uint64_t listed = 0;
    for (unsigned heap = 0; heap < GMS_HEAPS && listed <= free_blocks + 1; heap++)
        verify_heap(v, p, &p->tlsf[heap], free_blocks, &listed);
    if (listed != free_blocks)
        violation(v, "pool %llu: %llu blocks in free lists, %llu free blocks in chunks",
                  (unsigned long long)p->id, (unsigned long long)listed,
                  (unsigned long long)free_blocks);
}

static void verify_chunk(vstate *v, gms_pool *p, gms_chunk *c, uint64_t *live_bytes,
                         uint64_t *live_blocks, uint64_t *free_blocks, uint64_t *retired,
                         uint32_t *gcount)
{
    gms_runtime *rt = p->rt;
    unsigned long long pid = (unsigned long long)p->id;
    if (c->pool != p || c->base % rt->config.granule || c->size % rt->config.granule)
        violation(v, "pool %llu: chunk at 0x%llx is not a granule-aligned chunk of this pool", pid,
                  (unsigned long long)c->base);
    uint64_t at = c->base;
    const gms_block *prev = NULL;
    for (const gms_block *b = c->first; b; prev = b, b = b->next_phys) {
        if (b->addr != at || b->chunk != c || b->prev_phys != prev || b->size == 0 ||
            b->size % GMS_ALIGNMENT || b->size > c->base + c->size - b->addr) {
            violation(v, "pool %llu: block at 0x%llx (size %llu) breaks the tiling of chunk 0x%llx",
                      pid, (unsigned long long)b->addr, (unsigned long long)b->size,
                      (unsigned long long)c->base);
            return;
        }
        at += b->size;
        if (b->state == GMS_BLOCK_FREE) {
            (*free_blocks)++;
            if (prev && prev->state == GMS_BLOCK_FREE)
                violation(v, "pool %llu: free blocks at 0x%llx and 0x%llx touch (not merged)", pid,
                          (unsigned long long)prev->addr, (unsigned long long)b->addr);
            if (!tlsf_holds(&p->tlsf[c->heap], b))
                violation(v, "pool %llu: free block at 0x%llx is in no free list", pid,
                          (unsigned long long)b->addr);
            continue;
        }
        if (b->state == GMS_BLOCK_QUARANTINE) {
            (*retired)++;
            uint64_t lo[2], hi[2];
            gms__block_mapped(p, b, lo, hi);
            for (int r = 0; r < 2; r++)
                for (uint64_t g = gms__granule_of(rt, c, lo[r]);
                     lo[r] < hi[r] && g <= gms__granule_of(rt, c, hi[r] - 1); g++)
                    gcount[g]++;
            continue;
        }
        if (b->state != GMS_BLOCK_LIVE) {
            violation(v, "pool %llu: block at 0x%llx has state %u", pid, (unsigned long long)b->addr,
                      b->state);
            continue;
        }
        (*live_blocks)++;
        *live_bytes += b->size;
        const gms_context *o = b->u.live.owner;
        if (o && o->pool != p)
            violation(v, "pool %llu: live block at 0x%llx is owned by a context of another pool",
                      pid, (unsigned long long)b->addr);
        if (b->req_size == 0 || b->req_size > b->size)
            violation(v, "pool %llu: live block at 0x%llx: requested size %llu, block %llu", pid,
                      (unsigned long long)b->addr, (unsigned long long)b->req_size,
                      (unsigned long long)b->size);
        gms_slot *s = o ? gms__slot_at(rt, b->u.live.slot) : NULL;
        if (o && (!s || s->block != b ||
                  atomic_load(&s->handle) != gms__handle_make(rt, b->u.live.slot, s->gen)))
            violation(v, "pool %llu: live block at 0x%llx: its handle slot %u does not name it back",
                      pid, (unsigned long long)b->addr, b->u.live.slot);
        uint64_t first = gms__granule_of(rt, c, b->addr);
        uint64_t last = gms__granule_of(rt, c, b->addr + b->size - 1);
        for (uint64_t g = first; g <= last; g++)
            gcount[g]++;
    }
    if (at != c->base + c->size)
        violation(v, "pool %llu: blocks of chunk 0x%llx end at 0x%llx, the chunk at 0x%llx", pid,
                  (unsigned long long)c->base, (unsigned long long)at,
                  (unsigned long long)(c->base + c->size));
}

/* Granules: live counts match the blocks; mapped iff live or cached. */
static void verify_granules(vstate *v, gms_pool *p, gms_chunk *c, const uint32_t *gcount,
                            uint64_t *held, uint64_t *cached)
{
    for (uint64_t g = 0; g < c->ngranules; g++) {
        const gms_granule *gr = &c->granules[g];
        int in_cache = gr->lru_prev || p->lru_head == gr;
        if (gr->live != gcount[g] || (gr->live && in_cache) ||
            (gr->committed != (gr->live > 0 || in_cache)))
            violation(v, "pool %llu: granule %llu of chunk 0x%llx: %u live blocks counted, %u found, mapped %d, cached %d",
                      (unsigned long long)p->id, (unsigned long long)g,
                      (unsigned long long)c->base, gr->live, gcount[g], gr->committed, in_cache);
        *held += gr->committed ? p->rt->config.granule : 0;
        *cached += in_cache ? p->rt->config.granule : 0;
    }
}

/* Invariant 4, batched: items[i] checks the memory of blocks[i]. */
#define POISON_BATCH 256
typedef struct poison_batch {
    gms_scrub_item items[POISON_BATCH];
    gms_block *blocks[POISON_BATCH];
    size_t n;
} poison_batch;

static void poison_run(vstate *v, gms_pool *p, poison_batch *pb)
{
    if (pb->n == 0)
        return;
    gms_runtime *rt = p->rt;
    int err = rt->backend->ops->scrub(rt->backend, pb->items, pb->n, rt->safety.pattern, rt->safety.wipe_seed);
    if (err) {
        v->backend_err = err;
        pb->n = 0;
        return;
    }
    /* The scrub re-armed every broken range it found: each is told once. */
    for (size_t i = 0; i < pb->n; i++) {
        gms_scrub_item *it = &pb->items[i];
        gms_block *b = pb->blocks[i];
        if (!it->bad)
            continue;
        if (b->state == GMS_BLOCK_LIVE) {
            bool under = it->bad < b->addr;
            gms__violation_note(p, under ? GMS_VIOLATION_UNDERFLOW : GMS_VIOLATION_OVERFLOW,
                                b->handle, it->bad, b, "redzone overwritten (found by the verifier)");
            if (!b->corrupt_at)
                b->corrupt_at = it->bad; /* the next call on it is told */
            violation(v, "pool %llu: buffer 0x%016llx: redzone overwritten at offset %+lld",
                      (unsigned long long)p->id, (unsigned long long)b->handle,
                      (long long)(it->bad - b->addr));
            continue;
        }
        bool quarantined = b->state == GMS_BLOCK_QUARANTINE;
        gms__violation_note(p, quarantined ? GMS_VIOLATION_WRITE_AFTER_FREE : GMS_VIOLATION_FREE_MEMORY,
                            b->handle, it->bad, quarantined ? b : NULL,
                            quarantined ? "written after it was freed (found by the verifier)"
                                        : "free memory written (found by the verifier)");
        violation(v, "pool %llu: %s memory at 0x%llx was written", (unsigned long long)p->id,
                  quarantined ? "quarantined" : "free", (unsigned long long)it->bad);
    }
    pb->n = 0;
}

static void poison_add(vstate *v, gms_pool *p, poison_batch *pb, gms_block *b, uint64_t lo,
                       uint64_t hi)
{
    gms_scrub_item *it = &pb->items[pb->n];
    if (b->state == GMS_BLOCK_LIVE) {
        gms__safety_redzone_item(p, b, it);
    } else {
        memset(it, 0, sizeof *it);
        it->check_lo[0] = lo;
        it->check_hi[0] = hi;
    }
    pb->blocks[pb->n++] = b;
    if (pb->n == POISON_BATCH)
        poison_run(v, p, pb);
}

static void verify_poison(vstate *v, gms_pool *p)
{
    poison_batch *pb = malloc(sizeof *pb);
    if (!pb) {
        violation(v, "verify ran out of host memory");
        return;
    }
    pb->n = 0;
    uint64_t gsize = p->rt->config.granule;
    for (gms_chunk *c = p->chunks; c; c = c->next) {
        for (gms_block *b = c->first; b; b = b->next_phys) {
            if (b->state == GMS_BLOCK_LIVE) {
                poison_add(v, p, pb, b, 0, 0);
            } else if (b->state == GMS_BLOCK_QUARANTINE && b->unscrubbed) {
                /* Its scrub could not be queued: it still holds its data,
                 * and its redzones are checked when it leaves. */
            } else if (b->state == GMS_BLOCK_QUARANTINE) {
                uint64_t lo[2], hi[2];
                gms__block_mapped(p, b, lo, hi); /* all of it: slack included */
                for (int r = 0; r < 2; r++)
                    if (lo[r] < hi[r])
                        poison_add(v, p, pb, b, lo[r], hi[r]);
            } else if (b->state == GMS_BLOCK_FREE) {
                /* Only the mapped parts of free memory can be read. */
                uint64_t end = b->addr + b->size;
                for (uint64_t a = b->addr; a < end;) {
                    uint64_t g = gms__granule_of(p->rt, c, a);
                    uint64_t gend = c->base + (g + 1) * gsize;
                    uint64_t hi = gend < end ? gend : end;
                    if (c->granules[g].committed)
                        poison_add(v, p, pb, b, a, hi);
                    a = hi;
                }
            }
        }
    }
    poison_run(v, p, pb);
    free(pb);
}

/* A live block has as many handles as its holder count, at least one (the
 * handle walk counted them in `seen`), and an immutable share's hash still
 * matches its bytes. */
static void verify_holders(vstate *v, gms_pool *p, gms_block *b, uint64_t *holders)
{
    if (b->seen != b->holders || b->holders == 0)
        violation(v, "pool %llu: live block at 0x%llx counts %u holders, %u handles name it",
                  (unsigned long long)p->id, (unsigned long long)b->addr, b->holders, b->seen);
    *holders += b->holders;
    b->seen = 0;
    if (gms__share_hash_broken(p, b, "by gms_verify"))
        violation(v, "pool %llu: immutable share 0x%016llx (block at 0x%llx) was written",
                  (unsigned long long)p->id, (unsigned long long)b->share->id,
                  (unsigned long long)b->addr);
}

static void verify_pool(vstate *v, gms_pool *p, uint64_t *tenant_bytes, uint64_t *tenant_blocks)
{
    unsigned long long pid = (unsigned long long)p->id;
    uint64_t live_bytes = 0, live_blocks = 0, free_blocks = 0, held = 0, cached = 0, retired = 0;
    for (gms_chunk *c = p->chunks; c; c = c->next) {
        v->r.chunks++;
        uint32_t *gcount = calloc(c->ngranules, sizeof *gcount);
        if (!gcount) {
            violation(v, "verify ran out of host memory");
            return;
        }
        verify_chunk(v, p, c, &live_bytes, &live_blocks, &free_blocks, &retired, gcount);
        verify_granules(v, p, c, gcount, &held, &cached);
        free(gcount);
    }
    verify_tlsf(v, p, free_blocks);
    uint64_t listed = 0;
    for (const gms_block *b = p->quarantine_head; b && listed <= retired; b = b->u.retired.next)
        listed += b->state == GMS_BLOCK_QUARANTINE;
    if (listed != retired || listed != p->quarantine_blocks)
        violation(v, "pool %llu: %llu freed blocks wait in chunks, %llu in the quarantine list",
                  pid, (unsigned long long)retired, (unsigned long long)listed);
    if (p->rt->safety.on)
        verify_poison(v, p);
    if (live_bytes != p->live_bytes || live_blocks != p->live_blocks)
        violation(v, "pool %llu: counts %llu live blocks / %llu bytes, chunks hold %llu / %llu", pid,
                  (unsigned long long)p->live_blocks, (unsigned long long)p->live_bytes,
                  (unsigned long long)live_blocks, (unsigned long long)live_bytes);
    if (held != p->held_bytes || cached != p->cached_bytes)
        violation(v, "pool %llu: counts %llu held / %llu cached bytes, granules say %llu / %llu", pid,
                  (unsigned long long)p->held_bytes, (unsigned long long)p->cached_bytes,
                  (unsigned long long)held, (unsigned long long)cached);
    /* Each block has as many handles as it counts holders (verify_slots
     * counted the handles of this pool's slots). */
    uint64_t handles = p->v_handles, shares = p->v_shares, holders = 0;
    for (gms_chunk *c = p->chunks; c; c = c->next)
        for (gms_block *b = c->first; b; b = b->next_phys)
            if (b->state == GMS_BLOCK_LIVE)
                verify_holders(v, p, b, &holders);
    for (gms_block *b = p->imports; b; b = b->u.live.next)
        verify_holders(v, p, b, &holders);
    if (handles != holders)
        violation(v, "pool %llu: %llu live handles, its blocks count %llu holders", pid,
                  (unsigned long long)handles, (unsigned long long)holders);
    if (shares != p->shares)
        violation(v, "pool %llu: %llu share ids, the pool counts %llu shares", pid,
                  (unsigned long long)shares, (unsigned long long)p->shares);
    v->r.pools++;
    v->r.live_blocks += live_blocks;
    v->r.free_blocks += free_blocks;
    v->r.live_handles += handles;
    *tenant_bytes += live_bytes;
    *tenant_blocks += live_blocks;
}

/* A free list of slots (the runtime's, or a pool's with owner p): each
 * slot free and owned as the list says; returns its length. */
static uint64_t verify_free_slots(vstate *v, gms_runtime *rt, uint32_t head, const gms_pool *p,
                                  uint64_t most)
{
    uint64_t n = 0;
    for (uint32_t i = head; i && n <= most; n++) {
        gms_slot *s = gms__slot_at(rt, i);
        if (!s || atomic_load(&s->handle) || atomic_load(&s->pool) != p) {
            violation(v, "handle table: slot %u in the free list of %s is %s", i,
                      p ? "a pool" : "the runtime", !s ? "not in the table" : "in use");
            break;
        }
        i = s->next_free;
    }
    return n;
}

/* Invariant 3, the handle table's side, in one pass over it: every live
 * handle names a live block of its slot's pool (the counts per pool are
 * checked against the blocks by verify_pool), every share id its share;
 * free slots are in exactly one free list, the runtime's or their pool's;
 * each tenant is charged for the slots it holds. */
static void verify_slots(vstate *v, gms_runtime *rt)
{
    for (gms_pool *p = rt->pools; p; p = p->next)
        p->v_handles = p->v_shares = 0;
    for (gms_tenant *t = rt->tenants; t; t = t->next)
        t->v_handles = 0;
    pthread_mutex_lock(&rt->handles.lock);
    uint64_t live = 0, cached = 0, table = 0;
    for (uint32_t pg = 0; pg < rt->handles.next_page; pg++) {
        gms_slot_page *page = atomic_load(&rt->handles.pages[pg]);
        for (uint32_t i = 0; i < GMS_SLOTS_PER_PAGE; i++) {
            gms_slot *s = &page->slots[i];
            unsigned slot = pg * GMS_SLOTS_PER_PAGE + i;
            uint64_t word = atomic_load(&s->handle);
            gms_pool *p = atomic_load(&s->pool);
            if (slot == 0 || slot > rt->handles.slots_max)
                continue;
            table++;
            if (!p) {
                if (word)
                    violation(v, "handle table: live slot %u belongs to no pool", slot);
                continue;
            }
            if (p->idle)
                violation(v, "handle table: slot %u belongs to idle pool %llu", slot,
                          (unsigned long long)p->id);
            if (!word) {
                cached++;
                continue;
            }
            live++;
            unsigned long long pid = (unsigned long long)p->id;
            if (!s->block || s->block->state != GMS_BLOCK_LIVE) {
                violation(v, "pool %llu: live %s in slot %u names no live block", pid,
                          s->kind == GMS_SLOT_SHARE ? "share id" : "handle", slot);
                continue;
            }
            if (s->kind == GMS_SLOT_SHARE) {
                p->v_shares++;
                p->tenant->v_handles++;
                if (!s->block->share || s->block->share->slot != slot || s->block->share->id != word)
                    violation(v, "pool %llu: share id in slot %u is not its block's share", pid, slot);
                continue;
            }
            p->v_handles++;
            s->block->seen++;
            if (!s->holder && !s->exported) {
                violation(v, "pool %llu: handle in slot %u has no holder", pid, slot);
                continue;
            }
            (s->holder ? s->holder->tenant : p->tenant)->v_handles++;
        }
    }
    uint64_t listed = verify_free_slots(v, rt, rt->handles.free_slots, NULL, table);
    uint64_t in_pools = 0;
    for (gms_pool *p = rt->pools; p; p = p->next) {
        uint64_t n = verify_free_slots(v, rt, p->free_slots, p, table);
        if (n != p->nfree_slots)
            violation(v, "pool %llu: counts %u free slots, its list holds %llu",
                      (unsigned long long)p->id, p->nfree_slots, (unsigned long long)n);
        in_pools += n;
    }
    if (in_pools != cached || live + cached != rt->handles.slots_out ||
        listed + rt->handles.slots_out != table)
        violation(v, "handle table: %llu slots, %llu live, %llu free in pools (%llu listed), %llu free in the runtime's list; the runtime counts %llu out",
                  (unsigned long long)table, (unsigned long long)live, (unsigned long long)cached,
                  (unsigned long long)in_pools, (unsigned long long)listed,
                  (unsigned long long)rt->handles.slots_out);
    pthread_mutex_unlock(&rt->handles.lock);
    for (gms_tenant *t = rt->tenants; t; t = t->next)
        if (t->v_handles != atomic_load(&t->handles))
            violation(v, "tenant '%s': charged for %llu handles and share ids, holds %llu", t->name,
                      (unsigned long long)atomic_load(&t->handles),
                      (unsigned long long)t->v_handles);
}

/* An idle pool holds nothing. */
static void verify_idle(vstate *v, const gms_pool *p)
{
    if (p->chunks || p->nfree_slots || p->live_blocks || p->imports || p->quarantine_blocks ||
        p->held_bytes || p->contexts || p->shares)
        violation(v, "pool %llu: idle but holds memory, slots or blocks", (unsigned long long)p->id);
}

static int cmp_range(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

static void verify_chunks_disjoint(vstate *v, gms_runtime *rt)
{
    uint64_t n = 0;
    for (gms_pool *p = rt->pools; p; p = p->next)
        for (gms_chunk *c = p->chunks; c; c = c->next)
            n++;
    if (n < 2)
        return;
    uint64_t(*r)[2] = malloc(n * sizeof *r);
    if (!r) {
        violation(v, "verify ran out of host memory");
        return;
    }
    uint64_t i = 0;
    for (gms_pool *p = rt->pools; p; p = p->next)
        for (gms_chunk *c = p->chunks; c; c = c->next, i++) {
            r[i][0] = c->base;
            r[i][1] = c->base + c->size;
        }
    qsort(r, n, sizeof *r, cmp_range);
    for (i = 1; i < n; i++)
        if (r[i][0] < r[i - 1][1])
            violation(v, "chunks at 0x%llx and 0x%llx overlap", (unsigned long long)r[i - 1][0],
                      (unsigned long long)r[i][0]);
    free(r);
}

int gms_verify(gms_runtime *rt, gms_report *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_verify: runtime is NULL");
    vstate v;
    memset(&v, 0, sizeof v);
    pthread_mutex_lock(&rt->lock);
    for (gms_pool *p = rt->pools; p; p = p->next)
        gms__pool_lock(p);
    /* Memory reads as it will once the device has run what is queued on
     * it: wait for that (verify is no alloc or free), and take in what it
     * found first. */
    for (gms_pool *p = rt->pools; p; p = p->next)
        gms__safety_launch(p);
    gms__device_quiesce(rt);
    for (gms_pool *p = rt->pools; p; p = p->next)
        gms__safety_collect(p, true);
    verify_slots(&v, rt);
    for (gms_pool *p = rt->pools; p; p = p->next)
        if (p->idle)
            verify_idle(&v, p);
    for (gms_tenant *t = rt->tenants; t; t = t->next) {
        uint64_t bytes = 0, blocks = 0;
        for (gms_pool *p = rt->pools; p; p = p->next)
            if (p->tenant == t && !p->idle)
                verify_pool(&v, p, &bytes, &blocks);
        if (bytes != atomic_load(&t->live_bytes) || blocks != atomic_load(&t->live_allocs))
            violation(&v, "tenant '%s': quota counts %llu bytes / %llu allocations, its pools hold %llu / %llu",
                      t->name, (unsigned long long)atomic_load(&t->live_bytes),
                      (unsigned long long)atomic_load(&t->live_allocs),
                      (unsigned long long)bytes, (unsigned long long)blocks);
    }
    verify_chunks_disjoint(&v, rt);
    for (gms_context *c = rt->contexts; c; c = c->next) {
        uint64_t n = 0;
        for (gms_block *b = c->live; b && n <= c->live_blocks; b = b->u.live.next, n++)
            if (b->state != GMS_BLOCK_LIVE || b->u.live.owner != c)
                violation(&v, "context %llu: its live list holds a block it does not own",
                          (unsigned long long)c->id);
        if (n != c->live_blocks)
            violation(&v, "context %llu: counts %llu live blocks, its list holds %llu",
                      (unsigned long long)c->id, (unsigned long long)c->live_blocks,
                      (unsigned long long)n);
    }
    for (gms_pool *p = rt->pools; p; p = p->next)
        gms__pool_unlock(p);
    pthread_mutex_unlock(&rt->lock);
    gms__violations_settle(rt); /* and what the collector found meanwhile */
    if (out)
        *out = v.r;
    if (v.r.violations)
        return gms__fail(GMS_E_CORRUPTION, "gms_verify: %llu violation%s; first: %s",
                         (unsigned long long)v.r.violations, v.r.violations == 1 ? "" : "s",
                         v.r.first_violation);
    if (v.backend_err)
        return gms__backend_fail(v.backend_err, "poison check in gms_verify", 0);
    return GMS_OK;
}
