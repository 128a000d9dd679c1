/*
 * threads_stream_order.c: the stream-ordered pipeline (docs/stream-ordered.md)
 * on a machine with no GPU. A "deferred" backend (backend/deferred.h) wraps
 * the host backend and plays the device: the safety work queued on a stream
 * runs only when the test says the device got there, so what a GPU does
 * asynchronously happens here step by step. It checks that
 *   - a block freed on a stream is reused at once on that stream, and by
 *     another stream only once the device has run its work;
 *   - the alloc and free path never waits for the device;
 *   - a corruption the device finds is reported by the collector thread,
 *     within a bound, with no further call from the program;
 *   - a write after free ordered after the free on its stream is caught,
 *     and a write ordered before it is not reported;
 *   - gms_verify and gms_sync cover frees still gathered for a launch;
 *   - memory whose work ran on one stream waits only for that stream's
 *     ticket, not for older tickets of other streams;
 *   - with safety off a free on a stream is reusable elsewhere only once
 *     the device has passed it;
 *   - frees of large blocks share launches;
 *   - an allocation takes a block the gathered batch would hand back
 *     when that is its closest fit.
 * The collector runs on its own thread: the ThreadSanitizer build runs this.
 */
#include "test.h"
#include "safety/util.h"

#include "backend/deferred.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the device: the deferred backend (backend/deferred.h) ---- */

/* Waits until the frees gathered into a batch are queued (the collector
 * does it within its tick). */
static void wait_queued(void)
{
    for (int ms = 0; ms < 2000 && gathering(the); ms++)
        sleep_ms(1);
    CHECK(!gathering(the));
}

/* The device catches up with stream (all: every stream): what the program
 * gathered is queued, then what is queued runs. */
static void device_catch_up(void *stream, bool all)
{
    wait_queued();
    device_run(the, stream, all);
}

/* ---- helpers ---- */

#define S1 ((void *)0x1001)
#define S2 ((void *)0x2002)

static gms_buf alloc_on(gms_context *c, size_t size, void *stream)
{
    gms_buf b = GMS_BUF_NULL;
    CHECK_OK(gms_alloc_async(c, size, 0, stream, &b));
    return b;
}

static uint64_t addr_of(gms_context *c, gms_buf b)
{
    return (uint64_t)(uintptr_t)raw(c, b);
}

/* Milliseconds until the callbacks have seen n violations, -1 after 5 s. */
static long wait_for_reports(unsigned n)
{
    for (long ms = 0; ms < 5000; ms++) {
        if (rec_count() >= n)
            return ms;
        sleep_ms(1);
    }
    return -1;
}

static gms_runtime *open_deferred(gms_safety_mode safety)
{
    gms_runtime_options o = safety_opts();
    o.safety = safety;
    o.quarantine_blocks = 1; /* a block leaves quarantine at the next free */
    o.quarantine_bytes = 1;
    return safety_open(&o);
}

/* ---- the checks ---- */

static void reuse_follows_streams(void)
{
    gms_runtime *rt = open_deferred(GMS_SAFETY_ON);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    unsigned w0 = waits();
    gms_buf a = alloc_on(c, 4000, S1), b = alloc_on(c, 4000, S1);
    uint64_t a_addr = addr_of(c, a);
    CHECK_OK(gms_free_async(c, a, S1)); /* a waits in quarantine */
    wait_queued();                      /* its scrub is launched */
    CHECK_OK(gms_free_async(c, b, S1)); /* a leaves: its check joins b's batch on S1 */
    wait_queued();
    gms_buf on2 = alloc_on(c, 4000, S2);
    CHECK(addr_of(c, on2) != a_addr); /* S2 may not have it: S1's work has not run */
    gms_buf on1 = alloc_on(c, 4000, S1);
    CHECK(addr_of(c, on1) == a_addr); /* S1 may: its later work follows the check */
    CHECK(waits() == w0);             /* nobody waited for the device */

    CHECK_OK(gms_free_async(c, on1, S1));
    CHECK_OK(gms_free_async(c, on2, S2));

    /* Many frees and allocations on two streams, the device behind: still
     * no wait, and verify (which may wait) agrees with the state. Each
     * buffer is freed on the stream it was allocated on (as with
     * cudaMallocAsync, freeing on another stream needs that stream to wait
     * for the first, which this device model does not do). */
    gms_buf keep[64];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 64; i++)
            keep[i] = alloc_on(c, 1000 + 37 * (size_t)i, (i + round) % 3 ? S1 : S2);
        for (int i = 0; i < 64; i++)
            CHECK_OK(gms_free_async(c, keep[i], (i + round) % 3 ? S1 : S2));
        if (round % 5 == 4)
            device_catch_up(S1, false);
    }
    CHECK(waits() == w0);
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.device_waits == 0); /* the counter users see says so too */
    CHECK_OK(gms_verify(rt, NULL)); /* which does wait, and is counted */
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.device_waits == 1 && waits() == w0 + 1);
    for (unsigned i = 0; i < rec_count() && i < REC_MAX; i++)
        printf("unexpected: %s\n", rec.e[i].message);
    CHECK(rec_count() == 0);
    gms_context_close(c);
    gms_runtime_close(rt);
}

