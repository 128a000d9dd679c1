/*
 * tests/gpu/seal.c: sealed regions on the CUDA backend (src/kernels/seal.cu,
 * docs/sealed.md), bit for bit against OpenSSL on the host: 10,000 random
 * buffers (1 byte to 300 KiB: short, whole and several chunks) sealed on
 * the GPU and opened by OpenSSL, and 10,000 sealed by OpenSSL and opened
 * by gms_unseal on the GPU; a changed byte or tag caught with the first bad
 * chunk named and nothing touched; gms_digest against its definition
 * recomputed with OpenSSL, at aligned and unaligned offsets.
 *
 *   test_gpu_seal          the checks (exit 77 without a GPU)
 *   test_gpu_seal bench    seal, unseal and digest of 1 GiB, in GB/s, with
 *                          the device's copy bandwidth (gms_copy of 1 GiB)
 *                          measured in the same run
 */
#include "test.h"
#include "backend/cuda/cuda.h"
#include "core/internal.h"
#include "core/seal.h"
#include "gms/seal.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <time.h>

static uint8_t kek[32];

static int provider(void *user, const char *tenant, uint8_t key[32])
{
    (void)user;
    (void)tenant;
    memcpy(key, kek, 32);
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static gms_block *block_of(gms_runtime *rt, gms_buf h)
{
    gms_pool *p = NULL;
    gms_slot *s = gms__slot_lookup(rt, h, &p);
    return s ? s->block : NULL;
}

static void unwrap(const uint8_t *wrapped, uint8_t *dk)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    int n = 0, m = 0;
    EVP_DecryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL);
    EVP_DecryptUpdate(c, dk, &n, wrapped, 40);
    EVP_DecryptFinal_ex(c, dk + n, &m);
    EVP_CIPHER_CTX_free(c);
}

