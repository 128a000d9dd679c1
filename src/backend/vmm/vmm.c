/*
 * vmm.c: the GPU backend over a driver's virtual memory API (vmm.h,
 * docs/gpu.md), the same code for CUDA and HIP; the driver is a table of
 * calls (driver.h), each made through GMS_DRV.
 *
 * Memory: a chunk is a reserved address range with at least 2 MiB of
 * unmapped guard space on each side; each commit is one physical
 * allocation (an extent: mem_create + mem_map + one set_access), which
 * the core decommits whole. The driver's map, access and unmap calls cost
 * per allocation, not per byte (H200, tests/gpu/vmm_costs.cu: 50 us a 2
 * MiB granule made one by one, 2 us a granule in an allocation of 64), so
 * the core commits runs of granules at once, in extents of a bounded size
 * that it can still give back one by one (pool.c, GMS_EXTENT_MAX). A
 * chunk that is a lease of gmsd's (gms__vmm_set_leaser)
 * has one physical allocation for the whole chunk instead, imported from
 * the descriptor gmsd sent and mapped whole at reserve: the driver maps an
 * allocation only from its start (cuMemMap's offset must be 0 on CUDA 13:
 * CUDA_ERROR_NOT_SUPPORTED otherwise, H200) and unmaps only whole
 * mappings, so commit and decommit of a lease's granules only mark them,
 * and its memory is the lease's until the chunk is released. A read-only
 * view maps the same physical allocations at
 * another address with read access only, so a kernel writing through it
 * faults.
 *
 * Every entry point makes the device current on the calling thread (and
 * puts back the caller's afterwards): callers come from any thread. Data
 * movement and the waiting scrub run on one internal non-blocking stream
 * and return when the work is done (synchronous results). The waiting
 * scrub is one cooperative kernel per batch (src/kernels/scrub.cu) whose
 * work list goes up and whose results come back through one pinned
 * buffer; the stream-ordered one (docs/stream-ordered.md) is one launch
 * on the caller's stream whose results come back through a ring of pinned
 * slots.
 */
#include "backend/vmm/vmm.h"
#include "kernels/scrub_plan.h"
#include "kernels/seal_kernels.h"
#include "kernels/seal_math.h"
#include "gms/seal.h"

#include <openssl/crypto.h>
#include <sys/mman.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOST_WORDS 512u

typedef struct vmm_backend {
    gms_backend base;
    gms_backend_ops ops; /* vmm_ops, less the stream-ordered ones without their kernel */
    gms_drv *drv;
    void *dd;
    void (*dd_free)(void *dd);
    uintptr_t current;
    void *stream;
    void *module;
    void *scrub_fn; /* NULL: no kernels */
    char kernel_why[256];
    const char *kernel_hint;
    uint64_t gran;
    unsigned max_grid; /* co-resident blocks of the scrub kernel */
    pthread_mutex_t scrub_lock; /* the staging buffers */
    void *stage_host;           /* pinned */
    uint64_t stage_dev;
    size_t stage_cap;
    /* Stream-ordered scrubs (scrub.h): ticket t uses slot t % ASYNC_SLOTS
     * of a pinned ring (done word and results, which the kernel writes)
     * and of a device ring (results being folded). A slot is taken again
     * only once its last ticket was collected. */
    void *async_fn;      /* NULL: stream-ordered scrubs unavailable */
    unsigned async_grid; /* blocks per launch, at most */
    gms_kslot_host *slots_host;
    gms_kslot_host *slots_host_dev; /* the same, as the device sees it */
    gms_kslot_dev *slots_dev;
    uint64_t *slot_issued; /* ticket using each slot; 0: free (async_lock) */
    unsigned char *slot_marker; /* nothing to report: reusable once run */
    unsigned char *slot_failed;
    pthread_mutex_t async_lock; /* next_ticket and slot_issued */
    /* Sealed regions (seal.cu): NULL without their kernels. */
    void *seal_module, *seal_fn, *digest_fn;
    unsigned seal_grid; /* co-resident blocks of the seal kernel */
    uint64_t next_ticket;
    uint64_t _Atomic done_upto;
    /* Checked atomics (gms/access.h): the kernel, and pinned mapped words
     * for gms_atomic's old values, handed out under word_lock. */
    void *atomic_fn; /* NULL: not in the kernels' image */
    pthread_mutex_t word_lock;
    uint64_t *words_host; /* HOST_WORDS words; NULL until first used */
    uint64_t words_dev;
    unsigned char words_taken[HOST_WORDS];
    gms_vmm_leaser leaser; /* take NULL: chunks are the backend's own memory */
    /* A lease of leaser.spare_size made ahead by spare_thread (taken,
     * reserved, imported, mapped, and with safety on filled with the
     * poison), for the next chunk of that size; all under spare_lock.
     * spare_made wakes an allocation waiting for the one being made. */
    pthread_mutex_t spare_lock;
    pthread_cond_t spare_wake, spare_made;
    pthread_t spare_thread;
    int spare_running, spare_stop, spare_wanted, spare_making;
    uint64_t spare_align;   /* the last chunk's of that size asked for */
    uint64_t spare_pattern; /* the poison (never 0: no zero byte), or 0 */
    struct gms_backend_chunk *spare;
    /* Read-only views (map_view_readonly), each with its extents: unmapped
     * whole at unmap_view, whatever the chunk commits there since. */
    pthread_mutex_t views_lock;
    struct gms_backend_mem *views;
} vmm_backend;

#define ASYNC_SLOTS 8192u
#define GUARD_BYTES (2ull << 20)

_Static_assert(GMS_SCRUB_ASYNC_MAX_K == GMS_SCRUB_ASYNC_MAX,
               "the kernel's result slots hold one batch");

struct gms_backend_chunk {
    uint64_t region; /* whole reservation, guards and alignment slack included */
    uint64_t region_size;
    uint64_t base;
    uint64_t size;
    uint64_t *handles; /* one per granule (its extent's); 0: unmapped */
    uint32_t *ext;     /* per granule: at an extent's first granule its
                          length in granules, else 0 */
    int device;        /* where its memory is made: -1 the backend's own
                          device, else another one's ordinal (migration) */
    uint64_t lease;    /* a lease's imported memory (handles[g] is it while
                          granule g is mapped); 0: granules of their own */
    uint64_t lease_id; /* gmsd's id of the lease */
    gms_fresh fresh;   /* what it reads as until first committed */
};

/* Memory of a chunk being moved, or just left by one: a handle per
 * granule of the chunk (0: none), mapped at a staging range of its own.
 * A read-only view is one too, its handles the chunk's, mapped at the
 * view's address (staging), on the backend's list of views (next). */
struct gms_backend_mem {
    uint64_t staging, size;
    uint64_t *handles;
    uint32_t *ext; /* as a chunk's */
    int device;
    struct gms_backend_mem *next;
};

/* A driver call through the wrapper (driver.h); QUIET: failure ignored. */
#define CALL(vb, call, detail, ...) GMS_DRV((vb)->drv, call, detail, (vb)->dd, __VA_ARGS__)
#define QUIET(vb, call, ...) GMS_DRV_QUIET((vb)->drv, call, (vb)->dd, __VA_ARGS__)

static vmm_backend *B(gms_backend *be)
{
    return (vmm_backend *)be;
}

int gms__vmm_have_kernels(const gms_backend *be)
{
    return ((const vmm_backend *)be)->scrub_fn != NULL;
}

/* Makes the device current; *saved is the caller's, put back by leave.
 * Cost: one thread-local read when it is current already. Clears the
 * thread's backend note: every op starts here or cannot fail. */
static int enter(vmm_backend *vb, uintptr_t *saved)
{
    uintptr_t cur = 0;
    gms__backend_why_clear();
    int err = CALL(vb, get_current, NULL, &cur);
    if (err)
        return err;
    *saved = cur;
    if (cur != vb->current)
        err = CALL(vb, set_current, NULL, vb->current);
    return err;
}

static void leave(vmm_backend *vb, uintptr_t saved)
{
    if (saved != vb->current)
        QUIET(vb, set_current, saved);
}

static int sync_stream(vmm_backend *vb, const char *what)
{
    return CALL(vb, stream_sync, what, vb->stream);
}

static int access_rw(vmm_backend *vb, int device, uint64_t addr, uint64_t len);

/* Maps allocation h whole at base (its address space reserved) for the
 * backend's device, read-only unless writable; nothing stays mapped if
 * that fails (device current). */
static int map_at(vmm_backend *vb, uint64_t h, uint64_t base, uint64_t size, int writable,
                  const char *what)
{
    int err = CALL(vb, mem_map, what, base, size, h);
    if (!err && (err = CALL(vb, set_access, what, base, size, writable)) != 0)
        QUIET(vb, mem_unmap, base, size);
    return err;
}

/* Imports descriptor fd of gmsd's and maps it whole at base (its address
 * space reserved), for the backend's device, read-only unless writable
 * (device current). *handle: the imported allocation. */
static int import_map(vmm_backend *vb, int fd, uint64_t base, uint64_t size, int writable,
                      const char *what, uint64_t *handle)
{
    int err = CALL(vb, mem_import, what, fd, handle);
    if (err)
        return err;
    if ((err = map_at(vb, *handle, base, size, writable, what)) != 0) {
        QUIET(vb, mem_release, *handle);
        *handle = 0;
    }
    return err;
}

/* Imports the lease gmsd sent as fd and maps it whole over chunk c (its
 * address space reserved), read-write (device current). */
static int lease_map(vmm_backend *vb, gms_backend_chunk *c, int fd)
{
    return import_map(vb, fd, c->base, c->size, 1, "gmsd's lease", &c->lease);
}

/* A new chunk of size bytes aligned to align (at least a granule): its
 * address space reserved between guards and, where chunks are leases, a
 * lease taken and mapped over it. 0 or an errno value. */
