/*
 * seal.c: sealed regions (gms/seal.h, docs/sealed.md): gms_seal,
 * gms_unseal, gms_digest, the tenants' key-encryption keys (KEKs) and the
 * crypto-erase of a dying block's key.
 *
 * Keys on the host live only in locked pages (mlock, left out of core
 * dumps) and are zeroised when done with: a call fetches its tenant's KEK
 * into a page of its own before it takes any lock (a provider is the
 * program's code), unwraps or makes the data key there, hands the backend
 * a pointer to it, and wipes the page at the end. A block keeps only its
 * data key wrapped under the KEK. The backend is called under the pool's
 * lock, like every other op on the block's memory; the work is
 * proportional to the buffer (a GPU: milliseconds a GiB).
 */
#include "core/internal.h"
#include "core/seal.h"
#include "gms/testing.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* A tenant's KEK from a key file (rt->lock). */
typedef struct gms_kek {
    struct gms_kek *next;
    char tenant[GMS_NAME_MAX + 1];
    uint8_t *key; /* 32 bytes in a locked page of its own */
} gms_kek;

/* What one call holds in its locked page. */
typedef struct seal_secrets {
    uint8_t kek[32];
    uint8_t dk[32];     /* the data key */
    uint8_t digest[32]; /* the tenant's digest key */
    uint8_t pad[32];
} seal_secrets;

#define LOCKED_BYTES 4096u

/* The testing knob: seals per data key (0: GMS_SEAL_SEALS_PER_KEY). */
static uint32_t _Atomic seals_per_key_testing;

int gms_testing_seal_key_limit(uint32_t seals)
{
    atomic_store(&seals_per_key_testing, seals);
    return GMS_OK;
}

static uint32_t seals_per_key(void)
{
    uint32_t n = atomic_load(&seals_per_key_testing);
    return n ? n : GMS_SEAL_SEALS_PER_KEY;
}

static void *locked_alloc(const char *op)
{
    void *p = mmap(NULL, LOCKED_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gms__fail(GMS_E_NO_MEMORY, "%s: no host memory for a locked key page", op);
        return NULL;
    }
    if (mlock(p, LOCKED_BYTES) != 0) {
        munmap(p, LOCKED_BYTES);
        gms__fail(GMS_E_NO_MEMORY,
                  "%s: cannot lock a page for keys (mlock: %s; raise RLIMIT_MEMLOCK)", op,
                  strerror(errno));
        return NULL;
    }
    madvise(p, LOCKED_BYTES, MADV_DONTDUMP);
    return p;
}

static void locked_free(void *p)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, LOCKED_BYTES);
    munlock(p, LOCKED_BYTES);
    munmap(p, LOCKED_BYTES);
}

/* ---- tenants' KEKs ---- */

int gms_on_key_request(gms_runtime *rt, gms_key_fn fn, void *user)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_on_key_request: runtime is NULL");
    pthread_mutex_lock(&rt->lock);
    rt->seal.provider = fn;
    rt->seal.provider_user = fn ? user : NULL;
    pthread_mutex_unlock(&rt->lock);
    return GMS_OK;
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

