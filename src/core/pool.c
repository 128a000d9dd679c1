/*
 * pool.c: pools, their chunks of address space, and the granules that back
 * them.
 *
 * A pool serves one (tenant, level, language). It reserves address space in
 * large chunks (reserving costs no memory) and carves blocks out of it with
 * the TLSF lists. Memory is mapped by granules (2 MiB by default, the
 * GPU's granule) where blocks are. What stays mapped follows the recent
 * peak of live memory, not live memory itself (the retain policy below): a
 * training step frees and re-allocates gigabytes, and remapping them every
 * step would cost tens of microseconds a granule. A granule that loses its
 * last block joins a cache of mapped-but-empty granules, unmapped oldest
 * first once held memory passes what the recent peak needs. In steady state
 * alloc and free find their granules mapped already and make no backend
 * call.
 *
 * Stream order: free blocks carry the stream and ticket of the last device
 * work on them (core/pool.h); an allocation takes a block that its stream
 * may use now, and a granule is unmapped only once the device has run the
 * work queued on it. Nothing here waits for the device.
 *
 * Every function here runs with pool->lock held, except create/destroy.
 * The pool never calls into src/safety: freed memory flows one way, from
 * the safety pipeline to gms__pool_free.
 */
#include "core/pool.h"

#include <errno.h>

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

const char *gms__user_name(const gms_pool *p, uint32_t i)
{
    if (i == GMS_USER_ELSEWHERE)
        return "(a holder in another pool)";
    return i < p->nusers ? p->users[i] : "?";
}

/* ---- device work ---- */

uint64_t gms__device_done(gms_runtime *rt)
{
    gms_backend *be = rt->backend;
    return be->ops->done_upto ? be->ops->done_upto(be) : UINT64_MAX;
}

void gms__device_quiesce(gms_runtime *rt)
{
    gms_backend *be = rt->backend;
    if (!be->ops->quiesce)
        return;
    atomic_fetch_add_explicit(&rt->gauges.device_waits, 1, memory_order_relaxed);
    if (be->ops->quiesce(be) != 0)
        gms__log_later(rt, GMS_LOG_WARN, "gms: waiting for the device failed; device work may be lost");
}

/* device_run_now's batch with zero items: those go through the backend's
 * fill, the others through its scrub (kept apart: its copy of the batch
 * would cost every other call a large stack frame). */
static __attribute__((noinline)) int run_with_zeros(gms_pool *p, gms_scrub_item *items, size_t n)
{
    gms_backend *be = p->rt->backend;
    gms_scrub_item rest[GMS_SCRUB_ASYNC_MAX];
    int err = 0;
    for (size_t i = 0; i < n; i++) {
        rest[i] = items[i];
        if (!items[i].zero)
            continue;
        for (int r = 0; r < 2; r++) {
            uint64_t lo = items[i].fill_lo[r], hi = items[i].fill_hi[r];
            if (!err && lo < hi)
                err = be->ops->fill(be, lo, 0, hi - lo);
            rest[i].fill_lo[r] = rest[i].fill_hi[r] = 0;
        }
    }
    if (!err)
        err = be->ops->scrub(be, rest, n, p->rt->safety.pattern, p->rt->safety.wipe_seed);
    for (size_t i = 0; i < n; i++) {
        items[i].bad = err ? 0 : rest[i].bad;
        items[i].verify_bad = err ? 0 : rest[i].verify_bad;
    }
    return err;
}

/* Runs a batch now, after the work queued on stream: the fallback when the
 * backend has no streams or too much in flight (n <= GMS_SCRUB_ASYNC_MAX). */
static int device_run_now(gms_pool *p, gms_scrub_item *items, size_t n, void *stream)
{
    gms_backend *be = p->rt->backend;
    if (be->ops->order_after) {
        atomic_fetch_add_explicit(&p->rt->gauges.device_waits, 1, memory_order_relaxed);
        int err = be->ops->order_after(be, stream, 1);
        if (err)
            return err;
    }
    for (size_t i = 0; i < n; i++)
        if (items[i].zero)
            return run_with_zeros(p, items, n);
    return be->ops->scrub(be, items, n, p->rt->safety.pattern, p->rt->safety.wipe_seed); /* the host's case */
}

int gms__device_reserve(gms_pool *p, uint64_t *ticket)
{
    gms_backend *be = p->rt->backend;
    *ticket = 0;
    if (!be->ops->ticket_reserve)
        return 0;
    int err = be->ops->ticket_reserve(be, ticket);
    if (err == EBUSY && !p->told_busy) {
        p->told_busy = true; /* once: it can recur at every free */
        gms__log_later(p->rt, GMS_LOG_WARN, "gms: pool %llu: the device has too much safety work in flight; batches wait for their stream meanwhile",
                 (unsigned long long)p->id);
    }
    return err;
}

