/*
 * crash.c: a process killed with SIGKILL while it writes its trail loses at
 * most the unflushed tail and never corrupts what came before: verify
 * passes on everything written, a torn last block is reported as a torn
 * tail (not tampering), and the next runtime on the trail continues the
 * chain, recording the torn bytes it found so verify still passes.
 */
#include "util.h"

#include <signal.h>
#include <time.h>

static void child(const char *dir)
{
    gms_runtime *rt = trail_open(dir, 1024 * 1024, 0);
    if (!rt)
        _exit(3);
    gms_context *c = ctx_open(rt, "acme", "alice", GMS_LANG_C);
    for (uint64_t i = 0;; i++) {
        gms_buf h;
        if (gms_alloc(c, 512, 0, &h) == GMS_OK)
            gms_free(c, h);
        if (i == 0)
            gms_audit_flush(rt);
    }
}

int main(void)
{
    char dir[256], keyf[300], cli[PATH_MAX + 8], out[8192];
    tmpdir_make(dir, sizeof dir);
    snprintf(keyf, sizeof keyf, "%s.key", dir);
    key_file_write(keyf);
    cli_path(cli, sizeof cli);

    pid_t pid = fork();
    if (pid == 0)
        child(dir);
    /* Let it write several segments, then kill it mid-stream. */
    char seg[64][PATH_MAX];
    for (int i = 0; i < 400 && seg_files(dir, seg, 64) < 2; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    struct timespec more = {0, 120 * 1000 * 1000}; /* mid-segment, not at a rotation */
    nanosleep(&more, NULL);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    gms_trail_summary s;
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_OK);
    CHECK(s.records > 1000);
    printf("after SIGKILL: %llu records, %llu sealed, %llu unsealed, torn: %s\n",
           (unsigned long long)s.records, (unsigned long long)s.sealed_seq,
           (unsigned long long)s.unsealed, s.torn[0] ? s.torn : "none");
    uint64_t killed_records = s.records;

    /* A write cut short inside a block: append part of a record. */
    size_t n = seg_files(dir, seg, 64);
    CHECK(n >= 2);
    FILE *f = fopen(seg[n - 1], "ab");
    char junk[77];
    memset(junk, 0x5a, sizeof junk);
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_OK);
    CHECK(s.records == killed_records);
    CHECK(s.torn_bytes >= 77 && strstr(s.torn, "not tampering") != NULL);
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "verify", dir, "--key-file", keyf) == 0);
    CHECK(strstr(out, "TORN TAIL") != NULL);
    printf("%s", out);

    /* The next runtime continues the chain past the torn tail. */
    gms_runtime *rt = trail_open(dir, 1024 * 1024, 0);
    CHECK(rt != NULL);
    if (rt) {
        gms_context *c = ctx_open(rt, "acme", "alice", GMS_LANG_C);
        gms_buf h;
        CHECK_OK(gms_alloc(c, 100, 0, &h));
        CHECK_OK(gms_free(c, h));
        gms_context_close(c);
        gms_runtime_close(rt);
    }
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_OK);
    CHECK(s.records == killed_records + 6);
    CHECK(s.acknowledged_torn >= 77);
    CHECK(s.torn[0] == 0);
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "verify", dir, "--key-file", keyf) == 0);
    CHECK(strstr(out, "restarts") != NULL);

    /* Tampering in the torn region afterwards is caught: the restart wrote
     * down how many torn bytes there were. */
    f = fopen(seg[n - 1], "ab");
    fwrite(junk, 1, 10, f);
    fclose(f);
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_TAMPERED);

    rm_rf(dir);
    unlink(keyf);
    return test_done();
}
