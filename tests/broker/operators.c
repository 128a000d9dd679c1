/*
 * operators.c: what an operator sees of gmsd (docs/broker.md, "Operators"):
 * the metrics endpoint counts each tenant's leases, bytes, connections,
 * refusals, violations and reclaimed leases exactly; `gms top` shows them;
 * and the audit trail gmsd writes records each of those events for its
 * tenant and verifies with `gms audit verify`. A wrong --metrics is refused
 * at start.
 */
#include "util.h"

#define MIB (1ull << 20)

static broker b;
static char metrics_sock[100];

static const char *cli_path(void)
{
    const char *p = getenv("GMS_CLI");
    return p && *p ? p : "./gms";
}

/* The body of an HTTP request to gmsd's metrics socket, and its status. */
static char *http(const char *request, int *status)
{
    return metrics_get_at(metrics_sock, request, status);
}

static long long metric(const char *page, const char *name, const char *t)
{
    return tenant_metric(page, name, t);
}

static int lease(int s, uint64_t bytes, uint64_t *id)
{
    gms_broker_msg m = {.type = GMS_BROKER_LEASE, .a = bytes};
    int fd, t = raw_call(s, &m, &fd);
    if (fd >= 0)
        close(fd);
    *id = m.a;
    return t == GMS_BROKER_LEASED ? 0 : m.code;
}

