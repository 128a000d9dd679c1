/*
 * host.c: the host backend on its own: reserve, commit, decommit (memory
 * goes back and reads as zeros), guard space that faults, and a second
 * read-only view of the same memory that faults when written.
 */
#include "test.h"
#include "backend/backend.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define GRANULE (2ull << 20)

/* Runs fn(arg) in a child; returns 1 if the child died of SIGSEGV/SIGBUS. */
static int faults(void (*fn)(uint64_t), uint64_t arg)
{
    pid_t pid = fork();
    if (pid == 0) {
        /* Die of the signal itself (a sanitizer would catch it and exit). */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && (WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS);
}

static void poke(uint64_t addr)
{
    *(volatile char *)(uintptr_t)addr = 1;
}

static void peek(uint64_t addr)
{
    (void)*(volatile char *)(uintptr_t)addr;
}

int main(void)
{
    gms_backend *be;
    CHECK(gms__backend_host_create(&be) == 0);
    uint64_t base = 0;
    gms_backend_chunk *c = NULL;
    CHECK(be->ops->reserve(be, 8 * GRANULE, GRANULE, &base, &c) == 0);
    CHECK(base % GRANULE == 0);
    gms_backend_chunk *bad = NULL;
    uint64_t bad_base;
    CHECK(be->ops->reserve(be, 0, GRANULE, &bad_base, &bad) == EINVAL);
    CHECK(be->ops->reserve(be, GRANULE, 3000, &bad_base, &bad) == EINVAL);

    /* Nothing is mapped until committed. */
    CHECK(faults(peek, base));
    CHECK(be->ops->commit(be, c, GRANULE, 2 * GRANULE) == 0);
    CHECK(!faults(poke, base + GRANULE));
    CHECK(faults(poke, base));                /* not committed */
    CHECK(faults(poke, base + 3 * GRANULE));  /* past the committed run */
    CHECK(faults(peek, base - 4096));         /* guard before the chunk */
    CHECK(faults(peek, base + 8 * GRANULE));  /* guard after it */

    /* Data round trip, then a read-only view of the same memory. */
    const char msg[] = "granule data";
    CHECK(be->ops->write(be, base + GRANULE + 100, msg, sizeof msg) == 0);
    char got[sizeof msg];
    CHECK(be->ops->read(be, got, base + GRANULE + 100, sizeof msg) == 0);
    CHECK(memcmp(got, msg, sizeof msg) == 0);
    uint64_t view = 0;
    CHECK(be->ops->map_view_readonly(be, c, GRANULE, GRANULE, &view) == 0);
    CHECK(memcmp((const char *)(uintptr_t)view + 100, msg, sizeof msg) == 0);
    CHECK(faults(poke, view + 100));
    CHECK(be->ops->fill(be, base + GRANULE + 100, 'x', 1) == 0);
    CHECK(((const char *)(uintptr_t)view)[100] == 'x'); /* one memory, two views */
    be->ops->unmap_view(be, view, GRANULE);

    /* Decommit returns the memory: recommitted, it reads as zeros. */
    CHECK(be->ops->decommit(be, c, GRANULE, GRANULE) == 0);
    CHECK(faults(peek, base + GRANULE));
    CHECK(be->ops->commit(be, c, GRANULE, GRANULE) == 0);
    CHECK(((const char *)(uintptr_t)base)[GRANULE + 100] == 0);

    /* Out-of-chunk ranges are refused. */
    CHECK(be->ops->commit(be, c, 7 * GRANULE, 2 * GRANULE) == EINVAL);
    CHECK(be->ops->decommit(be, c, UINT64_MAX - 10, 20) == EINVAL);
    be->ops->release(be, c);
    be->ops->destroy(be);
    return test_done();
}
