/*
 * fake_driver.h: a driver table (src/backend/vmm/driver.h) over host
 * memory, so that the virtual-memory backend (src/backend/vmm/vmm.c) runs
 * on a machine without a GPU: reservations are PROT_NONE mappings,
 * physical allocations memfds, maps MAP_FIXED, access mprotect, copies
 * memcpy (an overlapping device copy is refused, as a device does not
 * promise memmove: vmm.c must split it), streams and events do nothing
 * (every call is done when it returns). It has no kernels unless asked
 * (fake_kernels): then loading the module and finding the waiting scrub's
 * kernel succeed (not the stream-ordered one's), its launches fail, and
 * the checked atomics' kernel runs on the host (its words are host
 * memory here) when it is launched.
 *
 * Events are distinct objects, so a test can tell them apart; with
 * fake_log_on, event records, stream waits and syncs and launches are
 * logged in order (fake_log), to check what the backend queued where.
 *
 * Any call kind can be made to fail with a given code (fake_fail); the
 * codes have names and texts of their own, as a driver's do.
 *
 * With fake_kernels = 2 the scrub kernels run too, on the host, on a
 * device that runs behind the host: a stream-ordered scrub waits in one
 * queue (all streams in the order queued) until more than fake_lag
 * launches wait behind it, or until a synchronisation, a copy or a fill
 * (which run after everything queued before them); the waiting scrub runs
 * when launched, after the queue. fake_device_use(stream, addr, len)
 * queues a stand-in for a program's kernel using that memory (a training
 * step's). With fake_streams_apart, the device runs the streams' work in
 * any order between streams (each stream's in its own order, a stream
 * wait after the event's recorded work), as a GPU may: what is queued on
 * one stream is no promise about another's.
 * Unmapping memory that queued work still uses aborts, as below. With
 * fake_ticket_order (a test with one pool), a stream-ordered scrub
 * launched on a stream after one with a larger ticket aborts too: a
 * pool's stream tags take the larger ticket on a stream as the later one,
 * so out of order, a ticket that has run would vouch for one that has not.
 *
 * A device runs copies and fills after the call that queues them, and a
 * driver unmaps at once: memory unmapped before its queued work ran is an
 * illegal address on a GPU. So the fake remembers the device ranges of
 * queued copies and fills until a stream or device synchronisation, and
 * aborts the process that unmaps any of them: callers unmap quietly, so a
 * refusal would go unseen, where the GPU's fault does not.
 */
#ifndef GMS_TEST_FAKE_DRIVER_H
#define GMS_TEST_FAKE_DRIVER_H

#include "backend/vmm/vmm.h"
#include "kernels/scrub.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { FAKE_OK = 0, FAKE_ERROR_OUT_OF_MEMORY = 2, FAKE_ERROR_REFUSED = 700 };
#define FAKE_GRANULE (64u << 10)

static int fake_fail_kind = -1, fake_fail_code; /* the kind that fails, and how */
static int fake_fail_also_kind = -1;            /* a second one, failing the same way */
static int fake_fail_skip;                      /* calls of them that still succeed first */
static int fake_kernels; /* 1: a module whose scrub kernels do not run; 2: they run (the queue below) */
static _Thread_local uintptr_t fake_current;    /* the thread's current device */

/* kind fails with code from now on (-1: none does; clears fake_fail_also). */
static inline void fake_fail(int kind, int code)
{
    fake_fail_kind = kind;
    fake_fail_code = code;
    fake_fail_also_kind = -1;
    fake_fail_skip = 0;
}

static inline void fake_fail_also(int kind)
{
    fake_fail_also_kind = kind;
}

