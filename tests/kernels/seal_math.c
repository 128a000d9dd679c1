/*
 * seal_math.c: the sealed regions' arithmetic that the GPU kernels share
 * with the host (src/kernels/seal_math.h) gives what the standards say:
 * the AES-256 test cases of the GCM specification (McGrew and Viega,
 * cases 13 to 16, the ones with 96-bit IVs), SHA-256 and HMAC-SHA-256
 * known answers, and OpenSSL's results on random keys, IVs and lengths.
 */
#include "test.h"
#include "kernels/seal_math.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t sha_k[64] = {GMS_SHA256_K};

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

struct gcm_case {
    const char *key, *iv, *pt, *aad, *ct, *tag;
};

/* The GCM specification's AES-256 cases with 96-bit IVs. */
static const struct gcm_case cases[] = {
    {"0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "00000000000000000000000000000000", "",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void check_vectors(void)
{
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t key[32], iv[12], pt[64], aad[32], ct[64], tag[16], out[64], got[16];
        unhex(cases[c].key, key);
        unhex(cases[c].iv, iv);
        size_t n = unhex(cases[c].pt, pt), na = unhex(cases[c].aad, aad);
        unhex(cases[c].ct, ct);
        unhex(cases[c].tag, tag);
        gms_gcm_key *k = malloc(sizeof *k);
        gms_gcm_key_make(k, key);
        gms_gcm_crypt(k, iv, aad, na, pt, out, n, 1, got);
        CHECK(memcmp(out, ct, n) == 0);
        CHECK(memcmp(got, tag, 16) == 0);
        gms_gcm_crypt(k, iv, aad, na, ct, out, n, 0, got);
        CHECK(memcmp(out, pt, n) == 0);
        CHECK(memcmp(got, tag, 16) == 0);
        free(k);
    }
}

static void openssl_gcm(const uint8_t key[32], const uint8_t iv[12], const uint8_t *in,
                        uint8_t *out, int len, uint8_t tag[16])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0;
    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv);
    if (len)
        EVP_EncryptUpdate(c, out, &n, in, len);
    EVP_EncryptFinal_ex(c, out + n, &n);
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag);
    EVP_CIPHER_CTX_free(c);
}

/* Random keys, IVs and lengths (a 64 KiB chunk among them) against OpenSSL. */
static void check_random_gcm(void)
{
    enum { MAX = 65536 + 33 };
    uint8_t *in = malloc(MAX), *a = malloc(MAX), *b = malloc(MAX);
    gms_gcm_key *k = malloc(sizeof *k);
    int lens[] = {1, 15, 16, 17, 255, 4096, 65536, 65536 + 33};
    int same = 1;
    for (int t = 0; t < 40; t++) {
        uint8_t key[32], iv[12], ta[16], tb[16];
        RAND_bytes(key, 32);
        RAND_bytes(iv, 12);
        int len = t < 8 ? lens[t] : rand() % 3000;
        RAND_bytes(in, len ? len : 1);
        gms_gcm_key_make(k, key);
        gms_gcm_crypt(k, iv, NULL, 0, in, a, (uint64_t)len, 1, ta);
        openssl_gcm(key, iv, in, b, len, tb);
        same &= memcmp(a, b, (size_t)len) == 0 && memcmp(ta, tb, 16) == 0;
    }
    CHECK(same);
    free(k);
    free(in);
    free(a);
    free(b);
}

/* The table product, powers and the bitwise product agree. */
static void check_gf128(void)
{
    int same = 1;
    for (int t = 0; t < 200; t++) {
        gms_gf128 x, h;
        RAND_bytes((uint8_t *)&x, sizeof x);
        RAND_bytes((uint8_t *)&h, sizeof h);
        gms_gf128_table tab;
        gms_gf128_table_make(h, &tab);
        gms_gf128 p = gms_gf128_mul(x, h), q = gms_gf128_mul_table(x, &tab);
        same &= p.hi == q.hi && p.lo == q.lo;
        gms_gf128 h3 = gms_gf128_mul(gms_gf128_mul(h, h), h), p3 = gms_gf128_pow(h, 3);
        same &= h3.hi == p3.hi && h3.lo == p3.lo;
    }
    CHECK(same);
    gms_gf128 one = {0x8000000000000000ull, 0}, h = {0x0123456789abcdefull, 0xfedcba9876543210ull};
    gms_gf128 r = gms_gf128_mul(one, h);
    CHECK(r.hi == h.hi && r.lo == h.lo);
}

