/*
 * audit.c: the caller's side of the audit trail: opening and closing it,
 * gms__audit_emit (the hot path) and gms__audit_flush.
 *
 * Cost of an emit (the alloc/free path calls it once each): a thread-local
 * read, one compare-and-swap on the shard's tail, a ~200-byte copy into the
 * slot and one release store; no lock, no system call (the coarse clock is
 * read from the vDSO), no formatting. Only a full ring in strict mode makes
 * the caller wait: it spins, yields, then sleeps in short steps after
 * waking the writer, and never holds anything the writer needs.
 */
#include "audit/writer.h"
#include "base/base.h"
#include "gms/testing.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

void gms_testing_audit_clock_skew(int64_t ns)
{
    atomic_store_explicit(&gms__audit_clock_skew_ns, ns, memory_order_relaxed);
}

int gms_testing_audit_ring_slots(uint32_t slots)
{
    if (slots == 1 || (slots & (slots - 1)))
        return gms__fail(GMS_E_INVALID_ARG,
                         "gms_testing_audit_ring_slots: %u is not a power of two from 2 (0: the default)",
                         slots);
    gms__audit_ring_slots = slots;
    return GMS_OK;
}

uint64_t gms__audit_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
           (uint64_t)atomic_load_explicit(&gms__audit_clock_skew_ns, memory_order_relaxed);
}

/* Each thread keeps one shard for life, so its records stay in order. */
static _Thread_local uint32_t tls_shard = UINT32_MAX;
static uint32_t _Atomic next_shard;

static void audit_free(gms_audit *a)
{
    for (int i = 0; i < GMS_AUDIT_SHARDS; i++)
        free(a->shards[i].slots);
    free(a->out);
    free(a->dir);
    free(a->runs);
    gms__hmac_wipe(&a->hmac);
    OPENSSL_cleanse(a->seg_key, sizeof a->seg_key);
    free(a);
}

int gms__audit_open(gms_audit **out, const gms_runtime_options *opts)
{
    *out = NULL;
    const char *dir = opts->audit_dir;
    if (!dir || !*dir)
        dir = getenv("GMS_AUDIT_DIR");
    if (!dir || !*dir)
        return GMS_OK;

    if (opts->audit_segment_bytes > GMS_AUDIT_SEG_BYTES_MAX) /* readers refuse larger */
        return gms__fail(GMS_E_INVALID_ARG, "audit_segment_bytes: %llu, at most %llu (1 GiB)",
                         (unsigned long long)opts->audit_segment_bytes,
                         (unsigned long long)GMS_AUDIT_SEG_BYTES_MAX);

    uint8_t key[GMS_AUDIT_KEY_MAX];
    size_t klen = 0;
    if (opts->audit_key) {
        if (opts->audit_key_len < GMS_AUDIT_KEY_MIN || opts->audit_key_len > GMS_AUDIT_KEY_MAX)
            return gms__fail(GMS_E_INVALID_ARG, "audit_key: %zu bytes, expected %d to %d",
                             opts->audit_key_len, GMS_AUDIT_KEY_MIN, GMS_AUDIT_KEY_MAX);
        memcpy(key, opts->audit_key, opts->audit_key_len);
        klen = opts->audit_key_len;
    } else {
        const char *kf = opts->audit_key_file;
        if (!kf || !*kf)
            kf = getenv("GMS_AUDIT_KEY_FILE");
        if (!kf || !*kf)
            return gms__fail(GMS_E_INVALID_ARG,
                             "audit trail %s: no key (set audit_key, audit_key_file or GMS_AUDIT_KEY_FILE)",
                             dir);
        char err[512];
        if (gms__audit_key_load(kf, key, &klen, err, sizeof err) != 0)
            return gms__fail(GMS_E_INVALID_ARG, "%s", err);
    }

    int rc = GMS_OK;
    gms_audit *a = calloc(1, sizeof *a);
    if (!a) {
        OPENSSL_cleanse(key, sizeof key);
        return gms__fail(GMS_E_NO_MEMORY, "out of host memory for the audit trail");
    }
    a->lock_fd = a->seg_fd = -1;
    a->lossy = opts->audit_lossy != 0;
    a->seg_max = opts->audit_segment_bytes ? opts->audit_segment_bytes : (64ull << 20);
    if (a->seg_max < 16 * GMS_AUDIT_BLOCK)
        a->seg_max = 16 * GMS_AUDIT_BLOCK; /* room for a header, records and a seal */
    a->retention_days = opts->audit_retention_days ? opts->audit_retention_days : 90;
    a->log = opts->log;
    a->log_user = opts->log_user;
    uint64_t slots = gms__audit_ring_slots ? gms__audit_ring_slots : GMS_AUDIT_SLOTS_DEFAULT;
    if (slots < 2 || (slots & (slots - 1)))
        slots = GMS_AUDIT_SLOTS_DEFAULT;
    a->mask = slots - 1;
    a->outcap = 4096; /* 1 MiB per write() */
    a->dir = strdup(dir);
    a->out = malloc(a->outcap * sizeof *a->out);
    if (!a->dir || !a->out) {
        rc = gms__fail(GMS_E_NO_MEMORY, "out of host memory for the audit trail");
        goto fail;
    }
    for (int i = 0; i < GMS_AUDIT_SHARDS; i++) {
        gms_audit_shard *s = &a->shards[i];
        if (posix_memalign((void **)&s->slots, 64, slots * sizeof *s->slots) != 0) {
            s->slots = NULL;
            rc = gms__fail(GMS_E_NO_MEMORY, "out of host memory for the audit ring");
            goto fail;
        }
        memset(s->slots, 0, slots * sizeof *s->slots);
        for (uint64_t j = 0; j < slots; j++)
            atomic_init(&s->slots[j].turn, j);
        atomic_init(&s->tail, 0);
        atomic_init(&s->dropped, 0);
    }
    rc = gms__audit_writer_prepare(a, key, klen);
    OPENSSL_cleanse(key, sizeof key); /* the writer keeps the segment key only */
    if (rc != GMS_OK)
        goto fail;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->wake, NULL);
    pthread_cond_init(&a->done, NULL);
    if (pthread_create(&a->thread, NULL, gms__audit_writer_main, a) != 0) {
        pthread_cond_destroy(&a->done);
        pthread_cond_destroy(&a->wake);
        pthread_mutex_destroy(&a->mu);
        gms__audit_writer_release(a);
        rc = gms__fail(GMS_E_NO_MEMORY, "cannot start the audit writer thread");
        goto fail;
    }
    a->running = true;
    *out = a;
    return GMS_OK;
