/*
 * pool.h: the core's memory layer: the data structures of the runtime, its
 * tenants, contexts and pools, and the functions of the handle table
 * (handle.c), the TLSF lists (tlsf.c), pools, chunks, granules and device
 * work (pool.c) and the runtime's services (services.c). The safety layer
 * (src/safety) builds on this header; the rest of the core
 * (core/internal.h) builds on both (docs/design.md, "Layers").
 *
 * Ownership and locking, in one place:
 * - gms_runtime: rt->lock guards the lists of tenants, pools and contexts
 *   (changed only at open/close). Never taken on the alloc/free path.
 * - gms_pool: pool->lock guards everything in the pool: its sub-allocator,
 *   chunks, granules, block nodes, its handle-table slots and the live lists
 *   of its contexts. Pools of different (tenant, level, language) share no
 *   lock. Lock order: rt->lock, then pool locks in pool-list order (rank
 *   order), then rt->handles.lock, a leaf.
 * - Handle-table pages are published once with release stores and never
 *   freed before the runtime, so a handle can be looked up without a lock;
 *   a slot's handle word and owner are atomic for that reason. A slot
 *   belongs to one pool at a time: pools take free slots from the
 *   runtime's list in batches and give back what they do not need, so the
 *   table is shared by all tenants, not carved up among them for good.
 * - A pool record lives until the runtime closes; once nothing of it is in
 *   use it gives everything back and waits, idle, to serve the next new
 *   (tenant, level, language). So a stale pointer to a pool (from a slot
 *   looked up without a lock) always names a pool record, and the caller
 *   checks under its lock that the slot is still that pool's.
 * - Tenant counters are atomics: several pools draw on one tenant's quota.
 */
#ifndef GMS_CORE_POOL_H
#define GMS_CORE_POOL_H

#include "gms.h"
#include "base/base.h"
#include "backend/backend.h"
#include "audit/audit.h"
#include "gms/dlpack.h"
#include "gms/seal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

/* Largest buffer (an allocation, an imported tensor): far above any
 * device, far below where sizes overflow. */
#define GMS_MAX_ALLOC (1ull << 52)

/* ---- handles (handle.c) ----
 * A handle is parity (1 bit) | slot (24 bits) | generation (19 bits) |
 * check (20 bits). The check bits are a keyed hash of the slot and the
 * slot's full 64-bit generation, so a handle whose 19-bit generation
 * wrapped around is still refused except with probability 2^-20, and a
 * random 64-bit value passes only if it names a live slot, its generation
 * and its check bits. The top bit gives every handle an even number of
 * set bits: two handles differ in at least two bits, so a handle with one
 * bit flipped (a corrupted word) is refused always, not just probably. */
#define GMS_SLOT_BITS 24
#define GMS_GEN_BITS 19
#define GMS_CHECK_BITS 20
#define GMS_SLOT_SHIFT (GMS_GEN_BITS + GMS_CHECK_BITS)
#define GMS_SLOTS_PER_PAGE 4096u
#define GMS_SLOT_PAGES ((1u << GMS_SLOT_BITS) / GMS_SLOTS_PER_PAGE)

typedef struct gms_block gms_block;
typedef struct gms_pool gms_pool;
typedef struct gms_pending gms_pending;

/* A slot names a block for one holder (a buffer handle), or names a share
 * of it (the share id is the slot's handle word). */
enum { GMS_SLOT_HANDLE = 0, GMS_SLOT_SHARE = 1 };

typedef struct gms_slot {
    uint64_t _Atomic handle; /* the live handle or share id, 0 when free */
    gms_pool *_Atomic pool;  /* its pool; NULL in the runtime's free list */
    uint64_t gen;            /* full generation; bumped at every free, never
                                reset, whichever pool the slot serves */
    gms_block *block;        /* the live block */
    gms_context *holder;     /* whose handle it is (HANDLE slots) */
    uint32_t next_free;      /* free-slot list (its pool's or the
                                runtime's); 0 ends it */
    uint8_t kind;            /* GMS_SLOT_* */
    uint8_t mode;            /* the handle's gms_access */
    bool exported;           /* a DLPack export's own handle: it outlives
                                its context (holder NULL once that closed,
                                charged to the pool's tenant) */
    /* The holder's list of handles on blocks it does not own through its
     * live list (acquired, transferred across pools, exported, imported);
     * guarded by the holder's holds_lock. */
    struct gms_slot *hold_next, *hold_prev;
} gms_slot;