int gms__device_launch(gms_pool *p, gms_scrub_item *items, size_t n, void *stream,
                       uint64_t ticket)
{
    gms_runtime *rt = p->rt;
    gms_backend *be = rt->backend;
    if (ticket)
        return be->ops->scrub_async(be, items, n, rt->safety.pattern, rt->safety.wipe_seed,
                                    gms__queue_stream(stream), ticket);
    /* A marker has nothing to order. */
    return n ? device_run_now(p, items, n, gms__queue_stream(stream)) : 0;
}

int gms__device_queue(gms_pool *p, gms_scrub_item *items, size_t n, void *stream,
                      uint64_t *ticket)
{
    int err = gms__device_reserve(p, ticket);
    if (err && err != EBUSY)
        return err;
    return gms__device_launch(p, items, n, stream, *ticket);
}

int gms__device_collect(gms_pool *p, uint64_t ticket, gms_scrub_item *items, size_t n)
{
    gms_backend *be = p->rt->backend;
    return be->ops->scrub_collect(be, ticket, items, n);
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
    if (pthread_cond_init(&p->win_cond, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return gms__fail(GMS_E_NO_MEMORY, "cannot create a pool's condition variable");
    }
    p->rt = rt;
    p->tenant = t;
    p->level = level;
    p->language = lang;
    p->inflight_tail = &p->inflight_head;
    p->quarantine_tail = &p->quarantine_head;
    p->device = rt->config.device;
    *out = p;
    return GMS_OK;
}

static void chunk_release(gms_pool *p, gms_chunk *c)
{
    gms_runtime *rt = p->rt;
    rt->backend->ops->release(rt->backend, c->be_chunk);
    atomic_fetch_sub(&rt->gauges.reserved_bytes, c->size);
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
            held += c->granules[g].committed ? rt->config.granule : 0;
        atomic_fetch_sub(&rt->gauges.held_bytes, held);
        chunk_release(p, c);
    }
    for (gms_node_slab *s = p->slabs, *n; s; s = n) {
        n = s->next;
        free(s);
    }
    free(p->users);
    free(p->pending);
    pthread_cond_destroy(&p->win_cond);
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
    p->cached_bytes -= p->rt->config.granule;
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
    p->cached_bytes += p->rt->config.granule;
}

static bool in_lru(const gms_pool *p, const gms_granule *g)
{
    return g->lru_prev || p->lru_head == g;
}

/* Counts bytes about to be mapped, refused past the runtime's limit. */
static int held_add(gms_pool *p, uint64_t bytes)
{
    gms_runtime *rt = p->rt;
    uint64_t now = atomic_fetch_add(&rt->gauges.held_bytes, bytes) + bytes;
    if (rt->config.max_held && now > rt->config.max_held) {
        atomic_fetch_sub(&rt->gauges.held_bytes, bytes);
        return gms__fail(GMS_E_NO_MEMORY,
                         "mapping %llu bytes would pass the runtime's limit of %llu bytes held (max_held_bytes)",
                         (unsigned long long)bytes, (unsigned long long)rt->config.max_held);
    }
    p->held_bytes += bytes;
    if (p->held_bytes > p->peak_held_recent)
        p->peak_held_recent = p->held_bytes;
    gms__atomic_max(&rt->gauges.peak_held, now);
    return GMS_OK;
}

static void held_sub(gms_pool *p, uint64_t bytes)
{
    p->held_bytes -= bytes;
    atomic_fetch_sub(&p->rt->gauges.held_bytes, bytes);
}

/* One line per map or unmap to $GMS_DEBUG_MAPS, with the marks that
 * decided it. */
static void map_log(const gms_pool *p, const char *what, uint64_t bytes)
{
    FILE *f = p->rt->config.map_log;
    if (!f)
        return;
    fprintf(f, "%llu pool %llu %s %llu MiB: live %llu held %llu cached %llu peak %llu peak_held %llu "
               "quarantine %llu MiB (%llu blocks)\n",
            (unsigned long long)(gms__now_ns() / 1000000), (unsigned long long)p->id, what,
            (unsigned long long)(bytes >> 20), (unsigned long long)(p->live_bytes >> 20),
            (unsigned long long)(p->held_bytes >> 20), (unsigned long long)(p->cached_bytes >> 20),
            (unsigned long long)(p->peak_recent >> 20), (unsigned long long)(p->peak_held_recent >> 20),
            (unsigned long long)(p->quarantine_bytes >> 20), (unsigned long long)p->quarantine_blocks);
    fflush(f);
}

/* Unmaps granules [first, last] of a chunk, all cached; on failure they
 * stay mapped and cached (the memory is not lost, only not returned). */
