/*
 * context.c: contexts, and the pools they use: a context open finds or
 * makes the pool of its (tenant, level, language), and the close of a
 * pool's last context retires it once nothing of it is in use. Everything
 * here takes rt->lock and runs at open and close, never on the alloc/free
 * path.
 */
#include "core/internal.h"
#include "core/version.h"
#include "safety/safety.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The index of a user name in the pool's table, added if new (pool->lock):
 * blocks name who allocated and freed them by index. */
static int pool_user_index(gms_pool *p, const char *user, uint32_t *out)
{
    for (uint32_t i = 0; i < p->nusers; i++)
        if (strcmp(p->users[i], user) == 0) {
            *out = i;
            return GMS_OK;
        }
    if (p->nusers == 0 || (p->nusers >= 4 && !(p->nusers & (p->nusers - 1)))) {
        /* grow: 4, 8, 16... */
        uint32_t cap = p->nusers ? 2 * p->nusers : 4;
        if (gms__failpoint_hit(&p->rt->failpoint))
            return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a pool's user names");
        char(*u)[GMS_NAME_MAX + 1] = realloc(p->users, cap * sizeof *u);
        if (!u)
            return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a pool's user names");
        p->users = u;
    }
    strcpy(p->users[p->nusers], user);
    *out = p->nusers++;
    return GMS_OK;
}

/* ---- pools: made, retired, reused ---- */

/* Gives back everything pool p holds once nothing of it is in use: no
 * context, no live or imported buffer, nothing the device still runs
 * (rt->lock and pool->lock held). Its quarantine is checked and emptied,
 * its memory unmapped, its chunks and node slabs released, its handle
 * slots returned to the runtime; the record then waits, idle, for the
 * next new (tenant, level, language). False while something is in use. */
static bool pool_retire(gms_runtime *rt, gms_pool *p)
{
    if (p->idle || p->contexts || p->live_blocks || p->imports)
        return false;
    gms__safety_drain(p);
    gms__pool_trim(p, 0);
    if (p->quarantine_blocks || p->inflight_head || !gms__pool_release_chunks(p))
        return false; /* a check or an unmap failed: the next sweep tries again */
    gms__slots_give_back(p);
    rt->gauges.retired_allocs += p->allocs; /* gms_stats counts them still */
    rt->gauges.retired_frees += p->frees;
    p->allocs = p->frees = 0;
    p->idle = true;
    rt->npools--;
    return true;
}

/* The last context of p closed (rt->lock and pool->lock held): its memory
 * goes back, and the pool retires now or, while another context still
 * holds one of its buffers, at a later sweep. */
static void pool_unused(gms_runtime *rt, gms_pool *p)
{
    gms__safety_drain(p);
    gms__pool_trim(p, 0);
    if (!pool_retire(rt, p) && !p->orphan) {
        p->orphan = true;
        rt->orphan_pools++;
    }
}

/* Retires the pools no context uses whose last buffers have gone since
 * (rt->lock held): at every context open and close, while there are any. */
static void pools_sweep(gms_runtime *rt)
{
    for (gms_pool *p = rt->pools; p && rt->orphan_pools; p = p->next) {
        if (!p->orphan)
            continue;
        gms__pool_lock(p);
        if (pool_retire(rt, p)) {
            p->orphan = false;
            rt->orphan_pools--;
        }
        gms__pool_unlock(p);
    }
}

/* The pool serving (t, level, lang) (rt->lock held); a new triple gets an
 * idle pool record if there is one, else a new one at the list's end. */
static int pool_get(gms_runtime *rt, gms_tenant *t, gms_level level, gms_language lang,
                    gms_pool **out)
{
    gms_pool *idle = NULL, *p;
    for (p = rt->pools; p; p = p->next) {
        if (p->idle) {
            idle = idle ? idle : p;
            continue;
        }
        if (p->tenant == t && p->level == level && p->language == lang) {
            *out = p;
            return GMS_OK;
        }
    }
    if (idle) {
        p = idle;
        gms__pool_lock(p);
        gms__pool_reuse(p, t, level, lang);
        p->id = ++rt->next_id;
        gms__pool_unlock(p);
    } else {
        int rc = gms__pool_create(rt, t, level, lang, &p);
        if (rc)
            return rc;
        p->id = p->rank = ++rt->next_id; /* ranks grow along the list */
        *rt->pools_tail = p;
        rt->pools_tail = &p->next;
    }
    rt->npools++;
    *out = p;
    return GMS_OK;
}

