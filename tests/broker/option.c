/*
 * option.c: gms_runtime_options.broker (version 2 of the struct), the
 * option that makes gms_runtime_open a client of gmsd as GMS_BROKER does.
 *
 * - The option alone opens the broker backend: a buffer is a lease of
 *   gmsd's, closing returns it.
 * - Precedence: the option wins over GMS_BROKER, even when the option's
 *   socket cannot be reached (no fallback to the variable); the variable
 *   applies when the option is NULL.
 * - A version 1 struct (built against the old gms.h) is read as before:
 *   bytes past it, even a pointer where version 2 has the broker, are
 *   never read, and GMS_BROKER still works for it.
 * - Wrong values ("", a path too long for sun_path, a GPU backend with a
 *   broker, a socket nobody listens on) are refused with a message naming
 *   the option and change nothing: no runtime, no lease, no connection
 *   left in gmsd.
 */
#include "util.h"

#define MIB (1ull << 20)

static broker b;

static int mentions(const char *a, const char *b2)
{
    const char *m = gms_error_last();
    return strstr(m, a) && (!b2 || strstr(m, b2));
}

/* Opens a context of gmsd's tenant for this uid on rt, allocates one
 * buffer, and returns the leases gmsd then counts for the tenant (-1 on a
 * failure); everything is freed again. */
static int leases_while_allocated(gms_runtime *rt)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "self";
    d.user = "u";
    gms_context *ctx = NULL;
    gms_buf buf;
    uint64_t bytes = 0, leases = 0;
    int n = -1;
    if (gms_context_open(&ctx, rt, &d) == GMS_OK && gms_alloc(ctx, 4096, 0, &buf) == GMS_OK) {
        if (raw_usage(b.sock, &bytes, &leases) == 0)
            n = (int)leases;
        gms_free(ctx, buf);
    }
    gms_context_close(ctx);
    return n;
}

static int idle(void)
{
    uint64_t bytes = 1, leases = 1;
    return raw_usage(b.sock, &bytes, &leases) == 0 && bytes == 0 && leases == 0;
}

static void the_option(void)
{
    unsetenv("GMS_BROKER");
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    CHECK(o.version == 2 && o.broker == NULL);
    o.broker = b.sock;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK(rt && strcmp(gms_runtime_backend_name(rt), "broker") == 0);
    if (rt)
        CHECK(leases_while_allocated(rt) == 1);
    gms_runtime_close(rt);
    CHECK(idle());
    /* The default is no broker: host memory. */
    gms_runtime_options_init(&o);
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK(rt && strcmp(gms_runtime_backend_name(rt), "host") == 0);
    gms_runtime_close(rt);
}

static void precedence(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_runtime *rt = NULL;
    /* The option wins over the variable. */
    setenv("GMS_BROKER", "/nonexistent/by-the-variable.sock", 1);
    o.broker = b.sock;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK(rt && strcmp(gms_runtime_backend_name(rt), "broker") == 0);
    gms_runtime_close(rt);
    /* ... also when its socket cannot be reached: no fallback. */
    setenv("GMS_BROKER", b.sock, 1);
    o.broker = "/nonexistent/by-the-option.sock";
    rt = (gms_runtime *)(uintptr_t)1;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_BACKEND);
    CHECK(rt == NULL);
    CHECK(mentions("gms_runtime_options.broker=/nonexistent/by-the-option.sock",
                   "cannot connect to gmsd"));
    /* NULL: the variable applies, and messages name it. */
    o.broker = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK(rt && strcmp(gms_runtime_backend_name(rt), "broker") == 0);
    gms_runtime_close(rt);
    setenv("GMS_BROKER", "/nonexistent/by-the-variable.sock", 1);
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_BACKEND);
    CHECK(mentions("GMS_BROKER=/nonexistent/by-the-variable.sock", "cannot connect to gmsd"));
    unsetenv("GMS_BROKER");
    CHECK(idle());
}

/* A caller built against version 1 of gms.h: its struct ends at
 * max_held_bytes. */
