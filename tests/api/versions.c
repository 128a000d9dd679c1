/*
 * versions.c: the library's version, and versioned structs that grow.
 *
 * - gms_version() is GMS_VERSION, which is made of the three macros.
 * - Every versioned struct: version 0 and the one after the current are
 *   refused with a message naming the struct, the version and its
 *   initialiser; a struct exactly as large as version 1 (on the heap, so
 *   ASan sees a read past it) is accepted.
 * - The mechanism on a struct with three versions: an older version's
 *   fields are read and the newer ones keep their defaults; an initialiser
 *   writes no byte past the version asked for.
 * - gms_runtime_options.reserved must be 0; the testing header's knobs.
 */
#include "test.h"
#include "core/version.h"
#include "gms/dlpack.h"
#include "gms/testing.h"

static int mentions(const char *a, const char *b, const char *c)
{
    const char *m = gms_error_last();
    return strstr(m, a) && strstr(m, b) && (!c || strstr(m, c));
}

/* A copy of `s` in a heap block of exactly `size` bytes. */
static void *exact_copy(const void *s, size_t size)
{
    void *p = malloc(size);
    if (p)
        memcpy(p, s, size);
    return p;
}

static void library_version(void)
{
    CHECK(GMS_VERSION == GMS_VERSION_MAJOR * 10000 + GMS_VERSION_MINOR * 100 + GMS_VERSION_PATCH);
    CHECK(gms_version() == GMS_VERSION);
    CHECK(gms_version() / 10000 == GMS_VERSION_MAJOR);
    CHECK(gms_version() / 100 % 100 == GMS_VERSION_MINOR);
    CHECK(gms_version() % 100 == GMS_VERSION_PATCH);
}

static void runtime_options(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    gms_runtime *rt = (gms_runtime *)(uintptr_t)1;
    o.version = 0;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(rt == NULL);
    CHECK(mentions("gms_runtime_options version 0", "GMS_RUNTIME_OPTIONS_INIT", "gms_runtime_open"));
    o.version = GMS_RUNTIME_OPTIONS_VERSION + 1;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(mentions("gms_runtime_options version", "GMS_RUNTIME_OPTIONS_INIT", NULL));

    o.version = 1;
    gms_runtime_options *v1 = exact_copy(&o, gms__runtime_options_versions.sizes[1]);
    CHECK(v1 != NULL);
    CHECK_OK(gms_runtime_open(&rt, v1));
    CHECK(rt != NULL && strcmp(gms_runtime_backend_name(rt), "host") == 0);
    gms_runtime_close(rt);
    free(v1);

    /* The field that held fail_nth_call. */
    o.reserved = 3;
    rt = (gms_runtime *)(uintptr_t)1;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(rt == NULL);
    CHECK(mentions("reserved", "gms/testing.h", NULL));
}

