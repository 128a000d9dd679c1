/*
 * replay.c: `gms-bench replay`, fragmentation and speed on real allocation
 * traces.
 *
 * Each trace (bench/traces/README.md: gzip CSV `seq,op,id,size,stream,t_us`,
 * op `a` allocate or `f` free, id pairing a free with its allocation) is
 * loaded and checked whole first, then replayed as fast as possible through one
 * context of a fresh private runtime, twice in a row: the first pass maps
 * memory, the second is the steady state of a training loop's later steps.
 * ns/op is a pass's wall time over its events. Fragmentation is
 * 1 - peak live / peak held, the figure bench/RESULTS.md compares with
 * PyTorch's and cudaMallocAsync's allocators on the same traces.
 *
 * With --backend cuda gms is replayed through its stream-ordered calls on
 * one stream, and then the same two passes through the driver's own
 * stream-ordered allocator (cuMemAllocAsync, cuda_async.c) on that stream,
 * configured as PyTorch's cudaMallocAsync backend configures it: both
 * measured by the same clock around the same loop, the stream's
 * synchronization included, in the same process.
 */
#include "bench.h"
#include "cuda_async.h"

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

/* What one trace's replay measured. [0] is the first pass, on a fresh gms
 * runtime or an emptied pool, which also pays for mapping memory; [1] the
 * second, warm pass right after it, the steady state of a training loop's
 * later steps. Peaks are read after each pass, so [1] covers both. */
typedef struct replay_result {
    uint64_t wall_ns[2];
    uint64_t peak_held[2];
    uint64_t maps[2], unmaps[2]; /* runs mapped and unmapped by each pass */
    const char *backend;
    /* cuMemAllocAsync on the default pool (--backend cuda only). */
    uint64_t cma_wall_ns[2];
    uint64_t cma_reserved[2]; /* CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH */
} replay_result;

/* "replay NAME: event I of N (alloc id X, S bytes)", for error messages. */
static void event_what(char *buf, size_t cap, const char *who, const trace *t, size_t i)
{
    const event *e = &t->ev[i];
    snprintf(buf, cap, "%s %.100s: event %zu of %zu (%s id %u, %llu bytes)", who, t->name,
             i + 1, t->n, e->op == 'a' ? "alloc" : "free", e->id,
             (unsigned long long)e->size);
}

/* One timed pass through gms. `async` (--backend cuda): the stream-ordered
 * calls on the bench's stream, whose synchronization is timed too, since
 * the work they queued is part of their cost. Else gms_alloc/gms_free. */
static int gms_pass(const trace *t, gms_context *ctx, int async, gms_buf *h, uint64_t *wall_ns)
{
    void *stream = async ? bench_cuda_stream() : NULL;
    uint64_t live = 0;
    int rc;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < t->n; i++) {
        const event *e = &t->ev[i];
        if (e->op == 'a') {
            rc = async ? gms_alloc_async(ctx, e->size, 0, stream, &h[e->id])
                       : gms_alloc(ctx, e->size, 0, &h[e->id]);
        } else {
            rc = async ? gms_free_async(ctx, h[e->id], stream) : gms_free(ctx, h[e->id]);
            h[e->id] = GMS_BUF_NULL;
        }
        if (rc == GMS_OK) {
            /* Only for the message below; cheap beside the call. */
            live = e->op == 'a' ? live + e->size : live - e->size;
        } else {
            char what[256];
            if (e->op == 'a')
                h[e->id] = GMS_BUF_NULL;
            event_what(what, sizeof what, "replay", t, i);
            bench_report_gms(what, rc);
            if (rc == GMS_E_NO_MEMORY)
                fprintf(stderr, "gms-bench: %s: out of memory with %.2f GB "
                        "live allocated by the trace (peak live %.2f GB)\n",
                        t->name, (double)live / 1e9, (double)t->peak_live / 1e9);
            return BENCH_EXIT_FAIL;
        }
    }
    if (async && bench_cuda_sync())
        return BENCH_EXIT_FAIL;
    *wall_ns = bench_now_ns() - t0;
    return 0;
}