static void version_1(void)
{
    size_t v1 = offsetof(gms_runtime_options, max_held_bytes) + sizeof(uint64_t);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.version = 1;
    gms_runtime_options *exact = malloc(v1); /* ASan sees any read past it */
    CHECK(exact != NULL);
    if (!exact)
        return;
    memcpy(exact, &o, v1);
    gms_runtime *rt = NULL;
    unsetenv("GMS_BROKER");
    CHECK_OK(gms_runtime_open(&rt, exact));
    CHECK(rt && strcmp(gms_runtime_backend_name(rt), "host") == 0);
    gms_runtime_close(rt);
    setenv("GMS_BROKER", b.sock, 1);
    CHECK_OK(gms_runtime_open(&rt, exact));
    CHECK(rt && strcmp(gms_runtime_backend_name(rt), "broker") == 0);
    if (rt)
        CHECK(leases_while_allocated(rt) == 1);
    gms_runtime_close(rt);
    free(exact);
    /* A pointer where version 2 keeps the broker is not version 1's. */
    unsetenv("GMS_BROKER");
    o.broker = "/nonexistent/not-read.sock";
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK(rt && strcmp(gms_runtime_backend_name(rt), "host") == 0);
    gms_runtime_close(rt);
    /* The initialiser of version 1 leaves the broker's bytes alone. */
    memset(&o, 0xee, sizeof o);
    CHECK_OK(gms_runtime_options_init_version(&o, 1));
    unsigned char *tail = (unsigned char *)&o + v1;
    CHECK(o.version == 1 && tail[0] == 0xee && tail[sizeof o.broker - 1] == 0xee);
    CHECK_OK(gms_runtime_options_init_version(&o, 2));
    CHECK(o.version == 2 && o.broker == NULL);
    CHECK(idle());
}

static void refused(gms_runtime_options *o, int want, const char *a, const char *b2)
{
    gms_runtime *rt = (gms_runtime *)(uintptr_t)1;
    CHECK_RC(gms_runtime_open(&rt, o), want);
    CHECK(rt == NULL);
    CHECK(mentions(a, b2));
    if (rt && rt != (gms_runtime *)(uintptr_t)1)
        gms_runtime_close(rt); /* opened when it should not have been */
}

static void wrong_values(void)
{
    int before = fd_baseline(b.pid);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    setenv("GMS_BROKER", b.sock, 1); /* the option's error is not the variable's success */
    o.broker = "";
    refused(&o, GMS_E_INVALID_ARG, "gms_runtime_options.broker is \"\"", "NULL for none");
    char longer[200];
    memset(longer, 'x', sizeof longer - 1);
    longer[0] = '/';
    longer[sizeof longer - 1] = '\0';
    o.broker = longer;
    refused(&o, GMS_E_INVALID_ARG, "gms_runtime_options.broker=/xxx", "199 bytes");
    CHECK(mentions("at most 107", NULL));
    /* The longest path sun_path holds is taken (and is simply absent). */
    longer[107] = '\0';
    refused(&o, GMS_E_BACKEND, "cannot connect to gmsd", NULL);
    o.broker = b.sock;
    /* gmsd says what it serves: host memory here, so CUDA is refused once
     * it answers; HIP, which it never serves, before anything is made. */
    o.backend = GMS_BACKEND_CUDA;
    refused(&o, GMS_E_INVALID_ARG, "gms_runtime_options.broker=", "gmsd serves host memory");
    o.backend = GMS_BACKEND_HIP;
    refused(&o, GMS_E_INVALID_ARG, "gms_runtime_options.broker=", "never HIP");
    o.backend = GMS_BACKEND_HOST; /* the broker's memory is host memory */
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_runtime_close(rt);
    o.backend = GMS_BACKEND_AUTO;
    o.granule_bytes = 4 * MIB; /* the lease, 2 MiB, is no multiple of it */
    refused(&o, GMS_E_INVALID_ARG, "gms_runtime_options.broker=", "not a multiple of granule_bytes");
    /* A path that is no socket. */
    o.granule_bytes = 0;
    o.broker = b.policy;
    refused(&o, GMS_E_BACKEND, "gms_runtime_options.broker=", "cannot connect to gmsd");
    unsetenv("GMS_BROKER");
    CHECK(idle());
    CHECK(fd_count_settles(b.pid, before));
}

int main(void)
{
    broker_start_one(&b, 12 * MIB, 4, "");
    the_option();
    precedence();
    version_1();
    wrong_values();
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
