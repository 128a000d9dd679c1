/*
 * reader_pointers.c: what a holder that may only read gets as a raw
 * pointer, and what the hash of an immutable share resists.
 *
 * - A reader of another tenant never gets a writable pointer: a read-only
 *   mapping where the block owns whole pages (immutable or mutable share),
 *   otherwise GMS_E_ACCESS_DENIED from gms_buf_ptr and DLPack export (and
 *   device_ptr 0 in gms_buf_info); checked reads still work.
 * - The check of an immutable share on the hash path is keyed: a change
 *   made to keep an unkeyed hash of the bytes unchanged is found.
 */
#include "share/util.h"
#include "gms/dlpack.h"

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
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        *p = (unsigned char)(*p + 1);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* reader's handle r gets no raw pointer of any kind; checked reads work. */
static void no_pointer(gms_context *reader, gms_buf r, unsigned char want)
{
    void *p = NULL;
    CHECK_RC(gms_buf_ptr(reader, r, &p), GMS_E_ACCESS_DENIED);
    CHECK(p == NULL);
    gms_buf_info info;
    CHECK_OK(gms_buf_info(reader, r, &info));
    CHECK(info.device_ptr == 0 && !info.read_only_view && info.access == GMS_ACCESS_READ);
    DLManagedTensorVersioned *t = (void *)1;
    CHECK_RC(gms_dlpack_export(reader, r, NULL, &t), GMS_E_ACCESS_DENIED);
    CHECK(t == NULL);
    if (t && t != (void *)1)
        t->deleter(t);
    unsigned char got = 0;
    CHECK_OK(gms_read(reader, r, 0, &got, 1));
    CHECK(got == want);
}

/* reader's handle r reaches the bytes only through a read-only mapping:
 * its pointer (and its DLPack tensor) is not the writer's, reads the
 * writer's bytes, and a write through it faults. */
static void view_pointer(gms_context *reader, gms_buf r, const unsigned char *writable,
                         size_t size, unsigned char want)
{
    unsigned char *p = NULL;
    CHECK_OK(gms_buf_ptr(reader, r, (void **)&p));
    CHECK(p != NULL && p != writable);
    CHECK(p[0] == want && p[size - 1] == want);
    gms_buf_info info;
    CHECK_OK(gms_buf_info(reader, r, &info));
    CHECK(info.read_only_view && info.device_ptr == (uint64_t)(uintptr_t)p);
    int sig = child_write(p + size / 2);
    CHECK(sig == SIGSEGV || sig == SIGBUS);
    DLManagedTensorVersioned *t = NULL;
    CHECK_OK(gms_dlpack_export(reader, r, NULL, &t));
    CHECK(t->dl_tensor.data == p && (t->flags & DLPACK_FLAG_BITMASK_READ_ONLY));
    t->deleter(t);
}

/* Immutable, on the hash path (a block that shares its pages): the owner's
 * tenant may take a pointer (a write is found after the fact), another
 * tenant may not. */
static void immutable_hash(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "acme", "maker", GMS_LANG_C);
    gms_context *mate = open_ctx(rt, "acme", "mate", GMS_LANG_RUST);
    gms_context *other = open_ctx(rt, "globex", "eve", GMS_LANG_PYTHON);
    gms_buf pad, b, m, r;
    CHECK_OK(gms_alloc(owner, 100, 0, &pad));
    CHECK_OK(gms_alloc(owner, 200, 0, &b));
    CHECK_OK(gms_fill(owner, b, 0, 0x44, 200));
    gms_share_grant g[2] = {{NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ},
                            {"globex", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ}};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = g;
    d.ngrants = 2;
    d.immutable = 1;
    gms_share_id id;
    CHECK_OK(gms_share(owner, b, &d, &id));
    CHECK_OK(gms_acquire(mate, id, GMS_ACCESS_READ, &m));
    CHECK_OK(gms_acquire(other, id, GMS_ACCESS_READ, &r));
    no_pointer(other, r, 0x44);
    void *own = NULL, *mine = NULL;
    CHECK_OK(gms_buf_ptr(owner, b, &own));
    CHECK_OK(gms_buf_ptr(mate, m, &mine));
    CHECK(own != NULL && own == mine);
    CHECK_OK(gms_verify(rt, NULL));
    CHECK_OK(gms_release(mate, m));
    CHECK_OK(gms_release(owner, b));
    CHECK_OK(gms_release(other, r)); /* the last holder, of another tenant */
    CHECK_OK(gms_free(owner, pad));
    gms_context_close(owner);
    gms_context_close(mate);
    gms_context_close(other);
}