/* Frees the blocks a pass left live (the trace never frees weights or
 * caches at exit), outside the timing, so the next pass starts as the
 * first did; closing the context would reclaim them too, but as leaks. */
static int gms_free_live(const trace *t, gms_context *ctx, int async, gms_buf *h)
{
    int rc, ret = 0;
    for (uint32_t id = 0; id < t->ids; id++) {
        if (h[id] == GMS_BUF_NULL)
            continue;
        rc = async ? gms_free_async(ctx, h[id], bench_cuda_stream()) : gms_free(ctx, h[id]);
        h[id] = GMS_BUF_NULL;
        if (rc != GMS_OK && ret == 0) {
            bench_report_gms("freeing the blocks live at the end", rc);
            ret = BENCH_EXIT_FAIL;
        }
    }
    if (async && bench_cuda_sync())
        ret = BENCH_EXIT_FAIL;
    return ret;
}

/* Both passes through one context of a fresh private runtime. */
static int trace_replay(const trace *t, gms_safety_mode safety, int async, replay_result *r)
{
    gms_runtime *rt;
    gms_context *ctx;
    int rc, ret = 0;
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
    uint64_t maps = 0, unmaps = 0;
    for (int pass = 0; pass < 2 && ret == 0; pass++) {
        ret = gms_pass(t, ctx, async, h, &r->wall_ns[pass]);
        gms_stats s;
        if (ret == 0 && (rc = gms_stats_get(rt, &s)) != GMS_OK) {
            bench_report_gms("gms_stats_get", rc);
            ret = BENCH_EXIT_FAIL;
        }
        if (ret == 0) {
            r->peak_held[pass] = s.peak_held_bytes;
            r->maps[pass] = s.maps - maps;
            r->unmaps[pass] = s.unmaps - unmaps;
            maps = s.maps;
            unmaps = s.unmaps;
        }
        if (gms_free_live(t, ctx, async, h) && ret == 0)
            ret = BENCH_EXIT_FAIL;
    }
    free(h);
    bench_close(rt, ctx);
    return ret;
}

/* The same pass through cuMemAllocAsync/cuMemFreeAsync, timed the same
 * way, with the same bookkeeping in the loop. */
static int cma_pass(const trace *t, bench_cuda_ptr *p, uint64_t *wall_ns)
{
    uint64_t live = 0;
    int r;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < t->n; i++) {
        const event *e = &t->ev[i];
        if (e->op == 'a') {
            r = bench_cuda_alloc(e->size, &p[e->id]);
        } else {
            r = bench_cuda_free(p[e->id]);
            p[e->id] = 0;
        }
        if (r == 0) {
            live = e->op == 'a' ? live + e->size : live - e->size;
        } else {
            char what[320];
            event_what(what, sizeof what, "cuMemAllocAsync replay", t, i);
            snprintf(what + strlen(what), sizeof what - strlen(what),
                     " with %.2f GB live", (double)live / 1e9);
            bench_cuda_report(what, r);
            return BENCH_EXIT_FAIL;
        }
    }
    if (bench_cuda_sync())
        return BENCH_EXIT_FAIL;
    *wall_ns = bench_now_ns() - t0;
    return 0;
}

static int trace_replay_cma(const trace *t, replay_result *r)
{
    int ret, rc;
    bench_cuda_ptr *p = calloc(t->ids ? t->ids : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "gms-bench: %s: out of host memory\n", t->name);
        return BENCH_EXIT_FAIL;
    }
    ret = bench_cuda_pool_empty();
    for (int pass = 0; pass < 2 && ret == 0; pass++) {
        ret = cma_pass(t, p, &r->cma_wall_ns[pass]);
        if (ret == 0)
            ret = bench_cuda_pool_reserved_high(&r->cma_reserved[pass]);
        /* What the trace left live, untimed, as for gms. */
        for (uint32_t id = 0; id < t->ids; id++) {
            if ((rc = bench_cuda_free(p[id])) != 0 && ret == 0) {
                bench_cuda_report("cuMemFreeAsync (the blocks live at the end)", rc);
                ret = BENCH_EXIT_FAIL;
            }
            p[id] = 0;
        }
        if (bench_cuda_sync())
            ret = BENCH_EXIT_FAIL;
    }
    /* The next trace's gms runtime gets the whole device. */
    if (bench_cuda_pool_empty())
        ret = BENCH_EXIT_FAIL;
    free(p);
    return ret;
}

