/*
 * cuda.h: the CUDA backend's entry points (src/backend/cuda/cuda.c, a
 * loader for the virtual-memory backend of src/backend/vmm/vmm.c).
 *
 * The backend loads the driver (libcuda.so.1) at run time, so a gms built
 * here runs on machines with no GPU and no driver; there, create returns
 * ENODEV and available returns 0. Thread-safe.
 */
#ifndef GMS_BACKEND_CUDA_H
#define GMS_BACKEND_CUDA_H

#include "backend/backend.h"

#include <stdio.h>

/* 1 when the driver loads and reports at least one device. Cheap after
 * the first call (the answer is cached). */
int gms__backend_cuda_available(void);

/* A backend on GPU ordinal `device` through its primary context. 0, or
 * ENODEV (no driver, no such device), ENOTSUP (no virtual memory
 * management), ENOMEM, EIO (another driver failure). On failure, a
 * message for the caller is in gms__backend_cuda_why(). */
int gms__backend_cuda_create(int device, gms_backend **out);

/* Why the last failed create or the last failed call on this thread
 * failed, in words; "" when none. */
const char *gms__backend_cuda_why(void);

/* The device's mapping granularity (bytes): chunk sizes, commits and
 * views are multiples of it. */
uint64_t gms__backend_cuda_granularity(const gms_backend *be);

/* Whether the scrub kernel was built in (nvcc was found at build time). */
int gms__backend_cuda_have_kernels(void);

/* Writes the driver calls made so far in this process, per kind, with
 * how many failed (also written at each backend's destroy when the
 * environment has GMS_DRIVER_STATS). */
void gms__backend_cuda_dump_calls(FILE *f);

#endif
