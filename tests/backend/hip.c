/*
 * hip.c: the HIP backend (src/backend/hip/hip.c, docs/hip.md).
 *
 * Runs on any machine. With no HIP runtime or no AMD GPU (every machine gms
 * has been built on so far): gms__backend_hip_create returns ENODEV, hands
 * nothing out and leaks nothing (ASan), the reason names libamdhip64, and
 * a runtime asked for the hip backend (by option or by GMS_BACKEND=hip)
 * fails with GMS_E_UNSUPPORTED and that reason. On a machine with an AMD
 * GPU it runs a smoke test of the backend on device 0 instead: reserve,
 * commit (zeroed), write, read, copy, fill, a read-only view, decommit,
 * and, when GMS_HIP_CODE_OBJECT names the built kernels (src/kernels/scrub.cu
 * through hipcc), one scrub batch
 * with planted corruption; then a runtime on GMS_BACKEND_HIP round trips
 * a buffer (without the kernel: only with safety off, and a runtime with
 * safety on is refused, naming GMS_HIP_CODE_OBJECT). That part has run
 * only against a stand-in libamdhip64 over host memory, never on a GPU.
 */
#include "test.h"
#include "backend/backend.h"
#include "backend/hip/hip.h"

#include <errno.h>

static void test_absent(void)
{
    gms_backend *be = NULL;
    CHECK(gms__backend_hip_create(0, &be) == ENODEV);
    CHECK(be == NULL);
    CHECK(strstr(gms__backend_hip_why(), "libamdhip64") != NULL ||
          strstr(gms__backend_hip_why(), "no GPU") != NULL);
    printf("reason: %s\n", gms__backend_hip_why());
    /* A second call gives the same answer (the load is tried once). */
    CHECK(gms__backend_hip_create(1, &be) == ENODEV);
    CHECK(be == NULL);

    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HIP;
    gms_runtime *rt = NULL;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_UNSUPPORTED);
    CHECK(rt == NULL);
    CHECK(strstr(gms_error_last(), "hip") != NULL);
    CHECK(strstr(gms_error_last(), "libamdhip64") != NULL ||
          strstr(gms_error_last(), "no GPU") != NULL);
    printf("runtime: %s\n", gms_error_last());

    /* The same through the environment. */
    setenv("GMS_BACKEND", "hip", 1);
    gms_runtime_options a = GMS_RUNTIME_OPTIONS_INIT;
    CHECK_RC(gms_runtime_open(&rt, &a), GMS_E_UNSUPPORTED);
    CHECK(rt == NULL);
    CHECK(strstr(gms_error_last(), "hip backend") != NULL);
    unsetenv("GMS_BACKEND");

    /* Auto never picks hip; host still opens. */
    CHECK_OK(gms_runtime_open(&rt, &a));
    if (rt) {
        CHECK(strcmp(gms_runtime_backend_name(rt), "hip") != 0);
        gms_runtime_close(rt);
    }
}

/* ---- on an AMD GPU (never run so far) ---- */

