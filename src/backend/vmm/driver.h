/*
 * driver.h: the table a GPU driver fills for the virtual-memory backend
 * (src/backend/vmm/vmm.c), and the one place every driver call goes
 * through (driver.c).
 *
 * CUDA (src/backend/cuda/cuda.c) and HIP (src/backend/hip/hip.c) load
 * their driver with dlopen and fill a gms_drv with small adapters: every
 * call takes the driver's per-device state (dd) first, uses 64-bit device
 * addresses and handles and opaque pointers for streams, events, modules
 * and functions, and returns the driver's own result code (0: success).
 *
 * Every call is made through GMS_DRV (or GMS_DRV_QUIET where a failure is
 * ignored, as in a clean-up): it counts the call per kind and, on failure,
 * notes on this thread "<driver>: <call> (<detail>): <error name>: <error
 * text> (<result type> <code>)" (gms__backend_why, backend.h) and returns
 * the errno value the driver maps the code to. The core adds that note to
 * the message of the failed gms_ call, so the driver's own words reach the
 * user. The counts are process-wide per driver (gms__drv_dump).
 */
#ifndef GMS_BACKEND_VMM_DRIVER_H
#define GMS_BACKEND_VMM_DRIVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The calls, with their arguments after dd (GMS_DRV_ARGS_<call>; the
 * loaders' adapters are defined with them). Streams: NULL is the default
 * stream. Kernel launches are one-dimensional. */
/* The thread's current context (CUDA) or device (HIP). */
#define GMS_DRV_ARGS_get_current (void *dd, uintptr_t *cur)
#define GMS_DRV_ARGS_set_current (void *dd, uintptr_t cur)
#define GMS_DRV_ARGS_va_reserve (void *dd, uint64_t *addr, uint64_t size, uint64_t align)
#define GMS_DRV_ARGS_va_free (void *dd, uint64_t addr, uint64_t size)
/* Physical memory on the device, mapped by mem_map from its start (the
 * drivers map no other offset). */
#define GMS_DRV_ARGS_mem_create (void *dd, uint64_t *handle, uint64_t size)
#define GMS_DRV_ARGS_mem_release (void *dd, uint64_t handle)
#define GMS_DRV_ARGS_mem_map (void *dd, uint64_t addr, uint64_t size, uint64_t handle)
/* Memory that other processes can map (gmsd's leases, docs/broker.md):
 * made exportable, exported as a POSIX file descriptor (the caller owns
 * it), and imported from one (the descriptor stays the caller's). */
#define GMS_DRV_ARGS_mem_create_shareable (void *dd, uint64_t *handle, uint64_t size)
#define GMS_DRV_ARGS_mem_export (void *dd, uint64_t handle, int *fd)
#define GMS_DRV_ARGS_mem_import (void *dd, int fd, uint64_t *handle)
#define GMS_DRV_ARGS_mem_unmap (void *dd, uint64_t addr, uint64_t size)
#define GMS_DRV_ARGS_set_access (void *dd, uint64_t addr, uint64_t size, int writable)
#define GMS_DRV_ARGS_memcpy_htod (void *dd, uint64_t dst, const void *src, size_t len, void *stream)
#define GMS_DRV_ARGS_memcpy_dtoh (void *dd, void *dst, uint64_t src, size_t len, void *stream)
#define GMS_DRV_ARGS_memcpy_dtod (void *dd, uint64_t dst, uint64_t src, size_t len, void *stream)
#define GMS_DRV_ARGS_memset_d8 (void *dd, uint64_t dst, int byte, size_t len, void *stream)
#define GMS_DRV_ARGS_stream_create (void *dd, void **stream) /* non-blocking */
#define GMS_DRV_ARGS_stream_destroy (void *dd, void *stream)
#define GMS_DRV_ARGS_stream_sync (void *dd, void *stream)
/* Whether work queued on stream now would be captured into a graph (or
 * the stream's capture has failed) rather than run: *capturing 1, else 0. */
#define GMS_DRV_ARGS_stream_capturing (void *dd, void *stream, int *capturing)
#define GMS_DRV_ARGS_event_create (void *dd, void **event) /* without timing */
#define GMS_DRV_ARGS_event_record (void *dd, void *event, void *stream)
#define GMS_DRV_ARGS_event_destroy (void *dd, void *event)
#define GMS_DRV_ARGS_stream_wait_event (void *dd, void *stream, void *event)
#define GMS_DRV_ARGS_device_sync (void *dd)
/* Pinned, portable host memory; mapped: seen by the device (host_device_ptr). */
#define GMS_DRV_ARGS_host_alloc (void *dd, void **ptr, size_t size, int mapped)
#define GMS_DRV_ARGS_host_free (void *dd, void *ptr)
#define GMS_DRV_ARGS_host_device_ptr (void *dd, uint64_t *dev, void *ptr)
#define GMS_DRV_ARGS_dev_alloc (void *dd, uint64_t *dev, size_t size)
#define GMS_DRV_ARGS_dev_free (void *dd, uint64_t dev)
#define GMS_DRV_ARGS_module_load (void *dd, void **module, const void *image)
#define GMS_DRV_ARGS_module_unload (void *dd, void *module)
#define GMS_DRV_ARGS_module_function (void *dd, void **fn, void *module, const char *name)
#define GMS_DRV_ARGS_occupancy (void *dd, int *blocks_per_sm, void *fn, unsigned block)
#define GMS_DRV_ARGS_launch \
    (void *dd, void *fn, unsigned grid, unsigned block, void *stream, void **args)
