/*
 * safety.h: redzones, poison, quarantine and wipe (DESIGN.md §2, §5).
 *
 * Free memory is kept poisoned with the runtime's 8-byte pattern, so
 * allocation writes nothing. A free does not reuse the block at once: the
 * block becomes pending, then a batch of pending blocks goes to the backend
 * in one scrub operation (check the redzones, wipe by level, poison), then
 * the blocks wait in quarantine; when one leaves, its poison is checked
 * (a changed byte is a write after free) and it joins the free lists. The
 * host backend runs a batch of one at each free by default, so a free
 * reports its own overflow in its return code; a GPU backend batches.
 *
 * Corruption found under a pool lock is queued on the finding thread and
 * delivered (log, audit, callbacks, abort policy) once no lock is held.
 */
#ifndef GMS_SAFETY_H
#define GMS_SAFETY_H

#include "core/internal.h"

/* Retires a live block whose handle is gone (pool->lock held): with safety
 * off its memory is free at once; with safety on it is queued for the
 * scrub. Returns GMS_E_CORRUPTION if this block's own redzones were found
 * overwritten (its memory is retired all the same), else GMS_OK. */
int gms__safety_retire(gms_pool *p, gms_block *b);

/* Runs the pending batch now (pool->lock held); GMS_E_CORRUPTION if `own`
 * was among the blocks found corrupt. */
int gms__safety_flush(gms_pool *p, const gms_block *own);

/* Empties the quarantine and the pending batch (pool->lock held): before a
 * pool is trimmed to nothing. */
void gms__safety_drain(gms_pool *p);

/* Poisons [lo, hi) (pool->lock held): memory just mapped. */
int gms__safety_poison(gms_pool *p, uint64_t lo, uint64_t hi);

/* The check of a live block's redzones: bytes before it (when a neighbour
 * precedes it and that memory is mapped) and after its requested size. */
void gms__safety_redzone_item(const gms_pool *p, const gms_block *b, gms_scrub_item *it);

/* What of a retired block is poisoned at its free and checked when it
 * leaves quarantine: its mapped parts up to redzone_bytes past its data. */
void gms__safety_retired_ranges(const gms_pool *p, const gms_block *b, uint64_t lo[2],
                                uint64_t hi[2]);

/* Queues a violation found under a lock, on this thread. */
void gms__violation_note(gms_pool *p, gms_violation_kind kind, gms_buf handle, uint64_t addr,
                         const gms_block *b, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Delivers the queued violations (no gms lock held); returns how many. */
unsigned gms__violations_deliver(gms_runtime *rt);

#endif
