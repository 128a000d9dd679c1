/*
 * util.h: helpers the safety tests share: a private host runtime with a
 * quiet log, a violation recorder (callbacks may come from the background
 * verifier's thread, so it takes a lock), and small buffer helpers. Public
 * API only: the tests see what a language binding sees.
 */
#ifndef GMS_TEST_SAFETY_UTIL_H
#define GMS_TEST_SAFETY_UTIL_H

#include "test.h"

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#define REC_MAX 64

typedef struct rec_entry {
    gms_violation_kind kind;
    gms_buf handle;
    uint64_t address;
    int64_t offset;
    uint64_t size;
    char tenant[GMS_NAME_MAX + 1];
    char message[512];
} rec_entry;

/* Everything the callbacks and the log saw. */
static struct {
    pthread_mutex_t lock;
    unsigned n; /* callbacks, including those past REC_MAX */
    rec_entry e[REC_MAX];
    unsigned logs;
    char last_log[512];
} rec = {PTHREAD_MUTEX_INITIALIZER, 0, {{0}}, 0, ""};

static inline void rec_violation(void *user, const gms_violation *v)
{
    (void)user;
    pthread_mutex_lock(&rec.lock);
    if (rec.n < REC_MAX) {
        rec_entry *e = &rec.e[rec.n];
        e->kind = v->kind;
        e->handle = v->handle;
        e->address = v->address;
        e->offset = v->offset;
        e->size = v->size;
        snprintf(e->tenant, sizeof e->tenant, "%s", v->tenant ? v->tenant : "");
        snprintf(e->message, sizeof e->message, "%s", v->message ? v->message : "");
    }
    rec.n++;
    pthread_mutex_unlock(&rec.lock);
}

static inline void rec_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    pthread_mutex_lock(&rec.lock);
    rec.logs++;
    snprintf(rec.last_log, sizeof rec.last_log, "%s", msg);
    pthread_mutex_unlock(&rec.lock);
}

static inline unsigned rec_count(void)
{
    pthread_mutex_lock(&rec.lock);
    unsigned n = rec.n;
    pthread_mutex_unlock(&rec.lock);
    return n;
}

static inline void rec_reset(void)
{
    pthread_mutex_lock(&rec.lock);
    rec.n = 0;
    pthread_mutex_unlock(&rec.lock);
}

/* Options for a private host runtime that reports to rec. */
static inline gms_runtime_options safety_opts(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.log = rec_log;
    return o;
}

static inline gms_runtime *safety_open(const gms_runtime_options *o)
{
    gms_runtime *rt = NULL;
    int rc = gms_runtime_open(&rt, o);
    if (rc != GMS_OK) {
        fprintf(stderr, "gms_runtime_open: %s\n", gms_error_last());
        exit(2);
    }
    if (gms_on_violation(rt, rec_violation, NULL) != GMS_OK) {
        fprintf(stderr, "gms_on_violation: %s\n", gms_error_last());
        exit(2);
    }
    return rt;
}

static inline gms_context *ctx_of(gms_runtime *rt, const char *tenant, const char *user, gms_level level)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = user;
    d.level = level;
    gms_context *c = NULL;
    if (gms_context_open(&c, rt, &d) != GMS_OK) {
        fprintf(stderr, "gms_context_open: %s\n", gms_error_last());
        exit(2);
    }
    return c;
}

static inline uint8_t *raw(gms_context *c, gms_buf b)
{
    void *p = NULL;
    if (gms_buf_ptr(c, b, &p) != GMS_OK) {
        fprintf(stderr, "gms_buf_ptr: %s\n", gms_error_last());
        exit(2);
    }
    return p;
}

static inline gms_buf alloc_or_die(gms_context *c, size_t size)
{
    gms_buf b = GMS_BUF_NULL;
    if (gms_alloc(c, size, 0, &b) != GMS_OK) {
        fprintf(stderr, "gms_alloc(%zu): %s\n", size, gms_error_last());
        exit(2);
    }
    return b;
}

static inline void sleep_ms(unsigned ms)
{
    struct timespec t = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

#endif
