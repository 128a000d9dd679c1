/*
 * cuda_memory.c: gmsd serving CUDA device memory (--memory cuda,
 * docs/broker.md "CUDA memory"). A client's chunks are leases of device
 * memory that gmsd made, zeroed and exported as POSIX descriptors; the
 * client imports and maps them and sub-allocates with the ordinary path.
 * Checked: data round trips, the tenant's quota, close and kill -9
 * returning every lease, what a CUDA gmsd refuses (a host backend, a
 * mutable share across processes of a buffer that is not a lease of its
 * own, a runtime on another GPU), and, as root, a second tenant's leases
 * never counted to the first, an immutable share crossing to it as a copy
 * of its own, which it can make writable and scribble on without reaching
 * the owner's bytes or any other reader's, and a mutable one crossing as
 * the very memory; on a GPU, a kernel of the second tenant storing to the
 * first's address faults in its own process alone.
 *
 * In CTest it runs over the stand-in libcuda (tests/backend/stand_in,
 * LD_LIBRARY_PATH; GMS_TEST_STAND_IN=1), which has no kernels, so the
 * clients run with safety off; on a GPU machine (tests/gpu/run.sh) the
 * same program runs over the real driver with safety on. Without a
 * libcuda it is skipped (77).
 *
 * `test_broker_cuda_memory bench` prints what it costs on a GPU (medians):
 * a lease round trip (LEASE to LEASED: gmsd makes, zeroes and exports the
 * memory), what the client's driver calls on its descriptor cost one by
 * one, the first allocation of a new lease through libgms against
 * cuMemAlloc of the same size (leases taken on request, then made ahead
 * by the client's spare), and a 4 KiB pair inside a lease against
 * the in-process CUDA backend's.
 */
#include "util.h"

#include "gms/access.h"

#include <dlfcn.h>

#define MIB (1ull << 20)
#define LEASE (4 * MIB)

static broker b;
static int stand_in;

/* A client of gmsd as tenant/user, with safety as asked (the stand-in
 * runs no kernels: always off there). */
static gms_context *open_tenant(gms_runtime **rt, gms_backend_kind kind, gms_safety_mode safety,
                                const char *tenant, const char *user)
{
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = kind;
    o.safety = stand_in ? GMS_SAFETY_OFF : safety;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = user;
    gms_context *ctx = NULL;
    *rt = NULL;
    CHECK_OK(gms_runtime_open(rt, &o));
    if (*rt)
        CHECK_OK(gms_context_open(&ctx, *rt, &d));
    return ctx;
}

static gms_context *open_client_with(gms_runtime **rt, gms_backend_kind kind,
                                     gms_safety_mode safety)
{
    return open_tenant(rt, kind, safety, "self", "u");
}

static gms_context *open_client(gms_runtime **rt, gms_backend_kind kind)
{
    return open_client_with(rt, kind, GMS_SAFETY_ON);
}

/* In a child: data through leases of device memory, the quota, close. */
static void child_basic(void)
{
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt, GMS_BACKEND_CUDA);
    if (!ctx)
        return;
    CHECK(strcmp(gms_runtime_backend_name(rt), "broker") == 0);
    static uint8_t data[MIB], back[MIB];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    gms_buf bufs[8];
    unsigned n = 0;
    CHECK_OK(gms_alloc(ctx, 3 * MIB, 0, &bufs[n]));
    CHECK_OK(gms_write(ctx, bufs[n], MIB, data, sizeof data));
    CHECK_OK(gms_read(ctx, bufs[n], MIB, back, sizeof back));
    CHECK(memcmp(data, back, sizeof data) == 0);
    /* Fresh memory reads as zeros, whatever the lease held before. */
    CHECK_OK(gms_read(ctx, bufs[n], 0, back, sizeof back));
    CHECK(test_zeros(back, sizeof back));
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == LEASE);
    /* Three leases of 4 MiB: the fourth 3 MiB buffer is refused. */
    int rc;
    while (n < 7 && (rc = gms_alloc(ctx, 3 * MIB, 0, &bufs[++n])) == GMS_OK)
        ;
    CHECK(n == 3);
    CHECK_RC(rc, GMS_E_QUOTA);
    CHECK(strstr(gms_error_last(), "gmsd") != NULL);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 3 && bytes == 3 * LEASE);
    /* A mutable share another tenant could acquire is the buffer's lease
     * itself, so a buffer sharing its lease is refused (and nothing is
     * charged); one within the tenant stays the process's own. */
    gms_share_grant g = {.tenant = "someone", .language = GMS_ANY_LANGUAGE,
                         .mode = GMS_ACCESS_READ};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = &g;
    sd.ngrants = 1;
    gms_share_id id = 0;
    CHECK_RC(gms_share(ctx, bufs[0], &sd, &id), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "GMS_ALLOC_PAGES") != NULL);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 3 && bytes == 3 * LEASE);
    g.tenant = NULL;
    CHECK_OK(gms_share(ctx, bufs[0], &sd, &id));
    gms_buf got;
    CHECK_OK(gms_acquire(ctx, id, GMS_ACCESS_READ, &got));
    CHECK_OK(gms_release(ctx, got));
    CHECK_RC(gms_acquire(ctx, 0x1234567890abcdefull, GMS_ACCESS_READ, &got),
             GMS_E_INVALID_HANDLE);
    for (unsigned i = 0; i < n; i++)
        CHECK_OK(gms_free(ctx, bufs[i]));
    gms_context_close(ctx);
    gms_runtime_close(rt);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
}

/* In a child, safety off: gmsd zeroes a lease before handing it out, so
 * the first buffer in it needs no device work (gms_alloc does not wait)
 * and reads as zeros; memory the pool unmapped and maps again (a lease's
 * granules are only marked unmapped: they keep what was written) is
 * zeroed again before its next buffer sees it. */
static void child_fresh_zeroed(void)
{
    gms_runtime *rt;
    gms_context *ctx = open_client_with(&rt, GMS_BACKEND_CUDA, GMS_SAFETY_OFF);
    if (!ctx)
        return;
    static uint8_t back[3 * MIB], ones[3 * MIB];
    memset(ones, 0x5a, sizeof ones);
    gms_stats before, after;
    gms_buf x, y;
    CHECK_OK(gms_stats_get(rt, &before));
    CHECK_OK(gms_alloc(ctx, sizeof back, 0, &x));
    CHECK_OK(gms_stats_get(rt, &after));
    CHECK(after.device_waits == before.device_waits && after.maps > before.maps);
    CHECK_OK(gms_read(ctx, x, 0, back, sizeof back));
    CHECK(test_zeros(back, sizeof back));
    CHECK_OK(gms_write(ctx, x, 0, ones, sizeof ones));
    CHECK_OK(gms_free(ctx, x));
    CHECK_OK(gms_trim(rt)); /* unmaps its granules; the lease stays */
    CHECK_OK(gms_stats_get(rt, &before));
    CHECK(before.unmaps > after.unmaps);
    CHECK_OK(gms_alloc(ctx, sizeof back, 0, &y));
    CHECK_OK(gms_read(ctx, y, 0, back, sizeof back));
    CHECK(test_zeros(back, sizeof back));
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1); /* the same lease */
    CHECK_OK(gms_free(ctx, y));
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

