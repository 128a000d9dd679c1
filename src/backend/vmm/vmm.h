/*
 * vmm.h: the GPU backend over a driver's virtual memory API
 * (src/backend/vmm/vmm.c, docs/gpu.md), the same for every driver.
 *
 * A loader (src/backend/cuda/cuda.c, src/backend/hip/hip.c) loads its
 * driver, fills a gms_drv (driver.h), sets the device up (its context,
 * the allocation properties behind mem_create and set_access, the mapping
 * granularity) and hands the result to gms__vmm_create, which does the rest:
 * chunks, granules, views, data movement, staging, and the scrub, waiting
 * and stream-ordered.
 */
#ifndef GMS_BACKEND_VMM_H
#define GMS_BACKEND_VMM_H

#include "backend/backend.h"
#include "backend/vmm/driver.h"

typedef struct gms_vmm_config {
    gms_drv *drv;
    void *dd;                  /* the driver's state for this device: every call's first argument */
    void (*dd_free)(void *dd); /* at destroy (or a failed create), after every other call */
    uintptr_t current;         /* what get_current returns when the device is current */
    uint64_t granularity;      /* a power of two: chunks, commits and views are multiples */
    int sms;                   /* multiprocessors (compute units); 0: unknown */
    int cooperative;           /* the device can run a cooperative launch */
    const void *image;         /* the kernels (src/kernels/scrub.cu, built); NULL: none */
    const char *no_image;      /* why image is NULL */
    const char *kernel_hint;   /* how to get the kernels, for the scrub's ENOSYS message */
    int sync_scrub;            /* 1: no stream-ordered scrub (every scrub waits) */
    const void *seal_image;    /* the sealed-region kernels (src/kernels/seal.cu); NULL: none,
                                  and gms_seal is unsupported */
} gms_vmm_config;

/* A backend named cfg->drv->name. Takes ownership of cfg->dd (dd_free is
 * called on failure too). 0 or an errno value, gms__backend_why saying why. */
int gms__vmm_create(const gms_vmm_config *cfg, gms_backend **out);

/* Chunks that are gmsd's leases (src/backend/broker, docs/broker.md):
 * each reserve takes a lease of the chunk's size (take: 0 with a POSIX
 * descriptor of shareable device memory, which the backend imports and
 * closes, and gmsd's id of it; else an errno value, EDQUOT for the
 * tenant's quota), and each release gives it back once unmapped. done:
 * at the backend's destroy, last. spare_size (0: none): once a chunk of
 * that size is taken, a thread of the backend's keeps one more lease of
 * it taken, imported and mapped ahead, for the next; given back when a
 * chunk of another size needs its quota, and at the destroy. */
typedef struct gms_vmm_leaser {
    const char *name; /* the backend's name from then on */
    uint64_t spare_size;
    void *ctx;
    int (*take)(void *ctx, uint64_t size, int *fd, uint64_t *id);
    void (*give_back)(void *ctx, uint64_t id);
    void (*done)(void *ctx);
} gms_vmm_leaser;
void gms__vmm_set_leaser(gms_backend *be, const gms_vmm_leaser *l);

/* gmsd's side of a lease: size bytes of shareable device memory, filled
 * (waited for) with zeros, or with `from`'s bytes at its start and zeros
 * after them (a copy for a share of CUDA memory, docs/broker.md), and
 * exported as a POSIX descriptor *fd (the caller's to close; fd NULL: not
 * exported, memory only gmsd maps); lease_free releases *handle. 0 or an
 * errno value. */
typedef struct gms_vmm_source {
    uint64_t handle, size; /* an allocation of gmsd's, whole granules */
    uint64_t off, len;     /* the bytes of it to copy */
} gms_vmm_source;
int gms__vmm_lease_make(gms_backend *be, uint64_t size, const gms_vmm_source *from,
                        uint64_t *handle, int *fd);
void gms__vmm_lease_free(gms_backend *be, uint64_t handle);

/* Waits for all work on the backend's device: before gmsd copies a
 * buffer that the program's kernels wrote. 0 or an errno value. */
int gms__vmm_device_sync(gms_backend *be);

/* gmsd's id of the lease chunk c is, and its base address; EINVAL for a
 * chunk of the backend's own memory. */
int gms__vmm_chunk_lease(const gms_backend_chunk *c, uint64_t *lease_id, uint64_t *base);

/* A reader's copy of a share from gmsd: the descriptor fd (size bytes,
 * the caller's to close) imported and mapped whole between guard ranges,
 * read-only unless writable, for the backend's device. */
typedef struct gms_vmm_import {
    uint64_t handle, region, region_size, base, size;
} gms_vmm_import;
int gms__vmm_import(gms_backend *be, int fd, uint64_t size, int writable, gms_vmm_import *out);
void gms__vmm_unimport(gms_backend *be, const gms_vmm_import *imp);
/* A writable import's bytes moved into the allocation gmsd sent as fd (as
 * large), which then takes the import's place under the same addresses:
 * raw pointers stay valid, and nothing of the buffer stays in memory
 * another process may map. The device is waited for first (the program's
 * kernels may still write the buffer). 0 with imp naming the new
 * allocation, or an errno value with imp unchanged. */
int gms__vmm_import_move(gms_backend *be, gms_vmm_import *imp, int fd);

/* Whether the scrub kernel is loaded on this backend. */
int gms__vmm_have_kernels(const gms_backend *be);

#endif
