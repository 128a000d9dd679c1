/*
 * scrub.c: the life of a freed block, one way only (docs/stream-ordered.md):
 *
 *   free -> scrub queued (redzones checked, wiped by level, poisoned)
 *        -> quarantine -> check queued (poison intact?) -> pool free lists
 *
 * Each step's device work is a batch of gms_scrub_item queued on the stream
 * the block was freed on, after the caller's work there (the host backend
 * runs it on the spot). Nothing waits for the device: a batch's results
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

/* A batch of device work whose results are still to come, with what the
 * reports need of its blocks (they may be reused before the results come). */
typedef struct gms_scrub_batch {
    struct gms_scrub_batch *next;
    uint64_t ticket;
    uint32_t n;
    bool evict; /* quarantine exit checks; else frees' scrubs */
    gms_scrub_item *items;
    gms_block *snap;
} gms_scrub_batch;

static gms_scrub_batch *batch_new(gms_runtime *rt, size_t n, bool evict)
{
    gms_scrub_batch *bt =
        gms__alloc_meta(rt, sizeof *bt + n * (sizeof(gms_scrub_item) + sizeof(gms_block)));
    if (!bt)
        return NULL;
    bt->next = NULL;
    bt->ticket = 0;
    bt->n = (uint32_t)n;
    bt->evict = evict;
    bt->snap = (gms_block *)(bt + 1);
    bt->items = (gms_scrub_item *)(bt->snap + n);
    memset(bt->items, 0, n * sizeof *bt->items);
    return bt;
}

