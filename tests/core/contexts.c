/*
 * contexts.c: who is acting. Malformed context descriptors are refused with
 * GMS_E_INVALID_ARG; a buffer is usable only by the context that made it
 * (another context of the same or another tenant gets GMS_E_ACCESS_DENIED
 * and changes nothing); closing a context that holds buffers reports the
 * leak (log, stats) and reclaims it; the shared runtime is reference
 * counted; error strings and messages; NULL arguments are errors, not
 * crashes; closing NULL is a no-op.
 */
#include "test.h"

#include <pthread.h>

static gms_runtime *rt;

/* Leaked bytes are block sizes: request plus the default 32-byte redzone,
 * rounded up to 256 (docs/api.md): 1024, 4096 and 256 bytes leaked. */
#define LEAKED (1280 + 4352 + 512)

/* Log capture. */
static int n_warn, n_leak_msgs;
static char last_log[1024];
static void on_log(void *user, gms_log_level level, const char *msg)
{
    CHECK(user == (void *)&n_warn);
    CHECK(msg != NULL);
    if (level <= GMS_LOG_WARN)
        n_warn++;
    if (msg && (strstr(msg, "leak") || strstr(msg, "Leak"))) {
        n_leak_msgs++;
        snprintf(last_log, sizeof last_log, "%s", msg);
    }
}

static int open_ctx(gms_context **out, const char *tenant, const char *user, gms_level level,
                    gms_language lang)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = user;
    d.level = level;
    d.language = lang;
    return gms_context_open(out, rt, &d);
}

/* Opens with a descriptor expected to be refused; *out must stay NULL. */
static void refused_desc(const gms_context_desc *d, const char *why)
{
    gms_context *c = (gms_context *)(uintptr_t)1;
    int rc = gms_context_open(&c, rt, d);
    if (rc != GMS_E_INVALID_ARG)
        fprintf(stderr, "descriptor (%s) returned %d\n", why, rc);
    CHECK_RC(rc, GMS_E_INVALID_ARG);
    CHECK(c == NULL);
    CHECK(gms_error_last()[0] != 0);
    if (rc == GMS_OK)
        gms_context_close(c);
}

