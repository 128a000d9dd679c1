/*
 * scrub.c: the life of a freed block, one way only (docs/stream-ordered.md):
 *
 *   free -> scrub queued (redzones checked, wiped by level, poisoned)
 *        -> quarantine -> check queued (poison intact?) -> pool free lists
 *
 * Each step's device work is a gms_scrub_item in a batch queued on the
 * stream the block was freed on, after the caller's work there: a pool
 * gathers the frees of one stream into one launch (the pending batch
 * below). A backend without streams (the host) runs each step on the spot,
 * with no batch (retire_sync). Nothing waits for
 * the device: a batch's results
 * come back later and are collected from the pool's in-flight list, on the
 * next free of the pool or by the runtime's collector thread, which reports
 * what they found with the block's history as it was at the free. A block
 * is reused only after its check, in stream order (pool.c's stream tags).
 * Everything here runs with pool->lock held.
 */
#include "safety/safety.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* A batch of device work: its items and, for the reports, its blocks.
 * While it is made, blk points at the blocks; a batch whose results are
 * still to come keeps copies of them in snap instead (the blocks may be
 * reused before the results come). */
typedef struct gms_scrub_batch {
    struct gms_scrub_batch *next;
    uint64_t ticket;
    uint32_t n;
    gms_scrub_item *items;
    gms_block **blk;
    gms_block *snap;
    bool *exit_check; /* a quarantine exit's check, else a free's scrub */
} gms_scrub_batch;

/* A batch being made, on the stack or in the pool's pending batch. */
typedef struct batch_build {
    gms_scrub_batch b;
    gms_scrub_item items[GMS_SCRUB_ASYNC_MAX];
    gms_block *blk[GMS_SCRUB_ASYNC_MAX];
    bool exit_check[GMS_SCRUB_ASYNC_MAX];
} batch_build;

/* Items are cleared one by one as they are added (free_item, batch_add):
 * clearing all of them at every free would cost more than the free itself
 * on the host. */
static gms_scrub_batch *build_init(batch_build *bb)
{
    memset(&bb->b, 0, sizeof bb->b);
    bb->b.items = bb->items;
    bb->b.blk = bb->blk;
    bb->b.exit_check = bb->exit_check;
    return &bb->b;
}

/* A heap copy of an in-flight batch, as small as its items, with copies
 * of its blocks as they are now. */
static gms_scrub_batch *batch_keep(gms_runtime *rt, const gms_scrub_batch *from)
{
    size_t n = from->n;
    gms_scrub_batch *bt = gms__alloc_meta(
        rt, sizeof *bt + n * (sizeof(gms_scrub_item) + sizeof(gms_block) + sizeof(bool)));
    if (!bt)
        return NULL;
    *bt = *from;
    bt->next = NULL;
    bt->blk = NULL;
    bt->snap = (gms_block *)(bt + 1);
    bt->items = (gms_scrub_item *)(bt->snap + n);
    bt->exit_check = (bool *)(bt->items + n);
    for (size_t i = 0; i < n; i++)
        bt->snap[i] = *from->blk[i];
    memcpy(bt->items, from->items, n * sizeof *bt->items);
    memcpy(bt->exit_check, from->exit_check, n * sizeof *bt->exit_check);
    return bt;
}

static uint64_t quarantine_limit(const gms_pool *p)
{
    return gms__scaled_limit(p->rt->safety.quarantine_max_bytes, p->live_bytes, 1ull << 20, 256);
}

/* Whether the granule holding address a is mapped. */
static bool mapped(const gms_runtime *rt, const gms_chunk *c, uint64_t a)
{
    return c->granules[gms__granule_of(rt, c, a)].committed;
}

/* Where a block's watched bytes end: the data and redzone_bytes after it.
 * The slack beyond (up to the alignment) is poisoned but watched only as
 * the next block's leading redzone and by gms_verify: checking and
 * poisoning it at every free would double the work for small blocks. */
static uint64_t watched_end(const gms_pool *p, const gms_block *b)
{
    uint64_t end = b->addr + b->req_size + p->rt->safety.redzone;
    return end < b->addr + b->size ? end : b->addr + b->size;
}