typedef struct gms_slot_page {
    gms_slot slots[GMS_SLOTS_PER_PAGE];
} gms_slot_page;

/* Slots a pool takes from the runtime at once, and keeps free at most
 * twice over: the runtime-wide lock is taken once per batch. */
#define GMS_SLOT_BATCH 64u
/* The handle table keeps its last 1/GMS_SLOT_RESERVE_SHARE slots for
 * tenants holding fewer than GMS_SLOT_SMALL_TENANT handles, so one tenant
 * never takes what another needs to start (api.md, "What a tenant can
 * exhaust"). With the full table: 524,287 slots kept, 16,252,928 for any
 * one tenant. */
#define GMS_SLOT_RESERVE_SHARE 32u
#define GMS_SLOT_SMALL_TENANT 1024u
/* Testing: the slots of runtimes opened afterwards (0: the full table). */
extern uint32_t gms__handle_slots_max;

/* ---- block nodes: host-side metadata, never inside managed memory ---- */

/* A block is FREE (in the TLSF lists, poisoned), LIVE (a handle names it)
 * or QUARANTINE (freed, its scrub queued, waiting before reuse). Granules
 * count every block that is not FREE. */
enum { GMS_BLOCK_FREE = 1, GMS_BLOCK_LIVE = 2, GMS_BLOCK_QUARANTINE = 4 };

/* Stream order (docs/stream-ordered.md). Device work is queued on streams
 * and named by tickets that grow; ticket 0 is work already done. A free or
 * quarantined block carries the stream and ticket of the last device work
 * on its memory: an allocation on that stream may use it at once, any
 * other once the device has run every ticket up to it. A live block
 * carries the stream it was allocated on and the last ticket its memory
 * waits for. Blocks merged from several streams get GMS_STREAM_MIXED. */
#define GMS_STREAM_MIXED ((void *)UINTPTR_MAX)
/* The stream of gms_alloc: none in particular, so the buffer must be ready
 * for any stream when the call returns. Its device work is queued on the
 * default stream. */
#define GMS_STREAM_ANY ((void *)(UINTPTR_MAX - 1))

/* The stream device work for a block of stream s is queued on. */
static inline void *gms__queue_stream(void *s)
{
    return s == GMS_STREAM_ANY || s == GMS_STREAM_MIXED ? NULL : s;
}

/* Adds device work (s, t) to a stream tag (*stream, *ticket): the work on
 * some memory, the last of it t; GMS_STREAM_MIXED once it spans streams. */
static inline void gms__tag_add(void **stream, uint64_t *ticket, void *s, uint64_t t)
{
    if (t == 0)
        return;
    if (*ticket == 0)
        *stream = s;
    else if (*stream != s)
        *stream = GMS_STREAM_MIXED;
    if (t > *ticket)
        *ticket = t;
}

/* Whether the device has run the work a stream tag names. On one stream,
 * its last ticket having run says so (stream order); across streams every
 * ticket up to it must have run. *done caches the backend's watermark (0:
 * not asked yet). A query, never a wait. */
bool gms__tag_ran(gms_runtime *rt, void *stream, uint64_t ticket, uint64_t *done);

typedef struct gms_chunk gms_chunk;

struct gms_block {
    uint64_t addr; /* device address */
    uint64_t size; /* multiple of GMS_ALIGNMENT */
    gms_block *prev_phys, *next_phys; /* neighbours in address order */
    gms_chunk *chunk;
    uint32_t state;
    uint32_t flags;       /* GMS_ALLOC_* */
    uint64_t req_size;    /* bytes asked for; the rest is redzone */
    /* History, kept through quarantine for corruption reports. */
    gms_buf handle;       /* the handle it had */
    uint64_t alloc_ns, free_ns; /* coarse monotonic clock */
    uint32_t alloc_user, free_user; /* indices into the pool's user names */
    uint64_t corrupt_at;  /* a broken redzone byte the verifier found, 0 if none */
    bool hollow;          /* retired, and its whole granules already unmapped */
    bool unscrubbed;      /* quarantined, but its scrub could not be queued */
    void *stream;         /* stream order: see GMS_STREAM_MIXED */
    uint64_t ticket;
    /* Live blocks: the handles alive on it (it dies with the last), how
     * many of them may write, its share (NULL: none) and, for a block
     * imported through DLPack, what owns its memory (NULL: the pool). */
    uint32_t holders, writers;
    uint32_t seen; /* gms_verify's count of handles naming it */
    struct gms_share_rec *share;
    struct gms_import *import;
    struct gms_windows *win; /* access windows (access.c); NULL: none yet */
    struct gms_seal_rec *seal; /* NULL: never sealed (core/seal.h) */
    union {
        struct {
            gms_block *next, *prev; /* segregated free list */
        } free;
        struct {
            /* The owner context's live list, while the handle made by
             * gms_alloc (slot) is alive; owner NULL once it is gone and
             * other holders keep the block. */
            gms_block *next, *prev;
            gms_context *owner;
            uint32_t slot;
        } live;
        struct {
            gms_block *next; /* pending batch or quarantine, oldest first */
        } retired;
    } u;
};