static void test_device(void)
{
    gms_backend *be = NULL;
    CHECK(gms__backend_hip_create(0, &be) == 0);
    if (!be) {
        fprintf(stderr, "create: %s\n", gms__backend_hip_why());
        return;
    }
    const gms_backend_ops *ops = be->ops;
    CHECK(strcmp(ops->name, "hip") == 0);
    uint64_t g = gms__backend_hip_granularity(be);
    CHECK(g >= (2ull << 20) && (g & (g - 1)) == 0);
    printf("granule %llu bytes, kernels %s\n", (unsigned long long)g,
           gms__backend_hip_have_kernels(be) ? "loaded" : "missing");

    uint64_t base = 0;
    gms_backend_chunk *c = NULL;
    CHECK(ops->reserve(be, 8 * g, g, &base, &c) == 0);
    if (!c) {
        ops->destroy(be);
        return;
    }
    CHECK(base % g == 0);
    CHECK(ops->commit(be, c, g, 2 * g) == 0);
    CHECK(ops->commit(be, c, g, g) == EINVAL); /* mapped already */

    size_t n = 1 << 20;
    uint8_t *a = malloc(n), *b = malloc(n);
    CHECK(ops->read(be, b, base + g, n) == 0);
    size_t nz = 0;
    for (size_t i = 0; i < n; i++)
        nz += b[i] != 0;
    /* New memory reads as zeros, unless the core zeroes it in stream order
     * (backend.h: a backend with scrub_async). */
    CHECK(nz == 0 || ops->scrub_async);
    for (size_t i = 0; i < n; i++)
        a[i] = (uint8_t)(i * 131 + 7);
    CHECK(ops->write(be, base + g, a, n) == 0);
    CHECK(ops->copy(be, base + g + n, base + g, n) == 0);
    memset(b, 0, n);
    CHECK(ops->read(be, b, base + g + n, n) == 0);
    CHECK(memcmp(a, b, n) == 0);
    CHECK(ops->copy(be, base + g + 1, base + g, n) == 0); /* overlapping */
    CHECK(ops->read(be, b, base + g + 1, n) == 0);
    CHECK(memcmp(a, b, n) == 0);
    CHECK(ops->fill(be, base + g, 0xab, 4096) == 0);
    CHECK(ops->read(be, b, base + g, 4096) == 0);
    CHECK(b[0] == 0xab && b[4095] == 0xab);

    uint64_t view = 0;
    int vr = ops->map_view_readonly(be, c, g, g, &view);
    CHECK(vr == 0 || vr == ENOTSUP);
    if (vr == 0) {
        CHECK(ops->read(be, b, view, 4096) == 0);
        CHECK(b[0] == 0xab);
        ops->unmap_view(be, view, g);
    } else {
        printf("read-only view: %s\n", gms__backend_hip_why());
    }

    /* One scrub item: check range with one corrupted byte, fill range. */
    uint64_t pattern = 0x1122334455667788ull;
    gms_scrub_item it;
    memset(&it, 0, sizeof it);
    it.fill_lo[0] = base + g;
    it.fill_hi[0] = base + g + 100000 + 3;
    it.verify = 1;
    int sr = ops->scrub(be, &it, 1, pattern, 42);
    if (gms__backend_hip_have_kernels(be)) {
        CHECK(sr == 0);
        CHECK(it.verify_bad == 0);
        uint8_t x = 0;
        CHECK(ops->write(be, base + g + 5001, &x, 1) == 0);
        memset(&it, 0, sizeof it);
        it.check_lo[0] = base + g + 1;
        it.check_hi[0] = base + g + 100000;
        it.passes = GMS_SCRUB_MULTIPASS;
        it.fill_lo[0] = base + 2 * g;
        it.fill_hi[0] = base + 2 * g + 65536;
        CHECK(ops->scrub(be, &it, 1, pattern, 42) == 0);
        CHECK(it.bad == base + g + 5001);
        CHECK(ops->read(be, &x, base + g + 5001, 1) == 0);
        CHECK(x == (uint8_t)(pattern >> (8 * ((base + g + 5001) & 7)))); /* re-armed */
    } else {
        CHECK(sr == ENOSYS);
        CHECK(strstr(gms__backend_hip_why(), "GMS_HIP_CODE_OBJECT") != NULL);
        printf("scrub: %s\n", gms__backend_hip_why());
    }
    CHECK(ops->decommit(be, c, g, 2 * g) == 0);
    ops->release(be, c);
    ops->destroy(be);
    free(a);
    free(b);

    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HIP;
    o.chunk_bytes = 1ull << 30;
    gms_runtime *rt = NULL;
    if (!getenv("GMS_HIP_CODE_OBJECT")) {
        /* Safety poisons with the scrub kernel: without it, a clear no. */
        CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_UNSUPPORTED);
        CHECK(strstr(gms_error_last(), "GMS_HIP_CODE_OBJECT") != NULL);
        o.safety = GMS_SAFETY_OFF; /* data movement needs no kernel */
    }
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return;
    CHECK(strcmp(gms_runtime_backend_name(rt), "hip") == 0);
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "t";
    d.user = "hip-test";
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    if (ctx) {
        char in[1000], out[1000];
        for (size_t i = 0; i < sizeof in; i++)
            in[i] = (char)i;
        gms_buf x;
        CHECK_OK(gms_alloc(ctx, sizeof in, 0, &x));
        CHECK_OK(gms_write(ctx, x, 0, in, sizeof in));
        CHECK_OK(gms_read(ctx, x, 0, out, sizeof out));
        CHECK(memcmp(in, out, sizeof in) == 0);
        CHECK_OK(gms_free(ctx, x));
        gms_context_close(ctx);
    }
    gms_runtime_close(rt);
}

int main(void)
{
    if (gms__backend_hip_available()) {
        printf("HIP runtime and GPU found: device smoke test\n");
        test_device();
    } else {
        test_absent();
    }
    return test_done();
}
