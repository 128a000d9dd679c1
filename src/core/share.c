/*
 * share.c: sharing a buffer between contexts (gms_share, gms_acquire,
 * gms_revoke, gms_transfer) and enforcing immutable shares.
 *
 * A share is a record on its block plus a slot of the block's pool whose
 * handle word is the share id, so an id is as unguessable as a handle and
 * is resolved the same way, lock-free to its pool, then under that pool's
 * lock. Every holder gets a handle slot of its own in the block's pool; the
 * block dies with the last of them (buffer.c, gms__handle_drop).
 *
 * Raw pointers: where the block owns whole pages (granules on a GPU), a
 * share maps one read-only view of them, and the raw pointer of every
 * holder that may not write (every holder of an immutable share) is that
 * view, so a write through it faults. Without a view, an immutable share's
 * bytes get a keyed MAC, checked by gms_verify and when the block dies,
 * and a reader of another tenant gets no raw pointer at all: through the
 * memory itself it could change another tenant's bytes.
 */
#include "core/internal.h"
#include "gms/access.h"
#include "gms/seal.h"
#include "core/seal.h"
#include "core/version.h"
#include "safety/safety.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- immutability and raw pointers ---- */

/* HMAC-SHA-256, under the runtime's share key, of the block's size and
 * bytes. Keyed so that a holder who can write the bytes cannot also make a
 * change that keeps the MAC. Where the backend digests on its device
 * (digest_leaves: a GPU's kernel), the bytes are its leaves' HMACs under
 * the same key, so nothing crosses to the host but 32 bytes a 16 KiB leaf
 * (a 64 MiB buffer took 94 ms read back in pieces on the H200); else they
 * are read through the backend in pieces. */
static int block_mac(gms_pool *p, const gms_block *b, uint8_t out[GMS_SHARE_MAC_BYTES])
{
    gms_runtime *rt = p->rt;
    gms_backend *be = rt->backend;
    const uint8_t *key = rt->safety.share_key;
    enum { PIECE = 1 << 16 };
    bool leaves = be->ops->digest_leaves != NULL;
    uint64_t nleaves = (b->req_size + GMS_DIGEST_LEAF - 1) / GMS_DIGEST_LEAF;
    size_t cap = leaves ? (size_t)(nleaves ? nleaves * 32 : 1) : PIECE;
    uint8_t *buf = malloc(cap);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    uint8_t size_le[8];
    for (int i = 0; i < 8; i++)
        size_le[i] = (uint8_t)(b->req_size >> (8 * i));
    int rc = GMS_OK;
    size_t len = 0;
    if (!buf || !c || !EVP_MAC_init(c, key, sizeof rt->safety.share_key, params) ||
        !EVP_MAC_update(c, size_le, sizeof size_le))
        rc = gms__fail(GMS_E_NO_MEMORY, "out of host memory to check an immutable share");
    if (rc == GMS_OK && leaves && nleaves) {
        int err = gms__after_pending(rt, b);
        if (!err)
            err = be->ops->digest_leaves(be, b->addr, b->req_size, key, buf);
        if (err)
            rc = gms__backend_fail(err, "digesting an immutable share to check it", b->req_size);
        else if (!EVP_MAC_update(c, buf, nleaves * 32))
            rc = gms__fail(GMS_E_NO_MEMORY, "out of host memory to check an immutable share");
    }
    for (uint64_t off = 0; rc == GMS_OK && !leaves && off < b->req_size; off += PIECE) {
        size_t n = b->req_size - off < PIECE ? (size_t)(b->req_size - off) : PIECE;
        int err = be->ops->read(be, buf, b->addr + off, n);
        if (err)
            rc = gms__backend_fail(err, "reading an immutable share to check it", n);
        else if (!EVP_MAC_update(c, buf, n))
            rc = gms__fail(GMS_E_NO_MEMORY, "out of host memory to check an immutable share");
    }
    if (rc == GMS_OK && (!EVP_MAC_final(c, out, &len, GMS_SHARE_MAC_BYTES) || len != GMS_SHARE_MAC_BYTES))
        rc = gms__fail(GMS_E_NO_MEMORY, "out of host memory to check an immutable share");
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(mac);
    free(buf);
    return rc;
}

/* Maps a read-only view of the block's pages if it owns them all: the view
 * must show nothing of a neighbour. Returns false (nothing mapped) if not. */
