/*
 * transfers.c: taking over a share of another tenant through gmsd
 * (docs/broker.md, "Transfers"), with processes of different uids as
 * different tenants (root only: skipped with 77 otherwise). Tenant t1's
 * owner shares a buffer with t2 and lets go; t2's process, its only
 * holder, gms_transfers it: the charge moves from t1 to t2 (usage,
 * metrics, the trail), the bytes and the address stay, and nothing of it
 * stays in memory t1 may map. A transfer while another hold exists, of a
 * read-only handle, or past t2's quota is refused and changes nothing;
 * forged, stale and other connections' hold ids are refused; kill -9 of
 * the new holder returns the memory to t2's quota.
 */
#include "util.h"

#include <dirent.h>
#include <grp.h>
#include <sys/mman.h>

#define KIB 1024ull
#define MIB (1024 * KIB)
#define T1 40301
#define T2 40302

static broker b;
static char metrics_sock[100];
static int to_owner[2], from_owner[2];

/* ---- tenant t1's owner: 's' shares a new 64 KiB buffer with t2 (its id
 * follows the answer), 'f' lets go of it ---- */

static void owner(void)
{
    become_uid(T1);
    gms_runtime *rt;
    gms_context *ctx;
    broker_open_as(b.sock, "t1", &rt, &ctx, NULL);
    gms_buf buf = GMS_BUF_NULL;
    gms_share_grant rw[] = {{"t2", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ_WRITE}};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = rw;
    sd.ngrants = 1;
    for (;;) {
        char c = 'q', ok;
        gms_share_id id = 0;
        if (read(to_owner[0], &c, 1) != 1 || c == 'q')
            break;
        int before = test_failed;
        if (c == 's') {
            CHECK_OK(gms_alloc(ctx, 64 * KIB, GMS_ALLOC_PAGES, &buf));
            CHECK_OK(gms_write(ctx, buf, 0, "t1's payload", 13));
            CHECK_OK(gms_share(ctx, buf, &sd, &id));
        } else if (c == 'f') {
            CHECK_OK(gms_release(ctx, buf));
        }
        ok = test_failed == before ? 'k' : 'x';
        put_bytes(from_owner[1], &ok, 1);
        if (c == 's')
            put_bytes(from_owner[1], &id, sizeof id);
    }
    gms_runtime_close(rt);
    _exit(test_failed ? 1 : 0);
}

static int owner_do(char c, gms_share_id *id)
{
    char r = 0;
    put_bytes(to_owner[1], &c, 1);
    get_bytes(from_owner[0], &r, 1);
    if (c == 's')
        get_bytes(from_owner[0], id, sizeof *id);
    return r == 'k';
}

/* ---- helpers ---- */

/* Mappings of process pid (0: this one) whose line holds name. */
static int maps_of(pid_t pid, const char *name)
{
    char path[64], line[512];
    snprintf(path, sizeof path, pid ? "/proc/%d/maps" : "/proc/self/maps", (int)pid);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, name) != NULL;
    if (f)
        fclose(f);
    return n;
}

static long long metric_now(const char *name, const char *tenant)
{
    int st;
    char *page = metrics_get_at(metrics_sock, "GET /metrics HTTP/1.0\r\n\r\n", &st);
    return st == 200 ? tenant_metric(page, name, tenant) : -1;
}

/* A raw request on s; the reply's type, *code its error code. */
static int ask(int s, uint16_t type, uint64_t a, uint32_t mode, int *fd, gms_broker_msg *m)
{
    *m = (gms_broker_msg){.type = type, .a = a, .mode = mode, .language = -1};
    *fd = -1;
    return raw_call(s, m, fd);
}

/* ---- tenant t2's taker: steps on a pipe ---- */

static gms_share_id shared;

