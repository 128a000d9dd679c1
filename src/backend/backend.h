/*
 * backend.h: the narrow interface between the core and a device backend.
 *
 * A backend hands out address space in chunks and maps memory into them
 * granule by granule; it knows nothing of pools, handles or tenants. Every
 * call returns 0 on success or a positive errno value (ENOMEM when memory ran
 * out, another value for any other failure); the core turns that into a
 * GMS_E_* code and a message. Addresses are 64-bit device addresses (host
 * addresses on the host backend). Calls on one chunk are serialised by the
 * caller (the pool's lock); a backend must tolerate calls on different chunks
 * from different threads at once.
 */
#ifndef GMS_BACKEND_H
#define GMS_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

typedef struct gms_backend gms_backend;
typedef struct gms_backend_chunk gms_backend_chunk; /* backend-defined */
typedef struct gms_backend_mem gms_backend_mem;     /* backend-defined */

/* A range of a chunk, in bytes from its base (pool migration). */
typedef struct gms_backend_range {
    uint64_t off, len;
} gms_backend_range;

/* One block's safety work (docs/design.md#safety), executed in batches: check that
 * the check ranges hold the poison pattern, then run the wipe passes over
 * the fill range, overwrite it with the pattern and, if asked, read it back.
 * A check range found broken is overwritten with the pattern too (re-armed,
 * after the caller has been told through `bad`).
 * The pattern byte at address a is byte (a mod 8) of the 64-bit pattern
 * (little-endian), so any range can be checked on its own. */
enum { GMS_SCRUB_MULTIPASS = 1 }; /* zeros, ones, random, zeros first */

typedef struct gms_scrub_item {
    uint64_t check_lo[2], check_hi[2]; /* two ranges; lo == hi: none */
    uint64_t fill_lo[2], fill_hi[2];   /* two ranges; lo == hi: none */
    uint32_t passes;                   /* 0 or GMS_SCRUB_MULTIPASS */
    uint16_t verify;                   /* read the fill back */
    uint16_t zero;                     /* fill with zeros, not the pattern */
    uint64_t bad;        /* out: first address not holding the pattern, 0 if none */
    uint64_t verify_bad; /* out: first address the fill did not take, 0 if none */
} gms_scrub_item;

/* The most items one scrub_async batch may hold. */
#define GMS_SCRUB_ASYNC_MAX 32

/* One checked atomic (include/gms/access.h), its address already checked:
 * a naturally aligned word of width 4 or 8 bytes. result: where the old
 * value goes as an 8-byte word (zero-extended), 0 for nowhere; on the
 * host backend a host address. */
typedef struct gms_atomic_work {
    uint64_t addr;
    uint64_t operand, compare;
    uint64_t result;
    uint32_t op;    /* gms_atomic_op */
    uint32_t width; /* 4 or 8 */
} gms_atomic_work;

/* Backend properties. */
enum {
    /* Unmapping memory and mapping fresh (zeroed) memory later is cheaper
     * than overwriting it (the host, where writing runs at memory speed
     * and faults pages in; not a GPU, where a fill kernel is cheap and
     * remapping is not). Freed blocks then give back their whole granules
     * at once instead of poisoning them. */
    GMS_BACKEND_UNMAP_WIPES = 1,
    /* A map or an unmap costs the device time (a GPU, where each one
     * costs tens of microseconds of driver time and disturbs the work in
     * flight): a pool that keeps unmapping what it maps again soon after
     * may hold up to an eighth more than its peak instead (pool.c). */
    GMS_BACKEND_REMAP_COSTLY = 2,
    /* Each commit is one allocation of the device's (an extent), given
     * back only whole: a decommit must cover whole commits (EINVAL, and
     * nothing changed, otherwise), and a read-only view too (ENOTSUP).
     * The driver's calls cost per allocation, not per byte (vmm.c). */
    GMS_BACKEND_WHOLE_COMMITS = 4
};