static int chunk_reserve(vmm_backend *vb, uint64_t size, uint64_t align, gms_backend_chunk **out)
{
    gms_backend_chunk *c = calloc(1, sizeof *c);
    if (!c)
        return ENOMEM;
    c->handles = calloc(size / vb->gran, sizeof *c->handles);
    c->ext = calloc(size / vb->gran, sizeof *c->ext);
    if (!c->handles || !c->ext) {
        free(c->handles);
        free(c->ext);
        free(c);
        return ENOMEM;
    }
    int fd = -1;
    int err = vb->leaser.take ? vb->leaser.take(vb->leaser.ctx, size, &fd, &c->lease_id) : 0;
    /* The base is aligned by hand inside slack of align - gran bytes rather
     * than trusting the driver with the alignment (address space costs
     * nothing); what the slack leaves above the chunk is guard space too. */
    uint64_t slack = align - vb->gran;
    bool leased = vb->leaser.take && !err;
    uintptr_t saved;
    if (!err && !(err = enter(vb, &saved))) {
        c->region_size = size + 2 * GUARD_BYTES + slack;
        err = CALL(vb, va_reserve, NULL, &c->region, c->region_size, vb->gran);
        c->base = (c->region + GUARD_BYTES + align - 1) & ~(align - 1);
        c->size = size;
        if (!err && fd >= 0 && (err = lease_map(vb, c, fd)) != 0)
            QUIET(vb, va_free, c->region, c->region_size);
        leave(vb, saved);
    }
    if (fd >= 0)
        close(fd); /* the imported handle keeps the memory */
    if (err && leased)
        vb->leaser.give_back(vb->leaser.ctx, c->lease_id);
    if (err) {
        free(c->handles);
        free(c->ext);
        free(c);
        return err;
    }
    c->device = -1;
    c->fresh = leased ? GMS_FRESH_ZEROS : GMS_FRESH_UNKNOWN; /* gms__vmm_lease_make's zeros */
    *out = c;
    return 0;
}

static void vmm_release(gms_backend *be, gms_backend_chunk *c);
static int vmm_scrub(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                     uint64_t seed);

/* Fills lease c with the poison pattern and waits: on the spare's thread,
 * so that no allocation waits for it. Left as zeros if it fails. */
static void lease_poison(vmm_backend *vb, gms_backend_chunk *c, uint64_t pattern)
{
    gms_scrub_item it;
    memset(&it, 0, sizeof it);
    it.fill_lo[0] = c->base;
    it.fill_hi[0] = c->base + c->size;
    if (vmm_scrub(&vb->base, &it, 1, pattern, 0) == 0)
        c->fresh = GMS_FRESH_POISON;
}

/* The spare lease's maker (gms__vmm_set_leaser): whenever one is wanted
 * and none is ready, it makes one, off the allocating thread, so that a
 * pool growing by a lease finds it imported and mapped. A refusal (the
 * tenant's quota, gmsd away) waits for the next chunk taken. */
static void *spare_maker(void *arg)
{
    vmm_backend *vb = arg;
    pthread_mutex_lock(&vb->spare_lock);
    while (!vb->spare_stop) {
        if (!vb->spare_wanted || vb->spare) {
            pthread_cond_wait(&vb->spare_wake, &vb->spare_lock);
            continue;
        }
        vb->spare_wanted = 0;
        vb->spare_making = 1;
        uint64_t pattern = vb->spare_pattern, align = vb->spare_align;
        pthread_mutex_unlock(&vb->spare_lock);
        gms_backend_chunk *c = NULL;
        chunk_reserve(vb, vb->leaser.spare_size, align, &c);
        if (c && pattern)
            lease_poison(vb, c, pattern);
        pthread_mutex_lock(&vb->spare_lock);
        vb->spare_making = 0;
        pthread_cond_broadcast(&vb->spare_made);
        if (c && vb->spare_stop) {
            pthread_mutex_unlock(&vb->spare_lock);
            vmm_release(&vb->base, c);
            pthread_mutex_lock(&vb->spare_lock);
        } else if (c) {
            vb->spare = c;
        }
    }
    pthread_mutex_unlock(&vb->spare_lock);
    return NULL;
}

/* The spare lease when it fits a chunk of size and align (NULL if none),
 * asking for the next one: from the first chunk of that size on, one is
 * made ahead. One being made is waited for: it is nearer done than a
 * lease taken now would be, and takes no second lease of the quota. */
static gms_backend_chunk *spare_take(vmm_backend *vb, uint64_t size, uint64_t align)
{
    if (!vb->spare_running || size != vb->leaser.spare_size)
        return NULL;
    pthread_mutex_lock(&vb->spare_lock);
    while (vb->spare_making)
        pthread_cond_wait(&vb->spare_made, &vb->spare_lock);
    gms_backend_chunk *c = vb->spare;
    if (c && c->base % align)
        c = NULL;
    if (c)
        vb->spare = NULL;
    vb->spare_wanted = 1;
    vb->spare_align = align;
    pthread_cond_signal(&vb->spare_wake);
    pthread_mutex_unlock(&vb->spare_lock);
    return c;
}

/* Gives the spare lease back (its quota for a chunk that needs it). */
static bool spare_drop(vmm_backend *vb)
{
    if (!vb->spare_running)
        return false;
    pthread_mutex_lock(&vb->spare_lock);
    gms_backend_chunk *c = vb->spare;
    vb->spare = NULL;
    pthread_mutex_unlock(&vb->spare_lock);
    if (c)
        vmm_release(&vb->base, c);
    return c != NULL;
}

static int vmm_reserve(gms_backend *be, uint64_t size, uint64_t align, uint64_t *base,
                       gms_backend_chunk **out)
{
    vmm_backend *vb = B(be);
    gms__backend_why_clear();
    if (size == 0 || size % vb->gran || (align & (align - 1)))
        return EINVAL;
    if (align < vb->gran)
        align = vb->gran;
    gms_backend_chunk *c = spare_take(vb, size, align);
    int err = c ? 0 : chunk_reserve(vb, size, align, &c);
    if (err == EDQUOT && spare_drop(vb)) /* the spare held the quota this needs */
        err = chunk_reserve(vb, size, align, &c);
    if (err)
        return err;
    *base = c->base;
    *out = c;
    return 0;
}

/* Unmaps from base + granule g * gran the extents of handles that begin in
 * [first, last), each whole. */
static void extents_unmap(vmm_backend *vb, uint64_t base, const uint64_t *handles,
                          const uint32_t *ext, uint64_t first, uint64_t last)
{
    for (uint64_t g = first; g < last; g++)
        if (handles[g] && ext[g]) {
            QUIET(vb, mem_unmap, base + g * vb->gran, ext[g] * vb->gran);
            g += ext[g] - 1;
        }
}

/* Releases the handles of the extents that begin in [first, last) and
 * clears them. */
static void extents_release(vmm_backend *vb, uint64_t *handles, uint32_t *ext, uint64_t first,
                            uint64_t last)
{
    for (uint64_t g = first; g < last; g++) {
        if (handles[g] && ext[g])
            QUIET(vb, mem_release, handles[g]);
        handles[g] = 0, ext[g] = 0;
    }
}

/* Maps the extents of handles that begin in [first, last) from base +
 * granule g * gran; on failure unmaps what it mapped. */
static int extents_map(vmm_backend *vb, const char *what, uint64_t base, const uint64_t *handles,
                       const uint32_t *ext, uint64_t first, uint64_t last)
{
    int err = 0;
    uint64_t g = first;
    for (; g < last && !err; g++)
        if (handles[g] && ext[g]) {
            err = CALL(vb, mem_map, what, base + g * vb->gran, ext[g] * vb->gran, handles[g]);
            g += err ? 0 : ext[g] - 1;
        }
    if (err)
        for (uint64_t u = first; u + 1 < g; u++)
            if (handles[u] && ext[u]) {
                QUIET(vb, mem_unmap, base + u * vb->gran, ext[u] * vb->gran);
                u += ext[u] - 1;
            }
    return err;
}

/* Whether granules [first, last) are whole extents (or unmapped). */
static bool whole_extents_of(const uint64_t *handles, const uint32_t *ext, uint64_t first,
                             uint64_t last)
{
    for (uint64_t g = first; g < last; g++) {
        if (!handles[g])
            continue;
        if (!ext[g] || g + ext[g] > last)
            return false;
        g += ext[g] - 1;
    }
    return true;
}

static bool whole_extents(const gms_backend_chunk *c, uint64_t first, uint64_t last)
{
    return whole_extents_of(c->handles, c->ext, first, last);
}

/* Unmaps and releases the extents of granules [first, last) (a lease's
 * are only marked: its mapping goes with the chunk). */
static void unmap_granules(vmm_backend *vb, gms_backend_chunk *c, uint64_t first, uint64_t last)
{
    if (c->lease) {
        for (uint64_t g = first; g < last; g++)
            c->handles[g] = 0, c->ext[g] = 0;
        return;
    }
    extents_unmap(vb, c->base, c->handles, c->ext, first, last);
    extents_release(vb, c->handles, c->ext, first, last);
}

static void vmm_release(gms_backend *be, gms_backend_chunk *c)
{
    vmm_backend *vb = B(be);
    if (!c)
        return;
    uintptr_t saved;
    if (enter(vb, &saved) == 0) {
        unmap_granules(vb, c, 0, c->size / vb->gran);
        if (c->lease) {
            QUIET(vb, mem_unmap, c->base, c->size);
            QUIET(vb, mem_release, c->lease);
        }
        QUIET(vb, va_free, c->region, c->region_size);
        leave(vb, saved);
    }
    /* Unmapped and released first: gmsd frees the memory once it is back. */
    if (vb->leaser.take)
        vb->leaser.give_back(vb->leaser.ctx, c->lease_id);
    free(c->handles);
    free(c->ext);
    free(c);
}

