/*
 * hostile.c: the trail's readers (gms_runtime_open, gms__trail_read, the
 * gms CLI) trust neither file names nor file types. A FIFO, a symbolic
 * link or a directory where a segment or the key file should be, a segment
 * named with an enormous index, a sparse segment of a terabyte: each is
 * refused quickly with a message that says why, instead of blocking or
 * looping for ever. Files the writer creates (.lock, the temporary header)
 * are never opened through a planted symbolic link.
 *
 * Every case runs in a child killed after a few seconds, so a call that
 * hangs fails its check instead of hanging the test.
 */
#include "util.h"

#include <signal.h>

static char base[256], work[300], keyf[300], victim[320], cli[PATH_MAX + 8];
static uint64_t newest_ix;
static uint32_t today;
static const char *want_word; /* what the refusal must mention */

/* Runs fn in a child killed after secs seconds. */
static void within(int secs, const char *what, void (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm((unsigned)secs);
        fn();
        fflush(stdout);
        _exit(test_failed ? 1 : 0);
    }
    int st;
    waitpid(pid, &st, 0);
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok)
        fprintf(stderr, "%s: %s\n", what,
                WIFSIGNALED(st) ? "did not finish in time (killed)" : "failed");
    CHECK(ok);
}

static void fresh(void)
{
    rm_rf(work);
    CHECK(copy_dir(base, work) == 0);
}

static void seg_name(char *out, size_t size, uint64_t ix, uint32_t day)
{
    snprintf(out, size, "%s/gms-audit-%08llu-%08u.seg", work, (unsigned long long)ix, day);
}

static void verify_refused(void)
{
    gms_trail_summary s;
    int rc = trail_verify(work, &s);
    CHECK(rc != GMS_TRAIL_OK);
    CHECK(strstr(s.message, want_word) != NULL);
    printf("  verify: %s\n", s.message);
}

static void open_refused(void)
{
    gms_runtime *rt = trail_open(work, 0, 0);
    CHECK(rt == NULL);
    if (rt)
        gms_runtime_close(rt);
    else
        CHECK(strstr(gms_error_last(), want_word) != NULL);
}

static void open_ok(void)
{
    gms_runtime *rt = trail_open(work, 0, 0);
    CHECK(rt != NULL);
    if (rt)
        gms_runtime_close(rt);
}

static void cli_refused(void)
{
    int rc = run_tool(NULL, 0, 1, cli, "audit", "verify", work, "--key-file", keyf);
    CHECK(rc == 1 || rc == 2);
}

static void key_file_refused(void)
{
    uint8_t k[GMS_AUDIT_KEY_MAX];
    size_t len;
    char err[512];
    CHECK(gms__audit_key_load(victim, k, &len, err, sizeof err) != 0);
    CHECK(strstr(err, want_word) != NULL);
    printf("  key: %s\n", err);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.audit_dir = work;
    o.audit_key_file = victim;
    gms_runtime *rt = NULL;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    if (rt)
        gms_runtime_close(rt);
    CHECK(run_tool(NULL, 0, 1, cli, "audit", "verify", work, "--key-file", victim) == 2);
}

/* The trail in work refused by verify, the CLI and the runtime. */
static void all_refuse(const char *what, const char *word)
{
    printf("%s\n", what);
    want_word = word;
    within(20, what, verify_refused);
    within(20, what, open_refused);
    within(70, what, cli_refused);
}