/* In a child, with a spare lease (GMS_BROKER_SPARE unset): after the
 * first lease a second one is made ahead, and the next lease the pool
 * needs is that one (data through it; on a GPU, with safety on, it was
 * poisoned ahead and nothing waits); with the quota full none is made,
 * a chunk of another size takes the spare's quota, and closing returns
 * everything. */
static void child_spare(void)
{
    unsetenv("GMS_BROKER_SPARE");
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt, GMS_BACKEND_CUDA);
    if (!ctx)
        _exit(1);
    static uint8_t data[MIB], back[MIB];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 11 + 1);
    gms_buf a, c, big;
    uint64_t bytes = 0, leases = 0;
    CHECK_OK(gms_alloc(ctx, 3 * MIB, 0, &a));
    for (double t0 = now_s(); now_s() - t0 < 2 && leases != 2; usleep(1000))
        raw_usage(b.sock, &bytes, &leases);
    CHECK(leases == 2 && bytes == 2 * LEASE); /* the first lease and the spare */
    gms_stats before, after;
    CHECK_OK(gms_stats_get(rt, &before));
    CHECK_OK(gms_alloc(ctx, 3 * MIB, 0, &c)); /* into the spare */
    CHECK_OK(gms_stats_get(rt, &after));
    if (!stand_in) {
        /* Safety on: the spare was filled with the poison on its own
         * thread, so this buffer needed no device work (gms_alloc did not
         * wait) and reads as the pattern, as reused memory does. */
        CHECK(after.device_waits == before.device_waits);
        CHECK_OK(gms_read(ctx, c, 0, back, sizeof back));
        CHECK(test_one_word(back, sizeof back));
    }
    CHECK_OK(gms_write(ctx, c, MIB, data, sizeof data));
    CHECK_OK(gms_read(ctx, c, MIB, back, sizeof back));
    CHECK(memcmp(data, back, sizeof data) == 0);
    for (double t0 = now_s(); now_s() - t0 < 2 && leases != 3; usleep(1000))
        raw_usage(b.sock, &bytes, &leases);
    CHECK(leases == 3 && bytes == 3 * LEASE); /* the next spare: the quota is full */
    /* A chunk of another size (8 MiB) needs the quota the spare holds:
     * still refused (two leases in use leave one), but only by the quota. */
    CHECK_RC(gms_alloc(ctx, 6 * MIB, 0, &big), GMS_E_QUOTA);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 2);
    CHECK_OK(gms_free(ctx, a));
    CHECK_OK(gms_free(ctx, c));
    gms_context_close(ctx);
    gms_runtime_close(rt);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
}

/* In a child: the host backend asked of a gmsd serving CUDA memory. */
static void child_wrong_backend(void)
{
    gms_runtime *rt = NULL;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.broker = b.sock;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(rt == NULL && strstr(gms_error_last(), "gmsd serves CUDA memory") != NULL);
}

/* In a child, over the stand-in playing another GPU: gmsd's leases are
 * memory of its GPU, so a runtime on any other is refused, saying which. */
static void child_wrong_gpu(void)
{
    setenv("STAND_IN_GPU_UUID", "another gpu", 1);
    gms_runtime *rt = NULL;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.broker = b.sock;
    o.safety = GMS_SAFETY_OFF;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(rt == NULL && strstr(gms_error_last(), "open the runtime on gmsd's GPU") != NULL);
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0);
}

/* In a child: two leases with data in them, then waits to be killed. */
static void child_victim(int ready)
{
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt, GMS_BACKEND_AUTO);
    gms_buf buf;
    for (int i = 0; ctx && i < 2; i++) {
        CHECK_OK(gms_alloc(ctx, 3 * MIB, 0, &buf));
        CHECK_OK(gms_fill(ctx, buf, 0, 0xab, 3 * MIB));
    }
    if (write(ready, test_failed ? "f" : "r", 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

/* In a child of uid 40021 (tenant "other"): one lease of its own. */
static void child_other(void)
{
    become_uid(40021);
    setenv("GMS_BROKER", b.sock, 1);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.safety = stand_in ? GMS_SAFETY_OFF : GMS_SAFETY_ON;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "other";
    d.user = "v";
    gms_runtime *rt = NULL;
    gms_context *ctx = NULL;
    gms_buf buf;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    CHECK_OK(gms_alloc(ctx, MIB, 0, &buf));
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == LEASE);
    CHECK_OK(gms_free(ctx, buf));
    gms_context_close(ctx);
    gms_runtime_close(rt);
}

/* The share crossing tenants: 2 MiB (a granule: the copy's whole size) at
 * an offset inside the owner's lease, bytes i * 13 + 5. */
#define SHARED_BYTES (2 * MIB)
static uint8_t shared_pattern(size_t i)
{
    return (uint8_t)(i * 13 + 5);
}

/* The driver's own calls, for a reader that skips libgms. */
static int (*cu_set_access)(unsigned long long, size_t, const int *, size_t);
static int (*cu_memset)(unsigned long long, unsigned char, size_t, void *);
static int (*cu_sync)(void);
static int (*cu_retain)(void **, int), (*cu_set_current)(void *);

/* libcuda loaded before this process drops to another uid, which may not
 * reach the stand-in's directory; libgms's dlopen then finds it loaded. */
static void driver_preload(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    CHECK(lib != NULL);
    if (!lib)
        _exit(1);
    *(void **)&cu_set_access = dlsym(lib, "cuMemSetAccess");
    *(void **)&cu_memset = dlsym(lib, "cuMemsetD8Async");
    *(void **)&cu_sync = dlsym(lib, "cuCtxSynchronize");
    *(void **)&cu_retain = dlsym(lib, "cuDevicePrimaryCtxRetain");
    *(void **)&cu_set_current = dlsym(lib, "cuCtxSetCurrent");
}

/* In a child: becomes uid 40021 and opens a runtime and context of
 * tenant other, with libcuda loaded first; ends the child if it cannot. */
static gms_context *open_other(gms_runtime **rt)
{
    driver_preload();
    become_uid(40021);
    gms_context *ctx = open_tenant(rt, GMS_BACKEND_AUTO, GMS_SAFETY_ON, "other", "v");
    if (!ctx)
        _exit(1);
    return ctx;
}

/* Whether buf of ctx holds SHARED_BYTES of the pattern. */
static int holds_pattern(gms_context *ctx, gms_buf buf)
{
    static uint8_t back[SHARED_BYTES];
    if (gms_read(ctx, buf, 0, back, sizeof back) != GMS_OK)
        return 0;
    for (size_t i = 0; i < sizeof back; i++)
        if (back[i] != shared_pattern(i))
            return 0;
    return 1;
}

/* In a child of uid 40021 (tenant "other"): acquires share id (a read,
 * never a write), reads it, then does what a hostile reader can: makes
 * its mapping writable through the driver and overwrites it. That is its
 * own copy: a second acquire reads the owner's bytes again. Its copy is
 * charged to its tenant; the last one it keeps, and its death returns it. */
static void child_reader(gms_share_id id)
{
    gms_runtime *rt;
    gms_context *ctx = open_other(&rt);
    gms_buf got = GMS_BUF_NULL;
    CHECK_RC(gms_acquire(ctx, id, GMS_ACCESS_READ_WRITE, &got), GMS_E_READ_ONLY);
    CHECK_OK(gms_acquire(ctx, id, GMS_ACCESS_READ, &got));
    CHECK(holds_pattern(ctx, got));
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == SHARED_BYTES);
    uint8_t x = 0xee;
    CHECK_RC(gms_write(ctx, got, 0, &x, 1), GMS_E_READ_ONLY);
    void *p = NULL;
    CHECK_OK(gms_buf_ptr(ctx, got, &p));
    int rw[3] = {1, 0, 3}; /* device 0, read-write (CUmemAccessDesc) */
    void *cx = NULL; /* libgms leaves no context current on this thread */
    CHECK(cu_retain(&cx, 0) == 0 && cu_set_current(cx) == 0);
    CHECK(cu_set_access((unsigned long long)(uintptr_t)p, SHARED_BYTES, rw, 1) == 0);
    CHECK(cu_memset((unsigned long long)(uintptr_t)p, 0xee, SHARED_BYTES, NULL) == 0);
    CHECK(cu_sync() == 0);
    CHECK(!holds_pattern(ctx, got)); /* the copy took the bytes */
    CHECK_OK(gms_release(ctx, got));
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
    CHECK_OK(gms_acquire(ctx, id, GMS_ACCESS_READ, &got));
    CHECK(holds_pattern(ctx, got));
    _exit(test_done()); /* holding the copy: gmsd returns it */
}

