/*
 * windows.c: access windows' rules on the host backend, one thread:
 * readers together, a writer alone (NOWAIT says BUSY), one window per
 * handle, frees, releases and transfers refused while a window is held, a
 * closing context's windows ended (and counted as leaks), atomic holders,
 * checked accesses refused (BUSY) under another holder's conflicting
 * window; every wrong input refused with its code and nothing changed.
 */
#include "share/util.h"
#include "gms/access.h"

#include <string.h>

static uint64_t live_blocks(gms_runtime *rt)
{
    gms_stats s;
    gms_stats_get(rt, &s);
    return s.live_blocks;
}

static char last_log[512];
static void keep_log(void *user, gms_log_level level, const char *msg)
{
    (void)user, (void)level;
    snprintf(last_log, sizeof last_log, "%s", msg);
}

/* A reader that closes its context with its window open: the window is a
 * leak (the log's line counts it beside the handle), it ends, and the
 * writer gets in at once. */
static void leaky_holder(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.log = keep_log;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return;
    gms_context *py = open_ctx(rt, "acme", "py", GMS_LANG_PYTHON);
    gms_context *rs = open_ctx(rt, "acme", "rs", GMS_LANG_RUST);
    gms_buf w = GMS_BUF_NULL, r = GMS_BUF_NULL;
    gms_share_id id = 0;
    CHECK_OK(gms_alloc(py, 4096, 0, &w));
    CHECK_OK(share_one(py, w, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id));
    CHECK_OK(gms_acquire(rs, id, GMS_ACCESS_READ, &r));
    CHECK_OK(gms_access_begin(rs, r, GMS_ACCESS_READ, 0, NULL));
    CHECK_RC(gms_access_begin(py, w, GMS_ACCESS_READ_WRITE, GMS_ACCESS_NOWAIT, NULL), GMS_E_BUSY);
    gms_context_close(rs);
    printf("log: %s\n", last_log);
    CHECK(strstr(last_log, "holding 1 buffer, ") && strstr(last_log, " bytes and 1 open access window (ended)"));
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.leaked_blocks == 1);
    CHECK_OK(gms_access_begin(py, w, GMS_ACCESS_READ_WRITE, GMS_ACCESS_NOWAIT, NULL));
    CHECK_OK(gms_access_end(py, w, NULL));
    /* A leak without a window says nothing of windows. */
    gms_buf k = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(py, 100, 0, &k));
    CHECK_OK(gms_free(py, w));
    gms_context_close(py);
    CHECK(strstr(last_log, "holding 1 buffer") != NULL && strstr(last_log, "window") == NULL);
    gms_runtime_close(rt);
}

/* Checked accesses (gms_read, gms_write, gms_fill, gms_copy) respect the
 * other holders' windows: GMS_E_BUSY, nothing done, where a begin would
 * wait; inside a holder's own window they go. */
static void checked_accesses(void)
{
    gms_runtime *rt = open_runtime();
    gms_context *py = open_ctx(rt, "acme", "py", GMS_LANG_PYTHON);
    gms_context *rs = open_ctx(rt, "acme", "rs", GMS_LANG_RUST);
    gms_buf w = GMS_BUF_NULL, r = GMS_BUF_NULL, other = GMS_BUF_NULL;
    gms_share_id id = 0;
    CHECK_OK(gms_alloc(py, 64, GMS_ALLOC_ZERO, &w));
    CHECK_OK(gms_alloc(py, 64, GMS_ALLOC_ZERO, &other));
    CHECK_OK(share_one(py, w, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &id));
    CHECK_OK(gms_acquire(rs, id, GMS_ACCESS_READ, &r));
    uint64_t v = 7;
    /* A reader's window: writes wait (BUSY here), reads go. */
    CHECK_OK(gms_access_begin(rs, r, GMS_ACCESS_READ, 0, NULL));
    CHECK_RC(gms_write(py, w, 0, &v, 8), GMS_E_BUSY);
    CHECK(strstr(gms_error_last(), "another holder's read window is open") != NULL);
    CHECK_RC(gms_fill(py, w, 0, 1, 8), GMS_E_BUSY);
    CHECK_RC(gms_copy(py, w, 0, other, 0, 8), GMS_E_BUSY);
    CHECK_OK(gms_copy(py, other, 0, w, 0, 8)); /* reads w */
    CHECK_OK(gms_read(py, w, 0, &v, 8));
    CHECK(v == 0);
    CHECK_OK(gms_read(rs, r, 0, &v, 8)); /* its own window */
    CHECK_OK(gms_access_end(rs, r, NULL));
    /* A writer's window: its own checked writes go, others' reads wait. */
    CHECK_OK(gms_access_begin(py, w, GMS_ACCESS_READ_WRITE, 0, NULL));
    v = 42;
    CHECK_OK(gms_write(py, w, 0, &v, 8));
    CHECK_RC(gms_read(rs, r, 0, &v, 8), GMS_E_BUSY);
    CHECK(strstr(gms_error_last(), "read-write window is open") != NULL);
    CHECK(v == 42);
    CHECK_OK(gms_access_end(py, w, NULL));
    v = 0;
    CHECK_OK(gms_read(rs, r, 0, &v, 8));
    CHECK(v == 42);
    v = 5;
    CHECK_OK(gms_write(py, w, 0, &v, 8)); /* no window anywhere: as before */
    CHECK_OK(gms_release(rs, r));
    CHECK_OK(gms_free(py, w));
    CHECK_OK(gms_free(py, other));
    gms_context_close(rs);
    gms_context_close(py);
    gms_runtime_close(rt);
}