int main(void)
{
    tmpdir_make(base, sizeof base);
    snprintf(work, sizeof work, "%s-work", base);
    snprintf(keyf, sizeof keyf, "%s.key", base);
    snprintf(victim, sizeof victim, "%s.victim", base);
    key_file_write(keyf);
    cli_path(cli, sizeof cli);

    /* A trail of three segments, written by three runtimes. */
    for (int r = 0; r < 3; r++) {
        gms_runtime *rt = trail_open(base, 0, 0);
        CHECK(rt != NULL);
        if (!rt)
            return test_done();
        gms_context *c = ctx_open(rt, "acme", "alice", GMS_LANG_C);
        gms_buf h;
        for (int i = 0; i < 20; i++)
            if (gms_alloc(c, 100, 0, &h) == GMS_OK)
                gms_free(c, h);
        gms_context_close(c);
        gms_runtime_close(rt);
    }
    char seg[8][PATH_MAX];
    CHECK(seg_files(base, seg, 8) == 3);
    CHECK(gms__audit_seg_parse(strrchr(seg[2], '/') + 1, &newest_ix, &today) == 0);
    CHECK(newest_ix == 3);
    gms_trail_summary s;
    CHECK_RC(trail_verify(base, &s), GMS_TRAIL_OK);
    char p[PATH_MAX], q[PATH_MAX];

    /* A FIFO as the newest segment: opening it for reading would block. */
    fresh();
    seg_name(p, sizeof p, 4, today);
    CHECK(mkfifo(p, 0600) == 0);
    all_refuse("FIFO as the newest segment", "FIFO");

    /* A FIFO in place of an old segment: verify refuses it; a runtime
     * opens (it continues from the newest) without blocking or deleting
     * it. */
    fresh();
    seg_name(p, sizeof p, 2, today);
    CHECK(unlink(p) == 0 && mkfifo(p, 0600) == 0);
    want_word = "FIFO";
    within(20, "FIFO as an old segment: verify", verify_refused);
    within(20, "FIFO as an old segment: open", open_ok);
    struct stat st;
    CHECK(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode));

    /* The newest segment renamed to an enormous index: the key would be
     * evolved that many times. */
    fresh();
    seg_name(p, sizeof p, 3, today);
    seg_name(q, sizeof q, 999999999999999999ull, today);
    CHECK(rename(p, q) == 0);
    all_refuse("enormous segment index", "index");
    /* Just past the largest index gms writes, too. */
    fresh();
    seg_name(p, sizeof p, 3, today);
    seg_name(q, sizeof q, (1ull << 24) + 1, today);
    CHECK(rename(p, q) == 0);
    all_refuse("segment index past the limit", "index");
    /* An enormous index on the only segment (the oldest kept). */
    fresh();
    seg_name(p, sizeof p, 1, today);
    seg_name(q, sizeof q, 999999999999ull, today);
    CHECK(rename(p, q) == 0);
    seg_name(p, sizeof p, 2, today);
    unlink(p);
    seg_name(p, sizeof p, 3, today);
    unlink(p);
    want_word = "index";
    within(20, "enormous index on the only segment", verify_refused);

    /* A symbolic link as the newest segment (to a real segment). */
    fresh();
    seg_name(p, sizeof p, 4, today);
    CHECK(symlink(seg[2], p) == 0);
    all_refuse("symbolic link as a segment", "symbolic link");

    /* A directory as the newest segment. */
    fresh();
    seg_name(p, sizeof p, 4, today);
    CHECK(mkdir(p, 0700) == 0);
    all_refuse("directory as a segment", "directory");

    /* A sparse newest segment of 1 TiB: larger than any segment gms
     * writes; reading it would take hours. */
    fresh();
    seg_name(p, sizeof p, 3, today);
    if (truncate(p, 1ll << 40) == 0)
        all_refuse("1 TiB sparse segment", "larger than");
    else
        printf("SKIP: cannot make a 1 TiB sparse file here: %s\n", strerror(errno));

    /* The key file a FIFO (no writer: reading it blocks) or a directory. */
    fresh();
    CHECK(mkfifo(victim, 0600) == 0);
    printf("key file a FIFO\n");
    want_word = "FIFO";
    within(70, "key file a FIFO", key_file_refused);
    unlink(victim);
    CHECK(mkdir(victim, 0700) == 0);
    printf("key file a directory\n");
    want_word = "directory";
    within(70, "key file a directory", key_file_refused);
    rmdir(victim);

    /* Files the writer creates are not opened through planted links: the
     * temporary header file linked to a victim leaves the victim alone. */
    FILE *f = fopen(victim, "w");
    fputs("precious\n", f);
    fclose(f);
    fresh();
    snprintf(p, sizeof p, "%s/.gms-audit-new", work);
    CHECK(symlink(victim, p) == 0);
    within(20, "temporary file a symbolic link", open_ok);
    char buf[64] = {0};
    f = fopen(victim, "r");
    CHECK(f && fgets(buf, sizeof buf, f) && strcmp(buf, "precious\n") == 0);
    if (f)
        fclose(f);
    CHECK_RC(trail_verify(work, &s), GMS_TRAIL_OK);
    /* .lock linked to the victim: refused, the victim unchanged. */
    fresh();
    snprintf(p, sizeof p, "%s/.lock", work);
    unlink(p);
    CHECK(symlink(victim, p) == 0);
    printf(".lock a symbolic link\n");
    want_word = "symbolic link";
    within(20, ".lock a symbolic link", open_refused);
    f = fopen(victim, "r");
    CHECK(f && fgets(buf, sizeof buf, f) && strcmp(buf, "precious\n") == 0);
    if (f)
        fclose(f);

    unlink(victim);
    unlink(keyf);
    rm_rf(work);
    rm_rf(base);
    return test_done();
}
