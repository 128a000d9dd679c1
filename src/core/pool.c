/*
 * pool.c: pools, their chunks of address space, and the granules that back
 * them.
 *
 * A pool serves one (tenant, level, language). It reserves address space in
 * large chunks (reserving costs no memory) and carves blocks out of it with
 * the TLSF lists. Memory is mapped granule by granule (2 MiB by default, the
 * GPU's granule) only where live blocks are, so the memory held from the
 * backend follows the memory live: a granule that loses its last block goes
 * to a small cache of mapped-but-empty granules, and the cache is trimmed
 * back to the retain limit (max(8 MiB, live/32) by default) by unmapping the
 * oldest. In steady state alloc and free find their granules mapped already
 * and make no backend call.
 *
 * Every function here runs with pool->lock held, except create/destroy.
 */
#include "core/internal.h"
#include "safety/safety.h"

#include <stdlib.h>
#include <string.h>

#define NODES_PER_SLAB 1024

static gms_block *node_get(gms_pool *p)
{
    if (!p->free_nodes) {
        gms_node_slab *s = gms__alloc_meta(p->rt, sizeof *s + NODES_PER_SLAB * sizeof(gms_block));
        if (!s)
            return NULL;
        s->next = p->slabs;
        p->slabs = s;
        for (unsigned i = 0; i < NODES_PER_SLAB; i++) {
            s->nodes[i].next_phys = p->free_nodes;
            p->free_nodes = &s->nodes[i];
        }
    }
    gms_block *b = p->free_nodes;
    p->free_nodes = b->next_phys;
    memset(b, 0, sizeof *b);
    return b;
}

static void node_put(gms_pool *p, gms_block *b)
{
    b->state = 0;
    b->next_phys = p->free_nodes;
    p->free_nodes = b;
}

int gms__pool_create(gms_runtime *rt, gms_tenant *t, gms_level level,
                     gms_language lang, gms_pool **out)
{
    gms_pool *p = gms__alloc_meta(rt, sizeof *p);
    if (!p)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a pool");
    memset(p, 0, sizeof *p);
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return gms__fail(GMS_E_NO_MEMORY, "cannot create a pool lock");
    }
    p->rt = rt;
    p->tenant = t;
    p->level = level;
    p->language = lang;
    p->pending_tail = &p->pending_head;
    p->quarantine_tail = &p->quarantine_head;
    *out = p;
    return GMS_OK;
}

static void chunk_release(gms_pool *p, gms_chunk *c)
{
    gms_runtime *rt = p->rt;
    rt->backend->ops->release(rt->backend, c->be_chunk);
    atomic_fetch_sub(&rt->reserved_bytes, c->size);
    p->reserved_bytes -= c->size;
    free(c->granules);
    free(c);
}