/* ---- the sub-allocator (tlsf.c): two-level segregated fit ----
 * 64-bit sizes in GMS_ALIGNMENT units: size classes below 8 KiB are linear
 * (256 B apart); above, each power of two is split in 32. Finding a block
 * and freeing one are O(1): two bit scans. */
#define GMS_TLSF_SL_SHIFT 5
#define GMS_TLSF_SL_COUNT (1u << GMS_TLSF_SL_SHIFT)
#define GMS_TLSF_FL_COUNT 52

typedef struct gms_tlsf {
    uint64_t fl_bitmap;
    uint32_t sl_bitmap[GMS_TLSF_FL_COUNT];
    gms_block *heads[GMS_TLSF_FL_COUNT][GMS_TLSF_SL_COUNT];
} gms_tlsf;

void gms__tlsf_insert(gms_tlsf *t, gms_block *b);
void gms__tlsf_remove(gms_tlsf *t, gms_block *b);
/* A free block of at least size bytes, still in its list; NULL if none. */
gms_block *gms__tlsf_find(gms_tlsf *t, uint64_t size);
/* The (fl, sl) list a free block of this size belongs in. */
void gms__tlsf_mapping(uint64_t size, unsigned *fl, unsigned *sl);
/* Splits the free block b (out of the lists) at addr: the part before,
 * in node front, becomes a free block of its own, filed; returns the part
 * from addr. */
gms_block *gms__tlsf_split_front(gms_tlsf *t, gms_block *b, uint64_t addr, gms_block *front);
/* Splits block b (out of the lists) after size bytes: the rest, in node
 * rest, becomes a free block with b's stream tag, filed. */
void gms__tlsf_split_back(gms_tlsf *t, gms_block *b, uint64_t size, gms_block *rest);
/* Files b as free, merged with its free neighbours first; the nodes
 * merged away are left in gone (NULL where none) for the caller to give
 * back. Returns the merged block. */
gms_block *gms__tlsf_file_free(gms_tlsf *t, gms_block *b, gms_block *gone[2]);

/* ---- pools, chunks and granules (pool.c) ---- */

/* The most granules one commit maps where commits go back only whole
 * (GMS_BACKEND_WHOLE_COMMITS): the driver's calls cost per allocation
 * (H200: 50 us a granule mapped, accessed and unmapped alone, about 70 us
 * an allocation of any size, tests/gpu/vmm_costs.cu), but an extent with
 * one live block on it cannot go back, so a long run is mapped in pieces
 * of at most 16 MiB. */
#define GMS_EXTENT_MAX 8u

typedef struct gms_granule {
    uint32_t live;   /* live blocks overlapping this granule */
    /* Its extent while committed: the run of granules committed at once,
     * which a backend with GMS_BACKEND_WHOLE_COMMITS takes back only whole
     * (one granule each elsewhere). ext_len at the extent's first granule,
     * ext_back: how far that one is before this. */
    uint32_t ext_len, ext_back;
    bool committed;  /* mapped from the backend */
    bool growth_trimmed; /* unmapped to make room for another block */
    uint8_t fresh;   /* gms_fresh: what it reads as while never committed
                        (the backend's `fresh`); GMS_FRESH_UNKNOWN after */
    gms_chunk *chunk;
    /* The pool's cache of committed granules with no live block, oldest
     * first; trimmed back to the retain limit by decommitting. */
    struct gms_granule *lru_prev, *lru_next;
    uint64_t cached_ns; /* when it joined the cache */
    /* The last device work on it (a stream tag, as a free block's):
     * unmapped only once it ran. */
    void *stream;
    uint64_t ticket;
} gms_granule;

/* A pool's two heaps. Requests up to GMS_HEAP_SMALL_MAX come from chunks
 * of the small heap, larger ones from the large heap's, so small blocks
 * (and those waiting in quarantine) never sit in the middle of the free
 * space that large ones need: mixed, they split it and the pool maps more
 * than its live bytes need. PyTorch's caching allocator keeps its small
 * and large pools apart for the same reason. */
