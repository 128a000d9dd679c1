/*
 * seal.cu: the sealed-region kernels of the CUDA backend (docs/sealed.md),
 * built by nvcc into their own fatbin and embedded in libgms as
 * gms__seal_fatbin (CMakeLists.txt); vmm.c loads and launches them. The
 * arithmetic is seal_math.h's, which tests/kernels/seal_math.c checks on
 * the host against OpenSSL and the GCM specification's vectors; what is
 * here is the split of the work over threads.
 *
 * gms_seal_kernel: one block of GMS_SEAL_KTHREADS threads per 64 KiB chunk
 * at a time (blocks loop over chunks). Thread t takes the chunk's 16-byte
 * blocks t, t + 256, t + 512, ...: neighbouring threads touch neighbouring
 * 16 bytes (coalesced 16-byte loads and stores). AES-256 runs in CTR mode
 * with an S-box and one T-table in shared memory (the other three are its
 * rotations), built at the start from the field arithmetic. GHASH is
 * split over the threads with powers of H: thread t folds its blocks by
 * Horner's rule with H^256 (a 4-bit table in shared memory), then
 * multiplies by H^(n - j + 1) for its last block j of n, which puts each
 * block at its place in the sum; an XOR over the block (warp shuffles,
 * then shared memory) gives GHASH, and thread 0 adds the length block and
 * AES_K(J0) to make the tag.
 *
 * gms_digest_kernel: one thread per 16 KiB leaf, HMAC-SHA-256 from the
 * key's midstates (the key itself never reaches the device), with the
 * round constants in shared memory (every thread reads the same one at
 * once: a broadcast).
 */
#include "seal_math.h"
#include "seal_kernels.h"

#define CHUNK 65536u
#define LEAF 16384u
#define T GMS_SEAL_KTHREADS

__constant__ uint32_t gms_sha256_k_dev[64] = {GMS_SHA256_K};

__device__ __forceinline__ uint32_t bswap32(uint32_t x)
{
    return __byte_perm(x, 0, 0x0123);
}

/* n (<= 16) bytes at p as four big-endian words, zero past n. */
__device__ __forceinline__ void load_block(const uint8_t *p, unsigned n, bool aligned,
                                           uint32_t w[4])
{
    if (n == 16 && aligned) {
        uint4 v = *(const uint4 *)p;
        w[0] = bswap32(v.x);
        w[1] = bswap32(v.y);
        w[2] = bswap32(v.z);
        w[3] = bswap32(v.w);
        return;
    }
    for (int i = 0; i < 4; i++)
        w[i] = 0;
    for (unsigned i = 0; i < n; i++)
        w[i / 4] |= (uint32_t)p[i] << (24 - 8 * (i % 4));
}

__device__ __forceinline__ void store_block(uint8_t *p, unsigned n, const uint32_t w[4])
{
    if (n == 16) {
        *(uint4 *)p = make_uint4(bswap32(w[0]), bswap32(w[1]), bswap32(w[2]), bswap32(w[3]));
        return;
    }
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(w[i / 4] >> (24 - 8 * (i % 4)));
}