int gms_context_open(gms_context **out, gms_runtime *rt, const gms_context_desc *given)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_context_open: out is NULL");
    *out = NULL;
    if (!rt || !given)
        return gms__fail(GMS_E_INVALID_ARG, "gms_context_open: %s is NULL", rt ? "desc" : "runtime");
    gms_context_desc current = GMS_CONTEXT_DESC_INIT;
    const gms_context_desc *desc = &current;
    int rc = gms__struct_read(&gms__context_desc_versions, "gms_context_open", given, &current);
    if (rc)
        return rc;
    if ((rc = gms__name_check("tenant", desc->tenant)) || (rc = gms__name_check("user", desc->user)))
        return rc;
    if ((unsigned)desc->level > GMS_LEVEL_SECRET)
        return gms__fail(GMS_E_INVALID_ARG, "level %d is not a gms_level", (int)desc->level);
    if ((unsigned)desc->language > GMS_LANG_OTHER)
        return gms__fail(GMS_E_INVALID_ARG, "language %d is not a gms_language", (int)desc->language);

    gms_context *ctx = gms__alloc_meta(rt, sizeof *ctx);
    if (!ctx)
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a context");
    memset(ctx, 0, sizeof *ctx);
    if (pthread_mutex_init(&ctx->holds_lock, NULL) != 0) {
        free(ctx);
        return gms__fail(GMS_E_NO_MEMORY, "cannot create a context's lock");
    }
    pthread_mutex_lock(&rt->lock);
    gms_tenant *t;
    rc = gms__tenant_get(rt, desc->tenant, &t);
    gms_pool *p = NULL;
    if (rc == GMS_OK) {
        pools_sweep(rt);
        rc = pool_get(rt, t, desc->level, desc->language, &p);
    }
    if (rc == GMS_OK) {
        gms__pool_lock(p);
        rc = pool_user_index(p, desc->user, &ctx->user_index);
        gms__pool_unlock(p);
    }
    if (rc) {
        if (p && p->contexts == 0) { /* made or reused for nothing */
            gms__pool_lock(p);
            pool_unused(rt, p);
            gms__pool_unlock(p);
        }
        pthread_mutex_unlock(&rt->lock);
        pthread_mutex_destroy(&ctx->holds_lock);
        free(ctx);
        gms__violations_deliver(rt); /* what the sweep found; keeps the message */
        return rc;
    }
    ctx->rt = rt;
    ctx->pool = p;
    ctx->tenant = t;
    strcpy(ctx->user, desc->user);
    ctx->level = desc->level;
    ctx->language = desc->language;
    ctx->id = ++rt->next_id;
    if (p->orphan) { /* in use again */
        p->orphan = false;
        rt->orphan_pools--;
    }
    p->contexts++;
    ctx->next = rt->contexts;
    if (rt->contexts)
        rt->contexts->prev = ctx;
    rt->contexts = ctx;
    rt->ncontexts++;
    pthread_mutex_unlock(&rt->lock);
    gms__violations_deliver(rt); /* what the sweep found */
    gms__audit_ctx(ctx, GMS_AUDIT_CONTEXT_OPEN, 0, 0, GMS_OK, NULL);
    *out = ctx;
    return GMS_OK;
}

/* Releases the handles ctx holds on blocks outside its live list
 * (acquired, transferred, exported, imported), each under its block's pool
 * lock; adds them to the leak counts. */