void gms__safety_retired_ranges(const gms_pool *p, const gms_block *b, uint64_t lo[2], uint64_t hi[2])
{
    gms__block_mapped(p, b, lo, hi);
    uint64_t end = watched_end(p, b);
    for (int r = 0; r < 2; r++) {
        if (hi[r] > end)
            hi[r] = end;
        if (lo[r] > hi[r])
            lo[r] = hi[r];
    }
}

void gms__safety_redzone_item(const gms_pool *p, const gms_block *b, gms_scrub_item *it)
{
    memset(it, 0, sizeof *it);
    it->check_lo[0] = b->addr + b->req_size;
    it->check_hi[0] = watched_end(p, b);
    if (!b->prev_phys)
        return; /* first block of its chunk: a guard precedes it */
    /* The redzone_bytes before the block hold the pattern whatever the
     * neighbour is: a live neighbour has at least that much redzone after
     * its data, free and quarantined memory is poisoned. So the
     * neighbour's node need not be read (it is often cold). Small blocks
     * near the chunk's start: up to the start (a guard precedes it). */
    const gms_chunk *c = b->chunk;
    uint64_t lo = b->addr - c->base >= p->rt->safety.redzone ? b->addr - p->rt->safety.redzone : c->base;
    /* A redzone that starts on an unmapped granule (a free neighbour's)
     * is checked from the next granule on: a write there faults or lands
     * on the mapped part. */
    if (!mapped(p->rt, c, lo)) {
        uint64_t mask = p->rt->config.granule - 1; /* chunk bases are granule-aligned */
        lo = (lo + mask) & ~mask;
    }
    if (lo < b->addr && mapped(p->rt, c, lo) && mapped(p->rt, c, b->addr - 1)) {
        it->check_lo[1] = lo;
        it->check_hi[1] = b->addr;
    }
}

/* The scrub of a freed block: its redzones checked (and re-armed), its data
 * wiped by level and poisoned. The two never overlap, so a device may run
 * them in any order. */
static void free_item(gms_pool *p, gms_block *b, gms_scrub_item *it)
{
    gms__pool_hollow(p, b); /* the redzones lie outside what it unmaps */
    gms__safety_redzone_item(p, b, it);
    gms__safety_retired_ranges(p, b, it->fill_lo, it->fill_hi);
    for (int r = 0; r < 2; r++) {
        uint64_t data_end = b->addr + b->req_size;
        if (it->fill_hi[r] > data_end)
            it->fill_hi[r] = data_end;
        if (it->fill_lo[r] > it->fill_hi[r])
            it->fill_lo[r] = it->fill_hi[r];
    }
    it->verify = p->level >= GMS_LEVEL_CONFIDENTIAL;
    it->passes = p->level == GMS_LEVEL_SECRET && p->rt->safety.secret_multipass ? GMS_SCRUB_MULTIPASS : 0;
}

/* Reports what the scrub or check `it` of block b found (exit_check: a
 * quarantine exit's check, else a free's scrub). own_msg, when not NULL,
 * gets the message for the caller of the free, whose corruption is also
 * the returned code. */
static int item_report(gms_pool *p, const gms_scrub_item *it, const gms_block *b, bool exit_check,
                       char *own_msg, size_t own_size)
{
    int rc = GMS_OK;
    if (it->bad && exit_check) {
        gms__violation_note(p, GMS_VIOLATION_WRITE_AFTER_FREE, b->handle, it->bad, b,
                            "written after it was freed (found when it left quarantine)");
    } else if (it->bad) {
        bool under = it->bad < b->addr;
        gms__violation_note(p, under ? GMS_VIOLATION_UNDERFLOW : GMS_VIOLATION_OVERFLOW,
                            b->handle, it->bad, b, "%s (found when it was freed)",
                            under ? "bytes before the buffer were overwritten"
                                  : "bytes past the end of the buffer were overwritten");
        if (own_msg) {
            rc = GMS_E_CORRUPTION;
            snprintf(own_msg, own_size,
                     "gms_free: buffer 0x%016llx of %llu bytes: %s at offset %+lld; the buffer is freed",
                     (unsigned long long)b->handle, (unsigned long long)b->req_size,
                     under ? "underflow: bytes before it were written"
                           : "overflow: bytes past its end were written",
                     (long long)(it->bad - b->addr));
        }
    }
    if (it->verify_bad)
        gms__violation_note(p, GMS_VIOLATION_WIPE_FAILED, b->handle, it->verify_bad, b,
                            "the wipe did not read back");
    return rc;
}

