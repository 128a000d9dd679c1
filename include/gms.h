/*
 * gms.h: the public C API of gms, the only thing language bindings see.
 *
 * gms keeps GPU memory safe when several language runtimes and tenants share
 * one GPU: buffers are named by generational, keyed 64-bit handles that every
 * call validates, every access is bounds-checked, pools never mix tenants,
 * and quotas are enforced atomically.
 *
 * Conventions: every function returns int, GMS_OK (0) or a negative GMS_E_*
 * code; on error nothing was changed and gms_error_last() says why in words.
 * Out-parameters come last, except in gms_runtime_open and
 * gms_context_open, where the object made comes first; a failed call sets
 * them to NULL, GMS_BUF_NULL or 0, or zeroes the struct. Objects returned
 * through them are the caller's to release with the matching close/free;
 * the closes accept NULL.
 *
 * Versioned structs: the structs a caller fills in for gms
 * (gms_runtime_options, gms_context_desc, gms_share_desc, gms_dlpack_desc)
 * start with a uint32_t version, which says which fields the caller's struct
 * has. They only grow, and only at the end: version N + 1 is version N with
 * fields appended. gms accepts every version from 1 to its own, reads only
 * the fields that version has and gives the others their defaults, so a
 * program built against an older gms.h runs with a newer libgms. Version 0,
 * or one newer than the library's, is GMS_E_INVALID_ARG. Set the version
 * with the struct's _INIT macro or _init function. The structs gms fills in
 * for the caller (gms_buf_info, gms_stats, gms_tenant_stats, gms_report)
 * carry no version and do not change: new fields come in a new struct with
 * a new function. Those gms hands to callbacks (gms_violation, gms_pressure)
 * may grow at the end. Knobs for testing gms itself are in gms/testing.h,
 * which is not a stable API.
 *
 * Threading: every function is thread-safe. A gms_context may be used from
 * several threads at once. Calls on contexts of different tenants, levels or
 * languages never wait on one lock (each has its own pool); calls on the same
 * pool serialise on that pool's lock, and bounds-checked access calls hold it
 * for the length of the copy. Closing an object while another thread still
 * uses it is the caller's bug (as with free()).
 */
#ifndef GMS_H
#define GMS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define GMS_API
#else
#define GMS_API __attribute__((visibility("default")))
#endif

#define GMS_VERSION_MAJOR 0
#define GMS_VERSION_MINOR 1
#define GMS_VERSION_PATCH 0
/* The version as one number: major * 10000 + minor * 100 + patch. */
#define GMS_VERSION (GMS_VERSION_MAJOR * 10000 + GMS_VERSION_MINOR * 100 + GMS_VERSION_PATCH)

/* The version of the libgms running, as GMS_VERSION counts it; it may be
 * newer than the gms.h the program was built with. */
GMS_API uint32_t gms_version(void);

/* ---- errors ----------------------------------------------------------- */

enum {
    GMS_OK = 0,
    GMS_E_INVALID_ARG = -1,    /* a NULL, out-of-range or malformed argument */
    GMS_E_INVALID_HANDLE = -2, /* stale, freed, forged or foreign-runtime handle */
    GMS_E_ACCESS_DENIED = -3,  /* the buffer belongs to another context */
    GMS_E_OUT_OF_BOUNDS = -4,  /* an access not wholly inside the buffer */
    GMS_E_QUOTA = -5,          /* the tenant's byte or allocation quota */
    GMS_E_NO_MEMORY = -6,      /* the backend or the host ran out of memory */
    GMS_E_READ_ONLY = -7,      /* a write to a read-only buffer or view */
    GMS_E_CORRUPTION = -8,     /* an invariant was found broken */
    GMS_E_BACKEND = -9,        /* the device backend failed */
    GMS_E_UNSUPPORTED = -10,   /* not available in this build or backend */
    GMS_E_BUSY = -11           /* the object is in use; try again later */
};

/* A static string naming the code ("GMS_E_QUOTA: quota exceeded"). */
GMS_API const char *gms_strerror(int code);

/* The message of the last failed call on this thread; never NULL ("" when
 * there was none). Valid until the next gms call on this thread. */
GMS_API const char *gms_error_last(void);

/* ---- runtime -------------------------------------------------------- */

typedef struct gms_runtime gms_runtime;
typedef struct gms_context gms_context;

