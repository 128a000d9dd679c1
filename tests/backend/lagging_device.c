/*
 * lagging_device.c: the virtual-memory backend's stream-ordered path on a
 * device that runs behind the host (fake_driver.h with fake_kernels 2: the
 * scrub kernels run on the host, late, each stream's work in its order
 * but the streams' in any order between them, and every stream-ordered
 * launch checked to come in ticket order on its stream). A program
 * allocates on two streams, its kernels write its buffers (queued on the
 * fake device, run later), and it frees them stream-ordered, behind those
 * kernels; the pools grow, trim and give chunks back meanwhile. On a
 * GPU, memory unmapped while queued work still uses it faults the
 * context, so the fake driver aborts the process then; and a kernel
 * writing a buffer after its scrub had run would be reported as a write
 * after free. So:
 *
 *   - nothing is unmapped (no chunk given back, no lease returned) while
 *     the device still uses it: the process lives;
 *   - a buffer also written on the other stream, in access windows, is
 *     wiped and reused only after that work (its free waits for the
 *     window's end on the device);
 *   - no two live buffers overlap;
 *   - with safety on, no violation is reported for this correct program,
 *     and a write through a raw pointer after gms_free is found; with it
 *     off, none at all;
 *   - with leases (gmsd's, faked here by memfds), every lease taken is
 *     given back at the end, the spare included; a lease's first buffer
 *     needs no device work (it reads as zeros already), and memory mapped
 *     again is zeroed again;
 *   - a run of granules is mapped as extents, each given back whole, and
 *     only once no block is left on it.
 *
 * Safety off and on, each with plain chunks and with leases, at two lags
 * (`lagging_device SAFETY LEASES LAG` runs one: 0 is safety on). With
 * safety on this found the quarantine letting a block go whose own scrub
 * still waited in the batch being gathered: its check ran before its
 * poison (a write after free reported in a correct program), and it went
 * back to the pool twice (two live buffers on the same memory).
 */
#include "test.h"
#include "backend/fake_driver.h"
#include "core/pool.h" /* GMS_EXTENT_MAX */
#include "gms/access.h"

#include <sys/mman.h>

#define KIB (1ull << 10)
#define MIB (1ull << 20)
#define LEASE (8 * MIB)

/* ---- gmsd's leases, faked: a memfd each (reads as zeros) ---- */
static int leased;
static uint64_t lease_next;
static long leases_out;

static int lease_take(void *ctx, uint64_t size, int *fd, uint64_t *id)
{
    (void)ctx;
    int f = memfd_create("gms-test-lease", MFD_CLOEXEC);
    if (f < 0)
        return errno;
    if (ftruncate(f, (off_t)size) != 0) {
        close(f);
        return ENOMEM;
    }
    *fd = f;
    *id = __atomic_add_fetch(&lease_next, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&leases_out, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void lease_give_back(void *ctx, uint64_t id)
{
    (void)ctx, (void)id;
    __atomic_sub_fetch(&leases_out, 1, __ATOMIC_SEQ_CST);
}

static void lease_done(void *ctx)
{
    (void)ctx;
}

/* The runtime's backend: the fake device's, leasing when asked. */
static int use_fake(gms_backend *inner, gms_backend **out)
{
    inner->ops->destroy(inner);
    int err = fake_vmm_create(out);
    if (!err && leased) {
        gms_vmm_leaser l = {.name = "fake-gmsd", .spare_size = LEASE, .take = lease_take,
                            .give_back = lease_give_back, .done = lease_done};
        gms__vmm_set_leaser(*out, &l);
    }
    return err;
}

/* ---- violations ---- */
static unsigned violations, write_after_free, overflows;
static uint64_t waf_lo, waf_hi;

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    __atomic_add_fetch(&violations, 1, __ATOMIC_SEQ_CST);
    if (v->kind == GMS_VIOLATION_WRITE_AFTER_FREE && v->address >= waf_lo && v->address < waf_hi)
        __atomic_add_fetch(&write_after_free, 1, __ATOMIC_SEQ_CST);
    if (v->kind == GMS_VIOLATION_OVERFLOW)
        __atomic_add_fetch(&overflows, 1, __ATOMIC_SEQ_CST);
}

/* ---- the program ---- */
/* 256 B to 8 MiB, log-uniform: small blocks among large ones. */
static size_t random_size(void)
{
    unsigned shift = 8 + (unsigned)(test_random() % 16);
    return (size_t)(1ull << shift) + (size_t)(test_random() % (1ull << shift));
}

typedef struct live {
    gms_buf buf;
    void *stream;
    uint64_t addr, size;
} live;

/* A runtime on the fake device (lagging by lag launches, its launch
 * order checked), leasing or not, chunks of chunk_bytes (0: the default),
 * its violations counted, and a context of it; NULL (nothing left open)
 * if either fails. */
static gms_context *open_on_fake(gms_runtime **rt, int safety, int with_leases, unsigned lag,
                                 uint64_t chunk_bytes)
{
    leased = with_leases;
    fake_kernels = 2;
    fake_lag = lag;
    fake_order_checked(1);
    fake_streams_apart = 1;
    violations = write_after_free = overflows = 0;
    gms__backend_wrap = use_fake;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST; /* replaced by the fake device's */
    o.safety = safety;
    o.chunk_bytes = chunk_bytes;
    *rt = NULL;
    CHECK_OK(gms_runtime_open(rt, &o));
    gms__backend_wrap = NULL;
    if (!*rt)
        return NULL;
    CHECK_OK(gms_on_violation(*rt, on_violation, NULL));
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "t";
    d.user = "lagging";
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, *rt, &d));
    if (!ctx)
        gms_runtime_close(*rt);
    return ctx;
}