/* What a chunk's memory reads as until its granules are first committed
 * (the backend's `fresh`): the core prepares only what does not already
 * read as it should. */
typedef enum gms_fresh {
    GMS_FRESH_UNKNOWN = 0,
    GMS_FRESH_ZEROS,  /* gmsd fills each lease with zeros, and waits for the
                         fill, before any tenant maps it */
    GMS_FRESH_POISON  /* the pattern given to poison_ahead, every byte */
} gms_fresh;

/* One sealed region's work (core/seal.c, docs/sealed.md): AES-256-GCM in
 * place over [addr, addr+len) in chunks of GMS_SEAL_CHUNK bytes (the last
 * may be shorter), chunk i under the 96-bit IV region || counter || i (each
 * big-endian 32-bit; gms_seal_iv in kernels/seal_math.h), no AAD. */
typedef struct gms_seal_job {
    uint64_t addr, len;
    const uint8_t *key;  /* 32 bytes, in the caller's locked memory */
    uint32_t region, counter;
    uint8_t *tags;       /* 16 bytes a chunk: out for seal, in for unseal */
    uint64_t bad;        /* unseal, out: the first chunk whose tag fails;
                            GMS_SEAL_NONE_BAD when every tag holds */
} gms_seal_job;
#define GMS_SEAL_NONE_BAD UINT64_MAX