static bool view_map(gms_pool *p, gms_block *b, gms_share_rec *sh)
{
    gms_runtime *rt = p->rt;
    gms_backend *be = rt->backend;
    uint64_t unit = rt->config.view_unit;
    if (!b->chunk || !be->ops->map_view_readonly || unit == 0)
        return false;
    uint64_t lo = b->addr & ~(unit - 1);
    uint64_t hi = (b->addr + b->req_size + unit - 1) & ~(unit - 1);
    if (lo < b->addr || hi > b->addr + b->size)
        return false;
    uint64_t view;
    if (be->ops->map_view_readonly(be, b->chunk->be_chunk, lo - b->chunk->base, hi - lo, &view))
        return false; /* the MAC still protects an immutable one */
    sh->view = view;
    sh->view_base = lo;
    sh->view_len = hi - lo;
    return true;
}

uint64_t gms__holder_address(const gms_pool *p, const gms_slot *s, bool *view)
{
    const gms_block *b = s->block;
    const gms_share_rec *sh = b->share;
    bool reader = s->mode != GMS_ACCESS_READ_WRITE || (sh && sh->immutable);
    *view = reader && sh && sh->view;
    if (*view)
        return sh->view + (b->addr - sh->view_base);
    /* Another tenant's reader would write the owner's bytes through the
     * memory itself, which no check of ours could stop. */
    if (reader && s->holder->tenant != p->tenant)
        return 0;
    return b->addr;
}

int gms__holder_pointer(const gms_pool *p, const gms_slot *s, gms_buf h, const char *op,
                        uint64_t *out)
{
    *out = 0;
    int rc = gms__seal_refuse(s->block, h, op); /* gms_buf_ptr and DLPack export */
    if (rc)
        return rc;
    bool view;
    *out = gms__holder_address(p, s, &view);
    if (*out)
        return GMS_OK;
    const gms_block *b = s->block;
    return gms__fail(GMS_E_ACCESS_DENIED,
                     "%s: handle 0x%016llx may only read a buffer of tenant '%s', and %s: no raw pointer "
                     "for another tenant's reader (use gms_read%s)",
                     op, (unsigned long long)h, p->tenant->name,
                     b->import ? "an imported tensor cannot be mapped read-only"
                               : "its block shares its pages, so it has no read-only mapping",
                     b->import ? "" : "; the owner can allocate it with GMS_ALLOC_PAGES");
}

bool gms__share_hash_broken(gms_pool *p, gms_block *b, const char *when)
{
    gms_share_rec *sh = b->share;
    uint8_t now[GMS_SHARE_MAC_BYTES];
    if (!sh || !sh->hashed || block_mac(p, b, now) != GMS_OK ||
        CRYPTO_memcmp(now, sh->mac, sizeof now) == 0)
        return false;
    gms__violation_note(p, GMS_VIOLATION_IMMUTABLE_WRITE, b->handle, b->addr, b,
                        "immutable share 0x%016llx of %llu bytes changed since it was shared (found %s)",
                        (unsigned long long)sh->id, (unsigned long long)b->req_size, when);
    return true;
}

int gms__share_end(gms_pool *p, gms_block *b, bool *given)
{
    *given = false;
    gms_share_rec *sh = b->share;
    int rc = GMS_OK;
    if (gms__share_hash_broken(p, b, "at its last release"))
        rc = gms__fail(GMS_E_CORRUPTION,
                       "immutable share 0x%016llx was written: its %llu bytes changed since gms_share",
                       (unsigned long long)sh->id, (unsigned long long)b->req_size);
    if (sh->view)
        p->rt->backend->ops->unmap_view(p->rt->backend, sh->view, sh->view_len);
    if (sh->broker_id) /* the chunk's pages back, before the wipe */
        *given = gms__broker_unshare(p->rt->broker_be, sh->broker_id) != 0;
    gms_slot *s = gms__slot_at(p->rt, sh->slot);
    atomic_store_explicit(&s->handle, 0, memory_order_release);
    s->gen++;
    s->block = NULL;
    s->kind = GMS_SLOT_HANDLE;
    gms__slot_put(p, sh->slot);
    p->shares--;
    b->share = NULL;
    free(sh);
    return rc;
}

/* ---- sharing across processes through gmsd (docs/broker.md) ---- */

