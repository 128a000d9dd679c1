/*
 * bench_dir.c: `gms-bench audit --dir DIR` (and $TMPDIR) never reach a
 * shell. A directory whose name holds quotes is used as a directory: the
 * trails made in it are removed, and nothing else is touched (a name built
 * to close the quote and name another directory used to delete that one).
 */
#include "util.h"

int main(void)
{
    char top[256], bench[PATH_MAX + 16], cli[PATH_MAX + 8];
    tmpdir_make(top, sizeof top);
    cli_path(cli, sizeof cli); /* before the chdir: it reads /proc/self/exe */
    CHECK(chdir(top) == 0);
    CHECK(mkdir("canary", 0700) == 0);
    /* "rm -rf 'BASE/gms-bench-audit-XXXXXX'" with this BASE ran
     * "rm -rf 'x' 'canary' '/gms-bench-audit-XXXXXX'". */
    const char *base = "x' 'canary' '";
    CHECK(mkdir(base, 0700) == 0);

    snprintf(bench, sizeof bench, "%s-bench", cli); /* build/gms-bench */
    char out[8192];
    int rc = run_tool(out, sizeof out, 0, bench, "audit", "--dir", base, "--no-replay",
                      "--records", "2000", "--pairs", "2000");
    CHECK(rc == 0);
    printf("%s", out);
    struct stat st;
    CHECK(stat("canary", &st) == 0 && S_ISDIR(st.st_mode));
    /* The trails it made are gone: base is empty again. */
    DIR *d = opendir(base);
    CHECK(d != NULL);
    int left = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        left += de->d_name[0] != '.';
    if (d)
        closedir(d);
    CHECK(left == 0);

    /* The same through $TMPDIR. */
    char env[PATH_MAX + 16];
    snprintf(env, sizeof env, "TMPDIR=%s", base);
    CHECK(run_tool(out, sizeof out, 0, "/usr/bin/env", env, bench, "audit", "--no-replay",
                   "--records", "2000", "--pairs", "2000") == 0);
    CHECK(stat("canary", &st) == 0 && S_ISDIR(st.st_mode));

    CHECK(chdir("/") == 0);
    rm_rf(top);
    return test_done();
}
