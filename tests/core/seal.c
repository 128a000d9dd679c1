/*
 * seal.c: sealed regions on the host backend (gms/seal.h,
 * docs/sealed.md): a seal and unseal give the bytes back; the sealed bytes
 * are AES-256-GCM as OpenSSL makes it with the documented IVs; a changed
 * byte or tag is GMS_E_CORRUPTION naming the first bad chunk, with nothing
 * touched; a sealed buffer refuses every access; wrong inputs and key
 * provider failures change nothing; the key rotates at its limit; and
 * gms_digest is what OpenSSL computes from its definition.
 */
#include "test.h"
#include "core/internal.h"
#include "core/seal.h"
#include "gms/seal.h"
#include "gms/testing.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint8_t kek_acme[32];
static int provider_calls, provider_refuse;

static int provider(void *user, const char *tenant, uint8_t key[32])
{
    (void)user;
    provider_calls++;
    if (provider_refuse || strcmp(tenant, "acme") != 0)
        return -42;
    memcpy(key, kek_acme, 32);
    return 0;
}

static gms_context *ctx_open(gms_runtime *rt, const char *tenant)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = "u";
    gms_context *c = NULL;
    CHECK_OK(gms_context_open(&c, rt, &d));
    return c;
}

static gms_seal_rec *rec_of(gms_runtime *rt, gms_buf h)
{
    gms_pool *p = NULL;
    gms_slot *s = gms__slot_lookup(rt, h, &p);
    return s ? s->block->seal : NULL;
}

/* Opens chunk i of a sealed copy with OpenSSL: 1 when the tag holds. */
static int openssl_open(const uint8_t *dk, uint32_t region, uint32_t counter, uint32_t i,
                        const uint8_t *ct, size_t len, const uint8_t *tag, uint8_t *pt)
{
    uint8_t iv[12];
    for (int k = 0; k < 4; k++) {
        iv[k] = (uint8_t)(region >> (24 - 8 * k));
        iv[4 + k] = (uint8_t)(counter >> (24 - 8 * k));
        iv[8 + k] = (uint8_t)(i >> (24 - 8 * k));
    }
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, dk, iv) == 1 &&
                    EVP_DecryptUpdate(c, pt, &n, ct, (int)len) == 1 &&
                    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) == 1 &&
                    EVP_DecryptFinal_ex(c, pt + n, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* The data key, unwrapped as gms does (RFC 3394 under the KEK). */
static void unwrap(const uint8_t *kek, const uint8_t *wrapped, uint8_t *dk)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    int n = 0, m = 0;
    EVP_DecryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL);
    EVP_DecryptUpdate(c, dk, &n, wrapped, 40);
    EVP_DecryptFinal_ex(c, dk + n, &m);
    EVP_CIPHER_CTX_free(c);
}

/* docs/sealed.md, "Digests", recomputed with OpenSSL. */
static void digest_ref(const uint8_t *kek, const uint8_t *p, uint64_t len, uint8_t out[32])
{
    uint8_t kd[32];
    unsigned n = 32;
    HMAC(EVP_sha256(), kek, 32, (const uint8_t *)"gms-digest-key-v1", 17, kd, &n);
    uint64_t leaves = (len + GMS_DIGEST_LEAF - 1) / GMS_DIGEST_LEAF;
    size_t msg_len = 13 + 8 + leaves * 32;
    uint8_t *msg = malloc(msg_len);
    memcpy(msg, "gms-digest-v1", 13);
    for (int i = 0; i < 8; i++)
        msg[13 + i] = (uint8_t)(len >> (8 * i));
    for (uint64_t i = 0; i < leaves; i++) {
        uint64_t off = i * GMS_DIGEST_LEAF, l = len - off < GMS_DIGEST_LEAF ? len - off : GMS_DIGEST_LEAF;
        HMAC(EVP_sha256(), kd, 32, p + off, l, msg + 21 + 32 * i, &n);
    }
    HMAC(EVP_sha256(), kd, 32, msg, msg_len, out, &n);
    free(msg);
}