typedef enum gms_backend_kind {
    GMS_BACKEND_AUTO = 0, /* a GPU backend when a GPU is present, else host */
    GMS_BACKEND_HOST = 1,
    GMS_BACKEND_CUDA = 2,
    GMS_BACKEND_HIP = 3
} gms_backend_kind;

typedef enum gms_log_level {
    GMS_LOG_ERROR = 0,
    GMS_LOG_WARN = 1, /* leaks reported at context close, corruption */
    GMS_LOG_INFO = 2
} gms_log_level;

/* Receives diagnostics (leak reports, corruption). May be called from any
 * thread that calls into gms, or from the runtime's background threads
 * (the verifier, the collector), with no gms lock held. */
typedef void (*gms_log_fn)(void *user, gms_log_level level, const char *msg);

typedef enum gms_safety_mode {
    GMS_SAFETY_ON = 0,  /* redzones, poison, quarantine, wipe (default) */
    GMS_SAFETY_OFF = 1  /* none of them: for measuring their cost only */
} gms_safety_mode;

typedef enum gms_corruption_policy {
    GMS_ON_CORRUPTION_REPORT = 0, /* report (error, callbacks, audit, log)
                                     and continue (default) */
    GMS_ON_CORRUPTION_ABORT = 1   /* report, then abort() the process */
} gms_corruption_policy;

#define GMS_RUNTIME_OPTIONS_VERSION 2
typedef struct gms_runtime_options {
    uint32_t version;         /* GMS_RUNTIME_OPTIONS_VERSION */
    gms_backend_kind backend; /* AUTO: the GMS_BACKEND variable, else auto */
    int device;               /* GPU ordinal for GPU backends */
    uint64_t granule_bytes;   /* unit of growth and return; power of two,
                                 >= 4096; default 2 MiB (a GPU granule) */
    uint64_t chunk_bytes;     /* address space reserved per pool chunk;
                                 default 16 GiB (reserving costs no memory) */
    uint64_t retain_bytes;    /* free granules a pool keeps mapped to avoid
                                 remapping; 0: what the recent peak needs
                                 (docs/stream-ordered.md) */
    gms_log_fn log;           /* NULL: warnings and errors go to stderr */
    void *log_user;
    uint64_t reserved;        /* must be 0 (it held a testing knob, now in
                                 gms/testing.h) */
    /* The audit trail (docs/audit.md). NULL audit_dir: no trail, unless the
     * GMS_AUDIT_DIR variable names one. The HMAC key comes from audit_key
     * (audit_key_len bytes, at least 16) or from the file audit_key_file
     * (or GMS_AUDIT_KEY_FILE); a trail needs one of them. */
    const char *audit_dir;
    const uint8_t *audit_key;
    size_t audit_key_len;
    const char *audit_key_file;
    int audit_lossy;               /* 0: a full ring blocks the caller (no
                                      record is ever lost); 1: drop and
                                      count the drops in the trail */
    uint64_t audit_segment_bytes;  /* rotate segments at this size; 0: 64 MiB;
                                      at most 1 GiB (GMS_E_INVALID_ARG above) */
    uint32_t audit_retention_days; /* delete older segments; 0: 90 days */
    /* Safety (docs/safety.md). */
    gms_safety_mode safety;
    uint32_t redzone_bytes;      /* at least this many pattern bytes after
                                    each buffer (and, where a neighbour
                                    precedes it, before); 0: 32; max 4096 */
    uint64_t quarantine_bytes;   /* freed bytes held back from reuse;
                                    0: max(1 MiB, live/256) */
    uint64_t quarantine_blocks;  /* freed blocks held back; 0: 1024 */
    uint32_t scrub_batch;        /* no longer used (frees are gathered per
                                    stream, docs/stream-ordered.md); at
                                    most 65536 */
    uint32_t verify_interval_ms; /* background verifier period; 0: none */
    gms_corruption_policy on_corruption;
    int secret_multipass;        /* SECRET pools: overwrite freed memory with
                                    zeros, ones, random, zeros before the
                                    poison */
    uint64_t max_held_bytes;     /* device memory this runtime may map, all
                                    pools together (a process's share of a
                                    GPU); 0: no limit but the device's */
    /* Version 2. */
    const char *broker;          /* gmsd's Unix socket (1-107 bytes, read
                                    during the open only): memory comes
                                    from the broker (docs/broker.md), and
                                    GMS_BROKER is not read; NULL: the
                                    GMS_BROKER variable, else no broker */
} gms_runtime_options;