typedef struct gms_backend_ops {
    const char *name;
    uint32_t props; /* GMS_BACKEND_* */
    /* Reserves size bytes of address space, aligned to align, with nothing
     * mapped and guard space around it, so that an access outside any
     * mapped granule faults. */
    int (*reserve)(gms_backend *be, uint64_t size, uint64_t align,
                   uint64_t *base, gms_backend_chunk **chunk);
    /* Unmaps everything in the chunk and gives the address space back. */
    void (*release)(gms_backend *be, gms_backend_chunk *chunk);
    /* Maps read-write memory at [off, off+len) of the chunk; new memory
     * reads as zeros, except on a backend with scrub_async, where the core
     * zeroes it in stream order (so that commit never waits). */
    int (*commit)(gms_backend *be, gms_backend_chunk *chunk, uint64_t off,
                  uint64_t len);
    /* Unmaps [off, off+len) and returns its memory to the system (whole
     * commits where the backend says GMS_BACKEND_WHOLE_COMMITS). */
    int (*decommit)(gms_backend *be, gms_backend_chunk *chunk, uint64_t off,
                    uint64_t len);
    /* Maps a second, read-only view of committed [off, off+len). */
    int (*map_view_readonly)(gms_backend *be, gms_backend_chunk *chunk,
                             uint64_t off, uint64_t len, uint64_t *view);
    void (*unmap_view)(gms_backend *be, uint64_t view, uint64_t len);
    /* Data movement between the host and committed device memory. */
    int (*write)(gms_backend *be, uint64_t dst, const void *src, size_t len);
    int (*read)(gms_backend *be, void *dst, uint64_t src, size_t len);
    int (*copy)(gms_backend *be, uint64_t dst, uint64_t src, size_t len);
    int (*fill)(gms_backend *be, uint64_t dst, int byte, size_t len);
    /* Runs a batch of safety items; seed drives the random wipe pass. A
     * device backend runs one operation for the whole batch and returns
     * when the results are back. */
    int (*scrub)(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                 uint64_t seed);
    /* Orders the backend's own later work on device memory (data movement,
     * synchronous scrubs) after the work queued on a caller's stream so
     * far; with wait, returns only once that work has finished. NULL: the
     * backend has no streams and nothing is ever pending (the host). */
    int (*order_after)(gms_backend *be, void *stream, int wait);
    /* Stream-ordered safety work (docs/stream-ordered.md). NULL for a
     * backend without streams: the core then runs `scrub` on the spot.
     * ticket_reserve names a batch before it is made: a ticket (never 0;
     * tickets grow) that no later ticket passes in done_upto until it has
     * run; EBUSY: too many batches in flight (the caller falls back to
     * `scrub`). scrub_async then queues that batch, of at most
     * GMS_SCRUB_ASYNC_MAX items, on `stream` (NULL: the default stream),
     * after the work queued there so far, and returns at once; every
     * reserved ticket must be queued once. n may be 0: a marker of that
     * point in the stream. Fill ranges must not overlap check ranges (no
     * order between them is promised). EBUSY: the stream is being
     * captured into a graph, where the batch would run again at every
     * replay; nothing is queued. If it fails, the ticket counts as run and
     * its collect fails. Neither waits for the device. */
    int (*ticket_reserve)(gms_backend *be, uint64_t *ticket);
    int (*scrub_async)(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                       uint64_t seed, void *stream, uint64_t ticket);
    /* 0 once ticket's batch has run, with each item's bad and verify_bad
     * set (items as given to scrub_async, n the same); EAGAIN before; EIO
     * if the device failed. Called once per ticket of a batch that has
     * something to report: a check range or a verified fill. A batch of
     * plain fills (or none: a marker) is never collected. Never waits. */
    int (*scrub_collect)(gms_backend *be, uint64_t ticket, gms_scrub_item *items, size_t n);
    /* Every ticket up to the one returned has run (a query, never a wait). */
    uint64_t (*done_upto)(gms_backend *be);
    /* 1 once this ticket's batch has run, whatever came before it (a
     * query): what work on one stream needs, where stream order says the
     * rest; done_upto is for work on several streams. */
    int (*ticket_done)(gms_backend *be, uint64_t ticket);
    /* Waits until every batch queued so far has run. Never called on the
     * alloc/free path: by gms_verify, gms_trim, the pressure ladder's last
     * step and close, which must read or unmap memory the device may use. */
    int (*quiesce)(gms_backend *be);
    /* Access windows' order between streams (docs/ordering.md). NULL on a
     * backend without streams, where windows order the calls instead.
     * An event marks a point in a stream: event_record moves it to the
     * end of the work queued on `stream` so far (recording it again moves
     * it; waits queued before keep the old point), stream_wait makes
     * later work on `stream` wait for it on the device. Neither waits on
     * the host. */
    int (*event_create)(gms_backend *be, void **event);
    void (*event_destroy)(gms_backend *be, void *event);
    int (*event_record)(gms_backend *be, void *event, void *stream);
    int (*stream_wait)(gms_backend *be, void *stream, void *event);
    /* Checked atomics: queues n operations on `stream` after its work so
     * far (the host: runs them now, in order, with C11 atomics). Items on
     * one word run one after another, in any order on a device. */
    int (*atomic)(gms_backend *be, const gms_atomic_work *w, size_t n, void *stream);
    /* A pinned host word the device can write (its device address in
     * *dev), for gms_atomic's old value; EBUSY when all are taken. NULL
     * on the host backend, where a result address is a host address. */
    int (*host_word_take)(gms_backend *be, volatile uint64_t **host, uint64_t *dev);
    void (*host_word_put)(gms_backend *be, volatile uint64_t *host);
    /* Sealed regions (NULL: unsupported; gms_seal then says so). seal
     * encrypts in place and writes the tags. unseal checks every chunk's
     * tag before it writes anything: when one fails it sets job->bad and
     * returns 0 with memory unchanged; else it decrypts in place.
     * digest_leaves writes HMAC-SHA-256(key, leaf) for each
     * GMS_DIGEST_LEAF-byte leaf of [addr, addr+len) (the last may be
     * shorter) to out, 32 bytes a leaf. All wait for their work. */
    int (*seal)(gms_backend *be, gms_seal_job *job);
    int (*unseal)(gms_backend *be, gms_seal_job *job);
    int (*digest_leaves)(gms_backend *be, uint64_t addr, uint64_t len, const uint8_t key[32],
                         uint8_t *out);
    /* Pool migration (docs/migration.md); NULL: memory cannot move.
     * move_create makes new physical memory on device for the chunk's
     * ranges r (its committed ones, in address order, whole granules),
     * mapped read-write at *staging for the copy in (staging + off is the
     * new memory of the chunk's offset off); the chunk is unchanged.
     * move_remap puts the chunk's ranges and the read-only views of them
     * (views[i] maps [view_off[i], +view_len[i]) of the chunk) onto mem in
     * place: the same addresses, read-write for the device that holds it
     * (views read-only); later commits of the chunk make memory there.
     * All or nothing: on failure the chunk and its views are as they were.
     * On success *old is the memory they left, still mapped at its staging
     * address *old_staging, for the core to wipe. move_release unmaps and
     * frees either kind. */
    int (*move_create)(gms_backend *be, gms_backend_chunk *chunk, int device,
                       const gms_backend_range *r, size_t n, gms_backend_mem **mem,
                       uint64_t *staging);
    int (*move_remap)(gms_backend *be, gms_backend_chunk *chunk, gms_backend_mem *mem,
                      const uint64_t *views, const uint64_t *view_off, const uint64_t *view_len,
                      size_t nviews, gms_backend_mem **old, uint64_t *old_staging);
    void (*move_release)(gms_backend *be, gms_backend_mem *mem);
    /* Devices the backend can place memory on (ordinals 0..n-1). */
    int (*device_count)(gms_backend *be);
    /* What chunk's memory reads as until first committed. NULL: unknown. */
    gms_fresh (*fresh)(gms_backend *be, const gms_backend_chunk *chunk);
    /* With safety on: memory the backend makes ahead of need (gmsd's spare
     * lease) is filled with the poison pattern there, off the allocating
     * thread, so that the first buffer a pool places in it needs no device
     * work. NULL: nothing is made ahead. */
    void (*poison_ahead)(gms_backend *be, uint64_t pattern);
    void (*destroy)(gms_backend *be);
} gms_backend_ops;

