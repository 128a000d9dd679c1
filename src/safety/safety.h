/*
 * safety.h: redzones, poison, quarantine and wipe (docs/safety.md).
 *
 * Free memory is kept poisoned with the runtime's 8-byte pattern, so
 * allocation writes nothing. A free queues the block's scrub (check the
 * redzones, wipe by level, poison) on the stream it was freed on, and the
 * block waits in quarantine; when it leaves, a check of its poison is
 * queued (a changed byte is a write after free) and it joins the free
 * lists. Results come back later (scrub.c); the host backend runs each
 * batch on the spot, so there a free reports its own overflow in its
 * return code.
 *
 * Corruption found under a pool lock is queued on the finding thread and
 * delivered (log, audit, callbacks, abort policy) once no lock is held.
 */
#ifndef GMS_SAFETY_H
#define GMS_SAFETY_H

#include "core/pool.h"

/* Retires a live block whose handle is gone (pool->lock held), freed on
 * stream when ordered (gms_free_async), else with no device work pending
 * on it: with safety off its memory is free at once (on that stream); with
 * safety on its scrub is queued and it waits in quarantine, launched
 * before the call returns when sync (gms_free). Returns GMS_E_CORRUPTION
 * if this block's own redzones were found overwritten at once (the host
 * backend; its memory is retired all the same), else GMS_OK. */
int gms__safety_retire(gms_pool *p, gms_block *b, void *stream, bool ordered, bool sync);

/* Gathers the results of device work that has run (pool->lock held), all
 * of it (launching the pending batch first) or until the first batch still
 * running; returns how many batches. */
unsigned gms__safety_collect(gms_pool *p, bool all);

/* Launches the pool's pending batch, if any (pool->lock held): before
 * waiting for the device, so that the wait covers it. */
void gms__safety_launch(gms_pool *p);

/* Launches the batch being gathered if it is on stream's queue (pool->lock
 * held): before a batch is queued at once there, whose ticket is larger
 * (gms__device_queue). */
void gms__safety_launch_before(gms_pool *p, void *stream);

/* Lets go what the quarantine holds beyond its limits (pool->lock held),
 * launching the batch being gathered: called when an allocation would
 * otherwise map memory (or, `closer`, take a larger fit than the batch
 * would hand back), so that memory held back for detection never makes a
 * pool grow, and the new memory's preparation launches after the
 * gathered batch (gms__device_queue). The newest block's window for
 * catching a write after free then ends at that allocation instead of at
 * the next free. Queues device work; never waits for it. */
void gms__safety_yield(gms_pool *p, bool closer);

/* The closest fit for `want` bytes among the blocks of its heap that the
 * batch being gathered on `stream` hands back to the pool when it is
 * launched (its exit checks, and freed blocks then past the quarantine's
 * limits), or 0
 * (pool->lock held). An allocation on that stream whose fit in the pool is
 * larger than this yields first (gms__safety_yield), so that it lands
 * where it would have if the batch had been launched at each free. */
uint64_t gms__safety_held_fit(const gms_pool *p, void *stream, uint64_t want);

/* Empties the quarantine and waits for the results of all device work
 * (pool->lock held): before a pool is trimmed to nothing, and for the
 * pressure ladder. Not on the alloc/free path. */
void gms__safety_drain(gms_pool *p);

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
/* Delivers this thread's queued violations and log lines of rt (no gms
 * lock held); returns how many violations. Called from a callback of rt,
 * it leaves them to the delivery under way, which takes them next. */
unsigned gms__violations_deliver(gms_runtime *rt);
/* Delivers this thread's notes, then waits (a second at most) until the
 * notes other threads took (the collector's, the verifier's) have reached
 * the callbacks too: gms_sync and gms_verify report what they gathered
 * before they return. Does not wait when called from a callback. */
void gms__violations_settle(gms_runtime *rt);

/* A gms_log_fn (user: the runtime) for gms's own threads that must not
 * call the program's log function: the line waits in rt->notes.mail. */
void gms__log_mail(void *rt, gms_log_level level, const char *msg);

#endif