static int range_ok(const vmm_backend *vb, const gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    return len != 0 && off <= c->size && len <= c->size - off && off % vb->gran == 0 &&
           len % vb->gran == 0;
}

/* Frees the record m, not its handles (which are a chunk's). */
static void mem_drop(gms_backend_mem *m)
{
    free(m->handles);
    free(m->ext);
    free(m);
}

/* A record of memory for a chunk of size bytes, no handle yet. */
static gms_backend_mem *mem_new(vmm_backend *vb, uint64_t size, int device)
{
    gms_backend_mem *m = calloc(1, sizeof *m);
    if (m) {
        m->handles = calloc(size / vb->gran, sizeof *m->handles);
        m->ext = calloc(size / vb->gran, sizeof *m->ext);
    }
    if (!m || !m->handles || !m->ext) {
        if (m)
            free(m->handles), free(m->ext);
        free(m);
        return NULL;
    }
    m->size = size;
    m->device = device;
    return m;
}

/* Physical memory of size bytes on device (-1: the backend's own). */
static int mem_create(vmm_backend *vb, int device, uint64_t size, uint64_t *h)
{
    if (device < 0)
        return CALL(vb, mem_create, NULL, h, size);
    return gms__drv_check(vb->drv, GMS_DRV_mem_create, "on the migration target",
                          vb->drv->mem_create_on(vb->dd, h, size, device));
}

/* Read-write access to [addr, +len) for the backend's device, whose
 * streams run the program's kernels, and for the device holding the
 * memory if another. */
static int access_rw(vmm_backend *vb, int device, uint64_t addr, uint64_t len)
{
    int err = CALL(vb, set_access, NULL, addr, len, 1);
    if (!err && device >= 0)
        err = gms__drv_check(vb->drv, GMS_DRV_set_access, "for the migration target",
                             vb->drv->set_access_on(vb->dd, addr, len, device, 1));
    return err;
}

static int vmm_commit(gms_backend *be, gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    vmm_backend *vb = B(be);
    gms__backend_why_clear();
    if (!range_ok(vb, c, off, len))
        return EINVAL;
    uint64_t first = off / vb->gran, last = (off + len) / vb->gran;
    for (uint64_t g = first; g < last; g++)
        if (c->handles[g])
            return EINVAL; /* mapped already */
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    /* One allocation, one map and one access call for the whole range: a
     * lease's is mapped at reserve already. */
    uint64_t h = c->lease;
    if (!h && !(err = mem_create(vb, c->device, len, &h)) &&
        (err = CALL(vb, mem_map, NULL, c->base + off, len, h)) != 0)
        QUIET(vb, mem_release, h);
    for (uint64_t g = first; g < last && !err; g++) {
        c->handles[g] = h;
        c->ext[g] = c->lease ? 1 : g == first ? (uint32_t)(last - first) : 0;
    }
    if (!err && !c->lease)
        err = access_rw(vb, c->device, c->base + off, len);
    /* backend.h: new memory reads as zeros; with stream-ordered scrubs the
     * core zeroes it on the allocating stream instead, and nothing waits. */
    if (!err && !vb->async_fn) {
        err = CALL(vb, memset_d8, "commit", c->base + off, 0, len, vb->stream);
        if (!err)
            err = sync_stream(vb, "commit");
    }
    if (err)
        unmap_granules(vb, c, first, last);
    leave(vb, saved);
    return err;
}

static int vmm_decommit(gms_backend *be, gms_backend_chunk *c, uint64_t off, uint64_t len)
{
    vmm_backend *vb = B(be);
    gms__backend_why_clear();
    if (!range_ok(vb, c, off, len) || !whole_extents(c, off / vb->gran, (off + len) / vb->gran))
        return EINVAL;
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    unmap_granules(vb, c, off / vb->gran, (off + len) / vb->gran);
    leave(vb, saved);
    return 0;
}

static int vmm_map_view_readonly(gms_backend *be, gms_backend_chunk *c, uint64_t off,
                                 uint64_t len, uint64_t *view)
{
    vmm_backend *vb = B(be);
    gms__backend_why_clear();
    if (!range_ok(vb, c, off, len))
        return EINVAL;
    uint64_t first = off / vb->gran, last = (off + len) / vb->gran, n = last - first;
    for (uint64_t g = first; g < last; g++)
        if (!c->handles[g])
            return EINVAL; /* not committed */
    if (c->lease || !whole_extents(c, first, last)) {
        gms__backend_note("%s: a read-only view of part of %s: the driver maps an allocation "
                          "only whole", vb->drv->name, c->lease ? "gmsd's lease" : "an extent");
        return ENOTSUP;
    }
    gms_backend_mem *w = mem_new(vb, len, c->device);
    if (!w)
        return ENOMEM;
    /* The physical allocations gain a reference per mapping: a decommit
     * of the chunk's extents leaves the view intact. */
    memcpy(w->handles, c->handles + first, n * sizeof *w->handles);
    memcpy(w->ext, c->ext + first, n * sizeof *w->ext);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        goto out;
    if ((err = CALL(vb, va_reserve, "view", &w->staging, len, vb->gran)) != 0)
        goto left;
    if (!(err = extents_map(vb, "view", w->staging, w->handles, w->ext, 0, n)) &&
        (err = CALL(vb, set_access, "read-only view", w->staging, len, 0)) != 0)
        extents_unmap(vb, w->staging, w->handles, w->ext, 0, n);
    if (err)
        QUIET(vb, va_free, w->staging, len);
left:
    leave(vb, saved);
out:
    if (err) {
        mem_drop(w);
        return err;
    }
    pthread_mutex_lock(&vb->views_lock);
    w->next = vb->views;
    vb->views = w;
    pthread_mutex_unlock(&vb->views_lock);
    *view = w->staging;
    return 0;
}

/* The link to the record of view [view, +len) on the backend's list (at
 * NULL if none); views_lock held. */
static gms_backend_mem **view_link(vmm_backend *vb, uint64_t view, uint64_t len)
{
    gms_backend_mem **pw = &vb->views;
    while (*pw && ((*pw)->staging != view || (*pw)->size != len))
        pw = &(*pw)->next;
    return pw;
}

static void vmm_unmap_view(gms_backend *be, uint64_t view, uint64_t len)
{
    vmm_backend *vb = B(be);
    pthread_mutex_lock(&vb->views_lock);
    gms_backend_mem **pw = view_link(vb, view, len), *w = *pw;
    if (w)
        *pw = w->next;
    pthread_mutex_unlock(&vb->views_lock);
    if (!w)
        return; /* not a view of ours: the core never asks that */
    uintptr_t saved;
    if (enter(vb, &saved) == 0) {
        extents_unmap(vb, view, w->handles, w->ext, 0, len / vb->gran);
        QUIET(vb, va_free, view, len);
        leave(vb, saved);
    }
    mem_drop(w);
}

/* Data movement: issued on the internal stream, then waited for. */
static int vmm_write(gms_backend *be, uint64_t dst, const void *src, size_t len)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    err = CALL(vb, memcpy_htod, NULL, dst, src, len, vb->stream);
    if (!err)
        err = sync_stream(vb, "write");
    leave(vb, saved);
    return err;
}

static int vmm_read(gms_backend *be, void *dst, uint64_t src, size_t len)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    err = CALL(vb, memcpy_dtoh, NULL, dst, src, len, vb->stream);
    if (!err)
        err = sync_stream(vb, "read");
    leave(vb, saved);
    return err;
}

static int vmm_copy(gms_backend *be, uint64_t dst, uint64_t src, size_t len)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    /* gms_copy allows overlap; a device copy does not promise memmove
     * semantics, so overlapping ranges go in pieces no longer than the
     * distance, in the safe direction. */
    uint64_t dist = dst > src ? dst - src : src - dst;
    if (dist >= len || dist == 0) {
        if (dist)
            err = CALL(vb, memcpy_dtod, NULL, dst, src, len, vb->stream);
    } else if (dst < src) {
        for (uint64_t o = 0; o < len && !err; o += dist)
            err = CALL(vb, memcpy_dtod, NULL, dst + o, src + o, len - o < dist ? len - o : dist,
                       vb->stream);
    } else {
        for (uint64_t end = len; end > 0 && !err;) {
            uint64_t n = end < dist ? end : dist;
            end -= n;
            err = CALL(vb, memcpy_dtod, NULL, dst + end, src + end, n, vb->stream);
        }
    }
    if (!err)
        err = sync_stream(vb, "copy");
    leave(vb, saved);
    return err;
}

static int vmm_fill(gms_backend *be, uint64_t dst, int byte, size_t len)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    err = CALL(vb, memset_d8, NULL, dst, byte, len, vb->stream);
    if (!err)
        err = sync_stream(vb, "fill");
    leave(vb, saved);
    return err;
}

/* ---- the waiting scrub ---- */

/* Grows the pinned and device staging buffers to at least need bytes. */
static int stage_reserve(vmm_backend *vb, size_t need)
{
    if (need <= vb->stage_cap)
        return 0;
    size_t cap = vb->stage_cap ? vb->stage_cap : 64 * 1024;
    while (cap < need)
        cap *= 2;
    void *h = NULL;
    uint64_t d = 0;
    int err = CALL(vb, host_alloc, "scrub staging", &h, cap, 0);
    if (err)
        return err;
    if ((err = CALL(vb, dev_alloc, "scrub staging", &d, cap)) != 0) {
        QUIET(vb, host_free, h);
        return err;
    }
    if (vb->stage_host) {
        QUIET(vb, host_free, vb->stage_host);
        QUIET(vb, dev_free, vb->stage_dev);
    }
    vb->stage_host = h;
    vb->stage_dev = d;
    vb->stage_cap = cap;
    return 0;
}