/* Reports what a batch found. own: its first block, freed by the caller,
 * whose corruption is also its return code (a batch run at once); own_msg
 * gets the message. */
static int batch_report(gms_pool *p, const gms_scrub_batch *bt, char *own_msg, size_t own_size)
{
    int rc = GMS_OK;
    for (uint32_t i = 0; i < bt->n; i++) {
        const gms_block *b = bt->snap ? &bt->snap[i] : bt->blk[i];
        int r = item_report(p, &bt->items[i], b, bt->exit_check[i], i == 0 ? own_msg : NULL, own_size);
        if (r)
            rc = r;
    }
    return rc;
}

/* Gathers the results of one in-flight batch; false while the device has
 * not run it yet. */
static bool batch_collect(gms_pool *p, gms_scrub_batch *bt)
{
    int err = gms__device_collect(p, bt->ticket, bt->items, bt->n);
    if (err == EAGAIN)
        return false;
    if (err)
        gms__log_later(p->rt, GMS_LOG_WARN,
                 "gms: pool %llu: the device failed a safety batch of %u blocks (errno %d); its findings are lost",
                 (unsigned long long)p->id, bt->n, err);
    else
        batch_report(p, bt, NULL, 0);
    return true;
}

/* A launched batch waits for its results in the in-flight list. */
static void keep_in_flight(gms_pool *p, const gms_scrub_batch *made)
{
    gms_scrub_batch *bt = batch_keep(p->rt, made);
    if (!bt) {
        gms__log_later(p->rt, GMS_LOG_WARN,
                 "gms: pool %llu: out of host memory: the findings of a safety batch of %u blocks will not be reported",
                 (unsigned long long)p->id, made->n);
        return;
    }
    *p->inflight_tail = bt;
    p->inflight_tail = &bt->next;
    atomic_fetch_add_explicit(&p->inflight, 1, memory_order_relaxed);
}

/* After a batch was handed to the device (err: how that went): a launched
 * one with something to report waits in the in-flight list; a failure is
 * logged (its blocks wait in quarantine). Returns err. */
static int batch_sent(gms_pool *p, const gms_scrub_batch *bt, int err)
{
    if (err == EBUSY)
        return err; /* its stream is being captured (backend.h): a later launch takes them */
    if (err)
        gms__log_later(p->rt, GMS_LOG_WARN,
                 "gms: pool %llu: queuing safety work for %u blocks failed (backend errno %d); they wait in quarantine",
                 (unsigned long long)p->id, bt->n, err);
    else if (bt->ticket && bt->n)
        keep_in_flight(p, bt);
    return err;
}

/* ---- the pending batch ----
 * On a backend with streams, a pool gathers its frees of one stream into
 * one batch (their scrubs, and the checks of the blocks they push out of
 * quarantine) under a ticket reserved at the first of them, and queues it
 * as one launch: when it is full, when a free comes on another stream,
 * when gms_free (the synchronous call) adds to it, and at the collector's
 * next tick (GMS_COLLECT_MS) otherwise. A free's block is tagged with the
 * ticket at once, so no other stream takes it before the batch has run;
 * a block leaving quarantine waits for the launch before its pool may
 * hand it out. */
struct gms_pending {
    void *stream;
    uint64_t ticket; /* 0: none open */
    uint32_t frees;
    uint64_t bytes; /* freed and leaving: what the launch will read or write */
    uint64_t largest; /* its largest block */
    batch_build bb; /* the blocks freed into it carry its ticket, those
                       leaving the quarantine an older one */
};

/* A pending batch is launched once it moves this many bytes (or holds
 * GMS_SCRUB_ASYNC_MAX items, or at the collector's tick): eight times the
 * quarantine's byte limit (by default a thirty-second of what the pool has
 * live), at most 64 MiB. Enough that a launch's fixed cost (about 4 us of
 * the host's time on an H200, as long as the device takes to move 15 MB)
 * stays small on a pool whose frees are large; little enough that what
 * waits in quarantine for the launch stays small beside what the pool
 * holds. */