/* Closes what open_on_fake opened; with leases, every one is back. */
static void close_on_fake(gms_runtime *rt, gms_context *ctx)
{
    gms_context_close(ctx);
    gms_runtime_close(rt);
    if (leased)
        CHECK(leases_out == 0);
    fake_kernels = 0;
    fake_lag = 0;
    fake_order_checked(0);
    fake_streams_apart = 0;
}

static void run(int safety, int with_leases, unsigned lag)
{
    gms_runtime *rt;
    gms_context *ctx = open_on_fake(&rt, safety, with_leases, lag, 0);
    if (!ctx)
        return;
    void *streams[2] = {(void *)(uintptr_t)0x5100, (void *)(uintptr_t)0x5200};
    live bufs[48];
    unsigned n = 0, failures = 0, overlaps = 0;
    for (unsigned op = 0; op < 2500; op++) {
        if (n < 48 && (n == 0 || test_random() % 2)) {
            live *l = &bufs[n];
            size_t size = random_size();
            l->stream = streams[test_random() % 2];
            void *p = NULL;
            if (gms_alloc_async(ctx, size, 0, l->stream, &l->buf) != GMS_OK ||
                gms_buf_ptr(ctx, l->buf, &p) != GMS_OK) {
                failures++;
                continue;
            }
            l->addr = (uint64_t)(uintptr_t)p;
            l->size = size;
            for (unsigned j = 0; j < n; j++)
                overlaps += bufs[j].addr < l->addr + size && l->addr < bufs[j].addr + bufs[j].size;
            n++;
            /* The program's kernel writes the buffer, later. One buffer in
             * four is then written on the other stream too, in an access
             * window (half of them after a window on its own stream):
             * that window waits on the device for gms's own work on the
             * memory (its preparation, its last owner's scrub), and the
             * buffer's free on its own stream for the window. */
            uint32_t how = (uint32_t)(test_random() % 8);
            void *other = l->stream == streams[0] ? streams[1] : streams[0];
            for (int w = 0; w < (how < 2 ? 2 : 1); w++) {
                void *on = w ? other : l->stream;
                bool windowed = w == 1 || how == 0;
                if ((windowed &&
                     gms_access_begin(ctx, l->buf, GMS_ACCESS_READ_WRITE, 0, on) != GMS_OK) ||
                    fake_device_use(on, (uint64_t)(uintptr_t)p, size) != 0 ||
                    (windowed && gms_access_end(ctx, l->buf, on) != GMS_OK))
                    failures++;
            }
        } else {
            unsigned i = (unsigned)(test_random() % n);
            if (gms_free_async(ctx, bufs[i].buf, bufs[i].stream) != GMS_OK)
                failures++;
            bufs[i] = bufs[--n];
        }
        if (op % 700 == 699)
            CHECK_OK(gms_trim(rt)); /* waits for the device, then unmaps what is cached */
    }
    CHECK(failures == 0);
    CHECK(overlaps == 0);
    /* A write through a raw pointer after gms_free (which queues the
     * block's scrub before it returns), found once the block leaves
     * quarantine (safety on). */
    gms_buf w;
    void *wp = NULL;
    CHECK_OK(gms_alloc_async(ctx, 64 * KIB, 0, streams[0], &w));
    CHECK_OK(gms_buf_ptr(ctx, w, &wp));
    CHECK_OK(gms_free(ctx, w));
    fake_run_all(); /* the device has poisoned it */
    waf_lo = (uint64_t)(uintptr_t)wp;
    waf_hi = waf_lo + 64 * KIB;
    if (safety == GMS_SAFETY_ON)
        memset((char *)wp + 100, 0x42, 8);
    for (; n > 0; n--)
        CHECK_OK(gms_free_async(ctx, bufs[n - 1].buf, bufs[n - 1].stream));
    CHECK_OK(gms_sync(rt));
    CHECK_OK(gms_trim(rt));
    close_on_fake(rt, ctx);
    printf("safety %s, %s, lag %u: %u violations%s\n", safety == GMS_SAFETY_ON ? "on" : "off",
           with_leases ? "leases" : "chunks", lag, violations,
           safety != GMS_SAFETY_ON ? "" : write_after_free ? ", the write after free found"
                                                           : ", the write after free not found");
    if (safety == GMS_SAFETY_ON)
        CHECK(violations == write_after_free && write_after_free >= 1);
    else
        CHECK(violations == 0);
}

