/*
 * audit_cmd.c: `gms audit ...`: verify, export, query, report and keygen
 * over a trail directory (src/audit/reader.c does the reading and the
 * verification; this file parses arguments and prints).
 *
 * Exit status, for scripts: 0 verified (a torn tail from a crash is
 * reported but is not a failure), 1 the chain is broken (tampering), 2 a
 * usage error, an unreadable trail or a wrong key.
 */
#include "cli.h"
#include "gms.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

typedef struct args {
    const char *dir, *key_file, *format, *html, *output, *title;
    const char *tenant, *user, *ops, *since, *until, *result;
    long long limit;
} args;

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->limit = -1;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char **slot = NULL;
        if (s[0] != '-' || !s[1]) { /* "-" alone is a name, like any word */
            if (a->dir) {
                fprintf(stderr, "gms audit: unexpected argument '%s'\n", s);
                return -1;
            }
            a->dir = s;
            continue;
        }
        char name[64];
        const char *val = strchr(s, '=');
        size_t nl = val ? (size_t)(val - s) : strlen(s);
        if (nl >= sizeof name) {
            fprintf(stderr, "gms audit: unknown option '%s'\n", s);
            return -1;
        }
        memcpy(name, s, nl);
        name[nl] = 0;
        if (strcmp(name, "--key-file") == 0) slot = &a->key_file;
        else if (strcmp(name, "--format") == 0) slot = &a->format;
        else if (strcmp(name, "--html") == 0) slot = &a->html;
        else if (strcmp(name, "--output") == 0 || strcmp(name, "-o") == 0) slot = &a->output;
        else if (strcmp(name, "--title") == 0) slot = &a->title;
        else if (strcmp(name, "--tenant") == 0) slot = &a->tenant;
        else if (strcmp(name, "--user") == 0) slot = &a->user;
        else if (strcmp(name, "--op") == 0) slot = &a->ops;
        else if (strcmp(name, "--since") == 0) slot = &a->since;
        else if (strcmp(name, "--until") == 0) slot = &a->until;
        else if (strcmp(name, "--result") == 0) slot = &a->result;
        else if (strcmp(name, "--limit") == 0) {
            const char *v = val ? val + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "gms audit: --limit needs a value\n");
                return -1;
            }
            /* A count: "-1", "3x" or "" is not "no limit" or 0. */
            char *end;
            errno = 0;
            long long l = strtoll(v, &end, 10);
            if (!*v || *end || errno || l < 0) {
                fprintf(stderr, "gms audit: --limit needs a count (0 or more), not '%s'\n", v);
                return -1;
            }
            a->limit = l;
            continue;
        } else {
            fprintf(stderr, "gms audit: unknown option '%s'\n", s);
            return -1;
        }
        const char *v = val ? val + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "gms audit: %s needs a value\n", name);
            return -1;
        }
        *slot = v;
    }
    if (!a->dir) {
        fprintf(stderr, "gms audit: the trail directory is missing\n");
        return -1;
    }
    return 0;
}

/* The key from --key-file or GMS_AUDIT_KEY_FILE; 1 when none was named. */
static int load_key(const args *a, uint8_t *key, size_t *len)
{
    const char *kf = a->key_file ? a->key_file : getenv("GMS_AUDIT_KEY_FILE");
    if (!kf || !*kf)
        return 1;
    char err[512];
    if (gms__audit_key_load(kf, key, len, err, sizeof err) != 0) {
        fprintf(stderr, "gms audit: %s\n", err);
        return -1;
    }
    return 0;
}

void gms_cli_time(uint64_t ns, char *out, size_t size, int digits)
{
    time_t s = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (digits <= 0 || digits > 9) {
        snprintf(out, size, "%sZ", base);
        return;
    }
    unsigned long long frac = ns % 1000000000ull;
    char fr[16];
    snprintf(fr, sizeof fr, "%09llu", frac);
    fr[digits] = 0;
    snprintf(out, size, "%s.%sZ", base, fr);
}

void gms_cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

const char *gms_cli_language(int l)
{
    return l >= 0 && l <= GMS_LANG_OTHER ? gms_language_name((gms_language)l) : "";
}

const char *gms_cli_level(int l)
{
    return l >= 0 && l <= GMS_LEVEL_SECRET ? gms_level_name((gms_level)l) : "";
}

static const char *result_name(int rc)
{
    static char buf[64];
    const char *s = gms_strerror(rc);
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    return buf;
}