static void context_share_dlpack(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    gms_runtime *rt;
    CHECK_OK(gms_runtime_open(&rt, &o));

    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "acme";
    d.user = "ann";
    gms_context *c = (gms_context *)(uintptr_t)1;
    d.version = 0;
    CHECK_RC(gms_context_open(&c, rt, &d), GMS_E_INVALID_ARG);
    CHECK(c == NULL);
    CHECK(mentions("gms_context_desc version 0", "GMS_CONTEXT_DESC_INIT", "gms_context_open"));
    d.version = GMS_CONTEXT_DESC_VERSION + 1;
    CHECK_RC(gms_context_open(&c, rt, &d), GMS_E_INVALID_ARG);
    d.version = 1;
    gms_context_desc *d1 = exact_copy(&d, gms__context_desc_versions.sizes[1]);
    CHECK_OK(gms_context_open(&c, rt, d1));
    free(d1);

    gms_buf b;
    CHECK_OK(gms_alloc(c, 64, 0, &b));
    gms_share_grant g = {NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc s = GMS_SHARE_DESC_INIT;
    s.grants = &g;
    s.ngrants = 1;
    gms_share_id id = 1;
    s.version = 0;
    CHECK_RC(gms_share(c, b, &s, &id), GMS_E_INVALID_ARG);
    CHECK(id == 0);
    CHECK(mentions("gms_share_desc version 0", "GMS_SHARE_DESC_INIT", "gms_share"));
    s.version = GMS_SHARE_DESC_VERSION + 1;
    CHECK_RC(gms_share(c, b, &s, &id), GMS_E_INVALID_ARG);
    s.version = 1;
    gms_share_desc *s1 = exact_copy(&s, gms__share_desc_versions.sizes[1]);
    CHECK_OK(gms_share(c, b, s1, &id));
    free(s1);

    gms_dlpack_desc t = GMS_DLPACK_DESC_INIT;
    int64_t shape = 64;
    t.ndim = 1;
    t.shape = &shape;
    DLManagedTensorVersioned *tensor = NULL;
    t.version = 0;
    CHECK_RC(gms_dlpack_export(c, b, &t, &tensor), GMS_E_INVALID_ARG);
    CHECK(tensor == NULL);
    CHECK(mentions("gms_dlpack_desc version 0", "GMS_DLPACK_DESC_INIT", "gms_dlpack_export"));
    t.version = GMS_DLPACK_DESC_VERSION + 1;
    CHECK_RC(gms_dlpack_export(c, b, &t, &tensor), GMS_E_INVALID_ARG);
    t.version = 1;
    gms_dlpack_desc *t1 = exact_copy(&t, gms__dlpack_desc_versions.sizes[1]);
    CHECK_OK(gms_dlpack_export(c, b, t1, &tensor));
    CHECK(tensor && tensor->dl_tensor.ndim == 1 && tensor->dl_tensor.shape[0] == 64);
    free(t1);
    if (tensor)
        tensor->deleter(tensor);

    CHECK_OK(gms_free(c, b));
    gms_context_close(c);
    gms_runtime_close(rt);
}

/* ---- the mechanism, on a struct with three versions ---- */

typedef struct grown {
    uint32_t version;
    uint32_t a; /* version 1 */
    uint64_t b; /* version 2 */
    uint16_t c; /* version 3 */
} grown;

static const size_t grown_sizes[] = {0, GMS__SIZE_UP_TO(grown, a), GMS__SIZE_UP_TO(grown, b),
                                     GMS__SIZE_UP_TO(grown, c)};
static const gms_struct_versions grown_versions = {"grown", "GROWN_INIT", 3, grown_sizes};
static const grown grown_defaults = {3, 10, 20, 30};

static void mechanism(void)
{
    const grown callers = {0, 1, 2, 3};
    for (uint32_t v = 1; v <= 3; v++) {
        grown given = callers;
        given.version = v;
        grown *exact = exact_copy(&given, grown_sizes[v]);
        grown out = grown_defaults;
        CHECK_OK(gms__struct_read(&grown_versions, "test", exact, &out));
        CHECK(out.version == 3);
        CHECK(out.a == 1);
        CHECK(out.b == (v >= 2 ? 2u : 20u));
        CHECK(out.c == (v >= 3 ? 3u : 30u));
        free(exact);
    }
    for (uint32_t v = 0; v <= 4; v += 4) {
        grown given = callers, out = grown_defaults;
        given.version = v;
        CHECK_RC(gms__struct_read(&grown_versions, "test_fn", &given, &out), GMS_E_INVALID_ARG);
        CHECK(mentions("test_fn: grown version", "versions 1 to 3", "GROWN_INIT"));
        CHECK(memcmp(&out, &grown_defaults, sizeof out) == 0);
    }

    /* An initialiser writes the asked version's bytes and no more. */
    for (uint32_t v = 1; v <= 3; v++) {
        unsigned char mem[sizeof(grown) + 8];
        memset(mem, 0xee, sizeof mem);
        CHECK_OK(gms__struct_init(&grown_versions, "test", mem, v, &grown_defaults));
        grown got;
        memcpy(&got, mem, sizeof got);
        CHECK(got.version == v && got.a == 10);
        size_t untouched = 0;
        for (size_t i = grown_sizes[v]; i < sizeof mem; i++)
            untouched += mem[i] == 0xee;
        CHECK(untouched == sizeof mem - grown_sizes[v]);
    }
    grown g;
    CHECK_RC(gms__struct_init(&grown_versions, "test", &g, 4, &grown_defaults), GMS_E_INVALID_ARG);
    CHECK_RC(gms__struct_init(&grown_versions, "test", NULL, 1, &grown_defaults), GMS_E_INVALID_ARG);
}

static void initialisers(void)
{
    gms_runtime_options want = GMS_RUNTIME_OPTIONS_INIT, o;
    memset(&o, 0xee, sizeof o);
    CHECK_OK(gms_runtime_options_init_version(&o, GMS_RUNTIME_OPTIONS_VERSION));
    CHECK(memcmp(&o, &want, gms__runtime_options_versions.sizes[GMS_RUNTIME_OPTIONS_VERSION]) == 0);
    CHECK_RC(gms_runtime_options_init_version(&o, 0), GMS_E_INVALID_ARG);
    CHECK_RC(gms_runtime_options_init_version(&o, GMS_RUNTIME_OPTIONS_VERSION + 1), GMS_E_INVALID_ARG);
    CHECK_RC(gms_runtime_options_init_version(NULL, 1), GMS_E_INVALID_ARG);
    memset(&o, 0xee, sizeof o);
    gms_runtime_options_init(&o); /* the macro: the header's version */
    CHECK(o.version == GMS_RUNTIME_OPTIONS_VERSION && o.safety == GMS_SAFETY_ON);
    memset(&o, 0xee, sizeof o);
    (gms_runtime_options_init)(&o); /* the symbol bindings call: version 1 */
    CHECK(o.version == 1 && o.reserved == 0);
    (gms_runtime_options_init)(NULL);

    gms_context_desc d;
    memset(&d, 0xee, sizeof d);
    gms_context_desc_init(&d);
    CHECK(d.version == GMS_CONTEXT_DESC_VERSION && d.tenant == NULL && d.level == GMS_LEVEL_INTERNAL);
    CHECK_RC(gms_context_desc_init_version(&d, 0), GMS_E_INVALID_ARG);
    memset(&d, 0xee, sizeof d);
    (gms_context_desc_init)(&d);
    CHECK(d.version == 1 && d.user == NULL);
    (gms_context_desc_init)(NULL);

    gms_share_desc s;
    memset(&s, 0xee, sizeof s);
    gms_share_desc_init(&s);
    CHECK(s.version == GMS_SHARE_DESC_VERSION && s.grants == NULL && s.immutable == 0);
    CHECK_RC(gms_share_desc_init_version(&s, GMS_SHARE_DESC_VERSION + 1), GMS_E_INVALID_ARG);
    memset(&s, 0xee, sizeof s);
    (gms_share_desc_init)(&s);
    CHECK(s.version == 1 && s.ngrants == 0);
    (gms_share_desc_init)(NULL);
}

static void testing_knobs(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    /* The first fallible operation of an open is the backend's creation. */
    gms_testing_options t = {.fail_nth_call = 1};
    gms_runtime *rt = (gms_runtime *)(uintptr_t)1;
    CHECK_RC(gms_testing_runtime_open(&rt, &o, &t), GMS_E_NO_MEMORY);
    CHECK(rt == NULL);
    /* Without knobs, or without options: a private runtime each time. */
    gms_runtime *a = NULL, *b = NULL;
    CHECK_OK(gms_testing_runtime_open(&a, &o, NULL));
    CHECK_OK(gms_testing_runtime_open(&b, NULL, NULL));
    CHECK(a && b && a != b);
    gms_runtime_close(a);
    gms_runtime_close(b);
    o.version = 0;
    CHECK_RC(gms_testing_runtime_open(&rt, &o, NULL), GMS_E_INVALID_ARG);
    CHECK(mentions("gms_testing_runtime_open", "version 0", NULL));
    CHECK_RC(gms_testing_runtime_open(NULL, NULL, NULL), GMS_E_INVALID_ARG);

    CHECK_RC(gms_testing_audit_ring_slots(1), GMS_E_INVALID_ARG);
    CHECK_RC(gms_testing_audit_ring_slots(12), GMS_E_INVALID_ARG);
    CHECK_OK(gms_testing_audit_ring_slots(16));
    CHECK_OK(gms_testing_audit_ring_slots(0));
}

int main(void)
{
    library_version();
    runtime_options();
    context_share_dlpack();
    mechanism();
    initialisers();
    testing_knobs();
    return test_done();
}