static double frag_of(uint64_t live, uint64_t held)
{
    return held ? 1.0 - (double)live / (double)held : 0.0;
}

static double per_op(const trace *t, uint64_t ns)
{
    return t->n ? (double)ns / (double)t->n : 0.0;
}

static void print_result(const bench_args *args, int cma, const trace *t,
                         const replay_result *r)
{
    double frag = frag_of(t->peak_live, r->peak_held[0]);
    double ns[2] = {per_op(t, r->wall_ns[0]), per_op(t, r->wall_ns[1])};
    double cma_frag = frag_of(t->peak_live, r->cma_reserved[0]);
    double cma_ns[2] = {per_op(t, r->cma_wall_ns[0]), per_op(t, r->cma_wall_ns[1])};
    if (args->json) {
        bench_json j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "replay");
        bench_json_str(&j, "trace", t->name);
        bench_json_u64(&j, "events", t->n);
        bench_json_u64(&j, "peak_live", t->peak_live);
        bench_json_u64(&j, "peak_held", r->peak_held[0]);
        bench_json_f64(&j, "frag", frag);
        bench_json_f64(&j, "ns_per_op", ns[0]);
        bench_json_f64(&j, "ns_per_op_warm", ns[1]);
        bench_json_u64(&j, "peak_held_both", r->peak_held[1]);
        bench_json_u64(&j, "maps_warm", r->maps[1]);
        bench_json_u64(&j, "unmaps_warm", r->unmaps[1]);
        if (cma) {
            bench_json_f64(&j, "cma_ns_per_op", cma_ns[0]);
            bench_json_f64(&j, "cma_ns_per_op_warm", cma_ns[1]);
            bench_json_f64(&j, "ratio", ns[0] / cma_ns[0]);
            bench_json_f64(&j, "ratio_warm", ns[1] / cma_ns[1]);
            bench_json_u64(&j, "cma_peak_reserved", r->cma_reserved[0]);
            bench_json_f64(&j, "cma_frag", cma_frag);
            bench_json_u64(&j, "cma_peak_reserved_both", r->cma_reserved[1]);
        }
        bench_json_str(&j, "backend", r->backend);
        bench_json_str(&j, "safety", args->safety == GMS_SAFETY_ON ? "on" : "off");
        bench_json_end(&j);
        return;
    }
    char live[32], held[32], res[32];
    char maps[48];
    snprintf(maps, sizeof maps, "%llu/%llu", (unsigned long long)r->maps[1], (unsigned long long)r->unmaps[1]);
    printf("%-24s %8zu %12s %12s %7.2f%% %9.1f %10.1f %14s", t->name, t->n,
           bench_fmt_size(live, sizeof live, t->peak_live),
           bench_fmt_size(held, sizeof held, r->peak_held[0]), frag * 100.0, ns[0], ns[1], maps);
    if (cma)
        printf(" %9.1f %9.1f %7.3f %12.3f %12s %8.2f%%", cma_ns[0], cma_ns[1],
               ns[0] / cma_ns[0], ns[1] / cma_ns[1],
               bench_fmt_size(res, sizeof res, r->cma_reserved[0]), cma_frag * 100.0);
    printf("  %s\n", r->backend);
    fflush(stdout);
}

/* The GPU run's summary line (tests/gpu/run.sh collects lines starting
 * RESULT): one per trace and safety setting. */
