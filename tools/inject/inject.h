/*
 * inject.h: what the parts of gms-inject share.
 *
 *   inject.c      the campaign driver: options, the class table, the
 *                 tally of each class, its statistics and the report
 *   harness.c     what every trial uses: the violation and log recorder,
 *                 runtime helpers, forked children that must fault
 *   cuda.c        raw access on the CUDA backend: writes through device
 *                 addresses, and the child processes whose writes must fault
 *   handles.c     handle and API misuse (double free, stale, forged and
 *                 foreign handles, checked calls out of bounds)
 *   raw.c         raw memory corruption (overflow, underflow, write after
 *                 free, wild writes)
 *   accounting.c  quotas and leaks
 *   immutable.c   sharing: writes to immutable shares
 *
 * Every random choice comes from one stream (rnd below), seeded per class
 * by the driver, so a seed gives the same trials whatever the file layout.
 */
#ifndef GMS_INJECT_H
#define GMS_INJECT_H

#include "gms.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GRANULE (2ull << 20)
#define CHUNK (16ull << 30)
/* Redzone size the raw classes inject into. */
#define REDZONE 32u
/* Trials per child process on cuda (cuda.c). */
#define DEV_BATCH 1000u

/* ---- options (inject.c) ---------------------------------------------- */

typedef struct inject_options {
    uint64_t trials;
    uint64_t seed;
    bool json, verbose;
    const char *only;
    gms_backend_kind backend;
    const char *backend_arg;
    unsigned jobs; /* children in flight for the forking classes */
    uint64_t max_size; /* sizes are log-uniform in [1, max_size] */
    const char *child; /* internal: a batch of device-fault trials (cuda) */
} inject_options;
extern inject_options opt;

/* Whether the runtimes run on the CUDA backend: raw pointers are device
 * addresses, written through the driver (cuda.c). */
extern bool on_cuda;

/* ---- randomness ------------------------------------------------------- */

extern uint64_t rng;

static inline uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static inline uint64_t rnd_in(uint64_t lo, uint64_t hi)
{
    return lo + (hi - lo == UINT64_MAX ? rnd() : rnd() % (hi - lo + 1));
}

static inline double rnd_unit(void)
{
    return (double)(rnd() >> 11) * 0x1.0p-53;
}

/* Log-uniform in [1, opt.max_size]. */
static inline size_t rnd_size(void)
{
    double top = log2((double)opt.max_size) + 1e-9;
    size_t s = (size_t)floor(exp2(rnd_unit() * top));
    return s < 1 ? 1 : s > opt.max_size ? (size_t)opt.max_size : s;
}

static inline uint8_t rnd_nonzero_byte(void)
{
    return (uint8_t)(1 + rnd() % 255);
}

/* ---- one class's tally (inject.c) ------------------------------------ */

typedef struct tally {
    const char *cls;
    const char *how;
    uint64_t trials, detected, by_fault, misses_shown;
    double seconds;
} tally;

/* Describes a missed trial on stderr (with --verbose, the first 20). */
void miss(tally *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void count(tally *t, bool detected);

/* ---- what gms tells us: violations and log lines (harness.c) ---------- */

#define VMAX 64
typedef struct violation_log {
    unsigned n; /* callbacks since the last reset */
    gms_violation_kind kind[VMAX];
    gms_buf handle[VMAX];
    uint64_t address[VMAX];
    int64_t offset[VMAX];
    bool history[VMAX]; /* the message names who allocated (and freed) */
} violation_log;
extern violation_log V;
extern uint64_t n_logs, n_leak_logs;

void quiet_log(void *user, gms_log_level level, const char *msg);
void v_reset(void);
/* Whether a callback since the reset named handle h (0: any handle). */
bool v_for(gms_buf h);
/* Whether a callback of kind k (0: any) reported an address in [lo, hi). */
bool v_in(gms_violation_kind k, uint64_t lo, uint64_t hi);

/* ---- runtime helpers (harness.c): each dies on an error --------------- */

__attribute__((noreturn)) void die(const char *what, int rc);
/* A runtime with the default options but the given redzone. */
gms_runtime *rt_open(uint32_t redzone);
gms_context *ctx_open(gms_runtime *rt, const char *tenant, const char *user, gms_level level,
                      gms_language lang);
gms_buf xalloc(gms_context *c, size_t size);
uint8_t *xptr(gms_context *c, gms_buf b);
gms_buf_info xinfo(gms_context *c, gms_buf b);
/* XORs n bytes at p with random non-zero masks: every byte changes. */
void corrupt(uint8_t *p, size_t n);

/* ---- forked children whose write must fault (harness.c) --------------- */

/* Forks a child (at most opt.jobs in flight): 0 in the child. */
pid_t fork_child(tally *t);
/* Waits for every child; each that died of SIGSEGV or SIGBUS is detected. */
void reap_all(tally *t);
/* A write expected to fault, in a child: the child dies of it. */
__attribute__((noreturn)) void child_write(uint8_t *p, size_t n);

/* ---- raw access on the CUDA backend (cuda.c) -------------------------- */

/* Loads the driver and makes device 0's primary context current. */
void cu_attach(void);
/* XORs n <= 64 bytes at device address a (see cuda.c); non-zero (a
 * CUresult) when the driver refused or faulted. */
int dev_corrupt(uint64_t a, size_t n);
/* A corrupting write through a raw pointer that must land (in mapped
 * memory): through the CPU on the host backend, the driver on cuda. */
void raw_corrupt(uint8_t *p, size_t n);
/* Runs `trials` trials of kind ("wild", "under", "immview") in child
 * processes; the outcomes seen are kept for dev_outcomes. */
void run_device_children(tally *t, const char *kind, uint64_t trials);
/* Forgets the outcomes seen so far. */
void dev_outcomes_reset(void);
/* Appends the outcomes seen to buf. */
void dev_outcomes_format(char *buf, size_t size);
/* In a child: one write that must not land; exits 3 once the context is lost. */
void dev_wild(uint64_t target, size_t n);

/* ---- the classes ------------------------------------------------------ */

void run_double_free(tally *t);      /* handles.c */
void run_stale_handle(tally *t);
void run_forged_handle(tally *t);
void run_cross_tenant(tally *t);
void run_host_oob(tally *t);
void run_overflow_raw(tally *t);     /* raw.c */
void run_underflow_raw(tally *t);
void run_write_after_free_raw(tally *t);
void run_wild_write(tally *t);
void run_leak(tally *t);             /* accounting.c */
void run_quota(tally *t);
void run_immutable_write(tally *t);  /* immutable.c */
void run_sealed_tamper(tally *t);    /* sealed.c */

/* The children of run_device_children (cuda). */
void child_wild(void);               /* raw.c */
void child_under(void);
void child_immview(void);            /* immutable.c */

#endif