static uint64_t pending_bytes_max(const gms_pool *p)
{
    uint64_t q = quarantine_limit(p);
    return q < (8ull << 20) ? 8 * q : (64ull << 20);
}

static uint64_t pending_flush(gms_pool *p, const char *why);
static void exits_done(gms_pool *p, gms_block **taken, uint32_t first, uint32_t n, bool ok,
                       uint64_t ticket);

/* Opens (or keeps) the pool's pending batch for stream; false when the
 * backend runs batches at once (no streams, or too much in flight). */
static bool pending_open(gms_pool *p, void *stream)
{
    gms_pending *pd = p->pending;
    if (pd && pd->ticket && pd->stream == stream)
        return true;
    if (pd && pd->ticket)
        pending_flush(p, "another stream");
    if (!p->rt->backend->ops->ticket_reserve)
        return false;
    if (!pd && !(pd = p->pending = gms__alloc_meta(p->rt, sizeof *pd)))
        return false;
    uint64_t t = 0;
    if (gms__device_reserve(p, &t) == EBUSY) {
        gms__safety_collect(p, false); /* room in the device's ring */
        gms__device_reserve(p, &t);
    }
    if (!t)
        return false;
    pd->stream = stream;
    pd->ticket = t;
    pd->frees = 0;
    pd->bytes = 0;
    pd->largest = 0;
    build_init(&pd->bb);
    atomic_store_explicit(&p->pending_open, true, memory_order_relaxed);
    return true;
}

/* One line per launch of a batch to $GMS_DEBUG_MAPS (beside the maps):
 * why it was launched, so that a workload's launches can be told apart. */
static void launch_log(const gms_pool *p, const char *why, const gms_scrub_batch *bt)
{
    FILE *f = p->rt->config.map_log;
    if (!f)
        return;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < bt->n; i++)
        bytes += bt->blk[i]->size;
    fprintf(f, "%llu pool %llu launch %s: %u blocks, %llu MiB\n",
            (unsigned long long)(gms__now_ns() / 1000000), (unsigned long long)p->id, why, bt->n,
            (unsigned long long)(bytes >> 20));
}

/* Launches the pending batch; returns its ticket (0: none was open). */
static uint64_t pending_flush(gms_pool *p, const char *why)
{
    gms_pending *pd = p->pending;
    if (!pd || !pd->ticket)
        return 0;
    gms_scrub_batch *bt = &pd->bb.b;
    launch_log(p, why, bt);
    uint64_t ticket = pd->ticket;
    pd->ticket = 0;
    atomic_store_explicit(&p->pending_open, false, memory_order_relaxed);
    bt->ticket = ticket;
    int err = batch_sent(p, bt, gms__device_launch(p, bt->items, bt->n, pd->stream, ticket));
    /* Freed blocks stay in quarantine (scrubbed at their exit if the
     * launch failed); leaving ones go to the pool, or back to quarantine. */
    gms_block *taken[GMS_SCRUB_ASYNC_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < bt->n; i++) {
        if (bt->blk[i]->ticket != ticket)
            taken[n++] = bt->blk[i];
        else if (err)
            bt->blk[i]->unscrubbed = true;
    }
    exits_done(p, taken, 0, n, err == 0, ticket);
    build_init(&pd->bb);
    return ticket;
}

void gms__safety_launch(gms_pool *p)
{
    pending_flush(p, "asked for");
}

void gms__safety_launch_before(gms_pool *p, void *stream)
{
    const gms_pending *pd = p->pending;
    if (pd && pd->ticket && gms__queue_stream(pd->stream) == gms__queue_stream(stream))
        pending_flush(p, "device work queued after it");
}