void gms__pool_destroy(gms_pool *p)
{
    if (!p)
        return;
    gms_runtime *rt = p->rt;
    for (gms_chunk *c = p->chunks, *n; c; c = n) {
        n = c->next;
        uint64_t held = 0;
        for (uint64_t g = 0; g < c->ngranules; g++)
            held += c->granules[g].committed ? rt->granule : 0;
        atomic_fetch_sub(&rt->held_bytes, held);
        chunk_release(p, c);
    }
    for (gms_node_slab *s = p->slabs, *n; s; s = n) {
        n = s->next;
        free(s);
    }
    free(p->users);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- granules ---- */

static void lru_unlink(gms_pool *p, gms_granule *g)
{
    if (g->lru_prev)
        g->lru_prev->lru_next = g->lru_next;
    else
        p->lru_head = g->lru_next;
    if (g->lru_next)
        g->lru_next->lru_prev = g->lru_prev;
    else
        p->lru_tail = g->lru_prev;
    g->lru_prev = g->lru_next = NULL;
    p->cached_bytes -= p->rt->granule;
}

/* How long a free keeps an empty granule mapped beyond the retain limit. */
#define RETAIN_AGE_NS (100ull * 1000 * 1000)

static void lru_push(gms_pool *p, gms_granule *g, uint64_t now)
{
    g->cached_ns = now;
    g->lru_next = NULL;
    g->lru_prev = p->lru_tail;
    if (p->lru_tail)
        p->lru_tail->lru_next = g;
    else
        p->lru_head = g;
    p->lru_tail = g;
    p->cached_bytes += p->rt->granule;
}

static bool in_lru(const gms_pool *p, const gms_granule *g)
{
    return g->lru_prev || p->lru_head == g;
}

/* Counts bytes about to be mapped, refused past the runtime's limit. */
static int held_add(gms_pool *p, uint64_t bytes)
{
    gms_runtime *rt = p->rt;
    uint64_t now = atomic_fetch_add(&rt->held_bytes, bytes) + bytes;
    if (rt->max_held && now > rt->max_held) {
        atomic_fetch_sub(&rt->held_bytes, bytes);
        return gms__fail(GMS_E_NO_MEMORY,
                         "mapping %llu bytes would pass the runtime's limit of %llu bytes held (max_held_bytes)",
                         (unsigned long long)bytes, (unsigned long long)rt->max_held);
    }
    p->held_bytes += bytes;
    gms__atomic_max(&rt->peak_held, now);
    return GMS_OK;
}

static void held_sub(gms_pool *p, uint64_t bytes)
{
    p->held_bytes -= bytes;
    atomic_fetch_sub(&p->rt->held_bytes, bytes);
}

/* Unmaps granules [first, last] of a chunk, all cached; on failure they
 * stay mapped and cached (the memory is not lost, only not returned). */
static int granules_decommit(gms_pool *p, gms_chunk *c, uint64_t first, uint64_t last)
{
    gms_runtime *rt = p->rt;
    uint64_t len = (last - first + 1) * rt->granule;
    int err = rt->backend->ops->decommit(rt->backend, c->be_chunk, first * rt->granule, len);
    if (err) {
        gms__log(rt, GMS_LOG_WARN, "gms: pool %llu: returning %llu bytes to the backend failed (errno %d); kept mapped",
                 (unsigned long long)p->id, (unsigned long long)len, err);
        return err;
    }
    for (uint64_t g = first; g <= last; g++) {
        lru_unlink(p, &c->granules[g]);
        c->granules[g].committed = false;
    }
    held_sub(p, len);
    return 0;
}

/* Unmaps cached granules, oldest first, while more than keep bytes are
 * cached and the oldest was cached before `before`. */
static void trim(gms_pool *p, uint64_t keep, uint64_t before)
{
    while (p->cached_bytes > keep && p->lru_head->cached_ns < before) {
        gms_granule *g = p->lru_head;
        gms_chunk *c = g->chunk;
        uint64_t i = (uint64_t)(g - c->granules);
        /* Widen to the cached neighbours: one backend call per run. */
        uint64_t first = i, last = i;
        while (first > 0 && in_lru(p, &c->granules[first - 1]))
            first--;
        while (last + 1 < c->ngranules && in_lru(p, &c->granules[last + 1]))
            last++;
        if (granules_decommit(p, c, first, last) != 0)
            return;
    }
}

void gms__pool_trim(gms_pool *p, uint64_t keep)
{
    trim(p, keep, UINT64_MAX);
}

static uint64_t retain_limit(const gms_pool *p)
{
    return gms__scaled_limit(p->rt->retain_bytes, p->live_bytes, 8ull << 20, 32);
}

/* Unmaps what has aged in the cache beyond the retain limit. The clock is
 * read only when the cache is over the limit. */
static void trim_aged(gms_pool *p)
{
    if (p->cached_bytes > retain_limit(p))
        trim(p, retain_limit(p), gms__now_ns() - RETAIN_AGE_NS);
}

/* The granule range [first, last] a block overlaps. */
static void granule_span(const gms_pool *p, const gms_block *b, uint64_t *first, uint64_t *last)
{
    *first = gms__granule_of(p->rt, b->chunk, b->addr);
    *last = gms__granule_of(p->rt, b->chunk, b->addr + b->size - 1);
}

/* Maps the unmapped granules [g, end] for block b: one backend call; with
 * safety on, poisons what of them stays free and b's redzone (new memory
 * reads as zeros; b's own bytes need nothing). */
static int granules_map(gms_pool *p, gms_block *b, uint64_t g, uint64_t end)
{
    gms_runtime *rt = p->rt;
    gms_chunk *c = b->chunk;
    uint64_t len = (end - g + 1) * rt->granule;
    int rc = held_add(p, len);
    if (rc)
        return rc;
    int err = rt->backend->ops->commit(rt->backend, c->be_chunk, g * rt->granule, len);
    if (err) {
        held_sub(p, len);
        return gms__backend_fail(err, "commit", len);
    }
    for (uint64_t u = g; u <= end; u++)
        c->granules[u].committed = true;
    if (!rt->safety)
        return GMS_OK;
    uint64_t lo = c->base + g * rt->granule, hi = lo + len;
    uint64_t data_lo = b->addr, data_hi = b->addr + b->req_size;
    if (lo < data_lo)
        rc = gms__safety_poison(p, lo, data_lo < hi ? data_lo : hi);
    if (rc == GMS_OK && hi > data_hi)
        rc = gms__safety_poison(p, data_hi > lo ? data_hi : lo, hi);
    if (rc != GMS_OK) {
        /* Mapped but not poisoned: give it straight back. */
        for (uint64_t u = g; u <= end; u++)
            lru_push(p, &c->granules[u], 0);
        granules_decommit(p, c, g, end);
    }
    return rc;
}

/* Counts a new block on its granules, mapping those not mapped, one
 * backend call per run of unmapped granules. Undoes itself on failure. */
static int granules_acquire(gms_pool *p, gms_block *b)
{
    gms_chunk *c = b->chunk;
    uint64_t first, last;
    bool grows = false;
    granule_span(p, b, &first, &last);
    /* Take the block's cached granules out of the cache first, so that the
     * trim below cannot unmap them. */
    for (uint64_t g = first; g <= last; g++) {
        if (in_lru(p, &c->granules[g]))
            lru_unlink(p, &c->granules[g]);
        grows |= !c->granules[g].committed;
    }
    if (grows)
        gms__pool_trim(p, retain_limit(p)); /* the bound on what is held */
    for (uint64_t g = first; g <= last;) {
        if (c->granules[g].committed) {
            g++;
            continue;
        }
        uint64_t end = g;
        while (end + 1 <= last && !c->granules[end + 1].committed)
            end++;
        int rc = granules_map(p, b, g, end);
        if (rc) {
            /* Mapped granules with no block go (back) to the cache. */
            uint64_t now = gms__now_ns();
            for (uint64_t u = first; u <= last; u++)
                if (c->granules[u].committed && !c->granules[u].live && !in_lru(p, &c->granules[u]))
                    lru_push(p, &c->granules[u], now);
            return rc;
        }
        g = end + 1;
    }
    for (uint64_t g = first; g <= last; g++)
        c->granules[g].live++;
    return GMS_OK;
}

bool gms__block_interior(const gms_pool *p, const gms_block *b, uint64_t *lo, uint64_t *hi)
{
    /* Within the data part: the redzone after it stays mapped for its check. */
    uint64_t mask = p->rt->granule - 1; /* chunk bases are granule-aligned */
    *lo = (b->addr + mask) & ~mask;
    *hi = (b->addr + b->req_size) & ~mask;
    return *lo < *hi;
}

void gms__block_mapped(const gms_pool *p, const gms_block *b, uint64_t lo[2], uint64_t hi[2])
{
    uint64_t ilo, ihi;
    lo[0] = b->addr;
    hi[0] = b->addr + b->size;
    lo[1] = hi[1] = 0;
    if (b->hollow && gms__block_interior(p, b, &ilo, &ihi)) {
        hi[0] = ilo;
        lo[1] = ihi;
        hi[1] = b->addr + b->size;
    }
}

void gms__pool_hollow(gms_pool *p, gms_block *b)
{
    gms_runtime *rt = p->rt;
    uint64_t lo, hi;
    if (b->req_size < rt->granule || b->hollow || !(rt->backend->ops->props & GMS_BACKEND_UNMAP_WIPES) ||
        !gms__block_interior(p, b, &lo, &hi))
        return;
    gms_chunk *c = b->chunk;
    uint64_t first = gms__granule_of(rt, c, lo), last = gms__granule_of(rt, c, hi) - 1;
    int err = rt->backend->ops->decommit(rt->backend, c->be_chunk, lo - c->base, hi - lo);
    if (err)
        return; /* stays mapped: the scrub overwrites it instead */
    for (uint64_t g = first; g <= last; g++) {
        c->granules[g].live--; /* wholly inside b: it was b's alone */
        c->granules[g].committed = false;
    }
    held_sub(p, hi - lo);
    b->hollow = true;
}

static void granules_release(gms_pool *p, gms_block *b)
{
    gms_chunk *c = b->chunk;
    uint64_t first, last, lo[2], hi[2], now = 0;
    gms__block_mapped(p, b, lo, hi);
    for (int r = 0; r < 2; r++) {
        if (lo[r] >= hi[r])
            continue;
        first = gms__granule_of(p->rt, c, lo[r]);
        last = gms__granule_of(p->rt, c, hi[r] - 1);
        for (uint64_t g = first; g <= last; g++)
            if (--c->granules[g].live == 0)
                lru_push(p, &c->granules[g], now ? now : (now = gms__now_ns()));
    }
    b->hollow = false;
}

/* ---- chunks ---- */

/* Reserves a chunk for at least need bytes; *out is its one free block. */
static int chunk_add(gms_pool *p, uint64_t need, gms_block **out)
{
    gms_runtime *rt = p->rt;
    uint64_t size = rt->chunk_bytes;
    if (need > size)
        size = (need + rt->granule - 1) & ~(rt->granule - 1);
    gms_chunk *c = gms__alloc_meta(rt, sizeof *c);
    gms_block *b = node_get(p);
    uint64_t ngr = size / rt->granule;
    gms_granule *gr = gms__alloc_meta(rt, ngr * sizeof *gr);
    if (!c || !b || !gr) {
        free(c);
        free(gr);
        if (b)
            node_put(p, b);
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for chunk metadata");
    }
    memset(c, 0, sizeof *c);
    memset(gr, 0, ngr * sizeof *gr);
    int err = rt->backend->ops->reserve(rt->backend, size, rt->granule, &c->base, &c->be_chunk);
    if (err) {
        free(c);
        free(gr);
        node_put(p, b);
        return gms__backend_fail(err, "reserve", size);
    }
    c->size = size;
    c->pool = p;
    c->granules = gr;
    c->ngranules = ngr;
    for (uint64_t i = 0; i < ngr; i++)
        gr[i].chunk = c;
    b->addr = c->base;
    b->size = size;
    b->chunk = c;
    b->state = GMS_BLOCK_FREE;
    c->first = b;
    gms_tlsf_insert(&p->tlsf, b);
    c->next = p->chunks;
    p->chunks = c;
    p->reserved_bytes += size;
    atomic_fetch_add(&rt->reserved_bytes, size);
    *out = b;
    return GMS_OK;
}

/* Gives a chunk that became wholly free back, unless it is the pool's last
 * one (keeping one reservation costs no memory and saves a reserve). */
static void chunk_maybe_release(gms_pool *p, gms_block *b)
{
    gms_chunk *c = b->chunk;
    if (b->size != c->size || (p->chunks == c && !c->next))
        return;
    for (uint64_t g = 0; g < c->ngranules; g++) {
        if (c->granules[g].committed) {
            uint64_t last = g;
            while (last + 1 < c->ngranules && c->granules[last + 1].committed)
                last++;
            if (granules_decommit(p, c, g, last) != 0)
                return; /* keep the chunk; its granules stay cached */
            g = last;
        }
    }
    gms_tlsf_remove(&p->tlsf, b);
    node_put(p, b);
    gms_chunk **pp = &p->chunks;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    chunk_release(p, c);
}

/* ---- blocks ---- */

/* Files a free block, merging it with free neighbours first. Returns the
 * merged block. */
static gms_block *block_file_free(gms_pool *p, gms_block *b)
{
    b->state = GMS_BLOCK_FREE;
    gms_block *prev = b->prev_phys, *next = b->next_phys;
    if (next && next->state == GMS_BLOCK_FREE) {
        gms_tlsf_remove(&p->tlsf, next);
        b->size += next->size;
        b->next_phys = next->next_phys;
        if (b->next_phys)
            b->next_phys->prev_phys = b;
        node_put(p, next);
    }
    if (prev && prev->state == GMS_BLOCK_FREE) {
        gms_tlsf_remove(&p->tlsf, prev);
        prev->size += b->size;
        prev->next_phys = b->next_phys;
        if (prev->next_phys)
            prev->next_phys->prev_phys = prev;
        node_put(p, b);
        b = prev;
    }
    gms_tlsf_insert(&p->tlsf, b);
    return b;
}

/* Whether the first size bytes of a free block lie on mapped granules. */
static bool range_mapped(const gms_pool *p, const gms_block *b, uint64_t size)
{
    const gms_chunk *c = b->chunk;
    uint64_t last = gms__granule_of(p->rt, c, b->addr + size - 1);
    for (uint64_t g = gms__granule_of(p->rt, c, b->addr); g <= last; g++)
        if (!c->granules[g].committed)
            return false;
    return true;
}

/* Splits the free block b (out of the free lists) at addr: the part
 * before becomes a free block of its own; returns the part from addr. */
static gms_block *split_front(gms_pool *p, gms_block *b, uint64_t addr, gms_block *front)
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
    gms_tlsf_insert(&p->tlsf, front);
    return b;
}

