/*
 * kills.c: clients killed with SIGKILL at random points leak nothing.
 * Up to 1,000 client processes (fewer if 30 s run out first: under the
 * sanitizers) each open a runtime through gmsd and allocate and free
 * buffers of random sizes, leasing and releasing as they go, until the
 * parent kills them after a random 0-4 ms: during a lease, a release, a
 * connect or nothing. Several are alive at once. At the end the tenant
 * holds no lease and no byte, and gmsd no descriptor more than at the
 * start. The count of kills and leaked bytes is printed.
 */
#include "util.h"

#define MAX_KILLS 1000
#define AT_ONCE 4

static broker b;

static void client(unsigned seed)
{
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime *rt;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "self"; /* gmsd's name for this uid */
    d.user = "u";
    gms_context *ctx;
    if (gms_runtime_open(&rt, &o) != GMS_OK || gms_context_open(&ctx, rt, &d) != GMS_OK)
        _exit(0); /* killed gmsd-side state is what matters, not this */
    gms_buf held[4] = {0};
    for (unsigned i = 0;; i++) {
        unsigned k = (seed ^ i * 2654435761u) % 4;
        if (held[k]) {
            gms_free(ctx, held[k]);
            held[k] = 0;
            if (i % 8 == 0)
                gms_trim(rt);
        } else if (gms_alloc(ctx, (size_t)(1 + (seed + i) % 3) << 20, 0, &held[k]) != GMS_OK) {
            held[k] = 0;
        }
    }
}

int main(void)
{
    broker_start_one(&b, 256ull << 20, 128, "");
    int baseline = fd_baseline(b.pid);
    srand(7);
    pid_t alive[AT_ONCE] = {0};
    unsigned kills = 0;
    double t0 = now_s();
    while (kills < MAX_KILLS && now_s() - t0 < 30) {
        unsigned slot = kills % AT_ONCE;
        if (alive[slot]) {
            kill(alive[slot], SIGKILL);
            waitpid(alive[slot], NULL, 0);
            kills++;
        }
        unsigned seed = (unsigned)rand();
        if ((alive[slot] = fork()) == 0)
            client(seed);
        usleep((useconds_t)(rand() % 4000));
    }
    for (unsigned i = 0; i < AT_ONCE; i++)
        if (alive[i]) {
            kill(alive[i], SIGKILL);
            waitpid(alive[i], NULL, 0);
            kills++;
        }
    uint64_t bytes = 1, leases = 1;
    double t1 = now_s();
    while (now_s() - t1 < 2 && raw_usage(b.sock, &bytes, &leases) == 0 && leases)
        usleep(1000);
    printf("%u clients killed with SIGKILL at random points: %llu bytes in %llu leases left "
           "(want 0)\n", kills, (unsigned long long)bytes, (unsigned long long)leases);
    CHECK(kills >= 100);
    CHECK(bytes == 0 && leases == 0);
    CHECK(fd_count_settles(b.pid, baseline));
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
