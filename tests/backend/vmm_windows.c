/*
 * vmm_windows.c: the virtual-memory backend's part in access windows and
 * checked atomics (docs/ordering.md), without a GPU: over the fake driver
 * of fake_driver.h, which logs what was queued on which stream.
 *
 *   - a window's end records an event on its stream; a conflicting begin
 *     on another stream queues a wait for it (none on the same stream,
 *     none between readers); a writer waits for every reader's end since;
 *   - a checked read after a writer's end orders the backend's stream
 *     after its event; refused (BUSY) while the writer's window is open;
 *   - a free ordered on a stream makes it wait for the ended windows'
 *     events before the stream is waited for, and their events go;
 *   - gms_atomic's old value comes back through a pinned word after the
 *     stream is synchronised (old == NULL: no sync); a batch writes its
 *     results buffer;
 *   - a failing event_create, event_record or stream_wait_event surfaces
 *     as GMS_E_BACKEND naming the call and the driver's error, and leaves
 *     no window behind, or falls back to a stream sync (an end); a failing
 *     atomic launch or pinned allocation changes nothing and leaks no
 *     word; every event made is destroyed by the runtime's close.
 */
#include "test.h"
#include "backend/fake_driver.h"
#include "gms/access.h"

/* Callers' streams: the fake driver only passes them along. */
static char stream_objects[4];
#define S1 ((void *)&stream_objects[1])
#define S2 ((void *)&stream_objects[2])
#define S3 ((void *)&stream_objects[3])

static int use_fake(gms_backend *inner, gms_backend **out)
{
    inner->ops->destroy(inner);
    return fake_vmm_create(out);
}

static void quiet(void *user, gms_log_level level, const char *msg)
{
    (void)user, (void)level, (void)msg;
}

static gms_runtime *rt;
static gms_context *py, *jl;
static gms_buf wb, rb;

static gms_context *ctx_open(const char *user, gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "acme";
    d.user = user;
    d.language = lang;
    gms_context *c = NULL;
    CHECK_OK(gms_context_open(&c, rt, &d));
    return c;
}

