/*
 * threads_callbacks.c: violation and log callbacks that call gms, on
 * several threads at once. Each thread overflows buffers of its own tenant
 * and frees them; the callbacks allocate, free and read statistics through
 * the calling thread's context. Every corruption reaches the callbacks and
 * the log exactly once, and nothing deadlocks. Run under TSan (label
 * threads) and ASan.
 */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>

#define THREADS 4
#define EACH 200

static gms_runtime *rt;
static _Thread_local gms_context *mine;
static atomic_uint violations, corruption_logs;

static void call_back_in(void)
{
    gms_context *c = mine;
    if (!c)
        return;
    gms_buf b = GMS_BUF_NULL;
    if (gms_alloc(c, 512, 0, &b) == GMS_OK)
        gms_free(c, b);
    gms_stats st;
    gms_stats_get(rt, &st);
}

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    (void)v;
    atomic_fetch_add(&violations, 1);
    call_back_in();
}

static void on_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    if (strstr(msg, "corruption"))
        atomic_fetch_add(&corruption_logs, 1);
    call_back_in();
}

static void *worker(void *arg)
{
    char tenant[16];
    snprintf(tenant, sizeof tenant, "t%d", (int)(intptr_t)arg);
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "u";
    if (gms_context_open(&mine, rt, &d) != GMS_OK)
        return (void *)1;
    intptr_t wrong = 0;
    for (int i = 0; i < EACH; i++) {
        gms_buf b;
        void *p;
        if (gms_alloc(mine, 100, 0, &b) != GMS_OK || gms_buf_ptr(mine, b, &p) != GMS_OK) {
            wrong++;
            continue;
        }
        ((uint8_t *)p)[100 + i % 20] ^= 0x41;
        if (gms_free(mine, b) != GMS_E_CORRUPTION)
            wrong++;
    }
    gms_context_close(mine);
    mine = NULL;
    return (void *)wrong;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.log = on_log;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();
    CHECK_OK(gms_on_violation(rt, on_violation, NULL));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) {
        void *wrong;
        pthread_join(t[i], &wrong);
        CHECK(wrong == NULL);
    }
    CHECK(atomic_load(&violations) == THREADS * EACH);
    CHECK(atomic_load(&corruption_logs) == THREADS * EACH);
    CHECK_OK(gms_verify(rt, NULL));
    gms_runtime_close(rt);
    return test_done();
}
