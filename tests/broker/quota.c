/*
 * quota.c: a tenant's quotas hold across processes. Eight client
 * processes of one tenant lease at once, each until refused, and together
 * get exactly what the quota allows, never a lease more: once bound by the
 * lease count, once by the bytes. gmsd runs with --test-lease-delay-us,
 * which widens the window between its quota check and the charge. The
 * sequential control: one process alone gets the same.
 */
#include "util.h"

#define MIB (1ull << 20)
#define NPROC 8

static broker b;

/* A child: waits for go, leases size-byte leases until refused, reports
 * its count, holds them until the parent closes hold. */
static void child(uint64_t size, int go, int result, int hold)
{
    char c;
    int s = raw_connect(b.sock), fd;
    if (s < 0 || read(go, &c, 1) != 1)
        _exit(1);
    uint32_t n = 0;
    for (;;) {
        gms_broker_msg m = {.type = GMS_BROKER_LEASE, .a = size};
        int t = raw_call(s, &m, &fd);
        if (t != GMS_BROKER_LEASED) {
            if (t != GMS_BROKER_ERROR || m.code != GMS_E_QUOTA)
                n = 0xffffffffu; /* anything but the quota is a failure */
            break;
        }
        close(fd);
        n++;
    }
    if (write(result, &n, sizeof n) != sizeof n)
        _exit(1);
    if (read(hold, &c, 1) < 0) {}
    _exit(0);
}

/* nproc processes at once; the leases they got together. */
static unsigned race(unsigned nproc, uint64_t size, uint64_t quota_bytes, uint64_t quota_leases)
{
    int go[2], result[2], hold[2];
    if (pipe(go) || pipe(result) || pipe(hold))
        exit(1);
    pid_t pids[NPROC];
    for (unsigned i = 0; i < nproc; i++)
        if ((pids[i] = fork()) == 0) {
            close(go[1]);
            close(result[0]);
            close(hold[1]);
            child(size, go[0], result[1], hold[0]);
        }
    close(go[0]);
    close(result[1]);
    close(hold[0]);
    usleep(50000); /* every child connected and waiting */
    char start[NPROC];
    memset(start, 'g', sizeof start);
    CHECK(write(go[1], start, nproc) == (ssize_t)nproc);
    unsigned total = 0;
    for (unsigned i = 0; i < nproc; i++) {
        uint32_t n = 0;
        CHECK(read(result[0], &n, sizeof n) == sizeof n && n != 0xffffffffu);
        total += n;
    }
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0);
    CHECK(leases == total && bytes == total * size);
    CHECK(bytes <= quota_bytes && leases <= quota_leases);
    close(hold[1]); /* the children exit; their leases go back */
    for (unsigned i = 0; i < nproc; i++)
        waitpid(pids[i], NULL, 0);
    close(go[1]);
    close(result[0]);
    double t0 = now_s();
    while (now_s() - t0 < 2 && raw_usage(b.sock, &bytes, &leases) == 0 && leases)
        usleep(1000);
    CHECK(leases == 0 && bytes == 0);
    return total;
}

int main(void)
{
    char policy[256];
    uint64_t qbytes = 40 * MIB, qleases = 30;
    snprintf(policy, sizeof policy,
             "{\"tenants\": [{\"name\": \"self\", \"uids\": [%u], \"quota_bytes\": %llu, "
             "\"quota_leases\": %llu}]}",
             (unsigned)getuid(), (unsigned long long)qbytes, (unsigned long long)qleases);
    broker_start_with(&b, policy, "--test-lease-delay-us", "200");
    /* Bound by the count: 30 leases of 1 MiB. */
    unsigned par = race(NPROC, MIB, qbytes, qleases);
    unsigned seq = race(1, MIB, qbytes, qleases);
    printf("1 MiB leases: %u processes at once got %u, one alone %u (quota: 30 leases)\n", NPROC,
           par, seq);
    CHECK(par == 30 && seq == 30);
    /* Bound by the bytes: 3 MiB leases, 13 of them fit 40 MiB. */
    par = race(NPROC, 3 * MIB, qbytes, qleases);
    seq = race(1, 3 * MIB, qbytes, qleases);
    printf("3 MiB leases: %u processes at once got %u, one alone %u (quota: 40 MiB)\n", NPROC,
           par, seq);
    CHECK(par == 13 && seq == 13);
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