/* 32 raw bytes, or 64 hex digits and an optional newline. */
static int key_parse(const uint8_t *buf, size_t n, uint8_t key[32])
{
    if (n == 32) {
        memcpy(key, buf, 32);
        return 0;
    }
    if (n == 65 && buf[64] == '\n')
        n = 64;
    if (n != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int gms_seal_key_file(gms_runtime *rt, const char *tenant, const char *path)
{
    const char *op = "gms_seal_key_file";
    if (!rt || !tenant || !path)
        return gms__fail(GMS_E_INVALID_ARG, "%s: %s is NULL", op,
                         !rt ? "runtime" : !tenant ? "tenant" : "path");
    if (!tenant[0] || strlen(tenant) > GMS_NAME_MAX)
        return gms__fail(GMS_E_INVALID_ARG, "%s: tenant name must have 1 to %d bytes", op,
                         GMS_NAME_MAX);
    uint8_t *page = locked_alloc(op);
    if (!page)
        return GMS_E_NO_MEMORY;
    FILE *f = fopen(path, "rb");
    if (!f) {
        locked_free(page);
        return gms__fail(GMS_E_INVALID_ARG, "%s: cannot open '%s': %s", op, path, strerror(errno));
    }
    setvbuf(f, NULL, _IONBF, 0); /* no copy of the key in stdio's buffer */
    uint8_t *raw = page + 64;    /* up to 66 bytes read, in the locked page */
    size_t n = fread(raw, 1, 66, f);
    fclose(f);
    if (key_parse(raw, n, page) != 0) {
        locked_free(page);
        return gms__fail(GMS_E_INVALID_ARG,
                         "%s: '%s' holds %zu%s bytes: a key file is 32 raw bytes or 64 hex digits", op,
                         path, n, n == 66 ? " or more" : "");
    }
    OPENSSL_cleanse(raw, 66);
    gms_kek *k = calloc(1, sizeof *k);
    if (!k) {
        locked_free(page);
        return gms__fail(GMS_E_NO_MEMORY, "%s: out of host memory", op);
    }
    snprintf(k->tenant, sizeof k->tenant, "%s", tenant);
    k->key = page;
    uint8_t *old = NULL;
    pthread_mutex_lock(&rt->lock);
    for (gms_kek **pp = &rt->seal.keks; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->tenant, tenant) == 0) {
            gms_kek *o = *pp;
            *pp = o->next;
            old = o->key;
            free(o);
            break;
        }
    k->next = rt->seal.keks;
    rt->seal.keks = k;
    pthread_mutex_unlock(&rt->lock);
    locked_free(old);
    return GMS_OK;
}

void gms__seal_runtime_close(gms_runtime *rt)
{
    for (gms_kek *k = rt->seal.keks, *n; k; k = n) {
        n = k->next;
        locked_free(k->key);
        free(k);
    }
    rt->seal.keks = NULL;
}

/* The tenant's KEK into kek, from its key file or the provider; no gms
 * lock held (the provider is the program's code). */
static int kek_get(gms_runtime *rt, const char *tenant, const char *op, uint8_t kek[32])
{
    pthread_mutex_lock(&rt->lock);
    for (gms_kek *k = rt->seal.keks; k; k = k->next)
        if (strcmp(k->tenant, tenant) == 0) {
            memcpy(kek, k->key, 32);
            pthread_mutex_unlock(&rt->lock);
            return GMS_OK;
        }
    gms_key_fn fn = rt->seal.provider;
    void *user = rt->seal.provider_user;
    pthread_mutex_unlock(&rt->lock);
    if (!fn)
        return gms__fail(GMS_E_ACCESS_DENIED,
                         "%s: no key-encryption key for tenant '%s' (gms_seal_key_file or gms_on_key_request)",
                         op, tenant);
    int rc = fn(user, tenant, kek);
    if (rc != 0) {
        OPENSSL_cleanse(kek, 32);
        return gms__fail(GMS_E_ACCESS_DENIED,
                         "%s: the key provider refused tenant '%s' (it returned %d)", op, tenant, rc);
    }
    return GMS_OK;
}

/* AES key wrap (RFC 3394) of a 32-byte key: 40 bytes out; unwrap checks
 * the wrap's integrity (a wrong KEK fails). */
static int key_wrap(const uint8_t kek[32], const uint8_t *in, uint8_t *out, int wrap)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c)
        return -1;
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    int n = 0, m = 0, ok = EVP_CipherInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL, wrap) == 1 &&
                          EVP_CipherUpdate(c, out, &n, in, wrap ? 32 : 40) == 1 &&
                          EVP_CipherFinal_ex(c, out + n, &m) == 1 && n + m == (wrap ? 40 : 32);
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

/* ---- seal and unseal ---- */

static uint64_t chunks_of(uint64_t len)
{
    return (len + GMS_SEAL_CHUNK - 1) / GMS_SEAL_CHUNK;
}

/* What sealing needs of the holder and the block (pool->lock held). */
static int sealable(gms_context *ctx, const gms_held *h, gms_buf buf, const char *op)
{
    const gms_block *b = h->block;
    if (b->seal && b->seal->sealed)
        return gms__fail(GMS_E_INVALID_ARG, "%s: buffer 0x%016llx is sealed already", op,
                         (unsigned long long)buf);
    if (h->pool->tenant != ctx->tenant || h->slot->mode != GMS_ACCESS_READ_WRITE)
        return gms__fail(GMS_E_READ_ONLY,
                         "%s: handle 0x%016llx may not write the buffer: only its tenant's writer seals it",
                         op, (unsigned long long)buf);
    if (b->import)
        return gms__fail(GMS_E_UNSUPPORTED,
                         "%s: buffer 0x%016llx is an imported tensor: its memory is its framework's", op,
                         (unsigned long long)buf);
    if (b->share)
        return gms__fail(GMS_E_BUSY, "%s: buffer 0x%016llx is shared as 0x%016llx: revoke the share first",
                         op, (unsigned long long)buf, (unsigned long long)b->share->id);
    if (b->holders > 1)
        return gms__fail(GMS_E_BUSY,
                         "%s: buffer 0x%016llx has %u handles (acquired or exported): only a buffer with one seals",
                         op, (unsigned long long)buf, b->holders);
    if (!h->pool->rt->backend->ops->seal)
        return gms__fail(GMS_E_UNSUPPORTED, "%s: the %s backend cannot seal", op,
                         h->pool->rt->backend_name);
    return GMS_OK;
}

