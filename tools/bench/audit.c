/*
 * audit.c: `gms-bench audit`: what the audit trail costs.
 *
 * Three figures, in one run, on this machine:
 * 1. Writer throughput: producer threads append records straight to the
 *    trail's rings; the writer thread numbers, chains (HMAC-SHA-256) and
 *    writes them. Records per second of wall time, and per second of the
 *    writer's own CPU time (process CPU minus the producers' CPU): the rate
 *    one core sustains.
 * 2. Tight loop: alloc+free pairs on one context, audit off, strict and
 *    lossy; ns per pair and the ratios. A tight loop makes two records per
 *    ~100 ns, faster than any writer drains, so strict mode measures the
 *    writer's pace (back-pressure) and lossy mode the caller's own cost.
 * 3. Trace replay at the recorded pace (t_us): each trace of shared/traces
 *    replayed through one context with audit off and on; the wall-time
 *    ratio is what the trail costs a real workload. Safety is off in the
 *    replay so that poisoning gigabytes does not hide the audit's cost.
 */
#include "audit.h"
#include "gms.h"
#include "audit/audit.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static uint64_t now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const uint8_t bench_key[32] = "gms-bench audit key, not secret";

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* Removes a trail directory this bench made, in C: a name reaches no
 * shell, whatever characters --dir or $TMPDIR hold. Links are removed,
 * never followed. */
static void rm_rf(const char *dir)
{
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "gms-bench audit: cannot remove %s: %s\n", dir, strerror(errno));
}

static int trail_dir(const char *base, char *out, size_t size)
{
    if ((size_t)snprintf(out, size, "%s/gms-bench-audit-XXXXXX", base) >= size) {
        fprintf(stderr, "gms-bench audit: directory name too long: %s\n", base);
        return -1;
    }
    if (!mkdtemp(out)) {
        fprintf(stderr, "gms-bench audit: cannot create a directory in %s: %s\n", base,
                strerror(errno));
        return -1;
    }
    return 0;
}

static void opts_init(gms_runtime_options *o, const char *dir, int lossy)
{
    gms_runtime_options d = GMS_RUNTIME_OPTIONS_INIT;
    *o = d;
    o->backend = GMS_BACKEND_HOST;
    o->audit_dir = dir;
    o->audit_key = dir ? bench_key : NULL;
    o->audit_key_len = dir ? sizeof bench_key : 0;
    o->audit_lossy = lossy;
}

/* ---- 1. writer throughput ---- */

typedef struct producer {
    gms_audit *a;
    uint64_t n, cpu_ns;
    int id;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    uint64_t c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    gms_audit_event e = {.op = GMS_AUDIT_ALLOC, .tenant = "tenant-bench", .user = "bench",
                         .level = GMS_LEVEL_INTERNAL, .language = GMS_LANG_C};
    e.context_id = (uint64_t)p->id + 1;
    for (uint64_t i = 0; i < p->n; i++) {
        e.op = i & 1 ? GMS_AUDIT_FREE : GMS_AUDIT_ALLOC;
        e.handle = 0x1000000 + i;
        e.size = 256 + (i & 1023);
        gms__audit_emit(p->a, &e);
    }
    p->cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    return NULL;
}

typedef struct writer_result {
    double wall_rps, writer_cpu_rps, emit_ns;
    uint64_t records;
} writer_result;