static void check_sha(void)
{
    uint8_t want[32], got[32];
    const uint32_t h0[8] = {GMS_SHA256_H0};
    uint32_t st[8];
    memcpy(st, h0, sizeof st);
    gms_sha256_update_final(st, 0, (const uint8_t *)"abc", 3, sha_k, got);
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
    CHECK(memcmp(got, want, 32) == 0);
    /* RFC 4231 test case 2. */
    uint32_t in[8], out[8];
    gms_hmac_sha256_midstates((const uint8_t *)"Jefe", 4, sha_k, in, out);
    const char *msg = "what do ya want for nothing?";
    gms_hmac_sha256(in, out, (const uint8_t *)msg, strlen(msg), sha_k, got);
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want);
    CHECK(memcmp(got, want, 32) == 0);
    /* Random keys and lengths (around the padding's edges) against OpenSSL. */
    uint8_t *buf = malloc(20000);
    int same = 1;
    for (int t = 0; t < 100; t++) {
        uint8_t key[32];
        RAND_bytes(key, 32);
        size_t len = t < 70 ? (size_t)t * 3 : (size_t)(rand() % 20000);
        RAND_bytes(buf, (int)len + 1);
        unsigned wl = 32;
        HMAC(EVP_sha256(), key, 32, buf, len, want, &wl);
        gms_hmac_sha256_midstates(key, 32, sha_k, in, out);
        gms_hmac_sha256(in, out, buf, len, sha_k, got);
        same &= memcmp(got, want, 32) == 0;
    }
    CHECK(same);
    free(buf);
}

/* seal.cu's split of one chunk's GHASH over 256 threads (blocks t,
 * t + 256, ...; Horner with H^256, then H^(n - j + 1) for the last block
 * j), run here thread by thread: the tag is the one gms_gcm_crypt gives,
 * for whole, short and one-block chunks. */
static void check_ghash_split(void)
{
    enum { T = 256, CHUNK = 65536 };
    uint8_t *in = malloc(CHUNK), *ct = malloc(CHUNK);
    gms_gcm_key *k = malloc(sizeof *k);
    unsigned lens[] = {CHUNK, CHUNK - 1, 16, 1, 4097, 17 * 16 + 3, T * 16, T * 16 + 1};
    int same = 1;
    for (size_t c = 0; c < sizeof lens / sizeof lens[0]; c++) {
        uint8_t key[32], iv[12], want[16];
        RAND_bytes(key, 32);
        RAND_bytes(in, CHUNK);
        gms_seal_iv(7, 3, (uint32_t)c, iv);
        gms_gcm_key_make(k, key);
        unsigned bytes = lens[c], nblk = (bytes + 15) / 16;
        gms_gcm_crypt(k, iv, NULL, 0, in, ct, bytes, 1, want);
        gms_gf128_table h256;
        gms_gf128_table_make(gms_gf128_pow(k->h, T), &h256);
        gms_gf128 y = {0, 0};
        for (unsigned t = 0; t < T; t++) {
            gms_gf128 acc = {0, 0};
            int last = -1;
            for (unsigned j = t; j < nblk; j += T) {
                uint8_t b[16] = {0};
                memcpy(b, ct + 16 * j, bytes - 16 * j < 16 ? bytes - 16 * j : 16);
                gms_gf128 x = gms_gf128_load(b);
                acc = gms_gf128_mul_table(acc, &h256);
                acc.hi ^= x.hi;
                acc.lo ^= x.lo;
                last = (int)j;
            }
            if (last < 0)
                continue;
            gms_gf128 pw = nblk == CHUNK / 16 ? gms_gf128_pow(k->h, T + 1 - t)
                                              : gms_gf128_pow(k->h, nblk - (unsigned)last + 1);
            acc = gms_gf128_mul(acc, pw);
            y.hi ^= acc.hi;
            y.lo ^= acc.lo;
        }
        gms_gf128 lens_block = {0, (uint64_t)bytes * 8}, l = gms_gf128_mul(lens_block, k->h);
        y.hi ^= l.hi;
        y.lo ^= l.lo;
        uint8_t j0[16], ej0[16], tag[16];
        memcpy(j0, iv, 12);
        gms_put_be32(j0 + 12, 1);
        gms_aes256_encrypt(k->rk, k->te, k->sbox, j0, ej0);
        gms_gf128_store(tag, y);
        for (int i = 0; i < 16; i++)
            tag[i] ^= ej0[i];
        same &= memcmp(tag, want, 16) == 0;
    }
    CHECK(same);
    free(in);
    free(ct);
    free(k);
}

int main(void)
{
    check_ghash_split();
    check_vectors();
    check_random_gcm();
    check_gf128();
    check_sha();
    return test_done();
}