static void print_result_line(const bench_args *args, const trace *t, const replay_result *r)
{
    double ns[2] = {per_op(t, r->wall_ns[0]), per_op(t, r->wall_ns[1])};
    double cma_ns[2] = {per_op(t, r->cma_wall_ns[0]), per_op(t, r->cma_wall_ns[1])};
    printf("RESULT replay_%s_safety_%s events=%zu gms_ns_per_op=%.1f gms_warm_ns_per_op=%.1f "
           "cma_ns_per_op=%.1f cma_warm_ns_per_op=%.1f ratio=%.3f ratio_warm=%.3f "
           "gms_peak_held_MB=%.1f gms_frag=%.2f%% gms_warm_maps=%llu gms_warm_unmaps=%llu "
           "cma_peak_reserved_MB=%.1f cma_frag=%.2f%%\n",
           t->name, args->safety == GMS_SAFETY_ON ? "on" : "off", t->n, ns[0], ns[1], cma_ns[0],
           cma_ns[1], ns[0] / cma_ns[0], ns[1] / cma_ns[1], (double)r->peak_held[0] / 1e6,
           100.0 * frag_of(t->peak_live, r->peak_held[0]), (unsigned long long)r->maps[1],
           (unsigned long long)r->unmaps[1], (double)r->cma_reserved[0] / 1e6,
           100.0 * frag_of(t->peak_live, r->cma_reserved[0]));
}

int bench_replay(const bench_args *args)
{
    int ret = BENCH_EXIT_OK;
    /* The comparison with the driver's allocator only where gms itself is
     * asked for the CUDA backend; host and auto replay gms alone. */
    int cuda = bench_backend == GMS_BACKEND_CUDA, cuda_open = 0;
    trace *traces = calloc((size_t)args->nfiles, sizeof *traces);
    replay_result *res = calloc((size_t)args->nfiles, sizeof *res);
    int *ok = calloc((size_t)args->nfiles, sizeof *ok);
    if (!traces || !res || !ok) {
        fprintf(stderr, "gms-bench: out of host memory\n");
        free(traces);
        free(res);
        free(ok);
        return BENCH_EXIT_FAIL;
    }
    /* Every file is read before any is replayed: a bad or missing one fails
     * the run up front, not after minutes of output. */
    for (int i = 0; i < args->nfiles && ret == BENCH_EXIT_OK; i++) {
        traces[i].path = args->files[i];
        ret = trace_load(&traces[i]);
    }
    /* No GPU or no driver: said once, before the table. Device 0, as the
     * runtime's default options. */
    if (ret == BENCH_EXIT_OK && cuda) {
        ret = bench_cuda_open(0);
        cuda_open = ret == BENCH_EXIT_OK;
    }
    if (ret == BENCH_EXIT_OK && !args->json) {
        printf("%-24s %8s %12s %12s %8s %9s %10s %14s", "trace", "events", "peak live",
               "peak held", "frag", "ns/op", "warm ns/op", "warm map/unmap");
        if (cuda)
            printf(" %9s %9s %7s %12s %12s %9s", "cma ns/op", "cma warm", "gms/cma",
                   "warm gms/cma", "cma reserved", "cma frag");
        printf("  %s\n", "backend");
    }
    /* A trace the library cannot replay is reported and the rest still
     * run; the exit code says one failed. */
    for (int i = 0; i < args->nfiles && ret != BENCH_EXIT_USAGE && (!cuda || cuda_open); i++) {
        ok[i] = trace_replay(&traces[i], args->safety, cuda, &res[i]) == 0 &&
                (!cuda || trace_replay_cma(&traces[i], &res[i]) == 0);
        if (ok[i])
            print_result(args, cuda, &traces[i], &res[i]);
        else
            ret = BENCH_EXIT_FAIL;
    }
    /* After the table, not inside it; JSON lines carry the same figures. */
    for (int i = 0; i < args->nfiles && cuda && !args->json; i++)
        if (ok[i])
            print_result_line(args, &traces[i], &res[i]);
    if (cuda_open)
        bench_cuda_close();
    for (int i = 0; i < args->nfiles; i++)
        free(traces[i].ev);
    free(traces);
    free(res);
    free(ok);
    return ret;
}
