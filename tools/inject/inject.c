/*
 * inject.c: gms-inject, a fault-injection campaign that measures how much
 * of each class of memory misuse gms detects.
 *
 * For each class it runs many randomized trials (buffer sizes log-uniform
 * from 1 B to 1 MiB, random offsets, lengths, byte patterns and detection
 * paths), each on new buffers, and counts the trials in which gms noticed:
 * an error code, a violation callback, a leak count, or a hardware fault
 * (counted in a child process, or caught around the one raw write that
 * may fault). It prints, per class, the detection rate and its one-sided
 * 95% lower confidence bound (Clopper-Pearson; with no miss in n trials
 * that is 0.05^(1/n), so 30,000 clean trials prove 99.99%).
 *
 * On --backend cuda the same classes run on CUDA runtimes: the raw
 * pointers are device addresses, written with the driver's copy functions
 * (loaded with dlopen, as the backend does), and the writes that must fault
 * (wild_write, the chunk-guard trials of underflow_raw, the read-only-view
 * trials of immutable_write) are made from child processes with their own
 * CUDA contexts (see run_device_children).
 *
 * Only the public API is used: what the campaign measures is what a
 * language binding gets. A corrupting write always changes memory: the
 * injected bytes are the bytes found there XOR a random non-zero mask (a
 * write of the very bytes already there corrupts nothing).
 *
 *   gms-inject [--json] [--trials N] [--class NAME] [--seed S]
 *              [--backend host|cuda|auto] [--max-size B] [--jobs N] [--verbose]
 *
 * Exit status: 0 when every trial of every class run was detected, 1 when
 * some trial was missed, 2 on a usage or setup error.
 *
 * This file is the campaign driver; inject.h lists the files of the classes.
 */
#include "inject.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TRIALS 30000u
#define DEFAULT_MAX_SIZE (1u << 20)
#define TARGET 0.9999

/* ---- options, clock -------------------------------------------------- */

inject_options opt = {DEFAULT_TRIALS, 1, false, false, NULL, GMS_BACKEND_HOST, "host", 0, DEFAULT_MAX_SIZE, NULL};
bool on_cuda;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- one class's tally ----------------------------------------------- */

void miss(tally *t, const char *fmt, ...)
{
    if (!opt.verbose || t->misses_shown++ >= 20)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gms-inject: %s: missed: ", t->cls);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void count(tally *t, bool detected)
{
    t->trials++;
    t->detected += detected;
}

/* ---- statistics: the one-sided 95% Clopper-Pearson lower bound -------- */

/* The continued fraction of the incomplete beta function (Lentz). */
static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < tiny)
        d = tiny;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 100000; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15)
            break;
    }
    return h;
}

/* The regularized incomplete beta function I_x(a, b). */
static double betai(double a, double b, double x)
{
    if (x <= 0)
        return 0;
    if (x >= 1)
        return 1;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2))
        return exp(lbt) * betacf(a, b, x) / a;
    return 1 - exp(lbt) * betacf(b, a, 1 - x) / b;
}