/* With leases, safety off: a lease reads as zeros, so the first buffer in
 * it needs no device work (gms_alloc does not wait); memory the pool
 * unmapped and maps again is zeroed before its next buffer sees it. */
static void fresh_leases(void)
{
    gms_runtime *rt;
    gms_context *ctx = open_on_fake(&rt, GMS_SAFETY_OFF, 1, 4, 0);
    if (ctx) {
        static uint8_t back[3 * MIB];
        gms_stats before, after;
        gms_buf x;
        void *p = NULL;
        CHECK_OK(gms_stats_get(rt, &before));
        CHECK_OK(gms_alloc(ctx, sizeof back, 0, &x));
        CHECK_OK(gms_stats_get(rt, &after));
        CHECK(after.device_waits == before.device_waits && after.maps > before.maps);
        CHECK_OK(gms_buf_ptr(ctx, x, &p));
        CHECK(p && fake_device_use(NULL, (uint64_t)(uintptr_t)p, sizeof back) == 0); /* 0x77 */
        CHECK_OK(gms_free(ctx, x));
        CHECK_OK(gms_trim(rt)); /* unmaps its granules; the lease stays */
        CHECK_OK(gms_stats_get(rt, &before));
        CHECK(before.unmaps > after.unmaps);
        CHECK_OK(gms_alloc(ctx, sizeof back, 0, &x));
        CHECK_OK(gms_read(ctx, x, 0, back, sizeof back));
        CHECK(test_zeros(back, sizeof back));
        CHECK_OK(gms_free(ctx, x));
        close_on_fake(rt, ctx);
    }
}

/* With leases and safety on: the spare lease is filled with the poison
 * on its own thread, so the first buffer in it needs no device work
 * either (gms_alloc does not wait), reads as the pattern (as reused
 * memory does with safety on), and the poison there is the pool's own: a
 * write past the buffer's end is found at its free, and nothing else. */
static void poisoned_spare(void)
{
    gms_runtime *rt;
    gms_context *ctx = open_on_fake(&rt, GMS_SAFETY_ON, 1, 4, LEASE); /* a chunk is a lease */
    if (ctx) {
        static uint8_t back[6 * MIB];
        gms_buf first, x;
        void *p = NULL;
        CHECK_OK(gms_alloc(ctx, sizeof back, 0, &first)); /* the first lease, asked for now */
        for (unsigned i = 0; i < 10000 && __atomic_load_n(&leases_out, __ATOMIC_SEQ_CST) < 2; i++)
            usleep(1000); /* until the spare is being made; the next chunk waits for it */
        CHECK(__atomic_load_n(&leases_out, __ATOMIC_SEQ_CST) == 2);
        gms_stats before, after;
        CHECK_OK(gms_stats_get(rt, &before));
        CHECK_OK(gms_alloc(ctx, sizeof back, 0, &x)); /* does not fit the first: the spare */
        CHECK_OK(gms_stats_get(rt, &after));
        CHECK(after.device_waits == before.device_waits && after.maps > before.maps);
        CHECK(__atomic_load_n(&leases_out, __ATOMIC_SEQ_CST) >= 2);
        CHECK_OK(gms_read(ctx, x, 0, back, sizeof back));
        CHECK(test_one_word(back, sizeof back));
        CHECK_OK(gms_buf_ptr(ctx, x, &p));
        CHECK(overflows == 0);
        uint64_t past = (uint64_t)(uintptr_t)p + sizeof back; /* one byte past the end */
        CHECK(p && fake_device_use(NULL, past, 1) == 0);
        /* gms_free's promise: the program's work on x is done. Its scrub
         * may run on another stream, which this device runs in any order
         * against stream NULL: without this, the write could land after
         * the check (CI saw it once under load). */
        fake_run_all();
        CHECK_OK(gms_free(ctx, x));
        CHECK_OK(gms_free(ctx, first));
        CHECK_OK(gms_sync(rt));
        CHECK_OK(gms_trim(rt));
        CHECK(overflows == 1 && violations == 1);
        close_on_fake(rt, ctx);
    }
}