#define GMS_RUNTIME_OPTIONS_INIT                                              \
    { GMS_RUNTIME_OPTIONS_VERSION, GMS_BACKEND_AUTO, 0, 0, 0, 0, NULL, NULL, \
      0, NULL, NULL, 0, NULL, 0, 0, 0, GMS_SAFETY_ON, 0, 0, 0, 0, 0,         \
      GMS_ON_CORRUPTION_REPORT, 0, 0, NULL }
/* Sets *opts to the defaults of `version` (GMS_RUNTIME_OPTIONS_VERSION),
 * as GMS_RUNTIME_OPTIONS_INIT does, writing only that version's fields.
 * GMS_E_INVALID_ARG for a NULL opts or an unknown version. In C,
 * gms_runtime_options_init(opts) calls it with the header's version; the
 * function of that name, for bindings that call it by name, fills version
 * 1 and does nothing for NULL. gms_context_desc_init and
 * gms_share_desc_init work the same way. */
GMS_API int gms_runtime_options_init_version(gms_runtime_options *opts, uint32_t version);
GMS_API void gms_runtime_options_init(gms_runtime_options *opts);
#define gms_runtime_options_init(opts) \
    ((void)gms_runtime_options_init_version((opts), GMS_RUNTIME_OPTIONS_VERSION))

/* With opts == NULL every caller in the process gets the same
 * reference-counted runtime, so all languages loaded in one process share
 * it; each open is matched by one close. With options, a private runtime. */
GMS_API int gms_runtime_open(gms_runtime **out, const gms_runtime_options *opts);
/* Closes contexts still open (reporting their leaks) on the last close. */
GMS_API void gms_runtime_close(gms_runtime *rt);
/* Returns once every audit record of operations that returned before the
 * call is written and sealed to disk. GMS_E_UNSUPPORTED without a trail. */
GMS_API int gms_audit_flush(gms_runtime *rt);

/* "host", "cuda" or "hip". */
GMS_API const char *gms_runtime_backend_name(const gms_runtime *rt);

/* ---- contexts: who is acting ------------------------------------------- */

typedef enum gms_level {
    GMS_LEVEL_PUBLIC = 0,
    GMS_LEVEL_INTERNAL = 1,
    GMS_LEVEL_CONFIDENTIAL = 2,
    GMS_LEVEL_SECRET = 3
} gms_level;

typedef enum gms_language {
    GMS_LANG_C = 0,
    GMS_LANG_RUST = 1,
    GMS_LANG_ELIXIR = 2,
    GMS_LANG_JULIA = 3,
    GMS_LANG_ZIG = 4,
    GMS_LANG_NIM = 5,
    GMS_LANG_PYTHON = 6,
    GMS_LANG_OTHER = 7
} gms_language;

/* Tenant and user names: 1..GMS_NAME_MAX bytes of printable ASCII. */
#define GMS_NAME_MAX 63

#define GMS_CONTEXT_DESC_VERSION 1
typedef struct gms_context_desc {
    uint32_t version; /* GMS_CONTEXT_DESC_VERSION */
    const char *tenant;
    const char *user;
    gms_level level;
    gms_language language;
} gms_context_desc;

#define GMS_CONTEXT_DESC_INIT \
    { GMS_CONTEXT_DESC_VERSION, NULL, NULL, GMS_LEVEL_INTERNAL, GMS_LANG_C }
GMS_API int gms_context_desc_init_version(gms_context_desc *desc, uint32_t version);
GMS_API void gms_context_desc_init(gms_context_desc *desc);
#define gms_context_desc_init(desc) \
    ((void)gms_context_desc_init_version((desc), GMS_CONTEXT_DESC_VERSION))

/* Buffers live in the pool of the context's (tenant, level, language). */
GMS_API int gms_context_open(gms_context **out, gms_runtime *rt,
                             const gms_context_desc *desc);
/* Buffers the context still holds are leaks: they are reported (log and
 * stats) and reclaimed. */
GMS_API void gms_context_close(gms_context *ctx);

GMS_API const char *gms_level_name(gms_level level);
GMS_API const char *gms_language_name(gms_language language);

/* ---- quotas ---------------------------------------------------------- */

#define GMS_UNLIMITED UINT64_MAX

