/*
 * xlang_peer.c: C code that uses gms on its own, for the cross-language
 * test (test/xlang_test.exs). It knows nothing of the Elixir binding: it
 * opens the process-wide runtime itself (gms_runtime_open(&rt, NULL)), a
 * context of tenant "acme" in language C, and exchanges buffers with
 * Elixir through share ids only. It is a NIF so the test can call it; each
 * function is a thin shell around plain gms calls.
 */
#include <erl_nif.h>
#include <gms.h>

#include <pthread.h>
#include <string.h>

static gms_runtime *rt;
static gms_context *ctx;
static gms_buf shared = GMS_BUF_NULL; /* the buffer C shared, until close */

static ERL_NIF_TERM error(ErlNifEnv *env, int code) {
    ERL_NIF_TERM msg;
    const char *s = gms_error_last();
    memcpy(enif_make_new_binary(env, strlen(s), &msg), s, strlen(s));
    return enif_make_tuple3(env, enif_make_atom(env, "error"), enif_make_int(env, code), msg);
}

static ERL_NIF_TERM ok(ErlNifEnv *env, ERL_NIF_TERM t) {
    return enif_make_tuple2(env, enif_make_atom(env, "ok"), t);
}

/* open() */
static ERL_NIF_TERM peer_open(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    (void)argv;
    int rc = gms_runtime_open(&rt, NULL);
    if (rc != GMS_OK)
        return error(env, rc);
    gms_context_desc desc = GMS_CONTEXT_DESC_INIT;
    desc.tenant = "acme";
    desc.user = "c-peer";
    desc.language = GMS_LANG_C;
    if ((rc = gms_context_open(&ctx, rt, &desc)) != GMS_OK) {
        gms_runtime_close(rt);
        return error(env, rc);
    }
    return enif_make_atom(env, "ok");
}

/* share_text(binary) -> {:ok, share_id}: a buffer C allocated and wrote,
 * shared immutable with Elixir code of tenant acme. */
static ERL_NIF_TERM peer_share_text(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifBinary text;
    if (!enif_inspect_binary(env, argv[0], &text))
        return enif_make_badarg(env);
    int rc = gms_alloc(ctx, text.size, GMS_ALLOC_ZERO, &shared);
    if (rc == GMS_OK)
        rc = gms_write(ctx, shared, 0, text.data, text.size);
    gms_share_grant grant = {NULL, NULL, GMS_LANG_ELIXIR, GMS_ACCESS_READ};
    gms_share_desc desc = GMS_SHARE_DESC_INIT;
    desc.grants = &grant;
    desc.ngrants = 1;
    desc.immutable = 1;
    gms_share_id id = 0;
    if (rc == GMS_OK)
        rc = gms_share(ctx, shared, &desc, &id);
    return rc == GMS_OK ? ok(env, enif_make_uint64(env, id)) : error(env, rc);
}

/* read_share(share_id, length) -> {:ok, binary}: acquires a share Elixir
 * made, reads it and releases it. */
static ERL_NIF_TERM peer_read_share(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifUInt64 id, len;
    ERL_NIF_TERM out;
    gms_buf mine;
    if (!enif_get_uint64(env, argv[0], &id) || !enif_get_uint64(env, argv[1], &len) || len > 1 << 20)
        return enif_make_badarg(env);
    int rc = gms_acquire(ctx, id, GMS_ACCESS_READ, &mine);
    if (rc != GMS_OK)
        return error(env, rc);
    rc = gms_read(ctx, mine, 0, enif_make_new_binary(env, len, &out), len);
    int rc2 = gms_release(ctx, mine);
    if (rc == GMS_OK)
        rc = rc2;
    return rc == GMS_OK ? ok(env, out) : error(env, rc);
}

/* write_share(share_id, binary): acquires a share Elixir made for writing
 * and writes at offset 0. */
