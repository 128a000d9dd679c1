/*
 * immutable.c: an immutable share is enforced. Checked writes are refused
 * for every holder, the owner included; where the block owns whole pages
 * the raw pointer is a read-only mapping and a write through it faults (in
 * a child process); elsewhere the bytes are hashed, and a write through a
 * pointer taken before the share is found by gms_verify and at the last
 * release.
 */
#include "share/util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned immutable_reports;

static void on_violation(void *user, const gms_violation *v)
{
    (void)user;
    if (v->kind == GMS_VIOLATION_IMMUTABLE_WRITE)
        immutable_reports++;
}

/* Writes one byte at p in a child; returns the signal that ended it (0 if
 * it exited). */
static int child_write(volatile unsigned char *p)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* not a sanitizer's report: the fault itself */
        signal(SIGBUS, SIG_DFL);
        *p = (unsigned char)(*p + 1);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static void view_path(gms_runtime *rt)
{
    /* A fresh pool's first block starts its chunk: 1 MiB - 64 bytes plus
     * the 32-byte redzone make a block of exactly 1 MiB, whole pages. */
    gms_context *owner = open_ctx(rt, "v", "maker", GMS_LANG_C);
    gms_context *reader = open_ctx(rt, "v", "reader", GMS_LANG_RUST);
    gms_buf b, r, x;
    size_t size = (1u << 20) - 64;
    CHECK_OK(gms_alloc(owner, size, 0, &b));
    CHECK_OK(gms_fill(owner, b, 0, 0x33, size));
    unsigned char *before;
    CHECK_OK(gms_buf_ptr(owner, b, (void **)&before));
    gms_share_id id;
    CHECK_OK(share_one(owner, b, NULL, NULL, GMS_LANG_RUST, GMS_ACCESS_READ, 1, &id));
    CHECK_RC(gms_acquire(reader, id, GMS_ACCESS_READ_WRITE, &x), GMS_E_READ_ONLY);
    CHECK_OK(gms_acquire(reader, id, GMS_ACCESS_READ, &r));
    gms_buf_info info;
    CHECK_OK(gms_buf_info(reader, r, &info));
    CHECK(info.immutable && info.read_only_view && info.access == GMS_ACCESS_READ);
    /* Nobody writes through the checked calls, the owner included. */
    CHECK_RC(gms_write(owner, b, 0, "x", 1), GMS_E_READ_ONLY);
    CHECK_RC(gms_fill(owner, b, 0, 0, 1), GMS_E_READ_ONLY);
    CHECK_RC(gms_copy(owner, b, 0, b, 8, 8), GMS_E_READ_ONLY);
    /* Every holder's raw pointer is the view: readable, write faults. */
    unsigned char *view, *oview;
    CHECK_OK(gms_buf_ptr(reader, r, (void **)&view));
    CHECK_OK(gms_buf_ptr(owner, b, (void **)&oview));
    CHECK(view == oview && view != before);
    CHECK(view[0] == 0x33 && view[size - 1] == 0x33);
    int sig = child_write(view + 12345);
    CHECK(sig == SIGSEGV || sig == SIGBUS);
    /* Reading into another of the reader's buffers works across pools. */
    gms_buf mine;
    CHECK_OK(gms_alloc(reader, 64, 0, &mine));
    CHECK_OK(gms_copy(reader, mine, 0, r, 1000, 64));
    unsigned char got[64];
    CHECK_OK(gms_read(reader, mine, 0, got, 64));
    CHECK(got[0] == 0x33 && got[63] == 0x33);
    CHECK_OK(gms_free(reader, mine));
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(gms_release(owner, b));
    CHECK_OK(gms_release(reader, r));
    CHECK_OK(gms_verify(rt, NULL));

    /* Anywhere in a used pool, GMS_ALLOC_PAGES gives a block of whole
     * pages, hence a view. */
    gms_buf small[5], pb[3];
    for (int i = 0; i < 5; i++)
        CHECK_OK(gms_alloc(owner, 300 + 1000 * (size_t)i, 0, &small[i]));
    CHECK_OK(gms_free(owner, small[1]));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(gms_alloc(owner, 10000 + (size_t)i * 3, GMS_ALLOC_PAGES, &pb[i]));
        CHECK_OK(gms_buf_info(owner, pb[i], &info));
        CHECK(info.device_ptr % 4096 == 0 && info.block_size % 4096 == 0);
    }
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(share_one(owner, pb[1], NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 1, &id));
    CHECK_OK(gms_buf_info(owner, pb[1], &info));
    CHECK(info.read_only_view);
    CHECK_OK(gms_buf_ptr(owner, pb[1], (void **)&view));
    sig = child_write(view + 9999);
    CHECK(sig == SIGSEGV || sig == SIGBUS);
    for (int i = 0; i < 3; i++)
        CHECK_OK(gms_free(owner, pb[i]));
    for (int i = 0; i < 5; i++)
        if (i != 1)
            CHECK_OK(gms_free(owner, small[i]));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(owner);
    gms_context_close(reader);
}

static void hash_path(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "h", "maker", GMS_LANG_C);
    gms_context *reader = open_ctx(rt, "h", "reader", GMS_LANG_JULIA);
    gms_buf pad, b, r;
    CHECK_OK(gms_alloc(owner, 100, 0, &pad)); /* b does not start a page */
    CHECK_OK(gms_alloc(owner, 200, 0, &b));
    CHECK_OK(gms_fill(owner, b, 0, 0x44, 200));
    unsigned char *raw;
    CHECK_OK(gms_buf_ptr(owner, b, (void **)&raw));
    gms_share_id id;
    CHECK_OK(share_one(owner, b, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 1, &id));
    CHECK_OK(gms_acquire(reader, id, GMS_ACCESS_READ, &r));
    gms_buf_info info;
    CHECK_OK(gms_buf_info(reader, r, &info));
    CHECK(info.immutable && !info.read_only_view);
    CHECK_OK(gms_verify(rt, NULL));

    /* A write through the pointer taken before the share: gms_verify
     * finds it, and so does the last release. */
    raw[150] ^= 0x01;
    unsigned before = immutable_reports;
    CHECK_RC(gms_verify(rt, NULL), GMS_E_CORRUPTION);
    CHECK(immutable_reports == before + 1);
    CHECK_OK(gms_release(owner, b));
    CHECK_RC(gms_release(reader, r), GMS_E_CORRUPTION);
    CHECK(immutable_reports == before + 2);
    CHECK_OK(gms_free(owner, pad));
    CHECK_OK(gms_verify(rt, NULL));

    /* Untouched, nothing is reported. */
    CHECK_OK(gms_alloc(owner, 300, 0, &b));
    CHECK_OK(share_one(owner, b, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 1, &id));
    before = immutable_reports;
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(gms_free(owner, b));
    CHECK(immutable_reports == before);
    gms_context_close(owner);
    gms_context_close(reader);
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    CHECK_OK(gms_on_violation(rt, on_violation, NULL));
    view_path(rt);
    hash_path(rt);
    gms_runtime_close(rt);
    return test_done();
}