enum { GMS_HEAP_SMALL = 0, GMS_HEAP_LARGE = 1, GMS_HEAPS = 2 };
#define GMS_HEAP_SMALL_MAX (1ull << 20)

struct gms_chunk {
    uint64_t base, size;
    unsigned heap;      /* GMS_HEAP_*: whose free lists its free blocks are in */
    gms_backend_chunk *be_chunk;
    gms_pool *pool;
    gms_block *first;   /* lowest block; blocks tile the chunk */
    gms_granule *granules;
    uint64_t ngranules;
    gms_chunk *next;
};

typedef struct gms_tenant {
    char name[GMS_NAME_MAX + 1];
    uint64_t index;
    uint64_t _Atomic live_bytes, live_allocs, peak_bytes;
    uint64_t _Atomic handles; /* handle-table slots it holds: its handles
                                 (allocated, acquired, imported) and the
                                 share ids of its buffers */
    uint64_t _Atomic max_bytes, max_allocs;
    uint64_t _Atomic quota_refusals, leaked_blocks, leaked_bytes;
    uint64_t v_handles; /* gms_verify's count (every lock held) */
    struct gms_tenant *next;
} gms_tenant;

typedef struct gms_node_slab {
    struct gms_node_slab *next;
    gms_block nodes[];
} gms_node_slab;

struct gms_pool {
    pthread_mutex_t lock;
    pthread_cond_t win_cond; /* an access window of one of its blocks ended (access.c) */
    gms_runtime *rt;
    gms_tenant *tenant;
    gms_level level;
    gms_language language;
    uint64_t id;       /* new at every reuse: names one (tenant, level,
                          language) in reports */
    uint64_t rank;     /* lock order: position in the pool list, fixed */
    bool idle;         /* holds nothing, serves no triple (rt->lock and
                          pool->lock to change) */
    bool orphan;       /* in use with no context open (rt->lock) */
    uint64_t contexts; /* open contexts (rt->lock) */
    gms_tlsf tlsf[GMS_HEAPS];
    gms_chunk *chunks;
    uint32_t free_slots; /* head of its free-slot list, 0 when empty */
    uint32_t nfree_slots;
    uint64_t v_handles, v_shares; /* gms_verify's counts (every lock held) */
    gms_block *free_nodes;
    gms_node_slab *slabs;
    gms_granule *lru_head, *lru_tail;
    /* Safety: batches of device work whose results are still to come, then
     * freed blocks waiting in quarantine (src/safety/scrub.c). */
    struct gms_scrub_batch *inflight_head, **inflight_tail;
    struct gms_pending *pending; /* frees gathered into one launch */
    bool _Atomic pending_open;   /* read unlocked by the collector */
    bool told_busy;              /* the device's backlog was logged */
    uint64_t _Atomic inflight; /* batches in that list (read unlocked by
                                  the collector to skip idle pools) */
    gms_block *quarantine_head, **quarantine_tail;
    uint64_t quarantine_bytes, quarantine_blocks;
    /* User names of the pool's contexts, for block histories. */
    char (*users)[GMS_NAME_MAX + 1];
    uint32_t nusers;
    uint64_t cached_bytes; /* committed granules with no live block */
    uint64_t held_bytes;   /* committed granules */
    /* The retain policy: high-water marks of live and held bytes that
     * decay together. */
    uint64_t peak_recent, peak_held_recent, peak_decay_ns;
    /* Bytes the growth trim unmapped that were mapped again later: where
     * remapping is costly, the growth budget's allowance for a layout
     * that needs more than the peak's slack (pool.c's retain policy). */
    uint64_t remapped_bytes;
    uint64_t reserved_bytes;
    uint64_t live_bytes, live_blocks, allocs, frees;
    uint64_t shares;       /* live shares of its blocks */
    gms_block *imports;    /* blocks imported by its contexts (u.live list) */
    /* Placement (core/migrate.c, docs/migration.md): the device its memory
     * is on, and whether it was lost (a migration that could not be undone;
     * its device's loss is in rt->devices). */
    int device;
    bool lost;
    char lost_why[200];
    gms_pool *next;
};

