/*
 * seal.h: what the rest of the core knows of sealed regions (seal.c,
 * docs/sealed.md): a block's seal record, the refusal every access makes
 * while it is sealed, and the crypto-erase when the block dies.
 */
#ifndef GMS_CORE_SEAL_H
#define GMS_CORE_SEAL_H

#include "core/pool.h"

/* A block's seal state, from its first gms_seal to its death (pool->lock
 * held). The data key exists only wrapped, under the tenant's KEK. */
typedef struct gms_seal_rec {
    bool sealed;
    uint32_t region;     /* the IVs' fixed field */
    uint32_t counter;    /* seals made with the current key: the last IV's counter */
    uint32_t generation; /* keys made before the current one (rotations) */
    uint64_t seals;      /* seals made in all */
    uint64_t len;        /* bytes sealed */
    uint8_t wrapped[40]; /* the data key, AES key wrap (RFC 3394) under the KEK */
    uint8_t *tags;       /* while sealed: 16 bytes per chunk */
} gms_seal_rec;

/* GMS_E_ACCESS_DENIED (message naming op and h) when b is sealed. Cost: a
 * load and a branch. */
static inline int gms__seal_refuse(const gms_block *b, gms_buf h, const char *op)
{
    if (__builtin_expect(b->seal == NULL || !b->seal->sealed, 1))
        return GMS_OK;
    return gms__fail(GMS_E_ACCESS_DENIED, "%s: buffer 0x%016llx is sealed: gms_unseal it first",
                     op, (unsigned long long)h);
}

/* Block b is dying (pool->lock held): destroys its key and tags (every
 * copy gms has), frees the record and records the crypto-erase. */
void gms__seal_erase(gms_pool *p, gms_block *b);

/* Zeroises and frees the runtime's key-file KEKs (runtime close). */
void gms__seal_runtime_close(gms_runtime *rt);

#endif
