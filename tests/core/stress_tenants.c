/*
 * stress_tenants.c: 4 tenants x 2 threads (tenants 0 and 1 share one
 * context between their two threads, tenants 2 and 3 give each thread its
 * own, of different levels and languages) allocate random sizes, write a
 * per-block pattern, read it back, check it again before freeing, and try
 * each other's published handles (always refused). Tenant 3 runs against
 * its quota. Meanwhile one thread calls gms_verify and gms_stats_get. At
 * the end all is freed, verify passes and nothing is live.
 */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define TENANTS 4
#define THREADS (TENANTS * 2)
#define SLOTS 48
#define OPS 4000
#define SECONDS 2.0
#define MAXBUF ((3u << 20) + 4096)

static gms_runtime *rt;
static gms_context *ctxs[THREADS];
static _Atomic uint64_t published[THREADS];
static atomic_int workers_left;
static atomic_int problems;
static const char *tenant_names[TENANTS] = {"t0-shared", "t1-shared", "t2-own", "t3-quota"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void problem(int tid, const char *what, int rc)
{
    if (atomic_fetch_add(&problems, 1) < 20)
        fprintf(stderr, "thread %d: %s: %s (%s)\n", tid, what, gms_strerror(rc), gms_error_last());
}

static void pattern(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed;
    for (size_t i = 0; i < n; i += 8) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(p + i, &x, k);
    }
}

typedef struct live {
    gms_buf h;
    size_t size;
    uint64_t seed;
} live;

static int check_block(int tid, gms_context *c, const live *b, uint8_t *want, uint8_t *got)
{
    pattern(want, b->size, b->seed);
    int rc = gms_read(c, b->h, 0, got, b->size);
    if (rc != GMS_OK) {
        problem(tid, "gms_read of a live block", rc);
        return 0;
    }
    if (memcmp(want, got, b->size) != 0) {
        problem(tid, "a block's pattern changed", GMS_E_CORRUPTION);
        return 0;
    }
    return 1;
}