/* The p at which P(X >= x | n, p) = 0.05: the one-sided 95% lower bound. */
static double lower95(uint64_t x, uint64_t n)
{
    if (n == 0 || x == 0)
        return 0;
    if (x == n)
        return pow(0.05, 1.0 / (double)n);
    double lo = 0, hi = (double)x / (double)n;
    for (int i = 0; i < 200; i++) {
        double mid = (lo + hi) / 2;
        /* P(X >= x) = I_p(x, n - x + 1), increasing in p. */
        if (betai((double)x, (double)(n - x + 1), mid) < 0.05)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* ---- driver ----------------------------------------------------------- */

typedef struct cls {
    const char *name;
    void (*run)(tally *t);
} cls;

static const cls classes[] = {
    {"double_free", run_double_free},
    {"stale_handle", run_stale_handle},
    {"forged_handle", run_forged_handle},
    {"cross_tenant", run_cross_tenant},
    {"host_oob", run_host_oob},
    {"overflow_raw", run_overflow_raw},
    {"underflow_raw", run_underflow_raw},
    {"write_after_free_raw", run_write_after_free_raw},
    {"leak", run_leak},
    {"quota", run_quota},
    {"wild_write", run_wild_write},
    {"immutable_write", run_immutable_write},
    {"sealed_tamper", run_sealed_tamper},
};
#define NCLASSES (sizeof classes / sizeof classes[0])

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void report(const tally *t, const char *backend)
{
    double rate = t->trials ? (double)t->detected / (double)t->trials : 0;
    double lb = lower95(t->detected, t->trials);
    if (opt.json) {
        printf("{\"class\":\"%s\",\"trials\":%" PRIu64 ",\"detected\":%" PRIu64
               ",\"rate\":%.6f,\"lower95\":%.8f,\"backend\":\"%s\",\"by_fault\":%" PRIu64
               ",\"seconds\":%.2f,\"seed\":%" PRIu64 ",\"how\":",
               t->cls, t->trials, t->detected, rate, lb, backend, t->by_fault, t->seconds, opt.seed);
        json_string(t->how);
        printf("}\n");
    } else {
        printf("%-22s %8" PRIu64 " %8" PRIu64 " %9.5f%% %9.5f%% %8" PRIu64 " %7.1f  %s\n", t->cls,
               t->trials, t->detected, 100 * rate, 100 * lb, t->by_fault, t->seconds,
               lb >= TARGET ? "yes" : t->detected == t->trials ? "more trials" : "NO");
    }
    fflush(stdout);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gms-inject [--json] [--trials N] [--class NAME] [--seed S]\n"
            "                  [--backend host|cuda|auto] [--max-size B] [--jobs N] [--verbose]\n"
            "Runs a fault-injection campaign and prints, per class, how many injected\n"
            "faults gms detected and the one-sided 95%% lower bound on the detection rate.\n"
            "  --trials N   trials per class (default %u)\n"
            "  --max-size B largest buffer size; sizes are log-uniform from 1 (default 1 MiB)\n"
            "  --class NAME run one class:",
            DEFAULT_TRIALS);
    for (size_t i = 0; i < NCLASSES; i++)
        fprintf(f, " %s", classes[i].name);
    fprintf(f, "\n  --jobs N     child processes in flight for the forking classes (default: 2 x CPUs)\n"
               "  --verbose    describe missed trials on stderr\n");
}

static uint64_t parse_u64(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || !*s || *end || *s == '-') {
        fprintf(stderr, "gms-inject: %s: '%s' is not a number\n", flag, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(a, "--json") == 0) {
            opt.json = true;
        } else if (strcmp(a, "--verbose") == 0) {
            opt.verbose = true;
        } else if (strcmp(a, "--trials") == 0 && has) {
            opt.trials = parse_u64(a, argv[++i]);
        } else if (strcmp(a, "--seed") == 0 && has) {
            opt.seed = parse_u64(a, argv[++i]);
        } else if (strcmp(a, "--max-size") == 0 && has) {
            opt.max_size = parse_u64(a, argv[++i]);
            if (opt.max_size < 1 || opt.max_size > (1ull << 32)) {
                fprintf(stderr, "gms-inject: --max-size: 1 to 4 GiB\n");
                return 2;
            }
        } else if (strcmp(a, "--jobs") == 0 && has) {
            opt.jobs = (unsigned)parse_u64(a, argv[++i]);
        } else if (strcmp(a, "--child") == 0 && has) {
            opt.child = argv[++i];
        } else if (strcmp(a, "--class") == 0 && has) {
            opt.only = argv[++i];
        } else if (strcmp(a, "--backend") == 0 && has) {
            opt.backend_arg = argv[++i];
            if (strcmp(opt.backend_arg, "host") == 0)
                opt.backend = GMS_BACKEND_HOST;
            else if (strcmp(opt.backend_arg, "cuda") == 0)
                opt.backend = GMS_BACKEND_CUDA;
            else if (strcmp(opt.backend_arg, "auto") == 0)
                opt.backend = GMS_BACKEND_AUTO;
            else {
                fprintf(stderr, "gms-inject: --backend %s: expected host, cuda or auto\n", opt.backend_arg);
                return 2;
            }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (opt.trials == 0) {
        fprintf(stderr, "gms-inject: --trials must be at least 1\n");
        return 2;
    }
    if (opt.only) {
        size_t i = 0;
        while (i < NCLASSES && strcmp(classes[i].name, opt.only) != 0)
            i++;
        if (i == NCLASSES) {
            fprintf(stderr, "gms-inject: unknown class '%s'\n", opt.only);
            usage(stderr);
            return 2;
        }
    }
    if (opt.child) { /* a batch of run_device_children: records on stdout */
        if (opt.backend != GMS_BACKEND_CUDA)
            return 2;
        on_cuda = true;
        cu_attach();
        rng = opt.seed;
        if (strcmp(opt.child, "wild") == 0)
            child_wild();
        else if (strcmp(opt.child, "under") == 0)
            child_under();
        else if (strcmp(opt.child, "immview") == 0)
            child_immview();
        else
            return 2;
        return 0;
    }
    if (opt.jobs == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        opt.jobs = n > 0 ? 2 * (unsigned)n : 2;
    }
    /* The backend first: the raw classes write through host pointers on
     * the host backend, through the CUDA driver on cuda. */
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = opt.backend;
    o.log = quiet_log;
    gms_runtime *probe;
    int rc = gms_runtime_open(&probe, &o);
    if (rc) {
        fprintf(stderr, "gms-inject: backend '%s' is not available: %s\n", opt.backend_arg, gms_error_last());
        return 2;
    }
    char backend[16];
    snprintf(backend, sizeof backend, "%s", gms_runtime_backend_name(probe));
    gms_runtime_close(probe);
    if (strcmp(backend, "cuda") == 0) {
        on_cuda = true;
        cu_attach();
    } else if (strcmp(backend, "host") != 0) {
        fprintf(stderr, "gms-inject: backend '%s': the campaign runs on the host and cuda backends only\n",
                backend);
        return 2;
    }
    if (!opt.json)
        printf("%-22s %8s %8s %10s %10s %8s %7s  %s\n", "class", "trials", "detected", "rate",
               "lower95", "by_fault", "seconds", ">= 99.99%");
    bool all = true;
    for (size_t i = 0; i < NCLASSES; i++) {
        if (opt.only && strcmp(classes[i].name, opt.only) != 0)
            continue;
        /* Each class draws from its own stream: --class gives the same trials. */
        rng = opt.seed * 0x2545f4914f6cdd1dull + i;
        tally t = {.cls = classes[i].name};
        double t0 = now_s();
        classes[i].run(&t);
        t.seconds = now_s() - t0;
        report(&t, backend);
        all &= t.detected == t.trials;
    }
    return all ? 0 : 1;
}
