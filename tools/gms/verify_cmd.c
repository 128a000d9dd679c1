/*
 * verify_cmd.c: `gms verify`, the runtime's invariants on a random
 * workload. It opens a private host-backend runtime, runs a workload that
 * a seed decides (three tenants, six contexts; allocations, frees, shares
 * with random grants, acquires, revokes, transfers, a quota that refuses),
 * and checks the state with gms_verify. --snapshot FILE writes the state
 * (gms_testing_snapshot); --prove hands it to the Z3 proof of tenant
 * isolation, proofs/snapshot/snapshot.py (docs/proofs.md, section 5), and
 * exits with its status. The workload leaves its buffers live for the
 * snapshot and frees them afterwards.
 */
#include "cli.h"
#include "gms.h"
#include "gms/access.h"
#include "gms/testing.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef GMS_SOURCE_DIR
#define GMS_SOURCE_DIR "."
#endif

#define HANDLES_MAX 4096
#define SHARES_MAX 1024

static const struct {
    const char *tenant, *user;
    gms_language language;
    gms_level level;
} who[] = {
    {"alpha", "u1", GMS_LANG_C, GMS_LEVEL_INTERNAL},
    {"alpha", "u2", GMS_LANG_PYTHON, GMS_LEVEL_INTERNAL},
    {"beta", "u1", GMS_LANG_RUST, GMS_LEVEL_INTERNAL},
    {"beta", "u3", GMS_LANG_C, GMS_LEVEL_CONFIDENTIAL},
    {"gamma", "u2", GMS_LANG_ELIXIR, GMS_LEVEL_PUBLIC},
    {"gamma", "u1", GMS_LANG_C, GMS_LEVEL_INTERNAL},
};
#define NCTX (sizeof who / sizeof who[0])

typedef struct held {
    int ctx; /* index in who[] */
    gms_buf buf;
} held;

typedef struct made_share {
    int owner;
    gms_share_id id;
} made_share;

typedef struct workload {
    uint64_t rng;
    gms_context *ctx[NCTX];
    held held[HANDLES_MAX];
    size_t nheld;
    made_share shares[SHARES_MAX];
    size_t nshares;
    unsigned long long done[6], refused; /* alloc, free, share, acquire, revoke, transfer */
} workload;