static int granules_decommit(gms_pool *p, gms_chunk *c, uint64_t first, uint64_t last,
                             bool for_growth)
{
    gms_runtime *rt = p->rt;
    uint64_t len = (last - first + 1) * rt->config.granule;
    int err = rt->backend->ops->decommit(rt->backend, c->be_chunk, first * rt->config.granule, len);
    atomic_fetch_add_explicit(&rt->gauges.unmaps, 1, memory_order_relaxed);
    if (err) {
        gms__log_later(rt, GMS_LOG_WARN, "gms: pool %llu: returning %llu bytes to the backend failed (errno %d); kept mapped",
                 (unsigned long long)p->id, (unsigned long long)len, err);
        return err;
    }
    for (uint64_t g = first; g <= last; g++) {
        lru_unlink(p, &c->granules[g]);
        c->granules[g].committed = false;
        c->granules[g].growth_trimmed = for_growth;
        c->granules[g].ext_len = c->granules[g].ext_back = 0;
    }
    held_sub(p, len);
    map_log(p, "unmap", len);
    return 0;
}

/* The extent of committed granule i of chunk c: [*first, *last]. */
static void extent_span(const gms_chunk *c, uint64_t i, uint64_t *first, uint64_t *last)
{
    *first = i - c->granules[i].ext_back;
    *last = *first + c->granules[*first].ext_len - 1;
}

bool gms__tag_ran(gms_runtime *rt, void *stream, uint64_t ticket, uint64_t *done)
{
    if (ticket == 0 || ticket <= *done)
        return true;
    gms_backend *be = rt->backend;
    if (stream != GMS_STREAM_MIXED && be->ops->ticket_done)
        return be->ops->ticket_done(be, ticket);
    *done = gms__device_done(rt);
    return ticket <= *done;
}

static bool granule_idle(gms_runtime *rt, const gms_granule *g, uint64_t *done)
{
    return gms__tag_ran(rt, g->stream, g->ticket, done);
}

/* Whether granule i of chunk c is cached, idle, and so is the rest of its
 * extent, which can then be unmapped; its span in [*first, *last]. */
static bool extent_free(gms_pool *p, gms_chunk *c, uint64_t i, uint64_t *first, uint64_t *last,
                        uint64_t *done)
{
    if (!in_lru(p, &c->granules[i]))
        return false;
    extent_span(c, i, first, last);
    for (uint64_t u = *first; u <= *last; u++)
        if (!in_lru(p, &c->granules[u]) || !granule_idle(p->rt, &c->granules[u], done))
            return false;
    return true;
}

/* How many cached granules a trim passes over, at most, whose extent
 * still has a block on it. */
#define TRIM_PASS_MAX 1024

/* Unmaps cached granules, oldest first, while more than keep bytes are
 * cached and the oldest was cached before `before`, each with the rest of
 * its extent (a granule whose extent still has a block on it is passed
 * over). A granule that device work still uses stops the walk: unmapping
 * it would fault that work, and waiting is not allowed here; a later call
 * takes it. */
static void trim(gms_pool *p, uint64_t keep, uint64_t before, bool for_growth)
{
    uint64_t done = 0;
    unsigned passed = 0;
    gms_granule *g = p->lru_head, *kept = NULL; /* kept: the last passed over */
    while (g && p->cached_bytes > keep && g->cached_ns < before && granule_idle(p->rt, g, &done)) {
        gms_chunk *c = g->chunk;
        uint64_t first, last, f, l;
        if (!extent_free(p, c, (uint64_t)(g - c->granules), &first, &last, &done)) {
            if (++passed == TRIM_PASS_MAX)
                break;
            kept = g;
            g = g->lru_next;
            continue;
        }
        /* Widen to the neighbouring extents that are free too, no further
         * than the excess over keep: one backend call per run. */
        uint64_t excess = (p->cached_bytes - keep + p->rt->config.granule - 1) >> p->rt->config.granule_shift;
        while (last - first + 1 < excess && last + 1 < c->ngranules &&
               extent_free(p, c, last + 1, &f, &l, &done))
            last = l;
        while (last - first + 1 < excess && first > 0 && extent_free(p, c, first - 1, &f, &l, &done))
            first = f;
        if (granules_decommit(p, c, first, last, for_growth) != 0)
            return;
        g = kept ? kept->lru_next : p->lru_head; /* kept's extent stays */
    }
    if (p->cached_bytes > keep && g && g->cached_ns < before)
        map_log(p, "trim stopped by device work, cached over keep", p->cached_bytes - keep);
}

void gms__pool_trim(gms_pool *p, uint64_t keep)
{
    trim(p, keep, UINT64_MAX, false);
}