struct gms_backend {
    const gms_backend_ops *ops;
    uint64_t granularity;  /* the device's mapping unit: chunk sizes, commits
                              and views are multiples of it (1: none) */
    const char *no_scrub;  /* non-NULL: why the scrub cannot run here (its
                              kernel is missing); safety needs the scrub */
    uint8_t device_uuid[16]; /* the device's UUID (CUDA); zeros: unknown */
};

/* Clears the stream-ordered ops of a table: for a backend (or a wrapper of
 * one) that runs every scrub on the spot. */
static inline void gms__backend_ops_without_streams(gms_backend_ops *ops)
{
    ops->ticket_reserve = NULL;
    ops->scrub_async = NULL;
    ops->scrub_collect = NULL;
    ops->done_upto = NULL;
    ops->ticket_done = NULL;
    ops->quiesce = NULL;
}

/* How the runtime finds and opens a backend, the same for every kind. */
typedef struct gms_backend_factory {
    const char *name;
    /* 1 when the library and a device are present (cached after the first
     * call); host: always. */
    int (*available)(void);
    /* 0 or an errno value; on failure why() says why in words. */
    int (*create)(int device, gms_backend **out);
    const char *(*why)(void);
} gms_backend_factory;

extern const gms_backend_factory gms__backend_host_factory;
extern const gms_backend_factory gms__backend_cuda_factory;
extern const gms_backend_factory gms__backend_hip_factory;

/* A shared counter of fallible operations; the Nth one fails (testing).
 * Lives in the runtime; the failing backend and the core's metadata
 * allocations both draw on it. */
typedef struct gms_failpoint {
    uint64_t nth;                 /* 0: never fail */
    unsigned long long _Atomic calls;
} gms_failpoint;

static inline int gms__failpoint_hit(gms_failpoint *fp)
{
    return fp->nth != 0 && ++fp->calls == fp->nth;
}

