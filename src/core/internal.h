/*
 * internal.h: the rest of the core, above the safety layer: buffers and
 * handles' drops (buffer.c), shares (share.c), DLPack (dlpack.c), the
 * pressure ladder (pressure.c), contexts (context.c), tenants (tenant.c),
 * the background threads (background.c) and the runtime (runtime.c). It
 * includes core/pool.h, the memory layer under it, and safety/safety.h.
 * Locking and ownership are described in core/pool.h.
 */
#ifndef GMS_CORE_INTERNAL_H
#define GMS_CORE_INTERNAL_H

#include "core/pool.h"
#include "safety/safety.h"

/* buffer.c */

/* What a handle resolved to: the block's pool (locked), block and slot. */
typedef struct gms_held {
    gms_pool *pool;
    gms_block *block;
    gms_slot *slot;
} gms_held;

/* Resolves handle h of ctx and returns with the block's pool locked, or an
 * error (audited) with nothing locked. freeing: a block the verifier
 * flagged is not reported to this call. */
int gms__buf_lock(gms_context *ctx, gms_buf h, const char *op, bool freeing, gms_held *out);

/* What dropping a handle did: whether the block died, and an imported
 * tensor whose deleter is due (called by gms__drop_finish once no gms lock
 * is held: a framework's deleter may take its own locks). */
typedef struct gms_drop {
    bool died;
    gms_import import;
} gms_drop;

/* Drops one handle of a live block on behalf of context by (pool->lock
 * held). The last handle's drop kills the block: its share ends, its
 * accounting goes, then its memory goes to the safety pipeline. The one way
 * a block dies. GMS_E_CORRUPTION if its redzones (or an immutable share's
 * bytes) were found changed (it is freed all the same). */
int gms__handle_drop(gms_pool *p, gms_slot *s, const gms_context *by, gms_drop *d);
/* A DLPack export's own handle outlives its closing context: off the
 * context's holds, holder NULL (pool lock held). Its deleter drops it. */
void gms__handle_orphan(gms_pool *p, gms_slot *s);
/* The same for a free ordered on a stream (gms_free_async). */
int gms__handle_drop_on(gms_pool *p, gms_slot *s, const gms_context *by, void *stream,
                        gms_drop *d);
void gms__drop_finish(gms_drop *d);

/* A new handle of ctx on live block b (pool->lock held), with mode; it goes
 * on ctx's holds list. */
int gms__handle_add(gms_pool *p, gms_block *b, gms_context *ctx, gms_access mode, gms_buf *out);

/* Moves the handle in slot s to context `to`: a new read-write handle, the
 * old one dead (pool->lock held). */
int gms__handle_move(gms_pool *p, gms_slot *s, gms_context *to, gms_buf *out);

/* Locks two pools in the runtime's lock order (pool-list order, which is
 * rank order); one lock when they are the same. */
void gms__pools_lock(gms_pool *a, gms_pool *b);
void gms__pools_unlock(gms_pool *a, gms_pool *b);

/* The checks of the access calls (buffer.c), also for atomic.c and
 * access.c: the slot a handle names (no lock; errors not audited), that it
 * is ctx's live handle (p->lock held; not audited; `freeing` for a free
 * or release), that [off, off+len) lies in the buffer, that the holder may
 * write; gms__refused audits a refusal and returns rc. */
int gms__buf_slot(gms_context *ctx, gms_buf h, const char *op, gms_pool **p, gms_slot **s);
int gms__buf_check_locked(gms_context *ctx, gms_buf h, const char *op, bool freeing, gms_pool *p,
                          gms_slot *s, gms_held *out);
int gms__range_check(const gms_block *b, uint64_t off, uint64_t len, const char *op,
                     const char *which);
int gms__writable(const gms_held *h, gms_buf buf, const char *op);
int gms__refused(gms_context *ctx, gms_buf h, int rc);

/* access.c: access windows (include/gms/access.h), pool->lock held. */
/* Whether the handle in slot s has a window, open or waiting. */
bool gms__window_held(const gms_block *b, const gms_slot *s);
/* Ends every window of slot s as its handle goes (a context closing). */
void gms__windows_forget(gms_pool *p, gms_block *b, const gms_slot *s);
/* Makes stream wait on the device for every ended window's work: before
 * the block's memory is copied (a transfer) or retired. 0 or an errno. */
