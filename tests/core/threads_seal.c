/*
 * threads_seal.c: seal, unseal and digest from several threads at once,
 * each on buffers of its own in contexts of one tenant (one pool), with
 * the key provider called concurrently: every round trip gives its bytes
 * back and every digest agrees (TSan runs it).
 */
#include "test.h"
#include "gms/seal.h"

#include <pthread.h>
#include <string.h>

enum { THREADS = 4, ROUNDS = 40, SIZE = 100000 };

static int provider(void *user, const char *tenant, uint8_t key[32])
{
    (void)user;
    (void)tenant;
    memset(key, 0x42, 32);
    return 0;
}

static gms_runtime *rt;
static int failures;
static uint8_t first_digest[32];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
    (void)arg;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "acme";
    d.user = "t";
    gms_context *c = NULL;
    int bad = gms_context_open(&c, rt, &d) != GMS_OK;
    static uint8_t zero[SIZE];
    uint8_t *data = malloc(SIZE), *back = malloc(SIZE);
    for (int i = 0; i < SIZE; i++)
        data[i] = (uint8_t)(i * 7);
    for (int r = 0; r < ROUNDS && !bad; r++) {
        gms_buf b;
        uint8_t dg[32];
        bad |= gms_alloc(c, SIZE, 0, &b) != GMS_OK;
        if (bad)
            break;
        bad |= gms_write(c, b, 0, data, SIZE) != GMS_OK;
        bad |= gms_seal(c, b) != GMS_OK;
        bad |= gms_read(c, b, 0, back, 1) != GMS_E_ACCESS_DENIED;
        bad |= gms_unseal(c, b) != GMS_OK;
        bad |= gms_read(c, b, 0, back, SIZE) != GMS_OK || memcmp(back, data, SIZE) != 0;
        bad |= gms_digest(c, b, 0, SIZE, dg) != GMS_OK;
        pthread_mutex_lock(&lock);
        if (memcmp(first_digest, zero, 32) == 0)
            memcpy(first_digest, dg, 32);
        bad |= memcmp(first_digest, dg, 32) != 0;
        pthread_mutex_unlock(&lock);
        bad |= gms_seal(c, b) != GMS_OK; /* freed sealed: crypto-erase */
        bad |= gms_free(c, b) != GMS_OK;
    }
    free(data);
    free(back);
    gms_context_close(c);
    pthread_mutex_lock(&lock);
    failures += bad;
    pthread_mutex_unlock(&lock);
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
    CHECK_OK(gms_on_key_request(rt, provider, NULL));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(failures == 0);
    CHECK_OK(gms_verify(rt, NULL));
    gms_runtime_close(rt);
    return test_done();
}