/* Immutable or mutable, a block of whole pages: another tenant's reader
 * gets a read-only mapping; the owner of a mutable share still writes,
 * and the reader's mapping shows it. */
static void whole_pages(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "acme", "maker", GMS_LANG_C);
    gms_context *other = open_ctx(rt, "globex", "eve", GMS_LANG_PYTHON);
    for (int immutable = 0; immutable <= 1; immutable++) {
        gms_buf b, r;
        size_t size = 3 * 4096 + 100;
        CHECK_OK(gms_alloc(owner, size, GMS_ALLOC_PAGES, &b));
        CHECK_OK(gms_fill(owner, b, 0, 0x55, size));
        unsigned char *own = NULL, *after = NULL;
        CHECK_OK(gms_buf_ptr(owner, b, (void **)&own));
        gms_share_id id;
        CHECK_OK(share_one(owner, b, "globex", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, immutable,
                           &id));
        CHECK_OK(gms_acquire(other, id, GMS_ACCESS_READ, &r));
        view_pointer(other, r, own, size, 0x55);
        /* The owner's pointer: the view too if immutable, else its memory. */
        gms_buf_info info;
        CHECK_OK(gms_buf_info(owner, b, &info));
        CHECK(info.read_only_view == immutable);
        CHECK_OK(gms_buf_ptr(owner, b, (void **)&after));
        CHECK((after == own) == !immutable);
        if (!immutable) {
            own[7] = 0x66; /* the writer's pointer is the memory itself */
            unsigned char *p = NULL;
            CHECK_OK(gms_buf_ptr(other, r, (void **)&p));
            CHECK(p[7] == 0x66);
        }
        CHECK_OK(gms_verify(rt, NULL));
        CHECK_OK(gms_release(owner, b));
        CHECK_OK(gms_release(other, r));
    }
    gms_context_close(owner);
    gms_context_close(other);
}

/* Mutable, a block that shares its pages: another tenant's reader gets no
 * pointer; a holder the grant lets write gets the memory itself. */
static void mutable_small(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "acme", "maker", GMS_LANG_C);
    gms_context *other = open_ctx(rt, "globex", "eve", GMS_LANG_PYTHON);
    gms_context *writer = open_ctx(rt, "globex", "bob", GMS_LANG_RUST);
    gms_buf pad, b, r, w;
    CHECK_OK(gms_alloc(owner, 100, 0, &pad));
    CHECK_OK(gms_alloc(owner, 300, 0, &b));
    CHECK_OK(gms_fill(owner, b, 0, 0x21, 300));
    gms_share_id id;
    CHECK_OK(share_one(owner, b, "globex", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ_WRITE, 0, &id));
    CHECK_OK(gms_acquire(other, id, GMS_ACCESS_READ, &r));
    no_pointer(other, r, 0x21);
    void *own = NULL, *p = NULL;
    CHECK_OK(gms_buf_ptr(owner, b, &own));
    CHECK_OK(gms_release(owner, b)); /* the one writer lets go */
    CHECK_OK(gms_acquire(writer, id, GMS_ACCESS_READ_WRITE, &w));
    CHECK_OK(gms_buf_ptr(writer, w, &p));
    CHECK(p == own);
    CHECK_OK(gms_release(writer, w));
    CHECK_OK(gms_release(other, r));
    CHECK_OK(gms_free(owner, pad));
    gms_context_close(owner);
    gms_context_close(other);
    gms_context_close(writer);
}

