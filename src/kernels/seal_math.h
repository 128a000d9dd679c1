/*
 * seal_math.h: the arithmetic of sealed regions (docs/sealed.md), written
 * once for the host (plain C) and for the GPU kernels (src/kernels/seal.cu,
 * where GMS_HD makes every function __host__ __device__): AES-256 block
 * encryption, multiplication in GF(2^128) as GCM defines it, and SHA-256.
 *
 * Tables are not constants of this header: the caller builds them (the
 * AES S-box and its T-table from the field arithmetic, the GHASH nibble
 * tables from H) wherever they are cheap to read: static memory on the
 * host, shared memory in a kernel. Only SHA-256's round constants are a
 * literal (FIPS 180-4 section 4.2.2), passed in the same way.
 *
 * tests/kernels/seal_math.c checks all of it on the host against OpenSSL
 * and the AES-256 test vectors of the GCM specification, so that only the
 * kernels' launch geometry is left untested without a GPU.
 *
 * Conventions: AES state and round keys are big-endian 32-bit words (the
 * first byte of a block is the top byte of word 0). A GF(2^128) element is
 * two 64-bit halves, hi holding bytes 0..7 big-endian: the MSB of hi is the
 * coefficient of x^0 (GCM's reflected bit order).
 */
#ifndef GMS_KERNELS_SEAL_MATH_H
#define GMS_KERNELS_SEAL_MATH_H

#include <stdint.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GMS_HD __host__ __device__
#else
#define GMS_HD
#endif
#define GMS_HDI static inline GMS_HD
/* Unrolled on the GPU, where it turns indexed arrays into registers. */
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
#define GMS_UNROLL _Pragma("unroll")
#else
#define GMS_UNROLL
#endif

/* ---- bytes and words ---- */

GMS_HDI uint32_t gms_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

GMS_HDI void gms_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

GMS_HDI uint64_t gms_be64(const uint8_t *p)
{
    return (uint64_t)gms_be32(p) << 32 | gms_be32(p + 4);
}

GMS_HDI void gms_put_be64(uint8_t *p, uint64_t v)
{
    gms_put_be32(p, (uint32_t)(v >> 32));
    gms_put_be32(p + 4, (uint32_t)v);
}

GMS_HDI uint32_t gms_ror32(uint32_t v, unsigned n)
{
    return v >> n | v << (32 - n);
}

/* ---- AES-256 (FIPS 197) ---- */

/* Multiplication by x in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1. */
GMS_HDI uint8_t gms_gf8_xtime(uint8_t a)
{
    return (uint8_t)(a << 1 ^ (a & 0x80 ? 0x1b : 0));
}

GMS_HDI uint8_t gms_gf8_mul(uint8_t a, uint8_t b)
{
    uint8_t r = 0;
    for (int i = 0; i < 8; i++) {
        if (b & 1)
            r ^= a;
        a = gms_gf8_xtime(a);
        b >>= 1;
    }
    return r;
}

/* S-box entry x: the multiplicative inverse (x^254; 0 for 0) through the
 * affine map of FIPS 197 section 5.1.1. */
GMS_HDI uint8_t gms_aes_sbox_entry(uint8_t x)
{
    uint8_t inv = 1, sq = x;
    for (unsigned e = 254; e; e >>= 1) { /* square and multiply */
        if (e & 1)
            inv = gms_gf8_mul(inv, sq);
        sq = gms_gf8_mul(sq, sq);
    }
    if (x == 0)
        inv = 0;
    uint8_t s = inv;
    for (int i = 1; i <= 4; i++)
        s ^= (uint8_t)(inv << i | inv >> (8 - i));
    return (uint8_t)(s ^ 0x63);
}

/* T-table entry: the S-box output times the MixColumns column (2, 1, 1, 3),
 * big-endian; the other three tables are its byte rotations. */
GMS_HDI uint32_t gms_aes_te_entry(uint8_t s)
{
    uint8_t s2 = gms_gf8_xtime(s), s3 = (uint8_t)(s2 ^ s);
    return (uint32_t)s2 << 24 | (uint32_t)s << 16 | (uint32_t)s << 8 | s3;
}

GMS_HDI uint32_t gms_aes_subword(const uint8_t *sbox, uint32_t w)
{
    return (uint32_t)sbox[w >> 24] << 24 | (uint32_t)sbox[w >> 16 & 0xff] << 16 |
           (uint32_t)sbox[w >> 8 & 0xff] << 8 | sbox[w & 0xff];
}

