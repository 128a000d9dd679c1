/*
 * sealed.c: gms-inject's class of tampering with sealed buffers
 * (docs/sealed.md): each trial seals a buffer of random bytes and size
 * (log-uniform up to --max-size, and at most SEAL_MAX so that trials stay
 * cheap), changes one random byte (XOR with a random non-zero byte) of
 * its ciphertext in device memory or of one of its tags kept on the
 * host, half the trials each, and calls gms_unseal. Detected: the call
 * returns GMS_E_CORRUPTION naming the chunk that holds the changed byte,
 * leaves every byte of device memory as it was, and, with the byte put
 * back, the buffer unseals to the bytes it held before. The byte is
 * changed through the backend (the CPU on host, the driver on cuda),
 * the tag in the host's record of it.
 */
#include "inject.h"
#include "core/internal.h"
#include "core/seal.h"
#include "gms/seal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_MAX (4u * GMS_SEAL_CHUNK + 4096u)

static uint8_t kek[32];

static int provider(void *user, const char *tenant, uint8_t key[32])
{
    (void)user;
    (void)tenant;
    memcpy(key, kek, 32);
    return 0;
}

void run_sealed_tamper(tally *t)
{
    t->how = "gms_unseal: GMS_E_CORRUPTION naming the chunk, nothing touched";
    gms_runtime *rt = rt_open(REDZONE);
    for (int i = 0; i < 32; i++)
        kek[i] = (uint8_t)rnd();
    int rc = gms_on_key_request(rt, provider, NULL);
    if (rc)
        die("gms_on_key_request", rc);
    gms_context *c = ctx_open(rt, "sealed", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_backend *be = rt->backend;
    uint8_t *pt = malloc(SEAL_MAX), *before = malloc(SEAL_MAX), *after = malloc(SEAL_MAX);
    if (!pt || !before || !after)
        die("host memory", GMS_E_NO_MEMORY);
    for (uint64_t n = 0; n < opt.trials; n++) {
        size_t size = rnd_size();
        if (size > SEAL_MAX)
            size = 1 + (size_t)(rnd() % SEAL_MAX);
        for (size_t i = 0; i < size; i++)
            pt[i] = (uint8_t)rnd();
        gms_buf b = xalloc(c, size);
        if ((rc = gms_write(c, b, 0, pt, size)) != GMS_OK || (rc = gms_seal(c, b)) != GMS_OK)
            die("gms_seal", rc);
        gms_pool *p = NULL;
        gms_block *blk = gms__slot_lookup(rt, b, &p)->block;
        gms_seal_rec *rec = blk->seal;
        uint64_t chunks = (size + GMS_SEAL_CHUNK - 1) / GMS_SEAL_CHUNK;
        if (be->ops->read(be, before, blk->addr, size) != 0)
            die("reading the ciphertext", GMS_E_BACKEND);
        bool in_tag = rnd() & 1;
        uint64_t at = in_tag ? rnd() % (chunks * GMS_SEAL_TAG_BYTES) : rnd() % size;
        uint64_t chunk = in_tag ? at / GMS_SEAL_TAG_BYTES : at / GMS_SEAL_CHUNK;
        uint8_t flip = rnd_nonzero_byte();
        if (in_tag) {
            rec->tags[at] ^= flip;
        } else {
            uint8_t v = before[at] ^ flip;
            if (be->ops->write(be, blk->addr + at, &v, 1) != 0)
                die("changing a byte", GMS_E_BACKEND);
        }
        rc = gms_unseal(c, b);
        char want[48];
        snprintf(want, sizeof want, "chunk %llu (", (unsigned long long)chunk);
        bool named = rc == GMS_E_CORRUPTION && strstr(gms_error_last(), want) != NULL;
        if (be->ops->read(be, after, blk->addr, size) != 0)
            die("reading the ciphertext", GMS_E_BACKEND);
        if (!in_tag)
            after[at] ^= flip;
        bool untouched = memcmp(after, before, size) == 0;
        /* Put the byte back: the buffer opens to what it held. */
        if (in_tag)
            rec->tags[at] ^= flip;
        else if (be->ops->write(be, blk->addr + at, &before[at], 1) != 0)
            die("restoring a byte", GMS_E_BACKEND);
        bool opens = gms_unseal(c, b) == GMS_OK && gms_read(c, b, 0, after, size) == GMS_OK &&
                     memcmp(after, pt, size) == 0;
        bool ok = named && untouched && opens;
        if (!ok)
            miss(t, "%zu-byte buffer, %s byte %llu of chunk %llu: unseal returned %d%s%s%s", size,
                 in_tag ? "tag" : "ciphertext", (unsigned long long)at,
                 (unsigned long long)chunk, rc, named ? "" : " (chunk not named)",
                 untouched ? "" : " (memory touched)", opens ? "" : " (does not open after)");
        count(t, ok);
        if ((rc = gms_free(c, b)) != GMS_OK)
            die("gms_free", rc);
    }
    free(pt);
    free(before);
    free(after);
    gms_context_close(c);
    gms_runtime_close(rt);
}
