/*
 * replay.c: `gms-bench replay`, fragmentation on real allocation traces.
 *
 * Each trace (shared/traces: gzip CSV `seq,op,id,size,stream,t_us`, op `a`
 * allocate or `f` free, id pairing a free with its allocation) is loaded and
 * checked whole first, then replayed as fast as possible through one
 * context of a fresh private host runtime. Fragmentation is
 * 1 - peak live / peak held, the figure shared/ANCHORS.md gives for the
 * PyTorch, cudaMallocAsync and CuPy allocators on the same traces.
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define HEADER "seq,op,id,size,stream,t_us"
/* Ids are dense-ish counters; a bigger one is a broken file, not a reason
 * to allocate gigabytes of handle table. */
#define MAX_ID (1u << 26)

typedef struct event {
    uint64_t size;
    uint32_t id;
    char op; /* 'a' or 'f' */
} event;

typedef struct trace {
    const char *path;
    char name[256];     /* basename without .csv.gz */
    event *ev;
    size_t n, cap;
    uint32_t ids;       /* highest id + 1 */
    uint64_t peak_live; /* sum of requested sizes, computed while loading */
} trace;

static void trace_name(trace *t)
{
    const char *base = strrchr(t->path, '/');
    base = base ? base + 1 : t->path;
    snprintf(t->name, sizeof t->name, "%s", base);
    static const char *const suffixes[] = {".csv.gz", ".gz", ".csv"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t ln = strlen(t->name), ls = strlen(suffixes[i]);
        if (ln > ls && strcmp(t->name + ln - ls, suffixes[i]) == 0) {
            t->name[ln - ls] = '\0';
            break;
        }
    }
}

/* One unsigned decimal field ending at `sep`; strtoull alone would accept
 * signs, spaces and an empty field. */
static int field_u64(char **p, char sep, uint64_t *out)
{
    char *s = *p, *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != sep)
        return -1;
    *out = v;
    *p = end + (sep != '\0');
    return 0;
}

static int parse_line(char *line, event *e)
{
    uint64_t seq, id, size, stream, t_us;
    char *p = line;
    if (field_u64(&p, ',', &seq))
        return -1;
    if ((p[0] != 'a' && p[0] != 'f') || p[1] != ',')
        return -1;
    e->op = p[0];
    p += 2;
    if (field_u64(&p, ',', &id) || field_u64(&p, ',', &size) ||
        field_u64(&p, ',', &stream) || field_u64(&p, '\0', &t_us))
        return -1;
    if (id >= MAX_ID)
        return -1;
    e->id = (uint32_t)id;
    e->size = size;
    return 0;
}

static int load_error(const trace *t, unsigned long lineno, const char *why)
{
    fprintf(stderr, "gms-bench: %s:%lu: %s\n", t->path, lineno, why);
    return BENCH_EXIT_USAGE;
}

/* Reads and checks the whole trace: ids allocated twice or freed while not
 * live are errors here, so the timed loop needs no checks of its own. */
