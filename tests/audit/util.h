/*
 * util.h: helpers the audit tests share: temporary trail directories, key
 * files, reading a trail back into memory, running the gms CLI.
 */
#ifndef GMS_TEST_AUDIT_UTIL_H
#define GMS_TEST_AUDIT_UTIL_H

#include "test.h"
#include "audit/trail.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const uint8_t test_key[32] = "0123456789abcdef0123456789abcde";

static inline void tmpdir_make(char *out, size_t size)
{
    snprintf(out, size, "/tmp/gms-audit-test-XXXXXX");
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        exit(2);
    }
}

static inline void rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static inline void key_file_write(const char *path)
{
    FILE *f = fopen(path, "wb");
    fwrite(test_key, 1, sizeof test_key, f);
    fputc('\n', f);
    fclose(f);
}

static inline gms_runtime *trail_open(const char *dir, uint64_t seg_bytes, int lossy)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 * 1024;
    o.chunk_bytes = 64ull << 20;
    o.audit_dir = dir;
    o.audit_key = test_key;
    o.audit_key_len = sizeof test_key;
    o.audit_segment_bytes = seg_bytes;
    o.audit_lossy = lossy;
    gms_runtime *rt = NULL;
    int rc = gms_runtime_open(&rt, &o);
    if (rc)
        fprintf(stderr, "trail_open %s: %s\n", dir, gms_error_last());
    return rt;
}

static inline gms_context *ctx_open(gms_runtime *rt, const char *tenant, const char *user,
                                    gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = user;
    d.language = lang;
    gms_context *c = NULL;
    if (gms_context_open(&c, rt, &d))
        fprintf(stderr, "ctx_open: %s\n", gms_error_last());
    return c;
}

typedef struct recs {
    gms_trail_record *v;
    size_t n, cap;
} recs;

static inline int recs_add(void *user, const gms_trail_record *r)
{
    recs *rs = user;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 1024;
        rs->v = realloc(rs->v, rs->cap * sizeof *rs->v);
    }
    rs->v[rs->n++] = *r;
    return 0;
}

static inline int trail_load(const char *dir, recs *rs, gms_trail_summary *s)
{
    memset(rs, 0, sizeof *rs);
    return gms_trail_read(dir, test_key, sizeof test_key, recs_add, rs, s);
}

static inline int trail_verify(const char *dir, gms_trail_summary *s)
{
    return gms_trail_read(dir, test_key, sizeof test_key, NULL, NULL, s);
}

/* The gms CLI next to the test binaries: build/gms. */
static inline void cli_path(char *out, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    snprintf(out, size, "%s/../gms", dirname(exe));
}

/* Runs a shell command; returns its exit status, output in out. */
static inline int run_cmd(const char *cmd, char *out, size_t size)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = 0;
    if (out) {
        n = fread(out, 1, size - 1, p);
        out[n] = 0;
    } else {
        char buf[4096];
        while (fread(buf, 1, sizeof buf, p) > 0) {
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The segment files of a trail, sorted. */
static inline size_t seg_files(const char *dir, char paths[][PATH_MAX], size_t max)
{
    char **names;
    uint64_t *ix;
    size_t n;
    if (gms_audit_seg_list(dir, &names, &ix, &n) != 0)
        return 0;
    for (size_t i = 0; i < n && i < max; i++)
        snprintf(paths[i], PATH_MAX, "%.1000s/%.1000s", dir, names[i]);
    gms_audit_seg_list_free(names, ix, n);
    return n < max ? n : max;
}

#endif