/* In broker mode, a share whose block owns whole pages is registered with
 * gmsd: its pages become a memfd of gmsd's of their own (nothing else of
 * the tenant's in it), which gmsd hands to acquirers its grants name, in
 * any process. On CUDA memory an immutable share's bytes are copied by
 * gmsd, and each acquirer gets a copy of its own: any block will do; a
 * mutable one is its block's lease itself, which acquirers map: the block
 * must be alone in its chunk (GMS_ALLOC_PAGES gives it a lease of its own
 * there). *registered false: the share stays this process's (a block
 * sharing its pages, allowed only when every grant names the owner's own
 * tenant, whose other processes cannot reach it then). */
static int broker_share(gms_pool *p, gms_block *b, gms_share_rec *sh, bool *registered)
{
    gms_runtime *rt = p->rt;
    *registered = false;
    uint64_t unit = rt->config.view_unit;
    uint64_t lo = b->addr & ~(unit - 1);
    uint64_t hi = (b->addr + b->req_size + unit - 1) & ~(unit - 1);
    bool whole = b->chunk && !b->import && lo >= b->addr && hi <= b->addr + b->size;
    bool others = false;
    for (uint32_t i = 0; i < sh->ngrants; i++)
        others |= strcmp(sh->grants[i].tenant, p->tenant->name) != 0;
    bool device = rt->broker.memory != GMS_BROKER_MEMORY_HOST;
    bool copied = device && sh->immutable;
    if (copied) {
        lo = b->addr;
        hi = b->addr + b->req_size;
        whole = b->chunk && !b->import;
    }
    /* Mutable within the tenant: the process's own, as without gmsd. */
    if (device && !others && !sh->immutable)
        return GMS_OK;
    if (device && !sh->immutable) {
        lo = b->addr;
        hi = b->addr + b->size;
        if (!b->chunk || b->import || b->addr != b->chunk->base || b->size != b->chunk->size)
            return gms__fail(GMS_E_INVALID_ARG,
                             "gms_share: on gmsd's CUDA memory, a mutable share another tenant "
                             "may acquire is the buffer's memory itself, which must be a lease "
                             "of its own: allocate it with GMS_ALLOC_PAGES");
    }
    if (copied && !whole)
        return !others ? GMS_OK
                       : gms__fail(GMS_E_INVALID_ARG,
                                   "gms_share: a share another tenant may acquire is of this "
                                   "process's own memory, not of one it acquired");
    if (!whole)
        return !others ? GMS_OK
                       : gms__fail(GMS_E_INVALID_ARG,
                                   "gms_share: with GMS_BROKER, a share another tenant may acquire "
                                   "must own whole pages, which gmsd gives it alone: allocate it "
                                   "with GMS_ALLOC_PAGES");
    gms_broker_share_grant g[GMS_SHARE_GRANTS_MAX];
    for (uint32_t i = 0; i < sh->ngrants; i++)
        g[i] = (gms_broker_share_grant){sh->grants[i].tenant, sh->grants[i].user,
                                        sh->grants[i].language, (unsigned)sh->grants[i].mode};
    char why[512];
    uint64_t view = 0;
    int rc = gms__broker_share(rt->broker_be, b->chunk->be_chunk, lo, hi - lo, b->req_size,
                               b->addr - lo, sh->immutable, g, sh->ngrants, &sh->broker_id, &view,
                               why, sizeof why);
    if (rc)
        return gms__fail(rc, "gms_share: gmsd: %s", why);
    sh->view = view;
    sh->view_base = lo;
    sh->view_len = hi - lo;
    *registered = true;
    return GMS_OK;
}

/* gms_acquire of an id this process does not know: a share of another
 * process, through gmsd, which checks the grants and hands over its memfd
 * (read-only unless the holder may write); the buffer is then an import
 * of this context's over that mapping, whose last release releases the
 * hold. */
