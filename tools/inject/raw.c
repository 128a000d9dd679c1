/*
 * raw.c: gms-inject's classes of raw memory corruption, written through
 * the raw pointer: past the end, before the start, after the free, and
 * outside any mapped memory. gms must find the change or the write fault.
 */
#include "inject.h"

#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

void run_overflow_raw(tally *t)
{
    t->how = "bytes 1..R=32 past the end (a random run inside the redzone) XORed through the raw "
             "pointer; detected when gms_free returns GMS_E_CORRUPTION or a violation callback "
             "names the buffer or a neighbour after it (detection path: free at once, gms_verify "
             "first, a bounds-checked call first, or the neighbour after freed first)";
    if (on_cuda)
        t->how = "bytes 1..R=32 past the end (a random run inside the redzone) XORed through the raw "
                 "device pointer (cuMemcpyDtoH_v2 of the bytes there, cuMemcpyHtoD_v2 of them XOR a "
                 "non-zero mask, cuCtxSynchronize); detection path as on the host (free at once, "
                 "gms_verify first, a bounds-checked call first, or the neighbour after freed "
                 "first). On cuda the frees' scrubs run on the device after gms_free returns, so "
                 "each trial then calls gms_sync to gather what they found; detected when gms_free "
                 "returns GMS_E_CORRUPTION or a violation callback names the buffer or its "
                 "neighbour";
    gms_runtime *rt = rt_open(REDZONE);
    gms_context *c = ctx_open(rt, "over", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    for (uint64_t i = 0; i < opt.trials; i++) {
        size_t s = rnd_size();
        gms_buf b = xalloc(c, s);
        gms_buf next = rnd() & 1 ? xalloc(c, rnd_size()) : 0; /* a neighbour after, often */
        uint8_t *p = xptr(c, b);
        uint64_t dist = rnd_in(0, REDZONE - 1), len = rnd_in(1, REDZONE - dist);
        v_reset();
        raw_corrupt(p + s + dist, len);
        unsigned path = (unsigned)(rnd() % 4);
        bool early = false;
        if (path == 1) {
            early = gms_verify(rt, NULL) == GMS_E_CORRUPTION;
        } else if (path == 2) {
            uint8_t x = 1;
            early = gms_write(c, b, 0, &x, 1) == GMS_E_CORRUPTION;
        }
        /* Sometimes the neighbour after goes first: the bytes just before
         * it are its to check too. */
        int rcn = next && path == 3 ? gms_free(c, next) : GMS_OK;
        int rc = gms_free(c, b);
        if (next && path != 3)
            rcn = gms_free(c, next);
        if (on_cuda)
            gms_sync(rt); /* the frees' scrubs ran on the device: gather what they found */
        bool d = rc == GMS_E_CORRUPTION || rcn == GMS_E_CORRUPTION || v_for(b) || (next && v_for(next)) || early;
        if (!d)
            miss(t, "trial %" PRIu64 ": size %zu, bytes [%" PRIu64 ", +%" PRIu64 ") past the end, path %u: free returned %d",
                 i, s, dist, len, path, rc);
        count(t, d);
    }
    gms_runtime_close(rt);
}


void run_underflow_raw(tally *t)
{
    t->how = "bytes 1..R=32 before the start XORed through the raw pointer. With a neighbour "
             "before it in its chunk (allocated first): detected when gms_free returns "
             "GMS_E_CORRUPTION or a violation callback names the buffer or the neighbour. "
             "1 trial in 32 targets the first block of a new chunk instead, in a child process: "
             "detected when the write faults on the chunk's guard";
    gms_runtime *rt = rt_open(REDZONE);
    gms_context *c = ctx_open(rt, "under", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    uint64_t not_adjacent = 0, deferred = 0;
    dev_outcomes_reset();
    for (uint64_t i = 0; i < opt.trials; i++) {
        uint64_t dist = rnd_in(0, REDZONE - 1), len = rnd_in(1, REDZONE - dist);
        size_t s = rnd_size();
        if (rnd() % 32 == 0) {
            if (on_cuda) { /* in child processes, after this loop */
                deferred++;
                continue;
            }
            if (fork_child(t) == 0) {
                /* A new pool, so a new chunk: its first block sits right
                 * after the chunk's guard. */
                gms_context *fc = ctx_open(rt, "fresh", "u", GMS_LEVEL_PUBLIC, GMS_LANG_ZIG);
                gms_buf b = xalloc(fc, s);
                child_write(xptr(fc, b) - dist - len, len);
            }
            continue;
        }
        /* The neighbour first, then the buffer: retry until the buffer
         * lands right after it (the free lists may place it elsewhere). */
        gms_buf n, b;
        uint8_t *pn, *pb;
        gms_buf_info ni;
        for (int tries = 0;; tries++) {
            n = xalloc(c, rnd_size());
            b = xalloc(c, s);
            pn = xptr(c, n);
            pb = xptr(c, b);
            ni = xinfo(c, n);
            if (pn + ni.block_size == pb)
                break;
            not_adjacent++;
            gms_free(c, b);
            gms_free(c, n);
            /* On a device, gms_alloc takes only memory whose device work
             * has run: the neighbour's rest may still wait for the scrubs
             * just queued, then the buffer goes elsewhere, try after try
             * (once 100 in a row in 30,000 trials on the H200). */
            if (on_cuda)
                gms_sync(rt);
            if (tries == 100)
                die("no adjacent pair in 100 tries", GMS_E_INVALID_ARG);
        }
        v_reset();
        raw_corrupt(pb - dist - len, len);
        unsigned path = (unsigned)(rnd() % 4);
        bool early = false;
        if (path == 1)
            early = gms_verify(rt, NULL) == GMS_E_CORRUPTION;
        int rc = GMS_OK, rcn = GMS_OK;
        if (path == 2) { /* the neighbour first: its own redzone check sees it */
            rcn = gms_free(c, n);
            rc = gms_free(c, b);
        } else {
            rc = gms_free(c, b);
            rcn = gms_free(c, n);
        }
        if (on_cuda)
            gms_sync(rt); /* the frees' scrubs ran on the device: gather what they found */
        bool d = rc == GMS_E_CORRUPTION || rcn == GMS_E_CORRUPTION || v_for(b) || v_for(n) || early;
        if (!d)
            miss(t, "trial %" PRIu64 ": size %zu, bytes [-%" PRIu64 ", -%" PRIu64 "), path %u: free returned %d",
                 i, s, dist + len, dist, path, rc);
        count(t, d);
    }
    reap_all(t);
    if (on_cuda) {
        run_device_children(t, "under", deferred);
        static char how[2048];
        snprintf(how, sizeof how,
                 "bytes 1..R=32 before the start XORed through the raw device pointer "
                 "(cuMemcpyDtoH_v2, cuMemcpyHtoD_v2 of the bytes XOR a non-zero mask, "
                 "cuCtxSynchronize). With a neighbour before it in its chunk (allocated first): "
                 "each trial then calls gms_sync (the frees' scrubs run on the device after "
                 "gms_free returns); detected when gms_free returns "
                 "GMS_E_CORRUPTION or a violation callback names the buffer or the neighbour. "
                 "1 trial in 32 (%" PRIu64 " here) targets the first block of a new chunk instead: "
                 "in child processes (fork + exec, a fresh CUDA context each, up to %u trials per "
                 "child, a new runtime per trial) the bytes before it, in the chunk's unmapped "
                 "guard, are written with cuMemcpyHtoD_v2 or cuMemsetD8_v2 (at random); detected when the copy or the "
                 "cuCtxSynchronize after it fails, or the child dies.",
                 deferred, DEV_BATCH);
        dev_outcomes_format(how, sizeof how);
        t->how = how;
    }
    if (opt.verbose)
        fprintf(stderr, "gms-inject: underflow_raw: %" PRIu64 " pairs were not adjacent (retried)\n",
                not_adjacent);
    gms_runtime_close(rt);
}

/* A raw write that may fault (a hollowed freed block): caught here. */
static sigjmp_buf fault_env;
static volatile sig_atomic_t fault_armed;

static void on_fault(int sig)
{
    if (fault_armed) {
        fault_armed = 0;
        siglongjmp(fault_env, sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static bool guarded_corrupt(uint8_t *p, size_t n)
{
    if (on_cuda) /* a refused copy is the fault: nothing was written */
        return dev_corrupt((uint64_t)(uintptr_t)p, n) != 0;
    if (sigsetjmp(fault_env, 1))
        return true;
    fault_armed = 1;
    corrupt(p, n);
    fault_armed = 0;
    return false;
}

void run_write_after_free_raw(tally *t)
{
    t->how = "1..64 bytes of a buffer XORed through its raw pointer after gms_free, while the "
             "block waits in quarantine; detected when a violation callback (write after free, or "
             "free memory written) reports an address in the block, once forced out: by "
             "gms_verify, by freeing other blocks until it leaves quarantine (at most 8 MiB), or "
             "by closing the pool's last context; a write that faults counts as detected";
    if (on_cuda)
        t->how = "1..64 bytes of a buffer XORed through its raw device pointer (cuMemcpyDtoH_v2, "
                 "cuMemcpyHtoD_v2 of the bytes XOR a non-zero mask, cuCtxSynchronize) after "
                 "gms_free, while the block waits in quarantine; detected when a violation callback "
                 "(write after free, or free memory written) reports an address in the block, once "
                 "forced out: by gms_verify, by freeing other blocks until it leaves quarantine (at "
                 "most 8 MiB), or by closing the pool's last context; a copy the driver refuses "
                 "counts as detected. Default runtime options: the free queues its scrub on the "
                 "default stream before it returns, so the write lands on poisoned memory; the "
                 "device's findings are gathered by gms_sync after the churn";
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "waf", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    struct sigaction sa, old_segv, old_bus;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    for (uint64_t i = 0; i < opt.trials; i++) {
        unsigned path = (unsigned)(rnd() % 3);
        /* Path 2 closes its context: a pool of its own, with no other. */
        gms_context *tc = path == 2 ? ctx_open(rt, "waf-close", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C) : c;
        size_t s = rnd_size();
        gms_buf b = xalloc(tc, s);
        uint8_t *p = xptr(tc, b);
        uint64_t bsize = xinfo(tc, b).block_size;
        uint64_t lo = (uint64_t)(uintptr_t)p;
        bool d = gms_free(tc, b) == GMS_OK;
        uint64_t off = rnd_in(0, s - 1), len = rnd_in(1, s - off < 64 ? s - off : 64);
        v_reset();
        if (guarded_corrupt(p + off, len)) {
            t->by_fault++;
            gms_verify(rt, NULL); /* what was written before the fault */
            if (path == 2)
                gms_context_close(tc);
            count(t, d);
            continue;
        }
        if (path == 0) {
            gms_verify(rt, NULL);
        } else if (path == 1) {
            for (uint64_t churned = 0; churned < (8u << 20) && !v_in(0, lo, lo + bsize);) {
                size_t cs = (size_t)rnd_in(64u << 10, 256u << 10);
                gms_buf x = xalloc(c, cs);
                gms_free(c, x);
                churned += cs;
            }
            gms_sync(rt); /* what the device found, if not yet delivered */
        } else {
            gms_context_close(tc);
        }
        d &= v_in(GMS_VIOLATION_WRITE_AFTER_FREE, lo, lo + bsize) ||
             v_in(GMS_VIOLATION_FREE_MEMORY, lo, lo + bsize);
        if (!d)
            miss(t, "trial %" PRIu64 ": size %zu, bytes [%" PRIu64 ", +%" PRIu64 "), path %u: %u callbacks",
                 i, s, off, len, path, V.n);
        count(t, d);
    }
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    gms_runtime_close(rt);
}

/* A wild address for one trial: before the chunk, in the guard after it,
 * or in its unmapped part above every mapped granule so far (`high`, which
 * the new buffer b may raise). */
static uint64_t wild_target(gms_context *c, gms_buf b, uint64_t base, uint64_t *high)
{
    uint64_t p = (uint64_t)(uintptr_t)xptr(c, b), end = p + xinfo(c, b).block_size;
    uint64_t mapped_end = (end + GRANULE - 1) / GRANULE * GRANULE;
    if (mapped_end > *high)
        *high = mapped_end;
    switch (rnd() % 4) {
    case 0: return base - rnd_in(1, 2ull << 20);
    case 1: return base + CHUNK + rnd_in(0, (2ull << 20) - 1);
    case 2: return *high + rnd_in(0, 4095);
    default: return rnd_in(*high, base + CHUNK - 1);
    }
}

void run_wild_write(tally *t)
{
    t->how = "a write through a pointer outside any mapped memory of a chunk, in a forked child: "
             "into the guard before the chunk (1 B..2 MiB before it), into the guard after it, "
             "just past the chunk's mapped granules, or anywhere in its unmapped rest; detected "
             "when the child dies of SIGSEGV or SIGBUS";
    if (on_cuda) {
        static char how[2048];
        dev_outcomes_reset();
        run_device_children(t, "wild", opt.trials);
        snprintf(how, sizeof how,
                 "a write of 1..8 bytes to a device address outside any mapped memory of a chunk: "
                 "into the guard before the chunk (1 B..2 MiB before it), into the guard after it, "
                 "just past the chunk's mapped granules, or anywhere in its unmapped rest; made "
                 "with cuMemcpyHtoD_v2 or cuMemsetD8_v2 (at random) then cuCtxSynchronize, in "
                 "child processes (fork + exec, a fresh runtime and CUDA context each, up to %u "
                 "trials per child, a new child after a lost context); detected when the write "
                 "or the synchronize returns an error, or the child dies.",
                 DEV_BATCH);
        dev_outcomes_format(how, sizeof how);
        t->how = how;
        return;
    }
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "wild", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    /* The first block of a new runtime's first pool sits at its chunk's base. */
    gms_buf first = xalloc(c, 256);
    uint64_t base = (uint64_t)(uintptr_t)xptr(c, first);
    uint64_t high = base + GRANULE; /* mapped granules lie below this */
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_buf b = xalloc(c, rnd_size());
        uint64_t target = wild_target(c, b, base, &high);
        size_t n = (size_t)rnd_in(1, 8);
        if (fork_child(t) == 0)
            child_write((uint8_t *)(uintptr_t)target, n);
        gms_free(c, b);
    }
    reap_all(t);
    gms_runtime_close(rt);
}


/* ---- the children of run_device_children (cuda) ----------------------- */

void child_wild(void)
{
    gms_runtime *rt = rt_open(0);
    gms_context *c = ctx_open(rt, "wild", "u", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf first = xalloc(c, 256);
    uint64_t base = (uint64_t)(uintptr_t)xptr(c, first);
    uint64_t high = base + GRANULE;
    for (uint64_t i = 0; i < opt.trials; i++) {
        gms_buf b = xalloc(c, rnd_size());
        uint64_t target = wild_target(c, b, base, &high);
        size_t n = (size_t)rnd_in(1, 8);
        if (target + n > base + CHUNK && target < base + CHUNK)
            n = (size_t)(base + CHUNK - target); /* stays in the guard after */
        dev_wild(target, n);
        gms_free(c, b);
    }
    gms_runtime_close(rt);
}

void child_under(void)
{
    for (uint64_t i = 0; i < opt.trials; i++) {
        uint64_t dist = rnd_in(0, REDZONE - 1), len = rnd_in(1, REDZONE - dist);
        size_t s = rnd_size();
        /* A new runtime: its first block sits right after its chunk's guard. */
        gms_runtime *rt = rt_open(REDZONE);
        gms_context *fc = ctx_open(rt, "fresh", "u", GMS_LEVEL_PUBLIC, GMS_LANG_ZIG);
        gms_buf b = xalloc(fc, s);
        dev_wild((uint64_t)(uintptr_t)xptr(fc, b) - dist - len, (size_t)len);
        gms_runtime_close(rt);
    }
}