static int trace_load(trace *t)
{
    int ret = BENCH_EXIT_USAGE;
    char line[512], why[128];
    int zerr;
    unsigned long lineno = 0;
    uint64_t live = 0;
    /* Per id: 0 never seen, 1 live, 2 freed; and the size it was given. */
    unsigned char *state = NULL;
    uint64_t *sizes = NULL;
    size_t ids_cap = 0;

    trace_name(t);
    errno = 0;
    gzFile gz = gzopen(t->path, "rb");
    if (!gz) {
        fprintf(stderr, "gms-bench: cannot open %s: %s\n", t->path,
                errno ? strerror(errno) : "out of memory");
        return BENCH_EXIT_USAGE;
    }
    gzbuffer(gz, 1u << 17);
    while (gzgets(gz, line, sizeof line)) {
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n') {
            line[--len] = '\0';
        } else {
            /* A truncated or corrupt stream ends in a partial line: the
             * check after the loop reports it. */
            gzerror(gz, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END)
                break;
            if (!gzeof(gz)) {
                ret = load_error(t, lineno, "line too long");
                goto out;
            }
        }
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        if (lineno == 1) {
            if (strcmp(line, HEADER) != 0) {
                ret = load_error(t, lineno, "header is not " HEADER);
                goto out;
            }
            continue;
        }
        if (len == 0)
            continue; /* a trailing blank line */
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 4096;
            event *ev = realloc(t->ev, cap * sizeof *ev);
            if (!ev) {
                ret = load_error(t, lineno, "out of host memory");
                goto out;
            }
            t->ev = ev;
            t->cap = cap;
        }
        event *e = &t->ev[t->n];
        if (parse_line(line, e)) {
            snprintf(why, sizeof why, "malformed line: \"%.60s\"", line);
            ret = load_error(t, lineno, why);
            goto out;
        }
        if (e->id >= ids_cap) {
            size_t cap = ids_cap ? ids_cap : 4096;
            while (cap <= e->id)
                cap *= 2;
            unsigned char *st = realloc(state, cap);
            uint64_t *sz = st ? realloc(sizes, cap * sizeof *sz) : NULL;
            if (st)
                state = st;
            if (!st || !sz) {
                ret = load_error(t, lineno, "out of host memory");
                goto out;
            }
            sizes = sz;
            memset(state + ids_cap, 0, cap - ids_cap);
            ids_cap = cap;
        }
        if (e->id >= t->ids)
            t->ids = e->id + 1;
        if (e->op == 'a') {
            if (state[e->id] != 0) {
                snprintf(why, sizeof why, "id %u allocated twice", e->id);
                ret = load_error(t, lineno, why);
                goto out;
            }
            state[e->id] = 1;
            sizes[e->id] = e->size;
            live += e->size;
            if (live > t->peak_live)
                t->peak_live = live;
        } else {
            if (state[e->id] != 1) {
                snprintf(why, sizeof why, "free of unknown id %u%s", e->id,
                         state[e->id] == 2 ? " (already freed)" : "");
                ret = load_error(t, lineno, why);
                goto out;
            }
            state[e->id] = 2;
            /* The alloc's size, whatever the free's field says: the
             * replay counts live bytes from the events alone. */
            e->size = sizes[e->id];
            live -= e->size;
        }
        t->n++;
    }
    const char *msg = gzerror(gz, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        snprintf(why, sizeof why, "read error: %s", msg);
        ret = load_error(t, lineno, why);
        goto out;
    }
    if (lineno == 0) {
        ret = load_error(t, 0, "empty file");
        goto out;
    }
    ret = 0;
out:
    gzclose(gz);
    free(state);
    free(sizes);
    return ret;
}

typedef struct replay_result {
    uint64_t wall_ns;
    uint64_t peak_held;
    const char *backend;
} replay_result;

static int trace_replay(const trace *t, gms_safety_mode safety, replay_result *r)
{
    gms_runtime *rt;
    gms_context *ctx;
    int rc, ret = BENCH_EXIT_FAIL;
    gms_buf *h = calloc(t->ids ? t->ids : 1, sizeof *h);
    if (!h) {
        fprintf(stderr, "gms-bench: %s: out of host memory\n", t->name);
        return BENCH_EXIT_FAIL;
    }
    if (bench_open_host(&rt, &ctx, safety) != GMS_OK) {
        free(h);
        return BENCH_EXIT_FAIL;
    }
    r->backend = gms_runtime_backend_name(rt);
    uint64_t live = 0;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < t->n; i++) {
        const event *e = &t->ev[i];
        if (e->op == 'a') {
            rc = gms_alloc(ctx, e->size, 0, &h[e->id]);
        } else {
            rc = gms_free(ctx, h[e->id]);
            h[e->id] = GMS_BUF_NULL;
        }
        if (rc == GMS_OK) {
            /* Only for the message below; cheap beside the call. */
            live = e->op == 'a' ? live + e->size : live - e->size;
        } else {
            char what[256];
            if (e->op == 'a')
                h[e->id] = GMS_BUF_NULL;
            snprintf(what, sizeof what,
                     "replay %.100s: event %zu of %zu (%s id %u, %llu bytes)",
                     t->name, i + 1, t->n, e->op == 'a' ? "alloc" : "free",
                     e->id, (unsigned long long)e->size);
            bench_report_gms(what, rc);
            if (rc == GMS_E_NO_MEMORY)
                fprintf(stderr, "gms-bench: %s: out of memory with %.2f GB "
                        "live allocated by the trace (peak live %.2f GB)\n",
                        t->name, (double)live / 1e9, (double)t->peak_live / 1e9);
            goto out;
        }
    }
    r->wall_ns = bench_now_ns() - t0;
    gms_stats s;
    rc = gms_stats_get(rt, &s);
    if (rc != GMS_OK) {
        bench_report_gms("gms_stats_get", rc);
        goto out;
    }
    r->peak_held = s.peak_held_bytes;
    ret = 0;
