/*
 * seal.c: the host backend's sealed-region ops (backend.h, docs/sealed.md)
 * with OpenSSL's AES-256-GCM and HMAC-SHA-256 over host memory.
 *
 * unseal checks every tag before it writes a byte: a first pass decrypts
 * each chunk into a scratch chunk (locked, and wiped after, since it holds
 * plaintext) only to learn whether its tag holds; the second decrypts in
 * place. Cost: twice the AES-GCM work of a seal (about 5 GB/s a core).
 */
#include "backend/backend.h"
#include "kernels/seal_math.h"
#include "gms/seal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/mman.h>

static uint64_t chunks_of(uint64_t len)
{
    return (len + GMS_SEAL_CHUNK - 1) / GMS_SEAL_CHUNK;
}

/* One chunk through GCM: in to out (may be the same); tag is written
 * (enc) or checked (!enc). 0, EBADMSG for a tag that fails, EIO. */
static int chunk_crypt(EVP_CIPHER_CTX *c, const gms_seal_job *j, uint64_t i, const uint8_t *in,
                       uint8_t *out, int enc, uint8_t *tag)
{
    uint8_t iv[12];
    gms_seal_iv(j->region, j->counter, (uint32_t)i, iv);
    uint64_t off = i * GMS_SEAL_CHUNK;
    int len = (int)(j->len - off < GMS_SEAL_CHUNK ? j->len - off : GMS_SEAL_CHUNK);
    int n = 0;
    if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc) != 1 ||
        EVP_CipherUpdate(c, out, &n, in, len) != 1)
        return EIO;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
        return EIO;
    if (EVP_CipherFinal_ex(c, out + n, &n) != 1)
        return enc ? EIO : EBADMSG;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
        return EIO;
    return 0;
}

static EVP_CIPHER_CTX *gcm_open(const gms_seal_job *j, int enc)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, j->key, NULL, enc) == 1)
        return c;
    EVP_CIPHER_CTX_free(c); /* frees and wipes the key schedule */
    return NULL;
}

int gms__backend_host_seal(gms_backend *be, gms_seal_job *j)
{
    (void)be;
    EVP_CIPHER_CTX *c = gcm_open(j, 1);
    if (!c)
        return ENOMEM;
    uint8_t *p = (uint8_t *)(uintptr_t)j->addr;
    int err = 0;
    for (uint64_t i = 0, n = chunks_of(j->len); i < n && !err; i++)
        err = chunk_crypt(c, j, i, p + i * GMS_SEAL_CHUNK, p + i * GMS_SEAL_CHUNK, 1,
                          j->tags + 16 * i);
    EVP_CIPHER_CTX_free(c);
    return err;
}

int gms__backend_host_unseal(gms_backend *be, gms_seal_job *j)
{
    (void)be;
    j->bad = GMS_SEAL_NONE_BAD;
    uint8_t *p = (uint8_t *)(uintptr_t)j->addr;
    uint64_t n = chunks_of(j->len);
    uint8_t *scratch = mmap(NULL, GMS_SEAL_CHUNK, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scratch == MAP_FAILED)
        return ENOMEM;
    int err = mlock(scratch, GMS_SEAL_CHUNK) == 0 ? 0 : ENOMEM;
    madvise(scratch, GMS_SEAL_CHUNK, MADV_DONTDUMP);
    EVP_CIPHER_CTX *c = err ? NULL : gcm_open(j, 0);
    if (!c && !err)
        err = ENOMEM;
    for (uint64_t i = 0; i < n && !err; i++) {
        err = chunk_crypt(c, j, i, p + i * GMS_SEAL_CHUNK, scratch, 0, j->tags + 16 * i);
        if (err == EBADMSG) {
            j->bad = i;
            err = 0;
            break;
        }
    }
    OPENSSL_cleanse(scratch, GMS_SEAL_CHUNK);
    munlock(scratch, GMS_SEAL_CHUNK);
    munmap(scratch, GMS_SEAL_CHUNK);
    /* Every tag held: now in place (each tag checked again on the way). */
    for (uint64_t i = 0; i < n && !err && j->bad == GMS_SEAL_NONE_BAD; i++)
        err = chunk_crypt(c, j, i, p + i * GMS_SEAL_CHUNK, p + i * GMS_SEAL_CHUNK, 0,
                          j->tags + 16 * i);
    EVP_CIPHER_CTX_free(c);
    return err == EBADMSG ? EIO : err; /* changed between the passes */
}

int gms__backend_host_digest_leaves(gms_backend *be, uint64_t addr, uint64_t len,
                                   const uint8_t key[32], uint8_t *out)
{
    (void)be;
    const uint8_t *p = (const uint8_t *)(uintptr_t)addr;
    for (uint64_t off = 0; off < len; off += GMS_DIGEST_LEAF) {
        size_t n = len - off < GMS_DIGEST_LEAF ? (size_t)(len - off) : GMS_DIGEST_LEAF;
        unsigned out_len = 32;
        if (!HMAC(EVP_sha256(), key, 32, p + off, n, out + off / GMS_DIGEST_LEAF * 32, &out_len))
            return EIO;
    }
    return 0;
}
