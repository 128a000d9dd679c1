/*
 * top.c: `gms top`, a terminal view of gmsd's tenants (docs/broker.md,
 * "Operators"). It reads gmsd's metrics endpoint (Prometheus text over
 * HTTP, on a Unix socket or a loopback port) and redraws a table of each
 * tenant's bytes, leases, connections, refusals, violations and reclaimed
 * leases every interval; --once prints the table once, for scripts.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TENANTS_MAX 256
#define PAGE_MAX (4u << 20)

/* The metrics a row shows, in gmsd's names without "gmsd_tenant_". */
static const char *const columns[] = {"bytes", "quota_bytes", "leases", "quota_leases",
                                      "connections", "leases_granted_total",
                                      "quota_refusals_total", "connection_refusals_total",
                                      "violations_total", "reclaimed_leases_total"};
enum { BYTES, QUOTA_BYTES, LEASES, QUOTA_LEASES, CONNS, GRANTED, QUOTA_REF, CONN_REF,
       VIOLATIONS, RECLAIMED, NCOLUMNS };

typedef struct row {
    char tenant[64];
    unsigned long long v[NCOLUMNS];
} row;

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* A connected socket to where ("unix:PATH", "IPV4:PORT" or "PORT"); -1
 * with a message on stderr. */
static int dial(const char *where)
{
    int s;
    if (strncmp(where, "unix:", 5) == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(where + 5) >= sizeof sa.sun_path) {
            fprintf(stderr, "gms top: %s: path too long\n", where);
            return -1;
        }
        strcpy(sa.sun_path, where + 5);
        s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
            return s;
    } else {
        char host[64] = "127.0.0.1";
        const char *colon = strrchr(where, ':'), *port = colon ? colon + 1 : where;
        if (colon) {
            if ((size_t)(colon - where) >= sizeof host) {
                fprintf(stderr, "gms top: %s: expected PORT, IPV4:PORT or unix:PATH\n", where);
                return -1;
            }
            memcpy(host, where, (size_t)(colon - where));
            host[colon - where] = 0;
        }
        char *end;
        unsigned long p = strtoul(port, &end, 10);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
        if (!*port || *end || p == 0 || p > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
            fprintf(stderr, "gms top: %s: expected PORT, IPV4:PORT or unix:PATH\n", where);
            return -1;
        }
        s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
            return s;
    }
    fprintf(stderr, "gms top: cannot reach gmsd's metrics at %s: %s (is gmsd running with "
                    "--metrics %s?)\n", where, strerror(errno), where);
    if (s >= 0)
        close(s);
    return -1;
}