static int scrub_locked(vmm_backend *vb, gms_scrub_item *items, size_t n, uint64_t pattern,
                        uint64_t seed)
{
    gms_scrub_plan plan = gms__scrub_plan_size(items, n);
    if (plan.bytes == 0)
        return 0;
    if (!vb->scrub_fn) {
        gms__backend_note("%s: the scrub kernel is missing (%s)%s", vb->drv->name,
                          vb->kernel_why, vb->kernel_hint ? vb->kernel_hint : "");
        return ENOSYS;
    }
    if (n > UINT32_MAX)
        return EINVAL;
    int err = stage_reserve(vb, plan.bytes);
    if (err)
        return err;
    gms_kparams p;
    gms__scrub_plan_build(&plan, items, n, vb->stage_host, vb->stage_dev, pattern, seed, &p);
    uint64_t work = p.check_tiles > p.fill_tiles ? p.check_tiles : p.fill_tiles;
    unsigned grid = work < vb->max_grid ? (unsigned)work : vb->max_grid;
    if (grid == 0)
        grid = 1;
    if ((err = CALL(vb, memcpy_htod, "scrub work list", vb->stage_dev, vb->stage_host, plan.bytes,
                    vb->stream)) != 0)
        return err;
    void *args[] = {&p};
    if ((err = CALL(vb, launch_cooperative, "scrub", vb->scrub_fn, grid, GMS_KTHREADS, vb->stream,
                    args)) != 0)
        return err;
    if ((err = CALL(vb, memcpy_dtoh, "scrub results", (char *)vb->stage_host + plan.seg_bytes,
                    vb->stage_dev + plan.seg_bytes, n * sizeof(gms_kres), vb->stream)) != 0)
        return err;
    if ((err = sync_stream(vb, "scrub kernel")) != 0)
        return err;
    gms__scrub_plan_results(&plan, vb->stage_host, items, n);
    return 0;
}

static int vmm_scrub(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                     uint64_t seed)
{
    vmm_backend *vb = B(be);
    for (size_t i = 0; i < n; i++)
        items[i].bad = items[i].verify_bad = 0;
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    pthread_mutex_lock(&vb->scrub_lock);
    err = scrub_locked(vb, items, n, pattern, seed);
    pthread_mutex_unlock(&vb->scrub_lock);
    leave(vb, saved);
    return err;
}

/* A stream-ordered free: the internal stream, where every scrub runs,
 * waits for an event recorded on the caller's stream. */
static int vmm_order_after(gms_backend *be, void *stream, int wait)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    if (wait) {
        err = CALL(vb, stream_sync, "the caller's stream", stream);
    } else {
        void *ev = NULL;
        err = CALL(vb, event_create, "ordering after the caller's stream", &ev);
        if (!err) {
            err = CALL(vb, event_record, "ordering after the caller's stream", ev, stream);
            if (!err)
                err = CALL(vb, stream_wait_event, "ordering after the caller's stream",
                           vb->stream, ev);
            QUIET(vb, event_destroy, ev); /* released once the wait has passed */
        }
    }
    leave(vb, saved);
    return err;
}

/* ---- the stream-ordered scrub ---- */

static uint64_t slot_done(const vmm_backend *vb, uint32_t slot)
{
    return atomic_load_explicit((const uint64_t _Atomic *)&vb->slots_host[slot].done,
                                memory_order_acquire);
}

static int vmm_ticket_reserve(gms_backend *be, uint64_t *ticket)
{
    vmm_backend *vb = B(be);
    pthread_mutex_lock(&vb->async_lock);
    uint64_t t = vb->next_ticket;
    uint32_t slot = (uint32_t)(t % ASYNC_SLOTS);
    uint64_t prev = vb->slot_issued[slot];
    if (prev && !(vb->slot_marker[slot] && slot_done(vb, slot) >= prev)) {
        pthread_mutex_unlock(&vb->async_lock);
        gms__backend_note("%s: %u stream-ordered scrubs in flight", vb->drv->name, ASYNC_SLOTS);
        return EBUSY;
    }
    vb->slot_issued[slot] = t;
    vb->slot_marker[slot] = 0;
    vb->slot_failed[slot] = 0;
    vb->next_ticket = t + 1;
    pthread_mutex_unlock(&vb->async_lock);
    *ticket = t;
    return 0;
}

static int vmm_scrub_async(gms_backend *be, gms_scrub_item *items, size_t n, uint64_t pattern,
                           uint64_t seed, void *stream, uint64_t t)
{
    vmm_backend *vb = B(be);
    uint32_t slot = (uint32_t)(t % ASYNC_SLOTS);
    int err = n > GMS_SCRUB_ASYNC_MAX ? EINVAL : 0;
    /* The work list travels in the launch's parameters. */
    gms_kasync p;
    p.pattern = pattern;
    p.seed = seed;
    p.nranges = 0;
    p.nitems = (uint32_t)n;
    p.tiles = 0;
    bool reports = false;
    for (size_t i = 0; i < n && !err; i++) {
        const gms_scrub_item *it = &items[i];
        reports |= it->verify && !it->zero;
        uint8_t flags = (uint8_t)(((it->passes & GMS_SCRUB_MULTIPASS) ? GMS_KF_MULTIPASS : 0) |
                                  (it->verify && !it->zero ? GMS_KF_VERIFY : 0));
        for (int r = 0; r < 4; r++) {
            uint64_t lo = r < 2 ? it->check_lo[r] : it->fill_lo[r - 2];
            uint64_t hi = r < 2 ? it->check_hi[r] : it->fill_hi[r - 2];
            if (lo >= hi)
                continue;
            uint8_t op = r < 2 ? GMS_KOP_CHECK : it->zero ? GMS_KOP_ZERO : GMS_KOP_FILL;
            uint64_t tiles = gms__scrub_tiles(lo, hi);
            if (p.tiles + tiles > UINT32_MAX) { /* 64 TiB in one batch: not a device's */
                err = EINVAL;
                break;
            }
            p.r[p.nranges++] = (gms_krange){.lo = lo, .hi = hi, .item = (uint16_t)i, .op = op,
                                            .flags = r < 2 ? 0 : flags, .tile0 = p.tiles};
            p.tiles += (uint32_t)tiles;
            reports |= op == GMS_KOP_CHECK;
        }
    }
    vb->slot_marker[slot] = !reports; /* never collected: reusable once run */
    p.ticket = t;
    p.dev = vb->slots_dev + slot;
    p.host = vb->slots_host_dev + slot;
    /* One block at least: the last one writes the done word. */
    unsigned grid = p.tiles < vb->async_grid ? (p.tiles ? p.tiles : 1) : vb->async_grid;
    uintptr_t saved;
    if (!err && (err = enter(vb, &saved)) == 0) {
        /* A launch into a stream being captured would become part of the
         * graph, and check and poison its ranges again at every replay,
         * long after the blocks went back to use. */
        int capturing = 0;
        err = CALL(vb, stream_capturing, "before a stream-ordered scrub", stream, &capturing);
        if (!err && capturing)
            err = EBUSY;
        void *args[] = {&p};
        if (!err)
            err = CALL(vb, launch, "stream-ordered scrub", vb->async_fn, grid, GMS_KTHREADS,
                       stream, args);
        leave(vb, saved);
    }
    if (err) {
        /* Nothing was queued: the ticket completes now, as a failure, so
         * that the tickets after it are not held up. */
        vb->slot_failed[slot] = 1;
        atomic_store_explicit((uint64_t _Atomic *)&vb->slots_host[slot].done, t,
                              memory_order_release);
        return err;
    }
    return 0;
}

static int vmm_scrub_collect(gms_backend *be, uint64_t ticket, gms_scrub_item *items, size_t n)
{
    vmm_backend *vb = B(be);
    uint32_t slot = (uint32_t)(ticket % ASYNC_SLOTS);
    if (slot_done(vb, slot) < ticket)
        return EAGAIN;
    const gms_kslot_host *h = &vb->slots_host[slot];
    int failed = vb->slot_failed[slot];
    for (size_t i = 0; i < n && i < GMS_SCRUB_ASYNC_MAX; i++) {
        items[i].bad = failed || h->bad[i] == ~0ull ? 0 : h->bad[i];
        items[i].verify_bad = failed || h->vbad[i] == ~0ull ? 0 : h->vbad[i];
    }
    pthread_mutex_lock(&vb->async_lock);
    vb->slot_issued[slot] = 0;
    pthread_mutex_unlock(&vb->async_lock);
    if (failed) {
        gms__backend_note("%s: a stream-ordered scrub could not be queued", vb->drv->name);
        return EIO;
    }
    return 0;
}

static uint64_t vmm_done_upto(gms_backend *be)
{
    vmm_backend *vb = B(be);
    uint64_t w = atomic_load_explicit(&vb->done_upto, memory_order_acquire), start = w;
    /* A slot's done word only grows, and a slot is reused only once its
     * ticket was collected, so done >= t says that ticket t has run. */
    while (slot_done(vb, (uint32_t)((w + 1) % ASYNC_SLOTS)) >= w + 1)
        w++;
    while (w > start && !atomic_compare_exchange_weak(&vb->done_upto, &start, w))
        ; /* another thread may have gone further */
    return atomic_load_explicit(&vb->done_upto, memory_order_acquire);
}

static int vmm_ticket_done(gms_backend *be, uint64_t ticket)
{
    /* A slot is taken again only once its ticket ran: a later ticket's
     * done word in it says so too. */
    return slot_done(B(be), (uint32_t)(ticket % ASYNC_SLOTS)) >= ticket;
}

static int vmm_quiesce(gms_backend *be)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    err = GMS_DRV(vb->drv, device_sync, NULL, vb->dd);
    leave(vb, saved);
    return err;
}

