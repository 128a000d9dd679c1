/*
 * gms/access.h: ordering between the holders of a buffer, and checked
 * atomics (docs/ordering.md).
 *
 * The holders of a shared buffer do not share a language, a stream library
 * or a runtime, so gms orders them. A holder opens an access window on its
 * handle before it queues work that reads or writes the buffer, and ends
 * it after: gms makes the next conflicting window wait for it, on the
 * device (its stream waits for an event; the host does not). Atomics are
 * bounds- and alignment-checked read-modify-writes of 4- and 8-byte
 * words, run on the device in stream order.
 *
 * Include <gms/access.h> (it includes gms.h). Streams are CUDA streams
 * (CUstream) passed as opaque pointers, NULL the legacy default stream, as
 * in gms_alloc_async. The host backend has no streams: there a window
 * orders calls (the host waits) and an atomic has run when the call
 * returns, so every rule below can be tested without a GPU.
 */
#ifndef GMS_ACCESS_H
#define GMS_ACCESS_H

#include "gms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- access windows ------------------------------------------------------
 *
 * A window is opened on one handle (one holder) and covers the work that
 * holder queues on its stream between gms_access_begin and
 * gms_access_end. Windows are per buffer, across all holders of a share
 * and all their contexts, languages and streams:
 *
 *   - READ windows run together; a READ_WRITE window runs alone;
 *   - windows open in the order gms_access_begin was called (FIFO): a
 *     reader that arrives while a writer waits queues behind the writer;
 *   - a window that must wait for another still open waits on the host
 *     until that one ends (or, with GMS_ACCESS_NOWAIT, returns GMS_E_BUSY
 *     and changes nothing);
 *   - once open, its stream waits on the device for the work of the
 *     windows it conflicts with that have ended (an event recorded at each
 *     end): a reader waits for the last writer, a writer for the last
 *     writer and every reader since; on a stream other than the one the
 *     buffer was allocated on, also for gms's own work on its memory that
 *     has not run yet (its preparation, its last owner's scrub: an event
 *     recorded on that stream at begin). Begin and end never wait for the
 *     device.
 *
 * Work queued outside any window is not ordered by gms (raw pointers stay
 * the caller's business). A handle has at most one window at a time;
 * releasing, freeing (gms_free, gms_release, gms_free_async) or
 * transferring a handle whose window is open or waiting returns
 * GMS_E_BUSY. The buffer's memory is wiped and reused, and a transfer's
 * copy made, only after the device has run every ended window's work (in
 * stream order, without a host wait). A context closed with windows open
 * ends them; each is a leak beside its handle's (which gms_stats' and the
 * tenant's leaked_blocks count): a GMS_AUDIT_LEAK record of its own in the
 * audit trail and a count in the close's leak line in the log. */

enum {
    /* gms_access_begin returns GMS_E_BUSY instead of waiting on the host
     * for a conflicting window to end. */
    GMS_ACCESS_NOWAIT = 1u << 0
};

/* Opens a window of `mode` on buf for the work ctx queues on `stream`.
 * READ_WRITE needs a handle that may write (GMS_E_READ_ONLY otherwise: a
 * read-only holder or an immutable share). GMS_E_INVALID_ARG for an
 * unknown mode or flag, or when the handle already has a window. Cost: one
 * handle lookup under the pool's lock and, on a GPU, one stream wait per
 * conflicting ended window (at most one per stream that used the buffer). */
GMS_API int gms_access_begin(gms_context *ctx, gms_buf buf, gms_access mode, uint32_t flags,
                             void *stream);
/* Ends the handle's window: on a GPU, records an event on `stream` (the
 * stream whose work the window covered, normally the one given to begin)
 * that later conflicting windows wait for. GMS_E_INVALID_ARG when the
 * handle has no open window. */
GMS_API int gms_access_end(gms_context *ctx, gms_buf buf, void *stream);