static void device_findings_arrive_alone(void)
{
    gms_runtime *rt = open_deferred(GMS_SAFETY_ON);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    gms_buf x = alloc_on(c, 100, S1);
    device_catch_up(S1, false); /* the new memory's preparation */
    raw(c, x)[100] ^= 1;        /* then a kernel overflows into the redzone */
    rec_reset();
    CHECK_OK(gms_free_async(c, x, S1)); /* its scrub has not run: nothing known yet */
    CHECK(rec_count() == 0);
    device_catch_up(S1, false);
    /* No further gms call: the collector reports it. */
    long ms = wait_for_reports(1);
    CHECK(ms >= 0);
    printf("a device finding reached the callback %ld ms after the device ran it\n", ms);
    CHECK(rec.e[0].kind == GMS_VIOLATION_OVERFLOW && rec.e[0].handle == x && rec.e[0].offset == 100);
    CHECK(strstr(rec.e[0].message, "allocated by user 'u'") != NULL);
    gms_context_close(c);
    gms_runtime_close(rt);
}

/* A violation callback slow enough that the collector is still inside it
 * when the program asks for what the device found. */
static void slow_callback(void *user, const gms_violation *v)
{
    (void)v;
    sleep_ms(200);
    atomic_fetch_add((atomic_uint *)user, 1);
}

static void sync_reports_what_the_collector_took(void)
{
    gms_runtime *rt = open_deferred(GMS_SAFETY_ON);
    static atomic_uint slow_done;
    CHECK_OK(gms_on_violation(rt, slow_callback, &slow_done));
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    gms_buf x = alloc_on(c, 100, S1);
    device_catch_up(S1, false);
    raw(c, x)[100] ^= 1;
    rec_reset();
    CHECK_OK(gms_free_async(c, x, S1));
    device_catch_up(S1, false);
    /* The collector's tick takes the finding and starts delivering it;
     * gms_sync must not return before the callbacks have it. */
    sleep_ms(50);
    CHECK_OK(gms_sync(rt));
    CHECK(atomic_load(&slow_done) == 1);
    gms_context_close(c);
    gms_runtime_close(rt);
}

static void write_after_free_in_stream_order(void)
{
    gms_runtime *rt = open_deferred(GMS_SAFETY_ON);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    rec_reset();
    /* A write that its stream orders before the free (the device has not
     * reached the free yet) is the program's own: the scrub erases it and
     * nothing is reported. */
    gms_buf early = alloc_on(c, 1000, S1);
    uint8_t *pe = raw(c, early);
    CHECK_OK(gms_free_async(c, early, S1));
    pe[10] = 0x42;
    device_catch_up(S1, false);
    /* A write ordered after the free (a kernel queued on S1 later) lands on
     * poisoned memory, and the check at the quarantine's exit finds it. */
    gms_buf late = alloc_on(c, 1000, S1);
    uint8_t *pl = raw(c, late);
    CHECK_OK(gms_free_async(c, late, S1)); /* early leaves quarantine */
    device_catch_up(S1, false);
    pl[20] ^= 0x5a;
    gms_buf push = alloc_on(c, 64, S2);
    CHECK_OK(gms_free_async(c, push, S2)); /* late leaves: its check queued on S1 */
    device_catch_up(NULL, true);
    CHECK_OK(gms_sync(rt)); /* the findings, now */
    CHECK(rec_count() == 1);
    CHECK(rec.e[0].kind == GMS_VIOLATION_WRITE_AFTER_FREE && rec.e[0].handle == late &&
          rec.e[0].offset == 20);
    CHECK(strstr(rec.e[0].message, "freed by user 'u'") != NULL);
    gms_context_close(c);
    gms_runtime_close(rt);
}