out:
    /* Blocks the trace never frees (weights, caches at exit), outside the
     * timing; closing the context would reclaim them too, but as leaks. */
    for (uint32_t id = 0; id < t->ids; id++)
        if (h[id] != GMS_BUF_NULL && (rc = gms_free(ctx, h[id])) != GMS_OK &&
            ret == 0) {
            bench_report_gms("freeing the blocks live at the end", rc);
            ret = BENCH_EXIT_FAIL;
        }
    free(h);
    bench_close(rt, ctx);
    return ret;
}

static void print_result(const bench_args *args, const trace *t,
                         const replay_result *r)
{
    double frag = r->peak_held ? 1.0 - (double)t->peak_live /
                                           (double)r->peak_held
                               : 0.0;
    double ns_per_op = t->n ? (double)r->wall_ns / (double)t->n : 0.0;
    if (args->json) {
        bench_json j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "replay");
        bench_json_str(&j, "trace", t->name);
        bench_json_u64(&j, "events", t->n);
        bench_json_u64(&j, "peak_live", t->peak_live);
        bench_json_u64(&j, "peak_held", r->peak_held);
        bench_json_f64(&j, "frag", frag);
        bench_json_f64(&j, "ns_per_op", ns_per_op);
        bench_json_str(&j, "backend", r->backend);
        bench_json_str(&j, "safety", args->safety == GMS_SAFETY_ON ? "on" : "off");
        bench_json_end(&j);
    } else {
        char live[32], held[32];
        printf("%-24s %8zu %12s %12s %7.2f%% %9.1f  %s\n", t->name, t->n,
               bench_fmt_size(live, sizeof live, t->peak_live),
               bench_fmt_size(held, sizeof held, r->peak_held), frag * 100.0,
               ns_per_op, r->backend);
        fflush(stdout);
    }
}

int bench_replay(const bench_args *args)
{
    int ret = BENCH_EXIT_OK;
    trace *traces = calloc((size_t)args->nfiles, sizeof *traces);
    if (!traces) {
        fprintf(stderr, "gms-bench: out of host memory\n");
        return BENCH_EXIT_FAIL;
    }
    /* Every file is read before any is replayed: a bad or missing one fails
     * the run up front, not after minutes of output. */
    for (int i = 0; i < args->nfiles && ret == BENCH_EXIT_OK; i++) {
        traces[i].path = args->files[i];
        ret = trace_load(&traces[i]);
    }
    if (ret == BENCH_EXIT_OK && !args->json)
        printf("%-24s %8s %12s %12s %8s %9s  %s\n", "trace", "events",
               "peak live", "peak held", "frag", "ns/op", "backend");
    /* A trace the library cannot replay is reported and the rest still
     * run; the exit code says one failed. */
    for (int i = 0; i < args->nfiles && ret != BENCH_EXIT_USAGE; i++) {
        replay_result r;
        if (trace_replay(&traces[i], args->safety, &r) == 0)
            print_result(args, &traces[i], &r);
        else
            ret = BENCH_EXIT_FAIL;
    }
    for (int i = 0; i < args->nfiles; i++)
        free(traces[i].ev);
    free(traces);
    return ret;
}