int gms__pool_alloc(gms_pool *p, gms_context *ctx, uint64_t size, uint64_t req, uint64_t align,
                    uint32_t flags, gms_block **out)
{
    /* An alignment past the blocks' own is found by asking for the worst
     * case of padding, then splitting the padding off the front. */
    uint64_t want = size + (align > GMS_ALIGNMENT ? align - GMS_ALIGNMENT : 0);
    gms_block *b = gms_tlsf_find(&p->tlsf, want);
    /* Frees waiting for their scrub (a GPU batches them) pin their blocks
     * between free ranges. Before the pool grows, scrub them, so that the
     * quarantine passes its oldest blocks back to the free lists and a
     * mapped hole can serve this request. */
    if (p->pending_blocks && (!b || !range_mapped(p, b, want))) {
        gms__safety_flush(p, NULL);
        b = gms_tlsf_find(&p->tlsf, want);
    }
    if (!b) {
        int rc = chunk_add(p, want, &b);
        if (rc)
            return rc;
    }
    uint64_t pad = align > GMS_ALIGNMENT ? ((b->addr + align - 1) & ~(align - 1)) - b->addr : 0;
    /* Nodes for the padding and the remainder, taken before anything
     * changes. */
    gms_block *front = NULL, *rest = NULL;
    if ((pad && !(front = node_get(p))) ||
        (b->size - pad - size >= GMS_ALIGNMENT && !(rest = node_get(p)))) {
        if (front)
            node_put(p, front);
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for block metadata");
    }
    gms_tlsf_remove(&p->tlsf, b);
    if (front)
        b = split_front(p, b, b->addr + pad, front);
    if (rest) {
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
        gms_tlsf_insert(&p->tlsf, rest);
    }
    b->req_size = req;
    int rc = granules_acquire(p, b);
    if (rc) {
        block_file_free(p, b);
        return rc;
    }
    b->state = GMS_BLOCK_LIVE;
    b->flags = flags;
    b->corrupt_at = 0;
    b->u.live.owner = ctx;
    gms__live_push(&ctx->live, b);
    ctx->live_blocks++;
    ctx->live_bytes += b->size;
    p->live_bytes += b->size;
    p->live_blocks++;
    p->allocs++;
    trim_aged(p);
    *out = b;
    return GMS_OK;
}

void gms__pool_free(gms_pool *p, gms_block *b)
{
    granules_release(p, b);
    b = block_file_free(p, b);
    chunk_maybe_release(p, b);
    trim_aged(p);
}
