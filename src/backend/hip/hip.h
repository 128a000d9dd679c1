/*
 * hip.h: the HIP backend's entry points (src/backend/hip/hip.c, a loader
 * for the virtual-memory backend of src/backend/vmm/vmm.c; docs/hip.md).
 *
 * The backend loads the HIP runtime (libamdhip64.so) at run time, so a gms
 * built here runs on machines with no AMD GPU and no ROCm; there, create
 * returns ENODEV and available returns 0. Thread-safe.
 *
 * Status: compiled and tested only without a device (no AMD GPU was
 * available); nothing here has run on a GPU yet.
 */
#ifndef GMS_BACKEND_HIP_H
#define GMS_BACKEND_HIP_H

#include "backend/backend.h"

#include <stdio.h>

/* 1 when the HIP runtime loads and reports at least one device. Cheap
 * after the first call (the answer is cached). */
int gms__backend_hip_available(void);

/* gms__backend_hip_create (backend.h): a backend on GPU ordinal `device`.
 * 0, or ENODEV (no runtime, no such device), ENOTSUP (no virtual memory
 * management), ENOMEM, EIO (another runtime failure). On failure, a
 * message for the caller is in gms__backend_hip_why(). */

/* Why the last failed create or the last failed call on this thread
 * failed, in words; "" when none. */
const char *gms__backend_hip_why(void);

/* The backend's mapping granule (bytes): max(2 MiB, the device's minimum
 * allocation granularity). Chunk sizes, commits and views are multiples
 * of it. */
uint64_t gms__backend_hip_granularity(const gms_backend *be);

/* Whether this backend loaded its scrub kernel (src/kernels/scrub.cu built
 * by hipcc into the code object named by GMS_HIP_CODE_OBJECT). Without it,
 * data movement works and the scrub fails with ENOSYS. */
int gms__backend_hip_have_kernels(const gms_backend *be);
/* Why the kernel is missing, in words ("" when it is loaded). */
const char *gms__backend_hip_kernels_why(const gms_backend *be);

/* Writes the runtime calls made so far in this process, per kind, with
 * how many failed (also written at each backend's destroy when the
 * environment has GMS_DRIVER_STATS). */
void gms__backend_hip_dump_calls(FILE *f);

#endif