static uint64_t quarantine_limit(const gms_pool *p)
{
    return gms__scaled_limit(p->rt->quarantine_max_bytes, p->live_bytes, 1ull << 20, 256);
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
    uint64_t end = b->addr + b->req_size + p->rt->redzone;
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
     * neighbour's node need not be read (it is often cold). */
    uint64_t lo = b->addr - p->rt->redzone;
    if (mapped(p->rt, b->chunk, lo) && mapped(p->rt, b->chunk, b->addr - 1)) {
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
    it->passes = p->level == GMS_LEVEL_SECRET && p->rt->secret_multipass ? GMS_SCRUB_MULTIPASS : 0;
}

/* Reports what a batch found. own: the block freed by the caller, whose
 * corruption is also its return code (the host backend, where results come
 * back at once); own_msg gets the message. */
static int batch_report(gms_pool *p, const gms_scrub_batch *bt, char *own_msg, size_t own_size)
{
    int rc = GMS_OK;
    for (uint32_t i = 0; i < bt->n; i++) {
        const gms_scrub_item *it = &bt->items[i];
        const gms_block *b = &bt->snap[i];
        if (it->bad && bt->evict && !b->unscrubbed) {
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
        gms__log(p->rt, GMS_LOG_WARN,
                 "gms: pool %llu: the device failed a safety batch of %u blocks (errno %d); its findings are lost",
                 (unsigned long long)p->id, bt->n, err);
    else
        batch_report(p, bt, NULL, 0);
    return true;
}

static void inflight_push(gms_pool *p, gms_scrub_batch *bt)
{
    *p->inflight_tail = bt;
    p->inflight_tail = &bt->next;
    atomic_fetch_add_explicit(&p->inflight, 1, memory_order_relaxed);
}

unsigned gms__safety_collect(gms_pool *p, bool all)
{
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
        free(bt);
        atomic_fetch_sub_explicit(&p->inflight, 1, memory_order_relaxed);
        n++;
    }
    p->inflight_tail = pp;
    while (*p->inflight_tail)
        p->inflight_tail = &(*p->inflight_tail)->next;
    return n;
}

/* Queues bt's items on stream and hands bt on: to the in-flight list, or,
 * on a backend that ran it at once, to the reports (own_msg as in
 * batch_report; its code in *own_rc). *ticket: the batch's ticket. */
static int batch_queue(gms_pool *p, gms_scrub_batch *bt, void *stream, uint64_t *ticket,
                       int *own_rc, char *own_msg, size_t own_size)
{
    int err = gms__device_queue(p, bt->items, bt->n, stream, &bt->ticket);
    *ticket = bt->ticket;
    if (err) {
        gms__log(p->rt, GMS_LOG_WARN,
                 "gms: pool %llu: queuing safety work for %u blocks failed (backend errno %d); they wait in quarantine",
                 (unsigned long long)p->id, bt->n, err);
        free(bt);
        return err;
    }
    if (bt->ticket) {
        inflight_push(p, bt);
        return 0;
    }
    int rc = batch_report(p, bt, own_msg, own_size);
    if (own_rc && rc)
        *own_rc = rc;
    free(bt);
    return 0;
}

/* Checks the oldest quarantined blocks, in batches of one stream each,
 * while the quarantine is over its limits, and returns them to the pool.
 * A block whose scrub could not be queued at its free gets it now. With
 * keep_newest, the block freed last stays whatever its size: a block
 * larger than the byte limit still waits until the next free, which
 * catches the commonest write after free (soon after), where it would
 * otherwise go straight back to use. */
static void quarantine_evict(gms_pool *p, uint64_t max_bytes, uint64_t max_blocks,
                             bool keep_newest)
{
    while (p->quarantine_head && !(keep_newest && p->quarantine_blocks == 1) &&
           (p->quarantine_bytes > max_bytes || p->quarantine_blocks > max_blocks)) {
        gms_block *batch[GMS_SCRUB_ASYNC_MAX];
        size_t n = 0;
        uint64_t bytes = p->quarantine_bytes, blocks = p->quarantine_blocks;
        void *stream = p->quarantine_head->stream;
        for (gms_block *b = p->quarantine_head;
             b && n < GMS_SCRUB_ASYNC_MAX && b->stream == stream &&
             !(keep_newest && blocks == 1) && (bytes > max_bytes || blocks > max_blocks);
             b = b->u.retired.next) {
            batch[n++] = b;
            bytes -= b->size;
            blocks--;
        }
        gms_scrub_batch *bt = batch_new(p->rt, n, true);
        if (!bt)
            return; /* they stay; the next free tries again */
        for (size_t i = 0; i < n; i++) {
            gms_block *b = batch[i];
            bt->snap[i] = *b;
            if (b->unscrubbed)
                free_item(p, b, &bt->items[i]);
            else
                gms__safety_retired_ranges(p, b, bt->items[i].check_lo, bt->items[i].check_hi);
        }
        uint64_t ticket;
        if (batch_queue(p, bt, stream, &ticket, NULL, NULL, 0) != 0)
            return;
        p->quarantine_head = batch[n - 1]->u.retired.next;
        if (!p->quarantine_head)
            p->quarantine_tail = &p->quarantine_head;
        p->quarantine_bytes = bytes;
        p->quarantine_blocks = blocks;
        for (size_t i = 0; i < n; i++) {
            batch[i]->unscrubbed = false;
            if (ticket > batch[i]->ticket)
                batch[i]->ticket = ticket; /* same stream: the later ticket */
            gms__pool_free(p, batch[i]);
        }
    }
}

int gms__safety_retire(gms_pool *p, gms_block *b, void *stream, bool ordered)
{
    gms_runtime *rt = p->rt;
    b->stream = ordered ? stream : NULL;
    b->ticket = 0;
    if (!rt->safety) {
        /* Reusable at once on its stream; elsewhere once the device has
         * passed this point of it (a marker). Unordered: at once. */
        if (ordered && gms__device_queue(p, NULL, 0, stream, &b->ticket) != 0)
            gms__log(rt, GMS_LOG_WARN, "gms: pool %llu: marking a free on its stream failed",
                     (unsigned long long)p->id);
        gms__pool_free(p, b);
        return GMS_OK;
    }
    int rc = GMS_OK;
    char own_msg[400];
    /* Until its scrub is queued, its data is not poisoned: the quarantine
     * exit then scrubs it instead of checking it. */
    b->state = GMS_BLOCK_QUARANTINE;
    b->unscrubbed = true;
    gms_scrub_batch *bt = batch_new(rt, 1, false);
    if (bt) {
        free_item(p, b, &bt->items[0]);
        bt->snap[0] = *b;
        bt->snap[0].unscrubbed = false;
        if (batch_queue(p, bt, b->stream, &b->ticket, &rc, own_msg, sizeof own_msg) == 0)
            b->unscrubbed = false;
    }
    b->u.retired.next = NULL;
    *p->quarantine_tail = b;
    p->quarantine_tail = &b->u.retired.next;
    p->quarantine_bytes += b->size;
    p->quarantine_blocks++;
    quarantine_evict(p, quarantine_limit(p), rt->quarantine_max_blocks, true);
    gms__safety_collect(p, false);
    if (rc)
        gms__fail(rc, "%s", own_msg);
    return rc;
}

void gms__safety_drain(gms_pool *p)
{
    quarantine_evict(p, 0, 0, false);
    if (p->inflight_head) {
        gms__device_quiesce(p->rt);
        gms__safety_collect(p, true);
    }
}