/* Memory whose device work all ran on one stream is reusable elsewhere
 * once that stream's last ticket on it has run, even while an older
 * ticket of another stream has not (the watermark over all tickets would
 * hold it back). */
#define S3 ((void *)0x3003)
static void one_stream_needs_only_its_own_work(void)
{
    gms_runtime *rt = open_deferred(GMS_SAFETY_ON);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    rec_reset();
    gms_buf a = alloc_on(c, 4000, S3), b = alloc_on(c, 4000, S3), x = alloc_on(c, 4000, S1);
    uint64_t a_addr = addr_of(c, a), x_addr = addr_of(c, x);
    device_catch_up(NULL, true);
    CHECK_OK(gms_free_async(c, x, S1)); /* S1's work on x: never run below */
    CHECK_OK(gms_free_async(c, a, S3));
    wait_queued();
    CHECK_OK(gms_free_async(c, b, S3)); /* a leaves quarantine: checked on S3 */
    wait_queued();
    device_run(the, S3, false);
    gms_buf on2 = alloc_on(c, 4000, S2);
    CHECK(addr_of(c, on2) == a_addr);
    gms_buf again = alloc_on(c, 4000, S2);
    CHECK(addr_of(c, again) != x_addr); /* x's check on S1 has not run */
    device_catch_up(NULL, true);
    CHECK_OK(gms_free_async(c, on2, S2));
    CHECK_OK(gms_free_async(c, again, S2));
    CHECK_OK(gms_verify(rt, NULL));
    CHECK(rec_count() == 0);
    gms_context_close(c);
    gms_runtime_close(rt);
}

/* gms_verify and gms_sync wait for the device, so they must first launch
 * what the pool has gathered: else verify reads memory whose scrub has not
 * run (a false write after free) and sync misses the findings. */
static void checkpoints_cover_gathered_frees(void)
{
    gms_runtime *rt = open_deferred(GMS_SAFETY_ON);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    rec_reset();
    gms_buf x = alloc_on(c, 1000, S1);
    device_catch_up(S1, false);
    memset(raw(c, x), 0x11, 1000); /* the program's data, then a clean free */
    CHECK_OK(gms_free_async(c, x, S1));
    CHECK_OK(gms_verify(rt, NULL));
    CHECK(rec_count() == 0);

    gms_buf y = alloc_on(c, 100, S1);
    device_catch_up(S1, false);
    raw(c, y)[100] ^= 1;
    CHECK_OK(gms_free_async(c, y, S1));
    CHECK_OK(gms_sync(rt)); /* reported before it returns */
    CHECK(rec_count() == 1 && rec.e[0].handle == y && rec.e[0].kind == GMS_VIOLATION_OVERFLOW);
    gms_context_close(c);
    gms_runtime_close(rt);
}

/* What the device was asked for while 96 blocks of 1.5 MiB (under a
 * granule: no unmapping at the free), allocated on stream, were freed
 * there under a quarantine of quarantine_bytes: its launches and the
 * bytes its checks read. The program is correct: nothing is reported. */