/* ---- the retain policy ----
 * A pool keeps mapped what the recent peak of its live memory needs: the
 * peak, plus a slack of max(8 MiB, peak/32) for the granules that blocks
 * straddle, and at least what it held at that peak (the layout of a step
 * repeats, so what a step needed mapped, the next needs again). While the
 * workload comes back near its peak (within 1/8) the marks hold; once it
 * has not for PEAK_HOLD_NS, their excess over what is in use halves every
 * PEAK_HOLD_NS. So a training loop maps its memory in its first steps and
 * reuses it in every later one, and memory goes back within seconds once
 * the workload shrinks (at once on gms_trim, under pressure, or past
 * max_held_bytes). Where remapping is costly (a GPU), granules that the
 * growth trim unmapped and a later block mapped again raise the growth
 * budget by their size, up to an eighth of the peak: a training step
 * whose layout needs more than the slack moves less memory each step, and
 * extents (GMS_EXTENT_MAX) make what it still moves cheap (on the host,
 * where remapping costs next to nothing, the budget stays tight).
 * retain_bytes, when set, fixes the cache instead. */
#define PEAK_HOLD_NS (2000ull * 1000 * 1000)
/* The least a pool keeps cached, and the least slack over its peak. */
#define RETAIN_FLOOR (8ull << 20)

/* What a peak of live bytes needs mapped beyond itself: the granules its
 * blocks straddle. */
static uint64_t peak_slack(uint64_t peak)
{
    return gms__scaled_limit(0, peak, RETAIN_FLOOR, 32);
}

/* After live memory grew (pool_alloc), at now. */
static void peak_note(gms_pool *p, uint64_t now)
{
    if (p->live_bytes >= p->peak_recent - p->peak_recent / 8) {
        if (p->live_bytes > p->peak_recent)
            p->peak_recent = p->live_bytes;
        if (p->held_bytes > p->peak_held_recent)
            p->peak_held_recent = p->held_bytes;
        p->peak_decay_ns = now;
    }
}

/* Bytes of empty granules the pool may keep mapped now. */
static uint64_t retain_limit(gms_pool *p, uint64_t now)
{
    if (p->rt->config.retain_bytes)
        return p->rt->config.retain_bytes;
    uint64_t in_use = p->held_bytes - p->cached_bytes; /* granules with blocks */
    if (now - p->peak_decay_ns >= PEAK_HOLD_NS &&
        (p->peak_recent > p->live_bytes || p->peak_held_recent > in_use)) {
        if (p->peak_recent > p->live_bytes)
            p->peak_recent = p->live_bytes + (p->peak_recent - p->live_bytes) / 2;
        if (p->peak_held_recent > in_use)
            p->peak_held_recent = in_use + (p->peak_held_recent - in_use) / 2;
        p->remapped_bytes /= 2;
        p->peak_decay_ns = now;
    }
    uint64_t peak = p->peak_recent > p->live_bytes ? p->peak_recent : p->live_bytes;
    uint64_t by_live = peak - p->live_bytes + peak_slack(peak);
    uint64_t by_held = p->peak_held_recent > in_use ? p->peak_held_recent - in_use : 0;
    return by_live > by_held ? by_live : by_held;
}

/* Unmaps what has aged in the cache beyond the retain limit. */
static void trim_aged(gms_pool *p)
{
    uint64_t floor = p->rt->config.retain_bytes ? p->rt->config.retain_bytes : RETAIN_FLOOR;
    if (p->cached_bytes <= floor)
        return; /* the common case: no clock read */
    uint64_t now = gms__now_ns(), keep = retain_limit(p, now);
    if (p->cached_bytes > keep)
        trim(p, keep, now - RETAIN_AGE_NS, false);
}

/* The granule range [first, last] a block overlaps. */
static void granule_span(const gms_pool *p, const gms_block *b, uint64_t *first, uint64_t *last)
{
    *first = gms__granule_of(p->rt, b->chunk, b->addr);
    *last = gms__granule_of(p->rt, b->chunk, b->addr + b->size - 1);
}

/* Makes fresh granules [g, end] ready for block b, on b's stream: its data
 * zeroed (new memory reads as zeros), the rest poisoned with safety on
 * (free memory holds the pattern) or zeroed. One batch; on a backend
 * without streams, the host backend's fresh pages read as zeros already
 * and only the poison is written. Granules never committed before skip
 * what they already read as (the backend's `fresh`): a gmsd lease's
 * zeros, or the poison a spare lease was filled with ahead, where its data
 * reads as the pattern, as reused memory's does with safety on. So
 * gms_alloc's first buffer in a lease waits for no device work with
 * safety off, nor in a spare lease with it on. */