/* The rings, made once at creation (a wait is fine there). */
static int async_init(vmm_backend *vb, int sms)
{
    size_t hbytes = ASYNC_SLOTS * sizeof(gms_kslot_host);
    size_t dbytes = ASYNC_SLOTS * sizeof(gms_kslot_dev);
    void *h = NULL;
    uint64_t hd = 0, d = 0;
    int err = CALL(vb, host_alloc, "scrub results", &h, hbytes, 1);
    if (err)
        return err;
    memset(h, 0, hbytes);
    if ((err = CALL(vb, host_device_ptr, "scrub results", &hd, h)) != 0 ||
        (err = CALL(vb, dev_alloc, "scrub rings", &d, dbytes)) != 0) {
        QUIET(vb, host_free, h);
        return err;
    }
    gms_kslot_dev *init = malloc(dbytes);
    vb->slot_issued = calloc(ASYNC_SLOTS, sizeof *vb->slot_issued);
    vb->slot_failed = calloc(ASYNC_SLOTS, 1);
    vb->slot_marker = calloc(ASYNC_SLOTS, 1);
    if (!init || !vb->slot_issued || !vb->slot_failed || !vb->slot_marker) {
        free(init);
        QUIET(vb, dev_free, d);
        QUIET(vb, host_free, h);
        return ENOMEM;
    }
    memset(init, 0xff, dbytes);
    for (unsigned i = 0; i < ASYNC_SLOTS; i++)
        init[i].finished = 0;
    err = CALL(vb, memcpy_htod, "scrub rings", d, init, dbytes, vb->stream);
    if (!err)
        err = sync_stream(vb, "scrub rings");
    free(init);
    if (err) {
        QUIET(vb, dev_free, d);
        QUIET(vb, host_free, h);
        return err;
    }
    vb->slots_host = h;
    vb->slots_host_dev = (gms_kslot_host *)(uintptr_t)hd;
    vb->slots_dev = (gms_kslot_dev *)(uintptr_t)d;
    vb->next_ticket = 1;
    /* Enough blocks to fill the GPU on one large free: as many as fit on
     * it at once (the replays on the H200 ran at a fraction of the memory's
     * bandwidth with two per multiprocessor and range). */
    int per_sm = 0;
    if (QUIET(vb, occupancy, &per_sm, vb->async_fn, GMS_KTHREADS) != 0 || per_sm <= 0)
        per_sm = 2;
    vb->async_grid = (unsigned)(per_sm * (sms > 0 ? sms : 32));
    return 0;
}

/* Loads the kernels (the device is current). Missing kernels are not an
 * error here: the scrub reports them, so that data still moves. */
static void load_kernels(vmm_backend *vb, const gms_vmm_config *cfg)
{
    const char *name = vb->drv->name;
    if (!cfg->image) {
        snprintf(vb->kernel_why, sizeof vb->kernel_why, "%s", cfg->no_image);
        return;
    }
    if (!cfg->cooperative) {
        snprintf(vb->kernel_why, sizeof vb->kernel_why,
                 "%s: the device cannot run a cooperative launch", name);
        return;
    }
    if (!vb->drv->launch_cooperative) {
        snprintf(vb->kernel_why, sizeof vb->kernel_why,
                 "%s: the driver has no cooperative launch (too old?)", name);
        return;
    }
    if (CALL(vb, module_load, "scrub kernels", &vb->module, cfg->image) != 0) {
        vb->module = NULL;
        snprintf(vb->kernel_why, sizeof vb->kernel_why, "%s (built for another GPU?)",
                 gms__backend_why());
        return;
    }
    if (CALL(vb, module_function, "gms_scrub_kernel", &vb->scrub_fn, vb->module,
             "gms_scrub_kernel") != 0) {
        vb->scrub_fn = NULL;
        snprintf(vb->kernel_why, sizeof vb->kernel_why, "%s", gms__backend_why());
        return;
    }
    int per_sm = 0;
    if (QUIET(vb, occupancy, &per_sm, vb->scrub_fn, GMS_KTHREADS) != 0 || per_sm <= 0)
        per_sm = 1;
    vb->max_grid = (unsigned)(per_sm * (cfg->sms > 0 ? cfg->sms : 1));
    if (QUIET(vb, module_function, &vb->atomic_fn, vb->module, "gms_atomic_kernel") != 0)
        vb->atomic_fn = NULL; /* an image without it: atomics say so */
    if (!cfg->sync_scrub &&
        QUIET(vb, module_function, &vb->async_fn, vb->module, "gms_scrub_async_kernel") == 0 &&
        async_init(vb, cfg->sms) != 0)
        vb->async_fn = NULL;
    gms__backend_why_clear(); /* no stream-ordered scrub is no failure */
}

/* ---- access windows' events and checked atomics (docs/ordering.md) ---- */

static int vmm_event_create(gms_backend *be, void **event)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (!err) {
        err = CALL(vb, event_create, "access window", event);
        leave(vb, saved);
    }
    return err;
}

static void vmm_event_destroy(gms_backend *be, void *event)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    if (enter(vb, &saved) == 0) {
        QUIET(vb, event_destroy, event);
        leave(vb, saved);
    }
}

static int vmm_event_record(gms_backend *be, void *event, void *stream)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (!err) {
        err = CALL(vb, event_record, "end of an access window", event, stream);
        leave(vb, saved);
    }
    return err;
}

static int vmm_stream_wait(gms_backend *be, void *stream, void *event)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (!err) {
        err = CALL(vb, stream_wait_event, "start of an access window", stream, event);
        leave(vb, saved);
    }
    return err;
}

/* Launches of up to GMS_KATOMIC_MAX words, their list in the parameters. */
static int vmm_atomic(gms_backend *be, const gms_atomic_work *w, size_t n, void *stream)
{
    vmm_backend *vb = B(be);
    if (!vb->atomic_fn) {
        gms__backend_note("%s: the checked-atomics kernel is not loaded (%s)", vb->drv->name,
                          vb->kernel_why[0] ? vb->kernel_why : "an older kernels image");
        return ENOSYS;
    }
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    for (size_t at = 0; !err && at < n; at += GMS_KATOMIC_MAX) {
        gms_katomics p;
        p.n = (uint32_t)(n - at < GMS_KATOMIC_MAX ? n - at : GMS_KATOMIC_MAX);
        p.pad = 0;
        for (uint32_t i = 0; i < p.n; i++)
            p.w[i] = (gms_katomic){w[at + i].addr, w[at + i].operand, w[at + i].compare,
                                   w[at + i].result, w[at + i].op, w[at + i].width};
        void *args[] = {&p};
        unsigned grid = (p.n + GMS_KTHREADS - 1) / GMS_KTHREADS;
        err = CALL(vb, launch, "checked atomics", vb->atomic_fn, grid, GMS_KTHREADS, stream, args);
    }
    leave(vb, saved);
    return err;
}

static int vmm_host_word_take(gms_backend *be, volatile uint64_t **host, uint64_t *dev)
{
    vmm_backend *vb = B(be);
    int err = 0;
    pthread_mutex_lock(&vb->word_lock);
    if (!vb->words_host) {
        uintptr_t saved;
        void *h = NULL;
        if ((err = enter(vb, &saved)) == 0) {
            err = CALL(vb, host_alloc, "atomic results", &h, HOST_WORDS * 8, 1);
            if (!err && (err = CALL(vb, host_device_ptr, "atomic results", &vb->words_dev, h)) != 0)
                QUIET(vb, host_free, h);
            leave(vb, saved);
        }
        if (!err)
            vb->words_host = h;
    }
    unsigned i = 0;
    while (!err && i < HOST_WORDS && vb->words_taken[i])
        i++;
    if (!err && i == HOST_WORDS)
        err = EBUSY;
    if (!err) {
        vb->words_taken[i] = 1;
        vb->words_host[i] = 0;
        *host = &vb->words_host[i];
        *dev = vb->words_dev + 8u * i;
    }
    pthread_mutex_unlock(&vb->word_lock);
    return err;
}

static void vmm_host_word_put(gms_backend *be, volatile uint64_t *host)
{
    vmm_backend *vb = B(be);
    pthread_mutex_lock(&vb->word_lock);
    vb->words_taken[host - vb->words_host] = 0;
    pthread_mutex_unlock(&vb->word_lock);
}

/* ---- sealed regions (backend.h, docs/sealed.md) ---- */

/* The launch arguments hold the key schedule: built in a locked page,
 * wiped after the launch (the driver keeps its own copy of a launch's
 * arguments, which gms cannot wipe: docs/sealed.md says so). */
typedef struct seal_locked {
    gms_gcm_key key;
    gms_seal_kargs args;
    gms_digest_kargs dargs;
} seal_locked;

static seal_locked *locked_page(void)
{
    size_t n = (sizeof(seal_locked) + 4095) & ~(size_t)4095;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (mlock(p, n) != 0) {
        munmap(p, n);
        return NULL;
    }
    madvise(p, n, MADV_DONTDUMP);
    return p;
}

static void locked_page_free(seal_locked *p)
{
    size_t n = (sizeof(seal_locked) + 4095) & ~(size_t)4095;
    OPENSSL_cleanse(p, n);
    munlock(p, n);
    munmap(p, n);
}

/* One launch of the seal kernel in mode over the job's region, on the
 * backend's stream; tags_dev: the device's tag array. */