/* The 60 round-key words of a 32-byte key (FIPS 197 section 5.2). */
GMS_HDI void gms_aes256_expand(const uint8_t *sbox, const uint8_t key[32], uint32_t rk[60])
{
    uint8_t rcon = 1;
    for (int i = 0; i < 8; i++)
        rk[i] = gms_be32(key + 4 * i);
    for (int i = 8; i < 60; i++) {
        uint32_t t = rk[i - 1];
        if (i % 8 == 0) {
            t = gms_aes_subword(sbox, t << 8 | t >> 24) ^ (uint32_t)rcon << 24;
            rcon = gms_gf8_xtime(rcon);
        } else if (i % 8 == 4) {
            t = gms_aes_subword(sbox, t);
        }
        rk[i] = rk[i - 8] ^ t;
    }
}

/* Encrypts one block held as four big-endian words, in place. te is the
 * T-table (gms_aes_te_entry of each S-box entry), sbox the S-box. */
GMS_HDI void gms_aes256_encrypt_words(const uint32_t *rk, const uint32_t *te,
                                      const uint8_t *sbox, uint32_t s[4])
{
    uint32_t s0 = s[0] ^ rk[0], s1 = s[1] ^ rk[1], s2 = s[2] ^ rk[2], s3 = s[3] ^ rk[3];
    GMS_UNROLL
    for (int r = 1; r < 14; r++) {
        const uint32_t *k = rk + 4 * r;
        uint32_t t0 = te[s0 >> 24] ^ gms_ror32(te[s1 >> 16 & 0xff], 8) ^
                      gms_ror32(te[s2 >> 8 & 0xff], 16) ^ gms_ror32(te[s3 & 0xff], 24) ^ k[0];
        uint32_t t1 = te[s1 >> 24] ^ gms_ror32(te[s2 >> 16 & 0xff], 8) ^
                      gms_ror32(te[s3 >> 8 & 0xff], 16) ^ gms_ror32(te[s0 & 0xff], 24) ^ k[1];
        uint32_t t2 = te[s2 >> 24] ^ gms_ror32(te[s3 >> 16 & 0xff], 8) ^
                      gms_ror32(te[s0 >> 8 & 0xff], 16) ^ gms_ror32(te[s1 & 0xff], 24) ^ k[2];
        uint32_t t3 = te[s3 >> 24] ^ gms_ror32(te[s0 >> 16 & 0xff], 8) ^
                      gms_ror32(te[s1 >> 8 & 0xff], 16) ^ gms_ror32(te[s2 & 0xff], 24) ^ k[3];
        s0 = t0;
        s1 = t1;
        s2 = t2;
        s3 = t3;
    }
    const uint32_t *k = rk + 56; /* the last round: no MixColumns */
#define GMS_AES_LAST(a, b, c, d)                                                         \
    ((uint32_t)sbox[(a) >> 24] << 24 | (uint32_t)sbox[(b) >> 16 & 0xff] << 16 |          \
     (uint32_t)sbox[(c) >> 8 & 0xff] << 8 | (uint32_t)sbox[(d) & 0xff])
    s[0] = GMS_AES_LAST(s0, s1, s2, s3) ^ k[0];
    s[1] = GMS_AES_LAST(s1, s2, s3, s0) ^ k[1];
    s[2] = GMS_AES_LAST(s2, s3, s0, s1) ^ k[2];
    s[3] = GMS_AES_LAST(s3, s0, s1, s2) ^ k[3];
#undef GMS_AES_LAST
}

GMS_HDI void gms_aes256_encrypt(const uint32_t *rk, const uint32_t *te, const uint8_t *sbox,
                                const uint8_t in[16], uint8_t out[16])
{
    uint32_t s[4];
    for (int i = 0; i < 4; i++)
        s[i] = gms_be32(in + 4 * i);
    gms_aes256_encrypt_words(rk, te, sbox, s);
    for (int i = 0; i < 4; i++)
        gms_put_be32(out + 4 * i, s[i]);
}

/* ---- GF(2^128) and GHASH (NIST SP 800-38D section 6.3) ---- */

typedef struct gms_gf128 {
    uint64_t hi, lo;
} gms_gf128;

/* The product of x and y, bit by bit (Algorithm 1 of SP 800-38D): slow,
 * table-free, for one-off products. */