static int granules_prepare(gms_pool *p, gms_block *b, uint64_t g, uint64_t end)
{
    gms_runtime *rt = p->rt;
    gms_chunk *c = b->chunk;
    uint64_t lo = c->base + g * rt->config.granule, hi = c->base + (end + 1) * rt->config.granule;
    uint64_t data_lo = b->addr > lo ? b->addr : lo;
    uint64_t data_hi = b->addr + b->req_size < hi ? b->addr + b->req_size : hi;
    bool zero_all = !rt->safety.on, stream_ordered = rt->backend->ops->scrub_async != NULL;
    bool zeros = true, poison = true;
    for (uint64_t u = g; u <= end; u++) {
        zeros &= c->granules[u].fresh == GMS_FRESH_ZEROS;
        poison &= c->granules[u].fresh == GMS_FRESH_POISON;
    }
    bool data_ready = zeros || (poison && !zero_all);
    gms_scrub_item it[2];
    memset(it, 0, sizeof it);
    size_t n = 0;
    if (stream_ordered && !data_ready && (zero_all || data_lo < data_hi)) {
        it[n].zero = 1;
        it[n].fill_lo[0] = zero_all ? lo : data_lo;
        it[n].fill_hi[0] = zero_all ? hi : data_hi;
        n++;
    }
    if (!zero_all && !poison) {
        it[n].fill_lo[0] = lo;
        it[n].fill_hi[0] = data_lo > lo ? data_lo : lo;
        it[n].fill_lo[1] = data_hi > lo ? data_hi : lo;
        it[n].fill_hi[1] = hi;
        n++;
    }
    if (n == 0)
        return GMS_OK;
    uint64_t ticket;
    void *on = gms__queue_stream(b->stream);
    int err = gms__device_queue(p, it, n, on, &ticket);
    if (err)
        return gms__backend_fail(err, "preparing new memory", hi - lo);
    for (uint64_t u = g; u <= end; u++) {
        c->granules[u].stream = on;
        c->granules[u].ticket = ticket;
    }
    /* The free neighbours hold the rest of these granules. */
    if (ticket > b->ticket)
        b->ticket = ticket;
    if (b->prev_phys && b->prev_phys->state == GMS_BLOCK_FREE)
        gms__tag_add(&b->prev_phys->stream, &b->prev_phys->ticket, on, ticket);
    if (b->next_phys && b->next_phys->state == GMS_BLOCK_FREE)
        gms__tag_add(&b->next_phys->stream, &b->next_phys->ticket, on, ticket);
    return GMS_OK;
}

/* Maps the unmapped granules [g, end] for block b: one backend call an
 * extent, then their preparation, queued on b's stream. */
static int granules_map(gms_pool *p, gms_block *b, uint64_t g, uint64_t end)
{
    gms_runtime *rt = p->rt;
    gms_chunk *c = b->chunk;
    uint64_t len = (end - g + 1) * rt->config.granule, gran = rt->config.granule;
    int rc = held_add(p, len);
    if (rc)
        return rc;
    bool whole = rt->backend->ops->props & GMS_BACKEND_WHOLE_COMMITS;
    /* Extents end where b's own granules begin and end, and where its
     * data does: what is b's alone can go back when b does, whatever its
     * neighbours hold, and a read-only view of its pages maps whole
     * extents. */
    uint64_t mask = gran - 1, cut[3] = {
        gms__granule_of(rt, c, (b->addr + mask) & ~mask),
        gms__granule_of(rt, c, (b->addr + b->req_size + mask) & ~mask),
        gms__granule_of(rt, c, (b->addr + b->size) & ~mask)};
    atomic_fetch_add_explicit(&rt->gauges.maps, 1, memory_order_relaxed);
    for (uint64_t u = g; u <= end;) {
        uint64_t n = whole ? end - u + 1 : end - g + 1;
        for (int k = 0; whole && k < 3; k++)
            if (cut[k] > u && cut[k] - u < n)
                n = cut[k] - u;
        if (whole && n > GMS_EXTENT_MAX)
            n = n < 2 * GMS_EXTENT_MAX ? (n + 1) / 2 : GMS_EXTENT_MAX; /* no sliver at the end */
        int err = rt->backend->ops->commit(rt->backend, c->be_chunk, u * gran, n * gran);
        if (err) {
            /* The extents mapped so far go back, unprepared; should that
             * fail too, they stay mapped, counted, and go to the cache
             * (granules_acquire), as unprepared memory does below. */
            bool back = u == g || rt->backend->ops->decommit(rt->backend, c->be_chunk, g * gran,
                                                             (u - g) * gran) == 0;
            held_sub(p, back ? len : len - (u - g) * gran);
            for (uint64_t v = g; v < u; v++) {
                if (back)
                    c->granules[v].ext_len = c->granules[v].ext_back = 0;
                c->granules[v].committed = !back;
                c->granules[v].ticket = 0;
                c->granules[v].stream = NULL;
            }
            return gms__backend_fail(err, "commit", n * gran);
        }
        for (uint64_t v = u; v < u + n; v++) {
            c->granules[v].ext_len = whole ? (v == u ? (uint32_t)n : 0) : 1;
            c->granules[v].ext_back = whole ? (uint32_t)(v - u) : 0;
        }
        u += n;
    }
    for (uint64_t u = g; u <= end; u++) {
        if (c->granules[u].growth_trimmed)
            p->remapped_bytes += gran; /* the layout needed it after all */
        c->granules[u].growth_trimmed = false;
        c->granules[u].committed = true;
        c->granules[u].ticket = 0;
        c->granules[u].stream = NULL;
    }
    map_log(p, "map", len);
    rc = granules_prepare(p, b, g, end);
    for (uint64_t u = g; u <= end; u++)
        c->granules[u].fresh = GMS_FRESH_UNKNOWN; /* its next owner's bytes, or the poison */
    if (rc != GMS_OK) {
        /* Mapped but not prepared: give it straight back. */
        for (uint64_t u = g; u <= end; u++)
            lru_push(p, &c->granules[u], 0);
        granules_decommit(p, c, g, end, false);
    }
    return rc;
}

