/*
 * threads.c: many threads emitting at once (run under TSan too). Strict
 * mode with a tiny ring: back-pressure makes callers wait, no record is
 * lost, each thread's records stay in order, concurrent flushes return.
 * Lossy mode: what was dropped is counted in the trail, exactly.
 */
#include "util.h"
#include "gms/testing.h"

#include <pthread.h>
#include <stdatomic.h>

#define THREADS 4
#define PAIRS 1500

typedef struct job {
    gms_runtime *rt;
    int id;
} job;

static atomic_int stop_flush;

static void *worker(void *arg)
{
    job *j = arg;
    char user[16];
    snprintf(user, sizeof user, "user%d", j->id);
    gms_context *c = ctx_open(j->rt, j->id % 2 ? "acme" : "globex", user, GMS_LANG_C);
    for (int i = 0; i < PAIRS; i++) {
        gms_buf h;
        if (gms_alloc(c, 100 + (size_t)i, 0, &h) == GMS_OK)
            gms_free(c, h);
    }
    gms_context_close(c);
    return NULL;
}

static void *flusher(void *arg)
{
    gms_runtime *rt = arg;
    while (!atomic_load(&stop_flush))
        CHECK_OK(gms_audit_flush(rt));
    return NULL;
}

static void run(gms_runtime *rt, bool with_flusher)
{
    pthread_t t[THREADS], f;
    job j[THREADS];
    atomic_store(&stop_flush, 0);
    if (with_flusher)
        pthread_create(&f, NULL, flusher, rt);
    for (int i = 0; i < THREADS; i++) {
        j[i] = (job){rt, i};
        pthread_create(&t[i], NULL, worker, &j[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop_flush, 1);
    if (with_flusher)
        pthread_join(f, NULL);
}

int main(void)
{
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    const uint64_t expected = 1 + THREADS * (2 + 2 * PAIRS) + 1;

    /* Strict: 8 slots per shard, so callers hit a full ring constantly. */
    CHECK_OK(gms_testing_audit_ring_slots(8));
    gms_runtime *rt = trail_open(dir, 256 * 1024, 0);
    CHECK(rt != NULL);
    run(rt, true);
    gms_runtime_close(rt);
    recs rs;
    gms_trail_summary s;
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    CHECK(rs.n == expected);
    uint64_t allocs = 0, frees = 0;
    for (size_t i = 0; i < rs.n; i++) {
        allocs += rs.v[i].op == GMS_AUDIT_ALLOC;
        frees += rs.v[i].op == GMS_AUDIT_FREE;
        CHECK(rs.v[i].seq == i + 1);
    }
    CHECK(allocs == THREADS * PAIRS && frees == THREADS * PAIRS);
    /* Per thread (user), alloc sizes appear in the order they were made. */
    for (int t = 0; t < THREADS; t++) {
        char user[16];
        snprintf(user, sizeof user, "user%d", t);
        uint64_t next = 100;
        bool ordered = true;
        for (size_t i = 0; i < rs.n; i++)
            if (rs.v[i].op == GMS_AUDIT_ALLOC && strcmp(rs.v[i].user, user) == 0)
                ordered &= rs.v[i].size == next++;
        CHECK(ordered && next == 100 + PAIRS);
    }
    free(rs.v);
    rm_rf(dir);

    /* Lossy: 2 slots per shard; recorded + dropped == emitted. */
    tmpdir_make(dir, sizeof dir);
    CHECK_OK(gms_testing_audit_ring_slots(2));
    rt = trail_open(dir, 0, 1);
    CHECK(rt != NULL);
    run(rt, false);
    gms_runtime_close(rt);
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    uint64_t kept = 0, dropped = 0;
    for (size_t i = 0; i < rs.n; i++) {
        if (rs.v[i].op == GMS_AUDIT_DROPPED)
            dropped += rs.v[i].size;
        else
            kept++;
    }
    printf("lossy: %llu kept, %llu dropped of %llu\n", (unsigned long long)kept,
           (unsigned long long)dropped, (unsigned long long)expected);
    CHECK(kept + dropped == expected);
    free(rs.v);
    rm_rf(dir);
    CHECK_OK(gms_testing_audit_ring_slots(0));
    return test_done();
}