enum { FREES = 96, FREE_SIZE = 3u << 19 };
static void count_large_frees(void *stream, uint64_t quarantine_bytes, unsigned *launches,
                              uint64_t *checked)
{
    gms_runtime_options o = safety_opts();
    o.quarantine_bytes = quarantine_bytes;
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    rec_reset();
    gms_buf b[FREES];
    for (int i = 0; i < FREES; i++)
        b[i] = alloc_on(c, FREE_SIZE, stream);
    device_catch_up(NULL, true);
    pthread_mutex_lock(&the->lock);
    unsigned launched = the->launches;
    uint64_t read = the->checked;
    pthread_mutex_unlock(&the->lock);
    for (int i = 0; i < FREES; i++)
        CHECK_OK(gms_free_async(c, b[i], stream));
    wait_queued();
    pthread_mutex_lock(&the->lock);
    *launches = the->launches - launched;
    *checked = the->checked - read;
    pthread_mutex_unlock(&the->lock);
    device_catch_up(NULL, true);
    CHECK_OK(gms_verify(rt, NULL));
    CHECK(rec_count() == 0);
    gms_context_close(c);
    gms_runtime_close(rt);
}

/* Frees of large blocks share launches: the blocks of the batch being
 * gathered wait in quarantine for its launch instead of launching it early
 * (then their exit checks apart), which cost a training step hundreds of
 * launches on a GPU. A batch is launched once it moves eight times the
 * quarantine's byte limit, at most 64 MiB. On a stream and on the default
 * one (NULL, PyTorch's, often). */
static void large_frees_share_launches(void *stream)
{
    unsigned used;
    uint64_t checked;
    count_large_frees(stream, 8u << 20 /* a pool of about 2 GiB live, by default */, &used,
                      &checked);
    /* Frees up to the batch's 64 MiB (or 31 items) per launch, with the
     * checks of the earlier blocks that waited (those past the limits as
     * soon as their own batch goes leave unchecked: see below), and one
     * per collector tick that came between; two per free before. */
    printf("%d frees of 1.5 MiB on %s: %u launches\n", FREES,
           stream ? "a stream" : "the default stream", used);
    CHECK(used >= 3 && used <= FREES / 4);
}

/* A block that leaves the quarantine in the same call that launched its
 * own scrub (it is over the limits as soon as that batch goes) is not
 * checked: the check would run right after the scrub, with nothing
 * between them on the stream, and read the whole block again for
 * nothing. Blocks that waited are checked as before. */
static void fresh_blocks_leave_unchecked(void)
{
    unsigned launches;
    uint64_t checked;
    /* A limit below each block: all but the newest leave at once. */
    count_large_frees(S1, 1u << 20, &launches, &checked);
    /* Each batch of about five frees launches at 8 MiB; the last of them
     * stays (the newest waits for the next free) and is checked when it
     * leaves, the others leave unchecked: about one block in five read
     * again, where every one was. */
    printf("%d frees of 1.5 MiB over a 1 MiB quarantine: %llu MiB checked\n", FREES,
           (unsigned long long)(checked >> 20));
    CHECK(checked >= (uint64_t)FREE_SIZE * (FREES / 10) &&
          checked <= (uint64_t)FREE_SIZE * (FREES / 3));
}

/* An allocation whose closest fit waits in the batch being gathered (a
 * block the launch hands back to the pool) launches that batch first and
 * takes it, where it would otherwise carve a larger free block: it lands
 * where it would have if every free had launched its batch at once, so
 * that gathering frees into fewer launches leaves the pool's layout as it
 * was. (Fragmentation of replays over the stand-in device,
 * bench/RESULTS.md: a KV-cache generation trace 20% to 12%.) */