static void print_jsonl(FILE *f, const gms_trail_record *r)
{
    char t[64];
    gms_cli_time(r->time_ns, t, sizeof t, 9);
    const char *op = gms__trail_op_name(r->op);
    fprintf(f, "{\"seq\":%llu,\"time\":\"%s\",\"time_ns\":%llu,\"op\":", (unsigned long long)r->seq,
            t, (unsigned long long)r->time_ns);
    if (op)
        fprintf(f, "\"%s\"", op);
    else
        fprintf(f, "%d", r->op);
    fputs(",\"tenant\":", f);
    gms_cli_json_string(f, r->tenant);
    fputs(",\"user\":", f);
    gms_cli_json_string(f, r->user);
    fprintf(f, ",\"language\":\"%s\",\"level\":\"%s\",\"context\":%llu,\"handle\":\"0x%016llx\","
               "\"size\":%llu,\"result\":%d,\"result_name\":\"%s\",\"detail\":",
            gms_cli_language(r->language), gms_cli_level(r->level),
            (unsigned long long)r->context_id, (unsigned long long)r->handle,
            (unsigned long long)r->size, r->result, result_name(r->result));
    gms_cli_json_string(f, r->detail);
    fprintf(f, ",\"segment\":%llu}\n", (unsigned long long)r->segment);
}

/* Names and details come from whoever opened a context: control bytes
 * (a newline that forges a line, a terminal escape) are shown, not sent. */
static void put_clean(FILE *f, const char *s, bool quoted)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else if (quoted && (*p == '"' || *p == '\\'))
            fprintf(f, "\\%c", *p);
        else
            fputc(*p, f);
    }
}

static void print_text(FILE *f, const gms_trail_record *r)
{
    char t[64];
    gms_cli_time(r->time_ns, t, sizeof t, 6);
    const char *op = gms__trail_op_name(r->op);
    fprintf(f, "%8llu %s %-14s tenant=", (unsigned long long)r->seq, t, op ? op : "?");
    put_clean(f, r->tenant[0] ? r->tenant : "-", false);
    fputs(" user=", f);
    put_clean(f, r->user[0] ? r->user : "-", false);
    fprintf(f, " lang=%s handle=0x%016llx size=%llu result=%s",
            r->language >= 0 ? gms_cli_language(r->language) : "-",
            (unsigned long long)r->handle, (unsigned long long)r->size, result_name(r->result));
    if (r->detail[0]) {
        fputs(" detail=\"", f);
        put_clean(f, r->detail, true);
        fputc('"', f);
    }
    fputc('\n', f);
}

/* TIME: 2026-01-02, 2026-01-02T03:04:05[.fff][Z], "2026-01-02 03:04:05",
 * @UNIXSECONDS, or relative to now: -30s, -15m, -2h, -7d. Anything else is
 * refused; times past what 64-bit nanoseconds hold (the year 2554) mean
 * the end of time, before 1970 its start. */
static uint64_t ns_of(double seconds)
{
    return seconds <= 0 ? 0 : seconds >= 1.8e10 ? UINT64_MAX : (uint64_t)(seconds * 1e9);
}

static int parse_time(const char *s, uint64_t *ns)
{
    if (s[0] == '@' || s[0] == '-') {
        char *end;
        double v = strtod(s + 1, &end);
        if (end == s + 1 || !isfinite(v) || v < 0)
            return -1;
        if (s[0] == '@') {
            if (*end)
                return -1;
            *ns = ns_of(v);
            return 0;
        }
        double mul = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : *end == 'd' ? 86400 : -1;
        if (mul < 0 || end[1])
            return -1;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        *ns = ns_of((double)now.tv_sec + now.tv_nsec / 1e9 - v * mul);
        return 0;
    }
    int y, mo, d, h = 0, mi = 0, n = 0;
    double sec = 0;
    if (sscanf(s, "%d-%d-%d%n", &y, &mo, &d, &n) != 3)
        return -1;
    const char *p = s + n;
    if (*p == 'T' || *p == ' ') {
        int m2 = 0;
        if (sscanf(p + 1, "%d:%d:%lf%n", &h, &mi, &sec, &m2) < 2) {
            if (sscanf(p + 1, "%d:%d%n", &h, &mi, &m2) != 2)
                return -1;
        }
        p += 1 + m2;
    }
    if (*p == 'Z')
        p++;
    if (*p || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 ||
        h > 23 || mi < 0 || mi > 59 || !(sec >= 0 && sec < 60))
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    time_t t = timegm(&tm);
    if (t < 0 || tm.tm_mday != d) /* February 30th came back as March 2nd */
        return -1;
    *ns = t < 18000000000ll ? (uint64_t)t * 1000000000ull + (uint64_t)(sec * 1e9) : UINT64_MAX;
    return 0;
}