/* Limits the tenant's live bytes (block sizes: the size asked for plus, with
 * safety on, the redzone, rounded up to the 256-byte alignment) and live
 * allocations; GMS_UNLIMITED lifts a limit. A limit below
 * current use refuses new allocations and keeps existing ones. */
GMS_API int gms_tenant_set_quota(gms_runtime *rt, const char *tenant,
                                 uint64_t max_bytes, uint64_t max_allocs);

/* ---- buffers --------------------------------------------------------- */

/* A buffer handle: slot, generation and check bits keyed by a per-runtime
 * secret. 0 (GMS_BUF_NULL) is never a valid handle. */
typedef uint64_t gms_buf;
#define GMS_BUF_NULL ((gms_buf)0)

/* Every allocation is aligned to GMS_ALIGNMENT bytes. */
#define GMS_ALIGNMENT 256u

enum {
    GMS_ALLOC_ZERO = 1u << 0, /* fill with zeros before returning */
    /* Start on a page boundary and own whole pages (granules on a GPU: 2
     * MiB), at the cost of rounding the block up to them: an immutable
     * share of the buffer is then a read-only mapping, enforced by the
     * MMU, rather than a hash checked after the fact. Under a gmsd
     * serving CUDA memory the buffer gets a lease of its own (a round
     * trip to gmsd and an import: see docs/broker.md, "Costs"), which a
     * mutable share to another tenant hands out whole. */
    GMS_ALLOC_PAGES = 1u << 1
};

/* When the memory or the quota is short, runs the pressure ladder first
 * (see gms_on_pressure); GMS_E_NO_MEMORY or GMS_E_QUOTA only if that did
 * not help. The buffer is ready for any stream when it returns: on a GPU
 * this waits for the device only when new memory had to be prepared or
 * GMS_ALLOC_ZERO was asked for (gms_alloc_async never waits). */
GMS_API int gms_alloc(gms_context *ctx, size_t size, uint32_t flags,
                      gms_buf *out);
/* Drops the caller's handle. A buffer shared with other holders lives on
 * until the last of them releases it; then it is checked, wiped and freed.
 * gms_release is the same call under the sharing API's name. */
GMS_API int gms_free(gms_context *ctx, gms_buf buf);
/* Stream-ordered allocation and free, as cudaMallocAsync/cudaFreeAsync
 * (docs/stream-ordered.md). `stream` is a CUDA stream (CUstream, opaque
 * here); NULL is the legacy default stream. Neither call waits for the GPU.
 *
 * gms_alloc_async: the buffer may be used by work queued on `stream` after
 * the call (on another stream once that stream waits for this one). A block
 * freed on the same stream is reused at once; one freed on another stream
 * only once the device has passed that free (found by a query, never a
 * wait). New memory's zeroing and poisoning are queued on `stream` too.
 *
 * gms_free_async: the handle dies at once; the memory's check, wipe and
 * poison are queued on `stream` after the work queued there so far, and
 * their results are collected later (within the bound docs/safety.md
 * states): a corruption found then is reported through the violation
 * callbacks, the audit trail and the log. gms_free is gms_free_async on
 * the default stream for a buffer the device no longer uses.
 * Not a stream under CUDA-graph capture: gms's own work queued there would
 * be captured instead of run (docs/stream-ordered.md says what to do).
 * On the host backend, which has no streams, both are gms_alloc/gms_free. */
GMS_API int gms_alloc_async(gms_context *ctx, size_t size, uint32_t flags,
                            void *stream, gms_buf *out);
GMS_API int gms_free_async(gms_context *ctx, gms_buf buf, void *stream);

typedef struct gms_buf_info {
    uint64_t size;       /* bytes requested */
    uint64_t block_size; /* bytes reserved: size (+ redzone with safety on),
                            rounded up to the alignment */
    uint64_t device_ptr; /* device address (host address on the host backend) */
    uint64_t pool_id;
    uint32_t flags;      /* the GMS_ALLOC_* flags it was made with */
    gms_level level;
    gms_language language;
    char tenant[GMS_NAME_MAX + 1]; /* owner */
    char user[GMS_NAME_MAX + 1];   /* who allocated it */
    uint32_t access;     /* this handle's gms_access: READ_WRITE for an
                            owner of an unshared or mutable buffer */
    uint32_t holders;    /* handles alive on the buffer, this one included */
    uint64_t share_id;   /* its share, 0 when not shared */
    int immutable;       /* shared immutable: nobody may write it */
    int read_only_view;  /* gms_buf_ptr gives a read-only mapping, so a
                            write through it faults (device_ptr is it;
                            0 when this handle gets no raw pointer) */
} gms_buf_info;

