/*
 * gms/testing.h: knobs for testing gms itself (its tests, gms-inject, the
 * failure paths of a binding's tests).
 *
 * NOT A STABLE API. What is here may change or go in any release, with no
 * version to check and no notice; gms.h's promises do not cover it. A
 * program in production has no use for it.
 */
#ifndef GMS_TESTING_H
#define GMS_TESTING_H

#include "gms.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gms_testing_options {
    /* The Nth fallible internal operation (a backend call or a metadata
     * allocation) fails, counting from 1 at the open; 0: none does. */
    uint64_t fail_nth_call;
} gms_testing_options;

/* gms_runtime_open with the testing knobs: always a private runtime (opts
 * NULL: the defaults). testing NULL: none. */
GMS_API int gms_testing_runtime_open(gms_runtime **out, const gms_runtime_options *opts,
                                     const gms_testing_options *testing);

/* Shifts the clock that dates audit records and names and ages trail
 * segments, for every runtime of the process, by ns nanoseconds (negative:
 * into the past), so tests see rotation and retention without waiting
 * days; 0 puts it back. */
GMS_API void gms_testing_audit_clock_skew(int64_t ns);

/* Record slots per thread shard of the audit ring, for trails opened from
 * now on: a power of two from 2, or 0 for the default. A small ring makes
 * callers meet a full ring (waits in strict mode, drops in lossy mode). */
GMS_API int gms_testing_audit_ring_slots(uint32_t slots);

/* Seals one data key makes before the next seal makes a new one, for
 * every runtime of the process (docs/sealed.md, "IVs"): tests see the key
 * rotate without 2^32 seals. 0 puts back GMS_SEAL_SEALS_PER_KEY. */
GMS_API int gms_testing_seal_key_limit(uint32_t seals);

/* Simulated devices (docs/migration.md): from now on rt has count devices
 * (1 to 64), device i with free_bytes[i] bytes free and busy_percent[i]
 * (0-100) of its time in use, as gms_device_pick and gms_pool_migrate see
 * them; count 0 puts back the backend's own. On the host backend every
 * simulated device's memory is a fresh memfd. */
GMS_API int gms_testing_devices(gms_runtime *rt, int count, const uint64_t *free_bytes,
                                const uint32_t *busy_percent);

/* Simulates device reporting an unrecoverable error in the driver's words
 * why: the path a device backend takes on a sticky error (the pools
 * placed there are lost, gms_device_lost). */
GMS_API int gms_testing_device_fail(gms_runtime *rt, int device, const char *why);

/* Writes a snapshot of rt's memory state to fd (left open), as one JSON
 * document: tenants and their quota counters, pools, chunks and their
 * mapped granules, every block of every chunk, and every share with its
 * grants. Read under the runtime's and every pool's lock, so it is one
 * consistent state. proofs/snapshot/snapshot.py proves tenant isolation on
 * it; docs/proofs.md (section 5) gives the format, which may change with
 * the library. GMS_E_INVALID_ARG for a NULL rt or a negative fd,
 * GMS_E_BACKEND when the write fails (the system's reason in the message),
 * GMS_E_CORRUPTION when a chunk's block list loops, GMS_E_NO_MEMORY. */
GMS_API int gms_testing_snapshot(gms_runtime *rt, int fd);

#ifdef __cplusplus
}
#endif
#endif /* GMS_TESTING_H */