typedef struct filter {
    const char *tenant, *user;
    bool ops[64];
    bool any_op;
    uint64_t since, until;
    int result; /* 0 any, 1 ok, 2 errors */
    long long limit, shown;
    bool jsonl;
    FILE *out;
} filter;

static int query_cb(void *user, const gms_trail_record *r)
{
    filter *f = user;
    if (f->tenant && strcmp(f->tenant, r->tenant) != 0)
        return 0;
    if (f->user && strcmp(f->user, r->user) != 0)
        return 0;
    if (f->any_op && (r->op < 0 || r->op >= 64 || !f->ops[r->op]))
        return 0;
    if (r->time_ns < f->since || r->time_ns > f->until)
        return 0;
    if ((f->result == 1 && r->result != 0) || (f->result == 2 && r->result == 0))
        return 0;
    if (f->limit >= 0 && f->shown >= f->limit)
        return 1; /* --limit 0 prints nothing */
    if (f->jsonl)
        print_jsonl(f->out, r);
    else
        print_text(f->out, r);
    f->shown++;
    return f->limit >= 0 && f->shown >= f->limit;
}

/* Reports a walk's outcome on stderr for the reading commands. */
static int finish(const gms_trail_summary *s, const char *dir)
{
    if (s->status == GMS_TRAIL_TAMPERED) {
        fprintf(stderr, "gms audit: TAMPERED: %s/%s\n", dir, s->message);
        return 1;
    }
    if (s->status != GMS_TRAIL_OK) {
        fprintf(stderr, "gms audit: %s\n", s->message);
        return 2;
    }
    if (s->torn[0])
        fprintf(stderr, "gms audit: note: torn tail: %s\n", s->torn);
    if (!s->verified)
        fprintf(stderr, "gms audit: note: not verified (no --key-file): records were read without checking their MACs\n");
    return 0;
}

static int cmd_verify(const args *a)
{
    uint8_t key[GMS_AUDIT_KEY_MAX];
    size_t len = 0;
    int k = load_key(a, key, &len);
    if (k) {
        if (k > 0)
            fprintf(stderr, "gms audit verify: the key is needed: --key-file FILE (or GMS_AUDIT_KEY_FILE)\n");
        return 2;
    }
    gms_trail_summary s;
    gms__trail_read(a->dir, key, len, NULL, NULL, &s);
    OPENSSL_cleanse(key, sizeof key);
    if (s.status == GMS_TRAIL_ERROR) {
        fprintf(stderr, "gms audit verify: %s\n", s.message);
        return 2;
    }
    printf("trail     %s\n", a->dir);
    printf("segments  %llu (%llu to %llu)%s\n", (unsigned long long)s.segments,
           (unsigned long long)s.first_segment, (unsigned long long)s.last_segment,
           s.retention_gap ? ", older segments removed by retention; verified from the oldest kept" : "");
    char t0[64] = "-", t1[64] = "-";
    if (s.records) {
        gms_cli_time(s.first_time_ns, t0, sizeof t0, 3);
        gms_cli_time(s.last_time_ns, t1, sizeof t1, 3);
    }
    printf("records   %llu (seq %llu to %llu), %s to %s\n", (unsigned long long)s.records,
           (unsigned long long)s.first_seq, (unsigned long long)s.last_seq, t0, t1);
    printf("sealed    %llu checkpoints, last seals seq %llu; %llu record%s after it (chained, not yet sealed)\n",
           (unsigned long long)s.checkpoints, (unsigned long long)s.sealed_seq,
           (unsigned long long)s.unsealed, s.unsealed == 1 ? "" : "s");
    if (s.checkpoints) {
        printf("anchor    last checkpoint MAC ");
        for (int i = 0; i < 16; i++)
            printf("%02x", s.last_checkpoint_mac[i]);
        printf("...\n");
    }
    if (s.acknowledged_torn)
        printf("restarts  %llu torn bytes after crashes, recorded when the trail was reopened\n",
               (unsigned long long)s.acknowledged_torn);
    if (s.status == GMS_TRAIL_TAMPERED) {
        printf("TAMPERED  %s\n", s.message);
        printf("          the chain is intact up to record seq %llu; the first record where it breaks is seq %llu\n",
               (unsigned long long)(s.broken_seq ? s.broken_seq - 1 : 0),
               (unsigned long long)s.broken_seq);
        return 1;
    }
    if (s.torn[0])
        printf("TORN TAIL %s\n", s.torn);
    printf("OK        the chain verifies: every record from seq %llu to %llu is authentic, complete and in order\n",
           (unsigned long long)s.first_seq, (unsigned long long)s.last_seq);
    return 0;
}

