/*
 * threads_reused_address.c: the miss gms-soak saw about once an hour
 * ("write_after_free ... path 2: no violation reported") came from the
 * soak's own matching of reports to faults, by address alone. Two threads
 * each write into a freed block of a pool of their own tenant, then close
 * the pool's last context. Thread A's close gives its chunk back before it
 * delivers its report (reports are delivered once no lock is held); here A
 * waits in its log callback (the close's leak line, written between the
 * two) while thread B runs its whole trial in a new pool, whose chunk the
 * kernel maps at the address A's had. B's report then names the very
 * address of A's fault, still armed: only its tenant (and buffer) say
 * whose it is. gms reports both writes, each with its own tenant, buffer
 * and address, and tools/soak/fault.h gives each report to its own fault.
 * The interleaving is forced with a barrier: deterministic.
 */
#include "util.h"

#include "soak/fault.h"

static gms_runtime *rt;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
/* 1: B is ready; 2: A's close is past its chunk's release; 3: B's trial is done */
static int stage;
static fault faults[2];
static unsigned attributed[2], unmatched;

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    pthread_mutex_lock(&lock);
    int i = fault_find(faults, 2, v);
    if (i >= 0)
        attributed[i]++;
    else
        unmatched++;
    pthread_mutex_unlock(&lock);
}

static void wait_stage(int s)
{
    pthread_mutex_lock(&lock);
    while (stage < s)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static void set_stage(int s)
{
    pthread_mutex_lock(&lock);
    stage = s;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

/* The leak line of A's close: no lock held, its report not delivered yet. */
static void on_log(void *user, gms_log_level level, const char *msg)
{
    rec_log(user, level, msg);
    if (strstr(msg, "leak") && strstr(msg, "tenant 'a'")) {
        set_stage(2);
        wait_stage(3);
    }
}

/* A write into a freed block of a new pool of tenant t, its fault armed;
 * keep: a buffer left live, so that the close writes a leak line. The
 * pool's last context closes. Returns the written address. */
static uint64_t trial(int i, const char *t, bool keep)
{
    gms_context *c = ctx_of(rt, t, "w", GMS_LEVEL_INTERNAL);
    gms_buf b = alloc_or_die(c, 1);
    if (keep)
        alloc_or_die(c, 64);
    uint8_t *p = raw(c, b);
    CHECK_OK(gms_free(c, b));
    pthread_mutex_lock(&lock);
    faults[i] = (fault){true, t, b, (uint64_t)(uintptr_t)p, (uint64_t)(uintptr_t)p + 1,
                        1u << GMS_VIOLATION_WRITE_AFTER_FREE | 1u << GMS_VIOLATION_FREE_MEMORY, 0};
    pthread_mutex_unlock(&lock);
    p[0] ^= 0x5a; /* write after free */
    gms_context_close(c); /* drains the quarantine: the write is found */
    return (uint64_t)(uintptr_t)p;
}

static uint64_t addr_b;

static void *thread_b(void *arg)
{
    (void)arg;
    /* This thread's first allocations (its malloc arena) are mapped now,
     * not into the hole A's chunk leaves. */
    gms_context *c = ctx_of(rt, "warm", "w", GMS_LEVEL_INTERNAL);
    CHECK_OK(gms_free(c, alloc_or_die(c, 1)));
    gms_context_close(c);
    set_stage(1);
    wait_stage(2);
    addr_b = trial(1, "b", false);
    set_stage(3);
    return NULL;
}

int main(void)
{
    gms_runtime_options o = safety_opts();
    o.log = on_log;
    rt = safety_open(&o);
    CHECK_OK(gms_on_violation(rt, on_violation, NULL)); /* besides rec_violation */
    pthread_t tb;
    if (pthread_create(&tb, NULL, thread_b, NULL) != 0)
        return 2;
    wait_stage(1);
    uint64_t addr_a = trial(0, "a", true);
    pthread_join(tb, NULL);
    if (addr_a != addr_b) {
        printf("the blocks lie at %#" PRIx64 " and %#" PRIx64 "\n", addr_a, addr_b);
        gms_runtime_close(rt);
        return test_skip("the second pool's chunk was not mapped where the first's was");
    }
    /* Both writes reported, once each, naming its own tenant and buffer. */
    CHECK(rec_count() == 2);
    unsigned of_a = 0, of_b = 0;
    for (unsigned i = 0; i < rec_count() && i < REC_MAX; i++) {
        CHECK(rec.e[i].address == addr_a);
        CHECK(rec.e[i].kind == GMS_VIOLATION_WRITE_AFTER_FREE);
        of_a += strcmp(rec.e[i].tenant, "a") == 0 && rec.e[i].handle == faults[0].handle;
        of_b += strcmp(rec.e[i].tenant, "b") == 0 && rec.e[i].handle == faults[1].handle;
    }
    CHECK(of_a == 1 && of_b == 1);
    /* B's report came first, while A's fault (same address) was armed. */
    CHECK(strcmp(rec.e[0].tenant, "b") == 0);
    /* Each report is its own fault's. */
    CHECK(attributed[0] == 1);
    CHECK(attributed[1] == 1);
    CHECK(unmatched == 0);
    CHECK_OK(gms_verify(rt, NULL));
    gms_runtime_close(rt);
    return test_done();
}