/* What the pool may hold once `need` more bytes are mapped: the recent
 * peak of live memory plus its slack (or live memory plus need if more),
 * or what it held at its recent peak if more (the retain policy above);
 * with retain_bytes, what is in use plus need plus that fixed cache. */
static uint64_t growth_budget(const gms_pool *p, uint64_t need)
{
    if (p->rt->config.retain_bytes)
        return p->held_bytes - p->cached_bytes + need + p->rt->config.retain_bytes;
    uint64_t live = p->live_bytes + need;
    uint64_t peak = p->peak_recent > live ? p->peak_recent : live;
    uint64_t budget = peak + peak_slack(peak);
    if (p->rt->backend->ops->props & GMS_BACKEND_REMAP_COSTLY)
        budget += p->remapped_bytes < peak / 8 ? p->remapped_bytes : peak / 8;
    return budget > p->peak_held_recent ? budget : p->peak_held_recent;
}

/* Bytes of cached granules that may stay mapped when `need` more are to be
 * mapped: what keeps the pool within its growth budget. */
static uint64_t growth_keep(gms_pool *p, uint64_t need)
{
    uint64_t budget = growth_budget(p, need);
    uint64_t over = p->held_bytes + need > budget ? p->held_bytes + need - budget : 0;
    return p->cached_bytes > over ? p->cached_bytes - over : 0;
}

/* Counts a new block on its granules, mapping those not mapped, one
 * backend call per run of unmapped granules. Undoes itself on failure. */
static int granules_acquire(gms_pool *p, gms_block *b)
{
    gms_chunk *c = b->chunk;
    uint64_t first, last, need = 0;
    granule_span(p, b, &first, &last);
    /* Take the block's cached granules out of the cache first, so that the
     * trim below cannot unmap them. */
    for (uint64_t g = first; g <= last; g++) {
        if (in_lru(p, &c->granules[g]))
            lru_unlink(p, &c->granules[g]);
        need += c->granules[g].committed ? 0 : p->rt->config.granule;
    }
    /* Growing: first give back cached granules beyond what the recent peak
     * needs, so that what is held never passes it by more than its slack. */
    if (need) {
        uint64_t keep = growth_keep(p, need);
        if (keep < p->cached_bytes)
            map_log(p, "growth trim, keep", keep);
        trim(p, keep, UINT64_MAX, true);
    }
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
    uint64_t mask = p->rt->config.granule - 1; /* chunk bases are granule-aligned */
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
    if (b->req_size < rt->config.granule || b->hollow || !(rt->backend->ops->props & GMS_BACKEND_UNMAP_WIPES) ||
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
        c->granules[g].ext_len = c->granules[g].ext_back = 0;
    }
    held_sub(p, hi - lo);
    b->hollow = true;
}

static void granules_release(gms_pool *p, gms_block *b)
{
    gms_chunk *c = b->chunk;
    /* With safety off a block comes here from its free, whose time it
     * carries: a granule it leaves empty ages from then, without a second
     * clock read. With safety on it comes from the quarantine, later. */
    uint64_t first, last, lo[2], hi[2], now = p->rt->safety.on ? 0 : b->free_ns;
    gms__block_mapped(p, b, lo, hi);
    for (int r = 0; r < 2; r++) {
        if (lo[r] >= hi[r])
            continue;
        first = gms__granule_of(p->rt, c, lo[r]);
        last = gms__granule_of(p->rt, c, hi[r] - 1);
        for (uint64_t g = first; g <= last; g++) {
            gms_granule *gr = &c->granules[g];
            gms__tag_add(&gr->stream, &gr->ticket, b->stream, b->ticket);
            if (--gr->live == 0)
                lru_push(p, gr, now ? now : (now = gms__now_ns()));
        }
    }
    b->hollow = false;
}

/* ---- chunks ---- */

/* Reserves a chunk for at least need bytes (just that, rounded to whole
 * granules, when alone); *out is its one free block. */