static int bench_writer(const char *base, uint64_t records, int producers, writer_result *r)
{
    char dir[1100];
    if (trail_dir(base, dir, sizeof dir))
        return -1;
    gms_runtime_options o;
    opts_init(&o, dir, 0);
    o.audit_segment_bytes = 256ull << 20;
    gms_audit *a = NULL;
    if (gms__audit_open(&a, &o) != GMS_OK || !a) {
        fprintf(stderr, "gms-bench audit: cannot open a trail: %s\n", gms_error_last());
        rm_rf(dir);
        return -1;
    }
    producer p[16];
    pthread_t t[16];
    uint64_t w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < producers; i++) {
        p[i] = (producer){a, records / (uint64_t)producers, 0, i};
        pthread_create(&t[i], NULL, produce, &p[i]);
    }
    uint64_t prod_cpu = 0;
    for (int i = 0; i < producers; i++) {
        pthread_join(t[i], NULL);
        prod_cpu += p[i].cpu_ns;
    }
    gms__audit_flush(a);
    uint64_t wall = now_ns(CLOCK_MONOTONIC) - w0, cpu = now_ns(CLOCK_PROCESS_CPUTIME_ID) - c0;
    gms__audit_close(a);
    rm_rf(dir);
    uint64_t wcpu = cpu > prod_cpu ? cpu - prod_cpu : 1;
    r->records = records;
    r->wall_rps = (double)records / ((double)wall / 1e9);
    r->writer_cpu_rps = (double)records / ((double)wcpu / 1e9);
    r->emit_ns = (double)prod_cpu / (double)records;
    return 0;
}

/* ---- 2. tight loop ---- */

static int pairs(const char *dir, int lossy, uint64_t n, double *ns_per_pair)
{
    gms_runtime_options o;
    opts_init(&o, dir, lossy);
    gms_runtime *rt;
    if (gms_runtime_open(&rt, &o) != GMS_OK) {
        fprintf(stderr, "gms-bench audit: %s\n", gms_error_last());
        return -1;
    }
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "tenant-bench";
    d.user = "bench";
    gms_context *c;
    if (gms_context_open(&c, rt, &d) != GMS_OK) {
        gms_runtime_close(rt);
        return -1;
    }
    gms_buf h;
    for (int i = 0; i < 1000; i++) /* warm: granules mapped, slots made */
        if (gms_alloc(c, 256, 0, &h) == GMS_OK)
            gms_free(c, h);
    if (dir)
        gms_audit_flush(rt);
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    for (uint64_t i = 0; i < n; i++) {
        if (gms_alloc(c, 256, 0, &h) != GMS_OK) {
            fprintf(stderr, "gms-bench audit: alloc: %s\n", gms_error_last());
            break;
        }
        gms_free(c, h);
    }
    if (dir && !lossy)
        gms_audit_flush(rt); /* strict: the pairs are done when their records are */
    uint64_t t1 = now_ns(CLOCK_MONOTONIC);
    *ns_per_pair = (double)(t1 - t0) / (double)n;
    gms_context_close(c);
    gms_runtime_close(rt);
    return 0;
}

/* ---- 3. trace replay at the recorded pace ---- */

typedef struct tev {
    uint64_t size, t_us;
    uint32_t id;
    char op;
} tev;

typedef struct trace {
    char name[256];
    tev *ev;
    size_t n;
    uint32_t ids;
} trace;

static int trace_load(const char *path, trace *t)
{
    memset(t, 0, sizeof *t);
    const char *b = strrchr(path, '/');
    snprintf(t->name, sizeof t->name, "%s", b ? b + 1 : path);
    char *dot = strstr(t->name, ".csv");
    if (dot)
        *dot = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return -1;
    char line[256];
    size_t cap = 0;
    while (gzgets(f, line, sizeof line)) {
        unsigned long long seq, id, size, stream, tus;
        char op;
        if (sscanf(line, "%llu,%c,%llu,%llu,%llu,%llu", &seq, &op, &id, &size, &stream, &tus) != 6)
            continue; /* the header */
        if ((op != 'a' && op != 'f') || id >= (1u << 26))
            continue;
        if (t->n == cap) {
            cap = cap ? cap * 2 : 4096;
            tev *nv = realloc(t->ev, cap * sizeof *nv);
            if (!nv)
                break;
            t->ev = nv;
        }
        t->ev[t->n++] = (tev){size ? size : 1, tus, (uint32_t)id, op};
        if (id + 1 > t->ids)
            t->ids = (uint32_t)id + 1;
    }
    gzclose(f);
    return t->n ? 0 : -1;
}

/* Blocks a trace never frees are reclaimed at the end: expected, quiet. */
static void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    if (level == GMS_LOG_ERROR)
        fprintf(stderr, "%s\n", msg);
}

