/*
 * seal_kernels.h: the launch arguments of the sealed-region kernels
 * (seal.cu), shared by the kernels and the backend that launches them
 * (src/backend/vmm/vmm.c). Each kernel takes one of these by value: the
 * key reaches the device only this way, never through device memory.
 * Plain C types, the same layout on both sides.
 */
#ifndef GMS_KERNELS_SEAL_KERNELS_H
#define GMS_KERNELS_SEAL_KERNELS_H

#include <stdint.h>

/* Threads per block of both kernels; the seal kernel's GHASH split
 * (seal.cu) assumes exactly this many. */
#define GMS_SEAL_KTHREADS 256

enum {
    GMS_SEAL_K_ENCRYPT = 0, /* encrypt in place, write each chunk's tag */
    GMS_SEAL_K_TAGS = 1,    /* write each chunk's tag over its ciphertext; write no data */
    GMS_SEAL_K_DECRYPT = 2  /* decrypt in place; no tags (after GMS_SEAL_K_TAGS checked them) */
};

typedef struct gms_seal_kargs {
    uint32_t rk[60];        /* AES-256 round keys, big-endian words */
    uint64_t h_hi, h_lo;    /* H = AES_K(0^128) (seal_math.h's gms_gf128) */
    uint64_t addr, len;     /* the region: chunks of GMS_SEAL_CHUNK bytes from addr */
    uint64_t tags;          /* device address: 16 bytes per chunk */
    uint32_t region, counter;
    uint32_t mode;          /* GMS_SEAL_K_* */
    uint32_t pad;
} gms_seal_kargs;

typedef struct gms_digest_kargs {
    uint32_t inner[8], outer[8]; /* HMAC-SHA-256 midstates of the digest key */
    uint64_t addr, len;          /* the region: leaves of GMS_DIGEST_LEAF bytes */
    uint64_t out;                /* device address: 32 bytes per leaf */
} gms_digest_kargs;

#endif