static int broker_acquire(gms_context *ctx, gms_share_id id, gms_access mode, gms_buf *out)
{
    gms_runtime *rt = ctx->rt;
    char why[512];
    gms_broker_hold hold;
    int rc = gms__broker_acquire(rt->broker_be, id, (unsigned)mode, (int)ctx->language, ctx->user,
                                 &hold, why, sizeof why);
    if (rc) {
        rc = gms__fail(rc, "gms_acquire: share 0x%016llx: gmsd: %s", (unsigned long long)id, why);
        gms__audit_ctx(ctx, rc == GMS_E_INVALID_HANDLE ? GMS_AUDIT_VIOLATION : GMS_AUDIT_ACCESS_DENIED,
                       id, 0, rc, gms_error_last());
        return rc;
    }
    gms_block *b = gms__alloc_meta(rt, sizeof *b);
    gms_import *imp = gms__alloc_meta(rt, sizeof *imp);
    gms_buf h = GMS_BUF_NULL;
    rc = b && imp ? GMS_OK : gms__fail(GMS_E_NO_MEMORY, "out of host memory for an acquired share");
    if (rc == GMS_OK) {
        memset(b, 0, sizeof *b);
        *imp = (gms_import){.broker_be = rt->broker_be, .broker_hold = hold.hold,
                            .map = hold.map, .map_len = hold.map_len,
                            .broker_foreign = hold.foreign};
        b->addr = hold.addr;
        b->size = b->req_size = hold.req;
        b->state = GMS_BLOCK_LIVE;
        b->import = imp;
        b->alloc_ns = gms__now_ns();
        b->alloc_user = ctx->user_index;
        gms_pool *p = ctx->pool;
        gms__pool_lock(p);
        rc = gms__handle_add(p, b, ctx, mode, &h);
        if (rc == GMS_OK) {
            b->handle = h;
            gms__live_push(&p->imports, b);
        }
        gms__pool_unlock(p);
    }
    if (rc) {
        free(b);
        free(imp);
        gms__broker_release_hold(rt->broker_be, hold.hold, hold.map, hold.map_len);
        return rc;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "share 0x%016llx through gmsd, %s%s", (unsigned long long)id,
             mode == GMS_ACCESS_READ ? "read" : mode == GMS_ACCESS_ATOMIC ? "atomic" : "read-write",
             hold.immutable ? ", immutable" : "");
    gms__audit_ctx(ctx, GMS_AUDIT_ACQUIRE, h, hold.req, GMS_OK, detail);
    *out = h;
    return GMS_OK;
}

/* ---- gms_share ---- */

static int grants_copy(const gms_share_desc *desc, const char *owner_tenant, gms_share_rec *sh)
{
    if (!desc->grants || desc->ngrants == 0 || desc->ngrants > GMS_SHARE_GRANTS_MAX)
        return gms__fail(GMS_E_INVALID_ARG, "gms_share: %zu grants%s; 1 to %d are allowed",
                         desc->ngrants, desc->grants ? "" : " (grants is NULL)",
                         GMS_SHARE_GRANTS_MAX);
    for (size_t i = 0; i < desc->ngrants; i++) {
        const gms_share_grant *g = &desc->grants[i];
        gms_share_grant_rec *r = &sh->grants[i];
        int rc;
        const char *tenant = g->tenant ? g->tenant : owner_tenant;
        if (strcmp(tenant, "*") != 0 && (rc = gms__name_check("grant tenant", tenant)) != GMS_OK)
            return rc;
        if (g->user && (rc = gms__name_check("grant user", g->user)) != GMS_OK)
            return rc;
        if (g->language != GMS_ANY_LANGUAGE && (g->language < 0 || g->language > GMS_LANG_OTHER))
            return gms__fail(GMS_E_INVALID_ARG, "gms_share: grant %zu: language %d is not a gms_language",
                             i, g->language);
        if (g->mode != GMS_ACCESS_READ && g->mode != GMS_ACCESS_READ_WRITE)
            return gms__fail(GMS_E_INVALID_ARG, "gms_share: grant %zu: mode %d is not a gms_access", i,
                             (int)g->mode);
        snprintf(r->tenant, sizeof r->tenant, "%s", strcmp(tenant, "*") ? tenant : "");
        snprintf(r->user, sizeof r->user, "%s", g->user ? g->user : "");
        r->language = g->language;
        r->mode = g->mode;
    }
    sh->ngrants = (uint32_t)desc->ngrants;
    return GMS_OK;
}