static void *worker(void *arg)
{
    int tid = (int)(intptr_t)arg;
    int tenant = tid / 2;
    gms_context *c = ctxs[tid];
    uint64_t rng = 0xabcdef12345ull * (uint64_t)(tid + 1);
    uint8_t *want = malloc(MAXBUF), *got = malloc(MAXBUF);
    live slots[SLOTS];
    memset(slots, 0, sizeof slots);
    double end = now_s() + SECONDS;
    uint64_t refusals = 0;

    /* A long-lived block the other tenants will try to touch. */
    gms_buf pub = 0;
    int rc = gms_alloc(c, 4096, GMS_ALLOC_ZERO, &pub);
    if (rc != GMS_OK)
        problem(tid, "gms_alloc of the published block", rc);
    atomic_store(&published[tid], pub);

    for (int op = 0; op < OPS && want && got; op++) {
        /* Time's up, but tenant 3 goes on until its quota refused once:
         * a loaded machine may give it few allocations in the time. */
        if ((op & 63) == 0 && now_s() > end && !(tenant == 3 && refusals == 0))
            break;
        live *b = &slots[next_rand(&rng) % SLOTS];
        if (b->h) {
            check_block(tid, c, b, want, got);
            rc = gms_free(c, b->h);
            if (rc != GMS_OK)
                problem(tid, "gms_free", rc);
            b->h = 0;
        } else {
            uint64_t r = next_rand(&rng);
            size_t size = r % 50 == 0 ? 1 + (size_t)(r >> 8) % (3u << 20) : 1 + (size_t)(r >> 8) % 65536;
            rc = gms_alloc(c, size, 0, &b->h);
            if (rc == GMS_E_QUOTA && tenant == 3) {
                refusals++;
                b->h = 0;
                continue;
            }
            if (rc != GMS_OK) {
                problem(tid, "gms_alloc", rc);
                b->h = 0;
                continue;
            }
            b->size = size;
            b->seed = next_rand(&rng);
            pattern(want, size, b->seed);
            rc = gms_write(c, b->h, 0, want, size);
            if (rc != GMS_OK)
                problem(tid, "gms_write", rc);
            check_block(tid, c, b, want, got);
            /* One byte past the end is refused. */
            rc = gms_write(c, b->h, size, want, 1);
            if (rc != GMS_E_OUT_OF_BOUNDS)
                problem(tid, "gms_write one past the end", rc);
        }
        /* Another tenant's published block: never ours. */
        int other = (int)(next_rand(&rng) % THREADS);
        if (other / 2 != tenant) {
            gms_buf h = atomic_load(&published[other]);
            if (h) {
                uint8_t x[16];
                rc = gms_read(c, h, 0, x, sizeof x);
                if (rc != GMS_E_ACCESS_DENIED && rc != GMS_E_INVALID_HANDLE)
                    problem(tid, "reading another tenant's buffer", rc);
                rc = gms_write(c, h, 0, x, sizeof x);
                if (rc != GMS_E_ACCESS_DENIED && rc != GMS_E_INVALID_HANDLE)
                    problem(tid, "writing another tenant's buffer", rc);
            }
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (!slots[i].h)
            continue;
        if (want && got)
            check_block(tid, c, &slots[i], want, got);
        rc = gms_free(c, slots[i].h);
        if (rc != GMS_OK)
            problem(tid, "gms_free at the end", rc);
    }
    /* The published block is still all zeros: nobody wrote it. */
    if (pub) {
        uint8_t z[4096];
        rc = gms_read(c, pub, 0, z, sizeof z);
        int zero = rc == GMS_OK;
        for (size_t i = 0; zero && i < sizeof z; i++)
            zero = z[i] == 0;
        if (!zero)
            problem(tid, "the published block changed", rc);
        atomic_store(&published[tid], 0);
        rc = gms_free(c, pub);
        if (rc != GMS_OK)
            problem(tid, "gms_free of the published block", rc);
    }
    if (tenant == 3)
        printf("thread %d: %" PRIu64 " quota refusals\n", tid, refusals);
    free(want);
    free(got);
    atomic_fetch_sub(&workers_left, 1);
    return NULL;
}

static void *verifier(void *arg)
{
    (void)arg;
    int runs = 0;
    while (atomic_load(&workers_left) > 0) {
        gms_report r;
        int rc = gms_verify(rt, &r);
        if (rc != GMS_OK) {
            if (atomic_fetch_add(&problems, 1) < 20)
                fprintf(stderr, "verify: %s: %s\n", gms_strerror(rc), r.first_violation);
        }
        gms_stats s;
        rc = gms_stats_get(rt, &s);
        if (rc != GMS_OK || s.fragmentation < 0 || s.fragmentation > 1 ||
            s.held_bytes % (2u << 20) != 0 || s.contexts != 6) {
            if (atomic_fetch_add(&problems, 1) < 20)
                fprintf(stderr, "stats: rc %d frag %f held %" PRIu64 " contexts %" PRIu64 "\n", rc,
                        s.fragmentation, s.held_bytes, s.contexts);
        }
        for (uint64_t i = 0; i < s.tenants; i++) {
            gms_tenant_stats ts;
            if (gms_tenant_stats_get(rt, i, &ts) != GMS_OK)
                atomic_fetch_add(&problems, 1);
            else if (strcmp(ts.tenant, "t3-quota") == 0 && ts.live_bytes > ts.max_bytes)
                atomic_fetch_add(&problems, 1);
        }
        runs++;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    printf("verifier: %d runs during the stress\n", runs);
    return NULL;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();
    CHECK_OK(gms_tenant_set_quota(rt, "t3-quota", 3u << 20, 60));
    for (int t = 0; t < THREADS; t++) {
        int tenant = t / 2;
        if (tenant < 2 && t % 2 == 1) {
            ctxs[t] = ctxs[t - 1]; /* shared by both threads */
            continue;
        }
        gms_context_desc d;
        gms_context_desc_init(&d);
        d.tenant = tenant_names[tenant];
        d.user = t % 2 ? "odd" : "even";
        d.level = (gms_level)(t % 4);
        d.language = (gms_language)(t % 8);
        CHECK_OK(gms_context_open(&ctxs[t], rt, &d));
        if (!ctxs[t])
            return test_done();
    }

    atomic_store(&workers_left, THREADS);
    pthread_t th[THREADS], v;
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) == 0);
    CHECK(pthread_create(&v, NULL, verifier, NULL) == 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    pthread_join(v, NULL);
    CHECK(atomic_load(&problems) == 0);

    gms_stats s;
    CHECK_OK(gms_stats_get(rt, &s));
    CHECK(s.live_blocks == 0 && s.live_bytes == 0);
    CHECK(s.allocs == s.frees);
    printf("%" PRIu64 " allocations in all\n", s.allocs);
    CHECK(s.allocs > 200);
    CHECK(s.leaked_blocks == 0);
    for (uint64_t i = 0; i < s.tenants; i++) {
        gms_tenant_stats ts;
        CHECK_OK(gms_tenant_stats_get(rt, i, &ts));
        CHECK(ts.live_bytes == 0 && ts.live_blocks == 0);
        if (strcmp(ts.tenant, "t3-quota") == 0) {
            CHECK(ts.peak_live_bytes <= (3u << 20));
            CHECK(ts.quota_refusals > 0);
        } else {
            CHECK(ts.quota_refusals == 0);
        }
    }
    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.live_blocks == 0 && r.live_handles == 0 && r.violations == 0);
    for (int t = 0; t < THREADS; t++)
        if (!(t / 2 < 2 && t % 2 == 1))
            gms_context_close(ctxs[t]);
    CHECK_OK(gms_stats_get(rt, &s));
    CHECK(s.contexts == 0 && s.held_bytes == 0);
    gms_runtime_close(rt);
    return test_done();
}