/* Tenant self shares an immutable buffer with tenant other, whose reader
 * (child_reader) gets a copy of its own; a mutable share of a buffer that
 * is not a lease of its own is refused. The owner's bytes are the same
 * after the reader's scribbling, its charge goes with its last release,
 * and the reader's with its death. */
static void share_crosses(void)
{
    int id_pipe[2], done_pipe[2];
    if (pipe(id_pipe) || pipe(done_pipe))
        _exit(1);
    pid_t owner = fork();
    if (owner == 0) {
        gms_runtime *rt;
        gms_context *ctx = open_client(&rt, GMS_BACKEND_CUDA);
        gms_buf pad, buf;
        static uint8_t data[SHARED_BYTES];
        for (size_t i = 0; i < sizeof data; i++)
            data[i] = shared_pattern(i);
        /* The share is not at its lease's start; pad keeps the lease. */
        CHECK_OK(gms_alloc(ctx, 3 * MIB / 2, 0, &pad));
        CHECK_OK(gms_alloc(ctx, SHARED_BYTES, 0, &buf));
        CHECK_OK(gms_write(ctx, buf, 0, data, sizeof data));
        gms_share_grant g = {.tenant = "other", .language = GMS_ANY_LANGUAGE,
                             .mode = GMS_ACCESS_READ};
        gms_share_desc sd = GMS_SHARE_DESC_INIT;
        sd.grants = &g;
        sd.ngrants = 1;
        gms_share_id id = 0;
        CHECK_RC(gms_share(ctx, buf, &sd, &id), GMS_E_INVALID_ARG);
        CHECK(strstr(gms_error_last(), "GMS_ALLOC_PAGES") != NULL);
        sd.immutable = 1;
        CHECK_OK(gms_share(ctx, buf, &sd, &id));
        uint64_t bytes, leases;
        CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 2 &&
              bytes == LEASE + SHARED_BYTES);
        char go;
        if (write(id_pipe[1], &id, sizeof id) != sizeof id || read(done_pipe[0], &go, 1) != 1)
            _exit(1);
        CHECK(holds_pattern(ctx, buf));
        CHECK_OK(gms_free(ctx, buf));
        CHECK_OK(gms_free(ctx, pad));
        CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == LEASE);
        gms_context_close(ctx);
        gms_runtime_close(rt);
        _exit(test_done());
    }
    gms_share_id id = 0;
    CHECK(read(id_pipe[0], &id, sizeof id) == sizeof id);
    pid_t reader = fork();
    if (reader == 0)
        child_reader(id);
    CHECK(status_of(reader) == 0);
    CHECK(broker_use_becomes(b.sock, 40021, 0, 0));
    CHECK(write(done_pipe[1], "d", 1) == 1);
    CHECK(status_of(owner) == 0);
}

/* Whether buf of ctx holds SHARED_BYTES of byte v. */
static int holds_byte(gms_context *ctx, gms_buf buf, uint8_t v)
{
    static uint8_t back[SHARED_BYTES];
    if (gms_read(ctx, buf, 0, back, sizeof back) != GMS_OK)
        return 0;
    for (size_t i = 0; i < sizeof back; i++)
        if (back[i] != v)
            return 0;
    return 1;
}

/* Writes n bytes of v (at most SHARED_BYTES) at the start of buf. */
static void fill_byte(gms_context *ctx, gms_buf buf, uint8_t v, size_t n)
{
    static uint8_t data[SHARED_BYTES];
    memset(data, v, n);
    CHECK_OK(gms_write(ctx, buf, 0, data, n));
}

/* The mutable share's owner (tenant self): a GMS_ALLOC_PAGES buffer gets
 * a lease of its own, which the share is, charged once. Step 1 it writes
 * 0x5a; step 2 it frees the buffer, whose lease goes with the share (its
 * charge stays until the share's last release), and fills what it
 * allocates next, which must not be that memory; step 3 it ends. */
/* Shares buf of ctx with tenant other, read-write. */
static int share_with_other(gms_context *ctx, gms_buf buf, gms_share_id *id)
{
    gms_share_grant g = {.tenant = "other", .language = GMS_ANY_LANGUAGE,
                         .mode = GMS_ACCESS_READ_WRITE};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = &g;
    sd.ngrants = 1;
    return gms_share(ctx, buf, &sd, id);
}

/* A child's end: its context and runtime closed, and what its checks
 * found as its exit status. */
__attribute__((noreturn)) static void child_exit(gms_runtime *rt, gms_context *ctx)
{
    gms_context_close(ctx);
    gms_runtime_close(rt);
    _exit(test_done());
}

static void mutable_owner(int in, int out)
{
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt, GMS_BACKEND_CUDA);
    if (!ctx)
        _exit(1);
    gms_buf plain, buf;
    gms_share_id id = 0;
    /* A small buffer: its lease serves the small heap, so the shared one's
     * is the large heap's only chunk, which a pool would keep. */
    CHECK_OK(gms_alloc(ctx, 64 << 10, 0, &plain));
    CHECK_RC(share_with_other(ctx, plain, &id), GMS_E_INVALID_ARG);
    CHECK_OK(gms_alloc(ctx, SHARED_BYTES, GMS_ALLOC_PAGES, &buf));
    uint64_t bytes, leases, shared_bytes, shared_leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 2 && bytes > LEASE);
    fill_byte(ctx, buf, 0x11, SHARED_BYTES);
    CHECK_OK(share_with_other(ctx, buf, &id));
    CHECK(raw_usage(b.sock, &shared_bytes, &shared_leases) == 0 && shared_bytes == bytes &&
          shared_leases == leases); /* the lease is the share: charged once */
    put_bytes(out, &id, sizeof id);
    char step;
    get_bytes(in, &step, 1);
    fill_byte(ctx, buf, 0x5a, SHARED_BYTES);
    put_bytes(out, "1", 1);
    get_bytes(in, &step, 1);
    CHECK_OK(gms_free(ctx, buf));
    /* Its lease went back; the share keeps the memory and the charge. */
    CHECK(raw_usage(b.sock, &shared_bytes, &shared_leases) == 0 && shared_bytes == bytes &&
          shared_leases == leases);
    gms_buf next[2];
    for (int i = 0; i < 2; i++) {
        CHECK_OK(gms_alloc(ctx, 3 * MIB / 2, 0, &next[i]));
        fill_byte(ctx, next[i], 0x77, 3 * MIB / 2);
    }
    put_bytes(out, "2", 1);
    get_bytes(in, &step, 1);
    for (int i = 0; i < 2; i++)
        CHECK_OK(gms_free(ctx, next[i]));
    CHECK_OK(gms_free(ctx, plain));
    child_exit(rt, ctx);
}

