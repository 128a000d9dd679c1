/*
 * snapshot.c: gms_testing_snapshot (gms/testing.h) writes the runtime's
 * memory state as one JSON document: tenants and their quota counters,
 * pools, chunks and their granules, every block of every chunk, and every
 * share with its grants as share.c stores them. proofs/snapshot/snapshot.py
 * proves tenant isolation on it (docs/proofs.md, section 5, which gives
 * the format).
 *
 * It reads under the runtime lock and every pool lock, taken in the order
 * gms_verify takes them, so the document is one consistent state. It is
 * written into memory first and to the file descriptor once the locks are
 * let go: a slow reader of a pipe never holds up the runtime. Cost: linear
 * in blocks and granules; not a fast path.
 */
#include "core/internal.h"
#include "gms/testing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Names are printable ASCII (gms__name_check): only '"' and '\' need
 * escaping. */
static void json_name(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static const char *state_name(uint32_t state)
{
    switch (state) {
    case GMS_BLOCK_FREE: return "free";
    case GMS_BLOCK_LIVE: return "live";
    case GMS_BLOCK_QUARANTINE: return "quarantine";
    default: return "broken";
    }
}

/* The index of chunk c in the document's chunk list, -1 if it is not in
 * it (a block whose chunk pointer is wrong). */
static long chunk_index(const gms_runtime *rt, const gms_chunk *c)
{
    long i = 0;
    for (const gms_pool *p = rt->pools; p; p = p->next) {
        if (p->idle)
            continue;
        for (const gms_chunk *x = p->chunks; x; x = x->next, i++)
            if (x == c)
                return i;
    }
    return -1;
}

static void write_tenants(FILE *f, const gms_runtime *rt)
{
    fputs(",\n\"tenants\": [", f);
    for (const gms_tenant *t = rt->tenants; t; t = t->next) {
        fputs(t == rt->tenants ? "\n  {\"name\": " : ",\n  {\"name\": ", f);
        json_name(f, t->name);
        fprintf(f, ", \"max_bytes\": %llu, \"max_allocs\": %llu, \"live_bytes\": %llu, \"live_allocs\": %llu}",
                (unsigned long long)atomic_load(&t->max_bytes),
                (unsigned long long)atomic_load(&t->max_allocs),
                (unsigned long long)atomic_load(&t->live_bytes),
                (unsigned long long)atomic_load(&t->live_allocs));
    }
    fputs("]", f);
}

static void write_pools(FILE *f, const gms_runtime *rt)
{
    fputs(",\n\"pools\": [", f);
    bool first = true;
    for (const gms_pool *p = rt->pools; p; p = p->next) {
        if (p->idle)
            continue;
        fprintf(f, "%s\n  {\"id\": %llu, \"tenant\": ", first ? "" : ",", (unsigned long long)p->id);
        json_name(f, p->tenant->name);
        fprintf(f, ", \"level\": %d, \"language\": %d, \"live_bytes\": %llu, \"live_blocks\": %llu}",
                (int)p->level, (int)p->language, (unsigned long long)p->live_bytes,
                (unsigned long long)p->live_blocks);
        first = false;
    }
    fputs("]", f);
}

/* A chunk's granules that are mapped or count live blocks, as
 * [index, live, mapped]; the others are neither. */
static void write_chunks(FILE *f, const gms_runtime *rt)
{
    fputs(",\n\"chunks\": [", f);
    bool first = true;
    for (const gms_pool *p = rt->pools; p; p = p->next) {
        if (p->idle)
            continue;
        for (const gms_chunk *c = p->chunks; c; c = c->next) {
            fprintf(f, "%s\n  {\"pool\": %llu, \"base\": %llu, \"size\": %llu, \"granules\": [",
                    first ? "" : ",", (unsigned long long)c->pool->id, (unsigned long long)c->base,
                    (unsigned long long)c->size);
            const char *sep = "";
            for (uint64_t g = 0; g < c->ngranules; g++) {
                const gms_granule *gr = &c->granules[g];
                if (!gr->live && !gr->committed)
                    continue;
                fprintf(f, "%s[%llu, %u, %d]", sep, (unsigned long long)g, gr->live, gr->committed);
                sep = ", ";
            }
            fputs("]}", f);
            first = false;
        }
    }
    fputs("]", f);
}

/* A shared block and its place in "blocks" (-1: an import, in none). */
typedef struct shared_block {
    const gms_pool *pool;
    const gms_block *block;
    long index;
} shared_block;

/* Every block of every chunk, in address order within each chunk: its
 * pool is the pool whose chunk list led to it, its chunk what the block
 * itself says. The shared ones are gathered for write_shares. */
static int write_blocks(FILE *f, const gms_runtime *rt, shared_block **shared, size_t *nshared)
{
    fputs(",\n\"blocks\": [", f);
    size_t index = 0, cap = 0;
    for (const gms_pool *p = rt->pools; p; p = p->next) {
        if (p->idle)
            continue;
        for (const gms_chunk *c = p->chunks; c; c = c->next) {
            /* Blocks tile the chunk: more than it holds at the smallest
             * size is a cycle. */
            uint64_t most = c->size / GMS_ALIGNMENT, n = 0;
            for (const gms_block *b = c->first; b; b = b->next_phys, index++) {
                if (++n > most)
                    return gms__fail(GMS_E_CORRUPTION,
                                     "gms_testing_snapshot: chunk 0x%llx of pool %llu lists more blocks than it can hold",
                                     (unsigned long long)c->base, (unsigned long long)p->id);
                fprintf(f, "%s\n  {\"pool\": %llu, \"chunk\": %ld, \"addr\": %llu, \"size\": %llu, \"req_size\": %llu, \"state\": \"%s\", \"owner_tenant\": ",
                        index ? "," : "", (unsigned long long)p->id, chunk_index(rt, b->chunk),
                        (unsigned long long)b->addr, (unsigned long long)b->size,
                        (unsigned long long)b->req_size, state_name(b->state));
                const gms_context *o = b->state == GMS_BLOCK_LIVE ? b->u.live.owner : NULL;
                if (o)
                    json_name(f, o->tenant->name);
                else
                    fputs("null", f);
                fputs("}", f);
                if (b->state != GMS_BLOCK_LIVE || !b->share)
                    continue;
                if (*nshared == cap) {
                    cap = cap ? 2 * cap : 16;
                    shared_block *more = realloc(*shared, cap * sizeof *more);
                    if (!more)
                        return gms__fail(GMS_E_NO_MEMORY, "gms_testing_snapshot: out of host memory");
                    *shared = more;
                }
                (*shared)[(*nshared)++] = (shared_block){p, b, (long)index};
            }
        }
    }
    fputs("]", f);
    return GMS_OK;
}

/* A share of a chunk's block names it by its place in "blocks"; a share
 * of an imported tensor has "block": null. */
static void write_share(FILE *f, const gms_pool *p, const gms_block *b, long block, bool first)
{
    const gms_share_rec *sh = b->share;
    fprintf(f, "%s\n  {\"id\": %llu, \"pool\": %llu, \"owner_tenant\": ", first ? "" : ",",
            (unsigned long long)sh->id, (unsigned long long)p->id);
    json_name(f, p->tenant->name);
    if (block >= 0)
        fprintf(f, ", \"block\": %ld", block);
    else
        fputs(", \"block\": null", f);
    fprintf(f, ", \"owner_ctx\": %llu, \"immutable\": %s, \"revoked\": %s, \"holders\": %u, \"writers\": %u, \"grants\": [",
            (unsigned long long)sh->owner_ctx, sh->immutable ? "true" : "false",
            sh->revoked ? "true" : "false", b->holders, b->writers);
    for (uint32_t i = 0; i < sh->ngrants && i < GMS_SHARE_GRANTS_MAX; i++) {
        const gms_share_grant_rec *g = &sh->grants[i];
        fputs(i ? ", {\"tenant\": " : "{\"tenant\": ", f);
        json_name(f, g->tenant);
        fputs(", \"user\": ", f);
        json_name(f, g->user);
        fprintf(f, ", \"language\": %d, \"mode\": %d}", g->language, (int)g->mode);
    }
    fputs("]}", f);
}

static void write_shares(FILE *f, const gms_runtime *rt, const shared_block *shared,
                         size_t nshared)
{
    fputs(",\n\"shares\": [", f);
    bool first = true;
    for (size_t i = 0; i < nshared; i++, first = false)
        write_share(f, shared[i].pool, shared[i].block, shared[i].index, first);
    for (const gms_pool *p = rt->pools; p; p = p->next) {
        if (p->idle)
            continue;
        for (const gms_block *b = p->imports; b; b = b->u.live.next)
            if (b->share) {
                write_share(f, p, b, -1, first);
                first = false;
            }
    }
    fputs("]\n}\n", f);
}

/* The document, built under every lock. */
static int snapshot_text(gms_runtime *rt, char **text, size_t *len)
{
    FILE *f = open_memstream(text, len);
    if (!f)
        return gms__fail(GMS_E_NO_MEMORY, "gms_testing_snapshot: out of host memory");
    shared_block *shared = NULL;
    size_t nshared = 0;
    pthread_mutex_lock(&rt->lock);
    for (gms_pool *p = rt->pools; p; p = p->next)
        gms__pool_lock(p);
    fprintf(f, "{\"gms_snapshot\": 1, \"backend\": \"%s\", \"granule\": %llu, \"alignment\": %u",
            rt->backend_name, (unsigned long long)rt->config.granule, (unsigned)GMS_ALIGNMENT);
    write_tenants(f, rt);
    write_pools(f, rt);
    write_chunks(f, rt);
    int rc = write_blocks(f, rt, &shared, &nshared);
    if (rc == GMS_OK)
        write_shares(f, rt, shared, nshared);
    for (gms_pool *p = rt->pools; p; p = p->next)
        gms__pool_unlock(p);
    pthread_mutex_unlock(&rt->lock);
    free(shared);
    if (fclose(f) != 0 && rc == GMS_OK)
        rc = gms__fail(GMS_E_NO_MEMORY, "gms_testing_snapshot: out of host memory");
    if (rc) {
        free(*text);
        *text = NULL;
    }
    return rc;
}

int gms_testing_snapshot(gms_runtime *rt, int fd)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_testing_snapshot: runtime is NULL");
    if (fd < 0)
        return gms__fail(GMS_E_INVALID_ARG, "gms_testing_snapshot: file descriptor %d", fd);
    char *text = NULL;
    size_t len = 0;
    int rc = snapshot_text(rt, &text, &len);
    if (rc)
        return rc;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            free(text);
            return gms__fail(GMS_E_BACKEND, "gms_testing_snapshot: writing to file descriptor %d: %s",
                             fd, strerror(err));
        }
        done += (size_t)n;
    }
    free(text);
    return GMS_OK;
}