GMS_API int gms_buf_info_get(gms_context *ctx, gms_buf buf, gms_buf_info *out);
/* The name the API contract uses. */
#define gms_buf_info(ctx, buf, out) gms_buf_info_get((ctx), (buf), (out))

/* The raw device pointer: unchecked access, for kernels and frameworks.
 * A holder that may only read (every holder of an immutable share, its
 * owner included) gets a read-only mapping where the block owns whole pages
 * (granules on a GPU); without one, a reader of another tenant gets no
 * pointer (GMS_E_ACCESS_DENIED). See docs/sharing.md. */
GMS_API int gms_buf_ptr(gms_context *ctx, gms_buf buf, void **out);

/* Bounds-checked access. An access not wholly inside the buffer (an offset
 * plus length that overflows included) returns GMS_E_OUT_OF_BOUNDS and
 * touches nothing. A length of 0 is valid. gms_copy handles overlap.
 * While another holder of a shared buffer has a conflicting access window
 * open or waiting (gms/access.h: a writer's for a read, any for a write),
 * they return GMS_E_BUSY and touch nothing. */
GMS_API int gms_write(gms_context *ctx, gms_buf dst, uint64_t off,
                      const void *src, size_t len);
GMS_API int gms_read(gms_context *ctx, gms_buf src, uint64_t off, void *dst,
                     size_t len);
GMS_API int gms_copy(gms_context *ctx, gms_buf dst, uint64_t dst_off,
                     gms_buf src, uint64_t src_off, size_t len);
GMS_API int gms_fill(gms_context *ctx, gms_buf dst, uint64_t off, int byte,
                     size_t len);

/* ---- sharing between contexts (docs/sharing.md) -------------------------
 *
 * A share makes one buffer available to other contexts: other languages,
 * users or tenants. Every holder has its own handle, so a holder's double
 * release or use after release is caught without hurting the others, and
 * the buffer is wiped and freed when the last handle goes, whoever holds it.
 * The memory stays in the owner's pool and on the owner's tenant's quota. */

typedef uint64_t gms_share_id; /* keyed like handles: not guessable */

typedef enum gms_access {
    GMS_ACCESS_READ = 1,
    GMS_ACCESS_READ_WRITE = 2
} gms_access;

#define GMS_ANY_LANGUAGE (-1)

/* One entry of a share's access list: a context may acquire if its tenant,
 * user and language match an entry, up to that entry's mode. */
typedef struct gms_share_grant {
    const char *tenant; /* NULL: the owner's tenant; "*": any tenant */
    const char *user;   /* NULL: any user */
    int language;       /* a gms_language, or GMS_ANY_LANGUAGE */
    gms_access mode;    /* the most this entry allows */
} gms_share_grant;

#define GMS_SHARE_GRANTS_MAX 16

#define GMS_SHARE_DESC_VERSION 1
typedef struct gms_share_desc {
    uint32_t version; /* GMS_SHARE_DESC_VERSION */
    const gms_share_grant *grants; /* 1..GMS_SHARE_GRANTS_MAX entries */
    size_t ngrants;
    /* Nobody writes the buffer any more, its owner included: checked calls
     * get GMS_E_READ_ONLY; raw pointers got after the share are read-only
     * mappings where the block owns whole pages (granules on a GPU), and
     * otherwise its contents get a keyed MAC now, checked by gms_verify and
     * at the last release (a change is a GMS_VIOLATION_IMMUTABLE_WRITE). */
    int immutable;
} gms_share_desc;

#define GMS_SHARE_DESC_INIT { GMS_SHARE_DESC_VERSION, NULL, 0, 0 }
GMS_API int gms_share_desc_init_version(gms_share_desc *desc, uint32_t version);
GMS_API void gms_share_desc_init(gms_share_desc *desc);
#define gms_share_desc_init(desc) \
    ((void)gms_share_desc_init_version((desc), GMS_SHARE_DESC_VERSION))

/* Shares buf, which the owner context holds. One share per buffer: a
 * second gms_share gets GMS_E_BUSY. */
GMS_API int gms_share(gms_context *owner, gms_buf buf, const gms_share_desc *desc,
                      gms_share_id *out);