int gms__windows_settle(gms_pool *p, gms_block *b, void *stream);
/* The block dies: settles on stream and frees its windows' state. */
void gms__windows_retire(gms_pool *p, gms_block *b, void *stream);
/* A checked host access (gms_read, gms_write, gms_fill, gms_copy) by the
 * handle in slot s: GMS_E_BUSY while another handle's window it conflicts
 * with is open or waiting (a write: any; a read: a writer's); else orders
 * the backend's own work after the ended windows' (device) work. */
int gms__windows_host_access(gms_pool *p, gms_block *b, const gms_slot *s, bool write,
                             const char *op, gms_buf buf);

/* Pool of the slot a handle names, without locking; NULL if none. */
gms_pool *gms__handle_pool(gms_runtime *rt, gms_buf h);


/* Orders the backend's synchronous work on a live block's memory after
 * the device work it still waits for (pool->lock held); 0 or an errno. */
int gms__after_pending(gms_runtime *rt, const gms_block *b);

/* One allocation attempt, no pressure ladder, no audit record. */
int gms__alloc_once(gms_context *ctx, size_t size, uint64_t bsize, uint32_t flags, void *stream,
                    gms_buf *out);

/* share.c (pool->lock held) */
/* Where the raw pointer of the handle in slot s of pool p points: for a
 * holder that may not write, the share's read-only view if it has one;
 * else the block's memory, but never for a holder of another tenant than
 * the block's pool that may not write (0: it gets no pointer). *view says
 * whether it is the read-only view. */
uint64_t gms__holder_address(const gms_pool *p, const gms_slot *s, bool *view);
/* The same, or GMS_E_ACCESS_DENIED (its message naming op and h) when the
 * holder gets no pointer. */
int gms__holder_pointer(const gms_pool *p, const gms_slot *s, gms_buf h, const char *op,
                        uint64_t *out);
/* Called as block b dies: unmaps its view, checks its hash, frees the
 * share. GMS_E_CORRUPTION when an immutable share's bytes changed.
 * *given: the block's memory went with the share to other processes (a
 * mutable share of gmsd's CUDA memory), so its chunk is given up
 * (gms__pool_give_away) rather than scrubbed and reused. */
int gms__share_end(gms_pool *p, gms_block *b, bool *given);
/* Whether an immutable share's bytes changed since it was made (noting the
 * violation if so). */
bool gms__share_hash_broken(gms_pool *p, gms_block *b, const char *when);

/* dlpack.c: the runtime is closing; the deleters of tensors still out
 * will only free them. */
void gms__dlpack_orphan_all(gms_runtime *rt);

/* pressure.c: after an allocation failed with rc (GMS_E_NO_MEMORY or
 * GMS_E_QUOTA), runs the ladder's steps, retrying after each; returns the
 * last attempt's result. No lock held. */
int gms__alloc_under_pressure(gms_context *ctx, size_t size, uint64_t bsize, uint32_t flags,
                              void *stream, int rc, gms_buf *out);

/* context.c */
/* Reclaims what the context holds and unlinks it (rt->lock held); leak
 * gets the report to log once no lock is held, "" when nothing leaked. */
void gms__context_close_locked(gms_context *ctx, char *leak, size_t leak_size);

/* tenant.c (rt->lock held) */
gms_tenant *gms__tenant_find(gms_runtime *rt, const char *name);
/* Finds or creates a tenant. */
int gms__tenant_get(gms_runtime *rt, const char *name, gms_tenant **out);

/* background.c: starts the verifier (with verify_interval_ms) and the
 * collector (with a stream-ordered backend); on failure neither runs.
 * Stop joins them: no lock held. */
int gms__background_start(gms_runtime *rt);
void gms__background_stop(gms_runtime *rt);

/* runtime.c */
/* Records an operation of ctx in the audit trail, if there is one; detail
 * NULL on success, the error message on failure. */
void gms__audit_ctx_record(const gms_context *ctx, gms_audit_op op, uint64_t handle,
                           uint64_t size, int result, const char *detail);
static inline void gms__audit_ctx(const gms_context *ctx, gms_audit_op op, uint64_t handle,
                                  uint64_t size, int result, const char *detail)
{
    if (ctx->rt->audit)
        gms__audit_ctx_record(ctx, op, handle, size, result, detail);
}

#endif
