/*
 * metrics.c: gmsd's metrics endpoint (docs/broker.md, "Operators"): each
 * tenant's use, quotas and refusals in Prometheus' text format, served
 * over HTTP by libmicrohttpd on a loopback port or a Unix socket.
 *
 * libmicrohttpd runs in its external-epoll mode: it starts no thread, and
 * gmsd's one poll loop waits on its epoll descriptor beside the clients'
 * sockets and calls gmsd_metrics_run when it is ready. So the page is
 * rendered in the loop, between two client messages, from the same
 * counters the loop changes, with no lock.
 */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static struct MHD_Daemon *daemon_;
static const gmsd_policy *policy_;
static const gmsd_counters *totals_;
static char unix_path[108];

typedef struct page {
    char *text;
    size_t len, cap;
} page;

__attribute__((format(printf, 2, 3))) static void put(page *p, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = p->text ? vsnprintf(p->text + p->len, p->cap - p->len, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && p->len + (size_t)n < p->cap) {
            p->len += (size_t)n;
            return;
        }
        size_t cap = p->cap ? p->cap * 2 : 8192;
        char *t = realloc(p->text, cap);
        if (!t) {
            free(p->text);
            *p = (page){0};
            return;
        }
        p->text = t;
        p->cap = cap;
    }
}

/* One metric: its help and type lines, then one sample per tenant. */
static void family(page *p, const char *name, const char *type, const char *help,
                   size_t offset)
{
    put(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (unsigned i = 0; i < policy_->ntenants; i++) {
        const gmsd_tenant *t = &policy_->tenants[i];
        uint64_t v;
        memcpy(&v, (const char *)t + offset, sizeof v);
        put(p, "%s{tenant=\"%s\"} %llu\n", name, t->name, (unsigned long long)v);
    }
}

#define TENANT(name, type, help, field) \
    family(&p, name, type, help, offsetof(gmsd_tenant, field))

char *gmsd_metrics_render(size_t *len)
{
    page p = {0};
    TENANT("gmsd_tenant_bytes", "gauge", "Bytes the tenant holds in leases now.", used_bytes);
    TENANT("gmsd_tenant_leases", "gauge", "Leases the tenant holds now.", used_leases);
    TENANT("gmsd_tenant_quota_bytes", "gauge", "The tenant's byte quota.", quota_bytes);
    TENANT("gmsd_tenant_quota_leases", "gauge", "The tenant's lease quota.", quota_leases);
    TENANT("gmsd_tenant_connections", "gauge", "The tenant's connections open now.", connections);
    TENANT("gmsd_tenant_leases_granted_total", "counter", "Leases granted to the tenant.",
           n.leases_granted);
    TENANT("gmsd_tenant_quota_refusals_total", "counter",
           "Leases refused because they would pass the tenant's quota.", n.quota_refusals);
    TENANT("gmsd_tenant_connection_refusals_total", "counter",
           "Connections refused at the tenant's connection limit.", n.connection_refusals);
    TENANT("gmsd_tenant_violations_total", "counter",
           "Malformed messages and forged or stale lease ids from the tenant's processes.",
           n.violations);
    TENANT("gmsd_tenant_reclaimed_leases_total", "counter",
           "Leases wiped and returned because their connection ended without releasing them.",
           n.reclaimed_leases);
    TENANT("gmsd_tenant_reclaimed_bytes_total", "counter",
           "Bytes of the leases counted in gmsd_tenant_reclaimed_leases_total.", n.reclaimed_bytes);
    TENANT("gmsd_tenant_shares", "gauge",
           "Shares the tenant made that are alive now (counted in its bytes and leases).",
           live_shares);
    TENANT("gmsd_tenant_shares_total", "counter", "Shares the tenant made.", n.shares);
    TENANT("gmsd_tenant_acquires_total", "counter",
           "Shares (of any tenant) the tenant's processes acquired.", n.acquires);
    TENANT("gmsd_tenant_share_refusals_total", "counter",
           "Acquires and revokes refused to the tenant: no grant, revoked, read-only, a writer "
           "already there.", n.share_refusals);
    TENANT("gmsd_tenant_transfers_in_total", "counter",
           "Shares of other tenants the tenant's processes took over (their charge moved to it).",
           n.transfers_in);
    TENANT("gmsd_tenant_transfers_out_total", "counter",
           "Shares of the tenant that another tenant's process took over.", n.transfers_out);
    put(&p, "# HELP gmsd_unknown_peer_refusals_total Connections of peers no tenant names.\n"
            "# TYPE gmsd_unknown_peer_refusals_total counter\n"
            "gmsd_unknown_peer_refusals_total %llu\n",
        (unsigned long long)totals_->unknown_peers);
    put(&p, "# HELP gmsd_connections Client connections open now.\n"
            "# TYPE gmsd_connections gauge\ngmsd_connections %llu\n",
        (unsigned long long)totals_->connections);
    put(&p, "# HELP gmsd_orphaned_sessions Connections of the gmsd before this one whose "
            "processes still run and have not resumed them (their memory stays charged).\n"
            "# TYPE gmsd_orphaned_sessions gauge\ngmsd_orphaned_sessions %llu\n",
        (unsigned long long)totals_->orphans);
    *len = p.len;
    return p.text;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *data_len, void **state)
{
    (void)cls, (void)version, (void)data, (void)data_len, (void)state;
    struct MHD_Response *r;
    unsigned status = MHD_HTTP_OK;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "only GET\n";
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (strcmp(url, "/metrics") != 0) {
        static const char msg[] = "gmsd serves /metrics\n";
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    } else {
        size_t len;
        char *text = gmsd_metrics_render(&len);
        if (!text)
            return MHD_NO; /* out of memory: drop the connection */
        r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        if (r)
            MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
        else
            free(text);
    }
    if (!r)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The listening socket for where: "unix:PATH", "HOST:PORT" (an IPv4
 * address) or "PORT" (on 127.0.0.1). -1 with err set. */
static int listen_on(const char *where, char *err, size_t err_len)
{
    int s = -1;
    if (strncmp(where, "unix:", 5) == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        const char *path = where + 5;
        if (!*path || strlen(path) >= sizeof sa.sun_path) {
            snprintf(err, err_len, "--metrics %s: a Unix socket path of 1 to %zu bytes", where,
                     sizeof sa.sun_path - 1);
            return -1;
        }
        strcpy(sa.sun_path, path);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path); /* a previous gmsd's */
        s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        /* Owner only: the page names every tenant and its use. */
        if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(path, 0600) != 0)
            goto fail;
        snprintf(unix_path, sizeof unix_path, "%s", path);
    } else {
        char host[64] = "127.0.0.1";
        const char *colon = strrchr(where, ':'), *port_text = colon ? colon + 1 : where;
        if (colon && (size_t)(colon - where) < sizeof host) {
            memcpy(host, where, (size_t)(colon - where));
            host[colon - where] = 0;
        }
        char *end;
        unsigned long port = strtoul(port_text, &end, 10);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (!*port_text || *end || port == 0 || port > 65535 ||
            (colon && (size_t)(colon - where) >= sizeof host) ||
            inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
            snprintf(err, err_len,
                     "--metrics %s: expected PORT, IPV4:PORT or unix:PATH (loopback by default)",
                     where);
            return -1;
        }
        s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            bind(s, (struct sockaddr *)&sa, sizeof sa) != 0)
            goto fail;
    }
    if (listen(s, 16) == 0)
        return s;
