/*
 * scrub_hip.h: what the HIP backend (C, src/backend/hip/hip.c) and its
 * scrub kernel (HIP C++, src/kernels/scrub_hip.cpp) agree on besides the
 * work-list layout of scrub.h: the kernel's name and its phase numbers.
 *
 * The HIP scrub is one launch per phase on one stream instead of one
 * cooperative launch with grid-wide barriers: stream order is the barrier
 * (a kernel starts after the previous one finished and its writes are
 * visible), and hipModuleLaunchKernel needs no cooperative-launch support.
 */
#ifndef GMS_KERNELS_SCRUB_HIP_H
#define GMS_KERNELS_SCRUB_HIP_H

#define GMS_HIP_SCRUB_KERNEL "gms_scrub_hip_phase"

enum {
    GMS_HOP_CHECK = 0, /* check tiles [0, check_tiles): compare, re-arm, report */
    GMS_HOP_ZERO = 1,  /* fill tiles [0, mp_tiles): the wipe passes */
    GMS_HOP_ONES = 2,
    GMS_HOP_RANDOM = 3,
    GMS_HOP_PATTERN = 4, /* fill tiles [0, fill_tiles): the poison */
    GMS_HOP_VERIFY = 5   /* fill tiles [v_lo, v_hi): read back, report */
};

#endif
