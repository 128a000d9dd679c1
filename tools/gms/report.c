/*
 * report.c: `gms audit report DIR --html FILE`: the compliance report an
 * auditor reads. One self-contained HTML page (no scripts, no external
 * assets): whether the trail verified, a summary table per tenant
 * (allocations, peak use, quota refusals, access denials, violations,
 * leaks), a chart of each tenant's memory in use over time (inline SVG with
 * labelled axes) and the security events with their evidence.
 *
 * Memory in use is rebuilt from the trail itself: a successful alloc adds
 * its size, a successful free or a leak reclaimed at context close
 * subtracts it.
 */
#include "cli.h"
#include "gms.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct point {
    uint64_t t;
    int64_t live;
} point;

typedef struct tenant {
    char name[64];
    uint64_t allocs, alloc_failed, alloc_bytes, frees, contexts;
    uint64_t quota, denied, violations, leaks, leak_bytes, configs;
    int64_t live, peak;
    uint64_t peak_t;
    unsigned langs;
    char users[8][64];
    int nusers;
    bool more_users;
    point *pts;
    size_t npts, cap;
} tenant;

typedef struct event {
    uint64_t seq, t, handle, size;
    int op, result;
    char tenant[64], user[64], detail[GMS_AUDIT_TEXT];
} event;

#define MAX_EVENTS 200

typedef struct report {
    tenant *t;
    size_t nt;
    event ev[MAX_EVENTS];
    size_t nev, ev_total;
    uint64_t records, runtime_opens, dropped, retention, t0, t1;
} report;

static tenant *tenant_get(report *r, const char *name)
{
    for (size_t i = 0; i < r->nt; i++)
        if (strcmp(r->t[i].name, name) == 0)
            return &r->t[i];
    tenant *nt = realloc(r->t, (r->nt + 1) * sizeof *nt);
    if (!nt)
        return NULL;
    r->t = nt;
    tenant *t = &nt[r->nt++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

static void add_point(tenant *t, uint64_t time_ns)
{
    if (t->npts && t->pts[t->npts - 1].t == time_ns) {
        t->pts[t->npts - 1].live = t->live; /* the coarse clock: one point per tick */
        return;
    }
    if (t->npts == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        point *p = realloc(t->pts, cap * sizeof *p);
        if (!p)
            return;
        t->pts = p;
        t->cap = cap;
    }
    t->pts[t->npts++] = (point){time_ns, t->live};
}

static int collect(void *user, const gms_trail_record *rec)
{
    report *r = user;
    r->records++;
    if (!r->t0)
        r->t0 = rec->time_ns;
    r->t1 = rec->time_ns;
    if (rec->op == GMS_AUDIT_RUNTIME_OPEN)
        r->runtime_opens++;
    if (rec->op == GMS_AUDIT_DROPPED)
        r->dropped += rec->size;
    if (rec->op == GMS_AUDIT_CONFIG && strncmp(rec->detail, "retention:", 10) == 0)
        r->retention++;
    if (rec->op == GMS_AUDIT_QUOTA_REFUSED || rec->op == GMS_AUDIT_ACCESS_DENIED ||
        rec->op == GMS_AUDIT_VIOLATION || rec->op == GMS_AUDIT_LEAK ||
        (rec->op == GMS_AUDIT_FREE && rec->result != 0)) {
        r->ev_total++;
        if (r->nev < MAX_EVENTS) {
            event *e = &r->ev[r->nev++];
            e->seq = rec->seq;
            e->t = rec->time_ns;
            e->handle = rec->handle;
            e->size = rec->size;
            e->op = rec->op;
            e->result = rec->result;
            memcpy(e->tenant, rec->tenant, sizeof e->tenant);
            memcpy(e->user, rec->user, sizeof e->user);
            memcpy(e->detail, rec->detail, sizeof e->detail);
        }
    }
    if (!rec->tenant[0])
        return 0;
    tenant *t = tenant_get(r, rec->tenant);
    if (!t)
        return 1;
    if (rec->language >= 0 && rec->language < 16)
        t->langs |= 1u << rec->language;
    if (rec->user[0]) {
        bool seen = false;
        for (int i = 0; i < t->nusers && !seen; i++)
            seen = strcmp(t->users[i], rec->user) == 0;
        if (!seen && t->nusers < 8)
            snprintf(t->users[t->nusers++], 64, "%s", rec->user);
        else if (!seen)
            t->more_users = true;
    }
    switch (rec->op) {
    case GMS_AUDIT_CONTEXT_OPEN:
        t->contexts++;
        break;
    case GMS_AUDIT_ALLOC:
        if (rec->result) {
            t->alloc_failed++;
            break;
        }
        t->allocs++;
        t->alloc_bytes += rec->size;
        t->live = (int64_t)((uint64_t)t->live + rec->size); /* read unverified, a size is anything */
        if (t->live > t->peak) {
            t->peak = t->live;
            t->peak_t = rec->time_ns;
        }
        add_point(t, rec->time_ns);
        break;
    case GMS_AUDIT_FREE:
    case GMS_AUDIT_LEAK:
        if (rec->op == GMS_AUDIT_LEAK) {
            t->leaks++;
            t->leak_bytes += rec->size;
        } else {
            t->frees++;
        }
        if (rec->result == 0 || rec->op == GMS_AUDIT_LEAK || rec->result == GMS_E_CORRUPTION) {
            t->live = (int64_t)((uint64_t)t->live - rec->size);
            add_point(t, rec->time_ns);
        }
        if (rec->op == GMS_AUDIT_FREE && rec->result)
            t->violations++;
        break;
    case GMS_AUDIT_QUOTA_REFUSED:
        t->quota++;
        break;
    case GMS_AUDIT_ACCESS_DENIED:
        t->denied++;
        break;
    case GMS_AUDIT_VIOLATION:
        t->violations++;
        break;
    case GMS_AUDIT_CONFIG:
        t->configs++;
        break;
    default:
        break;
    }
    return 0;
}

/* ---- formatting ---- */

static void esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void bytes_str(double b, char *out, size_t size)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (fabs(b) >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(out, size, "%.0f B", b);
    else
        snprintf(out, size, b >= 100 ? "%.0f %s" : b >= 10 ? "%.1f %s" : "%.2f %s", b, u[i]);
}

static void num_str(uint64_t v, char *out, size_t size)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < size; i++) {
        out[o++] = tmp[i];
        if ((n - i - 1) % 3 == 0 && i != n - 1)
            out[o++] = ',';
    }
    out[o] = 0;
}