/* Gives ctx its own handle on the shared buffer (one more holder).
 * GMS_E_ACCESS_DENIED when no grant lets ctx in or the share was revoked,
 * GMS_E_READ_ONLY for READ_WRITE on an immutable share, GMS_E_BUSY for
 * READ_WRITE while another holder (the owner included) can write: a mutable
 * share has one writer at a time. GMS_E_INVALID_HANDLE when the id is not a
 * live share. */
GMS_API int gms_acquire(gms_context *ctx, gms_share_id id, gms_access mode, gms_buf *out);
/* Drops ctx's handle (gms_free under another name); gms_free_async orders
 * the drop after a stream. */
GMS_API int gms_release(gms_context *ctx, gms_buf buf);
/* Moves exclusive ownership of buf, which from holds alone, to `to`: buf is
 * dead when the call returns and *out is to's handle. Within one tenant, to
 * a context of the same or a lower level, the buffer does not move (no
 * copy, same address). To another tenant or a higher level it is copied
 * into to's pool (on to's quota) and the original wiped, so tenants never
 * share a page and memory is wiped as its holder's level asks.
 * GMS_E_BUSY when other holders exist or it is shared. */
GMS_API int gms_transfer(gms_context *from, gms_buf buf, gms_context *to, gms_buf *out);
/* gms_transfer once the device work queued on stream so far has finished,
 * so the next holder never sees a half-written buffer (waits for it). */
GMS_API int gms_transfer_async(gms_context *from, gms_buf buf, gms_context *to,
                               void *stream, gms_buf *out);
/* Stops new acquires of the share; holders keep their handles. Only the
 * context that made the share may revoke it. */
GMS_API int gms_revoke(gms_context *owner, gms_share_id id);

/* ---- memory pressure -------------------------------------------------
 *
 * An allocation that would fail runs a ladder, retrying after each step:
 * (1) scrub and drain the pool's quarantine, (2) return every unused mapped
 * granule (gms_trim), (3) call the pressure callbacks, which should make
 * their runtime release what it no longer uses (a garbage collection).
 * After the callbacks, steps 1-2 run again (what they released is in
 * quarantine or cached), and the callbacks are called again, up to 8
 * rounds, while each round releases something. */

typedef struct gms_pressure {
    const char *tenant;    /* whose allocation failed */
    uint64_t bytes_wanted; /* the size asked for */
    int reason;            /* GMS_E_NO_MEMORY or GMS_E_QUOTA */
} gms_pressure;

/* Called on the allocating thread with no gms lock held; it may free and
 * release buffers of any context. An allocation made from inside a
 * callback does not run the ladder again. */
typedef void (*gms_pressure_fn)(void *user, const gms_pressure *p);

/* Registers a callback (at most 16 per runtime). */
GMS_API int gms_on_pressure(gms_runtime *rt, gms_pressure_fn fn, void *user);

/* ---- statistics and verification -------------------------------------- */

typedef struct gms_stats {
    uint64_t live_bytes;      /* sum of live block sizes */
    uint64_t live_blocks;
    uint64_t peak_live_bytes;
    uint64_t held_bytes;      /* mapped from the backend, whole granules */
    uint64_t peak_held_bytes;
    uint64_t reserved_bytes;  /* address space reserved */
    double fragmentation;     /* 1 - live/held now; 0 when nothing is held */
    uint64_t allocs;          /* successful allocations since open */
    uint64_t frees;
    uint64_t quota_refusals;
    uint64_t leaked_blocks;   /* reclaimed at context close */
    uint64_t leaked_bytes;
    uint64_t pools;
    uint64_t contexts;        /* open now */
    uint64_t tenants;         /* index range of gms_tenant_stats_get */
    uint64_t shares;          /* live shares */
    uint64_t pressure_events; /* allocations that ran the pressure ladder */
    uint64_t pressure_recovered; /* ...and then succeeded */
    uint64_t pressure_steps;  /* ladder steps run, all events together */
    /* The slow calls a workload pays for (docs/stream-ordered.md): runs of
     * granules mapped and unmapped, and waits for the device. In steady
     * state all three stay still. */
    uint64_t maps, unmaps, device_waits;
} gms_stats;

typedef struct gms_tenant_stats {
    char tenant[GMS_NAME_MAX + 1];
    uint64_t live_bytes;
    uint64_t live_blocks;
    uint64_t peak_live_bytes;
    uint64_t held_bytes;
    uint64_t max_bytes;  /* quota; GMS_UNLIMITED when none */
    uint64_t max_allocs;
    uint64_t quota_refusals;
    uint64_t leaked_blocks;
    uint64_t leaked_bytes;
} gms_tenant_stats;