int gms_share(gms_context *owner, gms_buf buf, const gms_share_desc *given, gms_share_id *out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_share: out is NULL");
    *out = 0;
    if (!owner || !given)
        return gms__fail(GMS_E_INVALID_ARG, "gms_share: %s is NULL", owner ? "desc" : "context");
    gms_share_desc current = GMS_SHARE_DESC_INIT;
    const gms_share_desc *desc = &current;
    if (gms__struct_read(&gms__share_desc_versions, "gms_share", given, &current))
        return GMS_E_INVALID_ARG;
    if (desc->immutable != 0 && desc->immutable != 1)
        return gms__fail(GMS_E_INVALID_ARG, "gms_share: immutable is %d, not 0 or 1", desc->immutable);
    gms_share_rec *sh = gms__alloc_meta(owner->rt, sizeof *sh);
    if (!sh)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a share");
    memset(sh, 0, sizeof *sh);
    gms_held h;
    int rc = gms__buf_lock(owner, buf, "gms_share", false, &h);
    if (rc) {
        free(sh);
        return rc;
    }
    gms_pool *p = h.pool;
    gms_block *b = h.block;
    if ((rc = grants_copy(desc, p->tenant->name, sh)) != GMS_OK)
        goto fail;
    if (h.slot->mode != GMS_ACCESS_READ_WRITE) {
        rc = gms__fail(GMS_E_READ_ONLY, "gms_share: handle 0x%016llx is read-only: only a writer shares",
                       (unsigned long long)buf);
        goto fail;
    }
    if (b->share) {
        rc = gms__fail(GMS_E_BUSY, "gms_share: buffer 0x%016llx is already shared as 0x%016llx",
                       (unsigned long long)buf, (unsigned long long)b->share->id);
        goto fail;
    }
    if ((rc = gms__seal_refuse(b, buf, "gms_share")) != GMS_OK)
        goto fail;
    if ((rc = gms__slot_take(p, &sh->slot)) != GMS_OK)
        goto fail;
    sh->owner_ctx = owner->id;
    sh->immutable = desc->immutable;
    bool registered = false;
    if (owner->rt->brokered && (rc = broker_share(p, b, sh, &registered)) != GMS_OK) {
        gms__slot_put(p, sh->slot);
        goto fail;
    }
    /* gmsd's memfd mapped read-only is a view; CUDA memory through gmsd
     * (a copy for each acquirer) keeps the owner's block writable. */
    bool viewed = registered ? sh->view != 0 : view_map(p, b, sh);
    if (!viewed && sh->immutable) {
        if ((rc = block_mac(p, b, sh->mac)) != GMS_OK) {
            gms__slot_put(p, sh->slot);
            goto fail;
        }
        sh->hashed = true;
    }
    gms_slot *s = gms__slot_at(owner->rt, sh->slot);
    s->block = b;
    s->holder = NULL;
    s->kind = GMS_SLOT_SHARE;
    sh->id = gms__handle_make(owner->rt, sh->slot, s->gen);
    atomic_store_explicit(&s->handle, sh->id, memory_order_release);
    b->share = sh;
    p->shares++;
    char detail[96];
    snprintf(detail, sizeof detail, "share 0x%016llx, %s, %u grant%s, %s",
             (unsigned long long)(registered ? sh->broker_id : sh->id),
             sh->immutable ? "immutable" : "mutable", sh->ngrants, sh->ngrants == 1 ? "" : "s",
             registered ? "through gmsd"
             : sh->view ? "read-only view"
             : sh->hashed ? "keyed MAC" : "checked calls");
    uint64_t size = b->req_size;
    *out = registered ? sh->broker_id : sh->id;
    gms__pool_unlock(p);
    gms__audit_ctx(owner, GMS_AUDIT_SHARE, buf, size, GMS_OK, detail);
    return GMS_OK;
fail:
    gms__pool_unlock(p);
    free(sh);
    gms__audit_ctx(owner, GMS_AUDIT_SHARE, buf, 0, rc, gms_error_last());
    return rc;
}

/* ---- gms_acquire, gms_revoke ---- */

/* Resolves a share id and returns with its pool locked, or an error with
 * nothing locked. */
static int share_lock(gms_context *ctx, gms_share_id id, const char *op, gms_pool **pp,
                      gms_block **out)
{
    gms_pool *p = NULL;
    gms_slot *s = id ? gms__slot_lookup(ctx->rt, id, &p) : NULL;
    if (!s || atomic_load_explicit(&s->handle, memory_order_acquire) != id)
        return gms__fail(GMS_E_INVALID_HANDLE,
                         "%s: share 0x%016llx does not exist (never made, forged, or its buffer is gone)",
                         op, (unsigned long long)id);
    gms__pool_lock(p);
    /* The slot may have moved to another pool since the lookup. */
    if (!gms__slot_owned(s, p) || atomic_load_explicit(&s->handle, memory_order_relaxed) != id) {
        gms__pool_unlock(p);
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: share 0x%016llx: its buffer is gone", op,
                         (unsigned long long)id);
    }
    if (s->kind != GMS_SLOT_SHARE) {
        gms__pool_unlock(p);
        return gms__fail(GMS_E_INVALID_HANDLE, "%s: 0x%016llx is a buffer handle, not a share id", op,
                         (unsigned long long)id);
    }
    *pp = p;
    *out = s->block;
    return GMS_OK;
}

