/*
 * scrub_plan.c: builds the scrub kernel's work list on the host (see
 * scrub_plan.h and scrub.h). Pure C, no device calls: shared by the CUDA
 * and HIP backends.
 */
#include "kernels/scrub_plan.h"

#include <string.h>

uint64_t gms__scrub_tiles(uint64_t lo, uint64_t hi)
{
    return ((hi - 1) >> GMS_KTILE_SHIFT) - (lo >> GMS_KTILE_SHIFT) + 1;
}

/* Fill segments are ordered in four runs so that the multipass ones
 * (runs 0, 1) and the verified ones (runs 1, 2) are each contiguous. */
static int fill_run(const gms_scrub_item *it)
{
    int mp = (it->passes & GMS_SCRUB_MULTIPASS) != 0, v = it->verify != 0;
    return mp ? (v ? 1 : 0) : (v ? 2 : 3);
}

gms_scrub_plan gms__scrub_plan_size(const gms_scrub_item *items, size_t n)
{
    gms_scrub_plan plan = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < 2; r++) {
            plan.ncheck += items[i].check_lo[r] < items[i].check_hi[r];
            plan.nfill += items[i].fill_lo[r] < items[i].fill_hi[r];
        }
    if (plan.ncheck + plan.nfill == 0)
        return plan;
    plan.seg_bytes = (plan.ncheck + plan.nfill) * sizeof(gms_kseg);
    plan.bytes = plan.seg_bytes + n * sizeof(gms_kres);
    return plan;
}

void gms__scrub_plan_build(const gms_scrub_plan *plan, const gms_scrub_item *items, size_t n,
                          void *stage, uint64_t dev, uint64_t pattern, uint64_t seed,
                          gms_kparams *p)
{
    size_t nc = plan->ncheck, nf = plan->nfill, nrun[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < 2; r++)
            if (items[i].fill_lo[r] < items[i].fill_hi[r])
                nrun[fill_run(&items[i])]++;
    gms_kseg *check = stage, *fill = check + nc;
    gms_kres *res = (gms_kres *)(fill + nf);
    size_t at[4] = {0, nrun[0], nrun[0] + nrun[1], nrun[0] + nrun[1] + nrun[2]};
    size_t run_start[4] = {at[0], at[1], at[2], at[3]};
    size_t ci = 0;
    for (size_t i = 0; i < n; i++) {
        const gms_scrub_item *it = &items[i];
        int run = fill_run(it);
        for (int r = 0; r < 2; r++) {
            if (it->check_lo[r] < it->check_hi[r])
                check[ci++] = (gms_kseg){.lo = it->check_lo[r], .hi = it->check_hi[r],
                                         .item = (uint32_t)i, .range = (uint32_t)r};
            if (it->fill_lo[r] < it->fill_hi[r])
                fill[at[run]++] = (gms_kseg){.lo = it->fill_lo[r], .hi = it->fill_hi[r],
                                             .item = (uint32_t)i, .range = (uint32_t)r};
        }
        res[i].bad[0] = res[i].bad[1] = res[i].vbad[0] = res[i].vbad[1] = ~0ull;
    }
    memset(p, 0, sizeof *p);
    uint64_t t = 0;
    for (size_t i = 0; i < nc; i++) {
        check[i].tile0 = t;
        t += gms__scrub_tiles(check[i].lo, check[i].hi);
    }
    p->check_tiles = t;
    t = 0;
    for (size_t i = 0; i < nf; i++) {
        if (i == run_start[2])
            p->mp_tiles = t;
        if (i == run_start[1])
            p->v_lo = t;
        if (i == run_start[3])
            p->v_hi = t;
        fill[i].tile0 = t;
        t += gms__scrub_tiles(fill[i].lo, fill[i].hi);
    }
    /* Runs that end the array (or are empty at its end) close at the total. */
    if (run_start[2] >= nf)
        p->mp_tiles = t;
    if (run_start[1] >= nf)
        p->v_lo = t;
    if (run_start[3] >= nf)
        p->v_hi = t;
    p->fill_tiles = t;
    p->check = (const gms_kseg *)(uintptr_t)dev;
    p->fill = p->check + nc;
    p->res = (gms_kres *)(uintptr_t)(dev + plan->seg_bytes);
    p->ncheck = (uint32_t)nc;
    p->nfill = (uint32_t)nf;
    p->pattern = pattern;
    p->seed = seed;
}

void gms__scrub_plan_results(const gms_scrub_plan *plan, const void *stage,
                            gms_scrub_item *items, size_t n)
{
    const gms_kres *res = (const gms_kres *)((const char *)stage + plan->seg_bytes);
    for (size_t i = 0; i < n; i++) {
        const gms_kres *k = &res[i];
        uint64_t bad = k->bad[0] != ~0ull ? k->bad[0] : k->bad[1];
        uint64_t vbad = k->vbad[0] != ~0ull ? k->vbad[0] : k->vbad[1];
        items[i].bad = bad == ~0ull ? 0 : bad;
        items[i].verify_bad = vbad == ~0ull ? 0 : vbad;
    }
}