GMS_API int gms_stats_get(gms_runtime *rt, gms_stats *out);
/* The name the API contract uses. */
#define gms_stats(rt, out) gms_stats_get((rt), (out))
/* Tenants in the order they first appeared; index < gms_stats.tenants. */
GMS_API int gms_tenant_stats_get(gms_runtime *rt, uint64_t index,
                                 gms_tenant_stats *out);

/* Returns to the backend now every mapped granule that no buffer uses; it
 * first waits for the device work queued so far, which may still use them.
 * Without it, a pool keeps mapped what its recent peak needed
 * (docs/stream-ordered.md, "The retain policy"): that mark holds while the
 * workload comes back within 1/8 of its peak, then its excess halves every
 * 2 s. Empty granules beyond it go back once unused for 100 ms (checked at
 * the pool's next alloc or free), when the pool must grow, or when its last
 * context closes. So a training step finds the memory the last one freed
 * still mapped, which on a GPU saves tens of microseconds per 2 MiB. */
GMS_API int gms_trim(gms_runtime *rt);
/* Waits until the device has run the safety work queued so far (scrubs of
 * freed buffers, quarantine checks) and reports what it found, through the
 * violation callbacks, the audit trail and the log, before it returns.
 * Without it such findings arrive within the bound docs/safety.md states,
 * on the runtime's collector thread. A checkpoint for tests and audits;
 * never needed for correctness. */
GMS_API int gms_sync(gms_runtime *rt);

typedef struct gms_report {
    uint64_t pools;
    uint64_t chunks;
    uint64_t live_blocks;
    uint64_t free_blocks;
    uint64_t live_handles;
    uint64_t violations;
    char first_violation[512]; /* "" when none */
} gms_report;

/* Walks all state and checks the invariants: blocks do not overlap and lie
 * in their pool's chunks, pools hold one (tenant, level, language), every
 * live handle names a live block and back, held granules match live blocks,
 * redzones, quarantined and free memory hold the poison (with safety on;
 * what is found also goes to the violation callbacks), quota accounting
 * equals live blocks per tenant. Returns 0 when all hold,
 * GMS_E_CORRUPTION otherwise (the first violation in out and the message).
 * out may be NULL. Holds every pool's lock for the walk, so it sees one
 * consistent state: a full walk, not a fast path. */
GMS_API int gms_verify(gms_runtime *rt, gms_report *out);

/* ---- corruption reports ----------------------------------------------- */

typedef enum gms_violation_kind {
    GMS_VIOLATION_OVERFLOW = 1,         /* bytes after a buffer were written */
    GMS_VIOLATION_UNDERFLOW = 2,        /* bytes before a buffer were written */
    GMS_VIOLATION_WRITE_AFTER_FREE = 3, /* a quarantined block was written */
    GMS_VIOLATION_FREE_MEMORY = 4,      /* free memory was written */
    GMS_VIOLATION_WIPE_FAILED = 5,      /* a wipe did not read back */
    GMS_VIOLATION_INVARIANT = 6,        /* gms_verify found state broken */
    GMS_VIOLATION_IMMUTABLE_WRITE = 7   /* an immutable share was changed */
} gms_violation_kind;

typedef struct gms_violation {
    gms_violation_kind kind;
    const char *tenant;   /* the pool's tenant */
    gms_buf handle;       /* the buffer's handle (maybe no longer live) */
    uint64_t address;     /* the first byte found changed (for an
                             immutable share, whose hash cannot say
                             which, the buffer's start) */
    int64_t offset;       /* of that byte from the buffer's start */
    uint64_t size;        /* the buffer's size */
    const char *message;  /* what was found where, with the block's history */
} gms_violation;

/* Called on every detected corruption, from the thread that found it (a
 * caller's, the background verifier's, or the collector's, which gathers
 * what the device found), with no gms lock held; the pointers are valid
 * during the call only. */
typedef void (*gms_violation_fn)(void *user, const gms_violation *v);

/* Registers a callback (at most 16 per runtime). */
GMS_API int gms_on_violation(gms_runtime *rt, gms_violation_fn fn, void *user);

#include "gms/audit.h"

#ifdef __cplusplus
}
#endif
#endif /* GMS_H */