static const char *palette[] = {"#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed",
                                "#db2777", "#0891b2", "#65a30d", "#4b5563", "#ea580c"};

/* A "nice" axis step: 1, 2 or 5 times a power of ten, near span/target. */
static double nice_step(double span, int target)
{
    double raw = span / target, p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void chart(FILE *f, report *r)
{
    const int W = 960, H = 360, L = 86, R = 24, T = 20, B = 56;
    int pw = W - L - R, ph = H - T - B;
    uint64_t t0 = UINT64_MAX, t1 = 0;
    int64_t peak = 0;
    for (size_t i = 0; i < r->nt; i++) {
        tenant *t = &r->t[i];
        if (t->npts) {
            if (t->pts[0].t < t0)
                t0 = t->pts[0].t;
            if (t->pts[t->npts - 1].t > t1)
                t1 = t->pts[t->npts - 1].t;
        }
        if (t->peak > peak)
            peak = t->peak;
    }
    if (t0 == UINT64_MAX || peak <= 0) {
        fputs("<p class=\"muted\">No allocations in this trail: nothing to chart.</p>\n", f);
        return;
    }
    if (r->t1 > t1)
        t1 = r->t1; /* hold the last value to the end of the trail */
    if (t1 <= t0)
        t1 = t0 + 1000000000ull;
    double span = (double)(t1 - t0) / 1e9;
    /* y: bytes in a unit that suits the peak */
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int ui = 0;
    double scale = 1;
    while ((double)peak / scale >= 1024 * 1.5 && ui < 4) {
        scale *= 1024;
        ui++;
    }
    double ymax_u = (double)peak / scale, ystep = nice_step(ymax_u, 5);
    double ytop = ceil(ymax_u / ystep) * ystep;
    if (ytop <= 0)
        ytop = 1;
    fprintf(f, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"Memory in use per tenant over time\">\n", W, H);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" stroke=\"#d1d5db\"/>\n", L, T, pw, ph);
    for (double y = 0; y <= ytop + ystep / 2; y += ystep) {
        double py = T + ph - y / ytop * ph;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e7eb\"/>", L, L + pw, py, py);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%g</text>\n", L - 8, py + 4, y);
    }
    /* x: seconds from the start, with a nice step, labelled in UTC */
    static const double steps[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5,
                                   10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                                   21600, 43200, 86400, 172800, 604800};
    double xstep = steps[sizeof steps / sizeof steps[0] - 1];
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (span / steps[i] <= 8) {
            xstep = steps[i];
            break;
        }
    for (double x = 0; x <= span + 1e-9; x += xstep) {
        double px = L + x / span * pw;
        char lab[64];
        uint64_t ns = t0 + (uint64_t)(x * 1e9);
        time_t s = (time_t)(ns / 1000000000ull);
        struct tm tm;
        gmtime_r(&s, &tm);
        if (span >= 2 * 86400)
            strftime(lab, sizeof lab, "%b %d", &tm);
        else if (xstep >= 1)
            strftime(lab, sizeof lab, "%H:%M:%S", &tm);
        else
            snprintf(lab, sizeof lab, "+%.3g s", x);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#f3f4f6\"/>", px, px, T, T + ph);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#9ca3af\"/>", px, px, T + ph, T + ph + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%s</text>\n", px, T + ph + 20, lab);
    }
    char start[64];
    gms_cli_time(t0, start, sizeof start, 0);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"middle\">Time (UTC), from %s</text>\n",
            L + pw / 2, H - 8, start);
    fprintf(f, "<text transform=\"translate(18 %d) rotate(-90)\" class=\"axis\" text-anchor=\"middle\">Memory in use (%s)</text>\n",
            T + ph / 2, units[ui]);
    for (size_t i = 0; i < r->nt; i++) {
        tenant *t = &r->t[i];
        if (!t->npts)
            continue;
        /* At most one column per pixel: each keeps its highest value, so
         * short peaks stay visible. */
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"",
                palette[i % 10]);
        int last_col = -1;
        double col_max = 0, prev_y = T + ph;
        for (size_t j = 0; j <= t->npts; j++) {
            int col = -2;
            if (j < t->npts) {
                /* Records of two threads can be a few us out of time order:
                 * a point before t0 (or past t1) stays on the chart's edge. */
                uint64_t pt = t->pts[j].t;
                double x = pt > t0 ? (double)(pt - t0) / 1e9 / span * pw : 0;
                col = (int)(x < pw ? x : pw);
            }
            if (col != last_col && last_col >= 0) {
                double py = T + ph - col_max / scale / ytop * ph;
                fprintf(f, "%.1f,%.1f %.1f,%.1f ", L + (double)last_col, prev_y, L + (double)last_col, py);
                prev_y = py;
                col_max = 0;
            }
            if (j == t->npts)
                break;
            if (col != last_col)
                col_max = (double)t->pts[j].live;
            else if ((double)t->pts[j].live > col_max)
                col_max = (double)t->pts[j].live;
            last_col = col;
        }
        fprintf(f, "%.1f,%.1f\"/>\n", (double)(L + pw), prev_y);
    }
    fputs("</svg>\n<div class=\"legend\">", f);
    for (size_t i = 0; i < r->nt; i++) {
        fprintf(f, "<span><i style=\"background:%s\"></i>", palette[i % 10]);
        esc(f, r->t[i].name);
        fputs("</span>", f);
    }
    fputs("</div>\n", f);
}