/* The mutable share's holder (uid 40021, tenant other): no read-only hold
 * (a CUDA importer can map anything writable), no second writer while the
 * owner holds it; atomic, it sees the owner's writes, and the memory
 * after the owner freed its buffer; then read-write, what it writes is
 * what its other hold of the same memory reads; last, it takes the
 * buffer over (gms_transfer), which its tenant is then charged for. */
static void mutable_holder(int in, int out, gms_share_id id)
{
    gms_runtime *rt;
    gms_context *ctx = open_other(&rt);
    gms_buf shared = GMS_BUF_NULL, writer = GMS_BUF_NULL;
    CHECK_RC(gms_acquire(ctx, id, GMS_ACCESS_READ, &shared), GMS_E_UNSUPPORTED);
    CHECK_RC(gms_acquire(ctx, id, GMS_ACCESS_READ_WRITE, &shared), GMS_E_BUSY);
    CHECK_OK(gms_acquire(ctx, id, GMS_ACCESS_ATOMIC, &shared));
    CHECK(holds_byte(ctx, shared, 0x11));
    uint64_t bytes, leases;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
    char step;
    put_bytes(out, "r", 1);
    get_bytes(in, &step, 1); /* the owner wrote 0x5a */
    CHECK(holds_byte(ctx, shared, 0x5a));
    put_bytes(out, "r", 1);
    get_bytes(in, &step, 1); /* the owner freed its buffer */
    CHECK(holds_byte(ctx, shared, 0x5a));
    CHECK_OK(gms_acquire(ctx, id, GMS_ACCESS_READ_WRITE, &writer));
    fill_byte(ctx, writer, 0xc3, SHARED_BYTES);
    CHECK(holds_byte(ctx, shared, 0xc3));
    /* Taken over by this tenant (docs/broker.md, "Transfers"): refused
     * while another hold is left, changing nothing; then the bytes move
     * into a lease of this tenant's, under the same address. */
    gms_context *mine_ctx = NULL;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "other";
    d.user = "w";
    CHECK_OK(gms_context_open(&mine_ctx, rt, &d));
    gms_buf mine = GMS_BUF_NULL;
    gms_buf_info before, after;
    CHECK_OK(gms_buf_info(ctx, writer, &before));
    CHECK_RC(gms_transfer(ctx, writer, mine_ctx, &mine), GMS_E_BUSY);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
    CHECK(holds_byte(ctx, writer, 0xc3));
    CHECK_OK(gms_release(ctx, shared));
    CHECK_OK(gms_transfer(ctx, writer, mine_ctx, &mine));
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes >= before.size);
    CHECK(holds_byte(mine_ctx, mine, 0xc3));
    CHECK_OK(gms_buf_info(mine_ctx, mine, &after));
    CHECK(after.device_ptr == before.device_ptr && !strcmp(after.tenant, "other"));
    CHECK_RC(gms_read(ctx, writer, 0, &step, 1), GMS_E_INVALID_HANDLE);
    fill_byte(mine_ctx, mine, 0x3c, SHARED_BYTES);
    CHECK(holds_byte(mine_ctx, mine, 0x3c));
    put_bytes(out, "t", 1);
    get_bytes(in, &step, 1); /* the owner's tenant was checked: the old share is gone */
    CHECK_OK(gms_release(mine_ctx, mine)); /* the lease goes back */
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
    gms_context_close(mine_ctx);
    child_exit(rt, ctx);
}

/* A mutable SHARE of CUDA memory asked for by a client that skips libgms:
 * gmsd itself hands out nothing but a whole lease of the connection's, and
 * a lease once; each refusal leaves the usage as it was. */
static void child_raw_mutable(void)
{
    int s = raw_connect(b.sock), fd;
    gms_broker_msg m = {.type = GMS_BROKER_HELLO};
    CHECK(raw_call(s, &m, &fd) == GMS_BROKER_WELCOME);
    gms_broker_msg l = {.type = GMS_BROKER_LEASE, .a = LEASE};
    CHECK(raw_call(s, &l, &fd) == GMS_BROKER_LEASED);
    if (fd >= 0)
        close(fd);
    uint64_t lease = l.a, bytes, leases;
    struct {
        uint64_t bytes, req, off, lease;
        int code;
    } bad[] = {
        {LEASE / 2, MIB, 0, lease, GMS_E_INVALID_ARG},        /* half of it */
        {LEASE / 2, MIB, LEASE / 2, lease, GMS_E_INVALID_ARG}, /* its second half */
        {LEASE, LEASE, 0, lease ^ 1, GMS_E_INVALID_HANDLE},    /* a forged lease */
        {LEASE, LEASE + 1, 0, lease, GMS_E_INVALID_ARG},       /* more than it holds */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gms_broker_msg q = {.type = GMS_BROKER_SHARE, .a = bad[i].bytes, .b = bad[i].req,
                            .c = bad[i].off, .d = bad[i].lease, .ngrants = 1};
        q.grants[0].language = GMS_ANY_LANGUAGE;
        q.grants[0].mode = GMS_ACCESS_READ_WRITE;
        CHECK(raw_call(s, &q, &fd) == GMS_BROKER_ERROR && q.code == bad[i].code);
        CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == LEASE);
    }
    gms_broker_msg q = {.type = GMS_BROKER_SHARE, .a = LEASE, .b = LEASE, .d = lease,
                        .ngrants = 1};
    q.grants[0].language = GMS_ANY_LANGUAGE;
    q.grants[0].mode = GMS_ACCESS_READ_WRITE;
    gms_broker_msg again = q;
    CHECK(raw_call(s, &q, &fd) == GMS_BROKER_SHARED && fd < 0);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == LEASE);
    CHECK(raw_call(s, &again, &fd) == GMS_BROKER_ERROR && again.code == GMS_E_BUSY);
    /* The lease released first: the share keeps its memory and charge. */
    gms_broker_msg r = {.type = GMS_BROKER_RELEASE, .a = lease};
    CHECK(raw_call(s, &r, &fd) == GMS_BROKER_RELEASED);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1 && bytes == LEASE);
    gms_broker_msg h = {.type = GMS_BROKER_RELEASE_SHARE, .a = q.b};
    CHECK(raw_call(s, &h, &fd) == GMS_BROKER_SHARE_RELEASED);
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0 && bytes == 0);
    close(s);
    _exit(test_done());
}

/* An owner and a holder of its share, each in a child that talks to this
 * process over two pipes: the owner sends the share's id first, then the
 * holder starts with it. */
typedef struct {
    pid_t owner, holder;
    int to_owner, from_owner, to_holder, from_holder;
} share_pair;