static void taker(int in, int out)
{
    become_uid(T2);
    gms_runtime *rt;
    gms_context *a, *c;
    broker_open_as(b.sock, "t2", &rt, &a, &c);
    char got[16] = "", step;
    gms_buf r, w, mine = GMS_BUF_NULL, h;
    /* A reader's hold keeps the share alive while the owner lets go. */
    CHECK_OK(gms_acquire(a, shared, GMS_ACCESS_READ, &r));
    put_bytes(out, &(char){test_failed ? 'x' : 'k'}, 1);
    get_bytes(in, &step, 1); /* the owner released */
    CHECK_OK(gms_acquire(a, shared, GMS_ACCESS_READ_WRITE, &w));
    void *before = NULL, *after = NULL;
    CHECK_OK(gms_buf_ptr(a, w, &before));
    /* Refused, changing nothing: a read-only handle; another hold left. */
    CHECK_RC(gms_transfer(a, r, c, &h), GMS_E_READ_ONLY);
    CHECK_RC(gms_transfer(a, w, c, &h), GMS_E_BUSY);
    CHECK(strstr(gms_error_last(), "gmsd") && strstr(gms_error_last(), "2 holds"));
    CHECK(h == GMS_BUF_NULL);
    CHECK_OK(gms_release(a, r));
    /* t2's quota full (a raw connection of t2 leases what is left): refused. */
    int s = raw_connect(b.sock), fd;
    gms_broker_msg m;
    uint64_t ids[16];
    int n = 0;
    while (n < 16 && ask(s, GMS_BROKER_LEASE, 2 * MIB, 0, &fd, &m) == GMS_BROKER_LEASED) {
        ids[n++] = m.a;
        close(fd);
    }
    CHECK(n >= 1 && m.type == GMS_BROKER_ERROR && m.code == GMS_E_QUOTA);
    CHECK_RC(gms_transfer(a, w, c, &h), GMS_E_QUOTA);
    CHECK(strstr(gms_error_last(), "taking over share") != NULL);
    CHECK(h == GMS_BUF_NULL);
    CHECK_OK(gms_read(a, w, 0, got, 13)); /* still a's, as it was */
    CHECK(strcmp(got, "t1's payload") == 0);
    CHECK_OK(gms_acquire(a, shared, GMS_ACCESS_READ, &r)); /* not revoked */
    CHECK_OK(gms_release(a, r));
    put_bytes(out, &(char){test_failed ? 'x' : 'k'}, 1);
    get_bytes(in, &step, 1); /* main saw nothing change */
    ask(s, GMS_BROKER_RELEASE, ids[--n], 0, &fd, &m);
    CHECK(m.type == GMS_BROKER_RELEASED);
    /* Now it goes: w dies, mine is c's, same bytes, same address. */
    CHECK_OK(gms_transfer(a, w, c, &mine));
    CHECK_RC(gms_read(a, w, 0, got, 1), GMS_E_INVALID_HANDLE);
    memset(got, 0, sizeof got);
    CHECK_OK(gms_read(c, mine, 0, got, 13));
    CHECK(strcmp(got, "t1's payload") == 0);
    CHECK_OK(gms_buf_ptr(c, mine, &after));
    CHECK(before && before == after);
    CHECK_OK(gms_write(c, mine, 0, "t2's now", 9));
    CHECK(after && memcmp(after, "t2's now", 9) == 0);
    /* Its memory is a memfd made for t2, and nothing of t1's is mapped. */
    CHECK(maps_of(0, "gmsd-share:t2") == 1);
    CHECK(maps_of(0, "gmsd-share:t1") == 0);
    /* Within the tenant a transfer moves the handle, gmsd not asked. */
    CHECK_OK(gms_transfer(c, mine, a, &h));
    mine = h;
    while (n > 0) {
        ask(s, GMS_BROKER_RELEASE, ids[--n], 0, &fd, &m);
        CHECK(m.type == GMS_BROKER_RELEASED);
    }
    close(s);
    put_bytes(out, &(char){test_failed ? 'x' : 'k'}, 1);
    for (;;) /* held until killed */
        pause();
}

/* ---- the protocol's refusals, on raw connections of t2 ---- */