static void *thread_error_last(void *arg)
{
    const char *m = gms_error_last();
    *(int *)arg = m != NULL && m[0] == 0;
    return NULL;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.log = on_log;
    o.log_user = &n_warn;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();

    /* ---- bad descriptors ---- */
    {
        gms_context_desc d;
        char name64[65], name63[64];
        memset(name64, 'a', 64);
        name64[64] = 0;
        memset(name63, 'b', 63);
        name63[63] = 0;

        gms_context_desc_init(&d);
        CHECK(d.version == GMS_CONTEXT_DESC_VERSION);
        d.user = "u";
        d.tenant = NULL;
        refused_desc(&d, "NULL tenant");
        d.tenant = "";
        refused_desc(&d, "empty tenant");
        d.tenant = name64;
        refused_desc(&d, "64-byte tenant");
        CHECK(strstr(gms_error_last(), "tenant") != NULL);
        d.tenant = "bad\nname";
        refused_desc(&d, "newline in tenant");
        d.tenant = "tab\there";
        refused_desc(&d, "tab in tenant");
        d.tenant = "del\x7f";
        refused_desc(&d, "DEL in tenant");
        d.tenant = "caf\xc3\xa9";
        refused_desc(&d, "non-ASCII tenant");
        d.tenant = "ok";
        d.user = "";
        refused_desc(&d, "empty user");
        d.user = name64;
        refused_desc(&d, "64-byte user");
        d.user = "us\x01r";
        refused_desc(&d, "control byte in user");
        d.user = "u";
        d.level = (gms_level)4;
        refused_desc(&d, "level 4");
        d.level = (gms_level)-1;
        refused_desc(&d, "level -1");
        d.level = GMS_LEVEL_PUBLIC;
        d.language = (gms_language)8;
        refused_desc(&d, "language 8");
        d.language = (gms_language)-1;
        refused_desc(&d, "language -1");
        d.language = GMS_LANG_RUST;
        d.version = 0;
        refused_desc(&d, "version 0");
        d.version = GMS_CONTEXT_DESC_VERSION + 1;
        refused_desc(&d, "version 2");
        d.version = GMS_CONTEXT_DESC_VERSION;
        CHECK_RC(gms_context_open(NULL, rt, &d), GMS_E_INVALID_ARG);
        gms_context *c = (gms_context *)(uintptr_t)1;
        CHECK_RC(gms_context_open(&c, rt, NULL), GMS_E_INVALID_ARG);
        CHECK(c == NULL);
        c = (gms_context *)(uintptr_t)1;
        CHECK_RC(gms_context_open(&c, NULL, &d), GMS_E_INVALID_ARG);
        CHECK(c == NULL);

        /* The limits themselves are fine: 63 bytes, every printable byte. */
        d.tenant = name63;
        d.user = " ~!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}";
        c = NULL;
        CHECK_OK(gms_context_open(&c, rt, &d));
        CHECK(c != NULL);
        gms_context_close(c);

        /* Nothing was left behind by the refusals: only that tenant. */
        gms_stats st;
        CHECK_OK(gms_stats_get(rt, &st));
        CHECK(st.contexts == 0);
        CHECK(st.tenants == 1);
    }

    /* ---- another context's buffer ---- */
    {
        gms_context *owner, *same_tenant, *other_level, *other_lang, *other_tenant;
        CHECK_OK(open_ctx(&owner, "acme", "alice", GMS_LEVEL_INTERNAL, GMS_LANG_RUST));
        CHECK_OK(open_ctx(&same_tenant, "acme", "bob", GMS_LEVEL_INTERNAL, GMS_LANG_RUST));
        CHECK_OK(open_ctx(&other_level, "acme", "alice", GMS_LEVEL_SECRET, GMS_LANG_RUST));
        CHECK_OK(open_ctx(&other_lang, "acme", "alice", GMS_LEVEL_INTERNAL, GMS_LANG_PYTHON));
        CHECK_OK(open_ctx(&other_tenant, "globex", "eve", GMS_LEVEL_INTERNAL, GMS_LANG_RUST));
        gms_context *others[] = {same_tenant, other_level, other_lang, other_tenant};
        gms_buf h;
        CHECK_OK(gms_alloc(owner, 512, 0, &h));
        CHECK_OK(gms_write(owner, h, 0, "secret", 7));
        gms_buf theirs;
        CHECK_OK(gms_alloc(other_tenant, 512, 0, &theirs));
        for (int i = 0; i < 4; i++) {
            gms_context *x = others[i];
            char buf[8] = "XXXXXXX";
            void *p = (void *)buf;
            gms_buf_info info;
            memset(&info, 0, sizeof info);
            CHECK_RC(gms_free(x, h), GMS_E_ACCESS_DENIED);
            CHECK_RC(gms_read(x, h, 0, buf, 7), GMS_E_ACCESS_DENIED);
            CHECK(memcmp(buf, "XXXXXXX", 7) == 0);
            CHECK_RC(gms_write(x, h, 0, "pwned!", 7), GMS_E_ACCESS_DENIED);
            CHECK_RC(gms_fill(x, h, 0, 0, 7), GMS_E_ACCESS_DENIED);
            CHECK_RC(gms_buf_ptr(x, h, &p), GMS_E_ACCESS_DENIED);
            CHECK(p == NULL); /* outputs are cleared on failure */
            CHECK_RC(gms_buf_info_get(x, h, &info), GMS_E_ACCESS_DENIED);
            CHECK(info.size == 0 && info.device_ptr == 0);
            /* Copies that name it on either side. */
            if (x != other_tenant) {
                gms_buf mine;
                CHECK_OK(gms_alloc(x, 512, 0, &mine));
                CHECK_RC(gms_copy(x, mine, 0, h, 0, 7), GMS_E_ACCESS_DENIED);
                CHECK_RC(gms_copy(x, h, 0, mine, 0, 7), GMS_E_ACCESS_DENIED);
                CHECK_OK(gms_free(x, mine));
            } else {
                CHECK_RC(gms_copy(x, theirs, 0, h, 0, 7), GMS_E_ACCESS_DENIED);
                CHECK_RC(gms_copy(x, h, 0, theirs, 0, 7), GMS_E_ACCESS_DENIED);
            }
        }
        /* The owner can't touch the other tenant's buffer either. */
        CHECK_RC(gms_free(owner, theirs), GMS_E_ACCESS_DENIED);
        /* The owner still has it, unchanged. */
        char back[8] = {0};
        CHECK_OK(gms_read(owner, h, 0, back, 7));
        CHECK(strcmp(back, "secret") == 0);
        gms_buf_info info;
        CHECK_OK(gms_buf_info_get(owner, h, &info));
        CHECK(strcmp(info.user, "alice") == 0 && strcmp(info.tenant, "acme") == 0);
        CHECK_OK(gms_free(owner, h));
        CHECK_OK(gms_free(other_tenant, theirs));
        /* Once freed, others get INVALID_HANDLE, not a hint it is theirs. */
        CHECK_RC(gms_free(other_tenant, h), GMS_E_INVALID_HANDLE);
        for (int i = 0; i < 4; i++)
            gms_context_close(others[i]);
        gms_context_close(owner);
        CHECK(n_leak_msgs == 0);
    }

    /* ---- leaks at context close ---- */
    {
        gms_stats before, st;
        CHECK_OK(gms_stats_get(rt, &before));
        gms_context *c;
        CHECK_OK(open_ctx(&c, "leaky", "lee", GMS_LEVEL_PUBLIC, GMS_LANG_ELIXIR));
        gms_buf b1, b2, b3, kept;
        CHECK_OK(gms_alloc(c, 1024, 0, &b1));
        CHECK_OK(gms_alloc(c, 4096, 0, &b2));
        CHECK_OK(gms_alloc(c, 256, 0, &b3));
        CHECK_OK(gms_alloc(c, 512, 0, &kept));
        CHECK_OK(gms_free(c, kept));
        CHECK_OK(gms_stats_get(rt, &st));
        CHECK(st.live_blocks == before.live_blocks + 3);
        int warn0 = n_warn, leak0 = n_leak_msgs;
        gms_context_close(c);
        CHECK(n_leak_msgs == leak0 + 1);
        CHECK(n_warn > warn0);
        CHECK(strstr(last_log, "leaky") != NULL); /* names the tenant */
        CHECK_OK(gms_stats_get(rt, &st));
        CHECK(st.leaked_blocks == before.leaked_blocks + 3);
        CHECK(st.leaked_bytes == before.leaked_bytes + LEAKED);
        CHECK(st.live_blocks == 0);
        CHECK(st.live_bytes == 0);
        CHECK(st.contexts == 0);
        for (uint64_t i = 0; i < st.tenants; i++) {
            gms_tenant_stats ts;
            CHECK_OK(gms_tenant_stats_get(rt, i, &ts));
            if (strcmp(ts.tenant, "leaky") == 0) {
                CHECK(ts.leaked_blocks == 3);
                CHECK(ts.leaked_bytes == LEAKED);
                CHECK(ts.live_blocks == 0 && ts.live_bytes == 0);
            }
        }
        gms_report r;
        CHECK_OK(gms_verify(rt, &r));
        CHECK(r.live_blocks == 0 && r.live_handles == 0 && r.violations == 0);
        /* The leaked handles are dead: a new context of the same pool
         * cannot reach them. */
        CHECK_OK(open_ctx(&c, "leaky", "lee", GMS_LEVEL_PUBLIC, GMS_LANG_ELIXIR));
        CHECK_RC(gms_free(c, b1), GMS_E_INVALID_HANDLE);
        CHECK_RC(gms_free(c, b2), GMS_E_INVALID_HANDLE);
        CHECK_RC(gms_free(c, b3), GMS_E_INVALID_HANDLE);
        gms_context_close(c);
        CHECK(n_leak_msgs == leak0 + 1); /* a clean close reports nothing */
    }

    /* ---- runtime close reclaims open contexts, reporting their leaks ---- */
    {
        gms_runtime *r2;
        CHECK_OK(gms_runtime_open(&r2, &o));
        gms_context_desc d;
        gms_context_desc_init(&d);
        d.tenant = "t";
        d.user = "u";
        gms_context *c;
        CHECK_OK(gms_context_open(&c, r2, &d));
        gms_buf h;
        CHECK_OK(gms_alloc(c, 100, 0, &h));
        int leak0 = n_leak_msgs;
        gms_runtime_close(r2); /* closes c too; ASan checks nothing leaks */
        CHECK(n_leak_msgs == leak0 + 1);
    }

    /* ---- the shared runtime ---- */
    {
        gms_runtime *s1 = NULL, *s2 = NULL;
        CHECK_OK(gms_runtime_open(&s1, NULL));
        CHECK_OK(gms_runtime_open(&s2, NULL));
        CHECK(s1 != NULL && s1 == s2);
        CHECK(s1 != rt);
        gms_context_desc d;
        gms_context_desc_init(&d);
        d.tenant = "shared";
        d.user = "u";
        gms_context *c;
        gms_buf h;
        CHECK_OK(gms_context_open(&c, s1, &d));
        CHECK_OK(gms_alloc(c, 256, 0, &h));
        CHECK_OK(gms_free(c, h));
        gms_context_close(c);
        gms_runtime_close(s1);
        /* Still open: one close left. */
        gms_stats st;
        CHECK_OK(gms_stats_get(s2, &st));
        CHECK(st.allocs == 1);
        CHECK_OK(gms_context_open(&c, s2, &d));
        gms_context_close(c);
        gms_runtime_close(s2);
        /* Both closes done: the next open is a fresh runtime. */
        gms_runtime *s3 = NULL;
        CHECK_OK(gms_runtime_open(&s3, NULL));
        CHECK_OK(gms_stats_get(s3, &st));
        CHECK(st.allocs == 0 && st.tenants == 0);
        gms_runtime_close(s3);
    }

    /* ---- bad runtime options ---- */
    {
        gms_runtime *x = (gms_runtime *)(uintptr_t)1;
        gms_runtime_options bad = o;
        bad.version = 0;
        CHECK_RC(gms_runtime_open(&x, &bad), GMS_E_INVALID_ARG);
        CHECK(x == NULL);
        bad = o;
        bad.granule_bytes = 3 * 4096;
        CHECK_RC(gms_runtime_open(&x, &bad), GMS_E_INVALID_ARG);
        bad = o;
        bad.granule_bytes = 1024;
        CHECK_RC(gms_runtime_open(&x, &bad), GMS_E_INVALID_ARG);
        bad = o;
        bad.backend = (gms_backend_kind)42;
        CHECK_RC(gms_runtime_open(&x, &bad), GMS_E_INVALID_ARG);
        CHECK(x == NULL);
        CHECK_RC(gms_runtime_open(NULL, &o), GMS_E_INVALID_ARG);
    }

    /* ---- error strings ---- */
    {
        int codes[] = {GMS_OK, GMS_E_INVALID_ARG, GMS_E_INVALID_HANDLE, GMS_E_ACCESS_DENIED,
                       GMS_E_OUT_OF_BOUNDS, GMS_E_QUOTA, GMS_E_NO_MEMORY, GMS_E_READ_ONLY,
                       GMS_E_CORRUPTION, GMS_E_BACKEND, GMS_E_UNSUPPORTED, GMS_E_BUSY};
        int n = (int)(sizeof codes / sizeof codes[0]);
        for (int i = 0; i < n; i++) {
            const char *s = gms_strerror(codes[i]);
            CHECK(s != NULL && s[0] != 0);
            for (int j = 0; j < i; j++)
                CHECK(s && strcmp(s, gms_strerror(codes[j])) != 0);
        }
        CHECK(strstr(gms_strerror(GMS_E_QUOTA), "QUOTA") != NULL);
        CHECK(gms_strerror(-1000) != NULL);
        CHECK(gms_strerror(12345) != NULL);
        CHECK(gms_level_name((gms_level)99) != NULL);
        CHECK(gms_language_name((gms_language)99) != NULL);
        CHECK(strcmp(gms_level_name(GMS_LEVEL_SECRET), gms_level_name(GMS_LEVEL_PUBLIC)) != 0);
        CHECK(strcmp(gms_runtime_backend_name(rt), "host") == 0);
    }

    /* ---- gms_error_last ---- */
    {
        int fresh = 0;
        pthread_t t;
        CHECK(pthread_create(&t, NULL, thread_error_last, &fresh) == 0);
        pthread_join(t, NULL);
        CHECK(fresh); /* "" on a thread that never failed */
        gms_context *c;
        CHECK_OK(open_ctx(&c, "acme", "alice", GMS_LEVEL_INTERNAL, GMS_LANG_C));
        gms_buf h;
        CHECK_OK(gms_alloc(c, 100, 0, &h));
        char x[4];
        CHECK_RC(gms_read(c, h, 99, x, 2), GMS_E_OUT_OF_BOUNDS);
        const char *m = gms_error_last();
        CHECK(m != NULL && m[0] != 0);
        char oob_msg[512];
        snprintf(oob_msg, sizeof oob_msg, "%s", m);
        CHECK_OK(gms_tenant_set_quota(rt, "acme", 0, GMS_UNLIMITED));
        gms_buf q;
        CHECK_RC(gms_alloc(c, 100, 0, &q), GMS_E_QUOTA);
        m = gms_error_last();
        CHECK(m != NULL && strcmp(m, oob_msg) != 0);
        CHECK(strstr(m, "quota") != NULL || strstr(m, "Quota") != NULL);
        CHECK(strstr(m, "acme") != NULL);
        CHECK_OK(gms_tenant_set_quota(rt, "acme", GMS_UNLIMITED, GMS_UNLIMITED));
        CHECK_OK(gms_free(c, h));
        CHECK_RC(gms_free(c, h), GMS_E_INVALID_HANDLE);
        m = gms_error_last();
        CHECK(m != NULL && m[0] != 0);
        CHECK(strstr(m, "free") != NULL);
        gms_context_close(c);
    }

    /* ---- NULL arguments are errors, not crashes ---- */
    {
        gms_context *c;
        CHECK_OK(open_ctx(&c, "acme", "alice", GMS_LEVEL_INTERNAL, GMS_LANG_C));
        gms_buf h, out = 99;
        CHECK_OK(gms_alloc(c, 64, 0, &h));
        char buf[8];
        void *p;
        gms_buf_info info;
        gms_stats st;
        gms_tenant_stats ts;
        CHECK_RC(gms_alloc(NULL, 64, 0, &out), GMS_E_INVALID_ARG);
        CHECK(out == GMS_BUF_NULL);
        CHECK_RC(gms_alloc(c, 64, 0, NULL), GMS_E_INVALID_ARG);
        CHECK_RC(gms_free(NULL, h), GMS_E_INVALID_ARG);
        CHECK_RC(gms_read(NULL, h, 0, buf, 1), GMS_E_INVALID_ARG);
        CHECK_RC(gms_write(NULL, h, 0, buf, 1), GMS_E_INVALID_ARG);
        CHECK_RC(gms_fill(NULL, h, 0, 1, 1), GMS_E_INVALID_ARG);
        CHECK_RC(gms_copy(NULL, h, 0, h, 1, 1), GMS_E_INVALID_ARG);
        CHECK_RC(gms_buf_ptr(NULL, h, &p), GMS_E_INVALID_ARG);
        CHECK_RC(gms_buf_ptr(c, h, NULL), GMS_E_INVALID_ARG);
        CHECK_RC(gms_buf_info_get(NULL, h, &info), GMS_E_INVALID_ARG);
        CHECK_RC(gms_buf_info_get(c, h, NULL), GMS_E_INVALID_ARG);
        CHECK_RC(gms_stats_get(NULL, &st), GMS_E_INVALID_ARG);
        CHECK_RC(gms_stats_get(rt, NULL), GMS_E_INVALID_ARG);
        CHECK_RC(gms_tenant_stats_get(NULL, 0, &ts), GMS_E_INVALID_ARG);
        CHECK_RC(gms_tenant_stats_get(rt, 0, NULL), GMS_E_INVALID_ARG);
        CHECK_RC(gms_tenant_stats_get(rt, 1000000, &ts), GMS_E_INVALID_ARG);
        CHECK_RC(gms_verify(NULL, NULL), GMS_E_INVALID_ARG);
        CHECK_RC(gms_tenant_set_quota(NULL, "acme", 1, 1), GMS_E_INVALID_ARG);
        CHECK_RC(gms_tenant_set_quota(rt, NULL, 1, 1), GMS_E_INVALID_ARG);
        CHECK_RC(gms_tenant_set_quota(rt, "", 1, 1), GMS_E_INVALID_ARG);
        CHECK_RC(gms_on_violation(NULL, NULL, NULL), GMS_E_INVALID_ARG);
        CHECK_RC(gms_on_violation(rt, NULL, NULL), GMS_E_INVALID_ARG);
        CHECK_RC(gms_audit_flush(NULL), GMS_E_INVALID_ARG);
        CHECK(gms_runtime_backend_name(NULL) != NULL);
        gms_runtime_options_init(NULL);
        gms_context_desc_init(NULL);
        gms_context_close(NULL);
        gms_runtime_close(NULL);
        /* The buffer survived all of that. */
        CHECK_OK(gms_write(c, h, 0, "ok", 3));
        CHECK_OK(gms_free(c, h));
        gms_context_close(c);
    }

    gms_report r;
    CHECK_OK(gms_verify(rt, &r));
    CHECK(r.violations == 0);
    gms_runtime_close(rt);
    return test_done();
}
