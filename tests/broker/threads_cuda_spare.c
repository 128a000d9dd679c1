/*
 * threads_cuda_spare.c: a client of a gmsd serving CUDA memory whose
 * threads allocate, fill, check and free buffers that each need a lease
 * of their own, and trim, while the backend's spare thread makes the
 * next lease ahead (docs/broker.md, "CUDA memory"). Run under TSan too.
 * Over the stand-in libcuda (LD_LIBRARY_PATH; safety off: no kernels),
 * skipped (77) without a libcuda. Every byte written is read back, and
 * closing the runtime returns every lease, the spare's included.
 */
#include "util.h"


#define MIB (1ull << 20)
#define LEASE (4 * MIB)
#define NTHREADS 3
#define ROUNDS 40

static broker b;
static gms_runtime *rt;

static void *worker(void *arg)
{
    long id = (long)arg, bad = 0;
    gms_context *ctx = thread_context(rt, id);
    if (!ctx)
        return (void *)1;
    for (int r = 0; r < ROUNDS; r++) {
        /* More than half a lease: a lease of its own each time. */
        bad += lease_round(ctx, (uint64_t)id << 32 | (uint64_t)r, 3 * MIB, 1);
        if (r % 4 == 0)
            gms_trim(rt); /* chunks back to gmsd: the next round leases again */
    }
    gms_context_close(ctx);
    return (void *)bad;
}

int main(void)
{
    /* Probed in a child: CUDA set up before a fork is unusable after it. */
    if (run_child(cuda_probe) != 0) {
        printf("no CUDA backend here: skipped\n");
        return TEST_SKIP;
    }
    char policy[256];
    snprintf(policy, sizeof policy,
             "{\"lease_bytes\": %llu, \"tenants\": [{\"name\": \"self\", \"uids\": [%u], "
             "\"quota_bytes\": %llu, \"quota_leases\": 64}]}",
             (unsigned long long)LEASE, (unsigned)getuid(), (unsigned long long)(64 * LEASE));
    broker_start_with(&b, policy, "--memory", "cuda");
    unsetenv("GMS_BROKER_SPARE");
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.broker = b.sock;
    o.backend = GMS_BACKEND_CUDA;
    o.safety = GMS_SAFETY_OFF;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (rt) {
        pthread_t t[NTHREADS];
        for (long i = 0; i < NTHREADS; i++)
            CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
        threads_join_clean(t, NTHREADS);
        gms_runtime_close(rt);
    }
    CHECK(usage_empties(b.sock));
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