unsigned gms__safety_collect(gms_pool *p, bool all)
{
    if (all)
        pending_flush(p, "collector");
    unsigned n = 0;
    gms_scrub_batch **pp = &p->inflight_head;
    while (*pp) {
        gms_scrub_batch *bt = *pp;
        if (!batch_collect(p, bt)) {
            if (!all)
                break; /* later batches are mostly later on the device too */
            pp = &bt->next;
            continue;
        }
        *pp = bt->next;
        if (!*pp)
            p->inflight_tail = pp; /* it was the last */
        free(bt);
        atomic_fetch_sub_explicit(&p->inflight, 1, memory_order_relaxed);
        n++;
    }
    return n;
}

/* Queues the batch made in bt on stream at once, then hands it on: to the
 * in-flight list, or, on a backend that ran it at once, to the reports
 * (own_msg as in batch_report; its code in *own_rc). *ticket: its ticket. */
static int batch_queue(gms_pool *p, gms_scrub_batch *bt, void *stream, uint64_t *ticket,
                       int *own_rc, char *own_msg, size_t own_size, const char *why)
{
    gms__safety_launch_before(p, stream);
    launch_log(p, why, bt);
    int err = batch_sent(p, bt, gms__device_queue(p, bt->items, bt->n, stream, &bt->ticket));
    *ticket = bt->ticket;
    if (err || bt->ticket)
        return err;
    int rc = batch_report(p, bt, own_msg, own_size);
    if (own_rc && rc)
        *own_rc = rc;
    return 0;
}

/* The work of quarantined block b as it leaves: its poison checked, or,
 * if its scrub could not be queued at its free, that scrub. Returns
 * whether it is a check. */
static bool exit_item(gms_pool *p, gms_block *b, gms_scrub_item *it)
{
    if (b->unscrubbed) {
        free_item(p, b, it);
        return false;
    }
    memset(it, 0, sizeof *it);
    gms__safety_retired_ranges(p, b, it->check_lo, it->check_hi);
    return true;
}

/* Adds quarantined block b to bt as it leaves. */
static void batch_add_exit(gms_pool *p, gms_scrub_batch *bt, gms_block *b)
{
    uint32_t i = bt->n++;
    bt->blk[i] = b;
    bt->exit_check[i] = exit_item(p, b, &bt->items[i]);
}

/* Whether the quarantine must let its oldest block go. With keep_newest,
 * the block freed last stays whatever its size: a block larger than the
 * byte limit still waits until the next free, which catches the commonest
 * write after free (soon after), where it would otherwise go straight back
 * to use. */
static bool over_limits(const gms_pool *p, uint64_t max_bytes, uint64_t max_blocks,
                        bool keep_newest)
{
    return p->quarantine_head && !(keep_newest && p->quarantine_blocks == 1) &&
           (p->quarantine_bytes > max_bytes || p->quarantine_blocks > max_blocks);
}

/* Whether quarantined block b's own scrub waits in the batch being
 * gathered. Such a block leaves the quarantine only after that launch:
 * checked before it, it would be checked before its poison, and the
 * launch would hand it to the pool a second time. */
static bool gathered(const gms_pool *p, const gms_block *b)
{
    const gms_pending *pd = p->pending;
    return pd && pd->ticket && b->ticket == pd->ticket;
}

/* Moves the oldest quarantined blocks of `stream` into bt (up to
 * GMS_SCRUB_ASYNC_MAX items in all) while the quarantine is over its
 * limits, up to the first one gathered; they are unlinked, returned to
 * the pool by exits_done. A block whose own scrub is the launch `fresh`
 * (0: none), made in this call and the last on its stream, goes to the
 * pool at once, unchecked: its check would run right after that scrub
 * with nothing between them on the stream, so it could find nothing, and
 * it would read the whole block again (a block larger than the
 * quarantine's limit leaves this way at every free). */
static void take_exits(gms_pool *p, gms_scrub_batch *bt, void *stream, uint64_t max_bytes,
                       uint64_t max_blocks, bool keep_newest, uint64_t fresh)
{
    while (bt->n < GMS_SCRUB_ASYNC_MAX && over_limits(p, max_bytes, max_blocks, keep_newest) &&
           p->quarantine_head->stream == stream && !gathered(p, p->quarantine_head)) {
        gms_block *b = p->quarantine_head;
        p->quarantine_head = b->u.retired.next;
        if (!p->quarantine_head)
            p->quarantine_tail = &p->quarantine_head;
        p->quarantine_bytes -= b->size;
        p->quarantine_blocks--;
        if (fresh && b->ticket == fresh && !b->unscrubbed)
            gms__pool_free(p, b);
        else
            batch_add_exit(p, bt, b);
    }
}