/* An imported tensor has no pages of its own to map read-only: another
 * tenant's reader of its share gets no pointer. */
static void shared_import(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "acme", "maker", GMS_LANG_PYTHON);
    gms_context *other = open_ctx(rt, "globex", "eve", GMS_LANG_PYTHON);
    for (int immutable = 0; immutable <= 1; immutable++) {
        static unsigned char data[8192];
        memset(data, 0x71, sizeof data);
        int64_t shape[1] = {sizeof data};
        DLManagedTensor t;
        memset(&t, 0, sizeof t);
        t.dl_tensor.data = data;
        t.dl_tensor.device = (DLDevice){kDLCPU, 0};
        t.dl_tensor.ndim = 1;
        t.dl_tensor.dtype = (DLDataType){kDLUInt, 8, 1};
        t.dl_tensor.shape = shape;
        gms_buf in, r;
        CHECK_OK(gms_dlpack_import_legacy(owner, &t, &in));
        gms_share_id id;
        CHECK_OK(share_one(owner, in, "globex", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, immutable,
                           &id));
        CHECK_OK(gms_acquire(other, id, GMS_ACCESS_READ, &r));
        no_pointer(other, r, 0x71);
        CHECK_OK(gms_release(owner, in));
        CHECK_OK(gms_release(other, r));
    }
    gms_context_close(owner);
    gms_context_close(other);
}

/* The hash the immutable check used before it was keyed: anyone could
 * compute it, and undo a change with a second one. */
static uint64_t unkeyed_step(uint64_t h, uint64_t w)
{
    h ^= w + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

/* Changes word i of words (a 200-byte block) and picks word i + 1 so that
 * the unkeyed hash of all of them stays the same. */
static void unkeyed_collision(uint64_t *words, uint64_t req_size, size_t i)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ req_size;
    for (size_t k = 0; k < i; k++)
        h = unkeyed_step(h, words[k]);
    uint64_t a = unkeyed_step(h, words[i]);
    uint64_t target = a ^ (words[i + 1] + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    words[i] ^= 0x0000000100000000ull; /* the change that matters */
    uint64_t a2 = unkeyed_step(h, words[i]);
    words[i + 1] = (target ^ a2) - 0x9e3779b97f4a7c15ull - (a2 << 6) - (a2 >> 2);
}

static void keyed_hash(gms_runtime *rt)
{
    gms_context *owner = open_ctx(rt, "acme", "maker", GMS_LANG_C);
    gms_buf pad, b;
    CHECK_OK(gms_alloc(owner, 100, 0, &pad));
    CHECK_OK(gms_alloc(owner, 200, 0, &b));
    uint64_t words[25];
    for (size_t k = 0; k < 25; k++)
        words[k] = 0x0101010101010101ull * (k + 1);
    CHECK_OK(gms_write(owner, b, 0, words, sizeof words));
    unsigned char *raw = NULL;
    CHECK_OK(gms_buf_ptr(owner, b, (void **)&raw)); /* before the share: writable */
    gms_share_id id;
    CHECK_OK(share_one(owner, b, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 1, &id));
    gms_buf_info info;
    CHECK_OK(gms_buf_info(owner, b, &info));
    CHECK(info.immutable && !info.read_only_view);
    CHECK_OK(gms_verify(rt, NULL));
    unkeyed_collision(words, 200, 3);
    memcpy(raw + 24, &words[3], 16);
    unsigned before = immutable_reports;
    CHECK_RC(gms_verify(rt, NULL), GMS_E_CORRUPTION);
    CHECK(immutable_reports == before + 1);
    CHECK_RC(gms_release(owner, b), GMS_E_CORRUPTION);
    CHECK_OK(gms_free(owner, pad));
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(owner);
}

int main(void)
{
    gms_runtime *rt = open_runtime();
    CHECK_OK(gms_on_violation(rt, on_violation, NULL));
    immutable_hash(rt);
    whole_pages(rt);
    mutable_small(rt);
    shared_import(rt);
    keyed_hash(rt);
    gms_runtime_close(rt);
    return test_done();
}