GMS_HDI gms_gf128 gms_gf128_mul(gms_gf128 x, gms_gf128 y)
{
    gms_gf128 z = {0, 0}, v = y;
    for (int i = 0; i < 128; i++) {
        uint64_t bit = i < 64 ? x.hi >> (63 - i) & 1 : x.lo >> (127 - i) & 1;
        uint64_t mask = (uint64_t)0 - bit;
        z.hi ^= v.hi & mask;
        z.lo ^= v.lo & mask;
        uint64_t carry = (uint64_t)0 - (v.lo & 1);
        v.lo = v.lo >> 1 | v.hi << 63;
        v.hi = v.hi >> 1 ^ (0xe100000000000000ull & carry);
    }
    return z;
}

/* h^n, by squaring (n >= 1). */
GMS_HDI gms_gf128 gms_gf128_pow(gms_gf128 h, uint64_t n)
{
    gms_gf128 r = {0x8000000000000000ull, 0}; /* the element 1 */
    while (n) {
        if (n & 1)
            r = gms_gf128_mul(r, h);
        h = gms_gf128_mul(h, h);
        n >>= 1;
    }
    return r;
}

/* Shoup's 4-bit tables for multiplying by one fixed h: m[i] = h times the
 * nibble i (its bit 8 the coefficient of x^0), r4[i] = what multiplying by
 * x^4 folds back for the four bits i shifted out (top 16 bits of hi). */
typedef struct gms_gf128_table {
    uint64_t mhi[16], mlo[16];
    uint64_t r4[16];
} gms_gf128_table;

GMS_HDI gms_gf128 gms_gf128_mulx(gms_gf128 v)
{
    uint64_t carry = (uint64_t)0 - (v.lo & 1);
    v.lo = v.lo >> 1 | v.hi << 63;
    v.hi = v.hi >> 1 ^ (0xe100000000000000ull & carry);
    return v;
}

GMS_HDI void gms_gf128_table_make(gms_gf128 h, gms_gf128_table *t)
{
    gms_gf128 m[16];
    m[0].hi = m[0].lo = 0;
    m[8] = h;
    m[4] = gms_gf128_mulx(m[8]);
    m[2] = gms_gf128_mulx(m[4]);
    m[1] = gms_gf128_mulx(m[2]);
    for (int i = 2; i < 16; i <<= 1)
        for (int j = 1; j < i; j++) {
            m[i + j].hi = m[i].hi ^ m[j].hi;
            m[i + j].lo = m[i].lo ^ m[j].lo;
        }
    for (int i = 0; i < 16; i++) {
        t->mhi[i] = m[i].hi;
        t->mlo[i] = m[i].lo;
        gms_gf128 r = {0, (uint64_t)i};
        for (int k = 0; k < 4; k++)
            r = gms_gf128_mulx(r);
        t->r4[i] = r.hi;
    }
}

/* x times the table's h: Horner over x's 32 nibbles, last first. */
GMS_HDI gms_gf128 gms_gf128_mul_table(gms_gf128 x, const gms_gf128_table *t)
{
    uint64_t zh = 0, zl = 0;
    GMS_UNROLL
    for (int k = 31; k >= 0; k--) {
        unsigned n = (unsigned)((k < 16 ? x.hi >> (60 - 4 * k) : x.lo >> (124 - 4 * k)) & 0xf);
        if (k != 31) { /* z *= x^4 */
            unsigned rem = (unsigned)(zl & 0xf);
            zl = zl >> 4 | zh << 60;
            zh = zh >> 4 ^ t->r4[rem];
        }
        zh ^= t->mhi[n];
        zl ^= t->mlo[n];
    }
    gms_gf128 z = {zh, zl};
    return z;
}

GMS_HDI gms_gf128 gms_gf128_load(const uint8_t *p)
{
    gms_gf128 v = {gms_be64(p), gms_be64(p + 8)};
    return v;
}

GMS_HDI void gms_gf128_store(uint8_t *p, gms_gf128 v)
{
    gms_put_be64(p, v.hi);
    gms_put_be64(p + 8, v.lo);
}

/* The IV of chunk `chunk` of a sealed region (SP 800-38D section 8.2.1):
 * the fixed field is the region id, the invocation field the seal counter
 * and the chunk index, each 32 bits big-endian. */
GMS_HDI void gms_seal_iv(uint32_t region, uint32_t counter, uint32_t chunk, uint8_t iv[12])
{
    gms_put_be32(iv, region);
    gms_put_be32(iv + 4, counter);
    gms_put_be32(iv + 8, chunk);
}

