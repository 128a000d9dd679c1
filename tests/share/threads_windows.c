/*
 * threads_windows.c: two threads standing in for a Python writer and a
 * Rust reader (and a Julia reader) of one shared buffer, each touching it
 * only through its raw pointer inside access windows opened in random
 * order: every read sees one whole round (no torn reads), every round
 * counts up, and a writer never overlaps a reader. Plain loads and stores:
 * under TSan a window that failed to order them is a reported race.
 */
#include "share/util.h"
#include "gms/access.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>

#define WORDS 512
#define ROUNDS 3000

static gms_runtime *rt;
static gms_share_id id;
static atomic_int writers_in, readers_in, overlaps, torn, done, readers_started;

typedef struct {
    gms_context *ctx;
    gms_buf buf;
    unsigned seed;
    int rounds_seen;
} holder;

static void *writer(void *arg)
{
    holder *h = arg;
    uint64_t *p = NULL;
    gms_buf_ptr(h->ctx, h->buf, (void **)&p);
    while (atomic_load(&readers_started) < 2) /* on a busy machine they start late */
        sched_yield();
    for (uint64_t round = 1; round <= ROUNDS; round++) {
        uint32_t flags = rand_r(&h->seed) % 4 == 0 ? GMS_ACCESS_NOWAIT : 0;
        int rc;
        while ((rc = gms_access_begin(h->ctx, h->buf, GMS_ACCESS_READ_WRITE, flags, NULL)) == GMS_E_BUSY)
            flags = 0;
        if (rc != GMS_OK) {
            atomic_fetch_add(&torn, 1000000);
            return NULL;
        }
        atomic_fetch_add(&writers_in, 1);
        if (atomic_load(&readers_in) || atomic_load(&writers_in) != 1)
            atomic_fetch_add(&overlaps, 1);
        for (int i = 0; i < WORDS; i++)
            p[i] = round;
        atomic_fetch_sub(&writers_in, 1);
        gms_access_end(h->ctx, h->buf, NULL);
        sched_yield(); /* let the readers in */
    }
    atomic_store(&done, 1);
    return NULL;
}

static void *reader(void *arg)
{
    holder *h = arg;
    const uint64_t *p = NULL;
    gms_buf_ptr(h->ctx, h->buf, (void **)&p);
    uint64_t last = 0;
    atomic_fetch_add(&readers_started, 1);
    /* Until the writer is done, and once more after: the last read sees
     * its last round however late this thread ran. */
    for (bool finished = false; !finished;) {
        finished = atomic_load(&done);
        uint32_t flags = rand_r(&h->seed) % 2 ? GMS_ACCESS_NOWAIT : 0;
        int rc = gms_access_begin(h->ctx, h->buf, GMS_ACCESS_READ, flags, NULL);
        if (rc == GMS_E_BUSY) {
            finished = false; /* not read yet */
            sched_yield();
            continue;
        }
        if (rc != GMS_OK) {
            atomic_fetch_add(&torn, 1000000);
            return NULL;
        }
        atomic_fetch_add(&readers_in, 1);
        if (atomic_load(&writers_in))
            atomic_fetch_add(&overlaps, 1);
        uint64_t first = p[0];
        for (int i = 1; i < WORDS; i++)
            if (p[i] != first) {
                atomic_fetch_add(&torn, 1);
                break;
            }
        if (first < last) /* rounds only grow */
            atomic_fetch_add(&torn, 1);
        h->rounds_seen += first != last;
        last = first;
        atomic_fetch_sub(&readers_in, 1);
        gms_access_end(h->ctx, h->buf, NULL);
        sched_yield();
    }
    return NULL;
}

static void *writer_once(void *arg)
{
    holder *h = arg;
    if (gms_access_begin(h->ctx, h->buf, GMS_ACCESS_READ_WRITE, 0, NULL) == GMS_OK) {
        h->rounds_seen = atomic_load(&readers_in) == 0; /* the readers had ended */
        gms_access_end(h->ctx, h->buf, NULL);
    }
    return NULL;
}

/* FIFO: while r1 reads, a writer arrives and waits on the host; a reader
 * that comes after it waits too (NOWAIT: BUSY) although only a reader is
 * open. */
static void fifo(holder *w, holder *r1, holder *r2)
{
    CHECK_OK(gms_access_begin(r1->ctx, r1->buf, GMS_ACCESS_READ, 0, NULL));
    atomic_store(&readers_in, 1);
    pthread_t t;
    w->rounds_seen = 0;
    pthread_create(&t, NULL, writer_once, w);
    int rc, tries = 0;
    while ((rc = gms_access_begin(r2->ctx, r2->buf, GMS_ACCESS_READ, GMS_ACCESS_NOWAIT, NULL)) ==
               GMS_OK && tries++ < 100000) {
        gms_access_end(r2->ctx, r2->buf, NULL);
        sched_yield();
    }
    CHECK_RC(rc, GMS_E_BUSY); /* behind the waiting writer */
    /* r1's checked reads are its window's work: the waiting writer does not
     * stop them; r2, with no window, comes after the writer. */
    uint8_t byte;
    CHECK_OK(gms_read(r1->ctx, r1->buf, 0, &byte, 1));
    CHECK_RC(gms_read(r2->ctx, r2->buf, 0, &byte, 1), GMS_E_BUSY);
    atomic_store(&readers_in, 0);
    CHECK_OK(gms_access_end(r1->ctx, r1->buf, NULL));
    pthread_join(t, NULL);
    CHECK(w->rounds_seen == 1);
    w->rounds_seen = 0;
}

int main(void)
{
    rt = open_runtime();
    holder w = {open_ctx(rt, "acme", "py", GMS_LANG_PYTHON), GMS_BUF_NULL, 1, 0};
    holder r1 = {open_ctx(rt, "acme", "rs", GMS_LANG_RUST), GMS_BUF_NULL, 2, 0};
    holder r2 = {open_ctx(rt, "acme", "jl", GMS_LANG_JULIA), GMS_BUF_NULL, 3, 0};
    CHECK_OK(gms_alloc(w.ctx, WORDS * 8, GMS_ALLOC_ZERO, &w.buf));
    CHECK_OK(share_one(w.ctx, w.buf, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ_WRITE, 0, &id));
    CHECK_OK(gms_acquire(r1.ctx, id, GMS_ACCESS_READ, &r1.buf));
    CHECK_OK(gms_acquire(r2.ctx, id, GMS_ACCESS_READ, &r2.buf));
    fifo(&w, &r1, &r2);
    pthread_t t[3];
    pthread_create(&t[0], NULL, writer, &w);
    pthread_create(&t[1], NULL, reader, &r1);
    pthread_create(&t[2], NULL, reader, &r2);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&torn) == 0);
    CHECK(atomic_load(&overlaps) == 0);
    printf("readers saw %d and %d of %d rounds change\n", r1.rounds_seen, r2.rounds_seen, ROUNDS);
    CHECK(r1.rounds_seen > 0 && r2.rounds_seen > 0);
    uint64_t v = 0;
    CHECK_OK(gms_read(r1.ctx, r1.buf, 8 * (WORDS - 1), &v, 8));
    CHECK(v == ROUNDS);
    CHECK_OK(gms_release(r1.ctx, r1.buf));
    CHECK_OK(gms_release(r2.ctx, r2.buf));
    CHECK_OK(gms_free(w.ctx, w.buf));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(r2.ctx);
    gms_context_close(r1.ctx);
    gms_context_close(w.ctx);
    gms_runtime_close(rt);
    return test_done();
}