int main(void)
{
    RAND_bytes(kek_acme, 32);
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();
    gms_context *a = ctx_open(rt, "acme"), *b = ctx_open(rt, "globex");
    const size_t size = 3 * GMS_SEAL_CHUNK + 1000; /* four chunks, the last short */
    uint8_t *data = malloc(size), *back = malloc(size), *ct = malloc(size);
    RAND_bytes(data, (int)size);
    gms_buf x;
    CHECK_OK(gms_alloc(a, size, 0, &x));
    CHECK_OK(gms_write(a, x, 0, data, size));
    void *ptr = NULL;
    CHECK_OK(gms_buf_ptr(a, x, &ptr));
    uint8_t *mem = ptr;

    /* No key: refused, nothing changed. */
    CHECK_RC(gms_seal(a, x), GMS_E_ACCESS_DENIED);
    CHECK(strstr(gms_error_last(), "no key-encryption key for tenant 'acme'") != NULL);
    CHECK(memcmp(mem, data, size) == 0 && rec_of(rt, x) == NULL);
    /* A provider that refuses: refused, its value in the message. */
    CHECK_OK(gms_on_key_request(rt, provider, NULL));
    provider_refuse = 1;
    CHECK_RC(gms_seal(a, x), GMS_E_ACCESS_DENIED);
    CHECK(strstr(gms_error_last(), "returned -42") != NULL);
    CHECK(memcmp(mem, data, size) == 0 && rec_of(rt, x) == NULL);
    provider_refuse = 0;

    /* Wrong inputs. */
    CHECK_RC(gms_seal(NULL, x), GMS_E_INVALID_ARG);
    CHECK_RC(gms_seal(a, GMS_BUF_NULL), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_seal(b, x), GMS_E_ACCESS_DENIED); /* globex: no key, then not its buffer */
    CHECK_RC(gms_unseal(a, x), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "not sealed") != NULL);
    CHECK_RC(gms_is_sealed(a, x, NULL), GMS_E_INVALID_ARG);
    uint8_t dg[32];
    CHECK_RC(gms_digest(a, x, 0, size + 1, dg), GMS_E_OUT_OF_BOUNDS);
    CHECK_RC(gms_digest(a, x, 0, 1, NULL), GMS_E_INVALID_ARG);
    CHECK(memcmp(mem, data, size) == 0);

    /* Seal: the bytes are OpenSSL's AES-256-GCM with the documented IVs. */
    int sealed = -1;
    CHECK_OK(gms_seal(a, x));
    CHECK_OK(gms_is_sealed(a, x, &sealed));
    CHECK(sealed == 1);
    gms_seal_rec *rec = rec_of(rt, x);
    CHECK(rec && rec->sealed && rec->counter == 1 && rec->region >= 1);
    CHECK(memcmp(mem, data, size) != 0);
    uint8_t dk[32];
    unwrap(kek_acme, rec->wrapped, dk);
    int all = 1;
    for (uint32_t i = 0; i < 4; i++) {
        size_t off = (size_t)i * GMS_SEAL_CHUNK, len = i < 3 ? GMS_SEAL_CHUNK : 1000;
        all &= openssl_open(dk, rec->region, 1, i, mem + off, len, rec->tags + 16 * i, back + off);
    }
    CHECK(all && memcmp(back, data, size) == 0);
    memcpy(ct, mem, size);

    /* Sealed: every access refused, nothing changed. */
    CHECK_RC(gms_read(a, x, 0, back, 16), GMS_E_ACCESS_DENIED);
    CHECK(strstr(gms_error_last(), "is sealed") != NULL);
    CHECK_RC(gms_write(a, x, 0, data, 16), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_fill(a, x, 0, 0, 16), GMS_E_ACCESS_DENIED);
    gms_buf y;
    CHECK_OK(gms_alloc(a, 64, 0, &y));
    CHECK_RC(gms_copy(a, y, 0, x, 0, 16), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_copy(a, x, 0, y, 0, 16), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_buf_ptr(a, x, &ptr), GMS_E_ACCESS_DENIED);
    CHECK(ptr == NULL);
    DLManagedTensorVersioned *t = NULL;
    CHECK_RC(gms_dlpack_export(a, x, NULL, &t), GMS_E_ACCESS_DENIED);
    CHECK(t == NULL);
    gms_share_grant grant = {NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = &grant;
    sd.ngrants = 1;
    gms_share_id sid;
    CHECK_RC(gms_share(a, x, &sd, &sid), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_digest(a, x, 0, 16, dg), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_seal(a, x), GMS_E_INVALID_ARG);
    gms_buf_info info;
    CHECK_OK(gms_buf_info_get(a, x, &info));
    CHECK(info.device_ptr == 0);
    CHECK(memcmp(mem, ct, size) == 0);

    /* Tampering: a byte of chunk 2, then a tag of chunk 1: the first bad
     * chunk named, nothing touched, still sealed. */
    mem[2 * GMS_SEAL_CHUNK + 77] ^= 0x01;
    memcpy(back, mem, size);
    CHECK_RC(gms_unseal(a, x), GMS_E_CORRUPTION);
    CHECK(strstr(gms_error_last(), "chunk 2 (bytes [131072, 196608))") != NULL);
    CHECK(memcmp(mem, back, size) == 0);
    rec->tags[16 + 5] ^= 0x80;
    CHECK_RC(gms_unseal(a, x), GMS_E_CORRUPTION);
    CHECK(strstr(gms_error_last(), "chunk 1 ") != NULL);
    CHECK(memcmp(mem, back, size) == 0);
    CHECK_OK(gms_is_sealed(a, x, &sealed));
    CHECK(sealed == 1);
    rec->tags[16 + 5] ^= 0x80;
    mem[2 * GMS_SEAL_CHUNK + 77] ^= 0x01;
    /* The last, short chunk's last byte. */
    mem[size - 1] ^= 0xff;
    CHECK_RC(gms_unseal(a, x), GMS_E_CORRUPTION);
    CHECK(strstr(gms_error_last(), "chunk 3 (bytes [196608, 197608))") != NULL);
    mem[size - 1] ^= 0xff;

    /* Another KEK does not open it. */
    uint8_t saved[32];
    memcpy(saved, kek_acme, 32);
    kek_acme[0] ^= 1;
    CHECK_RC(gms_unseal(a, x), GMS_E_ACCESS_DENIED);
    CHECK(strstr(gms_error_last(), "does not unwrap") != NULL);
    memcpy(kek_acme, saved, 32);
    CHECK(memcmp(mem, ct, size) == 0);

    /* Unseal gives the bytes back; a second seal uses a new IV. */
    CHECK_OK(gms_unseal(a, x));
    CHECK_OK(gms_read(a, x, 0, back, size));
    CHECK(memcmp(back, data, size) == 0);
    CHECK_OK(gms_seal(a, x));
    CHECK(rec->counter == 2 && rec->generation == 0);
    CHECK(memcmp(mem, ct, size) != 0); /* the same key and bytes, another IV */
    CHECK_OK(gms_unseal(a, x));

    /* The key rotates at its limit: a new wrapped key, the counter anew. */
    CHECK_OK(gms_testing_seal_key_limit(3));
    uint8_t old_wrapped[40];
    memcpy(old_wrapped, rec->wrapped, 40);
    CHECK_OK(gms_seal(a, x)); /* seal 3 of the key: at the limit */
    CHECK(rec->counter == 3 && memcmp(rec->wrapped, old_wrapped, 40) == 0);
    CHECK_OK(gms_unseal(a, x));
    CHECK_OK(gms_seal(a, x)); /* past it: a new key */
    CHECK(rec->counter == 1 && rec->generation == 1 && memcmp(rec->wrapped, old_wrapped, 40) != 0);
    CHECK_OK(gms_unseal(a, x));
    CHECK_OK(gms_testing_seal_key_limit(0));
    CHECK_OK(gms_read(a, x, 0, back, size));
    CHECK(memcmp(back, data, size) == 0);

    /* A buffer with another handle does not seal. */
    CHECK_OK(gms_share(a, y, &sd, &sid));
    CHECK_RC(gms_seal(a, y), GMS_E_BUSY);
    CHECK_OK(gms_revoke(a, sid));

    /* A key file takes the place of the provider for its tenant. */
    char path[] = "/tmp/gms-seal-key-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "00112233", 8) == 8);
    CHECK_RC(gms_seal_key_file(rt, "globex", path), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "32 raw bytes or 64 hex digits") != NULL);
    CHECK_RC(gms_seal_key_file(rt, "globex", "/nonexistent/key"), GMS_E_INVALID_ARG);
    CHECK_RC(gms_seal_key_file(rt, NULL, path), GMS_E_INVALID_ARG);
    CHECK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0);
    const char *hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    CHECK(write(fd, hex, 65) == 65);
    close(fd);
    CHECK_OK(gms_seal_key_file(rt, "globex", path));
    unlink(path);
    gms_buf z;
    CHECK_OK(gms_alloc(b, 5000, 0, &z));
    CHECK_OK(gms_write(b, z, 0, data, 5000));
    int calls = provider_calls;
    CHECK_OK(gms_seal(b, z));
    CHECK_OK(gms_unseal(b, z));
    CHECK(provider_calls == calls);
    CHECK_OK(gms_read(b, z, 0, back, 5000));
    CHECK(memcmp(back, data, 5000) == 0);

    /* Digests: OpenSSL recomputes them from the definition. */
    uint8_t want[32];
    uint64_t cases[][2] = {{0, size}, {5, 0}, {7, GMS_DIGEST_LEAF}, {100, 3 * GMS_DIGEST_LEAF + 1}};
    for (int i = 0; i < 4; i++) {
        CHECK_OK(gms_digest(a, x, cases[i][0], cases[i][1], dg));
        digest_ref(kek_acme, data + cases[i][0], cases[i][1], want);
        CHECK(memcmp(dg, want, 32) == 0);
    }
    uint8_t kglobex[32];
    for (int i = 0; i < 32; i++)
        kglobex[i] = (uint8_t)i;
    CHECK_OK(gms_digest(b, z, 0, 5000, dg));
    digest_ref(kglobex, data, 5000, want);
    CHECK(memcmp(dg, want, 32) == 0);
    /* A changed byte changes it. */
    CHECK_OK(gms_fill(a, x, 9, 0x5a ^ data[9], 1));
    CHECK_OK(gms_digest(a, x, 0, size, dg));
    digest_ref(kek_acme, data, size, want);
    CHECK(memcmp(dg, want, 32) != 0);

    /* Freeing a sealed buffer works (crypto-erase; tests/audit/seal.c
     * reads the record). */
    CHECK_OK(gms_seal(a, x));
    CHECK_OK(gms_free(a, x));
    CHECK_OK(gms_free(a, y));
    CHECK_OK(gms_free(b, z));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(a);
    gms_context_close(b);
    gms_runtime_close(rt);

    /* The failing backend: every fallible step of seal and unseal fails
     * once; each failure leaves the bytes as they were. */
    int sweep_ok = 1, failed_once = 0;
    for (uint64_t nth = 1; nth < 200; nth++) {
        gms_testing_options to = {.fail_nth_call = nth};
        gms_runtime *fr = NULL;
        if (gms_testing_runtime_open(&fr, &o, &to) != GMS_OK)
            continue;
        gms_context_desc d = GMS_CONTEXT_DESC_INIT;
        d.tenant = "acme";
        d.user = "u";
        gms_context *c = NULL;
        gms_buf w = GMS_BUF_NULL;
        if (gms_context_open(&c, fr, &d) == GMS_OK) {
            gms_on_key_request(fr, provider, NULL);
            if (gms_alloc(c, 70000, 0, &w) == GMS_OK && gms_write(c, w, 0, data, 70000) == GMS_OK) {
                int rc = gms_seal(c, w), s = -1;
                if (gms_is_sealed(c, w, &s) == GMS_OK && rc != GMS_OK && s != 0)
                    sweep_ok = 0;
                if (rc == GMS_OK) {
                    rc = gms_unseal(c, w);
                    if (gms_is_sealed(c, w, &s) == GMS_OK && (rc == GMS_OK) != (s == 0))
                        sweep_ok = 0;
                    if (rc != GMS_OK)
                        failed_once = 1;
                } else {
                    failed_once = 1;
                }
                if (gms_is_sealed(c, w, &s) == GMS_OK && s == 0 &&
                    gms_read(c, w, 0, back, 70000) == GMS_OK && memcmp(back, data, 70000) != 0)
                    sweep_ok = 0;
            }
        }
        if (w != GMS_BUF_NULL)
            gms_free(c, w);
        gms_context_close(c);
        gms_runtime_close(fr);
    }
    CHECK(sweep_ok && failed_once);

    free(data);
    free(back);
    free(ct);
    return test_done();
}