/* The backends' own words for their last failure on this thread ("" when
 * none; src/backend/vmm/driver.c): a device backend notes the driver's
 * error there, and the core's message for the failed call ends with it
 * (gms__backend_fail). A backend clears it when one of its ops starts. */
const char *gms__backend_why(void);
void gms__backend_why_clear(void);
/* Maps a backend errno value to a code and a message naming the operation,
 * ending with the backend's note; clears the note. */
int gms__backend_fail(int err, const char *what, uint64_t bytes);
void gms__backend_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int gms__backend_host_create(gms_backend **out);
/* The host's sealed-region ops over host memory, with OpenSSL (host/seal.c). */
int gms__backend_host_seal(gms_backend *be, gms_seal_job *job);
int gms__backend_host_unseal(gms_backend *be, gms_seal_job *job);
int gms__backend_host_digest_leaves(gms_backend *be, uint64_t addr, uint64_t len,
                                   const uint8_t key[32], uint8_t *out);
/* The host backend's ops, and its chunk over a memfd made elsewhere (a
 * broker's lease, broker/broker.c): maps the size-byte fd as the host's
 * reserve maps its own memfd, and owns fd from then on (closing it on
 * failure too); the chunk then works with gms__backend_host_ops. */
extern const gms_backend_ops gms__backend_host_ops;
int gms__backend_host_chunk_from_fd(int fd, uint64_t size, uint64_t align, uint64_t *base,
                                   gms_backend_chunk **out);
/* A host chunk's memfd and first byte (the broker's shares remap a block's
 * pages, broker/broker.c). */
int gms__backend_host_chunk_fd(const gms_backend_chunk *c, uint64_t *base);
/* The broker client backend (broker/broker.c, docs/broker.md): connects
 * to gmsd at the Unix socket path; each reserve is a lease from the broker.
 * *out: the backend whose chunks are the leases: the host's over memfds,
 * or, when gmsd serves CUDA memory, the CUDA backend on device over the
 * memory gmsd exports (backend, a gms_backend_kind, must allow the one
 * gmsd serves: EINVAL otherwise). *conn: the connection, for the calls
 * below (the same as *out on host memory; destroyed with *out).
 * *lease_bytes: the broker's lease size (the runtime's default chunk).
 * 0 or an errno value, with why (why_len bytes) saying why in words. */
/* Who gmsd says this process is (its WELCOME): the tenant, the least
 * level of its contexts, the languages it may use (bit i: gms_language i). */
/* What a lease's descriptor is (WELCOME's memory): a memfd, or a POSIX
 * descriptor of CUDA device memory (cuMemExportToShareableHandle). */
enum { GMS_BROKER_MEMORY_HOST = 0, GMS_BROKER_MEMORY_CUDA = 1 };
typedef struct gms_broker_identity {
    char tenant[64];
    uint32_t level;
    uint32_t languages;
    uint32_t memory; /* GMS_BROKER_MEMORY_* */
} gms_broker_identity;
int gms__backend_broker_create(const char *path, int backend, int device, uint64_t *lease_bytes,
                               gms_broker_identity *id, gms_backend **out, gms_backend **conn,
                               char *why, size_t why_len);

