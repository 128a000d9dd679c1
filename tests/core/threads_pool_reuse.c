/*
 * threads_pool_reuse.c: pools fall idle and are reused for new (tenant,
 * level, language) triples, and handle slots move between pools, while
 * other threads use stale handles of those pools, allocate in pools of
 * their own, verify and read statistics. Stale handles are always
 * refused (never GMS_OK, never a crash); live buffers keep their bytes;
 * gms_verify holds throughout; once all is closed nothing is held. Run
 * under TSan (label threads) and ASan.
 */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>

#define CHURNERS 2
#define ROUNDS 400
#define STALE 64

static gms_runtime *rt;
static gms_buf _Atomic stale[STALE]; /* handles of freed buffers */
static atomic_int done;
static atomic_int bad;

static gms_context *open_ctx(const char *tenant, int level, int language)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "u";
    d.level = (gms_level)level;
    d.language = (gms_language)language;
    gms_context *c = NULL;
    if (gms_context_open(&c, rt, &d) != GMS_OK) {
        fprintf(stderr, "context_open: %s\n", gms_error_last());
        atomic_fetch_add(&bad, 1);
    }
    return c;
}

/* Opens a context of a new triple, allocates and frees a few buffers, and
 * closes it: its pool falls idle, to be reused by the next triple. */
static void *churn(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        char name[32];
        snprintf(name, sizeof name, "churn-%d-%d", id, i);
        gms_context *c = open_ctx(name, i % 4, (i + id) % 8);
        if (!c)
            continue;
        gms_buf b[8];
        for (int k = 0; k < 8; k++)
            if (gms_alloc(c, 64u + 100u * (unsigned)k, 0, &b[k]) != GMS_OK) {
                fprintf(stderr, "churn alloc: %s\n", gms_error_last());
                atomic_fetch_add(&bad, 1);
                b[k] = GMS_BUF_NULL;
            }
        for (int k = 0; k < 8; k++)
            if (b[k] && gms_free(c, b[k]) == GMS_OK)
                atomic_store(&stale[(i * 8 + k + id * 7) % STALE], b[k]);
        gms_context_close(c);
    }
    return NULL;
}

/* Uses stale handles through a context of its own: always refused. */
static void *probe(void *arg)
{
    (void)arg;
    gms_context *c = open_ctx("prober", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    if (!c)
        return NULL;
    unsigned i = 0;
    while (!atomic_load(&done)) {
        gms_buf h = atomic_load(&stale[i++ % STALE]);
        if (!h)
            continue;
        char byte;
        void *p;
        gms_buf_info info;
        int rc[4] = {gms_read(c, h, 0, &byte, 1), gms_buf_ptr(c, h, &p),
                     gms_buf_info_get(c, h, &info), gms_free(c, h)};
        for (int k = 0; k < 4; k++)
            if (rc[k] != GMS_E_INVALID_HANDLE && rc[k] != GMS_E_ACCESS_DENIED) {
                fprintf(stderr, "stale handle 0x%016llx: call %d returned %d (%s)\n",
                        (unsigned long long)h, k, rc[k], gms_error_last());
                atomic_fetch_add(&bad, 1);
            }
    }
    gms_context_close(c);
    return NULL;
}

/* A long-lived tenant whose buffers keep their bytes meanwhile. */
static void *steady(void *arg)
{
    (void)arg;
    gms_context *c = open_ctx("steady", GMS_LEVEL_SECRET, GMS_LANG_RUST);
    if (!c)
        return NULL;
    unsigned n = 0;
    while (!atomic_load(&done)) {
        gms_buf b;
        if (gms_alloc(c, 4096, 0, &b) != GMS_OK) {
            atomic_fetch_add(&bad, 1);
            break;
        }
        unsigned v = n++, back = 0;
        if (gms_write(c, b, 100, &v, sizeof v) != GMS_OK ||
            gms_read(c, b, 100, &back, sizeof back) != GMS_OK || back != v ||
            gms_free(c, b) != GMS_OK)
            atomic_fetch_add(&bad, 1);
    }
    gms_context_close(c);
    return NULL;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 << 10;
    o.chunk_bytes = 1 << 20;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();
    pthread_t churner[CHURNERS], prober, steadier;
    for (int i = 0; i < CHURNERS; i++)
        pthread_create(&churner[i], NULL, churn, (void *)(intptr_t)i);
    pthread_create(&prober, NULL, probe, NULL);
    pthread_create(&steadier, NULL, steady, NULL);
    for (int i = 0; i < 20; i++) {
        gms_stats st;
        CHECK_OK(gms_stats_get(rt, &st));
        CHECK_OK(gms_verify(rt, NULL));
    }
    for (int i = 0; i < CHURNERS; i++)
        pthread_join(churner[i], NULL);
    atomic_store(&done, 1);
    pthread_join(prober, NULL);
    pthread_join(steadier, NULL);
    CHECK(atomic_load(&bad) == 0);
    CHECK_OK(gms_verify(rt, NULL));
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.pools == 0 && st.live_blocks == 0 && st.reserved_bytes == 0);
    CHECK(st.allocs == st.frees);
    gms_runtime_close(rt);
    return test_done();
}