static int seal_launch(vmm_backend *vb, seal_locked *s, const gms_seal_job *j, uint32_t mode,
                       uint64_t tags_dev)
{
    gms_seal_kargs *a = &s->args;
    memcpy(a->rk, s->key.rk, sizeof a->rk);
    a->h_hi = s->key.h.hi;
    a->h_lo = s->key.h.lo;
    a->addr = j->addr;
    a->len = j->len;
    a->tags = tags_dev;
    a->region = j->region;
    a->counter = j->counter;
    a->mode = mode;
    uint64_t chunks = (j->len + GMS_SEAL_CHUNK - 1) / GMS_SEAL_CHUNK;
    unsigned grid = chunks < vb->seal_grid ? (unsigned)chunks : vb->seal_grid;
    void *args[] = {a};
    return CALL(vb, launch, "seal kernel", vb->seal_fn, grid, GMS_SEAL_KTHREADS, vb->stream, args);
}

/* Seal (unseal false) or unseal: tags computed on the device into a
 * device array; unseal compares them on the host (CRYPTO_memcmp) and
 * decrypts only when all hold. */
static int seal_common(gms_backend *be, gms_seal_job *j, bool unseal)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    if (!vb->seal_fn) {
        gms__backend_note("%s: the sealed-region kernels are missing (not built in, or not loaded)",
                          vb->drv->name);
        leave(vb, saved);
        return ENOSYS;
    }
    uint64_t chunks = (j->len + GMS_SEAL_CHUNK - 1) / GMS_SEAL_CHUNK;
    size_t tag_bytes = (size_t)chunks * GMS_SEAL_TAG_BYTES;
    seal_locked *s = locked_page();
    uint8_t *got = unseal ? malloc(tag_bytes) : NULL;
    uint64_t tags_dev = 0;
    if (!s || (unseal && !got)) {
        err = ENOMEM;
        goto out;
    }
    gms_gcm_key_make(&s->key, j->key);
    if ((err = CALL(vb, dev_alloc, "seal tags", &tags_dev, tag_bytes)) != 0) {
        tags_dev = 0;
        goto out;
    }
    if (!unseal) {
        if ((err = seal_launch(vb, s, j, GMS_SEAL_K_ENCRYPT, tags_dev)) == 0 &&
            (err = CALL(vb, memcpy_dtoh, "seal tags", j->tags, tags_dev, tag_bytes, vb->stream)) == 0)
            err = sync_stream(vb, "seal kernel");
        goto out;
    }
    j->bad = GMS_SEAL_NONE_BAD;
    if ((err = seal_launch(vb, s, j, GMS_SEAL_K_TAGS, tags_dev)) != 0 ||
        (err = CALL(vb, memcpy_dtoh, "unseal tags", got, tags_dev, tag_bytes, vb->stream)) != 0 ||
        (err = sync_stream(vb, "unseal tag kernel")) != 0)
        goto out;
    for (uint64_t i = 0; i < chunks && j->bad == GMS_SEAL_NONE_BAD; i++)
        if (CRYPTO_memcmp(got + 16 * i, j->tags + 16 * i, 16) != 0)
            j->bad = i;
    if (j->bad == GMS_SEAL_NONE_BAD &&
        (err = seal_launch(vb, s, j, GMS_SEAL_K_DECRYPT, tags_dev)) == 0)
        err = sync_stream(vb, "unseal kernel");
out:
    if (tags_dev)
        QUIET(vb, dev_free, tags_dev);
    if (s)
        locked_page_free(s);
    free(got);
    leave(vb, saved);
    return err;
}

static int vmm_seal(gms_backend *be, gms_seal_job *j)
{
    return seal_common(be, j, false);
}

static int vmm_unseal(gms_backend *be, gms_seal_job *j)
{
    return seal_common(be, j, true);
}

static int vmm_digest_leaves(gms_backend *be, uint64_t addr, uint64_t len, const uint8_t key[32],
                             uint8_t *out)
{
    static const uint32_t sha_k[64] = {GMS_SHA256_K};
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    if (!vb->digest_fn) {
        gms__backend_note("%s: the digest kernel is missing (not built in, or not loaded)",
                          vb->drv->name);
        leave(vb, saved);
        return ENOSYS;
    }
    uint64_t leaves = (len + GMS_DIGEST_LEAF - 1) / GMS_DIGEST_LEAF;
    seal_locked *s = locked_page();
    uint64_t out_dev = 0;
    if (!s) {
        err = ENOMEM;
        goto out;
    }
    if ((err = CALL(vb, dev_alloc, "digest leaves", &out_dev, (size_t)leaves * 32)) != 0) {
        out_dev = 0;
        goto out;
    }
    gms_digest_kargs *a = &s->dargs;
    gms_hmac_sha256_midstates(key, 32, sha_k, a->inner, a->outer);
    a->addr = addr;
    a->len = len;
    a->out = out_dev;
    uint64_t blocks = (leaves + GMS_SEAL_KTHREADS - 1) / GMS_SEAL_KTHREADS;
    void *args[] = {a};
    if ((err = CALL(vb, launch, "digest kernel", vb->digest_fn, (unsigned)blocks,
                    GMS_SEAL_KTHREADS, vb->stream, args)) == 0 &&
        (err = CALL(vb, memcpy_dtoh, "digest leaves", out, out_dev, (size_t)leaves * 32,
                    vb->stream)) == 0)
        err = sync_stream(vb, "digest kernel");
out:
    if (out_dev)
        QUIET(vb, dev_free, out_dev);
    if (s)
        locked_page_free(s);
    leave(vb, saved);
    return err;
}

/* Loads the sealed-region kernels (the device is current); without them
 * gms_seal and gms_digest say so. */
static void load_seal_kernels(vmm_backend *vb, const gms_vmm_config *cfg)
{
    if (!cfg->seal_image ||
        QUIET(vb, module_load, &vb->seal_module, cfg->seal_image) != 0) {
        vb->seal_module = NULL;
        return;
    }
    if (QUIET(vb, module_function, &vb->seal_fn, vb->seal_module, "gms_seal_kernel") != 0)
        vb->seal_fn = NULL;
    if (QUIET(vb, module_function, &vb->digest_fn, vb->seal_module, "gms_digest_kernel") != 0)
        vb->digest_fn = NULL;
    int per_sm = 0;
    if (!vb->seal_fn ||
        QUIET(vb, occupancy, &per_sm, vb->seal_fn, GMS_SEAL_KTHREADS) != 0 || per_sm <= 0)
        per_sm = 1;
    /* Every co-resident block; each loops over chunks, so its setup (the
     * tables, a power of H per thread) is paid once. */
    vb->seal_grid = (unsigned)(per_sm * (cfg->sms > 0 ? cfg->sms : 1));
}

/* ---- pool migration (backend.h, docs/migration.md) ----
 * New granules are made on the target and mapped at a staging range for
 * the copy in (a peer copy between two GPUs); the move then unmaps each
 * range of the chunk and maps the new granules at the same addresses
 * (with access for the backend's device and the target), and the views
 * likewise. The old granules stay alive (their handles) until released,
 * mapped at a staging range of their own for the wipe. */

/* The end of the run of nonzero handles from g (set_access per run: it
 * costs more than a map, vmm_commit). */
static uint64_t run_end(const uint64_t *handles, uint64_t g, uint64_t n)
{
    while (g < n && handles[g])
        g++;
    return g;
}

/* Unmaps staging and releases the handles of m; frees m. */
static void mem_free(vmm_backend *vb, gms_backend_mem *m)
{
    uint64_t n = m->size / vb->gran;
    if (m->staging) {
        extents_unmap(vb, m->staging, m->handles, m->ext, 0, n);
        QUIET(vb, va_free, m->staging, m->size);
    }
    extents_release(vb, m->handles, m->ext, 0, n);
    mem_drop(m);
}

/* Maps each handle of m at its staging address, read-write for the
 * backend's device (the copy and the wipe run there). */
static int mem_stage(vmm_backend *vb, gms_backend_mem *m)
{
    int err = CALL(vb, va_reserve, "migration staging", &m->staging, m->size, vb->gran);
    if (err) {
        m->staging = 0;
        return err;
    }
    uint64_t n = m->size / vb->gran;
    err = extents_map(vb, "migration staging", m->staging, m->handles, m->ext, 0, n);
    for (uint64_t u = 0; u < n && !err; u++) {
        if (!m->handles[u])
            continue;
        uint64_t end = run_end(m->handles, u, n); /* one access call a run */
        err = access_rw(vb, m->device, m->staging + u * vb->gran, (end - u) * vb->gran);
        u = end - 1;
    }
    if (err) {
        extents_unmap(vb, m->staging, m->handles, m->ext, 0, n);
        QUIET(vb, va_free, m->staging, m->size);
        m->staging = 0;
    }
    return err;
}

static int vmm_move_create(gms_backend *be, gms_backend_chunk *c, int device,
                           const gms_backend_range *r, size_t n, gms_backend_mem **out,
                           uint64_t *staging)
{
    vmm_backend *vb = B(be);
    gms__backend_why_clear();
    for (size_t i = 0; i < n; i++)
        if (!range_ok(vb, c, r[i].off, r[i].len))
            return EINVAL;
    gms_backend_mem *m = mem_new(vb, c->size, device);
    if (!m)
        return ENOMEM;
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err) {
        mem_free(vb, m);
        return err;
    }
    /* A granule an allocation, as the core's commits were before: its
     * extents are rebuilt by later commits only. */
    for (size_t i = 0; i < n && !err; i++)
        for (uint64_t g = r[i].off / vb->gran; g < (r[i].off + r[i].len) / vb->gran && !err; g++) {
            err = mem_create(vb, device, vb->gran, &m->handles[g]);
            m->ext[g] = err ? 0 : 1;
        }
    if (!err && n)
        err = mem_stage(vb, m);
    if (err) {
        mem_free(vb, m);
    } else {
        *out = m;
        *staging = m->staging;
    }
    leave(vb, saved);
    return err;
}

/* Maps the chunk's granules that hold a handle in `handles` onto those
 * extents (`ext`) at the chunk's addresses, unmapping what is there (the
 * extents cur_handles and cur_ext say), with access; the views onto them
 * read-only, their records following. */
