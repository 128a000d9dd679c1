/*
 * util.h: helpers the audit tests share: temporary trail directories, key
 * files, reading a trail back into memory, running the gms CLI. No shell:
 * paths go to the kernel as they are, whatever characters they hold.
 */
#ifndef GMS_TEST_AUDIT_UTIL_H
#define GMS_TEST_AUDIT_UTIL_H

#include "test.h"
#include "audit/trail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

static inline int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf, without a shell; never follows a symbolic link. */
static inline void rm_rf(const char *dir)
{
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        fprintf(stderr, "cannot remove %s: %s\n", dir, strerror(errno));
}

/* Copies the regular files of directory from into a new directory to (a
 * trail is flat). 0 on success. */
static inline int copy_dir(const char *from, const char *to)
{
    if (mkdir(to, 0700) != 0)
        return -1;
    DIR *d = opendir(from);
    if (!d)
        return -1;
    int rc = 0;
    struct dirent *de;
    static char buf[1 << 16];
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char a[PATH_MAX], b[PATH_MAX];
        snprintf(a, sizeof a, "%.2000s/%.1000s", from, de->d_name);
        snprintf(b, sizeof b, "%.2000s/%.1000s", to, de->d_name);
        struct stat st;
        if (lstat(a, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        int in = open(a, O_RDONLY | O_CLOEXEC), out = open(b, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ssize_t n = 0;
        while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n)
                n = -1, rc = -1;
        if (in < 0 || out < 0 || n < 0)
            rc = -1;
        if (in >= 0)
            close(in);
        if (out >= 0)
            close(out);
    }
    closedir(d);
    return rc;
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
    return gms__trail_read(dir, test_key, sizeof test_key, recs_add, rs, s);
}

static inline int trail_verify(const char *dir, gms_trail_summary *s)
{
    return gms__trail_read(dir, test_key, sizeof test_key, NULL, NULL, s);
}

/* The gms CLI next to the test binaries: build/gms. */
static inline void cli_path(char *out, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    snprintf(out, size, "%s/../gms", dirname(exe));
}

/* Runs a program (argv[0] a path, argv NULL-terminated) with no shell;
 * returns its exit status (-1 if it did not exit: killed, or still
 * running after 60 s), stdout in out (NULL: discarded), stderr discarded
 * when quiet. */
static inline int run_argv(const char *const argv[], char *out, size_t size, int quiet)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (quiet) {
            int nul = open("/dev/null", O_WRONLY);
            dup2(nul, 2);
        }
        alarm(60); /* kept across exec: a program that hangs is killed */
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    char sink[4096];
    for (;;) {
        ssize_t r = out && n + 1 < size ? read(fds[0], out + n, size - 1 - n)
                                        : read(fds[0], sink, sizeof sink);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (out && n + 1 < size)
            n += (size_t)r;
    }
    if (out)
        out[n] = 0;
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* run_tool(out, size, quiet, "/path/prog", "arg", ...) */
#define run_tool(out, size, quiet, ...) \
    run_argv((const char *const[]){__VA_ARGS__, NULL}, (out), (size), (quiet))

/* The segment files of a trail, sorted. */
static inline size_t seg_files(const char *dir, char paths[][PATH_MAX], size_t max)
{
    char **names;
    uint64_t *ix;
    size_t n;
    if (gms__audit_seg_list(dir, &names, &ix, &n) != 0)
        return 0;
    for (size_t i = 0; i < n && i < max; i++)
        snprintf(paths[i], PATH_MAX, "%.1000s/%.1000s", dir, names[i]);
    gms__audit_seg_list_free(names, ix, n);
    return n < max ? n : max;
}

#endif