static int cmd_read(const args *a, bool query)
{
    filter f;
    memset(&f, 0, sizeof f);
    f.until = UINT64_MAX;
    f.limit = a->limit;
    f.out = stdout;
    const char *fmt = a->format ? a->format : (query ? "text" : NULL);
    if (!fmt) {
        fprintf(stderr, "gms audit export: --format jsonl is required\n");
        return 2;
    }
    if (strcmp(fmt, "jsonl") == 0)
        f.jsonl = true;
    else if (!query || strcmp(fmt, "text") != 0) {
        fprintf(stderr, "gms audit: unknown format '%s' (jsonl%s)\n", fmt, query ? " or text" : "");
        return 2;
    }
    if (query) {
        f.tenant = a->tenant;
        f.user = a->user;
        if (a->ops) {
            char *buf = strdup(a->ops); /* whole: a cut list could name another op */
            if (!buf) {
                fprintf(stderr, "gms audit query: out of memory\n");
                return 2;
            }
            for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int op = gms__trail_op_parse(t);
                if (op < 0) {
                    fprintf(stderr, "gms audit query: unknown op '%s'\n", t);
                    free(buf);
                    return 2;
                }
                f.ops[op] = true;
                f.any_op = true;
            }
            free(buf);
        }
        if ((a->since && parse_time(a->since, &f.since)) ||
            (a->until && parse_time(a->until, &f.until))) {
            fprintf(stderr, "gms audit query: bad time '%s' (2026-01-02, 2026-01-02T03:04:05Z, @unix, -2h)\n",
                    a->since && parse_time(a->since, &f.since) ? a->since : a->until);
            return 2;
        }
        if (a->result)
            f.result = strcmp(a->result, "ok") == 0 ? 1 : strcmp(a->result, "error") == 0 ? 2 : -1;
        if (f.result < 0) {
            fprintf(stderr, "gms audit query: --result ok or error\n");
            return 2;
        }
    }
    if (a->output && !(f.out = fopen(a->output, "w"))) {
        fprintf(stderr, "gms audit: cannot write %s: %s\n", a->output, strerror(errno));
        return 2;
    }
    uint8_t key[GMS_AUDIT_KEY_MAX];
    size_t len = 0;
    int k = load_key(a, key, &len);
    if (k < 0)
        return 2;
    gms_trail_summary s;
    gms__trail_read(a->dir, k == 0 ? key : NULL, len, query_cb, &f, &s);
    OPENSSL_cleanse(key, sizeof key);
    if (f.out != stdout && fclose(f.out) != 0) {
        fprintf(stderr, "gms audit: cannot write %s: %s\n", a->output, strerror(errno));
        return 2;
    }
    return finish(&s, a->dir);
}

static int cmd_keygen(const args *a)
{
    uint8_t raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        fprintf(stderr, "gms audit keygen: no randomness\n");
        return 2;
    }
    char hex[66];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    hex[64] = '\n';
    int fd = open(a->dir, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "gms audit keygen: %s: %s\n", a->dir, strerror(errno));
        return 2;
    }
    int ok = write(fd, hex, 65) == 65;
    ok = close(fd) == 0 && ok;
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(hex, sizeof hex);
    if (!ok) {
        fprintf(stderr, "gms audit keygen: cannot write %s\n", a->dir);
        return 2;
    }
    printf("wrote a new 256-bit audit key to %s (keep a copy away from this machine)\n", a->dir);
    return 0;
}

int gms_cli_audit(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: gms audit verify|export|query|report|keygen DIR [options]\n");
        return 2;
    }
    args a;
    if (parse_args(argc - 1, argv + 1, &a) != 0)
        return 2;
    const char *cmd = argv[0];
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(&a);
    if (strcmp(cmd, "export") == 0)
        return cmd_read(&a, false);
    if (strcmp(cmd, "query") == 0)
        return cmd_read(&a, true);
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(&a);
    if (strcmp(cmd, "report") == 0) {
        if (!a.html) {
            fprintf(stderr, "gms audit report: --html FILE is required\n");
            return 2;
        }
        uint8_t key[GMS_AUDIT_KEY_MAX];
        size_t len = 0;
        int k = load_key(&a, key, &len);
        if (k < 0)
            return 2;
        int rc = gms_cli_report(a.dir, k == 0 ? key : NULL, len, a.html, a.title);
        OPENSSL_cleanse(key, sizeof key);
        return rc;
    }
    fprintf(stderr, "gms audit: unknown subcommand '%s'\n", cmd);
    return 2;
}
