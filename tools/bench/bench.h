/*
 * bench.h: what the gms-bench commands share.
 *
 * gms-bench measures gms through its public API only: `latency` times
 * alloc+free against plain malloc/free, `replay` runs recorded PyTorch
 * allocation traces and reports fragmentation, `pressure` measures how
 * many would-be failures the pressure ladder recovers. The helpers here (clock,
 * percentiles, a seeded RNG, one-line JSON, argument parsing, opening a
 * private host runtime) live once so the commands stay short.
 */
#ifndef GMS_BENCH_H
#define GMS_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gms.h"

/* Exit codes: 0 ok, 1 the library failed (an allocation refused, a runtime
 * that would not open), 2 the command line or an input file is wrong. */
enum { BENCH_EXIT_OK = 0, BENCH_EXIT_FAIL = 1, BENCH_EXIT_USAGE = 2 };

/* ---- time and statistics ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
/* Median cost of an empty timed region (two bench_now_ns calls), measured
 * now: subtracted from individually timed operations. */
uint64_t bench_timer_overhead_ns(void);
/* Sorts ascending, then the nearest-rank percentile (0 < p <= 1). */
void bench_sort_u64(uint64_t *v, size_t n);
uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p);
/* a - b, or 0 where b is larger: overhead is a median, a sample can be
 * below it. */
uint64_t bench_sub_sat(uint64_t a, uint64_t b);

/* splitmix64: fixed seeds make the random sizes the same in every run and
 * for gms and its baseline. */
uint64_t bench_rng_next(uint64_t *state);
/* Uniform in [lo, hi]. */
uint64_t bench_rng_range(uint64_t *state, uint64_t lo, uint64_t hi);

/* "256 B", "4 KiB", "12.86 GB"-style text for tables. */
const char *bench_fmt_size(char *buf, size_t cap, uint64_t bytes);

/* ---- one JSON object per line ---- */

typedef struct bench_json {
    FILE *f;
    int fields; /* written so far: decides the comma */
} bench_json;

void bench_json_begin(bench_json *j, FILE *f);
void bench_json_str(bench_json *j, const char *key, const char *val);
void bench_json_u64(bench_json *j, const char *key, uint64_t val);
void bench_json_f64(bench_json *j, const char *key, double val);
void bench_json_bool(bench_json *j, const char *key, int val);
void bench_json_end(bench_json *j);

/* ---- command line ---- */

typedef struct bench_args {
    int json;           /* --json */
    gms_safety_mode safety; /* --safety on|off (default on) */
    uint64_t iters;     /* --iters N; 0 when not given */
    int nfiles;         /* positional arguments */
    char **files;
} bench_args;

enum { BENCH_ARG_ITERS = 1, BENCH_ARG_FILES = 2, BENCH_ARG_SAFETY = 4 };

/* Parses the arguments after the command name; `allow` is a mask of
 * BENCH_ARG_*. On a bad argument prints why and the usage, and returns
 * BENCH_EXIT_USAGE; else 0. */
int bench_parse_args(int argc, char **argv, unsigned allow, bench_args *out);
void bench_usage(FILE *f);

/* ---- gms ---- */

/* A fresh private runtime on the host backend with one context: the
 * figures then count only what this bench did. Prints why on failure. */
int bench_open_host(gms_runtime **rt, gms_context **ctx, gms_safety_mode safety);
/* The backend bench_open_host opens: --backend host|cuda|auto (default
 * host, despite the name, so earlier figures stay comparable). */
extern gms_backend_kind bench_backend;
void bench_close(gms_runtime *rt, gms_context *ctx);
/* Prints "gms-bench: what: GMS_E_...: last error" on stderr. */
void bench_report_gms(const char *what, int rc);

/* ---- commands ---- */

int bench_latency(const bench_args *args);
int bench_replay(const bench_args *args);
int bench_pressure(const bench_args *args);

#endif /* GMS_BENCH_H */