static uint64_t next(workload *w) /* splitmix64: the same run for a seed everywhere */
{
    uint64_t z = (w->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned pick(workload *w, unsigned n)
{
    return (unsigned)(next(w) % n);
}

/* The codes the workload's calls may meet: anything else is a bug. */
static int expected(int rc)
{
    return rc == GMS_OK || rc == GMS_E_QUOTA || rc == GMS_E_ACCESS_DENIED ||
           rc == GMS_E_READ_ONLY || rc == GMS_E_BUSY || rc == GMS_E_INVALID_HANDLE;
}

static int share_one(workload *w, size_t i)
{
    static const char *const tenants[] = {NULL, "*", "alpha", "beta", "gamma"};
    static const char *const users[] = {NULL, NULL, NULL, "u1", "u2", "u3"};
    gms_share_grant g[GMS_SHARE_GRANTS_MAX];
    size_t n = pick(w, 8) == 0 ? GMS_SHARE_GRANTS_MAX : 1 + pick(w, 4);
    for (size_t k = 0; k < n; k++) {
        unsigned lang = pick(w, 16); /* half of them any language */
        g[k] = (gms_share_grant){tenants[pick(w, 5)], users[pick(w, 6)],
                                 lang >= 8 ? GMS_ANY_LANGUAGE : (int)lang,
                                 pick(w, 2) ? GMS_ACCESS_READ : GMS_ACCESS_READ_WRITE};
    }
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = g;
    d.ngrants = n;
    d.immutable = pick(w, 4) == 0;
    gms_share_id id;
    int rc = gms_share(w->ctx[w->held[i].ctx], w->held[i].buf, &d, &id);
    if (rc == GMS_OK && w->nshares < SHARES_MAX)
        w->shares[w->nshares++] = (made_share){w->held[i].ctx, id};
    return rc;
}

/* One random step; returns its call's result. */
static int step(workload *w)
{
    unsigned r = pick(w, 100), c = pick(w, NCTX);
    size_t i = w->nheld ? pick(w, (unsigned)w->nheld) : 0;
    if (r < 45 || w->nheld == 0) {
        if (w->nheld == HANDLES_MAX)
            return GMS_OK;
        size_t size = pick(w, 4) ? 1 + pick(w, 4096) : 1 + pick(w, 300000);
        gms_buf b;
        int rc = gms_alloc(w->ctx[c], size, pick(w, 10) ? 0 : GMS_ALLOC_PAGES, &b);
        if (rc == GMS_OK)
            w->held[w->nheld++] = (held){(int)c, b};
        w->done[0] += rc == GMS_OK;
        return rc;
    }
    if (r < 65) {
        int rc = gms_free(w->ctx[w->held[i].ctx], w->held[i].buf);
        w->held[i] = w->held[--w->nheld];
        w->done[1] += rc == GMS_OK;
        return rc;
    }
    if (r < 75) {
        int rc = share_one(w, i);
        w->done[2] += rc == GMS_OK;
        return rc;
    }
    if (r < 93 && w->nshares) {
        static const gms_access modes[] = {GMS_ACCESS_READ, GMS_ACCESS_READ, GMS_ACCESS_READ_WRITE,
                                           GMS_ACCESS_ATOMIC};
        size_t s = pick(w, (unsigned)w->nshares);
        if (r >= 90) {
            int rc = gms_revoke(w->ctx[w->shares[s].owner], w->shares[s].id);
            w->done[4] += rc == GMS_OK;
            return rc;
        }
        if (w->nheld == HANDLES_MAX)
            return GMS_OK;
        gms_buf b;
        int rc = gms_acquire(w->ctx[c], w->shares[s].id, modes[pick(w, 4)], &b);
        if (rc == GMS_OK)
            w->held[w->nheld++] = (held){(int)c, b};
        w->done[3] += rc == GMS_OK;
        return rc;
    }
    if ((int)c == w->held[i].ctx)
        return GMS_OK;
    gms_buf b;
    int rc = gms_transfer(w->ctx[w->held[i].ctx], w->held[i].buf, w->ctx[c], &b);
    if (rc == GMS_OK)
        w->held[i] = (held){(int)c, b};
    w->done[5] += rc == GMS_OK;
    return rc;
}

/* Runs the prover on the snapshot in path; its exit status (2 when it
 * cannot be started). */
static int prove(const char *path)
{
    const char *dir = getenv("GMS_PROOFS_DIR");
    const char *py = getenv("GMS_PROOFS_PYTHON");
    char script[4096], venv[4096];
    snprintf(script, sizeof script, "%s/snapshot/snapshot.py", dir ? dir : GMS_SOURCE_DIR "/proofs");
    snprintf(venv, sizeof venv, "%s/build/proofenv/bin/python", GMS_SOURCE_DIR);
    if (!py)
        py = access(venv, X_OK) == 0 ? venv : "python3";
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "gms verify: cannot start the prover: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        execlp(py, py, script, path, (char *)NULL);
        fprintf(stderr, "gms verify: cannot run %s: %s\n", py, strerror(errno));
        _exit(2);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

static int write_snapshot(gms_runtime *rt, int fd, const char *path)
{
    int rc = gms_testing_snapshot(rt, fd);
    if (rc) {
        fprintf(stderr, "gms verify: %s: %s\n", path, gms_error_last());
        return rc == GMS_E_CORRUPTION ? 1 : 2;
    }
    return 0;
}

static int number(const char *opt, const char *s, unsigned long long most, unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 0);
    if (!*s || *end || errno || *s == '-' || *out > most) {
        fprintf(stderr, "gms verify: %s %s: expected a number from 0 to %llu\n", opt, s, most);
        return -1;
    }
    return 0;
}

/* The workload, gms_verify, and with fd >= 0 the snapshot written to it
 * (the file at path) and, proving, its proof. */
static int run(workload *w, unsigned long long seed, unsigned long long ops, int fd,
               const char *path, int proving)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 << 10; /* many blocks to a granule, several chunks */
    o.chunk_bytes = 1 << 20;
    gms_runtime *rt = NULL;
    if (gms_runtime_open(&rt, &o) != GMS_OK) {
        fprintf(stderr, "gms verify: %s\n", gms_error_last());
        return 2;
    }
    int status = 0;
    for (size_t c = 0; c < NCTX && !status; c++) {
        gms_context_desc d = GMS_CONTEXT_DESC_INIT;
        d.tenant = who[c].tenant;
        d.user = who[c].user;
        d.language = who[c].language;
        d.level = who[c].level;
        if (gms_context_open(&w->ctx[c], rt, &d) != GMS_OK) {
            fprintf(stderr, "gms verify: %s\n", gms_error_last());
            status = 2;
        }
    }
    if (!status && gms_tenant_set_quota(rt, "beta", 1 << 20, GMS_UNLIMITED) != GMS_OK)
        status = 2;
    for (unsigned long long n = 0; n < ops && !status; n++) {
        int rc = step(w);
        w->refused += rc != GMS_OK;
        if (!expected(rc)) {
            fprintf(stderr, "gms verify: step %llu: %s\n", n, gms_error_last());
            status = rc == GMS_E_CORRUPTION ? 1 : 2;
        }
    }
    if (!status) {
        printf("gms verify: seed %llu, %llu steps: %llu allocs, %llu frees, %llu shares, %llu acquires, %llu revokes, %llu transfers, %llu refused\n",
               seed, ops, w->done[0], w->done[1], w->done[2], w->done[3], w->done[4], w->done[5], w->refused);
        gms_report rep;
        int rc = gms_verify(rt, &rep);
        printf("gms_verify: %s: %llu pools, %llu chunks, %llu live blocks, %llu free blocks, %llu live handles\n",
               rc == GMS_OK ? "ok" : gms_error_last(), (unsigned long long)rep.pools,
               (unsigned long long)rep.chunks, (unsigned long long)rep.live_blocks,
               (unsigned long long)rep.free_blocks, (unsigned long long)rep.live_handles);
        /* The proof runs on a state gms_verify refused too: it checks
         * the same properties by other means. */
        int verdict = rc == GMS_OK ? 0 : rc == GMS_E_CORRUPTION ? 1 : 2;
        if (fd >= 0)
            status = write_snapshot(rt, fd, path);
        if (!status && proving)
            status = prove(path);
        if (verdict > status)
            status = verdict;
    }
    while (w->nheld) { /* the buffers live for the snapshot; freed now */
        w->nheld--;
        gms_free(w->ctx[w->held[w->nheld].ctx], w->held[w->nheld].buf);
    }
    for (size_t c = 0; c < NCTX; c++)
        gms_context_close(w->ctx[c]);
    gms_runtime_close(rt);
    return status;
}

int gms_cli_verify(int argc, char **argv)
{
    unsigned long long seed = 1, ops = 400;
    const char *snapshot = NULL;
    int proving = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--prove") == 0) {
            proving = 1;
        } else if (i + 1 < argc && strcmp(a, "--seed") == 0) {
            if (number(a, argv[++i], UINT64_MAX, &seed))
                return 2;
        } else if (i + 1 < argc && strcmp(a, "--ops") == 0) {
            if (number(a, argv[++i], 10000000, &ops))
                return 2;
        } else if (i + 1 < argc && strcmp(a, "--snapshot") == 0) {
            snapshot = argv[++i];
        } else {
            fprintf(stderr, "gms verify: unknown or incomplete argument '%s'\n"
                            "usage: gms verify [--seed N] [--ops N] [--snapshot FILE] [--prove]\n", a);
            return 2;
        }
    }
    /* The file first: a wrong path is told before any work. */
    char tmp[] = "/tmp/gms-snapshot-XXXXXX";
    int fd = -1;
    if (snapshot)
        fd = open(snapshot, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    else if (proving)
        fd = mkstemp(tmp);
    if ((snapshot || proving) && fd < 0) {
        fprintf(stderr, "gms verify: %s: %s\n", snapshot ? snapshot : tmp, strerror(errno));
        return 2;
    }
    workload *w = calloc(1, sizeof *w);
    int status = 2;
    if (w) {
        w->rng = seed;
        status = run(w, seed, ops, fd, snapshot ? snapshot : tmp, proving);
        free(w);
    } else {
        fprintf(stderr, "gms verify: out of memory\n");
    }
    if (fd >= 0 && close(fd) != 0 && status == 0) {
        fprintf(stderr, "gms verify: %s: %s\n", snapshot ? snapshot : tmp, strerror(errno));
        status = 2;
    }
    if (!snapshot && proving)
        unlink(tmp);
    return status;
}