static void share_pair_start(share_pair *x, void (*owner)(int in, int out),
                             void (*holder)(int in, int out, gms_share_id id))
{
    int to_owner[2], from_owner[2], to_holder[2], from_holder[2];
    if (pipe(to_owner) || pipe(from_owner) || pipe(to_holder) || pipe(from_holder))
        _exit(1);
    fflush(stdout);
    x->owner = fork();
    if (x->owner == 0)
        owner(to_owner[0], from_owner[1]);
    gms_share_id id = 0;
    get_bytes(from_owner[0], &id, sizeof id);
    x->holder = fork();
    if (x->holder == 0)
        holder(to_holder[0], from_holder[1], id);
    x->to_owner = to_owner[1];
    x->from_owner = from_owner[0];
    x->to_holder = to_holder[1];
    x->from_holder = from_holder[0];
}

/* A mutable share of device memory crossing tenants: the very memory,
 * written by either side, outliving the owner's buffer, and its charge
 * the owner's tenant's until the last hold goes. */
static void mutable_share_crosses(void)
{
    share_pair x;
    share_pair_start(&x, mutable_owner, mutable_holder);
    char step;
    get_bytes(x.from_holder, &step, 1);
    put_bytes(x.to_owner, "w", 1);
    get_bytes(x.from_owner, &step, 1);
    put_bytes(x.to_holder, "s", 1);
    get_bytes(x.from_holder, &step, 1);
    put_bytes(x.to_owner, "f", 1);
    get_bytes(x.from_owner, &step, 1);
    put_bytes(x.to_holder, "s", 1);
    get_bytes(x.from_holder, &step, 1); /* taken over by the holder's tenant */
    /* The share went with it: the owner holds its two leases of plain
     * buffers, the holder's tenant the one of the buffer it took over. */
    CHECK(broker_use_becomes(b.sock, getuid(), 2 * LEASE, 2));
    put_bytes(x.to_holder, "s", 1);
    CHECK(status_of(x.holder) == 0);
    put_bytes(x.to_owner, "e", 1);
    CHECK(status_of(x.owner) == 0);
}

/* A kernel that stores 1 at the address it is given, as PTX the driver
 * compiles at load time (no nvcc needed to build this test). */
/* A mutable share across a gmsd restart (SIGKILL): the next gmsd charges
 * the owner's tenant as the one before did, the lease once and not the
 * share beside it; the owner's free moves the charge to the share, and
 * the holder's last release returns it. */
static void restart_owner(int in, int out)
{
    gms_runtime *rt;
    gms_context *ctx = open_client(&rt, GMS_BACKEND_CUDA);
    if (!ctx)
        _exit(1);
    gms_buf buf;
    gms_share_id id = 0;
    CHECK_OK(gms_alloc(ctx, SHARED_BYTES, GMS_ALLOC_PAGES, &buf));
    CHECK_OK(share_with_other(ctx, buf, &id));
    put_bytes(out, &id, sizeof id);
    char step;
    get_bytes(in, &step, 1); /* gmsd was killed and started again */
    CHECK_OK(gms_free(ctx, buf)); /* through the resumed session */
    child_exit(rt, ctx);
}

static void restart_holder(int in, int out, gms_share_id id)
{
    gms_runtime *rt;
    gms_context *ctx = open_other(&rt);
    gms_buf shared = GMS_BUF_NULL;
    CHECK_OK(gms_acquire(ctx, id, GMS_ACCESS_ATOMIC, &shared));
    put_bytes(out, "r", 1);
    char step;
    get_bytes(in, &step, 1);
    CHECK_OK(gms_release(ctx, shared)); /* the last hold: the share goes */
    child_exit(rt, ctx);
}

static void mutable_share_restart(void)
{
    share_pair x;
    share_pair_start(&x, restart_owner, restart_holder);
    char step;
    get_bytes(x.from_holder, &step, 1);
    uint64_t bytes = 0, leases = 0, after_bytes = 0, after_leases = 0;
    CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 1);
    CHECK(broker_end(&b, SIGKILL) == 128 + SIGKILL);
    broker_exec(&b);
    CHECK(raw_usage(b.sock, &after_bytes, &after_leases) == 0);
    CHECK(after_bytes == bytes && after_leases == leases); /* not the share again */
    printf("restart: a mutable share's lease charged %llu bytes, %llu leases after, %llu and "
           "%llu before\n", (unsigned long long)after_bytes, (unsigned long long)after_leases,
           (unsigned long long)bytes, (unsigned long long)leases);
    put_bytes(x.to_owner, "k", 1);
    CHECK(status_of(x.owner) == 0);
    CHECK(broker_use_becomes(b.sock, getuid(), bytes, leases)); /* the share keeps the charge */
    put_bytes(x.to_holder, "k", 1);
    CHECK(status_of(x.holder) == 0);
    CHECK(broker_use_becomes(b.sock, getuid(), 0, 0));
}

static const char poke_ptx[] =
    ".version 7.0\n.target sm_50\n.address_size 64\n"
    ".visible .entry poke(.param .u64 p)\n{\n"
    "  .reg .u64 %rd<2>;\n  .reg .u32 %r<2>;\n"
    "  ld.param.u64 %rd1, [p];\n  mov.u32 %r1, 1;\n  st.global.u32 [%rd1], %r1;\n  ret;\n}\n";

/* In a child of uid 40021 (tenant "other", a client of gmsd with its own
 * lease): a kernel storing to tenant self's address. Exits 0 when the
 * kernel faulted (CUDA_ERROR_ILLEGAL_ADDRESS, 700) in this process. */
static void child_poker(uint64_t addr)
{
    become_uid(40021);
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.broker = b.sock;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "other";
    d.user = "v";
    gms_runtime *rt = NULL;
    gms_context *ctx = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    /* Nothing of its own there: each process chooses its addresses, and
     * its own memory at the same address would take the store. */
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    int (*retain)(void **, int), (*set)(void *), (*load)(void **, const void *);
    int (*get)(void **, void *, const char *), (*sync)(void);
    int (*launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                  void *, void **, void **);
    *(void **)&retain = dlsym(lib, "cuDevicePrimaryCtxRetain");
    *(void **)&set = dlsym(lib, "cuCtxSetCurrent");
    *(void **)&load = dlsym(lib, "cuModuleLoadData");
    *(void **)&get = dlsym(lib, "cuModuleGetFunction");
    *(void **)&sync = dlsym(lib, "cuCtxSynchronize");
    *(void **)&launch = dlsym(lib, "cuLaunchKernel");
    void *cx = NULL, *mod = NULL, *fn = NULL;
    int (*range)(unsigned long long *, size_t *, unsigned long long);
    *(void **)&range = dlsym(lib, "cuMemGetAddressRange_v2");
    CHECK(retain(&cx, 0) == 0 && set(cx) == 0);
    unsigned long long base = 0;
    size_t len = 0;
    CHECK(range(&base, &len, addr) != 0); /* not an address of this process */
    CHECK(load(&mod, poke_ptx) == 0 && get(&fn, mod, "poke") == 0);
    void *args[] = {&addr};
    CHECK(launch(fn, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL) == 0);
    int rc = sync();
    printf("tenant other's kernel storing to tenant self's 0x%llx: CUresult %d\n",
           (unsigned long long)addr, rc);
    fflush(stdout);
    _exit(!test_failed && rc == 700 ? 0 : 1);
}