static void audit(gms_context *ctx, gms_audit_op op, gms_buf buf, uint64_t size, int rc,
                  const char *detail)
{
    gms__audit_ctx(ctx, op, buf, size, rc, rc ? gms_error_last() : detail);
}

int gms_seal(gms_context *ctx, gms_buf buf)
{
    const char *op = "gms_seal";
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", op);
    seal_secrets *sec = locked_alloc(op);
    if (!sec)
        return GMS_E_NO_MEMORY;
    char detail[160] = "";
    gms_held h;
    int rc = kek_get(ctx->rt, ctx->tenant->name, op, sec->kek);
    if (rc || (rc = gms__buf_lock(ctx, buf, op, false, &h)) != GMS_OK)
        goto out;
    gms_block *b = h.block;
    uint64_t len = b->req_size;
    uint8_t *tags = NULL;
    gms_seal_rec *rec = b->seal;
    bool fresh = rec == NULL;
    if ((rc = sealable(ctx, &h, buf, op)) != GMS_OK)
        goto unlock;
    if (chunks_of(len) > UINT32_MAX) {
        rc = gms__fail(GMS_E_INVALID_ARG, "%s: %llu bytes is more than 2^32 chunks", op,
                       (unsigned long long)len);
        goto unlock;
    }
    tags = gms__alloc_meta(ctx->rt, chunks_of(len) * GMS_SEAL_TAG_BYTES);
    if (fresh)
        rec = gms__alloc_meta(ctx->rt, sizeof *rec);
    if (!tags || !rec) {
        rc = gms__fail(GMS_E_NO_MEMORY, "%s: out of host memory for %llu tags", op,
                       (unsigned long long)chunks_of(len));
        goto unlock;
    }
    bool rotate = !fresh && rec->counter >= seals_per_key();
    uint8_t wrapped[40];
    if (fresh || rotate) {
        if (RAND_priv_bytes(sec->dk, 32) != 1 || key_wrap(sec->kek, sec->dk, wrapped, 1) != 0) {
            rc = gms__fail(GMS_E_BACKEND, "%s: OpenSSL could not make or wrap a data key", op);
            goto unlock;
        }
    } else if (key_wrap(sec->kek, rec->wrapped, sec->dk, 0) != 0) {
        rc = gms__fail(GMS_E_ACCESS_DENIED,
                       "%s: tenant '%s''s key-encryption key does not unwrap the data key of buffer 0x%016llx (was its key changed?)",
                       op, ctx->tenant->name, (unsigned long long)buf);
        goto unlock;
    }
    int err = gms__after_pending(ctx->rt, b);
    if (err) {
        rc = gms__backend_fail(err, "ordering after the buffer's stream", len);
        goto unlock;
    }
    /* From here the record changes: the IV is spent whatever the backend
     * does, so no later seal may use it again. */
    if (fresh) {
        memset(rec, 0, sizeof *rec);
        rec->region = atomic_fetch_add(&ctx->rt->seal.next_region, 1) + 1;
        b->seal = rec;
    }
    if (fresh || rotate) {
        memcpy(rec->wrapped, wrapped, sizeof wrapped);
        rec->generation += rotate;
        rec->counter = 0;
    }
    rec->counter++;
    gms_seal_job job = {.addr = b->addr, .len = len, .key = sec->dk, .region = rec->region,
                        .counter = rec->counter, .tags = tags};
    gms_backend *be = ctx->rt->backend;
    if ((err = be->ops->seal(be, &job)) != 0) {
        rc = gms__backend_fail(err, "sealing", len);
        goto unlock;
    }
    rec->sealed = true;
    rec->tags = tags;
    rec->len = len;
    rec->seals++;
    tags = NULL;
    snprintf(detail, sizeof detail, "region %u, key %u, seal %u of that key, %llu chunks%s",
             rec->region, rec->generation, rec->counter, (unsigned long long)chunks_of(len),
             rotate ? ", new data key" : "");
unlock:
    if (fresh && rec && b->seal != rec)
        free(rec);
    free(tags);
    gms__pool_unlock(h.pool);
    audit(ctx, GMS_AUDIT_SEAL, buf, len, rc, detail);
out:
    locked_free(sec);
    return rc;
}