static void closer_fit_is_brought_back(void)
{
    gms_runtime_options o = safety_opts();
    o.quarantine_bytes = 1u << 20; /* batches launch at 8 MiB */
    gms_runtime *rt = safety_open(&o);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    /* Under a granule each, so that the host memory under them stays
     * mapped when they are freed (larger blocks are unmapped, and an
     * allocation would wait for the gathered batch on that count). */
    const size_t size = 1200u << 10;
    gms_buf a = alloc_on(c, size, S1), b = alloc_on(c, size, S1);
    gms_buf big = alloc_on(c, 1900u << 10, S1); /* freed first: a larger fit for later */
    gms_buf wall = alloc_on(c, 4096, S1);    /* keeps it from the free space beyond */
    gms_buf small = alloc_on(c, 4096, S1);
    uint64_t a_addr = addr_of(c, a), big_addr = addr_of(c, big);
    device_catch_up(NULL, true); /* new memory's preparation has run */
    CHECK_OK(gms_free_async(c, big, S1));
    CHECK_OK(gms_free_async(c, small, S1)); /* big leaves the quarantine */
    device_catch_up(NULL, true);
    pthread_mutex_lock(&the->lock);
    unsigned launched = the->launches;
    pthread_mutex_unlock(&the->lock);
    /* a, then b: 2.4 MiB gathered, under the launch's 8; a is past the
     * quarantine's limit (b is the newest), so it leaves at the launch.
     * Without waiting for it, the allocation would carve big. */
    CHECK_OK(gms_free_async(c, a, S1));
    CHECK_OK(gms_free_async(c, b, S1));
    gms_buf again = alloc_on(c, size, S1);
    CHECK(addr_of(c, again) == a_addr && a_addr != big_addr);
    pthread_mutex_lock(&the->lock);
    CHECK(the->launches > launched); /* the gathered batch went first */
    pthread_mutex_unlock(&the->lock);
    CHECK_OK(gms_free_async(c, again, S1));
    CHECK_OK(gms_free_async(c, wall, S1));
    device_catch_up(NULL, true);
    CHECK_OK(gms_verify(rt, NULL));
    CHECK(rec_count() == 0);
    gms_context_close(c);
    gms_runtime_close(rt);
}

/* $GMS_DEBUG_MAPS gets a line per launch of the free path, with why it
 * was launched (the log that told a Llama step's 9,387 launches apart). */
static void launches_are_logged(void)
{
    char path[] = "/tmp/gms-launches-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    setenv("GMS_DEBUG_MAPS", path, 1);
    unsigned launches;
    uint64_t checked;
    count_large_frees(S1, 1u << 20, &launches, &checked);
    unsetenv("GMS_DEBUG_MAPS");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    unsigned logged = 0, by_bytes = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        logged += strstr(line, " launch ") != NULL;
        by_bytes += strstr(line, " launch bytes: ") != NULL;
    }
    if (f)
        fclose(f);
    unlink(path);
    /* Every launch while the blocks were freed (all batches of frees,
     * with safety on), and those at the context's close. */
    CHECK(launches > 0 && logged >= launches && by_bytes > 0);
}

static void safety_off_marks_frees(void)
{
    gms_runtime *rt = open_deferred(GMS_SAFETY_OFF);
    gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_INTERNAL);
    unsigned w0 = waits();
    gms_buf a = alloc_on(c, 4000, S1), b = alloc_on(c, 4000, S1);
    uint64_t a_addr = addr_of(c, a);
    CHECK_OK(gms_free_async(c, a, S1));
    gms_buf on2 = alloc_on(c, 4000, S2);
    CHECK(addr_of(c, on2) != a_addr);
    gms_buf on1 = alloc_on(c, 4000, S1);
    CHECK(addr_of(c, on1) == a_addr);
    /* Once the device has passed the free, any stream may reuse it. */
    CHECK_OK(gms_free_async(c, on1, S1));
    device_catch_up(NULL, true);
    gms_buf later = alloc_on(c, 4000, S2);
    CHECK(addr_of(c, later) == a_addr);
    /* gms_free says the device is done with it: any stream, at once. */
    CHECK_OK(gms_free(c, later));
    gms_buf any = alloc_on(c, 4000, S2);
    CHECK(addr_of(c, any) == a_addr);
    CHECK(waits() == w0);
    gms_free(c, any);
    gms_free(c, on2);
    gms_free(c, b);
    gms_context_close(c);
    gms_runtime_close(rt);
}

int main(void)
{
    gms__backend_wrap = deferred_wrap;
    reuse_follows_streams();
    device_findings_arrive_alone();
    sync_reports_what_the_collector_took();
    write_after_free_in_stream_order();
    checkpoints_cover_gathered_frees();
    one_stream_needs_only_its_own_work();
    safety_off_marks_frees();
    large_frees_share_launches(S1);
    large_frees_share_launches(NULL);
    fresh_blocks_leave_unchecked();
    launches_are_logged();
    closer_fit_is_brought_back();
    return test_done();
}
