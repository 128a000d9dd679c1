/*
 * threads_atomics.c: holders in two contexts (a writer and an atomic
 * holder, two languages) add to one shared counter from four threads, one
 * at a time and in batches: the sum is exact; CAS-claimed slots are
 * claimed once each; max ends at the largest value offered.
 */
#include "share/util.h"
#include "gms/access.h"

#include <pthread.h>

#define THREADS 4
#define ADDS 20000
#define SLOTS 64

typedef struct {
    gms_context *ctx;
    gms_buf buf;
    int index;
    int claimed;
    int failed;
} worker;

static void *run(void *arg)
{
    worker *w = arg;
    gms_atomic_item batch[16];
    for (int i = 0; i < 16; i++)
        batch[i] = (gms_atomic_item){0, 1, 0, GMS_ATOMIC_ADD, 8};
    for (int i = 0; i < ADDS / 2; i++)
        w->failed += gms_atomic(w->ctx, w->buf, 0, GMS_ATOMIC_ADD, 8, 1, 0, NULL, NULL) != GMS_OK;
    for (int i = 0; i < ADDS / 2 / 16; i++)
        w->failed += gms_atomic_batch(w->ctx, w->buf, batch, 16, GMS_BUF_NULL, 0, NULL) != GMS_OK;
    for (int s = 0; s < SLOTS; s++) { /* claim free slots: 0 -> index + 1 */
        uint64_t old = 1;
        w->failed += gms_atomic(w->ctx, w->buf, 64 + 4 * (uint64_t)s, GMS_ATOMIC_CAS, 4,
                                (uint64_t)w->index + 1, 0, NULL, &old) != GMS_OK;
        w->claimed += old == 0;
    }
    for (int i = 0; i < 1000; i++)
        w->failed += gms_atomic(w->ctx, w->buf, 8, GMS_ATOMIC_MAX_SIGNED, 8,
                                (uint64_t)(w->index * 1000 + i), 0, NULL, NULL) != GMS_OK;
    return NULL;
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    gms_context *py = open_ctx(rt, "acme", "py", GMS_LANG_PYTHON);
    gms_context *rs = open_ctx(rt, "acme", "rs", GMS_LANG_RUST);
    gms_buf b = GMS_BUF_NULL, a = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(py, 64 + 4 * SLOTS, GMS_ALLOC_ZERO, &b));
    gms_share_id id = 0;
    CHECK_OK(share_one(py, b, NULL, NULL, GMS_LANG_RUST, GMS_ACCESS_READ_WRITE, 0, &id));
    CHECK_OK(gms_acquire(rs, id, GMS_ACCESS_ATOMIC, &a));
    worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){i % 2 ? rs : py, i % 2 ? a : b, i, 0, 0};
        pthread_create(&t[i], NULL, run, &w[i]);
    }
    int claimed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].failed == 0);
        claimed += w[i].claimed;
    }
    uint64_t sum = 0, max = 0;
    CHECK_OK(gms_read(rs, a, 0, &sum, 8));
    CHECK_OK(gms_read(rs, a, 8, &max, 8));
    CHECK(sum == (uint64_t)THREADS * ADDS);
    CHECK(max == (THREADS - 1) * 1000 + 999);
    CHECK(claimed == SLOTS);
    uint32_t slot[SLOTS];
    CHECK_OK(gms_read(py, b, 64, slot, sizeof slot));
    int per[THREADS] = {0};
    for (int s = 0; s < SLOTS; s++) {
        CHECK(slot[s] >= 1 && slot[s] <= THREADS);
        if (slot[s] >= 1 && slot[s] <= THREADS)
            per[slot[s] - 1]++;
    }
    for (int i = 0; i < THREADS; i++)
        CHECK(per[i] == w[i].claimed);
    CHECK_OK(gms_release(rs, a));
    CHECK_OK(gms_free(py, b));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(rs);
    gms_context_close(py);
    gms_runtime_close(rt);
    return test_done();
}