int gms_unseal(gms_context *ctx, gms_buf buf)
{
    const char *op = "gms_unseal";
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", op);
    seal_secrets *sec = locked_alloc(op);
    if (!sec)
        return GMS_E_NO_MEMORY;
    gms_held h;
    int rc = kek_get(ctx->rt, ctx->tenant->name, op, sec->kek);
    if (rc || (rc = gms__buf_lock(ctx, buf, op, false, &h)) != GMS_OK)
        goto out;
    gms_block *b = h.block;
    gms_seal_rec *rec = b->seal;
    uint64_t len = b->req_size;
    if (!rec || !rec->sealed) {
        rc = gms__fail(GMS_E_INVALID_ARG, "%s: buffer 0x%016llx is not sealed", op,
                       (unsigned long long)buf);
        goto unlock;
    }
    if (h.pool->tenant != ctx->tenant || h.slot->mode != GMS_ACCESS_READ_WRITE) {
        rc = gms__fail(GMS_E_READ_ONLY, "%s: handle 0x%016llx may not write the buffer", op,
                       (unsigned long long)buf);
        goto unlock;
    }
    if (key_wrap(sec->kek, rec->wrapped, sec->dk, 0) != 0) {
        rc = gms__fail(GMS_E_ACCESS_DENIED,
                       "%s: tenant '%s''s key-encryption key does not unwrap the data key of buffer 0x%016llx (was its key changed?)",
                       op, ctx->tenant->name, (unsigned long long)buf);
        goto unlock;
    }
    int err = gms__after_pending(ctx->rt, b);
    gms_seal_job job = {.addr = b->addr, .len = rec->len, .key = sec->dk, .region = rec->region,
                        .counter = rec->counter, .tags = rec->tags, .bad = GMS_SEAL_NONE_BAD};
    gms_backend *be = ctx->rt->backend;
    if (!err)
        err = be->ops->unseal(be, &job);
    if (err) {
        rc = gms__backend_fail(err, "unsealing", len);
        goto unlock;
    }
    if (job.bad != GMS_SEAL_NONE_BAD) {
        uint64_t lo = job.bad * GMS_SEAL_CHUNK, hi = lo + GMS_SEAL_CHUNK;
        rc = gms__fail(GMS_E_CORRUPTION,
                       "%s: buffer 0x%016llx: chunk %llu (bytes [%llu, %llu)) fails its tag: its bytes or its tag changed since gms_seal; nothing was decrypted and it stays sealed",
                       op, (unsigned long long)buf, (unsigned long long)job.bad,
                       (unsigned long long)lo, (unsigned long long)(hi < len ? hi : len));
        goto unlock;
    }
    rec->sealed = false;
    OPENSSL_cleanse(rec->tags, chunks_of(rec->len) * GMS_SEAL_TAG_BYTES);
    free(rec->tags);
    rec->tags = NULL;
unlock:
    gms__pool_unlock(h.pool);
    audit(ctx, rc == GMS_E_CORRUPTION ? GMS_AUDIT_VIOLATION : GMS_AUDIT_UNSEAL, buf, len, rc,
          NULL);
out:
    locked_free(sec);
    return rc;
}

int gms_is_sealed(gms_context *ctx, gms_buf buf, int *out)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "gms_is_sealed: out is NULL");
    *out = 0;
    gms_held h;
    int rc = gms__buf_lock(ctx, buf, "gms_is_sealed", false, &h);
    if (rc)
        return rc;
    *out = h.block->seal && h.block->seal->sealed;
    gms__pool_unlock(h.pool);
    return GMS_OK;
}

void gms__seal_erase(gms_pool *p, gms_block *b)
{
    gms_seal_rec *rec = b->seal;
    char detail[128];
    snprintf(detail, sizeof detail,
             "region %u: data key destroyed (%u keys, %llu seals)%s", rec->region,
             rec->generation + 1, (unsigned long long)rec->seals,
             rec->sealed ? "; its ciphertext is unrecoverable" : "");
    if (rec->tags) {
        OPENSSL_cleanse(rec->tags, chunks_of(rec->len) * GMS_SEAL_TAG_BYTES);
        free(rec->tags);
    }
    OPENSSL_cleanse(rec, sizeof *rec);
    free(rec);
    b->seal = NULL;
    if (p->rt->audit) {
        gms_audit_event e = {.op = GMS_AUDIT_CRYPTO_ERASE, .handle = b->handle,
                             .size = b->req_size, .tenant = p->tenant->name,
                             .level = (int)p->level, .language = (int)p->language,
                             .detail = detail};
        gms__audit_emit(p->rt->audit, &e);
    }
}