static void context_drop_holds(gms_context *ctx, uint64_t *blocks, uint64_t *bytes)
{
    for (;;) {
        pthread_mutex_lock(&ctx->holds_lock);
        gms_slot *s = ctx->holds;
        gms_buf h = s ? atomic_load(&s->handle) : GMS_BUF_NULL;
        pthread_mutex_unlock(&ctx->holds_lock);
        if (!s)
            return;
        gms_pool *p = gms__handle_pool(ctx->rt, h);
        if (!p)
            continue; /* dropped meanwhile (a DLPack deleter) and its slot given back */
        gms__pool_lock(p);
        /* Between the two locks another thread (a DLPack deleter) may have
         * released it: look again before using it. */
        if (!gms__slot_owned(s, p) || atomic_load(&s->handle) != h || s->kind != GMS_SLOT_HANDLE ||
            s->holder != ctx) {
            gms__pool_unlock(p);
            continue;
        }
        if (s->exported) {
            /* The tensor's consumer still reads the buffer: it lives until
             * the tensor's deleter runs, not a leak. */
            gms__handle_orphan(p, s);
            gms__pool_unlock(p);
            continue;
        }
        gms_block *b = s->block;
        (*blocks)++;
        *bytes += b->size;
        gms__audit_ctx(ctx, GMS_AUDIT_LEAK, h, b->req_size, GMS_OK,
                       "held handle released at context close");
        gms_drop d;
        gms__handle_drop(p, s, ctx, &d);
        gms__pool_unlock(p);
        gms__drop_finish(&d);
    }
}

/* Reclaims what the context holds and unlinks it (rt->lock held); leak
 * gets the report to log once no lock is held, "" when nothing leaked. */
void gms__context_close_locked(gms_context *ctx, char *leak, size_t leak_size)
{
    gms_runtime *rt = ctx->rt;
    gms_pool *p = ctx->pool;
    uint64_t blocks = ctx->held_leaks, bytes = ctx->held_leak_bytes;
    context_drop_holds(ctx, &blocks, &bytes); /* what gms_context_close left */
    gms__pool_lock(p);
    blocks += ctx->live_blocks;
    bytes += ctx->live_bytes;
    while (ctx->live) {
        gms_block *b = ctx->live;
        gms__audit_ctx(ctx, GMS_AUDIT_LEAK, b->handle, b->req_size, GMS_OK,
                       "reclaimed at context close");
        gms_drop d;
        gms__handle_drop(p, gms__slot_at(rt, b->u.live.slot), ctx, &d);
    }
    if (--p->contexts == 0) /* nobody uses the pool: return what it holds */
        pool_unused(rt, p);
    gms__pool_unlock(p);
    leak[0] = 0;
    if (blocks) {
        atomic_fetch_add(&ctx->tenant->leaked_blocks, blocks);
        atomic_fetch_add(&ctx->tenant->leaked_bytes, bytes);
        snprintf(leak, leak_size,
                 "gms: leak: context of tenant '%s' user '%s' (%s, %s) closed holding %llu buffer%s, %llu bytes; reclaimed",
                 ctx->tenant->name, ctx->user, gms_language_name(ctx->language),
                 gms_level_name(ctx->level), (unsigned long long)blocks, blocks == 1 ? "" : "s",
                 (unsigned long long)bytes);
    }
    gms__audit_ctx(ctx, GMS_AUDIT_CONTEXT_CLOSE, 0, blocks, GMS_OK, NULL);
    if (ctx->prev)
        ctx->prev->next = ctx->next;
    else
        rt->contexts = ctx->next;
    if (ctx->next)
        ctx->next->prev = ctx->prev;
    rt->ncontexts--;
    pthread_mutex_destroy(&ctx->holds_lock);
    free(ctx);
}

void gms_context_close(gms_context *ctx)
{
    if (!ctx)
        return;
    gms_runtime *rt = ctx->rt;
    char leak[256];
    /* Held handles first, with no runtime lock: dropping the last handle
     * of an imported tensor calls its framework's deleter. */
    context_drop_holds(ctx, &ctx->held_leaks, &ctx->held_leak_bytes);
    pthread_mutex_lock(&rt->lock);
    gms__context_close_locked(ctx, leak, sizeof leak);
    pools_sweep(rt);
    pthread_mutex_unlock(&rt->lock);
    if (leak[0])
        gms__log(rt, GMS_LOG_WARN, "%s", leak);
    gms__violations_deliver(rt);
}
