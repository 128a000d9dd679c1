/*
 * threads_dlpack_close.c: the deleters of exported tensors run on other
 * threads while the exporting context closes, then while the runtime
 * closes (the DLPack contract lets a deleter run before, during or after
 * either close). The context's close walks the handles it holds while a
 * deleter drops one of the same handles: each handle is released once, by
 * one of them, and nothing touches a slot the other already released. A
 * deleter that races the runtime's close either releases its handle before
 * the runtime goes or finds itself cut loose, never a freed runtime.
 */
#include "share/util.h"
#include "gms/dlpack.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

enum { ROUNDS = 400, TENSORS = 64, DELETERS = 2 };

static DLManagedTensorVersioned *tensors[TENSORS];
static _Atomic int next_tensor;
static _Atomic int go;

static void *deleter_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&go))
        sched_yield();
    for (int i; (i = atomic_fetch_add(&next_tensor, 1)) < TENSORS;)
        tensors[i]->deleter(tensors[i]);
    return NULL;
}

static void start_deleters(pthread_t th[DELETERS])
{
    atomic_store(&next_tensor, 0);
    atomic_store(&go, 0);
    for (int i = 0; i < DELETERS; i++)
        pthread_create(&th[i], NULL, deleter_thread, NULL);
    atomic_store(&go, 1);
}

static void join_deleters(pthread_t th[DELETERS])
{
    for (int i = 0; i < DELETERS; i++)
        pthread_join(th[i], NULL);
}

static void context_close_races_deleters(void)
{
    gms_runtime *rt = open_runtime();
    for (int round = 0; round < ROUNDS; round++) {
        gms_context *c = open_ctx(rt, "t", "producer", GMS_LANG_RUST);
        gms_buf b;
        CHECK_OK(gms_alloc(c, 256, 0, &b));
        for (int i = 0; i < TENSORS; i++)
            CHECK_OK(gms_dlpack_export(c, b, NULL, &tensors[i]));
        pthread_t th[DELETERS];
        start_deleters(th);
        gms_context_close(c); /* while the deleters drop the same handles */
        join_deleters(th);
        gms_stats st;
        CHECK_OK(gms_stats(rt, &st));
        CHECK(st.live_blocks == 0 && st.contexts == 0);
        CHECK_OK(gms_verify(rt, NULL));
        if (test_failed)
            break;
    }
    gms_runtime_close(rt);
}

static void runtime_close_races_deleters(void)
{
    for (int round = 0; round < ROUNDS / 8 && !test_failed; round++) {
        gms_runtime *rt = open_runtime();
        gms_context *c = open_ctx(rt, "t", "producer", GMS_LANG_RUST);
        gms_buf b;
        CHECK_OK(gms_alloc(c, 256, 0, &b));
        for (int i = 0; i < TENSORS; i++)
            CHECK_OK(gms_dlpack_export(c, b, NULL, &tensors[i]));
        pthread_t th[DELETERS];
        start_deleters(th);
        gms_runtime_close(rt); /* closes c too, while the deleters run */
        join_deleters(th);
    }
}

int main(void)
{
    context_close_races_deleters();
    runtime_close_races_deleters();
    return test_done();
}