fail:
    snprintf(err, err_len, "--metrics %s: %s", where, strerror(errno));
    if (s >= 0)
        close(s);
    return -1;
}

int gmsd_metrics_start(const char *where, const gmsd_policy *policy,
                       const gmsd_counters *totals, char *err, size_t err_len)
{
    int s = listen_on(where, err, err_len);
    if (s < 0)
        return -1;
    policy_ = policy;
    totals_ = totals;
    /* A slow or silent HTTP client is dropped after 5 s; at most 16 at
     * once, so that a scraper cannot take gmsd's descriptors. */
    daemon_ = MHD_start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, answer, NULL,
                               MHD_OPTION_LISTEN_SOCKET, s, MHD_OPTION_CONNECTION_TIMEOUT,
                               (unsigned)5, MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                               MHD_OPTION_END);
    if (!daemon_) {
        snprintf(err, err_len, "--metrics %s: libmicrohttpd did not start", where);
        close(s);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_EPOLL_FD);
    return info ? info->epoll_fd : -1;
}

void gmsd_metrics_run(void)
{
    if (daemon_)
        MHD_run(daemon_);
}

void gmsd_metrics_stop(void)
{
    if (!daemon_)
        return;
    MHD_socket s = MHD_quiesce_daemon(daemon_);
    MHD_stop_daemon(daemon_);
    if (s != MHD_INVALID_SOCKET)
        close(s);
    daemon_ = NULL;
    if (unix_path[0])
        unlink(unix_path);
}
