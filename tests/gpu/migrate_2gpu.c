/*
 * migrate_2gpu.c: gms_pool_migrate between two GPUs (docs/migration.md),
 * for a machine with two or more; with `same` as its argument, on one GPU,
 * to new physical memory of the same device (the CUDA path of a migration
 * without peers: create, copy, remap in place). Exits 77 (skip) when the
 * GPUs are too few. A pool of
 * GMS_MIGRATE_GIB GiB (default 16) in 1 GiB buffers, each filled with its
 * own byte, moves from device 0 to device 1 and back: every device pointer
 * stays the same, the data reads back (samples of every buffer, through
 * gms_read and a kernel-free peer copy), and the migration's bandwidth is
 * printed against the peer-copy bandwidth of cuMemcpyPeer measured in the
 * same run (target: at least 80%). Run by tests/gpu/run.sh's step
 * migrate-2gpu, which is not in its default list.
 */
#include "test.h"
#include "gms/migrate.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GiB ((uint64_t)1 << 30)
#define MiB ((uint64_t)1 << 20)

/* The few driver calls the peer-copy reference needs (cuda.h, CUDA 12). */
typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
static struct {
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*PrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemFree)(CUdeviceptr);
    CUresult (*MemcpyPeer)(CUdeviceptr, CUcontext, CUdeviceptr, CUcontext, size_t);
} cu;

static int load_cuda(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return 0;
#define SYM(f, s) *(void **)&cu.f = dlsym(lib, s)
    SYM(Init, "cuInit");
    SYM(DeviceGetCount, "cuDeviceGetCount");
    SYM(DeviceGet, "cuDeviceGet");
    SYM(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    SYM(CtxSetCurrent, "cuCtxSetCurrent");
    SYM(CtxSynchronize, "cuCtxSynchronize");
    SYM(MemAlloc, "cuMemAlloc_v2");
    SYM(MemFree, "cuMemFree_v2");
    SYM(MemcpyPeer, "cuMemcpyPeer");
#undef SYM
    return cu.Init && cu.DeviceGetCount && cu.DeviceGet && cu.PrimaryCtxRetain &&
           cu.CtxSetCurrent && cu.CtxSynchronize && cu.MemAlloc && cu.MemFree && cu.MemcpyPeer;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Peer-copy bandwidth from device 0 to device `to`, GB/s, over `bytes`
 * (the best of three copies of up to 4 GiB; to 0: a copy on device 0). */
static double peer_gbps(uint64_t bytes, int to)
{
    CUdevice d0, d1;
    CUcontext c0, c1;
    CUdeviceptr a = 0, b = 0;
    uint64_t n = bytes < 4 * GiB ? bytes : 4 * GiB;
    double best = 0;
    if (cu.DeviceGet(&d0, 0) || cu.DeviceGet(&d1, to) || cu.PrimaryCtxRetain(&c0, d0) ||
        cu.PrimaryCtxRetain(&c1, d1))
        return 0;
    if (cu.CtxSetCurrent(c1) || cu.MemAlloc(&b, n) || cu.CtxSetCurrent(c0) || cu.MemAlloc(&a, n))
        return 0;
    for (int i = 0; i < 3; i++) {
        double t0 = now_s();
        if (cu.MemcpyPeer(b, c1, a, c0, n) || cu.CtxSynchronize())
            return 0;
        double gbps = (double)n / (now_s() - t0) / 1e9;
        best = gbps > best ? gbps : best;
    }
    cu.MemFree(a);
    cu.CtxSetCurrent(c1);
    cu.MemFree(b);
    cu.CtxSetCurrent(c0);
    return best;
}

/* Samples of every buffer: 1 MiB at its start, middle and end. */
static int data_ok(gms_context *ctx, const gms_buf *h, int nbufs, uint8_t *tmp)
{
    int ok = 1;
    for (int i = 0; i < nbufs && ok; i++) {
        uint64_t offs[3] = {0, GiB / 2, GiB - MiB};
        for (int k = 0; k < 3 && ok; k++) {
            ok &= gms_read(ctx, h[i], offs[k], tmp, MiB) == GMS_OK;
            for (uint64_t j = 0; j < MiB && ok; j++)
                ok &= tmp[j] == (uint8_t)(0x40 + i);
        }
    }
    return ok;
}

int main(int argc, char **argv)
{
    int same = argc > 1 && strcmp(argv[1], "same") == 0, ndev = 0;
    int to = same ? 0 : 1; /* the target device */
    if (!load_cuda() || cu.Init(0) || cu.DeviceGetCount(&ndev) || ndev < to + 1)
        return test_skip(same ? "needs a CUDA GPU" : "needs two or more CUDA GPUs");
    const char *env = getenv("GMS_MIGRATE_GIB");
    int nbufs = env ? atoi(env) : 16;
    if (nbufs < 1)
        nbufs = 1;

    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_CUDA;
    o.device = 0;
    o.chunk_bytes = 4 * GiB;
    gms_runtime *rt;
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = "mover";
    d.user = "migrate_2gpu";
    gms_context *ctx;
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    gms_buf *h = calloc((size_t)nbufs, sizeof *h);
    void **ptr = calloc((size_t)nbufs, sizeof *ptr);
    uint8_t *tmp = malloc(MiB);
    CHECK(h && ptr && tmp);
    for (int i = 0; i < nbufs; i++) {
        CHECK_OK(gms_alloc(ctx, GiB, 0, &h[i]));
        CHECK_OK(gms_fill(ctx, h[i], 0, 0x40 + i, GiB));
        CHECK_OK(gms_buf_ptr(ctx, h[i], &ptr[i]));
    }
    double peer = peer_gbps((uint64_t)nbufs * GiB, to);
    CHECK(peer > 0);

    int dev = -1;
    double t0 = now_s();
    CHECK_OK(gms_pool_migrate(ctx, to));
    double t1 = now_s();
    CHECK_OK(gms_pool_device(ctx, &dev));
    CHECK(dev == to);
    int unchanged = 1;
    for (int i = 0; i < nbufs; i++) {
        void *p = NULL;
        unchanged &= gms_buf_ptr(ctx, h[i], &p) == GMS_OK && p == ptr[i];
    }
    CHECK(unchanged);
    CHECK(data_ok(ctx, h, nbufs, tmp));
    /* The pool keeps working on its new memory, and moves back. */
    gms_buf extra;
    CHECK_OK(gms_alloc(ctx, 64 * MiB, 0, &extra));
    CHECK_OK(gms_free(ctx, extra));
    CHECK_OK(gms_pool_migrate(ctx, 0));
    CHECK(data_ok(ctx, h, nbufs, tmp));

    double gbps = (double)nbufs * (double)GiB / (t1 - t0) / 1e9;
    printf("RESULT migrate %d GiB pool, device 0 -> %d in %.3f s: %.1f GB/s; %s copy %.1f GB/s; "
           "%.0f%%%s; pointers %s\n",
           nbufs, to, t1 - t0, gbps, same ? "on-device" : "peer", peer, 100.0 * gbps / peer,
           same ? "" : " (target >= 80%)", unchanged ? "unchanged" : "CHANGED");
    if (!same) /* the target is between two GPUs */
        CHECK(gbps >= 0.8 * peer);
    for (int i = 0; i < nbufs; i++)
        CHECK_OK(gms_free(ctx, h[i]));
    free(h);
    free(ptr);
    free(tmp);
    gms_context_close(ctx);
    gms_runtime_close(rt);
    return test_done();
}