static int chunk_add(gms_pool *p, unsigned heap, uint64_t need, bool alone, gms_block **out)
{
    gms_runtime *rt = p->rt;
    uint64_t size = rt->config.chunk_bytes;
    if (need > size || alone)
        size = (need + rt->config.granule - 1) & ~(rt->config.granule - 1);
    gms_chunk *c = gms__alloc_meta(rt, sizeof *c);
    gms_block *b = node_get(p);
    uint64_t ngr = size / rt->config.granule;
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
    int rc_place;
    int err = rt->backend->ops->reserve(rt->backend, size, rt->config.granule, &c->base, &c->be_chunk);
    if (err) {
        free(c);
        free(gr);
        node_put(p, b);
        return gms__backend_fail(err, "reserve", size);
    }
    if (p->device != rt->config.device && (rc_place = gms__chunk_place(p, c)) != GMS_OK) {
        rt->backend->ops->release(rt->backend, c->be_chunk);
        free(c);
        free(gr);
        node_put(p, b);
        return rc_place;
    }
    c->size = size;
    c->heap = heap;
    c->pool = p;
    c->granules = gr;
    c->ngranules = ngr;
    gms_backend *be = rt->backend;
    uint8_t fresh = be->ops->fresh ? (uint8_t)be->ops->fresh(be, c->be_chunk) : GMS_FRESH_UNKNOWN;
    for (uint64_t i = 0; i < ngr; i++) {
        gr[i].chunk = c;
        gr[i].fresh = fresh;
    }
    b->addr = c->base;
    b->size = size;
    b->chunk = c;
    b->state = GMS_BLOCK_FREE;
    c->first = b;
    gms__tlsf_insert(&p->tlsf[heap], b);
    c->next = p->chunks;
    p->chunks = c;
    p->reserved_bytes += size;
    atomic_fetch_add(&rt->gauges.reserved_bytes, size);
    *out = b;
    return GMS_OK;
}

/* Takes chunk c, its granules unmapped, off the pool and gives it back. */
static void chunk_forget(gms_pool *p, gms_chunk *c)
{
    node_put(p, c->first);
    gms_chunk **pp = &p->chunks;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    chunk_release(p, c);
}

/* Gives chunk c back if it is wholly free and no device work runs on it;
 * true if it went. */
static bool chunk_release_free(gms_pool *p, gms_chunk *c)
{
    gms_block *b = c->first;
    if (b->state != GMS_BLOCK_FREE || b->size != c->size)
        return false;
    uint64_t done = 0;
    for (uint64_t g = 0; g < c->ngranules; g++)
        if (c->granules[g].committed && !granule_idle(p->rt, &c->granules[g], &done))
            return false; /* device work still runs on it: a later free or trim */
    for (uint64_t g = 0; g < c->ngranules; g++) {
        if (c->granules[g].committed) {
            uint64_t last = g;
            while (last + 1 < c->ngranules && c->granules[last + 1].committed)
                last++;
            if (granules_decommit(p, c, g, last, false) != 0)
                return false; /* keep the chunk; its granules stay cached */
            g = last;
        }
    }
    gms__tlsf_remove(&p->tlsf[c->heap], b);
    chunk_forget(p, c);
    return true;
}

void gms__pool_give_away(gms_pool *p, gms_block *b)
{
    gms_chunk *c = b->chunk;
    b->state = GMS_BLOCK_FREE;
    /* No decommit: releasing the chunk unmaps all of it, and nothing may
     * stop it going (the free lists must never see it). Its granules were
     * the block's alone, so none is in the cache. */
    uint64_t held = 0;
    for (uint64_t g = 0; g < c->ngranules; g++)
        held += c->granules[g].committed ? p->rt->config.granule : 0;
    held_sub(p, held);
    chunk_forget(p, c);
}

/* Gives a chunk that became wholly free back, unless it is the last one
 * of its heap (keeping one reservation while the pool is in use costs no
 * memory and saves a reserve; an idle pool gives it back too). */
static void chunk_maybe_release(gms_pool *p, gms_block *b)
{
    gms_chunk *c = b->chunk;
    if (b->size != c->size)
        return;
    for (const gms_chunk *o = p->chunks; o; o = o->next)
        if (o != c && o->heap == c->heap) {
            chunk_release_free(p, c);
            return;
        }
}

bool gms__pool_release_chunks(gms_pool *p)
{
    for (gms_chunk *c = p->chunks, *n; c; c = n) {
        n = c->next;
        chunk_release_free(p, c);
    }
    if (p->chunks)
        return false;
    /* No block is left: every node is free, and the slabs go too. */
    for (gms_node_slab *s = p->slabs, *n; s; s = n) {
        n = s->next;
        free(s);
    }
    p->slabs = NULL;
    p->free_nodes = NULL;
    return true;
}

void gms__pool_reuse(gms_pool *p, gms_tenant *t, gms_level level, gms_language lang)
{
    p->tenant = t;
    p->level = level;
    p->language = lang;
    p->idle = false;
    p->told_busy = false;
    p->nusers = 0;
    p->peak_recent = p->peak_held_recent = p->peak_decay_ns = 0;
    p->remapped_bytes = 0;
    if (!p->chunks) /* else a chunk kept from before stays where it is */
        p->device = p->rt->config.device;
    p->lost = false;
}