/* Tenant self holds a buffer of 0x11 (a child: CUDA never starts in the
 * parent, whose other children need it); tenant other's kernel stores to
 * its address and faults in its own process; self's data and context are
 * untouched. Both are children of the test, which passes the address. */
static void fault_stays_home(void)
{
    int addr_pipe[2], done_pipe[2];
    if (pipe(addr_pipe) || pipe(done_pipe))
        _exit(1);
    pid_t holder = fork();
    if (holder == 0) {
        gms_runtime *rt;
        gms_context *ctx = open_client(&rt, GMS_BACKEND_CUDA);
        gms_buf buf;
        void *p = NULL;
        CHECK_OK(gms_alloc(ctx, MIB, 0, &buf));
        CHECK_OK(gms_fill(ctx, buf, 0, 0x11, MIB));
        CHECK_OK(gms_buf_ptr(ctx, buf, &p));
        uint64_t a = (uint64_t)(uintptr_t)p;
        char go;
        if (write(addr_pipe[1], &a, sizeof a) != sizeof a || read(done_pipe[0], &go, 1) != 1)
            _exit(1);
        static uint8_t back[MIB];
        CHECK_OK(gms_read(ctx, buf, 0, back, MIB));
        CHECK(back[0] == 0x11 && memcmp(back, back + 1, MIB - 1) == 0);
        CHECK_OK(gms_free(ctx, buf));
        CHECK_OK(gms_verify(rt, NULL));
        gms_context_close(ctx);
        gms_runtime_close(rt);
        _exit(test_done());
    }
    uint64_t a = 0;
    CHECK(read(addr_pipe[0], &a, sizeof a) == sizeof a);
    pid_t poker = fork();
    if (poker == 0)
        child_poker(a);
    int st;
    waitpid(poker, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(write(done_pipe[1], "d", 1) == 1);
    waitpid(holder, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "tenant self's process: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}



/* Median ns of a 4 KiB gms_alloc_async + gms_free_async pair on ctx. */
static double pair_ns(gms_context *ctx)
{
    enum { PAIRS = 20000, RUNS = 11 };
    double run[RUNS];
    gms_buf buf;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        for (int i = 0; i < PAIRS; i++) {
            CHECK_OK(gms_alloc_async(ctx, 4096, 0, NULL, &buf));
            CHECK_OK(gms_free_async(ctx, buf, NULL));
        }
        run[r] = (now_s() - t0) * 1e9 / PAIRS;
    }
    return median(run, RUNS);
}


/* The driver calls the bench times on its own, device 0's primary
 * context current; 0 when they could not be had. */
static struct {
    int (*alloc)(unsigned long long *, size_t), (*release)(unsigned long long);
    int (*import)(unsigned long long *, void *, int), (*mem_release)(unsigned long long);
    int (*reserve)(unsigned long long *, size_t, size_t, unsigned long long, unsigned long long);
    int (*va_free)(unsigned long long, size_t);
    int (*map)(unsigned long long, size_t, size_t, unsigned long long, unsigned long long);
    int (*unmap)(unsigned long long, size_t);
    int (*access)(unsigned long long, size_t, const int *, size_t);
} cu;

static int cu_load(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    int (*init)(unsigned), (*retain)(void **, int), (*set)(void *);
    if (!lib)
        return 0;
    *(void **)&init = dlsym(lib, "cuInit");
    *(void **)&retain = dlsym(lib, "cuDevicePrimaryCtxRetain");
    *(void **)&set = dlsym(lib, "cuCtxSetCurrent");
    *(void **)&cu.alloc = dlsym(lib, "cuMemAlloc_v2");
    *(void **)&cu.release = dlsym(lib, "cuMemFree_v2");
    *(void **)&cu.import = dlsym(lib, "cuMemImportFromShareableHandle");
    *(void **)&cu.mem_release = dlsym(lib, "cuMemRelease");
    *(void **)&cu.reserve = dlsym(lib, "cuMemAddressReserve");
    *(void **)&cu.va_free = dlsym(lib, "cuMemAddressFree");
    *(void **)&cu.map = dlsym(lib, "cuMemMap");
    *(void **)&cu.unmap = dlsym(lib, "cuMemUnmap");
    *(void **)&cu.access = dlsym(lib, "cuMemSetAccess");
    void *ctx = NULL;
    return init && retain && set && cu.alloc && cu.release && cu.import && cu.mem_release &&
           cu.reserve && cu.va_free && cu.map && cu.unmap && cu.access && !init(0) &&
           !retain(&ctx, 0) && !set(ctx);
}

/* Median us of cuMemAlloc + cuMemFree of bytes, alloc alone in *alloc_us. */
static double cuda_malloc_us(uint64_t bytes, int n, double *alloc_us)
{
    double a[64], pair[64];
    for (int i = 0; i < n && i < 64; i++) {
        unsigned long long d = 0;
        double t0 = now_s();
        CHECK(cu.alloc(&d, (size_t)bytes) == 0);
        double t1 = now_s();
        CHECK(cu.release(d) == 0);
        pair[i] = (now_s() - t0) * 1e6;
        a[i] = (t1 - t0) * 1e6;
    }
    *alloc_us = median(a, n);
    return median(pair, n);
}

/* What a client does with a lease's descriptor before its first use, call
 * by call (us, added to t[0..4]): import, reserve, map, access, and
 * unmapping it all again. */
static void lease_phases(int fd, double t[5])
{
    unsigned long long h = 0, va = 0;
    int rw[3] = {1, 0, 3}; /* device 0, read-write (CUmemAccessDesc) */
    double t0 = now_s();
    CHECK(cu.import(&h, (void *)(uintptr_t)fd, 1) == 0);
    double t1 = now_s();
    CHECK(cu.reserve(&va, LEASE, 0, 0, 0) == 0);
    double t2 = now_s();
    CHECK(cu.map(va, LEASE, 0, h, 0) == 0);
    double t3 = now_s();
    CHECK(cu.access(va, LEASE, rw, 1) == 0);
    double t4 = now_s();
    CHECK(cu.unmap(va, LEASE) == 0 && cu.va_free(va, LEASE) == 0 && cu.mem_release(h) == 0);
    double t5 = now_s();
    t[0] = (t1 - t0) * 1e6, t[1] = (t2 - t1) * 1e6, t[2] = (t3 - t2) * 1e6;
    t[3] = (t4 - t3) * 1e6, t[4] = (t5 - t4) * 1e6;
}

/* What a share of bytes costs through gmsd on CUDA memory, medians in ms:
 * gms_share (immutable: the device waited for, gmsd's copy made; mutable:
 * the buffer's own lease named), an acquire (immutable: the reader's own
 * copy made and mapped; mutable: the owner's lease imported and mapped;
 * acquired here by the owner's process, through gmsd as any other), its
 * release, and the owner's last release (mutable: its lease given up). */
static void share_costs(gms_context *ctx, uint64_t bytes, int immutable)
{
    enum { N = 9 };
    double alloc[N], share[N], acquire[N], release[N], end[N];
    gms_share_grant g = {.tenant = immutable ? NULL : "*", .language = GMS_ANY_LANGUAGE,
                         .mode = immutable ? GMS_ACCESS_READ : GMS_ACCESS_READ_WRITE};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = &g;
    sd.ngrants = 1;
    sd.immutable = immutable;
    for (int i = 0; i < N; i++) {
        gms_buf buf, got;
        gms_share_id id = 0;
        double ta = now_s();
        CHECK_OK(gms_alloc(ctx, bytes, immutable ? 0 : GMS_ALLOC_PAGES, &buf));
        alloc[i] = (now_s() - ta) * 1e3;
        CHECK_OK(gms_fill(ctx, buf, 0, 0x5a, bytes));
        double t0 = now_s();
        CHECK_OK(gms_share(ctx, buf, &sd, &id));
        double t1 = now_s();
        CHECK_OK(gms_acquire(ctx, id, immutable ? GMS_ACCESS_READ : GMS_ACCESS_ATOMIC, &got));
        double t2 = now_s();
        CHECK_OK(gms_release(ctx, got));
        double t3 = now_s();
        CHECK_OK(gms_free(ctx, buf));
        double t4 = now_s();
        share[i] = (t1 - t0) * 1e3, acquire[i] = (t2 - t1) * 1e3;
        release[i] = (t3 - t2) * 1e3, end[i] = (t4 - t3) * 1e3;
    }
    double a = median(acquire, N);
    if (immutable)
        printf("immutable share of %llu MiB through gmsd: share %.2f ms, acquire (a copy) %.2f ms "
               "(%.1f GB/s), its release %.2f ms, the owner's last release %.2f ms\n",
               (unsigned long long)(bytes / MIB), median(share, N), a, bytes / (a * 1e6),
               median(release, N), median(end, N));
    else
        printf("mutable share of %llu MiB through gmsd: the buffer's allocation (GMS_ALLOC_PAGES: "
               "a lease of its own) %.2f ms, share %.2f ms, acquire (the lease imported) %.2f ms, "
               "its release %.2f ms, the owner's last release %.2f ms\n",
               (unsigned long long)(bytes / MIB), median(alloc, N), median(share, N), a,
               median(release, N), median(end, N));
}

/* gmsd's own part of a share of bytes on CUDA memory, medians in ms: the
 * SHARE round trip (gmsd makes its memory and copies the bytes in, waited
 * for) and an ACQUIRE's (the reader's copy made and copied), over a raw
 * connection with a lease of its own. */
static void share_round_trips(uint64_t bytes)
{
    enum { N = 9 };
    double share[N], acquire[N];
    int s = raw_connect(b.sock), fd;
    gms_broker_msg m = {.type = GMS_BROKER_HELLO};
    CHECK(raw_call(s, &m, &fd) == GMS_BROKER_WELCOME);
    gms_broker_msg l = {.type = GMS_BROKER_LEASE, .a = bytes};
    CHECK(raw_call(s, &l, &fd) == GMS_BROKER_LEASED);
    close(fd);
    uint64_t lease = l.a;
    for (int i = 0; i < N; i++) {
        gms_broker_msg q = {.type = GMS_BROKER_SHARE, .a = bytes, .b = bytes, .c = 0, .d = lease,
                            .flags = 1, .ngrants = 1};
        q.grants[0].language = GMS_ANY_LANGUAGE;
        q.grants[0].mode = GMS_ACCESS_READ;
        double t0 = now_s();
        CHECK(raw_call(s, &q, &fd) == GMS_BROKER_SHARED);
        share[i] = (now_s() - t0) * 1e3;
        uint64_t id = q.a, owner_hold = q.b;
        gms_broker_msg p = {.type = GMS_BROKER_PUBLISH, .a = id};
        CHECK(raw_call(s, &p, &fd) == GMS_BROKER_PUBLISHED);
        gms_broker_msg a = {.type = GMS_BROKER_ACQUIRE, .a = id, .mode = GMS_ACCESS_READ,
                            .language = GMS_ANY_LANGUAGE};
        t0 = now_s();
        CHECK(raw_call(s, &a, &fd) == GMS_BROKER_ACQUIRED);
        acquire[i] = (now_s() - t0) * 1e3;
        close(fd);
        gms_broker_msg r1 = {.type = GMS_BROKER_RELEASE_SHARE, .a = a.a};
        gms_broker_msg r2 = {.type = GMS_BROKER_RELEASE, .a = a.e};
        gms_broker_msg r3 = {.type = GMS_BROKER_RELEASE_SHARE, .a = owner_hold};
        CHECK(raw_call(s, &r1, &fd) == GMS_BROKER_SHARE_RELEASED);
        CHECK(raw_call(s, &r2, &fd) == GMS_BROKER_RELEASED);
        CHECK(raw_call(s, &r3, &fd) == GMS_BROKER_SHARE_RELEASED);
    }
    close(s);
    printf("gmsd's part of a %llu MiB share: SHARE %.2f ms (its memory made, the bytes copied), "
           "ACQUIRE %.2f ms (the reader's copy)\n", (unsigned long long)(bytes / MIB),
           median(share, N), median(acquire, N));
}

/* The first allocation of a new lease made ahead (GMS_BROKER_SPARE
 * unset), at a pace that lets the spare be ready: 20 ms between leases;
 * us[0..2] through gms_alloc, us[3..5] through gms_alloc_async. */
static void spared_first(gms_safety_mode safety, double us[6])
{
    unsetenv("GMS_BROKER_SPARE");
    gms_runtime *rt;
    gms_context *cs = open_client_with(&rt, GMS_BACKEND_CUDA, safety);
    gms_buf sb[7];
    if (cs)
        CHECK_OK(gms_alloc(cs, LEASE * 3 / 4, 0, &sb[6])); /* the first lease: no spare yet */
    for (int i = 0; cs && i < 6; i++) {
        usleep(20000);
        double t0 = now_s();
        CHECK_OK(i < 3 ? gms_alloc(cs, LEASE * 3 / 4, 0, &sb[i])
                       : gms_alloc_async(cs, LEASE * 3 / 4, 0, NULL, &sb[i]));
        us[i] = (now_s() - t0) * 1e6;
    }
    for (int i = 0; cs && i < 7; i++)
        CHECK_OK(gms_free(cs, sb[i]));
    if (cs) {
        gms_context_close(cs);
        gms_runtime_close(rt);
    }
    setenv("GMS_BROKER_SPARE", "0", 1);
}

static void bench(void)
{
    enum { ROUNDS = 50 };
    /* Raw lease round trips: gmsd's part alone. */
    double rt[ROUNDS], phase[5][ROUNDS];
    int s = raw_connect(b.sock), fd;
    gms_broker_msg m = {.type = GMS_BROKER_HELLO};
    CHECK(raw_call(s, &m, &fd) == GMS_BROKER_WELCOME);
    int have_cu = cu_load();
    CHECK(have_cu);
    for (int i = 0; i < ROUNDS; i++) {
        gms_broker_msg q = {.type = GMS_BROKER_LEASE, .a = LEASE};
        double t0 = now_s();
        CHECK(raw_call(s, &q, &fd) == GMS_BROKER_LEASED);
        rt[i] = (now_s() - t0) * 1e6;
        double t[5] = {0};
        if (have_cu)
            lease_phases(fd, t);
        for (int k = 0; k < 5; k++)
            phase[k][i] = t[k];
        close(fd);
        gms_broker_msg r = {.type = GMS_BROKER_RELEASE, .a = q.a};
        CHECK(raw_call(s, &r, &fd) == GMS_BROKER_RELEASED);
    }
    close(s);
    /* The first allocation of each new lease, through libgms: each buffer
     * takes more than half a lease, so each one needs a lease of its own. */
    gms_runtime *rt_b;
    gms_context *ctx = open_client(&rt_b, GMS_BACKEND_CUDA);
    double first[3], first_async[3];
    gms_buf bufs[6];
    for (int i = 0; ctx && i < 3; i++) {
        double t0 = now_s();
        CHECK_OK(gms_alloc(ctx, LEASE * 3 / 4, 0, &bufs[i]));
        first[i] = (now_s() - t0) * 1e6;
    }
    /* The same through the stream-ordered call, which does not wait for
     * the preparation of fresh memory (docs/stream-ordered.md). */
    for (int i = 3; ctx && i < 6; i++) {
        double t0 = now_s();
        CHECK_OK(gms_alloc_async(ctx, LEASE * 3 / 4, 0, NULL, &bufs[i]));
        first_async[i - 3] = (now_s() - t0) * 1e6;
    }
    for (int i = 0; ctx && i < 6; i++)
        CHECK_OK(gms_free(ctx, bufs[i]));
    double in_lease = ctx ? pair_ns(ctx) : -1;
    double spared[6] = {0}, spared_off[6] = {0};
    spared_first(GMS_SAFETY_ON, spared);
    spared_first(GMS_SAFETY_OFF, spared_off);
    for (uint64_t mib = 2; ctx && mib <= 64; mib *= 32) {
        share_costs(ctx, mib * MIB, 1);
        share_costs(ctx, mib * MIB, 0);
        share_round_trips(mib * MIB);
    }
    if (ctx) {
        gms_context_close(ctx);
        gms_runtime_close(rt_b);
    }
    /* The same pair in-process on the CUDA backend. */
    unsetenv("GMS_BROKER");
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_CUDA;
    o.safety = stand_in ? GMS_SAFETY_OFF : GMS_SAFETY_ON;
    gms_runtime *rt_c = NULL;
    gms_context *c2 = NULL;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "self";
    d.user = "u";
    CHECK_OK(gms_runtime_open(&rt_c, &o));
    CHECK_OK(gms_context_open(&c2, rt_c, &d));
    double in_process = c2 ? pair_ns(c2) : -1;
    gms_context_close(c2);
    gms_runtime_close(rt_c);
    double malloc_alone = 0, malloc_pair = cuda_malloc_us(LEASE * 3 / 4, ROUNDS, &malloc_alone);
    printf("lease round trip (%llu MiB: gmsd makes, zeroes, exports): median %.1f us\n",
           (unsigned long long)(LEASE / MIB), median(rt, ROUNDS));
    printf("a lease's descriptor in the client, medians: import %.1f us, reserve %.1f, map %.1f, "
           "access %.1f; unmapping it all %.1f\n", median(phase[0], ROUNDS),
           median(phase[1], ROUNDS), median(phase[2], ROUNDS), median(phase[3], ROUNDS),
           median(phase[4], ROUNDS));
    printf("first allocation of a new lease (%llu MiB buffer): %.1f / %.1f / %.1f us; "
           "cuMemAlloc of the same: %.1f us (with its free %.1f): ratio %.2f\n",
           (unsigned long long)(LEASE * 3 / 4 / MIB), first[0], first[1], first[2], malloc_alone,
           malloc_pair, first[1] / malloc_alone);
    printf("the same through gms_alloc_async: %.1f / %.1f / %.1f us\n", first_async[0],
           first_async[1], first_async[2]);
    printf("first allocation of a new lease made ahead (a spare; 20 ms apart): gms_alloc %.1f / "
           "%.1f / %.1f us, gms_alloc_async %.1f / %.1f / %.1f us: ratio %.2f and %.2f\n",
           spared[0], spared[1], spared[2], spared[3], spared[4], spared[5],
           spared[1] / malloc_alone, spared[4] / malloc_alone);
    printf("the same with safety off: gms_alloc %.1f / %.1f / %.1f us, gms_alloc_async %.1f / "
           "%.1f / %.1f us: ratio %.2f and %.2f\n", spared_off[0], spared_off[1], spared_off[2],
           spared_off[3], spared_off[4], spared_off[5], spared_off[1] / malloc_alone,
           spared_off[4] / malloc_alone);
    printf("4 KiB async pair: inside a lease %.0f ns, in-process CUDA backend %.0f ns: ratio "
           "%.2f\n", in_lease, in_process, in_lease / in_process);
}

int main(int argc, char **argv)
{
    stand_in = getenv("GMS_TEST_STAND_IN") != NULL;
    /* Exact lease counts below: no lease made ahead, but in child_spare. */
    setenv("GMS_BROKER_SPARE", "0", 1);
    /* Probed in a child: CUDA set up before a fork is unusable after it. */
    if (run_child(cuda_probe) != 0) {
        printf("no CUDA backend here: skipped\n");
        return TEST_SKIP;
    }
    int benching = argc > 1 && strcmp(argv[1], "bench") == 0;
    unsigned leases_max = benching ? 64 : 3;
    /* The bench's shares of 64 MiB take leases of their own size. */
    uint64_t quota_bytes = benching ? 4096 * MIB : leases_max * LEASE;
    char policy[512];
    snprintf(policy, sizeof policy,
             "{\"lease_bytes\": %llu, \"tenants\": ["
             "{\"name\": \"self\", \"uids\": [%u], \"quota_bytes\": %llu, \"quota_leases\": %u},"
             "{\"name\": \"other\", \"uids\": [40021], \"quota_bytes\": %llu, \"quota_leases\": 1}]}",
             (unsigned long long)LEASE, (unsigned)getuid(),
             (unsigned long long)quota_bytes, leases_max, (unsigned long long)LEASE);
    broker_start_with(&b, policy, "--memory", "cuda");
    if (benching) {
        bench();
        CHECK(broker_stop(&b) == 0);
        return test_done();
    }

    CHECK(run_child(child_basic) == 0);
    CHECK(run_child(child_fresh_zeroed) == 0);
    CHECK(run_child(child_spare) == 0);
    CHECK(run_child(child_wrong_backend) == 0);
    CHECK(run_child(child_raw_mutable) == 0);
    if (stand_in) /* a GPU's UUID is the stand-in's to play with */
        CHECK(run_child(child_wrong_gpu) == 0);

    double ms = 0;
    CHECK(killed_returns(b.sock, child_victim, 2 * LEASE, 2, &ms));
    printf("kill -9: 2 leases of device memory back in the quota %.3f ms after the death\n", ms);
    uint64_t bytes = 0, leases = 0;
    /* Another uid may not reach the stand-in's directory (a private
     * build tree): the second tenant runs where the driver is installed. */
    if (geteuid() == 0) {
        if (!stand_in)
            CHECK(run_child(child_other) == 0);
        CHECK(raw_usage(b.sock, &bytes, &leases) == 0 && leases == 0);
        share_crosses();
        mutable_share_crosses();
        mutable_share_restart();
        if (!stand_in) /* a kernel: the stand-in runs none */
            fault_stays_home();
    } else {
        printf("a second tenant needs root (setuid): not run\n");
    }
    CHECK(run_child(child_basic) == 0); /* the quota is whole again */
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