/* After a batch with blocks taken from the quarantine was queued (ok) or
 * not: they go to the pool tagged with the batch's ticket, or back to the
 * quarantine's head to wait for another try. */
static void exits_done(gms_pool *p, gms_block **taken, uint32_t first, uint32_t n, bool ok,
                       uint64_t ticket)
{
    for (uint32_t i = n; i-- > first;) {
        gms_block *b = taken[i];
        if (!ok) {
            b->u.retired.next = p->quarantine_head;
            if (!p->quarantine_head)
                p->quarantine_tail = &b->u.retired.next;
            p->quarantine_head = b;
            p->quarantine_bytes += b->size;
            p->quarantine_blocks++;
            continue;
        }
        b->unscrubbed = false;
        if (ticket > b->ticket)
            b->ticket = ticket; /* same stream: the later ticket */
    }
    if (ok)
        for (uint32_t i = first; i < n; i++)
            gms__pool_free(p, taken[i]);
}

/* Lets the oldest quarantined blocks of one stream go, in one batch, while
 * the quarantine is over its limits; false if the batch could not be
 * queued. (Its own function: its batch is a large stack frame that the
 * common call, under the limits, need not pay for.) */
static __attribute__((noinline)) bool evict_batch(gms_pool *p, uint64_t max_bytes,
                                                  uint64_t max_blocks, bool keep_newest,
                                                  uint64_t fresh)
{
    batch_build bb;
    gms_scrub_batch *bt = build_init(&bb);
    take_exits(p, bt, p->quarantine_head->stream, max_bytes, max_blocks, keep_newest, fresh);
    uint32_t n = bt->n;
    if (n == 0)
        return true; /* all of them were fresh */
    uint64_t ticket;
    bool ok = batch_queue(p, bt, bt->blk[0]->stream, &ticket, NULL, NULL, 0,
                          "quarantine exits") == 0;
    exits_done(p, bt->blk, 0, n, ok, ticket);
    return ok;
}

/* Lets the oldest quarantined blocks go while the quarantine is over its
 * limits, one batch per run of blocks freed on one stream. Blocks of the
 * batch being gathered stay: they leave with a later batch, once theirs is
 * launched, rather than launching it early and their checks apart (a
 * launch costs about as much as moving 15 MB, so one per free of a large
 * block cost a training step hundreds of them). The quarantine then
 * exceeds its limits by at most that batch (pending_bytes_max). */
static void evict_sync(gms_pool *p, uint64_t max_bytes, uint64_t max_blocks, bool keep_newest);

static void quarantine_evict(gms_pool *p, uint64_t max_bytes, uint64_t max_blocks,
                             bool keep_newest, uint64_t fresh)
{
    if (!p->rt->backend->ops->ticket_reserve)
        return evict_sync(p, max_bytes, max_blocks, keep_newest);
    while (over_limits(p, max_bytes, max_blocks, keep_newest) && !gathered(p, p->quarantine_head))
        if (!evict_batch(p, max_bytes, max_blocks, keep_newest, fresh))
            return;
}

static void quarantine_push(gms_pool *p, gms_block *b)
{
    b->state = GMS_BLOCK_QUARANTINE;
    b->u.retired.next = NULL;
    *p->quarantine_tail = b;
    p->quarantine_tail = &b->u.retired.next;
    p->quarantine_bytes += b->size;
    p->quarantine_blocks++;
}

/* ---- backends without streams (the host) ----
 * The backend runs safety work on the spot, so a free gathers no batch:
 * the block's scrub runs, then the check of each block it pushes out of
 * the quarantine, one call each. (On the host, building a batch for one
 * item cost a 256-byte alloc+free pair about 300 instructions, an eighth
 * of it.) */

/* Runs item it now, after the work queued on stream; false (logged) if
 * the backend failed it. (A backend with nothing to order after, the
 * host, is called straight: the pair's hottest call.) */