/* The most ctx may take of the share: 0 when no grant names it. */
static gms_access granted(const gms_share_rec *sh, const gms_context *ctx)
{
    gms_access best = 0;
    for (uint32_t i = 0; i < sh->ngrants; i++) {
        const gms_share_grant_rec *g = &sh->grants[i];
        if ((!g->tenant[0] || strcmp(g->tenant, ctx->tenant->name) == 0) &&
            (!g->user[0] || strcmp(g->user, ctx->user) == 0) &&
            (g->language == GMS_ANY_LANGUAGE || g->language == (int)ctx->language) && g->mode > best)
            best = g->mode;
    }
    return best;
}

int gms_acquire(gms_context *ctx, gms_share_id id, gms_access mode, gms_buf *out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_acquire: out is NULL");
    *out = GMS_BUF_NULL;
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "gms_acquire: context is NULL");
    if (mode != GMS_ACCESS_READ && mode != GMS_ACCESS_READ_WRITE && mode != GMS_ACCESS_ATOMIC)
        return gms__fail(GMS_E_INVALID_ARG, "gms_acquire: mode %d is not a gms_access", (int)mode);
    /* An atomic holder writes through gms_atomic only: a grant to write
     * lets it in, alongside the one writer (gms/access.h). */
    gms_access need = mode == GMS_ACCESS_ATOMIC ? GMS_ACCESS_READ_WRITE : mode;
    gms_pool *p = NULL; /* set by share_lock before a success (-O3 cannot tell) */
    gms_block *b = NULL;
    int rc = share_lock(ctx, id, "gms_acquire", &p, &b);
    if (rc == GMS_E_INVALID_HANDLE && ctx->rt->brokered && id)
        return broker_acquire(ctx, id, mode, out);
    if (rc) {
        gms__audit_ctx(ctx, GMS_AUDIT_VIOLATION, id, 0, rc, gms_error_last());
        return rc;
    }
    const gms_share_rec *sh = b->share;
    gms_access may = granted(sh, ctx);
    uint64_t size = b->req_size;
    const char *who = ctx->tenant->name;
    if (sh->revoked)
        rc = gms__fail(GMS_E_ACCESS_DENIED, "gms_acquire: share 0x%016llx was revoked",
                       (unsigned long long)id);
    else if (!may)
        rc = gms__fail(GMS_E_ACCESS_DENIED,
                       "gms_acquire: tenant '%s' user '%s' (%s) is not on the access list of share 0x%016llx",
                       who, ctx->user, gms_language_name(ctx->language), (unsigned long long)id);
    else if (need == GMS_ACCESS_READ_WRITE && sh->immutable)
        rc = gms__fail(GMS_E_READ_ONLY, "gms_acquire: share 0x%016llx is immutable: read only",
                       (unsigned long long)id);
    else if (need > may)
        rc = gms__fail(GMS_E_ACCESS_DENIED,
                       "gms_acquire: tenant '%s' user '%s' (%s) may only read share 0x%016llx", who,
                       ctx->user, gms_language_name(ctx->language), (unsigned long long)id);
    else if (mode == GMS_ACCESS_READ_WRITE && b->writers)
        rc = gms__fail(GMS_E_BUSY,
                       "gms_acquire: share 0x%016llx already has a writer (one at a time): read, or wait for its release",
                       (unsigned long long)id);
    gms_buf h = GMS_BUF_NULL;
    if (rc == GMS_OK)
        rc = gms__handle_add(p, b, ctx, mode, &h);
    gms__pool_unlock(p);
    if (rc) {
        gms__audit_ctx(ctx, rc == GMS_E_NO_MEMORY ? GMS_AUDIT_ACQUIRE : GMS_AUDIT_ACCESS_DENIED, id,
                       size, rc, gms_error_last());
        return rc;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "share 0x%016llx, %s", (unsigned long long)id,
             mode == GMS_ACCESS_READ ? "read" : mode == GMS_ACCESS_ATOMIC ? "atomic" : "read-write");
    gms__audit_ctx(ctx, GMS_AUDIT_ACQUIRE, h, size, GMS_OK, detail);
    *out = h;
    return GMS_OK;
}

