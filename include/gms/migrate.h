/*
 * gms/migrate.h: pool placement across devices: migration, failover and
 * load balancing (docs/migration.md).
 *
 * A pool is what one (tenant, level, language) allocates from; every
 * context of that triple shares it. Moving it moves the memory of all of
 * them, under the same addresses: handles, raw pointers, shares and their
 * read-only views stay valid.
 */
#ifndef GMS_MIGRATE_H
#define GMS_MIGRATE_H

#include "gms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Moves the memory of ctx's pool onto device (an ordinal of the runtime's
 * backend; the pool's own device: a fresh placement on the same device).
 * The device work queued so far, on any stream, runs first; the pool's
 * memory must not be used by other threads during the call. New memory
 * is made on device, the data copied there (a peer copy between GPUs),
 * the same address range mapped onto it and the old memory wiped and
 * given back; later allocations of the pool are made there too. On
 * failure the pool stays whole on its old placement (GMS_E_NO_MEMORY: the
 * target ran out; GMS_E_BACKEND: the backend failed, or the pool or a
 * device is lost; GMS_E_UNSUPPORTED: the backend cannot move memory,
 * such as a gmsd lease; GMS_E_INVALID_ARG: no such device). Audited as
 * GMS_AUDIT_MIGRATE. */
GMS_API int gms_pool_migrate(gms_context *ctx, int device);

/* The device ctx's pool is placed on. */
GMS_API int gms_pool_device(gms_context *ctx, int *device);

/* The device a new pool of `bytes` bytes should go on: of the devices
 * not lost that have room for it, the least busy, then the one with the
 * most free memory, then the lowest ordinal (docs/migration.md, "Load
 * balancing"). GMS_E_NO_MEMORY when no device has room. */
GMS_API int gms_device_pick(gms_runtime *rt, uint64_t bytes, int *device);

/* Declares device lost (an unrecoverable error it reported; why: the
 * driver's words): the calls on pools placed there fail from now on with
 * GMS_E_BACKEND naming it and why, rather than waiting on it. Pools moved
 * elsewhere before keep working. Not undone for the runtime's life. */
GMS_API int gms_device_lost(gms_runtime *rt, int device, const char *why);

#ifdef __cplusplus
}
#endif
#endif /* GMS_MIGRATE_H */