/* gms_free (not the async call) of a buffer whose new memory's
 * preparation, queued on its stream, has not run: the caller's own work is
 * done, gms's is not, so another stream must not get the memory yet (its
 * kernel could run before the preparation's zeros land on its data). */
static void sync_free_before_preparation(int safety)
{
    gms_runtime *rt;
    gms_context *ctx = open_on_fake(&rt, safety, 0, 64, 0);
    if (!ctx)
        return;
    void *a = (void *)(uintptr_t)0x5100, *b = (void *)(uintptr_t)0x5200;
    gms_buf before, x, after, y;
    void *px = NULL, *py = NULL;
    /* Three buffers in one new granule, prepared on a, later; x between
     * two live ones, so that its free block merges with no neighbour. */
    CHECK_OK(gms_alloc_async(ctx, 512 * KIB, 0, a, &before));
    CHECK_OK(gms_alloc_async(ctx, 512 * KIB, 0, a, &x));
    CHECK_OK(gms_alloc_async(ctx, 512 * KIB, 0, a, &after));
    CHECK_OK(gms_buf_ptr(ctx, x, &px));
    CHECK_OK(gms_free(ctx, x));
    CHECK_OK(gms_alloc_async(ctx, 512 * KIB, 0, b, &y)); /* x's place fits best */
    CHECK_OK(gms_buf_ptr(ctx, y, &py));
    CHECK(px && py && px != py);
    fake_run_all();
    CHECK_OK(gms_free_async(ctx, before, a));
    CHECK_OK(gms_free_async(ctx, after, a));
    CHECK_OK(gms_free_async(ctx, y, b));
    CHECK_OK(gms_sync(rt));
    CHECK(violations == 0);
    close_on_fake(rt, ctx);
}

/* A run of granules is mapped as extents, one device allocation each, of
 * at most GMS_EXTENT_MAX granules, cut where a block's own granules end:
 * what a block holds alone goes back with it whatever its neighbours hold,
 * and an extent with a block left on it stays mapped whole. */
static void extents(void)
{
    gms_runtime *rt;
    gms_context *ctx = open_on_fake(&rt, GMS_SAFETY_OFF, 0, 4, 0);
    if (!ctx)
        return;
    const uint64_t gran = 2 * MIB;
    gms_stats st;
    gms_buf big, next, x, y;
    unsigned long long made = fake_calls(GMS_DRV_mem_create);
    CHECK_OK(gms_alloc(ctx, 41 * MIB, 0, &big)); /* 21 granules, the last shared */
    made = fake_calls(GMS_DRV_mem_create) - made;
    unsigned long long least = (21 + GMS_EXTENT_MAX - 1) / GMS_EXTENT_MAX;
    CHECK(made >= least && made <= least + 2); /* not one a granule */
    CHECK_OK(gms_alloc(ctx, 2 * MIB, 0, &next)); /* big's last granule and one more */
    CHECK_OK(gms_free(ctx, big));
    CHECK_OK(gms_trim(rt));
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.held_bytes == 2 * gran); /* next's two granules; big's own went */
    CHECK_OK(gms_free(ctx, next));
    CHECK_OK(gms_trim(rt));
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.held_bytes == 0);
    /* x maps [0, 3) as one extent; y, in x's first granule after x is
     * freed, keeps it mapped, whole. */
    CHECK_OK(gms_alloc(ctx, 6 * MIB, 0, &x));
    CHECK_OK(gms_free(ctx, x));
    CHECK_OK(gms_alloc(ctx, 3 * MIB / 2, 0, &y));
    CHECK_OK(gms_trim(rt));
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.held_bytes == 3 * gran);
    uint8_t b[16] = {1};
    CHECK_OK(gms_write(ctx, y, 3 * MIB / 2 - sizeof b, b, sizeof b)); /* still mapped */
    CHECK_OK(gms_free(ctx, y));
    CHECK_OK(gms_sync(rt));
    CHECK(violations == 0);
    close_on_fake(rt, ctx);
}

int main(int argc, char **argv)
{
    if (argc == 4) { /* one run: safety (0 on, 1 off), leases (0 or 1), lag */
        run(atoi(argv[1]), atoi(argv[2]), (unsigned)atoi(argv[3]));
        return test_done();
    }
    for (unsigned lag = 4; lag <= 64; lag *= 16)
        for (int leases = 0; leases < 2; leases++) {
            run(GMS_SAFETY_OFF, leases, lag);
            run(GMS_SAFETY_ON, leases, lag);
        }
    fresh_leases();
    poisoned_spare();
    sync_free_before_preparation(GMS_SAFETY_OFF);
    sync_free_before_preparation(GMS_SAFETY_ON);
    extents();
    return test_done();
}
