/*
 * scrub.c: the life of a freed block: pending -> scrubbed (redzones
 * checked, wiped by level, poisoned) -> quarantine -> checked -> free.
 *
 * The work on device memory is expressed as gms_scrub_item batches that the
 * backend executes (the host backend with memcmp/memset on the spot, a GPU
 * backend with one kernel per batch), so this logic is the same for every
 * backend. Everything here runs with pool->lock held.
 */
#include "safety/safety.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* Blocks checked per scrub when they leave quarantine: as many as a GPU
 * batch of frees, so that one batch of frees costs few launches. */
#define EVICT_BATCH 256

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
     * neighbour is: a live or pending neighbour has at least that much
     * redzone after its data, free and quarantined memory is poisoned. So
     * the neighbour's node need not be read (it is often cold). */
    uint64_t lo = b->addr - p->rt->redzone;
    if (mapped(p->rt, b->chunk, lo) && mapped(p->rt, b->chunk, b->addr - 1)) {
        it->check_lo[1] = lo;
        it->check_hi[1] = b->addr;
    }
}

static int run(gms_pool *p, gms_scrub_item *items, size_t n)
{
    gms_runtime *rt = p->rt;
    return rt->backend->ops->scrub(rt->backend, items, n, rt->pattern, rt->wipe_seed);
}

int gms__safety_poison(gms_pool *p, uint64_t lo, uint64_t hi)
{
    gms_scrub_item it;
    memset(&it, 0, sizeof it);
    it.fill_lo[0] = lo;
    it.fill_hi[0] = hi;
    int err = run(p, &it, 1);
    return err ? gms__backend_fail(err, "poison", hi - lo) : GMS_OK;
}

/* Checks the oldest quarantined blocks while the quarantine is over its
 * limits; a changed byte is a write after free. With keep_newest, the block
 * freed last stays whatever its size: a block larger than the byte limit
 * still waits until the next free, which catches the commonest write after
 * free (soon after), where it would otherwise go straight back to use. */
static void quarantine_evict(gms_pool *p, uint64_t max_bytes, uint64_t max_blocks,
                             bool keep_newest)
{
    while (p->quarantine_head && !(keep_newest && p->quarantine_blocks == 1) &&
           (p->quarantine_bytes > max_bytes || p->quarantine_blocks > max_blocks)) {
        gms_block *batch[EVICT_BATCH];
        gms_scrub_item items[EVICT_BATCH];
        size_t n = 0;
        uint64_t bytes = p->quarantine_bytes, blocks = p->quarantine_blocks;
        for (gms_block *b = p->quarantine_head;
             b && n < EVICT_BATCH && !(keep_newest && blocks == 1) &&
             (bytes > max_bytes || blocks > max_blocks);
             b = b->u.retired.next) {
            memset(&items[n], 0, sizeof items[n]);
            gms__safety_retired_ranges(p, b, items[n].check_lo, items[n].check_hi);
            batch[n++] = b;
            bytes -= b->size;
            blocks--;
        }
        int err = run(p, items, n);
        if (err) {
            gms__log(p->rt, GMS_LOG_WARN,
                     "gms: pool %llu: quarantine check failed (backend errno %d); blocks stay quarantined",
                     (unsigned long long)p->id, err);
            return;
        }
        p->quarantine_head = batch[n - 1]->u.retired.next;
        if (!p->quarantine_head)
            p->quarantine_tail = &p->quarantine_head;
        p->quarantine_bytes = bytes;
        p->quarantine_blocks = blocks;
        for (size_t i = 0; i < n; i++) {
            gms_block *b = batch[i];
            /* The scrub re-armed a broken block: free memory holds the pattern. */
            if (items[i].bad)
                gms__violation_note(p, GMS_VIOLATION_WRITE_AFTER_FREE, b->handle, items[i].bad, b,
                                    "written after it was freed (found when it left quarantine)");
            gms__pool_free(p, b);
        }
    }
}

int gms__safety_retire(gms_pool *p, gms_block *b)
{
    gms_runtime *rt = p->rt;
    if (!rt->safety) {
        gms__pool_free(p, b);
        return GMS_OK;
    }
    b->state = GMS_BLOCK_PENDING;
    b->u.retired.next = NULL;
    *p->pending_tail = b;
    p->pending_tail = &b->u.retired.next;
    p->pending_blocks++;
    p->pending_bytes += b->size;
    /* A batch is bounded by bytes too: pending blocks hold their memory,
     * and on a GPU (batches of 256) a few large ones would otherwise keep
     * gigabytes from reuse (fragmentation on the traces, docs/gpu.md). */
    if (p->pending_blocks >= rt->scrub_batch || p->pending_bytes >= quarantine_limit(p))
        return gms__safety_flush(p, b);
    return GMS_OK;
}

int gms__safety_flush(gms_pool *p, const gms_block *own)
{
    gms_runtime *rt = p->rt;
    size_t n = p->pending_blocks;
    if (n == 0)
        return GMS_OK;
    gms_scrub_item one, *items = n == 1 ? &one : gms__alloc_meta(rt, n * sizeof *items);
    if (!items)
        return GMS_OK; /* stays pending; the next flush tries again */
    size_t i = 0;
    for (gms_block *b = p->pending_head; b; b = b->u.retired.next, i++) {
        gms_scrub_item *it = &items[i];
        gms__safety_redzone_item(p, b, it);
        gms__pool_hollow(p, b); /* the redzones lie outside what it unmaps */
        gms__safety_retired_ranges(p, b, it->fill_lo, it->fill_hi);
        it->verify = p->level >= GMS_LEVEL_CONFIDENTIAL;
        it->passes = p->level == GMS_LEVEL_SECRET && rt->secret_multipass ? GMS_SCRUB_MULTIPASS : 0;
    }
    int err = run(p, items, n);
    if (err) {
        gms__log(rt, GMS_LOG_WARN,
                 "gms: pool %llu: scrub of %zu freed blocks failed (backend errno %d); they stay pending",
                 (unsigned long long)p->id, n, err);
        if (items != &one)
            free(items);
        return GMS_OK;
    }
    int rc = GMS_OK;
    char own_msg[400];
    gms_block *b = p->pending_head;
    p->pending_head = NULL;
    p->pending_tail = &p->pending_head;
    p->pending_blocks = 0;
    p->pending_bytes = 0;
    for (i = 0; b; i++) {
        gms_block *next = b->u.retired.next;
        const gms_scrub_item *it = &items[i];
        if (it->bad) {
            bool under = it->bad < b->addr;
            gms__violation_note(p, under ? GMS_VIOLATION_UNDERFLOW : GMS_VIOLATION_OVERFLOW,
                                b->handle, it->bad, b, "%s (found when it was freed)",
                                under ? "bytes before the buffer were overwritten"
                                      : "bytes past the end of the buffer were overwritten");
            if (b == own) {
                rc = GMS_E_CORRUPTION;
                snprintf(own_msg, sizeof own_msg,
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
        b->state = GMS_BLOCK_QUARANTINE;
        b->u.retired.next = NULL;
        *p->quarantine_tail = b;
        p->quarantine_tail = &b->u.retired.next;
        p->quarantine_bytes += b->size;
        p->quarantine_blocks++;
        b = next;
    }
    if (items != &one)
        free(items);
    quarantine_evict(p, quarantine_limit(p), rt->quarantine_max_blocks, true);
    if (rc)
        gms__fail(rc, "%s", own_msg);
    return rc;
}

void gms__safety_drain(gms_pool *p)
{
    gms__safety_flush(p, NULL);
    quarantine_evict(p, 0, 0, false);
}