__device__ __forceinline__ uint64_t xor_warp(uint64_t v)
{
    for (int o = 16; o > 0; o >>= 1)
        v ^= __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

extern "C" __global__ void __launch_bounds__(T) gms_seal_kernel(gms_seal_kargs a)
{
    __shared__ uint8_t sbox[256];
    __shared__ uint32_t te[256];
    __shared__ uint32_t rk[60];
    __shared__ gms_gf128_table h256;
    __shared__ uint64_t red_hi[T / 32], red_lo[T / 32];
    const unsigned t = threadIdx.x;
    uint8_t s = gms_aes_sbox_entry((uint8_t)t);
    sbox[t] = s;
    te[t] = gms_aes_te_entry(s);
    if (t < 60)
        rk[t] = a.rk[t];
    const gms_gf128 h = {a.h_hi, a.h_lo};
    if (t == 0)
        gms_gf128_table_make(gms_gf128_pow(h, T), &h256);
    /* In a full chunk (n = 4096 blocks) thread t's last block is
     * t + 4096 - T: its power of H is n - j + 1 = T + 1 - t. */
    const gms_gf128 pfull = gms_gf128_pow(h, T + 1 - t);
    __syncthreads();
    const uint64_t nchunks = (a.len + CHUNK - 1) / CHUNK;
    for (uint64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
        uint8_t *base = (uint8_t *)(uintptr_t)(a.addr + c * CHUNK);
        const unsigned bytes = (unsigned)(a.len - c * CHUNK < CHUNK ? a.len - c * CHUNK : CHUNK);
        const unsigned nblk = (bytes + 15) / 16;
        gms_gf128 acc = {0, 0};
        int last = -1;
        for (unsigned j = t; j < nblk; j += T) {
            const unsigned n = bytes - 16 * j < 16 ? bytes - 16 * j : 16;
            uint32_t d[4], x[4];
            load_block(base + 16 * j, n, true, d);
            if (a.mode == GMS_SEAL_K_TAGS) {
                for (int i = 0; i < 4; i++)
                    x[i] = d[i];
            } else {
                uint32_t ks[4] = {a.region, a.counter, (uint32_t)c, j + 2};
                gms_aes256_encrypt_words(rk, te, sbox, ks);
                uint32_t o[4];
                for (int i = 0; i < 4; i++)
                    o[i] = d[i] ^ ks[i];
                store_block(base + 16 * j, n, o);
                /* GHASH reads the ciphertext, zero-padded. */
                for (int i = 0; i < 4; i++) {
                    int keep = (int)n - 4 * i; /* bytes of word i that exist */
                    uint32_t mask = keep >= 4 ? 0xffffffffu : keep <= 0 ? 0 : ~(0xffffffffu >> (8 * keep));
                    x[i] = (a.mode == GMS_SEAL_K_ENCRYPT ? o[i] : d[i]) & mask;
                }
            }
            if (a.mode != GMS_SEAL_K_DECRYPT) {
                acc = gms_gf128_mul_table(acc, &h256);
                acc.hi ^= (uint64_t)x[0] << 32 | x[1];
                acc.lo ^= (uint64_t)x[2] << 32 | x[3];
            }
            last = (int)j;
        }
        if (a.mode == GMS_SEAL_K_DECRYPT) /* the same for the whole block */
            continue;
        if (last >= 0)
            acc = gms_gf128_mul(acc, nblk == CHUNK / 16 ? pfull : gms_gf128_pow(h, nblk - last + 1));
        acc.hi = xor_warp(acc.hi);
        acc.lo = xor_warp(acc.lo);
        if (t % 32 == 0) {
            red_hi[t / 32] = acc.hi;
            red_lo[t / 32] = acc.lo;
        }
        __syncthreads();
        if (t == 0) {
            gms_gf128 y = {0, 0};
            for (int w = 0; w < T / 32; w++) {
                y.hi ^= red_hi[w];
                y.lo ^= red_lo[w];
            }
            const gms_gf128 lens = {0, (uint64_t)bytes * 8};
            const gms_gf128 l = gms_gf128_mul(lens, h);
            uint32_t j0[4] = {a.region, a.counter, (uint32_t)c, 1};
            gms_aes256_encrypt_words(rk, te, sbox, j0);
            uint32_t tag[4] = {(uint32_t)((y.hi ^ l.hi) >> 32) ^ j0[0],
                               (uint32_t)(y.hi ^ l.hi) ^ j0[1],
                               (uint32_t)((y.lo ^ l.lo) >> 32) ^ j0[2],
                               (uint32_t)(y.lo ^ l.lo) ^ j0[3]};
            store_block((uint8_t *)(uintptr_t)(a.tags + 16 * c), 16, tag);
        }
        __syncthreads(); /* red_* are reused by the next chunk */
    }
}

extern "C" __global__ void __launch_bounds__(T) gms_digest_kernel(gms_digest_kargs a)
{
    __shared__ uint32_t k[64];
    if (threadIdx.x < 64)
        k[threadIdx.x] = gms_sha256_k_dev[threadIdx.x];
    __syncthreads();
    const uint64_t nleaves = (a.len + LEAF - 1) / LEAF;
    const bool aligned = (a.addr & 15) == 0;
    for (uint64_t i = (uint64_t)blockIdx.x * T + threadIdx.x; i < nleaves;
         i += (uint64_t)gridDim.x * T) {
        const uint8_t *p = (const uint8_t *)(uintptr_t)(a.addr + i * LEAF);
        const uint64_t bytes = a.len - i * LEAF < LEAF ? a.len - i * LEAF : LEAF;
        uint32_t st[8];
        for (int j = 0; j < 8; j++)
            st[j] = a.inner[j];
        uint64_t off = 0;
        for (; off + 64 <= bytes; off += 64) {
            uint32_t w[16];
            for (int q = 0; q < 4; q++)
                load_block(p + off + 16 * q, 16, aligned, w + 4 * q);
            gms_sha256_compress(st, w, k);
        }
        gms_sha256_finish(st, p + off, bytes - off, 64 + bytes, k);
        /* The outer hash: the inner digest, padded, after the opad block. */
        uint32_t w[16] = {st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7], 0x80000000u,
                          0, 0, 0, 0, 0, 0, (64 + 32) * 8};
        uint32_t o[8];
        for (int j = 0; j < 8; j++)
            o[j] = a.outer[j];
        gms_sha256_compress(o, w, k);
        uint8_t *out = (uint8_t *)(uintptr_t)(a.out + 32 * i);
        store_block(out, 16, o);
        store_block(out + 16, 16, o + 4);
    }
}