static bool run_sync(gms_pool *p, gms_scrub_item *it, void *stream, const char *what)
{
    gms_runtime *rt = p->rt;
    gms_backend *be = rt->backend;
    int err = be->ops->order_after
                  ? gms__device_launch(p, it, 1, stream, 0)
                  : be->ops->scrub(be, it, 1, rt->safety.pattern, rt->safety.wipe_seed);
    if (err)
        gms__log_later(p->rt, GMS_LOG_WARN,
                       "gms: pool %llu: the %s of a freed block failed (backend errno %d); it waits in quarantine",
                       (unsigned long long)p->id, what, err);
    return err == 0;
}

/* Lets the oldest quarantined blocks go, one by one, while the quarantine
 * is over its limits: each checked (or, if its scrub failed at its free,
 * scrubbed), then handed to the pool. */
static void evict_sync(gms_pool *p, uint64_t max_bytes, uint64_t max_blocks, bool keep_newest)
{
    while (over_limits(p, max_bytes, max_blocks, keep_newest)) {
        gms_block *b = p->quarantine_head;
        gms_scrub_item it;
        bool check = exit_item(p, b, &it);
        if (!run_sync(p, &it, b->stream, check ? "quarantine check" : "scrub"))
            return;
        p->quarantine_head = b->u.retired.next;
        if (!p->quarantine_head)
            p->quarantine_tail = &p->quarantine_head;
        p->quarantine_bytes -= b->size;
        p->quarantine_blocks--;
        b->unscrubbed = false;
        if (it.bad || it.verify_bad)
            item_report(p, &it, b, check, NULL, 0);
        gms__pool_free(p, b);
    }
}

/* A free with safety on where the backend has no streams. Returns the
 * block's corruption, found at once. */
static int retire_sync(gms_pool *p, gms_block *b)
{
    gms_scrub_item it;
    char own_msg[400];
    free_item(p, b, &it);
    /* Until its scrub has run, its data is not poisoned: the quarantine
     * exit then scrubs it instead of checking it. */
    b->unscrubbed = !run_sync(p, &it, b->stream, "scrub");
    quarantine_push(p, b);
    int rc = b->unscrubbed || !(it.bad || it.verify_bad)
                 ? GMS_OK
                 : item_report(p, &it, b, false, own_msg, sizeof own_msg);
    evict_sync(p, quarantine_limit(p), p->rt->safety.quarantine_max_blocks, true);
    if (rc)
        gms__fail(rc, "%s", own_msg);
    return rc;
}

/* A free with safety on, on a backend with streams: into the pending
 * batch. Returns the ticket of the batch it launched (0: none). */
static uint64_t retire_pending(gms_pool *p, gms_block *b, bool sync)
{
    gms_pending *pd = p->pending;
    gms_scrub_batch *bt = &pd->bb.b;
    uint32_t i = bt->n++;
    free_item(p, b, &bt->items[i]);
    b->ticket = pd->ticket;
    b->unscrubbed = false;
    quarantine_push(p, b);
    bt->exit_check[i] = false;
    bt->blk[i] = b;
    uint64_t queued = p->quarantine_bytes; /* b's included */
    take_exits(p, bt, pd->stream, quarantine_limit(p), p->rt->safety.quarantine_max_blocks,
               true, 0);
    pd->bytes += b->size + (queued - p->quarantine_bytes);
    for (uint32_t k = i; k < bt->n; k++)
        if (bt->blk[k]->size > pd->largest)
            pd->largest = bt->blk[k]->size;
    /* The synchronous gms_free promises that a write after it is caught:
     * its scrub is queued before it returns. */
    if (sync)
        return pending_flush(p, "gms_free");
    if (bt->n + 2 > GMS_SCRUB_ASYNC_MAX)
        return pending_flush(p, "full");
    if (pd->bytes >= pending_bytes_max(p))
        return pending_flush(p, "bytes");
    return 0;
}

/* A free with safety on, its batch queued at once (a device with too much
 * in flight): this block's scrub and the checks of
 * the blocks it pushes out of the quarantine, when they were freed on the
 * same stream. Returns this block's corruption, found at once. */