struct gms_context {
    gms_runtime *rt;
    gms_pool *pool;
    gms_tenant *tenant;
    char user[GMS_NAME_MAX + 1];
    uint32_t user_index; /* in pool->users */
    gms_level level;
    gms_language language;
    uint64_t id;
    gms_block *live; /* pool->lock */
    uint64_t live_blocks, live_bytes;
    /* Handles held on blocks outside the live list (gms_slot.hold_next);
     * a leaf lock, taken under the block's pool lock. */
    pthread_mutex_t holds_lock;
    gms_slot *holds;
    uint64_t held_leaks, held_leak_bytes; /* holds released at close */
    uint64_t leaked_windows; /* access windows open at close, ended there */
    gms_context *next, *prev; /* rt->lock */
};

/* ---- shares (share.c) ---- */

typedef struct gms_share_grant_rec {
    char tenant[GMS_NAME_MAX + 1]; /* "" any tenant */
    char user[GMS_NAME_MAX + 1];   /* "" any user */
    int language;                  /* GMS_ANY_LANGUAGE: any */
    gms_access mode;
} gms_share_grant_rec;

#define GMS_SHARE_MAC_BYTES 32 /* HMAC-SHA-256 */

typedef struct gms_share_rec {
    gms_share_id id;
    uint32_t slot;      /* the id's slot */
    uint64_t owner_ctx; /* id of the context that made it */
    bool revoked, immutable;
    uint32_t ngrants;
    gms_share_grant_rec grants[GMS_SHARE_GRANTS_MAX];
    /* A read-only view of the block's pages where it owns them all: the
     * raw pointer of every holder that may not write (of every holder,
     * if immutable). An immutable share without one has a MAC of its
     * bytes instead, keyed by the runtime's share key. */
    uint64_t view, view_base, view_len; /* view 0: none */
    /* Registered with gmsd (docs/broker.md): its id there, which gms_share
     * returns and other processes acquire by; 0: a share of this process
     * only. Its view is then of gmsd's memfd. */
    uint64_t broker_id;
    bool hashed;
    uint8_t mac[GMS_SHARE_MAC_BYTES];
} gms_share_rec;

/* A block imported through DLPack: its memory belongs to the tensor. */
typedef struct gms_import {
    void *tensor; /* a DLPack tensor; NULL for a share acquired through gmsd */
    int versioned;
    /* A share of another process acquired through gmsd (share.c): its
     * hold, released with its mapping when the block dies. */
    gms_backend *broker_be;
    uint64_t broker_hold, map, map_len;
    int broker_foreign; /* of another tenant: gms_transfer takes it over */
} gms_import;

/* Devices a runtime's pools may be placed on (core/migrate.c). */
#define GMS_DEVICES_MAX 64

struct gms_runtime {
    pthread_mutex_t lock; /* the lists below and the callback tables */
    /* Devices (core/migrate.c): those declared lost (a flag set once, after
     * its words), and a test's simulated devices (gms/testing.h; count 0:
     * none, the backend's own), under lock. */
    struct {
        bool _Atomic lost[GMS_DEVICES_MAX];
        char why[GMS_DEVICES_MAX][160];
        int sim_count;
        uint64_t sim_free[GMS_DEVICES_MAX];
        uint32_t sim_busy[GMS_DEVICES_MAX];
    } devices;
    gms_backend *backend;
    const char *backend_name;
    gms_failpoint failpoint;
    gms_audit *audit; /* NULL: no trail */
    bool shared;      /* the process-wide runtime */
    /* GMS_BROKER: who gmsd says this process is; its contexts are of that
     * tenant, at its level or above, in its languages (context.c). */
    bool brokered;
    gms_broker_identity broker;
    gms_backend *broker_be; /* gmsd's connection (backend.h), under any wrapper */
    uint64_t refs;    /* opens of the shared runtime (its static lock) */

    /* Settings from the options, fixed once the runtime is open. */
    struct {
        uint64_t granule, chunk_bytes, retain_bytes;
        unsigned granule_shift; /* log2(granule): no division on fast paths */
        uint64_t max_held;      /* 0: no limit */
        int device;             /* the GPU ordinal asked for */
        uint64_t view_unit;     /* a read-only view maps whole units of this size */
        /* A GMS_ALLOC_PAGES block gets a chunk of its own: on gmsd's CUDA
         * memory, a lease that a mutable share can hand out whole. */
        bool pages_alone;
        FILE *map_log; /* $GMS_DEBUG_MAPS: every map and unmap, for tuning the retain policy */
    } config;