static int map_chunk_onto(vmm_backend *vb, gms_backend_chunk *c, const uint64_t *cur_handles,
                          const uint32_t *cur_ext, const uint64_t *handles, const uint32_t *ext,
                          int device, const uint64_t *views, const uint64_t *view_off,
                          const uint64_t *view_len, size_t nviews)
{
    int err = 0;
    uint64_t n = c->size / vb->gran;
    for (uint64_t g = 0; g < n && !err; g++) {
        if (!handles[g])
            continue;
        uint64_t end = run_end(handles, g, n);
        extents_unmap(vb, c->base, cur_handles, cur_ext, g, end);
        err = extents_map(vb, "migration", c->base, handles, ext, g, end);
        if (!err)
            err = access_rw(vb, device, c->base + g * vb->gran, (end - g) * vb->gran);
        g = end - 1;
    }
    for (size_t i = 0; i < nviews && !err; i++) {
        pthread_mutex_lock(&vb->views_lock);
        gms_backend_mem *w = *view_link(vb, views[i], view_len[i]);
        pthread_mutex_unlock(&vb->views_lock);
        uint64_t vn = view_len[i] / vb->gran, first = view_off[i] / vb->gran;
        if (!w || !whole_extents_of(handles, ext, first, first + vn)) {
            err = EINVAL;
            break;
        }
        extents_unmap(vb, views[i], w->handles, w->ext, 0, vn);
        memcpy(w->handles, handles + first, vn * sizeof *w->handles);
        memcpy(w->ext, ext + first, vn * sizeof *w->ext);
        err = extents_map(vb, "migration view", views[i], w->handles, w->ext, 0, vn);
        if (!err)
            err = CALL(vb, set_access, "migration view", views[i], view_len[i], 0);
    }
    return err;
}

static int vmm_move_remap(gms_backend *be, gms_backend_chunk *c, gms_backend_mem *m,
                          const uint64_t *views, const uint64_t *view_off,
                          const uint64_t *view_len, size_t nviews, gms_backend_mem **old,
                          uint64_t *old_staging)
{
    vmm_backend *vb = B(be);
    gms__backend_why_clear();
    if (m->size != c->size)
        return EINVAL;
    uint64_t n = c->size / vb->gran;
    gms_backend_mem *o = mem_new(vb, c->size, c->device);
    if (!o)
        return ENOMEM;
    bool any = false;
    for (uint64_t g = 0; g < n; g++) {
        if (m->handles[g])
            o->handles[g] = c->handles[g], o->ext[g] = c->ext[g];
        any |= o->handles[g] != 0;
    }
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err) {
        mem_drop(o);
        return err;
    }
    /* Everything the device did on the old memory is done (the copy
     * waited; the core waited for the rest). The old memory's staging
     * mapping first: the last step that may fail with nothing changed. */
    if (any && (err = mem_stage(vb, o)) != 0) {
        mem_drop(o);
        leave(vb, saved);
        return err;
    }
    err = map_chunk_onto(vb, c, c->handles, c->ext, m->handles, m->ext, m->device, views,
                         view_off, view_len, nviews);
    if (err) {
        /* Back onto the old extents, which still hold the data. */
        map_chunk_onto(vb, c, m->handles, m->ext, o->handles, o->ext, o->device, views, view_off,
                       view_len, nviews);
        if (o->staging) {
            extents_unmap(vb, o->staging, o->handles, o->ext, 0, n);
            QUIET(vb, va_free, o->staging, o->size);
        }
        mem_drop(o);
        leave(vb, saved);
        return err;
    }
    /* The chunk's handles are the new ones; the new memory's staging
     * mapping goes, its handles stay the chunk's. */
    for (uint64_t g = 0; g < n; g++)
        if (m->handles[g])
            c->handles[g] = m->handles[g], c->ext[g] = m->ext[g];
    if (m->staging) {
        extents_unmap(vb, m->staging, m->handles, m->ext, 0, n);
        QUIET(vb, va_free, m->staging, m->size);
    }
    c->device = m->device;
    mem_drop(m);
    leave(vb, saved);
    *old = o;
    *old_staging = o->staging;
    return 0;
}

static void vmm_move_release(gms_backend *be, gms_backend_mem *m)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    if (!m)
        return;
    if (enter(vb, &saved) != 0) {
        mem_drop(m);
        return;
    }
    mem_free(vb, m);
    leave(vb, saved);
}

static int vmm_device_count(gms_backend *be)
{
    vmm_backend *vb = B(be);
    int n = 1;
    if (vb->drv->device_count && vb->drv->device_count(vb->dd, &n) != 0)
        n = 1;
    return n;
}

static gms_fresh vmm_fresh(gms_backend *be, const gms_backend_chunk *c)
{
    (void)be;
    return c->fresh;
}

static void vmm_poison_ahead(gms_backend *be, uint64_t pattern)
{
    vmm_backend *vb = B(be);
    if (!vb->spare_running)
        return;
    pthread_mutex_lock(&vb->spare_lock);
    vb->spare_pattern = pattern;
    pthread_mutex_unlock(&vb->spare_lock);
}

static void vmm_destroy(gms_backend *be)
{
    vmm_backend *vb = B(be);
    /* The spare lease first: gmsd's leaser goes last. */
    if (vb->spare_running) {
        pthread_mutex_lock(&vb->spare_lock);
        vb->spare_stop = 1;
        pthread_cond_signal(&vb->spare_wake);
        pthread_mutex_unlock(&vb->spare_lock);
        pthread_join(vb->spare_thread, NULL);
        spare_drop(vb);
        pthread_cond_destroy(&vb->spare_made);
        pthread_cond_destroy(&vb->spare_wake);
        pthread_mutex_destroy(&vb->spare_lock);
    }
    uintptr_t saved;
    if (vb->stream && enter(vb, &saved) == 0) {
        /* After a device fault the context is unusable: these fail, and
         * the driver frees everything with the context. */
        if (vb->stage_host) {
            QUIET(vb, host_free, vb->stage_host);
            QUIET(vb, dev_free, vb->stage_dev);
        }
        if (vb->slots_host) {
            QUIET(vb, host_free, vb->slots_host);
            QUIET(vb, dev_free, (uint64_t)(uintptr_t)vb->slots_dev);
        }
        if (vb->words_host)
            QUIET(vb, host_free, vb->words_host);
        if (vb->module)
            QUIET(vb, module_unload, vb->module);
        if (vb->seal_module)
            QUIET(vb, module_unload, vb->seal_module);
        QUIET(vb, stream_destroy, vb->stream);
        leave(vb, saved);
    }
    if (vb->drv->timed)
        gms__drv_dump(vb->drv, stderr);
    if (vb->leaser.done)
        vb->leaser.done(vb->leaser.ctx);
    vb->dd_free(vb->dd);
    pthread_mutex_destroy(&vb->scrub_lock);
    pthread_mutex_destroy(&vb->async_lock);
    pthread_mutex_destroy(&vb->word_lock);
    pthread_mutex_destroy(&vb->views_lock);
    for (gms_backend_mem *w = vb->views, *next; w; w = next) { /* the core unmaps every view first */
        next = w->next;
        mem_drop(w);
    }
    free(vb->slot_issued);
    free(vb->slot_failed);
    free(vb->slot_marker);
    free(vb);
}

static const gms_backend_ops vmm_ops = {
    /* A fill kernel is cheap on a GPU, remapping is not; commits are extents. */
    .props = GMS_BACKEND_REMAP_COSTLY | GMS_BACKEND_WHOLE_COMMITS,
    .reserve = vmm_reserve,
    .release = vmm_release,
    .commit = vmm_commit,
    .decommit = vmm_decommit,
    .map_view_readonly = vmm_map_view_readonly,
    .unmap_view = vmm_unmap_view,
    .write = vmm_write,
    .read = vmm_read,
    .copy = vmm_copy,
    .fill = vmm_fill,
    .scrub = vmm_scrub,
    .order_after = vmm_order_after,
    .event_create = vmm_event_create,
    .event_destroy = vmm_event_destroy,
    .event_record = vmm_event_record,
    .stream_wait = vmm_stream_wait,
    .atomic = vmm_atomic,
    .host_word_take = vmm_host_word_take,
    .host_word_put = vmm_host_word_put,
    .ticket_reserve = vmm_ticket_reserve,
    .scrub_async = vmm_scrub_async,
    .scrub_collect = vmm_scrub_collect,
    .done_upto = vmm_done_upto,
    .ticket_done = vmm_ticket_done,
    .quiesce = vmm_quiesce,
    .seal = vmm_seal,
    .unseal = vmm_unseal,
    .digest_leaves = vmm_digest_leaves,
    .move_create = vmm_move_create,
    .move_remap = vmm_move_remap,
    .move_release = vmm_move_release,
    .device_count = vmm_device_count,
    .fresh = vmm_fresh,
    .poison_ahead = vmm_poison_ahead,
    .destroy = vmm_destroy,
};

