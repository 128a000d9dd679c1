/*
 * threads_double_free.c: two threads free the same handle at the same
 * moment, 20,000 rounds: each round exactly one gets GMS_OK and the other
 * GMS_E_INVALID_HANDLE. Then a free racing a read and a write of the same
 * buffer: the accesses either succeed (before the free) or are refused with
 * GMS_E_INVALID_HANDLE, never anything else. State stays consistent.
 */
#include "test.h"

#include <pthread.h>

#define ROUNDS 20000
#define RACE_ROUNDS 5000

static gms_context *ctx;
static gms_buf shared_h;
static pthread_barrier_t start, done;
static int rcs[2];
static int phase; /* 0: both free; 1: thread 0 frees, thread 1 reads/writes */
static int rounds;

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int r = 0; r < rounds; r++) {
        pthread_barrier_wait(&start);
        if (phase == 0 || me == 0) {
            rcs[me] = gms_free(ctx, shared_h);
        } else {
            uint8_t buf[64];
            memset(buf, (uint8_t)r, sizeof buf);
            int rc = gms_write(ctx, shared_h, 0, buf, sizeof buf);
            int rc2 = gms_read(ctx, shared_h, 64, buf, sizeof buf);
            /* Each is OK (before the free) or INVALID_HANDLE (after);
             * once refused, a handle stays refused. */
            if (rc != GMS_OK && rc != GMS_E_INVALID_HANDLE)
                rcs[me] = rc;
            else if (rc == GMS_E_INVALID_HANDLE && rc2 == GMS_OK)
                rcs[me] = -100; /* a freed handle came back to life */
            else
                rcs[me] = rc2;
        }
        pthread_barrier_wait(&done);
    }
    return NULL;
}

static void run_phase(int which, int n)
{
    phase = which;
    rounds = n;
    pthread_t t[2];
    CHECK(pthread_barrier_init(&start, NULL, 3) == 0);
    CHECK(pthread_barrier_init(&done, NULL, 3) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    int wrong = 0, ok_first = 0;
    for (int r = 0; r < n; r++) {
        gms_buf h;
        int rc = gms_alloc(ctx, 128 + (size_t)(r % 7) * 256, 0, &h);
        if (rc != GMS_OK) {
            CHECK_OK(rc);
            h = 0;
        }
        shared_h = h;
        rcs[0] = rcs[1] = 12345;
        pthread_barrier_wait(&start);
        pthread_barrier_wait(&done);
        if (which == 0) {
            int oks = (rcs[0] == GMS_OK) + (rcs[1] == GMS_OK);
            int invalid = (rcs[0] == GMS_E_INVALID_HANDLE) + (rcs[1] == GMS_E_INVALID_HANDLE);
            if (oks != 1 || invalid != 1) {
                if (wrong++ < 10)
                    fprintf(stderr, "round %d: free results %d and %d\n", r, rcs[0], rcs[1]);
            }
            ok_first += rcs[0] == GMS_OK;
        } else {
            if (rcs[0] != GMS_OK || (rcs[1] != GMS_OK && rcs[1] != GMS_E_INVALID_HANDLE)) {
                if (wrong++ < 10)
                    fprintf(stderr, "round %d: free %d, access %d\n", r, rcs[0], rcs[1]);
            }
            ok_first += rcs[1] == GMS_OK;
        }
        /* The handle is dead now, whatever the order was. */
        if (gms_free(ctx, h) != GMS_E_INVALID_HANDLE)
            wrong++;
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&done);
    printf("phase %d: %d rounds, %d wrong, thread 0 first/access succeeded %d times\n", which, n,
           wrong, ok_first);
    CHECK(wrong == 0);
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = "racers";
    d.user = "r";
    if (rt)
        CHECK_OK(gms_context_open(&ctx, rt, &d));
    if (!ctx) {
        gms_runtime_close(rt);
        return test_done();
    }

    run_phase(0, ROUNDS);
    run_phase(1, RACE_ROUNDS);

    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.live_blocks == 0 && st.live_bytes == 0);
    CHECK(st.frees == (uint64_t)ROUNDS + RACE_ROUNDS);
    CHECK(st.allocs == st.frees);
    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.live_handles == 0);
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