static const char *css =
    "body{font-family:-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,'Noto Sans','Liberation Sans',sans-serif;"
    "color:#111827;background:#f8fafc;margin:0;line-height:1.45}"
    "main{max-width:1040px;margin:0 auto;padding:32px 40px 48px}"
    "h1{font-size:26px;margin:0 0 4px;font-weight:650;letter-spacing:-.01em}"
    "h2{font-size:18px;margin:36px 0 12px;font-weight:620}"
    ".sub{color:#4b5563;font-size:14px;margin:0}"
    ".status{border-radius:10px;padding:14px 18px;margin:22px 0 8px;font-size:15px;border:1px solid}"
    ".ok{background:#ecfdf5;border-color:#a7f3d0;color:#065f46}"
    ".bad{background:#fef2f2;border-color:#fecaca;color:#991b1b}"
    ".warn{background:#fffbeb;border-color:#fde68a;color:#92400e}"
    ".status b{font-size:16px}"
    ".kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin:18px 0}"
    ".kpi{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:12px 14px}"
    ".kpi .v{font-size:22px;font-weight:650}.kpi .l{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}"
    ".kpi.alert .v{color:#b91c1c}"
    "table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb;border-radius:10px;overflow:hidden;font-size:13.5px}"
    "th{background:#f3f4f6;text-align:left;font-weight:600;color:#374151;padding:9px 10px;border-bottom:1px solid #e5e7eb}"
    "td{padding:8px 10px;border-bottom:1px solid #f1f5f9;vertical-align:top}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    "td.alert{color:#b91c1c;font-weight:600}td.nw{white-space:nowrap}"
    "tr:last-child td{border-bottom:none}"
    ".card{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:16px}"
    ".chart{width:100%;height:auto;font-family:inherit}"
    ".tick{font-size:12px;fill:#4b5563}.axis{font-size:13px;fill:#111827;font-weight:600}"
    ".legend{display:flex;flex-wrap:wrap;gap:16px;margin:8px 0 0 86px;font-size:13px}"
    ".legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:6px;vertical-align:-1px}"
    ".muted{color:#6b7280;font-size:13px}"
    "code{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:12.5px}"
    ".evidence{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#374151;word-break:break-word}"
    "footer{margin-top:36px;color:#6b7280;font-size:12.5px;border-top:1px solid #e5e7eb;padding-top:14px}";

static void kpi(FILE *f, const char *label, const char *value, bool alert)
{
    fprintf(f, "<div class=\"kpi%s\"><div class=\"v\">%s</div><div class=\"l\">%s</div></div>\n",
            alert ? " alert" : "", value, label);
}

int gms_cli_report(const char *dir, const uint8_t *key, size_t keylen, const char *html,
                   const char *title)
{
    report *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, "gms audit report: out of memory\n");
        return 2;
    }
    gms_trail_summary s;
    gms__trail_read(dir, key, keylen, collect, r, &s);
    if (s.status == GMS_TRAIL_ERROR) {
        fprintf(stderr, "gms audit report: %s\n", s.message);
        free(r);
        return 2;
    }
    FILE *f = fopen(html, "w");
    if (!f) {
        fprintf(stderr, "gms audit report: cannot write %s: %s\n", html, strerror(errno));
        free(r);
        return 2;
    }
    char t0[64] = "-", t1[64] = "-", now[64], buf[64], buf2[64];
    if (r->records) {
        gms_cli_time(r->t0, t0, sizeof t0, 0);
        gms_cli_time(r->t1, t1, sizeof t1, 0);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    gms_cli_time((uint64_t)ts.tv_sec * 1000000000ull, now, sizeof now, 0);
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    esc(f, title ? title : "GPU memory audit report");
    fprintf(f, "</title>\n<style>%s</style></head><body><main>\n<h1>", css);
    esc(f, title ? title : "GPU memory audit report");
    fputs("</h1>\n<p class=\"sub\">Trail <code>", f);
    esc(f, dir);
    fprintf(f, "</code> &middot; period %s to %s &middot; generated %s</p>\n",
            t0, t1, now);

    /* Verification first: everything below is only as good as the chain. */
    if (!s.verified)
        fputs("<div class=\"status warn\"><b>Not verified.</b> The report was made without the trail's key: records were read but their MACs were not checked. Run with <code>--key-file</code>.</div>\n", f);
    else if (s.status == GMS_TRAIL_TAMPERED) {
        fputs("<div class=\"status bad\"><b>Tampering detected.</b> ", f);
        esc(f, s.message);
        fprintf(f, " Figures below cover only the records before the break (up to seq %llu).</div>\n",
                (unsigned long long)(s.broken_seq ? s.broken_seq - 1 : 0));
    } else {
        num_str(s.records, buf, sizeof buf);
        fprintf(f, "<div class=\"status ok\"><b>Chain verified.</b> All %s records (seq %llu to %llu) in %llu segment%s are authentic, complete and in order (HMAC-SHA-256 chain, %llu checkpoints).",
                buf, (unsigned long long)s.first_seq, (unsigned long long)s.last_seq,
                (unsigned long long)s.segments, s.segments == 1 ? "" : "s",
                (unsigned long long)s.checkpoints);
        if (s.retention_gap)
            fputs(" Older segments were removed by the retention policy; verification starts at the oldest kept segment.", f);
        fputs("</div>\n", f);
    }
    if (s.torn[0]) {
        fputs("<div class=\"status warn\"><b>Torn tail.</b> ", f);
        esc(f, s.torn);
        fputs("</div>\n", f);
    }
    if (r->dropped) {
        num_str(r->dropped, buf, sizeof buf);
        fprintf(f, "<div class=\"status warn\"><b>Incomplete by configuration.</b> The trail ran in lossy mode and dropped %s records when its ring was full; the drops are counted in the trail.</div>\n", buf);
    }

    uint64_t allocs = 0, quota = 0, denied = 0, viol = 0;
    int64_t peak = 0;
    for (size_t i = 0; i < r->nt; i++) {
        allocs += r->t[i].allocs;
        quota += r->t[i].quota;
        denied += r->t[i].denied;
        viol += r->t[i].violations;
        if (r->t[i].peak > peak)
            peak = r->t[i].peak;
    }
    fputs("<div class=\"kpis\">\n", f);
    snprintf(buf, sizeof buf, "%zu", r->nt);
    kpi(f, "Tenants", buf, false);
    num_str(allocs, buf, sizeof buf);
    kpi(f, "Allocations", buf, false);
    bytes_str((double)peak, buf, sizeof buf);
    kpi(f, "Largest tenant peak", buf, false);
    num_str(quota, buf, sizeof buf);
    kpi(f, "Quota refusals", buf, quota > 0);
    num_str(denied, buf, sizeof buf);
    kpi(f, "Access denials", buf, denied > 0);
    num_str(viol, buf, sizeof buf);
    kpi(f, "Violations", buf, viol > 0);
    fputs("</div>\n", f);

    fputs("<h2>Per-tenant summary</h2>\n<table><thead><tr><th>Tenant</th><th>Users</th><th>Languages</th>"
          "<th class=\"n\">Allocations</th><th class=\"n\">Bytes allocated</th><th class=\"n\">Peak in use</th>"
          "<th class=\"n\">Quota refusals</th><th class=\"n\">Access denials</th><th class=\"n\">Violations</th>"
          "<th class=\"n\">Leaks</th></tr></thead><tbody>\n", f);
    for (size_t i = 0; i < r->nt; i++) {
        tenant *t = &r->t[i];
        fprintf(f, "<tr><td><span style=\"color:%s\">&#9632;</span> <b>", palette[i % 10]);
        esc(f, t->name);
        fputs("</b></td><td>", f);
        for (int u = 0; u < t->nusers; u++) {
            if (u)
                fputs(", ", f);
            esc(f, t->users[u]);
        }
        if (t->more_users)
            fputs(", &hellip;", f);
        fputs("</td><td>", f);
        bool first = true;
        for (int l = 0; l < 8; l++)
            if (t->langs & (1u << l)) {
                fprintf(f, "%s%s", first ? "" : ", ", gms_cli_language(l));
                first = false;
            }
        num_str(t->allocs, buf, sizeof buf);
        bytes_str((double)t->alloc_bytes, buf2, sizeof buf2);
        fprintf(f, "</td><td class=\"n\">%s", buf);
        if (t->alloc_failed)
            fprintf(f, " <span class=\"muted\">(+%llu failed)</span>", (unsigned long long)t->alloc_failed);
        fprintf(f, "</td><td class=\"n\">%s</td>", buf2);
        bytes_str((double)t->peak, buf, sizeof buf);
        fprintf(f, "<td class=\"n\">%s</td>", buf);
        fprintf(f, "<td class=\"n%s\">%llu</td><td class=\"n%s\">%llu</td><td class=\"n%s\">%llu</td>",
                t->quota ? " alert" : "", (unsigned long long)t->quota, t->denied ? " alert" : "",
                (unsigned long long)t->denied, t->violations ? " alert" : "",
                (unsigned long long)t->violations);
        bytes_str((double)t->leak_bytes, buf, sizeof buf);
        if (t->leaks)
            fprintf(f, "<td class=\"n alert\">%llu <span class=\"muted\">(%s)</span></td></tr>\n",
                    (unsigned long long)t->leaks, buf);
        else
            fputs("<td class=\"n\">0</td></tr>\n", f);
    }
    if (!r->nt)
        fputs("<tr><td colspan=\"10\" class=\"muted\">No tenant activity in this trail.</td></tr>\n", f);
    fputs("</tbody></table>\n", f);

    fputs("<h2>Memory in use over time</h2>\n<div class=\"card\">\n", f);
    chart(f, r);
    fputs("</div>\n", f);

    fputs("<h2>Security events</h2>\n", f);
    if (!r->nev) {
        fputs("<p class=\"muted\">No quota refusals, access denials, violations or leaks were recorded.</p>\n", f);
    } else {
        if (r->ev_total > r->nev)
            fprintf(f, "<p class=\"muted\">The first %zu of %zu events; <code>gms audit query</code> lists them all.</p>\n",
                    r->nev, r->ev_total);
        fputs("<table><thead><tr><th class=\"n\">Seq</th><th>Time (UTC)</th><th>Event</th><th>Tenant / user</th>"
              "<th>Handle</th><th>Evidence</th></tr></thead><tbody>\n", f);
        for (size_t i = 0; i < r->nev; i++) {
            event *e = &r->ev[i];
            char t[64];
            gms_cli_time(e->t, t, sizeof t, 3);
            t[10] = ' '; /* "2026-01-02 03:04:05.678": easier to read in a table */
            t[strlen(t) - 1] = 0;
            const char *what = e->op == GMS_AUDIT_QUOTA_REFUSED ? "Quota refused"
                               : e->op == GMS_AUDIT_ACCESS_DENIED ? "Access denied"
                               : e->op == GMS_AUDIT_LEAK ? "Leak reclaimed"
                               : e->op == GMS_AUDIT_FREE ? "Corruption at free"
                                                          : "Violation";
            fprintf(f, "<tr><td class=\"n\">%llu</td><td class=\"nw\">%s</td><td class=\"nw\">%s</td><td>", (unsigned long long)e->seq,
                    t, what);
            esc(f, e->tenant);
            fputs(" / ", f);
            esc(f, e->user);
            fprintf(f, "</td><td><code>%016llx</code></td><td class=\"evidence\">", (unsigned long long)e->handle);
            esc(f, e->detail[0] ? e->detail : "-");
            fputs("</td></tr>\n", f);
        }
        fputs("</tbody></table>\n", f);
    }
    fputs("<footer>", f);
    num_str(r->records, buf, sizeof buf);
    fprintf(f, "%s records from %llu runtime start%s", buf, (unsigned long long)r->runtime_opens,
            r->runtime_opens == 1 ? "" : "s");
    if (r->retention)
        fprintf(f, "; %llu segments deleted by retention (recorded in the trail)", (unsigned long long)r->retention);
    fputs(". Each record is chained to the one before it with HMAC-SHA-256 and sealed by checkpoints; "
          "<code>gms audit verify</code> checks the chain with the trail's key. Memory in use counts bytes requested, "
          "rebuilt from the allocation, free and leak records.", f);
    if (s.checkpoints) {
        fputs(" Last checkpoint MAC: <code>", f);
        for (int i = 0; i < 16; i++)
            fprintf(f, "%02x", s.last_checkpoint_mac[i]);
        fputs("&hellip;</code>", f);
    }
    fputs("</footer>\n</main></body></html>\n", f);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    for (size_t i = 0; i < r->nt; i++)
        free(r->t[i].pts);
    free(r->t);
    free(r);
    if (bad) {
        fprintf(stderr, "gms audit report: cannot write %s\n", html);
        return 2;
    }
    printf("wrote %s\n", html);
    if (s.status == GMS_TRAIL_TAMPERED) {
        fprintf(stderr, "gms audit report: TAMPERED: %s\n", s.message);
        return 1;
    }
    return 0;
}