static void raw_refusals(gms_share_id id, int in, int out)
{
    become_uid(T2);
    int s = raw_connect(b.sock), other = raw_connect(b.sock), fd;
    gms_broker_msg m;
    CHECK(ask(s, GMS_BROKER_ACQUIRE, id, GMS_ACCESS_READ, &fd, &m) == GMS_BROKER_ACQUIRED);
    CHECK(strcmp(m.tenant, "t1") == 0); /* ACQUIRED names the owner's tenant */
    uint64_t rd = m.a;
    if (fd >= 0)
        close(fd);
    put_bytes(out, "r", 1); /* the owner may let go now */
    char go;
    get_bytes(in, &go, 1);
    CHECK(ask(s, GMS_BROKER_ACQUIRE, id, GMS_ACCESS_READ_WRITE, &fd, &m) == GMS_BROKER_ACQUIRED);
    uint64_t wr = m.a;
    if (fd >= 0)
        close(fd);
    CHECK(ask(s, GMS_BROKER_TRANSFER, 0x1234567890abcdefull, 0, &fd, &m) == GMS_BROKER_ERROR &&
          m.code == GMS_E_INVALID_HANDLE); /* forged */
    CHECK(ask(other, GMS_BROKER_TRANSFER, wr, 0, &fd, &m) == GMS_BROKER_ERROR &&
          m.code == GMS_E_INVALID_HANDLE); /* another connection's */
    CHECK(ask(s, GMS_BROKER_TRANSFER, rd, 0, &fd, &m) == GMS_BROKER_ERROR &&
          m.code == GMS_E_READ_ONLY);
    CHECK(ask(s, GMS_BROKER_TRANSFER, wr, 0, &fd, &m) == GMS_BROKER_ERROR &&
          m.code == GMS_E_BUSY);
    CHECK(ask(s, GMS_BROKER_RELEASE_SHARE, rd, 0, &fd, &m) == GMS_BROKER_SHARE_RELEASED);
    CHECK(ask(s, GMS_BROKER_TRANSFER, wr, 0, &fd, &m) == GMS_BROKER_TRANSFERRED);
    uint64_t fresh = m.a;
    struct stat st;
    CHECK(fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == m.b && m.b >= 64 * KIB);
    if (fd >= 0)
        close(fd);
    /* The old hold took it over once: a second time is refused, and once
     * released it is stale. The new one is t2's already. */
    CHECK(ask(s, GMS_BROKER_TRANSFER, wr, 0, &fd, &m) == GMS_BROKER_ERROR &&
          m.code == GMS_E_INVALID_HANDLE);
    CHECK(ask(s, GMS_BROKER_RELEASE_SHARE, wr, 0, &fd, &m) == GMS_BROKER_SHARE_RELEASED);
    CHECK(ask(s, GMS_BROKER_TRANSFER, wr, 0, &fd, &m) == GMS_BROKER_ERROR &&
          m.code == GMS_E_INVALID_HANDLE);
    CHECK(ask(s, GMS_BROKER_TRANSFER, fresh, 0, &fd, &m) == GMS_BROKER_ERROR &&
          m.code == GMS_E_INVALID_ARG);
    close(other);
    close(s); /* the new share goes with the connection */
    _exit(test_failed ? 1 : 0);
}

static const char *cli_path(void)
{
    const char *p = getenv("GMS_CLI");
    return p && *p ? p : "./gms";
}