int gms_revoke(gms_context *owner, gms_share_id id)
{
    if (!owner)
        return gms__fail(GMS_E_INVALID_ARG, "gms_revoke: context is NULL");
    gms_pool *p = NULL; /* set by share_lock before a success (-O3 cannot tell) */
    gms_block *b = NULL;
    int rc = share_lock(owner, id, "gms_revoke", &p, &b);
    if (rc == GMS_E_INVALID_HANDLE && owner->rt->brokered && id) {
        /* A share registered with gmsd: its owner's connection revokes. */
        char why[512];
        rc = gms__broker_revoke(owner->rt->broker_be, id, why, sizeof why);
        if (rc)
            rc = gms__fail(rc, "gms_revoke: share 0x%016llx: gmsd: %s", (unsigned long long)id, why);
    } else if (rc == GMS_OK) {
        if (b->share->owner_ctx != owner->id)
            rc = gms__fail(GMS_E_ACCESS_DENIED,
                           "gms_revoke: share 0x%016llx was made by another context; only it may revoke",
                           (unsigned long long)id);
        else
            b->share->revoked = true;
        gms__pool_unlock(p);
    }
    gms__audit_ctx(owner, rc == GMS_E_ACCESS_DENIED ? GMS_AUDIT_ACCESS_DENIED : GMS_AUDIT_REVOKE, id,
                   0, rc, rc ? gms_error_last() : NULL);
    return rc;
}

/* ---- gms_transfer ---- */

/* Checks that h may be handed on: the only handle of a writable, unshared
 * buffer (pool->lock held). */
static int transferable(const gms_held *h, gms_buf buf)
{
    const gms_block *b = h->block;
    if (h->slot->mode != GMS_ACCESS_READ_WRITE)
        return gms__fail(GMS_E_READ_ONLY, "gms_transfer: handle 0x%016llx is read-only",
                         (unsigned long long)buf);
    if (b->share)
        return gms__fail(GMS_E_BUSY,
                         "gms_transfer: buffer 0x%016llx is shared (0x%016llx): only an unshared buffer changes owner",
                         (unsigned long long)buf, (unsigned long long)b->share->id);
    if (b->holders != 1)
        return gms__fail(GMS_E_BUSY, "gms_transfer: buffer 0x%016llx has %u holders; it needs to be the only one",
                         (unsigned long long)buf, b->holders);
    if (gms__window_held(b, h->slot))
        return gms__fail(GMS_E_BUSY,
                         "gms_transfer: handle 0x%016llx has an access window open: gms_access_end it first",
                         (unsigned long long)buf);
    return GMS_OK;
}

/* To another tenant (or a higher level): a copy in to's pool, then the
 * original dies (wiped), so no page ever holds two tenants' data and data
 * is wiped as its owner's level asks. Both pools are locked for the
 * copy, in the runtime's lock order. */
static int transfer_copy(gms_context *from, gms_buf buf, gms_context *to, uint64_t req,
                         uint32_t flags, gms_buf *out)
{
    gms_buf nb;
    int rc = gms_alloc(to, (size_t)req, flags & ~(uint32_t)GMS_ALLOC_ZERO, &nb);
    if (rc)
        return rc;
    gms_held src = {0};
    gms_pool *fp, *tp;
    gms_slot *s = gms__slot_lookup(from->rt, buf, &fp);
    gms_slot *ds = gms__slot_lookup(to->rt, nb, &tp);
    gms__pools_lock(fp, tp);
    /* The handle may have died while no lock was held. */
    if (!gms__slot_owned(s, fp) || atomic_load(&s->handle) != buf || s->holder != from) {
        rc = gms__fail(GMS_E_INVALID_HANDLE, "gms_transfer: handle 0x%016llx died during the transfer",
                       (unsigned long long)buf);
    } else {
        src = (gms_held){fp, s->block, s};
        rc = transferable(&src, buf);
    }
    if (rc == GMS_OK && src.block->req_size != req)
        rc = gms__fail(GMS_E_BUSY, "gms_transfer: buffer 0x%016llx changed during the transfer",
                       (unsigned long long)buf);
    gms_backend *be = from->rt->backend;
    /* The copy comes after the work of the windows that ended on it. */
    int err = rc ? 0 : gms__windows_settle(fp, src.block, NULL);
    if (!err && !rc && src.block->win && be->ops->order_after)
        err = be->ops->order_after(be, NULL, 0);
    if (!err && !rc)
        err = be->ops->copy(be, ds->block->addr, src.block->addr, req);
    if (err)
        rc = gms__backend_fail(err, "copy for a transfer", req);
    int drop_rc = GMS_OK;
    gms_drop d = {0};
    if (rc == GMS_OK)
        drop_rc = gms__handle_drop(fp, s, from, &d);
    gms__pools_unlock(fp, tp);
    gms__drop_finish(&d);
    gms__violations_deliver(from->rt);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", gms_error_last());
        gms_free(to, nb);
        return gms__fail(rc, "%s", msg);
    }
    *out = nb;
    if (drop_rc) /* the old buffer's redzones: the data moved all the same */
        gms__log(from->rt, GMS_LOG_WARN, "gms_transfer: %s", gms_error_last());
    return GMS_OK;
}