/* A buffer of the Python writer's, shared with the Julia reader. */
static void share_new(void)
{
    CHECK_OK(gms_alloc(py, 4096, GMS_ALLOC_ZERO, &wb));
    gms_share_grant g = {NULL, "jl", GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = &g;
    d.ngrants = 1;
    gms_share_id id = 0;
    CHECK_OK(gms_share(py, wb, &d, &id));
    CHECK_OK(gms_acquire(jl, id, GMS_ACCESS_READ, &rb));
}

static void log_reset(void)
{
    fake_nlog = 0;
}

/* How many logged calls of kind on stream a (and event b, if not NULL). */
static int logged(int kind, void *a, void *b)
{
    int n = 0;
    for (unsigned i = 0; i < fake_nlog; i++)
        n += fake_log[i].kind == kind && fake_log[i].a == a && (!b || fake_log[i].b == b);
    return n;
}

static int logged_kind(int kind)
{
    int n = 0;
    for (unsigned i = 0; i < fake_nlog; i++)
        n += fake_log[i].kind == kind;
    return n;
}

/* The event of the last record on stream. */
static void *recorded_on(void *stream)
{
    for (unsigned i = fake_nlog; i-- > 0;)
        if (fake_log[i].kind == GMS_DRV_event_record && fake_log[i].a == stream)
            return fake_log[i].b;
    return NULL;
}

/* Position of the first logged call of kind on stream, -1 if none. */
static int first_at(int kind, void *stream)
{
    for (unsigned i = 0; i < fake_nlog; i++)
        if (fake_log[i].kind == kind && fake_log[i].a == stream)
            return (int)i;
    return -1;
}

static void test_events(void)
{
    share_new();
    log_reset();
    CHECK_OK(gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, 0, S1));
    CHECK(logged_kind(GMS_DRV_stream_wait_event) == 0); /* nothing ended yet */
    CHECK_OK(gms_access_end(py, wb, S1));
    void *ew = recorded_on(S1);
    CHECK(ew != NULL && logged_kind(GMS_DRV_event_record) == 1);

    log_reset();
    CHECK_OK(gms_access_begin(jl, rb, GMS_ACCESS_READ, 0, S2));
    CHECK(logged(GMS_DRV_stream_wait_event, S2, ew) == 1); /* the reader after the writer */
    CHECK(logged_kind(GMS_DRV_stream_wait_event) == 1);
    CHECK_OK(gms_access_end(jl, rb, S2));
    void *er = recorded_on(S2);
    CHECK(er != NULL && er != ew);

    /* The writer again, on its own stream: it waits for the reader, not
     * for its own last end (stream order has that), and reuses its event. */
    log_reset();
    unsigned long long made = fake_calls(GMS_DRV_event_create);
    CHECK_OK(gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, 0, S1));
    CHECK(logged(GMS_DRV_stream_wait_event, S1, er) == 1);
    CHECK(logged_kind(GMS_DRV_stream_wait_event) == 1);
    CHECK_OK(gms_access_end(py, wb, S1));
    CHECK(recorded_on(S1) == ew && fake_calls(GMS_DRV_event_create) == made);

    /* A checked read after the writer's end: the default stream waits for
     * its event, the backend's own stream for the default stream. */
    log_reset();
    uint64_t v = 0;
    CHECK_OK(gms_read(jl, rb, 0, &v, 8));
    CHECK(logged(GMS_DRV_stream_wait_event, NULL, ew) == 1);
    CHECK(logged_kind(GMS_DRV_event_record) == 1 && recorded_on(NULL) != NULL);
    /* Refused while the writer's window is open: nothing queued. */
    CHECK_OK(gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, 0, S1));
    log_reset();
    CHECK_RC(gms_read(jl, rb, 0, &v, 8), GMS_E_BUSY);
    CHECK(fake_nlog == 0);
    CHECK_OK(gms_access_end(py, wb, S1));

    /* A reader on the writer's stream queues no wait. */
    log_reset();
    CHECK_OK(gms_access_begin(jl, rb, GMS_ACCESS_READ, 0, S1));
    CHECK(logged_kind(GMS_DRV_stream_wait_event) == 0);
    CHECK_OK(gms_access_end(jl, rb, S1));

    /* The reader on S2 once more, then a free ordered on S3: S3 waits for
     * the writer's end and both readers' before gms waits for S3, and the
     * windows' events are destroyed. */
    CHECK_OK(gms_access_begin(jl, rb, GMS_ACCESS_READ, 0, S2));
    CHECK_OK(gms_access_end(jl, rb, S2));
    void *er1 = recorded_on(S1), *er2 = recorded_on(S2);
    CHECK(er1 != ew && er2 != ew && er1 != er2);
    CHECK_OK(gms_release(jl, rb)); /* not the last holder: nothing waits */
    log_reset();
    CHECK_OK(gms_free_async(py, wb, S3));
    CHECK(logged(GMS_DRV_stream_wait_event, S3, ew) == 1);
    CHECK(logged(GMS_DRV_stream_wait_event, S3, er1) == 1);
    CHECK(logged(GMS_DRV_stream_wait_event, S3, er2) == 1);
    int sync = first_at(GMS_DRV_stream_sync, S3), wait = first_at(GMS_DRV_stream_wait_event, S3);
    CHECK(wait >= 0 && sync > wait);
    CHECK(logged(GMS_DRV_event_destroy, NULL, ew) == 1);
    CHECK(logged(GMS_DRV_event_destroy, NULL, er1) == 1);
    CHECK(logged(GMS_DRV_event_destroy, NULL, er2) == 1);
}