#define FAKE_FAILS(kind)                                                              \
    do {                                                                              \
        if ((fake_fail_kind == GMS_DRV_##kind || fake_fail_also_kind == GMS_DRV_##kind) && \
            (fake_fail_skip > 0 ? (fake_fail_skip--, 0) : 1))                         \
            return fake_fail_code;                                                    \
    } while (0)
#define A(x) ((void *)(uintptr_t)(x))

/* Device ranges of copies and fills queued since the last synchronisation
 * (the oldest forgotten past FAKE_UNSYNCED: a lenient check, never a
 * false one). */
#define FAKE_UNSYNCED 64
static struct { uint64_t lo, hi; } fake_unsynced[FAKE_UNSYNCED];
static unsigned fake_nunsynced;
static pthread_mutex_t fake_unsynced_lock = PTHREAD_MUTEX_INITIALIZER;

static inline void fake_queued(uint64_t addr, size_t len)
{
    pthread_mutex_lock(&fake_unsynced_lock);
    unsigned i = fake_nunsynced++ % FAKE_UNSYNCED;
    fake_unsynced[i].lo = addr;
    fake_unsynced[i].hi = addr + len;
    pthread_mutex_unlock(&fake_unsynced_lock);
}
static inline void fake_synced(void)
{
    pthread_mutex_lock(&fake_unsynced_lock);
    fake_nunsynced = 0;
    pthread_mutex_unlock(&fake_unsynced_lock);
}
/* ---- the device's queue (fake_kernels == 2) ---- */
static char fake_scrub_fn, fake_async_fn; /* the two scrub kernels */
static unsigned fake_lag;                 /* launches left waiting */
static int fake_dataless; /* the scrubs touch no memory (the stand-in's replays) */

typedef struct fake_work {
    struct fake_work *next;
    void *stream;
    uint64_t seq;      /* the order queued, over all streams */
    int user;          /* a program's kernel: uses [lo, hi) */
    uint64_t lo, hi;
    int wait;          /* a stream wait: done once no work of wait_stream */
    void *wait_stream; /* up to wait_seq is queued */
    uint64_t wait_seq;
    gms_kasync k;      /* else a stream-ordered scrub */
} fake_work;
static fake_work *fake_queue, **fake_queue_tail = &fake_queue;
static uint64_t fake_seq;
static int fake_streams_apart;
static uint64_t fake_pick = 0x2545f4914f6cdd1dull; /* which stream runs next */
static int fake_ticket_order;
static struct {
    void *stream;
    uint64_t ticket;
} fake_last_launch[16]; /* per stream (fake_ticket_order), under fake_queue_lock */
static unsigned fake_queued_launches;
static pthread_mutex_t fake_queue_lock = PTHREAD_MUTEX_INITIALIZER;

/* The poison's byte at address a: the pattern is laid out by address. */
static inline uint8_t fake_pattern_byte(uint64_t pattern, uint64_t a)
{
    return (uint8_t)(pattern >> (8 * (a & 7)));
}

/* The first byte of [lo, hi) that is not the poison, or UINT64_MAX. */
static uint64_t fake_check(uint64_t lo, uint64_t hi, uint64_t pattern)
{
    uint64_t a = lo;
    for (; a < hi && (a & 7); a++)
        if (*(uint8_t *)(uintptr_t)a != fake_pattern_byte(pattern, a))
            return a;
    for (; a + 8 <= hi; a += 8)
        if (*(uint64_t *)(uintptr_t)a != pattern)
            break;
    for (; a < hi; a++)
        if (*(uint8_t *)(uintptr_t)a != fake_pattern_byte(pattern, a))
            return a;
    return UINT64_MAX;
}

static void fake_fill(uint64_t lo, uint64_t hi, uint64_t pattern)
{
    uint64_t a = lo;
    for (; a < hi && (a & 7); a++)
        *(uint8_t *)(uintptr_t)a = fake_pattern_byte(pattern, a);
    for (; a + 8 <= hi; a += 8) /* a whole word of the pattern, by address */
        *(uint64_t *)(uintptr_t)a = pattern;
    for (; a < hi; a++)
        *(uint8_t *)(uintptr_t)a = fake_pattern_byte(pattern, a);
}

/* One stream-ordered scrub, as gms_scrub_async_kernel does it: checks
 * (which re-arm what they find changed), fills (a multipass wipe ends in
 * the poison too) and zeros, then the results and the done word in the
 * slot's pinned memory. */
static void fake_run_async(const gms_kasync *k)
{
    unsigned long long bad[GMS_SCRUB_ASYNC_MAX_K];
    for (uint32_t i = 0; i < k->nitems && i < GMS_SCRUB_ASYNC_MAX_K; i++)
        bad[i] = ~0ull;
    for (uint32_t r = 0; r < k->nranges && !fake_dataless; r++) {
        const gms_krange *g = &k->r[r];
        if (g->op == GMS_KOP_CHECK) {
            uint64_t at = fake_check(g->lo, g->hi, k->pattern);
            if (at < bad[g->item])
                bad[g->item] = at;
            if (at != UINT64_MAX)
                fake_fill(at, g->hi, k->pattern); /* re-armed */
        } else if (g->op == GMS_KOP_FILL) {
            fake_fill(g->lo, g->hi, k->pattern);
        } else {
            memset((void *)(uintptr_t)g->lo, 0, g->hi - g->lo);
        }
    }
    gms_kslot_host *h = (gms_kslot_host *)(uintptr_t)k->host;
    for (uint32_t i = 0; i < k->nitems && i < GMS_SCRUB_ASYNC_MAX_K; i++) {
        h->bad[i] = bad[i];
        h->vbad[i] = ~0ull;
    }
    __atomic_store_n(&h->done, k->ticket, __ATOMIC_RELEASE);
}

/* Whether w, the oldest work of its stream, may run (queue lock held):
 * a stream wait only once its event's work has run. */
static bool fake_runnable(const fake_work *w)
{
    if (!w->wait)
        return true;
    for (const fake_work *o = fake_queue; o && o->seq <= w->wait_seq; o = o->next)
        if (o->stream == w->wait_stream)
            return false;
    return true;
}

/* The work the device runs next: the oldest queued, or with
 * fake_streams_apart the oldest of a stream picked at random among those
 * whose oldest may run. Its link in the queue (queue lock held). */
static fake_work **fake_next(void)
{
    if (!fake_streams_apart)
        return &fake_queue;
    fake_work **cand[16];
    unsigned n = 0;
    void *seen[16];
    unsigned nseen = 0;
    for (fake_work **pp = &fake_queue; *pp && nseen < 16; pp = &(*pp)->next) {
        unsigned i = 0;
        while (i < nseen && seen[i] != (*pp)->stream)
            i++;
        if (i < nseen)
            continue; /* not its stream's oldest */
        seen[nseen++] = (*pp)->stream;
        if (fake_runnable(*pp))
            cand[n++] = pp;
    }
    fake_pick ^= fake_pick << 13;
    fake_pick ^= fake_pick >> 7;
    fake_pick ^= fake_pick << 17;
    return n ? cand[fake_pick % n] : &fake_queue;
}

/* Runs the work fake_next picks (queue lock held). */
static void fake_run_one(void)
{
    fake_work **pp = fake_next(), *w = *pp;
    if (!(*pp = w->next))
        fake_queue_tail = pp;
    if (w->wait) {
        /* passed */
    } else if (w->user) {
        memset((void *)(uintptr_t)w->lo, 0x77, w->hi - w->lo); /* the kernel's output */
    } else {
        fake_run_async(&w->k);
        fake_queued_launches--;
    }
    free(w);
}

/* The device catches up: everything queued runs. */
static inline void fake_run_all(void)
{
    pthread_mutex_lock(&fake_queue_lock);
    while (fake_queue)
        fake_run_one();
    pthread_mutex_unlock(&fake_queue_lock);
}

/* Aborts when a stream-ordered scrub on stream comes after a larger
 * ticket there (fake_ticket_order; queue lock held). */
static void fake_check_order(void *stream, uint64_t ticket)
{
    size_t n = sizeof fake_last_launch / sizeof fake_last_launch[0];
    for (size_t i = 0; fake_ticket_order && i < n; i++) {
        if (fake_last_launch[i].stream && fake_last_launch[i].stream != stream)
            continue;
        if (fake_last_launch[i].ticket > ticket) {
            fprintf(stderr, "fake driver: ticket %llu launched on stream %p after ticket %llu\n",
                    (unsigned long long)ticket, stream,
                    (unsigned long long)fake_last_launch[i].ticket);
            abort();
        }
        fake_last_launch[i].stream = stream;
        fake_last_launch[i].ticket = ticket;
        return;
    }
}

/* Checks the launch order from now on (on: a new runtime, one pool), or
 * no more. */
static inline void fake_order_checked(int on)
{
    pthread_mutex_lock(&fake_queue_lock);
    fake_ticket_order = on;
    memset(fake_last_launch, 0, sizeof fake_last_launch);
    pthread_mutex_unlock(&fake_queue_lock);
}

static void fake_enqueue(fake_work *w, void *stream)
{
    pthread_mutex_lock(&fake_queue_lock);
    if (!w->user && !w->wait)
        fake_check_order(stream, w->k.ticket);
    w->stream = stream;
    w->seq = ++fake_seq;
    *fake_queue_tail = w;
    fake_queue_tail = &w->next;
    if (!w->user && !w->wait)
        fake_queued_launches++;
    while (fake_queued_launches > fake_lag)
        fake_run_one();
    pthread_mutex_unlock(&fake_queue_lock);
}

/* A program's kernel writing [addr, addr+len), queued on stream behind
 * what is there; 0, or -1 without memory for it. */
static inline int fake_device_use(void *stream, uint64_t addr, uint64_t len)
{
    fake_work *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->user = 1;
    w->lo = addr;
    w->hi = addr + len;
    fake_enqueue(w, stream);
    return 0;
}

/* Whether queued work still uses memory of [addr, addr+size). */
static int fake_queue_uses(uint64_t addr, uint64_t size)
{
    int used = 0;
    pthread_mutex_lock(&fake_queue_lock);
    for (const fake_work *w = fake_queue; w && !used; w = w->next) {
        if (w->user) {
            used = w->lo < addr + size && addr < w->hi;
            continue;
        }
        for (uint32_t r = 0; r < w->k.nranges && !used; r++)
            used = w->k.r[r].lo < addr + size && addr < w->k.r[r].hi;
    }
    pthread_mutex_unlock(&fake_queue_lock);
    return used;
}

static inline int fake_in_use(uint64_t addr, uint64_t size)
{
    if (fake_queue_uses(addr, size))
        return 1;
    int used = 0;
    pthread_mutex_lock(&fake_unsynced_lock);
    unsigned n = fake_nunsynced < FAKE_UNSYNCED ? fake_nunsynced : FAKE_UNSYNCED;
    for (unsigned i = 0; i < n && !used; i++)
        used = fake_unsynced[i].lo < addr + size && addr < fake_unsynced[i].hi;
    pthread_mutex_unlock(&fake_unsynced_lock);
    return used;
}

static int f_get_current(void *dd, uintptr_t *cur)
{
    (void)dd;
    FAKE_FAILS(get_current);
    *cur = fake_current;
    return 0;
}
static int f_set_current(void *dd, uintptr_t cur)
{
    (void)dd;
    FAKE_FAILS(set_current);
    fake_current = cur;
    return 0;
}
static int f_va_reserve(void *dd, uint64_t *addr, uint64_t size, uint64_t align)
{
    (void)dd;
    FAKE_FAILS(va_reserve);
    /* Over-reserve, then trim to the alignment. */
    char *p = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return FAKE_ERROR_OUT_OF_MEMORY;
    uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    if (a > (uintptr_t)p)
        munmap(p, a - (uintptr_t)p);
    if ((uintptr_t)p + size + align > a + size)
        munmap(A(a + size), (uintptr_t)p + size + align - (a + size));
    *addr = a;
    return 0;
}
static int f_va_free(void *dd, uint64_t addr, uint64_t size)
{
    (void)dd;
    FAKE_FAILS(va_free);
    return munmap(A(addr), size) == 0 ? 0 : FAKE_ERROR_REFUSED;
}
static int f_mem_create(void *dd, uint64_t *handle, uint64_t size)
{
    (void)dd;
    FAKE_FAILS(mem_create);
    int fd = memfd_create("gms-fake-device", MFD_CLOEXEC);
    if (fd < 0)
        return FAKE_ERROR_OUT_OF_MEMORY;
    if (ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        return FAKE_ERROR_OUT_OF_MEMORY;
    }
    *handle = (uint64_t)fd + 1; /* never 0 */
    return 0;
}
static int f_mem_release(void *dd, uint64_t handle)
{
    (void)dd;
    FAKE_FAILS(mem_release);
    return close((int)(handle - 1)) == 0 ? 0 : FAKE_ERROR_REFUSED;
}
static int f_mem_map(void *dd, uint64_t addr, uint64_t size, uint64_t handle)
{
    (void)dd;
    FAKE_FAILS(mem_map);
    void *p = mmap(A(addr), size, PROT_NONE, MAP_SHARED | MAP_FIXED, (int)(handle - 1), 0);
    return p == MAP_FAILED ? FAKE_ERROR_REFUSED : 0;
}
/* Shareable memory is a memfd too; its descriptor is the export, and an
 * import is a handle of its own over a copy of the descriptor. */
static int f_mem_create_shareable(void *dd, uint64_t *handle, uint64_t size)
{
    FAKE_FAILS(mem_create_shareable);
    return f_mem_create(dd, handle, size);
}
static int f_mem_export(void *dd, uint64_t handle, int *fd)
{
    (void)dd;
    FAKE_FAILS(mem_export);
    *fd = fcntl((int)(handle - 1), F_DUPFD_CLOEXEC, 0);
    return *fd < 0 ? FAKE_ERROR_REFUSED : 0;
}
static int f_mem_import(void *dd, int fd, uint64_t *handle)
{
    (void)dd;
    FAKE_FAILS(mem_import);
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return FAKE_ERROR_REFUSED;
    *handle = (uint64_t)own + 1;
    return 0;
}
static int f_mem_unmap(void *dd, uint64_t addr, uint64_t size)
{
    (void)dd;
    FAKE_FAILS(mem_unmap);
    if (fake_in_use(addr, size)) {
        fprintf(stderr, "fake driver: unmapping %#llx (%llu bytes) while queued device work "
                        "still uses it\n", (unsigned long long)addr, (unsigned long long)size);
        abort();
    }
    void *p = mmap(A(addr), size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? FAKE_ERROR_REFUSED : 0;
}
static int f_set_access(void *dd, uint64_t addr, uint64_t size, int writable)
{
    (void)dd;
    FAKE_FAILS(set_access);
    return mprotect(A(addr), size, writable ? PROT_READ | PROT_WRITE : PROT_READ) == 0
               ? 0
               : FAKE_ERROR_REFUSED;
}
static int f_memcpy_htod(void *dd, uint64_t dst, const void *src, size_t len, void *stream)
{
    (void)dd, (void)stream;
    FAKE_FAILS(memcpy_htod);
    fake_run_all(); /* after what was queued before it */
    memcpy(A(dst), src, len);
    fake_queued(dst, len);
    return 0;
}
static int f_memcpy_dtoh(void *dd, void *dst, uint64_t src, size_t len, void *stream)
{
    (void)dd, (void)stream;
    FAKE_FAILS(memcpy_dtoh);
    fake_run_all(); /* after what was queued before it */
    memcpy(dst, A(src), len);
    fake_queued(src, len);
    return 0;
}
static int f_memcpy_dtod(void *dd, uint64_t dst, uint64_t src, size_t len, void *stream)
{
    (void)dd, (void)stream;
    FAKE_FAILS(memcpy_dtod);
    fake_run_all(); /* after what was queued before it */
    if (dst < src + len && src < dst + len)
        return FAKE_ERROR_REFUSED; /* overlapping */
    memcpy(A(dst), A(src), len);
    fake_queued(dst, len);
    fake_queued(src, len);
    return 0;
}
static int f_memset_d8(void *dd, uint64_t dst, int byte, size_t len, void *stream)
{
    (void)dd, (void)stream;
    FAKE_FAILS(memset_d8);
    fake_run_all(); /* after what was queued before it */
    memset(A(dst), byte, len);
    fake_queued(dst, len);
    return 0;
}
static char fake_object; /* what modules point at */
static char fake_atomic_fn; /* the checked atomics' kernel */
#define FAKE_EVENTS 1024
static char fake_events[FAKE_EVENTS];
/* Where each event was last recorded: its stream, and the work queued
 * until then (fake_streams_apart); which are in use. Under the queue lock:
 * an event is never handed out again while it lives, as a driver's. */
static void *fake_event_stream[FAKE_EVENTS];
static uint64_t fake_event_seq[FAKE_EVENTS];
static unsigned char fake_event_live[FAKE_EVENTS];
static unsigned fake_next_event;

/* The log: calls in order, a and b their stream and event (a launch: its
 * stream and kernel). Single-threaded tests only. */
typedef struct fake_call {
    int kind; /* GMS_DRV_* */
    void *a, *b;
} fake_call;
static fake_call fake_log[512];
static unsigned fake_nlog;
static int fake_log_on;

static inline void fake_note(int kind, void *a, void *b)
{
    if (fake_log_on && fake_nlog < sizeof fake_log / sizeof *fake_log)
        fake_log[fake_nlog++] = (fake_call){kind, a, b};
}
static int f_stream_create(void *dd, void **stream)
{
    (void)dd;
    FAKE_FAILS(stream_create);
    /* Distinct, as a driver's are (the first 64): a test may tell streams
     * apart by their handle. */
    static char streams[64];
    static unsigned made;
    *stream = &streams[__atomic_fetch_add(&made, 1, __ATOMIC_RELAXED) % sizeof streams];
    return 0;
}
static int f_stream_destroy(void *dd, void *stream)
{
    (void)dd, (void)stream;
    FAKE_FAILS(stream_destroy);
    return 0;
}
/* The fake device captures nothing (the stand-in driver, which plays
 * captures, answers cuStreamIsCapturing itself). */
static int f_stream_capturing(void *dd, void *stream, int *capturing)
{
    (void)dd, (void)stream;
    FAKE_FAILS(stream_capturing);
    *capturing = 0;
    return 0;
}
static int f_stream_sync(void *dd, void *stream)
{
    (void)dd, (void)stream;
    FAKE_FAILS(stream_sync);
    fake_note(GMS_DRV_stream_sync, stream, NULL);
    fake_run_all();
    fake_synced();
    return 0;
}
static int f_event_create(void *dd, void **event)
{
    (void)dd;
    FAKE_FAILS(event_create);
    pthread_mutex_lock(&fake_queue_lock);
    unsigned i = 0;
    while (i < FAKE_EVENTS && fake_event_live[(fake_next_event + i) % FAKE_EVENTS])
        i++;
    if (i < FAKE_EVENTS) {
        i = (fake_next_event + i) % FAKE_EVENTS;
        fake_event_live[i] = 1;
        fake_event_stream[i] = NULL;
        fake_event_seq[i] = 0;
        fake_next_event = i + 1;
        *event = &fake_events[i];
    }
    pthread_mutex_unlock(&fake_queue_lock);
    return i < FAKE_EVENTS ? 0 : FAKE_ERROR_OUT_OF_MEMORY;
}
static int f_event_record(void *dd, void *event, void *stream)
{
    (void)dd;
    FAKE_FAILS(event_record);
    fake_note(GMS_DRV_event_record, stream, event);
    size_t i = (size_t)((char *)event - fake_events);
    pthread_mutex_lock(&fake_queue_lock);
    fake_event_stream[i] = stream;
    fake_event_seq[i] = fake_seq;
    pthread_mutex_unlock(&fake_queue_lock);
    return 0;
}
static int f_event_destroy(void *dd, void *event)
{
    (void)dd;
    FAKE_FAILS(event_destroy);
    fake_note(GMS_DRV_event_destroy, NULL, event);
    pthread_mutex_lock(&fake_queue_lock);
    fake_event_live[(char *)event - fake_events] = 0;
    pthread_mutex_unlock(&fake_queue_lock);
    return 0;
}
static int f_stream_wait_event(void *dd, void *stream, void *event)
{
    (void)dd;
    FAKE_FAILS(stream_wait_event);
    fake_note(GMS_DRV_stream_wait_event, stream, event);
    if (fake_kernels != 2)
        return 0;
    fake_work *w = calloc(1, sizeof *w);
    if (!w)
        return FAKE_ERROR_OUT_OF_MEMORY;
    size_t i = (size_t)((char *)event - fake_events);
    pthread_mutex_lock(&fake_queue_lock);
    w->wait = 1;
    w->wait_stream = fake_event_stream[i];
    w->wait_seq = fake_event_seq[i];
    pthread_mutex_unlock(&fake_queue_lock);
    fake_enqueue(w, stream);
    return 0;
}
static int f_device_sync(void *dd)
{
    (void)dd;
    FAKE_FAILS(device_sync);
    fake_run_all();
    fake_synced();
    return 0;
}
static int f_host_alloc(void *dd, void **ptr, size_t size, int mapped)
{
    (void)dd, (void)mapped;
    FAKE_FAILS(host_alloc);
    return (*ptr = calloc(1, size)) ? 0 : FAKE_ERROR_OUT_OF_MEMORY;
}
static int f_host_free(void *dd, void *ptr)
{
    (void)dd;
    FAKE_FAILS(host_free);
    free(ptr);
    return 0;
}
static int f_host_device_ptr(void *dd, uint64_t *dev, void *ptr)
{
    (void)dd;
    FAKE_FAILS(host_device_ptr);
    *dev = (uint64_t)(uintptr_t)ptr;
    return 0;
}
static int f_dev_alloc(void *dd, uint64_t *dev, size_t size)
{
    (void)dd;
    FAKE_FAILS(dev_alloc);
    void *p = calloc(1, size);
    *dev = (uint64_t)(uintptr_t)p;
    return p ? 0 : FAKE_ERROR_OUT_OF_MEMORY;
}
static int f_dev_free(void *dd, uint64_t dev)
{
    (void)dd;
    FAKE_FAILS(dev_free);
    free(A(dev));
    return 0;
}
static int f_module_load(void *dd, void **module, const void *image)
{
    (void)dd, (void)image;
    FAKE_FAILS(module_load);
    *module = &fake_object;
    return 0;
}
static int f_module_unload(void *dd, void *module)
{
    (void)dd, (void)module;
    FAKE_FAILS(module_unload);
    return 0;
}
static int f_module_function(void *dd, void **fn, void *module, const char *name)
{
    (void)dd, (void)module;
    FAKE_FAILS(module_function);
    bool async = strcmp(name, "gms_scrub_async_kernel") == 0;
    if (fake_kernels == 2 && (async || strcmp(name, "gms_scrub_kernel") == 0)) {
        *fn = async ? &fake_async_fn : &fake_scrub_fn;
        return 0;
    }
    if (async)
        return FAKE_ERROR_REFUSED; /* the waiting scrub only */
    if (strcmp(name, "gms_seal_kernel") == 0 || strcmp(name, "gms_digest_kernel") == 0)
        return FAKE_ERROR_REFUSED; /* no sealing: gms_seal and gms_digest say so */
    *fn = strcmp(name, "gms_atomic_kernel") == 0 ? &fake_atomic_fn : &fake_object;
    return 0;
}
static int f_occupancy(void *dd, int *blocks_per_sm, void *fn, unsigned block)
{
    (void)dd, (void)fn, (void)block;
    FAKE_FAILS(occupancy);
    *blocks_per_sm = 2;
    return 0;
}
/* One checked atomic as gms_atomic_kernel does it, on host memory. */
static uint64_t fake_atomic_one(const gms_katomic *w)
{
    uint64_t old, want, mask = w->width == 4 ? 0xffffffffull : ~0ull;
    uint64_t x = w->operand & mask;
    void *p = A(w->addr);
    do {
        old = w->width == 4 ? __atomic_load_n((uint32_t *)p, __ATOMIC_SEQ_CST)
                            : __atomic_load_n((uint64_t *)p, __ATOMIC_SEQ_CST);
        int64_t so = w->width == 4 ? (int64_t)(int32_t)old : (int64_t)old;
        int64_t sx = w->width == 4 ? (int64_t)(int32_t)x : (int64_t)x;
        switch (w->op) {
        case 1: want = old + x; break;
        case 2: want = old & x; break;
        case 3: want = old | x; break;
        case 4: want = old ^ x; break;
        case 5: want = old < x ? old : x; break;
        case 6: want = old > x ? old : x; break;
        case 7: want = so < sx ? old : x; break;
        case 8: want = so > sx ? old : x; break;
        case 9: want = x; break;
        default: want = old == (w->compare & mask) ? x : old; break;
        }
        want &= mask;
    } while (w->width == 4 ? !__atomic_compare_exchange_n((uint32_t *)p, &(uint32_t){(uint32_t)old},
                                                          (uint32_t)want, 0, __ATOMIC_SEQ_CST,
                                                          __ATOMIC_SEQ_CST)
                           : !__atomic_compare_exchange_n((uint64_t *)p, &(uint64_t){old}, want, 0,
                                                          __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return old;
}

/* Only the atomics' kernel runs here (on the host, at once); any other
 * launch is refused. */
static int f_launch(void *dd, void *fn, unsigned grid, unsigned block, void *stream, void **args)
{
    (void)dd, (void)grid, (void)block;
    FAKE_FAILS(launch);
    fake_note(GMS_DRV_launch, stream, fn);
    if (fn == &fake_async_fn) {
        fake_work *w = calloc(1, sizeof *w);
        if (!w)
            return FAKE_ERROR_OUT_OF_MEMORY;
        w->k = *(const gms_kasync *)args[0];
        fake_enqueue(w, stream);
        return 0;
    }
    if (fn != &fake_atomic_fn)
        return FAKE_ERROR_REFUSED;
    fake_run_all(); /* after what was queued before it */
    const gms_katomics *k = args[0];
    for (uint32_t i = 0; i < k->n; i++) {
        uint64_t old = fake_atomic_one(&k->w[i]);
        if (k->w[i].result)
            memcpy(A(k->w[i].result), &old, 8);
    }
    return 0;
}
static int f_launch_cooperative(void *dd, void *fn, unsigned grid, unsigned block, void *stream,
                                void **args)
{
    (void)dd, (void)grid, (void)block, (void)stream;
    FAKE_FAILS(launch_cooperative);
    if (fn != &fake_scrub_fn)
        return FAKE_ERROR_REFUSED;
    /* The waiting scrub, as gms_scrub_kernel does it, after the queue. */
    fake_run_all();
    const gms_kparams *p = args[0];
    for (uint32_t i = 0; i < p->ncheck; i++) {
        const gms_kseg *g = &p->check[i];
        uint64_t at = fake_check(g->lo, g->hi, p->pattern);
        if (at < p->res[g->item].bad[g->range])
            p->res[g->item].bad[g->range] = at;
        if (at != UINT64_MAX)
            fake_fill(at, g->hi, p->pattern); /* re-armed */
    }
    for (uint32_t i = 0; i < p->nfill; i++)
        fake_fill(p->fill[i].lo, p->fill[i].hi, p->pattern);
    return 0;
}
#undef A

static const char *f_error_name(int rc)
{
    switch (rc) {
    case FAKE_ERROR_OUT_OF_MEMORY: return "FAKE_ERROR_OUT_OF_MEMORY";
    case FAKE_ERROR_REFUSED: return "FAKE_ERROR_REFUSED";
    default: return NULL;
    }
}
static const char *f_error_string(int rc)
{
    switch (rc) {
    case FAKE_ERROR_OUT_OF_MEMORY: return "the fake device is full";
    case FAKE_ERROR_REFUSED: return "the fake device refused the call";
    default: return NULL;
    }
}
static int f_errno_of(int rc)
{
    return rc == FAKE_ERROR_OUT_OF_MEMORY ? ENOMEM : EIO;
}

static gms_drv fake_drv = {
    .name = "fake",
    .result_type = "fakeResult",
    .call_names = {
        [GMS_DRV_mem_create] = "fakeMemCreate",
        [GMS_DRV_mem_map] = "fakeMemMap",
        [GMS_DRV_set_access] = "fakeMemSetAccess",
        [GMS_DRV_launch] = "fakeLaunchKernel",
        [GMS_DRV_launch_cooperative] = "fakeLaunchCooperativeKernel",
        [GMS_DRV_event_create] = "fakeEventCreate",
        [GMS_DRV_event_record] = "fakeEventRecord",
        [GMS_DRV_stream_wait_event] = "fakeStreamWaitEvent",
        [GMS_DRV_stream_sync] = "fakeStreamSynchronize",
        [GMS_DRV_host_alloc] = "fakeMemHostAlloc",
    },
    .error_name = f_error_name,
    .error_string = f_error_string,
    .errno_of = f_errno_of,
#define F_FIELD(name) .name = f_##name,
    GMS_DRV_CALLS(F_FIELD)
#undef F_FIELD
};

static inline void fake_dd_free(void *dd)
{
    free(dd);
}

/* The virtual-memory backend over the fake driver. */
static inline int fake_vmm_create(gms_backend **out)
{
    void *dd = malloc(1);
    if (!dd)
        return ENOMEM;
    gms_vmm_config cfg = {
        .drv = &fake_drv,
        .dd = dd,
        .dd_free = fake_dd_free,
        .current = 1,
        .granularity = FAKE_GRANULE,
        .sms = 4,
        .cooperative = 1,
        .image = fake_kernels ? "fake kernels" : NULL,
        .no_image = "the fake driver runs no kernels",
        .kernel_hint = NULL,
        .sync_scrub = 0,
    };
    return gms__vmm_create(&cfg, out);
}

static inline unsigned long long fake_calls(int kind)
{
    return atomic_load(&fake_drv.calls[kind]);
}

static inline unsigned long long fake_fails(int kind)
{
    return atomic_load(&fake_drv.fails[kind]);
}

#endif