/* ---- blocks ---- */

/* Files a free block, merging it with free neighbours first (the nodes
 * merged away go back to the pool). Returns the merged block. */
static gms_block *block_file_free(gms_pool *p, gms_block *b)
{
    gms_block *gone[2];
    b = gms__tlsf_file_free(&p->tlsf[b->chunk->heap], b, gone);
    for (int i = 0; i < 2; i++)
        if (gone[i])
            node_put(p, gone[i]);
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

/* Whether a free block may serve an allocation on stream now: its last
 * device work was queued on that stream, or has run. *done caches the
 * backend's answer (0: not asked yet). */
static bool usable_on(gms_pool *p, const gms_block *b, void *stream, uint64_t *done)
{
    return b->ticket == 0 || b->stream == stream || gms__tag_ran(p->rt, b->stream, b->ticket, done);
}

/* How many free blocks another stream still uses are passed over, at
 * most, before the pool grows instead. */
#define STREAM_SCAN 16

/* How much larger than the request a mapped fit may be, at most, when the
 * pool is at its growth budget (other_fit). */
#define AT_BUDGET_FIT_MAX 256

/* When the best fit b is not one the allocation should take: another
 * stream's device work still uses it, or it would need memory mapped (tens
 * of microseconds a granule, and memory held beyond the peak). Passed-over
 * blocks leave the lists while the next best fit is found, then go back.
 * Returns a usable block, preferring a mapped one at most twice the
 * request (a larger one would be carved into holes that fragment the pool
 * more than mapping costs) while the pool has room to grow, any mapped one
 * once it has not, or NULL: the pool grows. */
static __attribute__((noinline)) gms_block *other_fit(gms_pool *p, gms_tlsf *t, gms_block *b,
                                                       uint64_t want, void *stream)
{
    gms_block *skipped[STREAM_SCAN], *unmapped = NULL;
    int nskipped = 0;
    uint64_t done = 0;
    while (b && nskipped < STREAM_SCAN) {
        bool usable = usable_on(p, b, stream, &done);
        if (usable && range_mapped(p, b, want))
            break;
        if (usable && !unmapped)
            unmapped = b; /* the best fit, should no mapped one be near */
        gms__tlsf_remove(t, b);
        skipped[nskipped++] = b;
        b = gms__tlsf_find(t, want);
    }
    if (b && !(usable_on(p, b, stream, &done) && range_mapped(p, b, want)))
        b = NULL; /* the scan ended on one it may not take as it is */
    /* A loose mapped fit still beats mapping once the pool is at its
     * budget: mapping would unmap cached granules elsewhere to make room,
     * and a training loop would pay for both in every step. Not a vast
     * one, though: a small block in the middle of a hole a thousand times
     * its size splits what a large one needs next. */
    if (unmapped && (!b || (b->size > 2 * want && (p->held_bytes + want <= growth_budget(p, want) ||
                                                    b->size > AT_BUDGET_FIT_MAX * want))))
        b = unmapped;
    while (nskipped)
        gms__tlsf_insert(t, skipped[--nskipped]);
    return b;
}

int gms__pool_alloc(gms_pool *p, gms_context *ctx, uint64_t size, uint64_t req, uint64_t align,
                    uint32_t flags, void *stream, bool may_map, uint64_t closer,
                    gms_block **out)
{
    /* An alignment past the blocks' own is found by asking for the worst
     * case of padding, then splitting the padding off the front. */
    uint64_t want = gms__pool_want(size, align);
    unsigned heap = gms__pool_heap(want);
    gms_tlsf *t = &p->tlsf[heap];
    bool alone = (flags & GMS_ALLOC_PAGES) && p->rt->config.pages_alone;
    gms_block *b = alone ? NULL : gms__tlsf_find(t, want);
    uint64_t done = 0;
    if (b && !(usable_on(p, b, stream, &done) && range_mapped(p, b, want))) {
        b = other_fit(p, t, b, want, stream);
        if (b && !may_map && !range_mapped(p, b, want))
            return GMS__WOULD_MAP;
    }
    if (!may_map && !b)
        return GMS__WOULD_MAP;
    if (!may_map && closer && b->size > closer)
        return GMS__CLOSER_HELD;
    if (!b) {
        int rc = chunk_add(p, heap, alone ? size : want, alone, &b);
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
    gms__tlsf_remove(t, b);
    if (front)
        b = gms__tlsf_split_front(t, b, b->addr + pad, front);
    if (rest)
        gms__tlsf_split_back(t, b, size, rest);
    /* From here b is the caller's, on its stream; ticket stays what its
     * memory waits for. */
    void *was = b->stream;
    b->stream = stream;
    b->req_size = req;
    int rc = granules_acquire(p, b);
    if (rc) {
        b->stream = was;
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
    b->alloc_ns = gms__now_ns(); /* one clock read for the history and the mark */
    peak_note(p, b->alloc_ns);
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