/* A share of another tenant acquired through gmsd: gms_transfer takes
 * it over for this process's tenant (docs/broker.md, "Transfers"). gmsd
 * checks that this is its only holder in any process and that the quota
 * holds it, and charges it to this tenant from then on; the buffer stays
 * where it is. A refusal changes nothing (pool lock held). */
static int broker_take_over(gms_block *b, const char *op)
{
    gms_import *imp = b->import;
    char why[512];
    int rc = gms__broker_transfer(imp->broker_be, &imp->broker_hold, imp->map, imp->map_len, why,
                                  sizeof why);
    if (rc)
        return gms__fail(rc, "%s: gmsd: %s", op, why);
    imp->broker_foreign = 0;
    return GMS_OK;
}

static int transfer(gms_context *from, gms_buf buf, gms_context *to, void *stream, bool ordered,
                    gms_buf *out)
{
    const char *op = ordered ? "gms_transfer_async" : "gms_transfer";
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "%s: out is NULL", op);
    *out = GMS_BUF_NULL;
    if (!from || !to)
        return gms__fail(GMS_E_INVALID_ARG, "%s: %s context is NULL", op, from ? "to" : "from");
    if (from == to)
        return gms__fail(GMS_E_INVALID_ARG, "%s: from and to are the same context", op);
    if (from->rt != to->rt)
        return gms__fail(GMS_E_INVALID_ARG, "%s: the contexts belong to different runtimes", op);
    gms_held h;
    int rc = gms__buf_lock(from, buf, op, false, &h);
    if (rc)
        return rc;
    gms_backend *be = from->rt->backend;
    if ((rc = transferable(&h, buf)) == GMS_OK && ordered && be->ops->order_after) {
        /* The next holder's work runs on streams gms does not know: wait,
         * for the stream and the windows that ended on the buffer. */
        int err = gms__windows_settle(h.pool, h.block, stream);
        if (!err)
            err = be->ops->order_after(be, stream, 1);
        if (err)
            rc = gms__backend_fail(err, "waiting for the stream before the transfer", h.block->req_size);
    }
    bool taken = false;
    if (rc == GMS_OK && h.block->import && h.block->import->broker_foreign)
        taken = (rc = broker_take_over(h.block, op)) == GMS_OK;
    uint64_t req = h.block->req_size;
    uint32_t flags = h.block->flags;
    /* A copy when the buffer would otherwise sit in another tenant's pool
     * or in a pool wiped less carefully than the new owner's level asks.
     * An imported tensor too: its memory is the first tenant's framework's,
     * so the new owner gets a buffer of its own (on its quota) and the
     * tensor goes back to its framework. */
    bool copy = rc == GMS_OK && (h.pool->tenant != to->tenant || to->level > h.pool->level);
    if (rc == GMS_OK && !copy)
        rc = gms__handle_move(h.pool, h.slot, to, out);
    gms__pool_unlock(h.pool);
    if (rc == GMS_OK && copy)
        rc = transfer_copy(from, buf, to, req, flags, out);
    char detail[320];
    snprintf(detail, sizeof detail, "to tenant '%s' user '%s' (%s) as 0x%016llx%s%s", to->tenant->name,
             to->user, gms_language_name(to->language), (unsigned long long)*out,
             taken ? ", taken over from another tenant through gmsd (charged to this one)" : "",
             copy ? ", copied into its pool" : "");
    gms__audit_ctx(from, GMS_AUDIT_TRANSFER, buf, req, rc, rc ? gms_error_last() : detail);
    return rc;
}

int gms_transfer(gms_context *from, gms_buf buf, gms_context *to, gms_buf *out)
{
    return transfer(from, buf, to, NULL, false, out);
}

int gms_transfer_async(gms_context *from, gms_buf buf, gms_context *to, void *stream, gms_buf *out)
{
    return transfer(from, buf, to, stream, true, out);
}