/* Sharing across tenants through gmsd (docs/broker.md, "Sharing across
 * tenants"). Unlike the ops above these return a GMS_E_* code (0: done),
 * gmsd's or their own, with why (why_len bytes) saying why; be is the
 * broker's connection (*conn above, not a wrapper of it). On the host
 * shares are memfds; on CUDA memory, see below.
 *
 * share: the block's pages [addr, addr+len) of a host chunk (whole pages,
 * nothing else in them) become a share of gmsd's: gmsd makes a memfd of
 * len bytes, the bytes are copied into it, gmsd seals it when immutable,
 * and it is mapped over [addr, addr+len) (read-only when immutable), so
 * the owner's buffer is the share's memory from then on; *view: a second,
 * read-only mapping of it. The block holds req bytes at data_off in it.
 * grants: n of them, tenant and user "" for any. *id: gmsd's share id.
 * unshare (the block's last holder gone): the chunk's pages go back under
 * [addr, addr+len) with the share's bytes copied in (so the block's
 * redzones are checked and wiped as any block's), and the owner's hold
 * on the share is released; it returns 0.
 * On CUDA memory (docs/broker.md, "CUDA memory") an immutable share is
 * gmsd's copy of the req bytes at addr + data_off; a mutable one is the
 * chunk's whole lease ([addr, addr+len) is all of it, the block alone in
 * it), which other processes then import and map themselves; *view is 0.
 * Unsharing a mutable one returns 1 after waiting for the device: the
 * chunk's memory went with the share, and the caller gives the chunk up
 * whole rather than wipe or reuse what others still map. */
typedef struct gms_broker_share_grant {
    const char *tenant, *user; /* "" any */
    int language;              /* -1 any */
    unsigned mode;             /* gms_access */
} gms_broker_share_grant;
int gms__broker_share(gms_backend *be, gms_backend_chunk *chunk, uint64_t addr, uint64_t len,
                      uint64_t req, uint64_t data_off, int immutable,
                      const gms_broker_share_grant *grants, unsigned n, uint64_t *id,
                      uint64_t *view, char *why, size_t why_len);
int gms__broker_unshare(gms_backend *be, uint64_t id);
/* acquire: a hold of share id for mode (gms_access), as the context's
 * language and user; the share's memory mapped (read-only for a reader)
 * with guard pages around it: the buffer is req bytes at *addr; the
 * mapping [*map, *map + *map_len) goes with release_hold, which also
 * releases the hold. No descriptor is kept. */
typedef struct gms_broker_hold {
    uint64_t hold, addr, req, map, map_len;
    int immutable;
    int foreign; /* the share's owner is another tenant */
} gms_broker_hold;
int gms__broker_acquire(gms_backend *be, uint64_t id, unsigned mode, int language,
                        const char *user, gms_broker_hold *out, char *why, size_t why_len);
void gms__broker_release_hold(gms_backend *be, uint64_t hold, uint64_t map, uint64_t map_len);
/* transfer: the share held by *hold (this process's only hold of it, of
 * another tenant's share, read-write; the mapping [map, map + map_len) as
 * acquire made it) is taken over by this process's tenant: gmsd charges
 * new memory of its bytes to this tenant (a memfd; a lease on CUDA
 * memory), the bytes are copied into it, it replaces the old memory under
 * the same addresses, and the old hold is released (which returns the
 * first tenant's charge); *hold is the new hold. A refusal (GMS_E_QUOTA,
 * GMS_E_BUSY ...) changes nothing. */
int gms__broker_transfer(gms_backend *be, uint64_t *hold, uint64_t map, uint64_t map_len,
                         char *why, size_t why_len);
/* revoke: no new acquires of share id (the owner's connection only). */
int gms__broker_revoke(gms_backend *be, uint64_t id, char *why, size_t why_len);
/* The HIP backend on GPU ordinal device (src/backend/hip/hip.c): ENODEV
 * when libamdhip64 or the device is absent; hip.h has the rest. */
int gms__backend_hip_create(int device, gms_backend **out);
/* Wraps inner: each fallible call first draws on fp and fails with ENOMEM
 * (commit, reserve, event_create, host_word_take) or EIO (the others)
 * when it is the Nth. Takes ownership of inner. */
int gms__backend_failing_create(gms_backend *inner, gms_failpoint *fp,
                               gms_backend **out);

/* Testing: when set, every runtime opened afterwards wraps its backend
 * with it (tests/core/threads_stream_order.c runs the host backend's work
 * later, as a device would). 0 or an errno; takes ownership of inner. */
extern int (*gms__backend_wrap)(gms_backend *inner, gms_backend **out);

#endif