/* One chunk with OpenSSL: encrypt (tag out) or decrypt (tag checked: 1 if it holds). */
static int gcm(int enc, const uint8_t *dk, uint32_t region, uint32_t counter, uint32_t i,
               const uint8_t *in, uint8_t *out, size_t len, uint8_t *tag)
{
    uint8_t iv[12];
    for (int k = 0; k < 4; k++) {
        iv[k] = (uint8_t)(region >> (24 - 8 * k));
        iv[4 + k] = (uint8_t)(counter >> (24 - 8 * k));
        iv[8 + k] = (uint8_t)(i >> (24 - 8 * k));
    }
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, dk, iv, enc) == 1 &&
                    EVP_CipherUpdate(c, out, &n, in, (int)len) == 1;
    if (!enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(c, out + n, &n) == 1;
    if (enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

static void digest_ref(const uint8_t *p, uint64_t len, uint8_t out[32])
{
    uint8_t kd[32];
    unsigned n = 32;
    HMAC(EVP_sha256(), kek, 32, (const uint8_t *)"gms-digest-key-v1", 17, kd, &n);
    uint64_t leaves = (len + GMS_DIGEST_LEAF - 1) / GMS_DIGEST_LEAF;
    size_t msg_len = 21 + leaves * 32;
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

static gms_runtime *open_cuda(gms_context **ctx)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_CUDA;
    o.chunk_bytes = 4ull << 30;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return NULL;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "acme";
    d.user = "gpu-seal";
    CHECK_OK(gms_context_open(ctx, rt, &d));
    CHECK_OK(gms_on_key_request(rt, provider, NULL));
    return rt;
}

static void check_both_ways(gms_runtime *rt, gms_context *c)
{
    enum { MAX = 300 * 1024 };
    const char *env = getenv("GMS_SEAL_GPU_BUFFERS"); /* fewer under compute-sanitizer */
    const int N = env ? atoi(env) : 10000;
    uint8_t *pt = malloc(MAX), *ct = malloc(MAX), *back = malloc(MAX);
    uint8_t *tags = malloc(MAX / GMS_SEAL_CHUNK * 16 + 16);
    int gpu_to_host = 1, host_to_gpu = 1;
    gms_backend *be = rt->backend;
    for (int t = 0; t < N; t++) {
        size_t len = t < 16 ? (size_t[]){1, 15, 16, 17, 4095, 4096, 65535, 65536, 65537, 131072,
                                        131073, 196607, 200000, 262144, 300000, MAX}[t]
                            : 1 + (size_t)(rand() % MAX);
        RAND_bytes(pt, (int)len);
        gms_buf x;
        CHECK_OK(gms_alloc(c, len, 0, &x));
        CHECK_OK(gms_write(c, x, 0, pt, len));
        CHECK_OK(gms_seal(c, x));
        gms_block *b = block_of(rt, x);
        gms_seal_rec *rec = b->seal;
        uint8_t dk[32];
        unwrap(rec->wrapped, dk);
        CHECK(be->ops->read(be, ct, b->addr, len) == 0);
        uint64_t chunks = (len + GMS_SEAL_CHUNK - 1) / GMS_SEAL_CHUNK;
        for (uint64_t i = 0; i < chunks; i++) {
            size_t off = i * GMS_SEAL_CHUNK, l = len - off < GMS_SEAL_CHUNK ? len - off : GMS_SEAL_CHUNK;
            gpu_to_host &= gcm(0, dk, rec->region, rec->counter, (uint32_t)i, ct + off, back + off,
                               l, rec->tags + 16 * i);
        }
        gpu_to_host &= memcmp(back, pt, len) == 0;
        /* The other way: OpenSSL seals new bytes under the same key and IVs
         * in place of the GPU's; gms_unseal opens them on the GPU. */
        RAND_bytes(pt, (int)len);
        for (uint64_t i = 0; i < chunks; i++) {
            size_t off = i * GMS_SEAL_CHUNK, l = len - off < GMS_SEAL_CHUNK ? len - off : GMS_SEAL_CHUNK;
            gcm(1, dk, rec->region, rec->counter, (uint32_t)i, pt + off, ct + off, l, tags + 16 * i);
        }
        CHECK(be->ops->write(be, b->addr, ct, len) == 0);
        memcpy(rec->tags, tags, chunks * 16);
        int rc = gms_unseal(c, x);
        host_to_gpu &= rc == GMS_OK && gms_read(c, x, 0, back, len) == GMS_OK &&
                       memcmp(back, pt, len) == 0;
        if (rc)
            fprintf(stderr, "buffer %d of %zu bytes: %s\n", t, len, gms_error_last());
        OPENSSL_cleanse(dk, 32);
        CHECK_OK(gms_free(c, x));
        if (!gpu_to_host || !host_to_gpu) {
            fprintf(stderr, "first mismatch at buffer %d of %zu bytes\n", t, len);
            break;
        }
    }
    CHECK(gpu_to_host);
    CHECK(host_to_gpu);
    free(pt);
    free(ct);
    free(back);
    free(tags);
}

static void check_tamper_and_digest(gms_runtime *rt, gms_context *c)
{
    const size_t len = 5 * GMS_SEAL_CHUNK + 123;
    uint8_t *pt = malloc(len), *before = malloc(len), *after = malloc(len);
    RAND_bytes(pt, (int)len);
    gms_buf x;
    CHECK_OK(gms_alloc(c, len, 0, &x));
    CHECK_OK(gms_write(c, x, 0, pt, len));
    /* Digests at aligned and unaligned offsets, against OpenSSL. */
    uint64_t cases[][2] = {{0, len}, {1, len - 1}, {7, 3 * GMS_DIGEST_LEAF + 5}, {64, 0}, {0, 1}};
    for (int i = 0; i < 5; i++) {
        uint8_t got[32], want[32];
        CHECK_OK(gms_digest(c, x, cases[i][0], cases[i][1], got));
        digest_ref(pt + cases[i][0], cases[i][1], want);
        CHECK(memcmp(got, want, 32) == 0);
    }
    CHECK_OK(gms_seal(c, x));
    gms_block *b = block_of(rt, x);
    gms_backend *be = rt->backend;
    CHECK(be->ops->read(be, before, b->addr, len) == 0);
    for (int trial = 0; trial < 200; trial++) {
        size_t at = (size_t)rand() % len;
        uint8_t byte = before[at] ^ (uint8_t)(1 + rand() % 255);
        CHECK(be->ops->write(be, b->addr + at, &byte, 1) == 0);
        CHECK_RC(gms_unseal(c, x), GMS_E_CORRUPTION);
        char want[64];
        snprintf(want, sizeof want, "chunk %zu (", at / GMS_SEAL_CHUNK);
        CHECK(strstr(gms_error_last(), want) != NULL);
        CHECK(be->ops->read(be, after, b->addr, len) == 0);
        after[at] = before[at];
        CHECK(memcmp(after, before, len) == 0);
        CHECK(be->ops->write(be, b->addr + at, &before[at], 1) == 0);
    }
    b->seal->tags[16 * 4 + 3] ^= 1;
    CHECK_RC(gms_unseal(c, x), GMS_E_CORRUPTION);
    CHECK(strstr(gms_error_last(), "chunk 4 (") != NULL);
    b->seal->tags[16 * 4 + 3] ^= 1;
    CHECK_OK(gms_unseal(c, x));
    CHECK_OK(gms_read(c, x, 0, after, len));
    CHECK(memcmp(after, pt, len) == 0);
    CHECK_OK(gms_free(c, x));
    free(pt);
    free(before);
    free(after);
}

static double gbps(uint64_t bytes, uint64_t ns)
{
    return (double)bytes / (double)ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void bench(gms_runtime *rt, gms_context *c)
{
    const uint64_t size = 1ull << 30;
    gms_buf x, y;
    CHECK_OK(gms_alloc(c, size, 0, &x));
    CHECK_OK(gms_alloc(c, size, 0, &y));
    CHECK_OK(gms_fill(c, x, 0, 0x5a, size));
    (void)rt;
    enum { RUNS = 9 };
    uint64_t t[4][RUNS]; /* copy, seal, unseal, digest: ns of each run */
    uint8_t d[32];
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = now_ns();
        CHECK_OK(gms_copy(c, y, 0, x, 0, size));
        uint64_t t1 = now_ns();
        CHECK_OK(gms_seal(c, x));
        uint64_t t2 = now_ns();
        CHECK_OK(gms_unseal(c, x));
        uint64_t t3 = now_ns();
        CHECK_OK(gms_digest(c, x, 0, size, d));
        uint64_t t4 = now_ns();
        t[0][r] = t1 - t0;
        t[1][r] = t2 - t1;
        t[2][r] = t3 - t2;
        t[3][r] = t4 - t3;
    }
    double g[4];
    for (int k = 0; k < 4; k++) {
        qsort(t[k], RUNS, sizeof t[k][0], cmp_u64);
        g[k] = gbps(size, t[k][RUNS / 2]);
    }
    printf("seal bench, 1 GiB, median of %d (GB/s = 1e9 bytes/s; copy: bytes copied, each read "
           "and written once)\n", RUNS);
    printf("  copy    %7.1f GB/s\n", g[0]);
    static const char *const names[] = {"seal", "unseal", "digest"};
    for (int k = 1; k < 4; k++)
        printf("  %-7s %7.1f GB/s  (%.2f of copy)  target >= 100\n", names[k - 1], g[k],
               g[k] / g[0]);
    printf("{\"bench\":\"seal\",\"bytes\":%llu,\"runs\":%d,\"copy_gbps\":%.1f,\"seal_gbps\":%.1f,"
           "\"unseal_gbps\":%.1f,\"digest_gbps\":%.1f}\n",
           (unsigned long long)size, RUNS, g[0], g[1], g[2], g[3]);
    CHECK_OK(gms_free(c, x));
    CHECK_OK(gms_free(c, y));
}

int main(int argc, char **argv)
{
    if (!gms__backend_cuda_available()) {
        char why[512];
        snprintf(why, sizeof why, "no GPU (%s)", gms__backend_cuda_why());
        return test_skip(why);
    }
    RAND_bytes(kek, 32);
    gms_context *c = NULL;
    gms_runtime *rt = open_cuda(&c);
    if (!rt || !c)
        return test_done();
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        bench(rt, c);
    } else {
        check_tamper_and_digest(rt, c);
        check_both_ways(rt, c);
    }
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(c);
    gms_runtime_close(rt);
    return test_done();
}