/* ---- AES-256-GCM of one chunk, the simple way (host tests, reference) ---- */

/* The key's schedule and tables. */
typedef struct gms_gcm_key {
    uint8_t sbox[256];
    uint32_t te[256];
    uint32_t rk[60];
    gms_gf128 h;
    gms_gf128_table ht;
} gms_gcm_key;

GMS_HDI void gms_gcm_key_make(gms_gcm_key *k, const uint8_t key[32])
{
    for (int i = 0; i < 256; i++) {
        k->sbox[i] = gms_aes_sbox_entry((uint8_t)i);
        k->te[i] = gms_aes_te_entry(k->sbox[i]);
    }
    gms_aes256_expand(k->sbox, key, k->rk);
    uint8_t zero[16] = {0}, h[16];
    gms_aes256_encrypt(k->rk, k->te, k->sbox, zero, h);
    k->h = gms_gf128_load(h);
    gms_gf128_table_make(k->h, &k->ht);
}

/* GHASH state update with up to 16 bytes (zero-padded). */
GMS_HDI gms_gf128 gms_ghash_block(const gms_gcm_key *k, gms_gf128 y, const uint8_t *p,
                                  unsigned n)
{
    uint8_t b[16] = {0};
    for (unsigned i = 0; i < n; i++)
        b[i] = p[i];
    gms_gf128 x = gms_gf128_load(b);
    y.hi ^= x.hi;
    y.lo ^= x.lo;
    return gms_gf128_mul_table(y, &k->ht);
}

/* Encrypts (enc) or decrypts len bytes from in to out (may be the same)
 * with a 96-bit iv and aad, and gives the tag over aad and the
 * ciphertext (SP 800-38D section 7). */
GMS_HDI void gms_gcm_crypt(const gms_gcm_key *k, const uint8_t iv[12], const uint8_t *aad,
                           uint64_t aad_len, const uint8_t *in, uint8_t *out, uint64_t len,
                           int enc, uint8_t tag[16])
{
    uint8_t ctr[16], ks[16];
    for (int i = 0; i < 12; i++)
        ctr[i] = iv[i];
    gms_put_be32(ctr + 12, 1);
    uint8_t ej0[16];
    gms_aes256_encrypt(k->rk, k->te, k->sbox, ctr, ej0);
    gms_gf128 y = {0, 0};
    for (uint64_t i = 0; i < aad_len; i += 16)
        y = gms_ghash_block(k, y, aad + i, (unsigned)(aad_len - i < 16 ? aad_len - i : 16));
    for (uint64_t i = 0; i < len; i += 16) {
        unsigned n = (unsigned)(len - i < 16 ? len - i : 16);
        gms_put_be32(ctr + 12, (uint32_t)(i / 16 + 2));
        gms_aes256_encrypt(k->rk, k->te, k->sbox, ctr, ks);
        uint8_t c[16];
        for (unsigned j = 0; j < n; j++) {
            uint8_t x = in[i + j];
            c[j] = enc ? (uint8_t)(x ^ ks[j]) : x;
            out[i + j] = (uint8_t)(x ^ ks[j]);
        }
        y = gms_ghash_block(k, y, c, n);
    }
    uint8_t lens[16];
    gms_put_be64(lens, aad_len * 8);
    gms_put_be64(lens + 8, len * 8);
    y = gms_ghash_block(k, y, lens, 16);
    gms_gf128_store(tag, y);
    for (int i = 0; i < 16; i++)
        tag[i] ^= ej0[i];
}

/* ---- SHA-256 (FIPS 180-4) and HMAC (FIPS 198-1) ---- */

/* The 64 round constants (FIPS 180-4 section 4.2.2), for a table of the
 * caller's: `static const uint32_t k[64] = {GMS_SHA256_K};`. */
#define GMS_SHA256_K                                                                      \
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,  \
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,          \
        0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6,          \
        0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152,          \
        0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351,          \
        0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354,          \
        0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70,          \
        0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,          \
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,          \
        0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa,          \
        0xa4506ceb, 0xbef9a3f7, 0xc67178f2

#define GMS_SHA256_H0                                                                     \
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,  \
        0x5be0cd19