/* Replays at the recorded pace; returns the wall time in ns (0 on error). */
static uint64_t replay(const trace *t, const char *dir)
{
    gms_runtime_options o;
    opts_init(&o, dir, 0);
    o.safety = GMS_SAFETY_OFF;
    o.log = quiet_log;
    gms_runtime *rt;
    if (gms_runtime_open(&rt, &o) != GMS_OK) {
        fprintf(stderr, "gms-bench audit: %s\n", gms_error_last());
        return 0;
    }
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "trace";
    d.user = "replay";
    d.language = GMS_LANG_PYTHON;
    gms_context *c;
    gms_buf *h = calloc(t->ids, sizeof *h);
    if (!h || gms_context_open(&c, rt, &d) != GMS_OK) {
        free(h);
        gms_runtime_close(rt);
        return 0;
    }
    uint64_t start = now_ns(CLOCK_MONOTONIC), t0 = t->ev[0].t_us;
    for (size_t i = 0; i < t->n; i++) {
        const tev *e = &t->ev[i];
        uint64_t due = start + (e->t_us - t0) * 1000;
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        if (due > now + 100000) { /* sleep when well ahead, spin the rest */
            struct timespec ts = {0, (long)(due - now - 50000)};
            nanosleep(&ts, NULL);
        }
        while (now_ns(CLOCK_MONOTONIC) < due) {
        }
        if (e->op == 'a') {
            if (!h[e->id] && gms_alloc(c, e->size, 0, &h[e->id]) != GMS_OK)
                h[e->id] = 0;
        } else if (h[e->id]) {
            gms_free(c, h[e->id]);
            h[e->id] = 0;
        }
    }
    uint64_t wall = now_ns(CLOCK_MONOTONIC) - start;
    gms_context_close(c); /* blocks still live at the end: reclaimed */
    gms_runtime_close(rt);
    free(h);
    return wall;
}

static int default_traces(char ***files, int *n)
{
    const char *shared = getenv("GMS_SHARED_DIR");
    char dirs[2][1100];
    snprintf(dirs[0], sizeof dirs[0], "%s/traces", shared ? shared : "../shared");
    snprintf(dirs[1], sizeof dirs[1], "/work/shared/traces");
    for (int k = 0; k < 2; k++) {
        DIR *d = opendir(dirs[k]);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            if (l < 8 || strcmp(de->d_name + l - 7, ".csv.gz") != 0)
                continue;
            char **nf = realloc(*files, (size_t)(*n + 1) * sizeof *nf);
            if (!nf)
                break;
            *files = nf;
            size_t pl = strlen(dirs[k]) + l + 2;
            (*files)[*n] = malloc(pl);
            snprintf((*files)[*n], pl, "%s/%s", dirs[k], de->d_name);
            (*n)++;
        }
        closedir(d);
        if (*n)
            return 0;
    }
    return -1;
}

/* A positive count, or 0 for anything else ("-5" is not 2^64 - 5). */
static uint64_t count_arg(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    return *s >= '0' && *s <= '9' && !*end && !errno ? v : 0;
}