/* ---- digests ---- */

/* The construction is defined in docs/sealed.md, "Digests". */
static const char digest_key_label[] = "gms-digest-key-v1";
static const char digest_label[] = "gms-digest-v1";

int gms_digest(gms_context *ctx, gms_buf buf, uint64_t off, uint64_t len, uint8_t out[32])
{
    const char *op = "gms_digest";
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "%s: out is NULL", op);
    memset(out, 0, GMS_DIGEST_BYTES);
    if (!ctx)
        return gms__fail(GMS_E_INVALID_ARG, "%s: context is NULL", op);
    seal_secrets *sec = locked_alloc(op);
    if (!sec)
        return GMS_E_NO_MEMORY;
    gms_held h;
    uint8_t *leaves = NULL;
    unsigned n = 32;
    int rc = kek_get(ctx->rt, ctx->tenant->name, op, sec->kek);
    if (rc == GMS_OK &&
        !HMAC(EVP_sha256(), sec->kek, 32, (const uint8_t *)digest_key_label,
              sizeof digest_key_label - 1, sec->digest, &n))
        rc = gms__fail(GMS_E_BACKEND, "%s: OpenSSL's HMAC failed", op);
    if (rc || (rc = gms__buf_lock(ctx, buf, op, false, &h)) != GMS_OK)
        goto out;
    gms_block *b = h.block;
    gms_backend *be = ctx->rt->backend;
    uint64_t nleaves = (len + GMS_DIGEST_LEAF - 1) / GMS_DIGEST_LEAF;
    if (off > b->req_size || len > b->req_size - off) {
        rc = gms__fail(GMS_E_OUT_OF_BOUNDS,
                       "%s: range [%llu, %llu + %llu) is outside the buffer of %llu bytes", op,
                       (unsigned long long)off, (unsigned long long)off, (unsigned long long)len,
                       (unsigned long long)b->req_size);
    } else if ((rc = gms__seal_refuse(b, buf, op)) != GMS_OK) {
    } else if (!be->ops->digest_leaves) {
        rc = gms__fail(GMS_E_UNSUPPORTED, "%s: the %s backend cannot digest", op,
                       ctx->rt->backend_name);
    } else if (len && !(leaves = gms__alloc_meta(ctx->rt, nleaves * 32))) {
        rc = gms__fail(GMS_E_NO_MEMORY, "%s: out of host memory for %llu leaf digests", op,
                       (unsigned long long)nleaves);
    } else {
        int err = gms__after_pending(ctx->rt, b);
        if (!err && len)
            err = be->ops->digest_leaves(be, b->addr + off, len, sec->digest, leaves);
        if (err)
            rc = gms__backend_fail(err, "digest", len);
    }
    gms__pool_unlock(h.pool);
    if (rc) {
        if (rc == GMS_E_ACCESS_DENIED || rc == GMS_E_OUT_OF_BOUNDS)
            gms__audit_ctx(ctx, rc == GMS_E_ACCESS_DENIED ? GMS_AUDIT_ACCESS_DENIED
                                                          : GMS_AUDIT_VIOLATION,
                           buf, len, rc, gms_error_last());
        goto out;
    }
    /* The root: HMAC(Kd, label || LE64(len) || leaf digests). */
    uint8_t lenle[8];
    for (int i = 0; i < 8; i++)
        lenle[i] = (uint8_t)(len >> (8 * i));
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mc = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    if (!mc || EVP_MAC_init(mc, sec->digest, 32, params) != 1 ||
        EVP_MAC_update(mc, (const uint8_t *)digest_label, sizeof digest_label - 1) != 1 ||
        EVP_MAC_update(mc, lenle, 8) != 1 ||
        (len && EVP_MAC_update(mc, leaves, nleaves * 32) != 1) ||
        EVP_MAC_final(mc, out, &outl, GMS_DIGEST_BYTES) != 1)
        rc = gms__fail(GMS_E_BACKEND, "%s: OpenSSL's HMAC failed", op);
    EVP_MAC_CTX_free(mc);
    EVP_MAC_free(mac);
out:
    free(leaves);
    locked_free(sec);
    return rc;
}