fail:
    OPENSSL_cleanse(key, sizeof key);
    audit_free(a);
    return rc;
}

void gms__audit_close(gms_audit *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_cond_destroy(&a->done);
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->mu);
    audit_free(a);
}

/* Strict mode, ring full: wait for the writer without holding anything. */
static void wait_for_space(gms_audit *a, unsigned *spins)
{
    unsigned s = ++*spins;
    if (s < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        return;
    }
    if (s < 4096) { /* the writer drains a full shard in well under a ms */
        sched_yield();
        return;
    }
    atomic_fetch_add_explicit(&a->waiting, 1, memory_order_relaxed);
    pthread_mutex_lock(&a->mu);
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->mu);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
}

/* Copies at most max bytes of s and a NUL into the text, if room is left. */
static inline char *put_text(char *p, char *end, const char *s, size_t max)
{
    if (p >= end)
        return p;
    size_t n = s ? strnlen(s, max) : 0;
    if (n > (size_t)(end - p) - 1)
        n = (size_t)(end - p) - 1;
    memcpy(p, s ? s : "", n);
    p[n] = 0;
    return p + n + 1;
}

void gms__audit_emit(gms_audit *a, const gms_audit_event *e)
{
    if (!a || !e)
        return;
    uint32_t si = tls_shard;
    if (si == UINT32_MAX)
        si = tls_shard = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed);
    gms_audit_shard *sh = &a->shards[si % GMS_AUDIT_SHARDS];
    uint64_t pos = atomic_load_explicit(&sh->tail, memory_order_relaxed);
    gms_audit_slot *sl;
    unsigned spins = 0;
    for (;;) {
        sl = &sh->slots[pos & a->mask];
        uint64_t turn = atomic_load_explicit(&sl->turn, memory_order_acquire);
        int64_t dif = (int64_t)(turn - pos);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&sh->tail, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) { /* the slot still holds last lap's record: full */
            if (a->lossy) {
                atomic_fetch_add_explicit(&sh->dropped, 1, memory_order_relaxed);
                return;
            }
            wait_for_space(a, &spins);
            pos = atomic_load_explicit(&sh->tail, memory_order_relaxed);
        } else {
            pos = atomic_load_explicit(&sh->tail, memory_order_relaxed);
        }
    }
    sl->time_ns = gms__audit_now();
    sl->handle = e->handle;
    sl->size = e->size;
    sl->context_id = e->context_id;
    sl->result = e->result;
    sl->op = (uint16_t)e->op;
    sl->level = (int8_t)e->level;
    sl->language = (int8_t)e->language;
    char *p = sl->text, *end = sl->text + GMS_AUDIT_TEXT;
    p = put_text(p, end, e->tenant, GMS_NAME_MAX);
    p = put_text(p, end, e->user, GMS_NAME_MAX);
    p = put_text(p, end, e->detail, GMS_AUDIT_TEXT);
    if (p < end) /* no bytes of an earlier record linger in the trail */
        memset(p, 0, (size_t)(end - p));
    atomic_store_explicit(&sl->turn, pos + 1, memory_order_release);
}

int gms__audit_flush(gms_audit *a)
{
    if (!a)
        return gms__fail(GMS_E_UNSUPPORTED, "gms_audit_flush: this runtime has no audit trail");
    pthread_mutex_lock(&a->mu);
    uint64_t my = ++a->flush_req;
    pthread_cond_signal(&a->wake);
    while (a->flush_done < my && a->running)
        pthread_cond_wait(&a->done, &a->mu);
    int failed = a->failed;
    char msg[256];
    memcpy(msg, a->failure, sizeof msg);
    pthread_mutex_unlock(&a->mu);
    if (failed)
        return gms__fail(GMS_E_BACKEND, "gms_audit_flush: %s", msg);
    return GMS_OK;
}