int main(void)
{
    checked_accesses();
    gms_runtime *rt = open_runtime();
    gms_context *py = open_ctx(rt, "acme", "py", GMS_LANG_PYTHON);
    gms_context *rs = open_ctx(rt, "acme", "rs", GMS_LANG_RUST);
    gms_context *jl = open_ctx(rt, "acme", "jl", GMS_LANG_JULIA);
    gms_buf w = GMS_BUF_NULL, r = GMS_BUF_NULL, r2 = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(py, 4096, GMS_ALLOC_ZERO, &w));
    gms_share_id id = 0;
    CHECK_OK(share_one(py, w, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ_WRITE, 0, &id));
    CHECK_OK(gms_acquire(rs, id, GMS_ACCESS_READ, &r));
    CHECK_OK(gms_acquire(jl, id, GMS_ACCESS_READ, &r2));
    uint64_t blocks = live_blocks(rt);

    /* Wrong inputs: refused, nothing opened. */
    CHECK_RC(gms_access_begin(NULL, w, GMS_ACCESS_READ, 0, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_access_begin(py, w, (gms_access)0, 0, NULL), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "mode 0") != NULL);
    CHECK_RC(gms_access_begin(py, w, (gms_access)GMS_ACCESS_ATOMIC, 0, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_access_begin(py, w, GMS_ACCESS_READ, 0x80, NULL), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "flags 0x80") != NULL);
    CHECK_RC(gms_access_begin(py, GMS_BUF_NULL, GMS_ACCESS_READ, 0, NULL), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_access_begin(py, w ^ 1, GMS_ACCESS_READ, 0, NULL), GMS_E_INVALID_HANDLE);
    CHECK_RC(gms_access_begin(rs, w, GMS_ACCESS_READ, 0, NULL), GMS_E_ACCESS_DENIED);
    CHECK_RC(gms_access_begin(rs, r, GMS_ACCESS_READ_WRITE, 0, NULL), GMS_E_READ_ONLY);
    CHECK(strstr(gms_error_last(), "read-only") != NULL);
    CHECK_RC(gms_access_end(py, w, NULL), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "no open window") != NULL);
    CHECK_RC(gms_access_end(NULL, w, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_access_end(rs, w, NULL), GMS_E_ACCESS_DENIED);
    /* None of them opened a window: the writer opens at once. */
    CHECK_OK(gms_access_begin(py, w, GMS_ACCESS_READ_WRITE, GMS_ACCESS_NOWAIT, NULL));
    /* One window per handle. */
    CHECK_RC(gms_access_begin(py, w, GMS_ACCESS_READ, GMS_ACCESS_NOWAIT, NULL), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "already has a window") != NULL);
    /* A writer excludes readers. */
    CHECK_RC(gms_access_begin(rs, r, GMS_ACCESS_READ, GMS_ACCESS_NOWAIT, NULL), GMS_E_BUSY);
    CHECK(strstr(gms_error_last(), "conflicting window") != NULL);
    /* Frees, releases and transfers wait for the window's end. */
    CHECK_RC(gms_free(py, w), GMS_E_BUSY);
    CHECK(strstr(gms_error_last(), "gms_access_end it first") != NULL);
    CHECK_RC(gms_free_async(py, w, NULL), GMS_E_BUSY);
    CHECK(live_blocks(rt) == blocks);
    gms_buf_info info;
    CHECK_OK(gms_buf_info_get(py, w, &info));
    CHECK(info.holders == 3);
    CHECK_OK(gms_access_end(py, w, NULL));
    CHECK_RC(gms_access_end(py, w, NULL), GMS_E_INVALID_ARG);

    /* Readers together; a writer waits for both. */
    CHECK_OK(gms_access_begin(rs, r, GMS_ACCESS_READ, GMS_ACCESS_NOWAIT, NULL));
    CHECK_OK(gms_access_begin(jl, r2, GMS_ACCESS_READ, GMS_ACCESS_NOWAIT, NULL));
    CHECK_RC(gms_access_begin(py, w, GMS_ACCESS_READ_WRITE, GMS_ACCESS_NOWAIT, NULL), GMS_E_BUSY);
    CHECK_RC(gms_release(rs, r), GMS_E_BUSY);
    CHECK_OK(gms_access_end(rs, r, NULL));
    CHECK_RC(gms_access_begin(py, w, GMS_ACCESS_READ_WRITE, GMS_ACCESS_NOWAIT, NULL), GMS_E_BUSY);
    /* The writer's own handle may read alongside them. */
    CHECK_OK(gms_access_begin(py, w, GMS_ACCESS_READ, GMS_ACCESS_NOWAIT, NULL));
    CHECK_OK(gms_access_end(py, w, NULL));
    /* A closing context ends its windows: the writer gets in. */
    gms_context_close(jl);
    CHECK_OK(gms_access_begin(py, w, GMS_ACCESS_READ_WRITE, GMS_ACCESS_NOWAIT, NULL));
    CHECK_OK(gms_access_end(py, w, NULL));
    CHECK_OK(gms_release(rs, r));

    /* Atomic holders: beside the writer, READ windows only, no checked
     * writes; not on immutable shares, not without a write grant. */
    gms_context *zig = open_ctx(rt, "acme", "zig", GMS_LANG_ZIG);
    gms_buf a = GMS_BUF_NULL;
    CHECK_OK(gms_acquire(zig, id, GMS_ACCESS_ATOMIC, &a));
    CHECK_OK(gms_buf_info_get(zig, a, &info));
    CHECK(info.access == GMS_ACCESS_ATOMIC);
    CHECK_RC(gms_access_begin(zig, a, GMS_ACCESS_READ_WRITE, 0, NULL), GMS_E_READ_ONLY);
    CHECK_RC(gms_write(zig, a, 0, "x", 1), GMS_E_READ_ONLY);
    CHECK_OK(gms_atomic(zig, a, 8, GMS_ATOMIC_ADD, 8, 5, 0, NULL, NULL));
    CHECK_OK(gms_atomic(py, w, 8, GMS_ATOMIC_ADD, 8, 2, 0, NULL, NULL));
    uint64_t v = 0;
    CHECK_OK(gms_read(zig, a, 8, &v, 8));
    CHECK(v == 7);
    gms_buf a2 = GMS_BUF_NULL;
    CHECK_OK(gms_acquire(rs, id, GMS_ACCESS_ATOMIC, &a2)); /* several at once */
    CHECK_OK(gms_release(rs, a2));
    CHECK_RC(gms_acquire(rs, id, (gms_access)4, &a2), GMS_E_INVALID_ARG);
    gms_buf im = GMS_BUF_NULL;
    gms_share_id imid = 0;
    CHECK_OK(gms_alloc(py, 256, 0, &im));
    CHECK_OK(share_one(py, im, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ_WRITE, 1, &imid));
    CHECK_RC(gms_acquire(rs, imid, GMS_ACCESS_ATOMIC, &a2), GMS_E_READ_ONLY);
    CHECK_RC(gms_access_begin(py, im, GMS_ACCESS_READ_WRITE, 0, NULL), GMS_E_READ_ONLY);
    CHECK(strstr(gms_error_last(), "immutable") != NULL);
    CHECK_OK(gms_free(py, im));
    gms_share_id roid = 0;
    CHECK_OK(gms_alloc(py, 256, 0, &im));
    CHECK_OK(share_one(py, im, NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ, 0, &roid));
    CHECK_RC(gms_acquire(rs, roid, GMS_ACCESS_ATOMIC, &a2), GMS_E_ACCESS_DENIED);
    CHECK_OK(gms_free(py, im));
    CHECK_OK(gms_release(zig, a));

    /* Transfer: refused with a window, then goes. */
    gms_buf t = GMS_BUF_NULL, t2 = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(py, 256, 0, &t));
    CHECK_OK(gms_access_begin(py, t, GMS_ACCESS_READ_WRITE, 0, NULL));
    CHECK_RC(gms_transfer(py, t, rs, &t2), GMS_E_BUSY);
    CHECK(t2 == GMS_BUF_NULL);
    CHECK_OK(gms_access_end(py, t, NULL));
    CHECK_OK(gms_transfer(py, t, rs, &t2));
    CHECK_OK(gms_access_begin(rs, t2, GMS_ACCESS_READ_WRITE, 0, NULL));
    CHECK_OK(gms_access_end(rs, t2, NULL));
    CHECK_OK(gms_free(rs, t2));
    /* A window the owner leaves open when its context closes: ended, and
     * the buffer goes with the context. */
    gms_context *c = open_ctx(rt, "acme", "leaky", GMS_LANG_NIM);
    gms_buf l = GMS_BUF_NULL;
    CHECK_OK(gms_alloc(c, 256, 0, &l));
    CHECK_OK(gms_access_begin(c, l, GMS_ACCESS_READ_WRITE, 0, NULL));
    gms_context_close(c);
    leaky_holder();

    CHECK_OK(gms_free(py, w));
    CHECK(live_blocks(rt) == 0);
    CHECK_OK(gms_verify(rt, NULL));
    gms_context_close(zig);
    gms_context_close(rs);
    gms_context_close(py);
    gms_runtime_close(rt);
    return test_done();
}
