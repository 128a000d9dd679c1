/*
 * bench.c: gms-bench's entry point and the helpers its commands share.
 *
 * `gms-bench latency`, `replay` and `pressure` live in latency.c, replay.c
 * and pressure.c (`audit` in audit.c); this file picks the command and provides the clock, percentiles, RNG,
 * JSON lines, argument parsing and runtime setup they both use, so the two
 * measure and print in exactly the same way.
 */
#include "bench.h"
#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- time and statistics ---- */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_timer_overhead_ns(void)
{
    /* Odd count: the median is one sample. Enough rounds that the first
     * calls (page faults in the vDSO, cold caches) do not matter. */
    enum { ROUNDS = 20001 };
    uint64_t *v = malloc(ROUNDS * sizeof *v);
    if (!v)
        return 0;
    for (size_t i = 0; i < ROUNDS; i++) {
        uint64_t t0 = bench_now_ns();
        uint64_t t1 = bench_now_ns();
        v[i] = t1 - t0;
    }
    bench_sort_u64(v, ROUNDS);
    uint64_t med = bench_percentile(v, ROUNDS, 0.5);
    free(v);
    return med;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void bench_sort_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    /* Nearest rank: the smallest sample with at least p of them at or
     * below it. */
    double rank = ceil(p * (double)n);
    size_t i = rank < 1 ? 0 : (size_t)rank - 1;
    return sorted[i < n ? i : n - 1];
}

uint64_t bench_sub_sat(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

uint64_t bench_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t bench_rng_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
    /* The modulo bias is far below anything a latency figure can show. */
    return lo + bench_rng_next(state) % (hi - lo + 1);
}

const char *bench_fmt_size(char *buf, size_t cap, uint64_t bytes)
{
    /* Powers of two (the latency sizes) read as KiB/MiB; anything else as
     * decimal GB/MB, as the trace summaries quote them. */
    int pow2 = bytes && (bytes & (bytes - 1)) == 0;
    if (pow2 && bytes >= (1u << 20) && bytes < (1ull << 40))
        snprintf(buf, cap, "%" PRIu64 " MiB", bytes >> 20);
    else if (pow2 && bytes >= (1u << 10) && bytes < (1u << 20))
        snprintf(buf, cap, "%" PRIu64 " KiB", bytes >> 10);
    else if (bytes >= 1000000000u)
        snprintf(buf, cap, "%.2f GB", (double)bytes / 1e9);
    else if (bytes >= 1000000u)
        snprintf(buf, cap, "%.2f MB", (double)bytes / 1e6);
    else
        snprintf(buf, cap, "%" PRIu64 " B", bytes);
    return buf;
}

/* ---- JSON ---- */

