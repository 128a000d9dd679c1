/*
 * threads_share.c: sharing under threads (run under TSan). Many threads of
 * several contexts, tenants and languages acquire, read and release one
 * share while its owner releases its own handle; the buffer dies exactly
 * when the last handle goes. Then a transfer races with a thread still
 * using the old handle: every use either works on the whole buffer or is
 * refused as a dead handle, never half.
 */
#include "share/util.h"

#include <pthread.h>
#include <stdatomic.h>

enum { THREADS = 8, ROUNDS = 3000, SIZE = 4096 };

static gms_runtime *rt;
static gms_share_id id;
static _Atomic unsigned failures;

static void *acquirer(void *arg)
{
    gms_context *c = arg;
    unsigned char buf[64];
    for (int i = 0; i < ROUNDS; i++) {
        gms_buf h;
        if (gms_acquire(c, id, GMS_ACCESS_READ, &h) != GMS_OK) {
            atomic_fetch_add(&failures, 1);
            continue;
        }
        if (gms_read(c, h, (uint64_t)(i % (SIZE - 64)), buf, sizeof buf) != GMS_OK || buf[0] != 0x21)
            atomic_fetch_add(&failures, 1);
        if (gms_release(c, h) != GMS_OK)
            atomic_fetch_add(&failures, 1);
        if (gms_release(c, h) != GMS_E_INVALID_HANDLE) /* a double release is caught */
            atomic_fetch_add(&failures, 1);
    }
    return NULL;
}

static void many_holders(void)
{
    static const char *tenants[2] = {"t-a", "t-b"};
    static const gms_language langs[4] = {GMS_LANG_PYTHON, GMS_LANG_JULIA, GMS_LANG_ZIG, GMS_LANG_NIM};
    gms_context *owner = open_ctx(rt, "t-a", "owner", GMS_LANG_C);
    gms_context *c[THREADS];
    for (int i = 0; i < THREADS; i++)
        c[i] = open_ctx(rt, tenants[i % 2], i < 4 ? "u1" : "u2", langs[i % 4]);
    gms_buf b, keep;
    CHECK_OK(gms_alloc(owner, SIZE, 0, &b));
    CHECK_OK(gms_fill(owner, b, 0, 0x21, SIZE));
    CHECK_OK(share_one(owner, b, "*", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id));
    /* One holder that outlives the threads keeps the buffer alive. */
    CHECK_OK(gms_acquire(c[0], id, GMS_ACCESS_READ, &keep));
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, acquirer, c[i]);
    CHECK_OK(gms_release(owner, b)); /* while they run */
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(atomic_load(&failures) == 0);
    gms_buf_info info;
    CHECK_OK(gms_buf_info(c[0], keep, &info));
    CHECK(info.holders == 1);
    CHECK_OK(gms_verify(rt, NULL));
    gms_stats st;
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.live_blocks == 1 && st.shares == 1);
    CHECK_OK(gms_release(c[0], keep));
    CHECK_OK(gms_stats(rt, &st));
    CHECK(st.live_blocks == 0 && st.shares == 0);
    gms_context_close(owner);
    for (int i = 0; i < THREADS; i++)
        gms_context_close(c[i]);
}

static struct {
    gms_context *from;
    _Atomic gms_buf old;
    _Atomic int stop;
    _Atomic unsigned ok, refused, wrong;
} race;

static void *old_user(void *arg)
{
    (void)arg;
    unsigned char buf[SIZE];
    while (!atomic_load(&race.stop)) {
        gms_buf h = atomic_load(&race.old);
        int rc = gms_read(race.from, h, 0, buf, SIZE);
        if (rc == GMS_OK)
            atomic_fetch_add(&race.ok, 1);
        else if (rc == GMS_E_INVALID_HANDLE)
            atomic_fetch_add(&race.refused, 1);
        else
            atomic_fetch_add(&race.wrong, 1);
        if (rc == GMS_OK && (buf[0] != buf[SIZE - 1]))
            atomic_fetch_add(&race.wrong, 1);
    }
    return NULL;
}

static void transfer_race(void)
{
    race.from = open_ctx(rt, "t-a", "from", GMS_LANG_RUST);
    gms_context *to = open_ctx(rt, "t-a", "to", GMS_LANG_ELIXIR);
    pthread_t th;
    gms_buf b;
    CHECK_OK(gms_alloc(race.from, SIZE, 0, &b));
    CHECK_OK(gms_fill(race.from, b, 0, 1, SIZE));
    atomic_store(&race.old, b);
    pthread_create(&th, NULL, old_user, NULL);
    unsigned moved = 0;
    int i = 0;
    /* At least 2000 round trips, and until the other thread has used the
     * old handle a few hundred times (it may start late). */
    for (i = 0; i < 2000 || atomic_load(&race.ok) + atomic_load(&race.refused) < 300; i++) {
        gms_buf t, back;
        if (gms_transfer(race.from, b, to, &t) != GMS_OK)
            continue;
        moved++;
        /* The new owner rewrites it whole; then it comes back. */
        gms_fill(to, t, 0, (i + 2) & 0xff, SIZE);
        if (gms_transfer(to, t, race.from, &back) == GMS_OK) {
            b = back;
            atomic_store(&race.old, b);
        }
    }
    atomic_store(&race.stop, 1);
    pthread_join(th, NULL);
    CHECK(moved >= 2000);
    CHECK(atomic_load(&race.wrong) == 0);
    CHECK_OK(gms_free(race.from, b));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(race.from);
    gms_context_close(to);
}

int main(void)
{
    rt = open_runtime();
    many_holders();
    transfer_race();
    gms_runtime_close(rt);
    return test_done();
}