int gms__vmm_create(const gms_vmm_config *cfg, gms_backend **out)
{
    uint64_t g = cfg->granularity;
    if (g == 0 || (g & (g - 1))) {
        gms__backend_note("%s: the device reports granularity %llu", cfg->drv->name,
                          (unsigned long long)g);
        cfg->dd_free(cfg->dd);
        return EIO;
    }
    vmm_backend *vb = calloc(1, sizeof *vb);
    if (!vb) {
        cfg->dd_free(cfg->dd);
        return ENOMEM;
    }
    vb->drv = cfg->drv;
    vb->drv->timed = getenv("GMS_DRIVER_STATS") != NULL;
    vb->dd = cfg->dd;
    vb->dd_free = cfg->dd_free;
    vb->current = cfg->current;
    vb->gran = g;
    vb->kernel_hint = cfg->kernel_hint;
    if (pthread_mutex_init(&vb->scrub_lock, NULL) != 0) {
        cfg->dd_free(cfg->dd);
        free(vb);
        return ENOMEM;
    }
    if (pthread_mutex_init(&vb->async_lock, NULL) != 0) {
        pthread_mutex_destroy(&vb->scrub_lock);
        cfg->dd_free(cfg->dd);
        free(vb);
        return ENOMEM;
    }
    if (pthread_mutex_init(&vb->word_lock, NULL) != 0) {
        pthread_mutex_destroy(&vb->async_lock);
        pthread_mutex_destroy(&vb->scrub_lock);
        cfg->dd_free(cfg->dd);
        free(vb);
        return ENOMEM;
    }
    if (pthread_mutex_init(&vb->views_lock, NULL) != 0) {
        pthread_mutex_destroy(&vb->word_lock);
        pthread_mutex_destroy(&vb->async_lock);
        pthread_mutex_destroy(&vb->scrub_lock);
        cfg->dd_free(cfg->dd);
        free(vb);
        return ENOMEM;
    }
    vb->ops = vmm_ops;
    vb->ops.name = cfg->drv->name;
    vb->base.ops = &vb->ops;
    vb->base.granularity = g;
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err) {
        vmm_destroy(&vb->base); /* no stream: nothing else is called */
        return err;
    }
    if ((err = CALL(vb, stream_create, NULL, &vb->stream)) != 0) {
        vb->stream = NULL;
        leave(vb, saved);
        vmm_destroy(&vb->base);
        return err;
    }
    load_kernels(vb, cfg);
    load_seal_kernels(vb, cfg);
    leave(vb, saved);
    if (!vb->seal_fn) /* gms_seal and gms_unseal: GMS_E_UNSUPPORTED */
        vb->ops.seal = vb->ops.unseal = NULL;
    if (!vb->digest_fn)
        vb->ops.digest_leaves = NULL;
    if (!vb->drv->mem_create_on || !vb->drv->set_access_on) /* the driver cannot place memory */
        vb->ops.move_create = NULL, vb->ops.move_remap = NULL, vb->ops.move_release = NULL;
    if (!vb->async_fn) /* without the stream-ordered kernel every scrub waits */
        gms__backend_ops_without_streams(&vb->ops);
    vb->base.no_scrub = vb->scrub_fn ? NULL : vb->kernel_why;
    *out = &vb->base;
    return 0;
}

/* The spare lease's lock, wake-up and thread; false if any cannot be made. */
static bool spare_start(vmm_backend *vb)
{
    if (pthread_mutex_init(&vb->spare_lock, NULL) != 0)
        return false;
    if (pthread_cond_init(&vb->spare_wake, NULL) == 0) {
        if (pthread_cond_init(&vb->spare_made, NULL) == 0) {
            if (pthread_create(&vb->spare_thread, NULL, spare_maker, vb) == 0)
                return true;
            pthread_cond_destroy(&vb->spare_made);
        }
        pthread_cond_destroy(&vb->spare_wake);
    }
    pthread_mutex_destroy(&vb->spare_lock);
    return false;
}

void gms__vmm_set_leaser(gms_backend *be, const gms_vmm_leaser *l)
{
    vmm_backend *vb = B(be);
    vb->leaser = *l;
    vb->ops.name = l->name;
    /* A lease is gmsd's memory, counted there: it does not move. */
    vb->ops.move_create = NULL, vb->ops.move_remap = NULL, vb->ops.move_release = NULL;
    if (l->spare_size && l->spare_size % vb->gran == 0)
        vb->spare_running = spare_start(vb); /* without it, every lease is taken on request */
}

/* Maps allocation h of size bytes whole at an address range of its own,
 * read-write (device current); unmap_whole undoes it. */
static int map_whole(vmm_backend *vb, uint64_t h, uint64_t size, const char *what, uint64_t *va)
{
    int err = CALL(vb, va_reserve, what, va, size, vb->gran);
    if (err)
        return err;
    if ((err = map_at(vb, h, *va, size, 1, what)) != 0)
        QUIET(vb, va_free, *va, size);
    return err;
}

static void unmap_whole(vmm_backend *vb, uint64_t va, uint64_t size)
{
    QUIET(vb, mem_unmap, va, size);
    QUIET(vb, va_free, va, size);
}

/* enter, for an allocation of size bytes: EINVAL unless whole granules. */
static int enter_sized(vmm_backend *vb, uint64_t size, uintptr_t *saved)
{
    if (size == 0 || size % vb->gran) {
        gms__backend_why_clear();
        return EINVAL;
    }
    return enter(vb, saved);
}

int gms__vmm_lease_make(gms_backend *be, uint64_t size, const gms_vmm_source *from,
                        uint64_t *handle, int *fd)
{
    vmm_backend *vb = B(be);
    if (from && (from->len > size || from->off > from->size || from->len > from->size - from->off ||
                 from->size % vb->gran)) {
        gms__backend_why_clear();
        return EINVAL;
    }
    uintptr_t saved;
    int err = enter_sized(vb, size, &saved);
    if (err)
        return err;
    uint64_t h = 0, va = 0, src = 0;
    uint64_t copied = from ? from->len : 0;
    if (fd)
        *fd = -1;
    if ((err = CALL(vb, mem_create_shareable, "a lease", &h, size)) != 0)
        goto out;
    /* Filled here, before any tenant maps it: the source's bytes, zeros
     * after them, so whatever the driver gives back to this process (a
     * tenant's bytes included) reaches nobody. */
    if (!(err = map_whole(vb, h, size, "filling a lease", &va))) {
        if (from && !(err = map_whole(vb, from->handle, from->size, "a share's bytes", &src)))
            err = CALL(vb, memcpy_dtod, "a share's copy", va, src + from->off, copied, vb->stream);
        if (!err && copied < size)
            err = CALL(vb, memset_d8, "wiping a lease", va + copied, 0, size - copied, vb->stream);
        /* Both stay mapped until the copy has run: the driver unmaps at
         * once, not in stream order. */
        int done = sync_stream(vb, "filling a lease");
        if (!err)
            err = done;
        if (src)
            unmap_whole(vb, src, from->size);
        unmap_whole(vb, va, size);
    }
    if (!err && fd)
        err = CALL(vb, mem_export, "a lease", h, fd);
    if (err) {
        QUIET(vb, mem_release, h);
        if (fd)
            *fd = -1;
    } else {
        *handle = h;
    }
out:
    leave(vb, saved);
    return err;
}

int gms__vmm_device_sync(gms_backend *be)
{
    return vmm_quiesce(be);
}

int gms__vmm_chunk_lease(const gms_backend_chunk *c, uint64_t *lease_id, uint64_t *base)
{
    if (!c->lease)
        return EINVAL;
    *lease_id = c->lease_id;
    *base = c->base;
    return 0;
}

int gms__vmm_import(gms_backend *be, int fd, uint64_t size, int writable, gms_vmm_import *out)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter_sized(vb, size, &saved);
    if (err)
        return err;
    gms_vmm_import m = {.region_size = size + 2 * GUARD_BYTES, .size = size};
    if (!(err = CALL(vb, va_reserve, "a share's copy", &m.region, m.region_size, vb->gran))) {
        m.base = m.region + GUARD_BYTES;
        if ((err = import_map(vb, fd, m.base, size, writable, "a share's copy", &m.handle)) != 0)
            QUIET(vb, va_free, m.region, m.region_size);
    }
    leave(vb, saved);
    if (!err)
        *out = m;
    return err;
}

void gms__vmm_unimport(gms_backend *be, const gms_vmm_import *imp)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    if (enter(vb, &saved) == 0) {
        QUIET(vb, mem_unmap, imp->base, imp->size);
        QUIET(vb, mem_release, imp->handle);
        QUIET(vb, va_free, imp->region, imp->region_size);
        leave(vb, saved);
    }
}

int gms__vmm_import_move(gms_backend *be, gms_vmm_import *imp, int fd)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    int err = enter(vb, &saved);
    if (err)
        return err;
    uint64_t h = 0, va = 0, size = imp->size;
    /* The program's kernels are done with the buffer before its bytes move. */
    if ((err = GMS_DRV(vb->drv, device_sync, "before moving a buffer", vb->dd)) != 0 ||
        (err = CALL(vb, mem_import, "a buffer's new memory", fd, &h)) != 0)
        goto out;
    if ((err = map_whole(vb, h, size, "a buffer's new memory", &va)) == 0) {
        err = CALL(vb, memcpy_dtod, "moving a buffer", va, imp->base, size, vb->stream);
        /* Both stay mapped until the copy has run: the driver unmaps at
         * once, not in stream order. */
        int done = sync_stream(vb, "moving a buffer");
        if (!err)
            err = done;
        unmap_whole(vb, va, size);
    }
    /* The new memory under the old addresses; on failure the old again. */
    if (!err && !(err = CALL(vb, mem_unmap, "moving a buffer", imp->base, size)) &&
        (err = map_at(vb, h, imp->base, size, 1, "moving a buffer")) != 0 &&
        map_at(vb, imp->handle, imp->base, size, 1, "moving a buffer back")) {
        fprintf(stderr, "gms: a buffer lost its memory while moving it: aborting\n");
        abort(); /* raw pointers into it would fault or reach nothing */
    }
    if (err) {
        QUIET(vb, mem_release, h);
    } else {
        QUIET(vb, mem_release, imp->handle);
        imp->handle = h;
    }
out:
    leave(vb, saved);
    return err;
}

void gms__vmm_lease_free(gms_backend *be, uint64_t handle)
{
    vmm_backend *vb = B(be);
    uintptr_t saved;
    if (enter(vb, &saved) == 0) {
        QUIET(vb, mem_release, handle);
        leave(vb, saved);
    }
}