static void test_atomics(void)
{
    CHECK_OK(gms_alloc(py, 4096, GMS_ALLOC_ZERO, &wb));
    uint64_t old = 99;
    log_reset();
    /* old == NULL: queued on the stream, no wait. */
    CHECK_OK(gms_atomic(py, wb, 8, GMS_ATOMIC_ADD, 8, 5, 0, S1, NULL));
    CHECK(logged(GMS_DRV_launch, S1, &fake_atomic_fn) == 1);
    CHECK(logged_kind(GMS_DRV_stream_sync) == 0);
    /* With old: through a pinned word, after a sync of the stream. */
    log_reset();
    unsigned long long pinned = fake_calls(GMS_DRV_host_alloc);
    CHECK_OK(gms_atomic(py, wb, 8, GMS_ATOMIC_ADD, 8, 7, 0, S2, &old));
    CHECK(old == 5);
    int launch = first_at(GMS_DRV_launch, S2), sync = first_at(GMS_DRV_stream_sync, S2);
    CHECK(launch >= 0 && sync > launch);
    CHECK_OK(gms_atomic(py, wb, 12, GMS_ATOMIC_MAX_SIGNED, 4, (uint64_t)-3, 0, S2, &old));
    CHECK(old == 0);
    CHECK_OK(gms_atomic(py, wb, 12, GMS_ATOMIC_CAS, 4, 1, 5, S2, &old)); /* 0 != 5: no swap */
    CHECK(old == 0);
    uint64_t v[2] = {0};
    CHECK_OK(gms_read(py, wb, 8, v, 16));
    CHECK(v[0] == 12 && v[1] == 0);
    /* 600 calls with old: more than the 512 pinned words, so each went back. */
    int fails = 0;
    for (int i = 0; i < 600; i++)
        fails += gms_atomic(py, wb, 0, GMS_ATOMIC_ADD, 4, 1, 0, S1, &old) != GMS_OK || old != (uint64_t)i;
    CHECK(fails == 0);
    CHECK(fake_calls(GMS_DRV_host_alloc) <= pinned + 1); /* one pinned page, made once */

    /* A batch, with results in a second buffer. */
    gms_buf res;
    CHECK_OK(gms_alloc(py, 64, GMS_ALLOC_ZERO, &res));
    gms_atomic_item items[3] = {
        {0, 10, 0, GMS_ATOMIC_ADD, 4},
        {8, 1, 12, GMS_ATOMIC_CAS, 8},
        {16, 0xff, 0, GMS_ATOMIC_OR, 8},
    };
    CHECK_OK(gms_atomic_batch(py, wb, items, 3, res, 8, S1));
    uint64_t r[3] = {0};
    CHECK_OK(gms_read(py, res, 8, r, sizeof r));
    CHECK(r[0] == 600 && r[1] == 12 && r[2] == 0);
    CHECK_OK(gms_read(py, wb, 0, v, 16));
    CHECK(v[0] == 610 && v[1] == 1);

    /* A failing launch: an error, nothing changed, the word given back. */
    fake_fail(GMS_DRV_launch, FAKE_ERROR_REFUSED);
    old = 99;
    CHECK_RC(gms_atomic(py, wb, 0, GMS_ATOMIC_ADD, 4, 1, 0, S1, &old), GMS_E_BACKEND);
    printf("failed atomic: %s\n", gms_error_last());
    CHECK(strstr(gms_error_last(), "fakeLaunchKernel (checked atomics)") != NULL);
    CHECK(old == 0);
    CHECK_RC(gms_atomic_batch(py, wb, items, 3, res, 8, S1), GMS_E_BACKEND);
    fake_fail(-1, 0);
    CHECK_OK(gms_read(py, wb, 0, v, 8));
    CHECK(v[0] == 610);
    CHECK_OK(gms_free(py, res));
    CHECK_OK(gms_free(py, wb));
}

/* A fresh runtime (so no pinned words yet) for the pinned allocation's
 * failure. */
static void test_pinned_failure(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.safety = GMS_SAFETY_OFF;
    o.log = quiet;
    gms_runtime *r2 = NULL;
    CHECK_OK(gms_runtime_open(&r2, &o));
    if (!r2)
        return;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "acme";
    d.user = "c";
    gms_context *c = NULL;
    CHECK_OK(gms_context_open(&c, r2, &d));
    gms_buf b;
    CHECK_OK(gms_alloc(c, 64, GMS_ALLOC_ZERO, &b));
    uint64_t old = 7;
    fake_fail(GMS_DRV_host_alloc, FAKE_ERROR_OUT_OF_MEMORY);
    int rc = gms_atomic(c, b, 0, GMS_ATOMIC_ADD, 8, 1, 0, S1, &old);
    CHECK(rc == GMS_E_NO_MEMORY || rc == GMS_E_BACKEND);
    printf("failed pinned word: %s\n", gms_error_last());
    CHECK(strstr(gms_error_last(), "fakeMemHostAlloc (atomic results)") != NULL);
    CHECK(old == 0);
    fake_fail(-1, 0);
    uint64_t v = 1;
    CHECK_OK(gms_read(c, b, 0, &v, 8));
    CHECK(v == 0);
    CHECK_OK(gms_atomic(c, b, 0, GMS_ATOMIC_ADD, 8, 1, 0, S1, &old));
    CHECK(old == 0);
    CHECK_OK(gms_free(c, b));
    gms_context_close(c);
    gms_runtime_close(r2);
}