/* One compression of the 16 big-endian words w into state. */
GMS_HDI void gms_sha256_compress(uint32_t state[8], const uint32_t w_in[16],
                                 const uint32_t *k)
{
    uint32_t w[16];
    GMS_UNROLL
    for (int i = 0; i < 16; i++)
        w[i] = w_in[i];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    GMS_UNROLL
    for (int i = 0; i < 64; i++) {
        uint32_t wi;
        if (i < 16) {
            wi = w[i];
        } else {
            uint32_t w15 = w[(i - 15) & 15], w2 = w[(i - 2) & 15];
            uint32_t s0 = gms_ror32(w15, 7) ^ gms_ror32(w15, 18) ^ (w15 >> 3);
            uint32_t s1 = gms_ror32(w2, 17) ^ gms_ror32(w2, 19) ^ (w2 >> 10);
            wi = w[i & 15] = w[i & 15] + s0 + w[(i - 7) & 15] + s1;
        }
        uint32_t t1 = h + (gms_ror32(e, 6) ^ gms_ror32(e, 11) ^ gms_ror32(e, 25)) +
                      ((e & f) ^ (~e & g)) + k[i] + wi;
        uint32_t t2 = (gms_ror32(a, 2) ^ gms_ror32(a, 13) ^ gms_ror32(a, 22)) +
                      ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

/* The last blocks of a message: its rest (len % 64 bytes at p) and the
 * padding, for a message of total bytes in all (FIPS 180-4 section 5.1.1). */
GMS_HDI void gms_sha256_finish(uint32_t state[8], const uint8_t *p, uint64_t rest,
                               uint64_t total, const uint32_t *k)
{
    uint8_t b[128] = {0};
    for (uint64_t i = 0; i < rest; i++)
        b[i] = p[i];
    b[rest] = 0x80;
    unsigned n = rest < 56 ? 64 : 128;
    gms_put_be64(b + n - 8, total * 8);
    for (unsigned off = 0; off < n; off += 64) {
        uint32_t w[16];
        for (int i = 0; i < 16; i++)
            w[i] = gms_be32(b + off + 4 * i);
        gms_sha256_compress(state, w, k);
    }
}

/* SHA-256 of a message that starts after `done` bytes already compressed
 * into state (a multiple of 64), to its 32-byte digest. */
GMS_HDI void gms_sha256_update_final(uint32_t state[8], uint64_t done, const uint8_t *p,
                                     uint64_t len, const uint32_t *k, uint8_t out[32])
{
    uint64_t i = 0;
    for (; i + 64 <= len; i += 64) {
        uint32_t w[16];
        for (int j = 0; j < 16; j++)
            w[j] = gms_be32(p + i + 4 * j);
        gms_sha256_compress(state, w, k);
    }
    gms_sha256_finish(state, p + i, len - i, done + len, k);
    for (int j = 0; j < 8; j++)
        gms_put_be32(out + 4 * j, state[j]);
}

/* HMAC-SHA-256's two midstates for a key of at most 64 bytes: the states
 * after the key xor ipad and the key xor opad blocks. */
GMS_HDI void gms_hmac_sha256_midstates(const uint8_t *key, unsigned key_len,
                                       const uint32_t *k, uint32_t inner[8], uint32_t outer[8])
{
    const uint32_t h0[8] = {GMS_SHA256_H0};
    uint8_t pad[64];
    for (int which = 0; which < 2; which++) {
        uint32_t *st = which ? outer : inner;
        for (int i = 0; i < 64; i++)
            pad[i] = (uint8_t)((i < (int)key_len ? key[i] : 0) ^ (which ? 0x5c : 0x36));
        uint32_t w[16];
        for (int i = 0; i < 16; i++)
            w[i] = gms_be32(pad + 4 * i);
        for (int i = 0; i < 8; i++)
            st[i] = h0[i];
        gms_sha256_compress(st, w, k);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = 0;
}

/* HMAC-SHA-256 of len bytes at p, from the midstates. */
GMS_HDI void gms_hmac_sha256(const uint32_t inner[8], const uint32_t outer[8], const uint8_t *p,
                             uint64_t len, const uint32_t *k, uint8_t out[32])
{
    uint32_t st[8];
    uint8_t ih[32];
    for (int i = 0; i < 8; i++)
        st[i] = inner[i];
    gms_sha256_update_final(st, 64, p, len, k, ih);
    for (int i = 0; i < 8; i++)
        st[i] = outer[i];
    gms_sha256_update_final(st, 64, ih, 32, k, out);
}

#endif
