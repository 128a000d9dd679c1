/*
 * abort.c: with on_corruption = GMS_ON_CORRUPTION_ABORT a detected
 * corruption is reported and then the process aborts (checked in a forked
 * child: it dies of SIGABRT, after the callback ran); with the default
 * REPORT policy the same program goes on.
 */
#include "util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_abort_check(void *user, const gms_violation *v)
{
    (void)user;
    (void)v;
    /* The callback runs before the abort: say so through the exit path. */
    static const char msg[] = "callback\n";
    if (write(STDOUT_FILENO, msg, sizeof msg - 1) < 0)
        _exit(3);
}

/* Runs a corrupting program in a child; returns its wait status. */
static int child(gms_corruption_policy policy, int kind, int pipe_w)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipe_w, STDOUT_FILENO);
        gms_runtime_options o = safety_opts();
        o.on_corruption = policy;
        gms_runtime *rt = NULL;
        if (gms_runtime_open(&rt, &o) != GMS_OK || gms_on_violation(rt, on_abort_check, NULL) != GMS_OK)
            _exit(2);
        gms_context *c = ctx_of(rt, "t", "u", GMS_LEVEL_SECRET);
        gms_buf b = alloc_or_die(c, 10);
        if (kind == 0) {
            raw(c, b)[10] ^= 1; /* overflow, found at free */
            gms_free(c, b);
        } else {
            uint8_t *p = raw(c, b);
            gms_free(c, b);
            p[3] ^= 1; /* write after free, found by gms_verify */
            gms_verify(rt, NULL);
        }
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

int main(void)
{
    for (int kind = 0; kind < 2; kind++) {
        int fd[2];
        CHECK(pipe(fd) == 0);
        int st = child(GMS_ON_CORRUPTION_ABORT, kind, fd[1]);
        close(fd[1]);
        char buf[64] = {0};
        ssize_t n = read(fd[0], buf, sizeof buf - 1);
        close(fd[0]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
        CHECK(n > 0 && strstr(buf, "callback") != NULL);

        CHECK(pipe(fd) == 0);
        st = child(GMS_ON_CORRUPTION_REPORT, kind, fd[1]);
        close(fd[1]);
        memset(buf, 0, sizeof buf);
        n = read(fd[0], buf, sizeof buf - 1);
        close(fd[0]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        CHECK(n > 0 && strstr(buf, "callback") != NULL);
    }
    /* An unknown policy is refused. */
    gms_runtime_options o = safety_opts();
    o.on_corruption = (gms_corruption_policy)7;
    gms_runtime *rt = NULL;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    return test_done();
}