int main(void)
{
    if (geteuid() != 0) {
        printf("tenants by uid need root (setuid in the children): skipped\n");
        return TEST_SKIP;
    }
    char trail[] = "/tmp/gms-transfer-trail-XXXXXX", key[96], audit_dir[96], cmd[512];
    CHECK(mkdtemp(trail) != NULL);
    snprintf(key, sizeof key, "%s/key", trail);
    snprintf(audit_dir, sizeof audit_dir, "%s/audit", trail);
    snprintf(cmd, sizeof cmd, "%s audit keygen %s >/dev/null", cli_path(), key);
    CHECK(system(cmd) == 0);
    const char *extra[] = {"--metrics", "unix:%d/metrics.sock", "--audit-dir", audit_dir,
                           "--audit-key-file", key, NULL};
    broker_start_args(&b, "{\"lease_bytes\": 2097152, \"tenants\": ["
                          "{\"name\": \"t1\", \"uids\": [40301], \"quota_bytes\": 67108864, "
                          "\"quota_leases\": 16},"
                          "{\"name\": \"t2\", \"uids\": [40302], \"quota_bytes\": 8388608, "
                          "\"quota_leases\": 4}]}",
                      extra);
    snprintf(metrics_sock, sizeof metrics_sock, "%s/metrics.sock", b.dir);
    if (pipe(to_owner) || pipe(from_owner))
        return 1;
    pid_t own = fork();
    if (own == 0)
        owner();
    uint64_t t1_base, t1_base_leases, t2_bytes, t2_leases;
    CHECK(owner_do('s', &shared));
    broker_usage_as(b.sock, T1, &t1_base, &t1_base_leases);
    t1_base -= 64 * KIB; /* the share, then the owner's own leases */
    t1_base_leases -= 1;

    int tin[2], tout[2];
    if (pipe(tin) || pipe(tout))
        return 1;
    pid_t tk = fork();
    if (tk == 0)
        taker(tin[0], tout[1]);
    char ok = 0, go = 'g';
    CHECK(read(tout[0], &ok, 1) == 1 && ok == 'k');
    CHECK(owner_do('f', NULL)); /* t2's reader holds it alone now */
    CHECK(broker_use_becomes(b.sock, T1, t1_base + 64 * KIB, t1_base_leases + 1));
    put_bytes(tin[1], &go, 1);
    CHECK(read(tout[0], &ok, 1) == 1 && ok == 'k');
    /* Refused for t2's quota: the charge is t1's still, t2's unchanged. */
    broker_usage_as(b.sock, T2, &t2_bytes, &t2_leases);
    CHECK(broker_use_becomes(b.sock, T1, t1_base + 64 * KIB, t1_base_leases + 1));
    CHECK(metric_now("transfers_in_total", "t2") == 0);
    CHECK(metric_now("quota_refusals_total", "t2") == 2); /* the raw lease and the transfer */
    put_bytes(tin[1], &go, 1);
    CHECK(read(tout[0], &ok, 1) == 1 && ok == 'k');
    /* Taken over: t1's charge went, t2's came (its raw leases released). */
    CHECK(broker_use_becomes(b.sock, T1, t1_base, t1_base_leases));
    CHECK(broker_use_becomes(b.sock, T2, 64 * KIB, 1));
    CHECK(metric_now("transfers_in_total", "t2") == 1);
    CHECK(metric_now("transfers_out_total", "t1") == 1);
    CHECK(metric_now("shares", "t2") == 1);
    CHECK(metric_now("shares", "t1") == 0);
    CHECK(metric_now("bytes", "t2") == (long long)(64 * KIB));
    CHECK(maps_of(own, "gmsd-share:t2") == 0); /* t1's process maps nothing of it */
    /* kill -9 of the new holder: its memory goes back to t2's quota. */
    kill(tk, SIGKILL);
    waitpid(tk, NULL, 0);
    CHECK(broker_use_becomes(b.sock, T2, 0, 0));
    CHECK(broker_use_becomes(b.sock, T1, t1_base, t1_base_leases));

    /* The protocol's refusals, on raw connections. */
    gms_share_id id2;
    CHECK(owner_do('s', &id2));
    pid_t raw = fork();
    if (raw == 0)
        raw_refusals(id2, tin[0], tout[1]);
    char r;
    CHECK(read(tout[0], &r, 1) == 1 && r == 'r');
    CHECK(owner_do('f', NULL));
    put_bytes(tin[1], &go, 1);
    CHECK(status_of(raw) == 0);
    CHECK(broker_use_becomes(b.sock, T2, 0, 0));
    CHECK(broker_use_becomes(b.sock, T1, t1_base, t1_base_leases));
    CHECK(metric_now("transfers_in_total", "t2") == 2);

    put_bytes(to_owner[1], "q", 1);
    CHECK(status_of(own) == 0);
    CHECK(broker_stop(&b) == 0);
    /* The trail has both transfers, for t2, and verifies. */
    snprintf(cmd, sizeof cmd, "%s audit verify %s --key-file %s >/dev/null", cli_path(), audit_dir,
             key);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd,
             "test $(%s audit query %s --key-file %s --op transfer --tenant t2 | "
             "grep -c \"taken over as share\") = 2",
             cli_path(), audit_dir, key);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", trail);
    CHECK(system(cmd) == 0);
    return test_done();
}