int bench_audit(int argc, char **argv)
{
    int json = 0, do_replay = 1, producers = 1, nfiles = 0;
    uint64_t records = 4000000, npairs = 2000000;
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char **files = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--no-replay") == 0)
            do_replay = 0;
        else if (strcmp(argv[i], "--records") == 0 && i + 1 < argc)
            records = count_arg(argv[++i]);
        else if (strcmp(argv[i], "--pairs") == 0 && i + 1 < argc)
            npairs = count_arg(argv[++i]);
        else if (strcmp(argv[i], "--producers") == 0 && i + 1 < argc) {
            uint64_t p = count_arg(argv[++i]);
            producers = p <= 16 ? (int)p : 0;
        }
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            base = argv[++i];
        else if (argv[i][0] != '-') {
            char **nf = realloc(files, (size_t)(nfiles + 1) * sizeof *nf);
            if (!nf)
                return 1;
            files = nf;
            files[nfiles++] = strdup(argv[i]);
        } else {
            fprintf(stderr,
                    "usage: gms-bench audit [--json] [--records N] [--pairs N] [--producers N] [--dir DIR] [--no-replay] [TRACE.csv.gz...]\n");
            return 2;
        }
    }
    if (producers < 1 || producers > 16 || !records || !npairs) {
        fprintf(stderr, "gms-bench audit: --producers 1..16, --records and --pairs > 0\n");
        return 2;
    }

    writer_result w;
    if (bench_writer(base, records, producers, &w))
        return 1;

    char dir[1100];
    double off = 0, strict = 0, lossy = 0;
    if (pairs(NULL, 0, npairs, &off))
        return 1;
    if (trail_dir(base, dir, sizeof dir) || pairs(dir, 0, npairs, &strict))
        return 1;
    rm_rf(dir);
    if (trail_dir(base, dir, sizeof dir) || pairs(dir, 1, npairs, &lossy))
        return 1;
    rm_rf(dir);

    if (do_replay && !nfiles)
        default_traces(&files, &nfiles);
    double worst = 0;
    if (json) {
        printf("{\"bench\":\"audit\",\"writer_records\":%llu,\"writer_producers\":%d,"
               "\"writer_records_per_s\":%.0f,\"writer_records_per_cpu_s\":%.0f,"
               "\"emit_ns\":%.1f,\"target_records_per_s\":2000000,"
               "\"pair_ns_audit_off\":%.1f,\"pair_ns_audit_strict\":%.1f,\"pair_ns_audit_lossy\":%.1f,"
               "\"tight_ratio_strict\":%.3f,\"tight_ratio_lossy\":%.3f,\"replay\":[",
               (unsigned long long)w.records, producers, w.wall_rps, w.writer_cpu_rps, w.emit_ns,
               off, strict, lossy, strict / off, lossy / off);
    } else {
        printf("writer: %llu records from %d producer%s: %.2f M records/s wall, %.2f M records/s per writer CPU second (target 2 M/s); emit %.1f ns\n",
               (unsigned long long)w.records, producers, producers == 1 ? "" : "s",
               w.wall_rps / 1e6, w.writer_cpu_rps / 1e6, w.emit_ns);
        printf("tight loop alloc+free: audit off %.1f ns, strict %.1f ns (x%.2f), lossy %.1f ns (x%.2f)\n",
               off, strict, strict / off, lossy, lossy / off);
    }
    for (int i = 0; do_replay && i < nfiles; i++) {
        trace t;
        if (trace_load(files[i], &t) != 0) {
            fprintf(stderr, "gms-bench audit: cannot read trace %s\n", files[i]);
            continue;
        }
        uint64_t woff = replay(&t, NULL);
        if (trail_dir(base, dir, sizeof dir))
            return 1;
        uint64_t won = replay(&t, dir);
        rm_rf(dir);
        double ratio = woff ? (double)won / (double)woff : 0;
        if (ratio > worst)
            worst = ratio;
        double span = (double)(t.ev[t.n - 1].t_us - t.ev[0].t_us) / 1e6;
        if (json)
            printf("%s{\"trace\":\"%s\",\"events\":%zu,\"recorded_s\":%.3f,\"wall_s_audit_off\":%.4f,"
                   "\"wall_s_audit_on\":%.4f,\"ratio\":%.4f,\"overhead_pct\":%.2f}",
                   i ? "," : "", t.name, t.n, span, woff / 1e9, won / 1e9, ratio, (ratio - 1) * 100);
        else
            printf("replay %s: %zu events over %.3f s recorded: audit off %.4f s, on %.4f s: x%.4f (%+.2f%%; target <= +5%%)\n",
                   t.name, t.n, span, woff / 1e9, won / 1e9, ratio, (ratio - 1) * 100);
        free(t.ev);
    }
    if (json)
        printf("],\"replay_worst_ratio\":%.4f,\"replay_target_ratio\":1.05}\n", worst);
    for (int i = 0; i < nfiles; i++)
        free(files[i]);
    free(files);
    return 0;
}