    /* Safety settings (src/safety), fixed at open. */
    struct {
        bool on;
        uint64_t pattern;  /* the poison: random per runtime, no zero byte */
        uint64_t wipe_seed;
        uint32_t redzone;
        uint64_t quarantine_max_bytes, quarantine_max_blocks;
        bool abort_on_corruption, secret_multipass;
        /* The key of immutable shares' MACs: random per runtime and never
         * shown, so no holder can make a change the check does not see.
         * Apart from the handle secret, whose check bits callers see. */
        uint8_t share_key[32];
    } safety;

    /* The background threads (background.c): the verifier runs gms_verify
     * every verify_interval_ms; the collector, with a stream-ordered
     * backend, gathers the results of device work every GMS_COLLECT_MS, so
     * that a corruption the device finds is reported without waiting for
     * another call. */
    struct {
        struct gms_ticker *verifier, *collector;
        uint32_t verify_interval_ms;
    } background;

    /* The program's functions that gms calls: with no gms lock held. */
    struct {
        gms_log_fn log;
        void *log_user;
        struct {
            gms_violation_fn fn;
            void *user;
        } on_violation[16];
        uint32_t _Atomic n_on_violation;
        struct {
            gms_pressure_fn fn;
            void *user;
        } on_pressure[16];
        uint32_t _Atomic n_on_pressure;
    } callbacks;

    /* Sealed regions' keys (core/seal.c): the provider and the KEKs read
     * from key files (each in a locked page), under rt->lock; the next
     * region id. */
    struct {
        gms_key_fn provider;
        void *provider_user;
        struct gms_kek *keks;
        uint32_t _Atomic next_region;
    } seal;

    /* What waits to be delivered to those functions (src/safety/violation.c). */
    struct {
        uint64_t _Atomic queued; /* violations and log lines noted, not yet
                                    delivered, on any thread: saves the
                                    thread-local lookup on every call */
        uint64_t _Atomic lost;   /* violations that found the queue full */
        uint64_t _Atomic delivering; /* taken off a queue, callbacks running */
        /* Log lines of the audit writer's thread, which must not run the
         * program's log function (one that calls gms could wait for that
         * very thread): kept here, and written by the next delivery on any
         * thread. */
        pthread_mutex_t mail_lock;
        struct gms_mail {
            gms_log_level level;
            char msg[256];
        } mail[8];
        uint32_t nmail, mail_dropped;
    } notes;

    /* The handle table (handle.c): pages of slots (published once, lookups
     * take no lock); under lock, the free slots no pool holds, and the
     * counts that bound what one tenant takes. */
    struct {
        uint64_t key[2]; /* the handle secret */
        gms_slot_page *_Atomic pages[GMS_SLOT_PAGES];
        pthread_mutex_t lock;
        uint32_t next_page;
        uint32_t free_slots; /* head of the list; 0 ends it */
        uint64_t slots_max, slots_reserve;
        uint64_t slots_out;  /* held by pools: live or cached */
    } handles;

    /* Tenants, pools and contexts (rt->lock). */
    gms_tenant *tenants, **tenants_tail;
    uint64_t ntenants;
    gms_pool *pools, **pools_tail;
    uint64_t npools;        /* in use (not idle) */
    uint64_t orphan_pools;  /* in use with no context open: the next
                               context open or close tries to retire them */
    gms_context *contexts;
    uint64_t ncontexts, next_id;

    /* DLPack tensors not yet deleted, and their deleters still working on
     * this runtime (both under dlpack.c's exports_lock). */
    struct export_ctx *exports;
    uint64_t export_releases;

    /* Runtime-wide gauges (gms_stats); held and reserved change only when
     * the backend is called, live on every alloc and free; retired_* are
     * the counts of pools gone idle (rt->lock). */
    struct {
        uint64_t _Atomic live_bytes, peak_live, held_bytes, peak_held, reserved_bytes;
        uint64_t _Atomic maps, unmaps, device_waits;
        uint64_t _Atomic pressure_events, pressure_recovered, pressure_steps;
        uint64_t retired_allocs, retired_frees;
    } gauges;
};

/* The index in its chunk of the granule holding address a. */
static inline uint64_t gms__granule_of(const gms_runtime *rt, const gms_chunk *c, uint64_t a)
{
    return (a - c->base) >> rt->config.granule_shift;
}

/* A limit that scales with a pool's live bytes: `set` when the options set
 * one, else max(floor, live / divisor). */
static inline uint64_t gms__scaled_limit(uint64_t set, uint64_t live, uint64_t floor,
                                         uint64_t divisor)
{
    if (set)
        return set;
    return live / divisor > floor ? live / divisor : floor;
}