/* Runs a shell command; its output (first 64 KiB) and exit status. */
static char *run(const char *cmd, int *status)
{
    static char out[1 << 16];
    FILE *f = popen(cmd, "r");
    size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[n] = 0;
    int st = f ? pclose(f) : -1;
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

int main(void)
{
    char trail[64] = "/tmp/gms-trail-XXXXXX", key[96], cmd[512];
    CHECK(mkdtemp(trail) != NULL);
    snprintf(key, sizeof key, "%s/key", trail);
    int st;
    snprintf(cmd, sizeof cmd, "%s audit keygen %s", cli_path(), key);
    run(cmd, &st);
    CHECK(st == 0);

    /* A --metrics gmsd cannot use is refused at start, with the reason. */
    char good[96], log[96];
    snprintf(good, sizeof good, "%s/policy.json", trail);
    snprintf(log, sizeof log, "%s/gmsd.log", trail);
    write_file(good, "{\"tenants\": [{\"name\": \"t\", \"uids\": [1], \"quota_bytes\": 1, "
                     "\"quota_leases\": 1}]}");
    const char *bad[] = {"0", "70000", "1.2.3:80", "localhost:80", "unix:", NULL};
    for (int i = 0; bad[i]; i++) {
        const char *args[] = {"--policy", good, "--socket", "/tmp/gms-unused.sock", "--metrics",
                              bad[i], NULL};
        CHECK(gmsd_run(log, args) == 1);
        snprintf(cmd, sizeof cmd, "grep -q -- '--metrics %s' %s", bad[i], log);
        CHECK(system(cmd) == 0);
    }

    char uid[16];
    snprintf(uid, sizeof uid, "%u", (unsigned)getuid());
    char policy[512];
    snprintf(policy, sizeof policy,
             "{\"lease_bytes\": 2097152, \"tenants\": ["
             "{\"name\": \"alpha\", \"uids\": [%s], \"quota_bytes\": 8388608, "
             "\"quota_leases\": 4, \"max_connections\": 3},"
             "{\"name\": \"idle\", \"uids\": [4242424], \"quota_bytes\": 2097152, "
             "\"quota_leases\": 1}]}",
             uid);
    char audit_dir[96], key_arg[96];
    snprintf(audit_dir, sizeof audit_dir, "%s/audit", trail);
    snprintf(key_arg, sizeof key_arg, "%s", key);
    const char *extra[] = {"--metrics", "unix:%d/metrics.sock", "--audit-dir", audit_dir,
                           "--audit-key-file", key_arg, NULL};
    broker_start_args(&b, policy, extra);
    snprintf(metrics_sock, sizeof metrics_sock, "%s/metrics.sock", b.dir);

    /* Before any client: every tenant is listed, at zero. */
    char *page = http("GET /metrics HTTP/1.0\r\n\r\n", &st);
    CHECK(st == 200 && page);
    CHECK(metric(page, "quota_bytes", "alpha") == 8388608);
    CHECK(metric(page, "quota_leases", "idle") == 1);
    CHECK(metric(page, "bytes", "alpha") == 0);
    CHECK(page && strstr(page, "# TYPE gmsd_tenant_leases_granted_total counter") != NULL);

    /* A holds two leases and releases one; a lease past the quota is
     * refused; a forged release is a violation. */
    int a = raw_connect(b.sock);
    uint64_t id1, id2, id3;
    CHECK(lease(a, 2 * MIB, &id1) == 0);
    CHECK(lease(a, 2 * MIB, &id2) == 0);
    CHECK(lease(a, 8 * MIB, &id3) == GMS_E_QUOTA);
    gms_broker_msg m = {.type = GMS_BROKER_RELEASE, .a = id1};
    int fd;
    CHECK(raw_call(a, &m, &fd) == GMS_BROKER_RELEASED);
    m = (gms_broker_msg){.type = GMS_BROKER_RELEASE, .a = id1}; /* stale now */
    CHECK(raw_call(a, &m, &fd) == GMS_BROKER_ERROR && m.code == GMS_E_INVALID_HANDLE);
    /* C leases and closes without releasing: reclaimed. */
    int c = raw_connect(b.sock);
    CHECK(lease(c, 2 * MIB, &id3) == 0);
    close(c);
    /* G sends garbage: a violation, and G is disconnected. */
    int g = raw_connect(b.sock);
    CHECK(send(g, "not a message", 13, 0) == 13);
    uint8_t byte;
    struct pollfd p = {.fd = g, .events = POLLIN};
    CHECK(poll(&p, 1, 2000) == 1 && recv(g, &byte, 1, 0) == 0);
    close(g);
    /* Two more connections fill alpha's three; the fourth is refused. */
    int d1 = raw_connect(b.sock), d2 = raw_connect(b.sock), d3 = raw_connect(b.sock);
    m = (gms_broker_msg){.type = GMS_BROKER_HELLO};
    CHECK(raw_call(d3, &m, &fd) == GMS_BROKER_ERROR && m.code == GMS_E_QUOTA);
    close(d3);
    m = (gms_broker_msg){.type = GMS_BROKER_HELLO};
    CHECK(raw_call(d2, &m, &fd) == GMS_BROKER_WELCOME); /* served: it was let in */

    /* gmsd has seen C's and G's hang-ups once a later request is answered. */
    page = http("GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &st);
    CHECK(st == 200);
    CHECK(metric(page, "bytes", "alpha") == (long long)(2 * MIB));
    CHECK(metric(page, "leases", "alpha") == 1);
    CHECK(metric(page, "connections", "alpha") == 3);
    CHECK(metric(page, "leases_granted_total", "alpha") == 3);
    CHECK(metric(page, "quota_refusals_total", "alpha") == 1);
    CHECK(metric(page, "connection_refusals_total", "alpha") == 1);
    CHECK(metric(page, "violations_total", "alpha") == 2);
    CHECK(metric(page, "reclaimed_leases_total", "alpha") == 1);
    CHECK(metric(page, "reclaimed_bytes_total", "alpha") == (long long)(2 * MIB));
    CHECK(metric(page, "leases_granted_total", "idle") == 0);
    CHECK(page && strstr(page, "\ngmsd_connections 3\n") != NULL);

    /* Only GET /metrics. */
    CHECK(http("GET /other HTTP/1.0\r\n\r\n", &st) && st == 404);
    CHECK(http("POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", &st) && st == 405);

    /* gms top shows the same. */
    snprintf(cmd, sizeof cmd, "%s top --once --metrics unix:%s", cli_path(), metrics_sock);
    char *out = run(cmd, &st);
    CHECK(st == 0);
    CHECK(strstr(out, "2 tenants") != NULL);
    CHECK(strstr(out, "alpha") && strstr(out, "2.0 MiB / 8.0 MiB") && strstr(out, " 25.0%") &&
          strstr(out, "1/4"));
    if (!strstr(out, "2.0 MiB / 8.0 MiB"))
        fprintf(stderr, "gms top printed:\n%s", out);
    snprintf(cmd, sizeof cmd, "%s top --once --metrics unix:%s/none 2>&1", cli_path(), b.dir);
    out = run(cmd, &st);
    CHECK(st == 1 && strstr(out, "cannot reach gmsd's metrics"));
    snprintf(cmd, sizeof cmd, "%s top --interval 0 2>&1", cli_path());
    out = run(cmd, &st);
    CHECK(st == 2 && strstr(out, "--interval"));

    close(a);
    close(d1);
    close(d2);
    CHECK(broker_stop(&b) == 0);

    /* The trail: authentic, and with each event above for its tenant. */
    snprintf(cmd, sizeof cmd, "%s audit verify %s --key-file %s", cli_path(), audit_dir, key);
    run(cmd, &st);
    CHECK(st == 0);
    struct {
        const char *op;
        int want;
    } counts[] = {{"alloc", 3},         /* leases granted: A's two, C's */
                  {"free", 1},          /* A's release */
                  {"wipe", 3},          /* every lease, released or reclaimed */
                  {"leak", 2},          /* C's lease, and A's when it closed */
                  {"quota_refused", 2}, /* the 8 MiB lease, the fourth connection */
                  {"violation", 2},     /* the stale release, the garbage */
                  {"context_open", 6},  /* util.h's probe, A, C, G, D1, D2 */
                  {"context_close", 6},
                  {"runtime_open", 1},
                  {"runtime_close", 1}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s audit query %s --key-file %s --op %s | grep -c .",
                 cli_path(), audit_dir, key, counts[i].op);
        out = run(cmd, &st);
        int n = atoi(out);
        if (n != counts[i].want)
            fprintf(stderr, "trail: %d %s records, want %d\n", n, counts[i].op, counts[i].want);
        CHECK(n == counts[i].want);
    }
    snprintf(cmd, sizeof cmd, "%s audit query %s --key-file %s --op leak --tenant alpha",
             cli_path(), audit_dir, key);
    out = run(cmd, &st);
    CHECK(strstr(out, "wiped and returned to the quota") != NULL);
    snprintf(cmd, sizeof cmd, "rm -rf %s", trail);
    CHECK(system(cmd) == 0);
    return test_done();
}