#define GMS_DRV_ARGS_launch_cooperative \
    (void *dd, void *fn, unsigned grid, unsigned block, void *stream, void **args)

#define GMS_DRV_CALLS(X) \
    X(get_current) \
    X(set_current) \
    X(va_reserve) \
    X(va_free) \
    X(mem_create) \
    X(mem_release) \
    X(mem_map) \
    X(mem_unmap) \
    X(mem_create_shareable) \
    X(mem_export) \
    X(mem_import) \
    X(set_access) \
    X(memcpy_htod) \
    X(memcpy_dtoh) \
    X(memcpy_dtod) \
    X(memset_d8) \
    X(stream_create) \
    X(stream_destroy) \
    X(stream_sync) \
    X(stream_capturing) \
    X(event_create) \
    X(event_record) \
    X(event_destroy) \
    X(stream_wait_event) \
    X(device_sync) \
    X(host_alloc) \
    X(host_free) \
    X(host_device_ptr) \
    X(dev_alloc) \
    X(dev_free) \
    X(module_load) \
    X(module_unload) \
    X(module_function) \
    X(occupancy) \
    X(launch) \
    X(launch_cooperative)

/* Call kinds: one per call above, then `setup` for the loaders' own calls
 * (initialisation, device queries), named by their detail. */
#define GMS_DRV_KIND(name) GMS_DRV_##name,
enum { GMS_DRV_CALLS(GMS_DRV_KIND) GMS_DRV_setup, GMS_DRV_NCALLS };
#undef GMS_DRV_KIND

typedef struct gms_drv {
    const char *name;        /* "cuda": the start of every message */
    const char *result_type; /* "CUresult": how the driver's codes are called */
    /* The driver's name of each call ("cuMemMap"), for the messages. */
    const char *call_names[GMS_DRV_NCALLS];
    /* The driver's name and text of a result code (NULL: unknown), and the
     * errno value it stands for (ENOMEM for out of memory, ENOTSUP, EIO). */
    const char *(*error_name)(int rc);
    const char *(*error_string)(int rc);
    int (*errno_of)(int rc);
#define GMS_DRV_FIELD(name) int(*name) GMS_DRV_ARGS_##name;
    GMS_DRV_CALLS(GMS_DRV_FIELD)
#undef GMS_DRV_FIELD
    /* Pool migration across devices (vmm.c's move ops; NULL: the driver
     * cannot, and pools do not move). Physical memory on another device
     * (its ordinal), access to a range for one device, and the count of
     * devices. Counted and worded as mem_create, set_access and setup. */
    int (*mem_create_on)(void *dd, uint64_t *handle, uint64_t size, int device);
    int (*set_access_on)(void *dd, uint64_t addr, uint64_t size, int device, int writable);
    int (*device_count)(void *dd, int *count);
    /* Per kind: calls made and calls failed (relaxed counters), and with
     * `timed` (GMS_DRIVER_STATS set) the nanoseconds they took. */
    unsigned long long _Atomic calls[GMS_DRV_NCALLS];
    unsigned long long _Atomic fails[GMS_DRV_NCALLS];
    unsigned long long _Atomic ns[GMS_DRV_NCALLS];
    bool timed;
} gms_drv;

/* When this thread's driver call began, for `timed` (0: not timed). */
extern _Thread_local uint64_t gms__drv_began;
uint64_t gms__drv_clock(void);
static inline void gms__drv_begin(const gms_drv *d)
{
    if (d->timed)
        gms__drv_began = gms__drv_clock();
}

/* The wrapper: counts a call of this kind that returned rc; on failure
 * notes the driver's words (see above) and returns an errno value, else 0.
 * detail: what the call was for, or NULL. */
int gms__drv_check(gms_drv *d, int kind, const char *detail, int rc);
/* The same for a call whose failure is ignored: counted, nothing noted. */
int gms__drv_quiet(gms_drv *d, int kind, int rc);

/* GMS_DRV(d, call, detail, dd, args...): d->call(dd, args...) through
 * gms__drv_check. */
#define GMS_DRV(d, call, detail, ...) \
    (gms__drv_begin(d), gms__drv_check((d), GMS_DRV_##call, (detail), (d)->call(__VA_ARGS__)))
#define GMS_DRV_QUIET(d, call, ...) \
    (gms__drv_begin(d), gms__drv_quiet((d), GMS_DRV_##call, (d)->call(__VA_ARGS__)))

/* The kind's name ("mem_map"), for dumps. */
const char *gms__drv_kind_name(int kind);
/* Writes one line per kind called so far: kind, driver name, calls, fails
 * and, when timed, the microseconds they took in all and per call. */
void gms__drv_dump(const gms_drv *d, FILE *f);

#endif