static int retire_now(gms_pool *p, gms_block *b)
{
    int rc = GMS_OK;
    char own_msg[400];
    /* Until its scrub is queued, its data is not poisoned: the quarantine
     * exit then scrubs it instead of checking it. */
    b->unscrubbed = true;
    quarantine_push(p, b);
    batch_build bb;
    gms_scrub_batch *bt = build_init(&bb);
    free_item(p, b, &bt->items[0]);
    bt->blk[0] = b;
    bt->exit_check[0] = false;
    bt->n = 1;
    take_exits(p, bt, b->stream, quarantine_limit(p), p->rt->safety.quarantine_max_blocks, true,
               0);
    uint32_t n = bt->n;
    uint64_t ticket;
    bool ok = batch_queue(p, bt, b->stream, &ticket, &rc, own_msg, sizeof own_msg, "free") == 0;
    if (ok) {
        b->unscrubbed = false;
        b->ticket = ticket;
    }
    exits_done(p, bt->blk, 1, n, ok, ticket);
    if (rc)
        gms__fail(rc, "%s", own_msg);
    return rc;
}

int gms__safety_retire(gms_pool *p, gms_block *b, void *stream, bool ordered, bool sync)
{
    gms_runtime *rt = p->rt;
    b->stream = ordered ? stream : NULL;
    b->ticket = 0;
    if (!rt->safety.on) {
        /* Reusable at once on its stream; elsewhere once the device has
         * passed this point of it (the pending batch is its marker).
         * Unordered: the device is done with it, so at once anywhere. */
        if (ordered && pending_open(p, stream)) {
            b->ticket = p->pending->ticket;
            if (++p->pending->frees == GMS_SCRUB_ASYNC_MAX)
                pending_flush(p, "full");
        } else if (ordered && rt->backend->ops->order_after &&
                   rt->backend->ops->order_after(rt->backend, gms__queue_stream(stream), 1)) {
            gms__log_later(rt, GMS_LOG_WARN, "gms: pool %llu: waiting for a stream failed",
                     (unsigned long long)p->id);
        }
        gms__pool_free(p, b);
        return GMS_OK;
    }
    if (!rt->backend->ops->ticket_reserve)
        return retire_sync(p, b);
    gms__safety_collect(p, false);
    int rc = GMS_OK;
    uint64_t fresh = 0;
    if (pending_open(p, b->stream))
        fresh = retire_pending(p, b, sync);
    else
        rc = retire_now(p, b);
    quarantine_evict(p, quarantine_limit(p), rt->safety.quarantine_max_blocks, true, fresh);
    return rc;
}

void gms__safety_yield(gms_pool *p, bool closer)
{
    uint64_t fresh = pending_flush(p, closer ? "closer fit" : "before mapping");
    quarantine_evict(p, quarantine_limit(p), p->rt->safety.quarantine_max_blocks, false, fresh);
}

uint64_t gms__safety_held_fit(const gms_pool *p, void *stream, uint64_t want)
{
    const gms_pending *pd = p->pending;
    if (!pd || !pd->ticket || pd->stream != stream || pd->largest < want)
        return 0;
    const gms_scrub_batch *bt = &pd->bb.b;
    uint64_t q = quarantine_limit(p), best = 0, newer = 0;
    unsigned heap = gms__pool_heap(want); /* the other heap's blocks cannot serve it */
    bool newest = true;
    /* Its freed blocks are the newest in the quarantine, in this order: one
     * leaves at the launch when the bytes from it to the newest pass the
     * limit, unless it is the newest (over_limits). */
    for (uint32_t i = bt->n; i-- > 0;) {
        const gms_block *b = bt->blk[i];
        bool leaves = bt->exit_check[i];
        if (!leaves) {
            newer += b->size;
            leaves = !newest && newer > q;
            newest = false;
        }
        if (leaves && b->chunk->heap == heap && b->size >= want && (!best || b->size < best))
            best = b->size;
    }
    return best;
}

void gms__safety_drain(gms_pool *p)
{
    uint64_t fresh = pending_flush(p, "drain");
    quarantine_evict(p, 0, 0, false, fresh);
    if (p->inflight_head) {
        gms__device_quiesce(p->rt);
        gms__safety_collect(p, true);
    }
}
