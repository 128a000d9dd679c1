/*
 * scrub.h: the layout shared by the GPU backend (C, src/backend/vmm/vmm.c)
 * and its scrub kernel (CUDA C++, src/kernels/scrub.cu).
 *
 * The host turns a batch of gms_scrub_item into two arrays of segments (one
 * address range each): check segments, then fill segments ordered so that
 * the multipass ones and the verified ones each form one run. Each segment
 * is cut into tiles of GMS_KTILE bytes aligned in absolute address; tile0 is
 * the prefix sum of the tiles before it, so a block finds its segment by a
 * binary search. Results come back per item and range as the lowest bad address,
 * UINT64_MAX when none (atomicMin needs a neutral value above all addresses).
 */
#ifndef GMS_KERNELS_SCRUB_H
#define GMS_KERNELS_SCRUB_H

#include <stdint.h>

#define GMS_KTILE_SHIFT 14 /* 16 KiB: 256 threads x 4 x 16-byte words */
#define GMS_KTHREADS 256
#define GMS_SCRUB_ASYNC_MAX_K 32 /* GMS_SCRUB_ASYNC_MAX (backend.h) */

typedef struct gms_kseg {
    uint64_t lo, hi; /* [lo, hi), lo < hi */
    uint64_t tile0;  /* tiles of the segments before it (same array) */
    uint32_t item;   /* index into the results */
    uint32_t range;  /* 0 or 1: which of the item's two ranges */
} gms_kseg;

/* Per range, so that the host can report range 0's finding first, as the
 * host backend does. */
typedef struct gms_kres {
    unsigned long long bad[2];  /* UINT64_MAX: none */
    unsigned long long vbad[2]; /* UINT64_MAX: none */
} gms_kres;

typedef struct gms_kparams {
    const gms_kseg *check; /* device addresses */
    const gms_kseg *fill;
    gms_kres *res;
    uint32_t ncheck, nfill;
    uint64_t check_tiles; /* all tiles of the check segments */
    uint64_t fill_tiles;  /* all tiles of the fill segments */
    uint64_t mp_tiles;    /* fill tiles [0, mp_tiles) get the multipass wipe */
    uint64_t v_lo, v_hi;  /* fill tiles [v_lo, v_hi) are read back */
    uint64_t pattern;
    uint64_t seed;
} gms_kparams;

/* ---- the stream-ordered kernel (gms_scrub_async_kernel) ----
 * Its work list travels in the launch's parameters (no copy to queue, so a
 * batch is one driver call). The ranges' tiles are numbered one after the
 * other (tile0: the tiles of the ranges before), and a one-dimensional
 * grid, as large as fits on the GPU, strides over them all, finding each
 * tile's range by a binary search: a batch of one large block and many
 * small ones costs no more blocks than its tiles. Check and fill ranges
 * never overlap (backend.h), and every thread runs all passes of its own
 * words in order, so no grid-wide barrier is needed. A thread that finds a
 * bad address folds it into the slot's device results (atomicMin); the
 * last block to finish copies them to the slot's pinned host results,
 * resets the device side for the slot's next use, and then writes the
 * ticket into the pinned done word: the host reads done, then the results
 * (a system-wide fence between). */
#define GMS_KASYNC_RANGES 128 /* 2 check + 2 fill ranges per item */

enum { GMS_KOP_CHECK = 0, GMS_KOP_FILL = 1, GMS_KOP_ZERO = 2 };
enum { GMS_KF_MULTIPASS = 1, GMS_KF_VERIFY = 2 };

typedef struct gms_krange {
    uint64_t lo, hi;  /* [lo, hi), lo < hi */
    uint16_t item;    /* index into the results */
    uint8_t op;       /* GMS_KOP_* */
    uint8_t flags;    /* GMS_KF_*, fills only */
    uint32_t tile0;   /* tiles of the ranges before it */
} gms_krange;

typedef struct gms_kslot_dev {
    unsigned long long bad[GMS_SCRUB_ASYNC_MAX_K];  /* UINT64_MAX: none */
    unsigned long long vbad[GMS_SCRUB_ASYNC_MAX_K];
    unsigned int finished; /* blocks done */
    unsigned int pad;
} gms_kslot_dev;

typedef struct gms_kslot_host {
    unsigned long long done; /* the ticket, once its batch has run */
    unsigned long long bad[GMS_SCRUB_ASYNC_MAX_K];
    unsigned long long vbad[GMS_SCRUB_ASYNC_MAX_K];
} gms_kslot_host;

/* Checked atomics (gms/access.h): up to GMS_KATOMIC_MAX words per launch,
 * one thread each, in the launch's parameters; op is a gms_atomic_op. */
#define GMS_KATOMIC_MAX 64
typedef struct gms_katomic {
    uint64_t addr, operand, compare;
    uint64_t result; /* where the old value goes (8 bytes); 0: nowhere */
    uint32_t op, width;
} gms_katomic;

typedef struct gms_katomics {
    uint32_t n, pad;
    gms_katomic w[GMS_KATOMIC_MAX];
} gms_katomics;

typedef struct gms_kasync {
    uint64_t pattern, seed, ticket;
    gms_kslot_dev *dev;   /* device memory */
    gms_kslot_host *host; /* pinned, mapped into the device's address space */
    uint32_t nranges, nitems;
    uint32_t tiles; /* of all the ranges */
    gms_krange r[GMS_KASYNC_RANGES];
} gms_kasync;

#endif