void bench_json_begin(bench_json *j, FILE *f)
{
    j->f = f;
    j->fields = 0;
    fputc('{', f);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_key(bench_json *j, const char *key)
{
    if (j->fields++)
        fputc(',', j->f);
    json_string(j->f, key);
    fputc(':', j->f);
}

void bench_json_str(bench_json *j, const char *key, const char *val)
{
    json_key(j, key);
    json_string(j->f, val);
}

void bench_json_u64(bench_json *j, const char *key, uint64_t val)
{
    json_key(j, key);
    fprintf(j->f, "%" PRIu64, val);
}

void bench_json_f64(bench_json *j, const char *key, double val)
{
    json_key(j, key);
    /* JSON has no NaN or infinity. */
    if (isfinite(val))
        fprintf(j->f, "%.4f", val);
    else
        fputs("null", j->f);
}

void bench_json_bool(bench_json *j, const char *key, int val)
{
    json_key(j, key);
    fputs(val ? "true" : "false", j->f);
}

void bench_json_end(bench_json *j)
{
    fputs("}\n", j->f);
    fflush(j->f);
}

/* ---- command line ---- */

void bench_usage(FILE *f)
{
    fputs("usage: gms-bench latency [--json] [--iters N] [--safety on|off]\n"
          "       gms-bench replay [--json] [--safety on|off] FILE.csv.gz...\n"
          "       gms-bench audit [--json] [--records N] [--pairs N] [--no-replay]\n"
          "                       [--dir DIR] [FILE.csv.gz...]\n"
          "       gms-bench pressure [--json] [--iters N] [--safety on|off]\n"
          "\n"
          "latency  alloc+free pair latency on a private host runtime, sizes\n"
          "         256 B..256 MiB, against malloc/free; then per-op cost with\n"
          "         1,000 and 1,000,000 live allocations. --iters N sets the\n"
          "         samples for small sizes (default 100000; fewer for big).\n"
          "replay   replays allocation traces (gzip CSV: seq,op,id,size,\n"
          "         stream,t_us) and reports peak live, peak held,\n"
          "         fragmentation and ns per operation.\n"
          "audit    the audit trail: records/s the writer sustains, the pair\n"
          "         with audit off, strict and lossy, replay at recorded pace.\n"
          "pressure the pressure ladder's recovery rate: allocations refused by\n"
          "         max_held_bytes or a tenant quota while garbage waits for a\n"
          "         gms_on_pressure callback (a simulated collector); four\n"
          "         scenarios, --iters N allocations each (default 10000).\n"
          "--safety redzones, poison, quarantine, wipe: on (default) or off.\n"
          "         latency measures both and reports the ratio either way.\n"
          "--json   one JSON object per line instead of a table.\n"
          "--backend host (default), cuda or auto: the runtime's backend.\n"
          "\n"
          "exit: 0 ok, 1 the library failed, 2 bad usage or input.\n",
          f);
}

static int usage_error(const char *fmt, const char *what)
{
    fputs("gms-bench: ", stderr);
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    bench_usage(stderr);
    return BENCH_EXIT_USAGE;
}

gms_backend_kind bench_backend = GMS_BACKEND_HOST;

int bench_parse_args(int argc, char **argv, unsigned allow, bench_args *out)
{
    memset(out, 0, sizeof *out);
    /* Positional arguments are gathered in place: argv outlives the run. */
    out->files = argv;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            out->json = 1;
        } else if ((allow & BENCH_ARG_ITERS) && strcmp(a, "--iters") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs a number", a);
            const char *v = argv[++i];
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-' || n == 0 ||
                n > 100000000ull)
                return usage_error("--iters: not a count in 1..1e8: %s", v);
            out->iters = n;
        } else if ((allow & BENCH_ARG_SAFETY) && strcmp(a, "--safety") == 0) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (strcmp(v, "on") == 0)
                out->safety = GMS_SAFETY_ON;
            else if (strcmp(v, "off") == 0)
                out->safety = GMS_SAFETY_OFF;
            else
                return usage_error("--safety: expected on or off, got '%s'", v);
        } else if (strcmp(a, "--backend") == 0) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (strcmp(v, "host") == 0)
                bench_backend = GMS_BACKEND_HOST;
            else if (strcmp(v, "cuda") == 0)
                bench_backend = GMS_BACKEND_CUDA;
            else if (strcmp(v, "auto") == 0)
                bench_backend = GMS_BACKEND_AUTO;
            else
                return usage_error("--backend: expected host, cuda or auto, got '%s'", v);
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            bench_usage(stdout);
            return BENCH_EXIT_USAGE;
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option: %s", a);
        } else if (allow & BENCH_ARG_FILES) {
            out->files[out->nfiles++] = argv[i];
        } else {
            return usage_error("unexpected argument: %s", a);
        }
    }
    return 0;
}

/* ---- gms ---- */

void bench_report_gms(const char *what, int rc)
{
    fprintf(stderr, "gms-bench: %s: %s: %s\n", what, gms_strerror(rc),
            gms_error_last());
}

int bench_open_host(gms_runtime **rt, gms_context **ctx, gms_safety_mode safety)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = bench_backend;
    o.safety = safety;
    *rt = NULL;
    *ctx = NULL;
    int rc = gms_runtime_open(rt, &o);
    if (rc != GMS_OK) {
        bench_report_gms("opening a runtime", rc);
        return rc;
    }
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = "bench";
    d.user = "bench";
    rc = gms_context_open(ctx, *rt, &d);
    if (rc != GMS_OK) {
        bench_report_gms("opening a context", rc);
        gms_runtime_close(*rt);
        *rt = NULL;
    }
    return rc;
}

void bench_close(gms_runtime *rt, gms_context *ctx)
{
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

/* ---- entry point ---- */

int main(int argc, char **argv)
{
    if (argc < 2) {
        bench_usage(stderr);
        return BENCH_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    bench_args args;
    int rc;
    if (strcmp(cmd, "latency") == 0) {
        if ((rc = bench_parse_args(argc - 2, argv + 2, BENCH_ARG_ITERS | BENCH_ARG_SAFETY, &args)))
            return rc;
        return bench_latency(&args);
    }
    if (strcmp(cmd, "replay") == 0) {
        if ((rc = bench_parse_args(argc - 2, argv + 2, BENCH_ARG_FILES | BENCH_ARG_SAFETY, &args)))
            return rc;
        if (args.nfiles == 0)
            return usage_error("%s: no trace files given", "replay");
        return bench_replay(&args);
    }
    if (strcmp(cmd, "pressure") == 0) {
        if ((rc = bench_parse_args(argc - 2, argv + 2, BENCH_ARG_ITERS | BENCH_ARG_SAFETY, &args)))
            return rc;
        return bench_pressure(&args);
    }
    if (strcmp(cmd, "audit") == 0)
        return bench_audit(argc - 1, argv + 1);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        bench_usage(stdout);
        return BENCH_EXIT_USAGE;
    }
    return usage_error("unknown command: %s", cmd);
}