static ERL_NIF_TERM peer_write_share(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifUInt64 id;
    ErlNifBinary text;
    gms_buf mine;
    if (!enif_get_uint64(env, argv[0], &id) || !enif_inspect_binary(env, argv[1], &text))
        return enif_make_badarg(env);
    int rc = gms_acquire(ctx, id, GMS_ACCESS_READ_WRITE, &mine);
    if (rc != GMS_OK)
        return error(env, rc);
    rc = gms_write(ctx, mine, 0, text.data, text.size);
    int rc2 = gms_release(ctx, mine);
    if (rc == GMS_OK)
        rc = rc2;
    return rc == GMS_OK ? enif_make_atom(env, "ok") : error(env, rc);
}

/* contexts() -> the number of contexts open in C's view of the runtime. */
static ERL_NIF_TERM peer_contexts(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    (void)argv;
    gms_stats s;
    int rc = gms_stats_get(rt, &s);
    return rc == GMS_OK ? ok(env, enif_make_uint64(env, s.contexts)) : error(env, rc);
}

/* close(): frees what C holds; a leak would show in the runtime's stats. */
static ERL_NIF_TERM peer_close(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    (void)argv;
    int rc = GMS_OK;
    if (shared != GMS_BUF_NULL)
        rc = gms_free(ctx, shared);
    shared = GMS_BUF_NULL;
    gms_context_close(ctx);
    gms_runtime_close(rt);
    ctx = NULL;
    rt = NULL;
    return rc == GMS_OK ? enif_make_atom(env, "ok") : error(env, rc);
}

struct thread_alloc {
    gms_context *ctx;
    size_t size;
    int rc;
};

static void *thread_alloc_main(void *arg) {
    struct thread_alloc *a = arg;
    gms_buf buf;
    a->rc = gms_alloc(a->ctx, a->size, 0, &buf);
    if (a->rc == GMS_OK)
        a->rc = gms_free(a->ctx, buf);
    return NULL;
}

/* alloc_in_thread(tenant, size) -> {:ok, 0} | {:error, code, msg}: C code
 * of `tenant` allocates (and frees) `size` bytes on a thread of its own,
 * one the BEAM knows nothing of, as another language's runtime would. */
static ERL_NIF_TERM peer_alloc_in_thread(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    char tenant[GMS_NAME_MAX + 1];
    ErlNifBinary name;
    ErlNifUInt64 size;
    if (!enif_inspect_binary(env, argv[0], &name) || name.size > GMS_NAME_MAX ||
        !enif_get_uint64(env, argv[1], &size))
        return enif_make_badarg(env);
    memcpy(tenant, name.data, name.size);
    tenant[name.size] = '\0';
    gms_context_desc desc = GMS_CONTEXT_DESC_INIT;
    desc.tenant = tenant;
    desc.user = "c-thread";
    desc.language = GMS_LANG_C;
    struct thread_alloc a = {NULL, (size_t)size, GMS_OK};
    int rc = gms_context_open(&a.ctx, rt, &desc);
    if (rc != GMS_OK)
        return error(env, rc);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_alloc_main, &a) != 0) {
        gms_context_close(a.ctx);
        return enif_make_badarg(env);
    }
    pthread_join(t, NULL);
    ERL_NIF_TERM result = a.rc == GMS_OK ? ok(env, enif_make_int(env, 0)) : error(env, a.rc);
    gms_context_close(a.ctx);
    return result;
}

static ErlNifFunc funcs[] = {
    /* Dirty: it waits for its thread, which may wait for the BEAM. */
    {"alloc_in_thread", 2, peer_alloc_in_thread, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"open", 0, peer_open, 0},
    {"share_text", 1, peer_share_text, 0},
    {"read_share", 2, peer_read_share, 0},
    {"write_share", 2, peer_write_share, 0},
    {"contexts", 0, peer_contexts, 0},
    {"close", 0, peer_close, 0},
};

ERL_NIF_INIT(Elixir.Gms.Test.XlangPeer, funcs, NULL, NULL, NULL, NULL)