/* The lists of live blocks (a context's, a pool's imports) link through
 * u.live: push at the head, unlink anywhere. */
static inline void gms__live_push(gms_block **head, gms_block *b)
{
    b->u.live.prev = NULL;
    b->u.live.next = *head;
    if (*head)
        (*head)->u.live.prev = b;
    *head = b;
}

static inline void gms__live_unlink(gms_block **head, gms_block *b)
{
    if (b->u.live.prev)
        b->u.live.prev->u.live.next = b->u.live.next;
    else
        *head = b->u.live.next;
    if (b->u.live.next)
        b->u.live.next->u.live.prev = b->u.live.prev;
}


/* handle.c */
int gms__handle_table_init(gms_runtime *rt);
void gms__handle_table_destroy(gms_runtime *rt);
uint64_t gms__handle_make(const gms_runtime *rt, uint32_t slot, uint64_t gen);
/* The slot a handle names (whether or not the handle is valid). */
static inline uint32_t gms__handle_slot(gms_buf h)
{
    return (uint32_t)(h >> GMS_SLOT_SHIFT) & ((1u << GMS_SLOT_BITS) - 1);
}
/* The slot a handle names and the pool owning it now; NULL if no pool
 * does. Takes no lock: once it holds the pool's lock, the caller checks
 * with gms__slot_owned that the slot is still that pool's. */
gms_slot *gms__slot_lookup(gms_runtime *rt, gms_buf h, gms_pool **pool);
static inline bool gms__slot_owned(gms_slot *s, const gms_pool *p)
{
    return atomic_load_explicit(&s->pool, memory_order_relaxed) == p;
}
gms_slot *gms__slot_at(gms_runtime *rt, uint32_t index);
/* Takes a free slot of the pool (pool->lock held) for a handle or share id
 * of tenant t (gms__slot_take: the pool's tenant), taking more from the
 * runtime when the pool has none. GMS_E_QUOTA when t holds many handles
 * and only the reserve is left, GMS_E_NO_MEMORY when the table is full.
 * The slot's tenant is its holder's, else the pool's (gms__slot_put): a
 * slot taken for another tenant gets a holder of it before it is put. */
int gms__slot_take(gms_pool *p, uint32_t *index);
int gms__slot_take_for(gms_pool *p, gms_tenant *t, uint32_t *index);
/* Frees a slot (pool->lock held), whose holder (or, with none, the pool's
 * tenant) is uncharged; the pool gives back what it does not need. */
void gms__slot_put(gms_pool *p, uint32_t index);
/* Gives every free slot of the pool back to the runtime (pool->lock). */
void gms__slots_give_back(gms_pool *p);
/* Why h is not live in its slot, for the error message (pool->lock held). */
const char *gms__handle_diagnose(const gms_runtime *rt, const gms_slot *s,
                                 gms_buf h);

/* pool.c (pool->lock held unless said) */

/* Queues a batch of safety work on stream (in stream order where the
 * backend has streams, else at once): *ticket names it, 0 when it already
 * ran, and then the results are in items already. Never waits for the
 * device but where the backend has too much in flight. 0 or an errno.
 * The same in two steps: reserve a ticket (0: the batch will run at once;
 * 0 and EBUSY leave *ticket 0), then launch the batch under it.
 * A pool's batches on one stream must launch in the order of their
 * tickets: a stream tag keeps the larger ticket as the later one, so a
 * ticket that has run vouches for every smaller one on its stream. The
 * pending batch (safety/scrub.c) holds a ticket reserved early and
 * launched late: whoever queues a batch at once on its stream launches
 * the pending batch first (gms__safety_launch_before). */
int gms__device_queue(gms_pool *p, gms_scrub_item *items, size_t n, void *stream,
                      uint64_t *ticket);
int gms__device_reserve(gms_pool *p, uint64_t *ticket);
int gms__device_launch(gms_pool *p, gms_scrub_item *items, size_t n, void *stream,
                       uint64_t ticket);
/* 0 with the results in items once ticket ran; EAGAIN before. */
int gms__device_collect(gms_pool *p, uint64_t ticket, gms_scrub_item *items, size_t n);
/* Every ticket up to this one has run (UINT64_MAX on a backend without
 * streams). A query, never a wait. */
uint64_t gms__device_done(gms_runtime *rt);
/* Waits for all device work (verify, trim, close: never alloc or free). */
void gms__device_quiesce(gms_runtime *rt);

