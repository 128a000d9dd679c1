/*
 * scrub_plan.h: the host half of a GPU scrub, the same for every GPU
 * backend: turning a batch of gms_scrub_item into the kernel's work list
 * (scrub.h) in a staging buffer, and reading the results back. The backend
 * only copies the staging buffer, launches and waits.
 *
 * Staging layout: check segments, fill segments, then one gms_kres per item.
 */
#ifndef GMS_KERNELS_SCRUB_PLAN_H
#define GMS_KERNELS_SCRUB_PLAN_H

#include "backend/backend.h"
#include "kernels/scrub.h"

#include <stddef.h>

typedef struct gms_scrub_plan {
    size_t ncheck, nfill; /* segments */
    size_t seg_bytes;     /* where the results start in the staging buffer */
    size_t bytes;         /* the whole staging buffer; 0: nothing to do */
} gms_scrub_plan;

/* The GMS_KTILE tiles, aligned in absolute address, that [lo, hi) touches
 * (lo < hi). */
uint64_t gms__scrub_tiles(uint64_t lo, uint64_t hi);

/* Sizes the work list of a batch. */
gms_scrub_plan gms__scrub_plan_size(const gms_scrub_item *items, size_t n);

/* Writes the work list into stage (host memory of plan.bytes, to be copied
 * to the device address dev) and the kernel's parameters into p. */
void gms__scrub_plan_build(const gms_scrub_plan *plan, const gms_scrub_item *items, size_t n,
                          void *stage, uint64_t dev, uint64_t pattern, uint64_t seed,
                          gms_kparams *p);

/* Copies the kernel's findings (results copied back into stage) into the
 * items: range 0's finding first, as the host backend reports. */
void gms__scrub_plan_results(const gms_scrub_plan *plan, const void *stage,
                            gms_scrub_item *items, size_t n);

#endif