/* ---- checked atomics -----------------------------------------------------
 *
 * An atomic read-modify-write of the naturally aligned 4- or 8-byte
 * (width) little-endian word at `offset` of buf. Checked like gms_write:
 * GMS_E_OUT_OF_BOUNDS when the word is not wholly inside the buffer,
 * GMS_E_INVALID_ARG when offset is not a multiple of width (or width is
 * not 4 or 8, or op is unknown), GMS_E_READ_ONLY for a read-only holder or
 * an immutable share; a refused call changes nothing. A writer
 * (READ_WRITE) or an atomic holder (GMS_ACCESS_ATOMIC, below) may call
 * them. For width 4 only
 * the low 32 bits of operand and compare count, and the old value is
 * zero-extended. Each operation is atomic against every other gms atomic
 * and every device atomic on the word (a kernel's atomicAdd through a raw
 * pointer included), in any holder's context or language.
 *
 * Order: the operation is queued on `stream` after the work queued there
 * so far and runs on the device (one small kernel; the host backend runs
 * it with C11 atomics before the call returns). It is not part of any
 * window: to order it with other holders' work, call it inside a
 * READ_WRITE window on the same stream. */

/* A gms_acquire mode beside gms_access's two: the holder reads, and writes
 * only through gms_atomic and gms_atomic_batch (no checked writes, no
 * writable pointer, READ windows only). Any number of atomic holders may
 * join the share's one writer, so holders in several languages can count,
 * flag and claim in one buffer. It needs a READ_WRITE grant and a mutable
 * share (GMS_E_READ_ONLY on an immutable one). gms_buf_info's access
 * reports it. */
#define GMS_ACCESS_ATOMIC 3

typedef enum gms_atomic_op {
    GMS_ATOMIC_ADD = 1,        /* word += operand, modulo 2^(8*width) */
    GMS_ATOMIC_AND = 2,        /* word &= operand */
    GMS_ATOMIC_OR = 3,         /* word |= operand */
    GMS_ATOMIC_XOR = 4,        /* word ^= operand */
    GMS_ATOMIC_MIN = 5,        /* word = min(word, operand), unsigned */
    GMS_ATOMIC_MAX = 6,        /* word = max(word, operand), unsigned */
    GMS_ATOMIC_MIN_SIGNED = 7, /* the same, two's complement signed */
    GMS_ATOMIC_MAX_SIGNED = 8,
    GMS_ATOMIC_EXCHANGE = 9,   /* word = operand */
    GMS_ATOMIC_CAS = 10        /* if word == compare: word = operand */
} gms_atomic_op;

/* One operation. compare is read by GMS_ATOMIC_CAS only. */
GMS_API int gms_atomic(gms_context *ctx, gms_buf buf, uint64_t offset, gms_atomic_op op,
                       uint32_t width, uint64_t operand, uint64_t compare, void *stream,
                       uint64_t *old);
/* old may be NULL: the call then returns once the operation is queued and
 * never waits. Non-NULL, it is set to 0 first and, on success, to the
 * word's value just before the operation (for CAS: equal to compare iff
 * the swap happened); on a GPU the call then waits until `stream` has run
 * the operation (a stream synchronisation: it costs what the stream still
 * has queued). If that wait fails, GMS_E_BACKEND's message says the
 * operation was queued and may have run (it cannot be taken back). For
 * results without a wait, use gms_atomic_batch's results buffer. */

/* One item of a batch: fixed layout (32 bytes); it will not change (a new
 * field would come in a new struct). */
typedef struct gms_atomic_item {
    uint64_t offset;  /* of the word in buf */
    uint64_t operand;
    uint64_t compare; /* GMS_ATOMIC_CAS only */
    uint32_t op;      /* gms_atomic_op */
    uint32_t width;   /* 4 or 8 */
} gms_atomic_item;

/* n operations on buf in one launch (or one call into the backend): every
 * item is checked before any runs, and a refusal names the first bad
 * item. Items on different words run in parallel on a GPU; items on the
 * same word run one after another in an unspecified order (the host
 * backend: in item order). n == 0 checks the handle and does nothing.
 *
 * results: GMS_BUF_NULL for none, or a buffer ctx may write, that
 * receives item i's old value as the 8-byte word at results_offset + 8*i,
 * in stream order: kernels queued on `stream` later see it, and the host
 * reads it with gms_read once the stream has run the batch. results_offset
 * must be a multiple of 8, the n words inside results and, when results is
 * buf, apart from every item's word. */
GMS_API int gms_atomic_batch(gms_context *ctx, gms_buf buf, const gms_atomic_item *items,
                             size_t n, gms_buf results, uint64_t results_offset, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* GMS_ACCESS_H */