int gms__pool_create(gms_runtime *rt, gms_tenant *t, gms_level level,
                     gms_language lang, gms_pool **out); /* rt->lock */
void gms__pool_destroy(gms_pool *p);
/* Makes an idle pool serve (t, level, lang) (rt->lock, pool->lock). */
/* core/migrate.c: GMS_OK, or GMS_E_BACKEND when the pool's memory was
 * lost (its device failed, or a migration could not be undone); its lock
 * is held. */
int gms__pool_usable(const gms_pool *p, const char *op);
/* After chunk_add on a pool placed elsewhere than the backend's device:
 * puts the new chunk's later commits there too. */
int gms__chunk_place(gms_pool *p, gms_chunk *c);
void gms__pool_reuse(gms_pool *p, gms_tenant *t, gms_level level, gms_language lang);
/* Releases every wholly free chunk, the last one too, and with no chunk
 * left the block nodes (pool->lock held). True when no chunk is left. */
bool gms__pool_release_chunks(gms_pool *p);
/* A block of size bytes (a multiple of the alignment) for req bytes, used
 * in stream order on `stream`. Unless may_map, returns GMS__WOULD_MAP
 * (and changes nothing) where it would have to map memory, and
 * GMS__CLOSER_HELD where its fit is larger than `closer` (nonzero: the
 * size of a block that the caller can bring back to the free lists
 * first). */
#define GMS__WOULD_MAP 1
#define GMS__CLOSER_HELD 2
int gms__pool_alloc(gms_pool *p, gms_context *ctx, uint64_t size, uint64_t req,
                    uint64_t align, uint32_t flags, void *stream, bool may_map,
                    uint64_t closer, gms_block **out);
/* What gms__pool_alloc looks for: size bytes at alignment align. */
static inline uint64_t gms__pool_want(uint64_t size, uint64_t align)
{
    return size + (align > GMS_ALIGNMENT ? align - GMS_ALIGNMENT : 0);
}
/* The heap whose free lists serve a search for `want` bytes. */
static inline unsigned gms__pool_heap(uint64_t want)
{
    return want <= GMS_HEAP_SMALL_MAX ? GMS_HEAP_SMALL : GMS_HEAP_LARGE;
}
/* Returns a retired block's memory to the free lists, tagged with its
 * stream and ticket (pool->lock held). */
void gms__pool_free(gms_pool *p, gms_block *b);
/* Gives back the chunk of a dead block alone in it whose memory went with
 * a share to other processes (gms__share_end's *given), unscrubbed and
 * never reused; the device is done with it (pool->lock held). */
void gms__pool_give_away(gms_pool *p, gms_block *b);
/* The granules wholly inside a block's data, as addresses [lo, hi); false if none. */
bool gms__block_interior(const gms_pool *p, const gms_block *b, uint64_t *lo, uint64_t *hi);
/* The parts of a retired block still mapped: up to two ranges, lo == hi
 * when empty (pool->lock held). */
void gms__block_mapped(const gms_pool *p, const gms_block *b, uint64_t lo[2], uint64_t hi[2]);
/* Unmaps a retired block's whole granules at once, which wipes them, when
 * the backend finds that cheaper than overwriting (pool->lock held). */
void gms__pool_hollow(gms_pool *p, gms_block *b);
/* Decommits cached granules until at most keep bytes stay cached. */
void gms__pool_trim(gms_pool *p, uint64_t keep);

static inline void gms__pool_lock(gms_pool *p) { pthread_mutex_lock(&p->lock); }
static inline void gms__pool_unlock(gms_pool *p) { pthread_mutex_unlock(&p->lock); }

/* ---- services.c and the pools' user names (pool.c) ---- */

/* Metadata allocation that the failpoint can fail. */
void *gms__alloc_meta(gms_runtime *rt, size_t size);
/* Calls the log function now: only with no gms lock held (it may call
 * gms). */
void gms__log(gms_runtime *rt, gms_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same under a lock: queued on this thread and written by its next
 * gms__violations_deliver, which every call that can get here makes before
 * it returns. It is implemented with the queue of violations
 * (src/safety/violation.c): the one call from this layer up into safety. */
void gms__log_later(gms_runtime *rt, gms_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* free_user of a block released by a holder in another pool. */
#define GMS_USER_ELSEWHERE UINT32_MAX
/* The name of user index i of the pool (pool->lock held). */
const char *gms__user_name(const gms_pool *p, uint32_t i);

#endif