/* GET /metrics; the body, malloc'd and NUL-ended, or NULL with a message. */
static char *fetch(const char *where)
{
    int s = dial(where);
    if (s < 0)
        return NULL;
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: gmsd\r\n\r\n";
    char *buf = malloc(PAGE_MAX + 1);
    size_t len = 0;
    int ok = buf && send(s, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1);
    while (ok) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1) { /* gmsd answers within a loop turn */
            fprintf(stderr, "gms top: %s: no answer in 5 s\n", where);
            ok = 0;
            break;
        }
        ssize_t n = recv(s, buf + len, PAGE_MAX - len, 0);
        if (n == 0)
            break;
        if (n < 0 || (len += (size_t)n) == PAGE_MAX) {
            fprintf(stderr, "gms top: %s: %s\n", where, n < 0 ? strerror(errno) : "page too large");
            ok = 0;
        }
    }
    close(s);
    if (!ok) {
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || !body || strncmp(buf + 8, " 200", 4) != 0) {
        fprintf(stderr, "gms top: %s: not a metrics page (%.40s)\n", where, buf);
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

/* Fills rows from the page's gmsd_tenant_* samples; the count. */
static unsigned parse(char *page, row *rows)
{
    unsigned n = 0;
    for (char *line = strtok(page, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64], tenant[64];
        unsigned long long v;
        if (sscanf(line, "gmsd_tenant_%63[a-z_]{tenant=\"%63[^\"]\"} %llu", name, tenant, &v) != 3)
            continue;
        unsigned r = 0;
        while (r < n && strcmp(rows[r].tenant, tenant) != 0)
            r++;
        if (r == n) {
            if (n == TENANTS_MAX)
                continue;
            memset(&rows[n], 0, sizeof rows[n]);
            snprintf(rows[n++].tenant, sizeof rows[r].tenant, "%s", tenant);
        }
        for (int c = 0; c < NCOLUMNS; c++)
            if (strcmp(name, columns[c]) == 0)
                rows[r].v[c] = v;
    }
    return n;
}

static void human(unsigned long long b, char *out, size_t size)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double x = (double)b;
    int u = 0;
    while (x >= 1024 && u < 5) {
        x /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", x, unit[u]);
}

static void draw(const row *rows, unsigned n, const char *where, int clear)
{
    char when[32];
    time_t t = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&t));
    if (clear)
        fputs("\033[H\033[2J", stdout);
    printf("gmsd at %s, %s: %u tenant%s\n\n", where, when, n, n == 1 ? "" : "s");
    printf("%-20s %21s %6s %11s %5s %8s %8s %8s %8s %9s\n", "TENANT", "BYTES / QUOTA", "USE",
           "LEASES", "CONNS", "GRANTED", "QUOTA-RF", "CONN-RF", "VIOLATE", "RECLAIMED");
    for (unsigned i = 0; i < n; i++) {
        const unsigned long long *v = rows[i].v;
        char used[16], quota[16], both[40], leases[24];
        human(v[BYTES], used, sizeof used);
        human(v[QUOTA_BYTES], quota, sizeof quota);
        snprintf(both, sizeof both, "%s / %s", used, quota);
        snprintf(leases, sizeof leases, "%llu/%llu", v[LEASES], v[QUOTA_LEASES]);
        double use = v[QUOTA_BYTES] ? 100.0 * (double)v[BYTES] / (double)v[QUOTA_BYTES] : 0;
        printf("%-20.20s %21s %5.1f%% %11s %5llu %8llu %8llu %8llu %8llu %9llu\n",
               rows[i].tenant, both, use, leases, v[CONNS], v[GRANTED], v[QUOTA_REF],
               v[CONN_REF], v[VIOLATIONS], v[RECLAIMED]);
    }
    if (clear)
        printf("\n(every refresh re-reads %s; q or Ctrl-C quits)\n", where);
    fflush(stdout);
}

static int usage(void)
{
    fprintf(stderr, "usage: gms top [--metrics PORT|IPV4:PORT|unix:PATH] [--interval SECONDS] "
                    "[--once]\n"
                    "  --metrics   where gmsd serves its metrics (gmsd --metrics); default "
                    "$GMSD_METRICS, else 127.0.0.1:9464\n"
                    "  --interval  seconds between refreshes, 0.1 to 3600; default 1\n"
                    "  --once      print the table once and exit (no screen control)\n");
    return 2;
}

int gms_cli_top(int argc, char **argv)
{
    const char *where = getenv("GMSD_METRICS");
    if (!where || !*where)
        where = "127.0.0.1:9464";
    double interval = 1;
    int once = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc) {
            where = argv[++i];
        } else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            char *end;
            interval = strtod(argv[++i], &end);
            if (*end || !(interval >= 0.1 && interval <= 3600)) {
                fprintf(stderr, "gms top: --interval %s: seconds from 0.1 to 3600\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--once") == 0) {
            once = 1;
        } else {
            return usage();
        }
    }
    static row rows[TENANTS_MAX];
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    do {
        char *page = fetch(where);
        if (!page)
            return 1;
        unsigned n = parse(page, rows);
        free(page);
        draw(rows, n, where, !once);
        if (once)
            return 0;
        /* Waits the interval, or less when q is typed. */
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (poll(&p, isatty(0) ? 1 : 0, (int)(interval * 1000)) == 1) {
            char c;
            if (read(0, &c, 1) != 1 || c == 'q')
                break;
        }
    } while (!stop);
    return 0;
}