static void test_event_failures(void)
{
    share_new();
    /* A begin whose stream wait fails: refused, and no window is left
     * (the handle has none to end, the writer is not held up by it). */
    CHECK_OK(gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, 0, S1));
    CHECK_OK(gms_access_end(py, wb, S1));
    fake_fail(GMS_DRV_stream_wait_event, FAKE_ERROR_REFUSED);
    CHECK_RC(gms_access_begin(jl, rb, GMS_ACCESS_READ, 0, S2), GMS_E_BACKEND);
    printf("failed begin: %s\n", gms_error_last());
    CHECK(strstr(gms_error_last(), "fakeStreamWaitEvent (start of an access window)") != NULL);
    CHECK(strstr(gms_error_last(), "FAKE_ERROR_REFUSED") != NULL);
    fake_fail(-1, 0);
    CHECK_RC(gms_access_end(jl, rb, S2), GMS_E_INVALID_ARG);
    CHECK_OK(gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, GMS_ACCESS_NOWAIT, S1));
    CHECK_OK(gms_access_end(py, wb, S1));

    /* An end whose record fails: the host waits for the stream instead,
     * so the order holds; later begins then need no wait for it. */
    CHECK_OK(gms_access_begin(jl, rb, GMS_ACCESS_READ, 0, S2));
    fake_fail(GMS_DRV_event_record, FAKE_ERROR_REFUSED);
    log_reset();
    CHECK_OK(gms_access_end(jl, rb, S2));
    CHECK(logged(GMS_DRV_stream_sync, S2, NULL) == 1);
    fake_fail(-1, 0);
    log_reset();
    CHECK_OK(gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, 0, S1));
    CHECK(logged_kind(GMS_DRV_stream_wait_event) == 0);

    /* An end whose record and fallback both fail: GMS_E_BACKEND naming
     * the record; the window is ended all the same (the handle can be
     * freed), as the message says nothing orders it. */
    fake_fail(GMS_DRV_event_record, FAKE_ERROR_REFUSED);
    fake_fail_also(GMS_DRV_stream_sync);
    int rc = gms_access_end(py, wb, S1);
    fake_fail(-1, 0);
    CHECK_RC(rc, GMS_E_BACKEND);
    printf("failed end: %s\n", gms_error_last());
    CHECK(strstr(gms_error_last(), "recording the window's end, then waiting for its stream") != NULL);
    CHECK(strstr(gms_error_last(), "FAKE_ERROR_REFUSED") != NULL);
    CHECK_RC(gms_access_end(py, wb, S1), GMS_E_INVALID_ARG);
    CHECK_OK(gms_release(jl, rb));
    CHECK_OK(gms_free(py, wb));

    /* The first end of a buffer makes its event: when that fails, the
     * stream sync stands in. */
    CHECK_OK(gms_alloc(py, 64, 0, &wb));
    CHECK_OK(gms_access_begin(py, wb, GMS_ACCESS_READ_WRITE, 0, S1));
    fake_fail(GMS_DRV_event_create, FAKE_ERROR_OUT_OF_MEMORY);
    log_reset();
    CHECK_OK(gms_access_end(py, wb, S1));
    fake_fail(-1, 0);
    CHECK(logged(GMS_DRV_stream_sync, S1, NULL) == 1);
    CHECK_OK(gms_free(py, wb));
}

int main(void)
{
    gms__backend_wrap = use_fake;
    fake_kernels = 1; /* the atomics' kernel, run on the host */
    fake_log_on = 1;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.safety = GMS_SAFETY_OFF; /* the fake driver runs no scrub */
    o.log = quiet;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();
    CHECK(fake_calls(GMS_DRV_stream_create) > 0); /* the fake backend it runs on */
    py = ctx_open("py", GMS_LANG_PYTHON);
    jl = ctx_open("jl", GMS_LANG_JULIA);
    test_events();
    test_atomics();
    test_pinned_failure();
    test_event_failures();
    gms_context_close(jl);
    gms_context_close(py);
    gms_runtime_close(rt);
    /* Every event made was destroyed (vmm's own short-lived ones too). */
    unsigned long long made = fake_calls(GMS_DRV_event_create) - fake_fails(GMS_DRV_event_create);
    CHECK(made > 0 && fake_calls(GMS_DRV_event_destroy) == made);
    gms__backend_wrap = NULL;
    return test_done();
}
