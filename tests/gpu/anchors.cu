/*
 * tests/gpu/anchors.cu: what users have today, measured in the same run as
 * gms on the GPU (tests/gpu/run.sh builds it with nvcc against libgms):
 *
 *   pair    cudaMallocAsync+cudaFreeAsync (warm pool) and cudaMalloc+cudaFree,
 *           each pair timed on its own, median and p99
 *   memset  cudaMemsetAsync over 4 GiB (the wipe's anchor), median of 10
 *   copy    one copy kernel (16-byte loads and stores, grid-stride) over
 *           2 GiB, on gms memory (cuda backend, safety on) and on
 *           cudaMalloc memory: bandwidth counting bytes read plus written
 *
 * Lines starting "RESULT" are what docs/gpu.md and bench/RESULTS.md quote.
 */
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "gms.h"

#define CK(x)                                                                             \
    do {                                                                                  \
        cudaError_t e_ = (x);                                                             \
        if (e_ != cudaSuccess) {                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static uint64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double med(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static double p99(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[(size_t)(0.99 * (double)v.size())];
}

__global__ void copy_kernel(uint4 *__restrict__ d, const uint4 *__restrict__ s, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        d[i] = s[i];
}

__global__ void init_kernel(uint4 *p, size_t n, unsigned seed)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        unsigned x = (unsigned)i * 2654435761u ^ seed;
        p[i] = make_uint4(x, x * 3u, x * 5u, x * 7u);
    }
}

/* Copy bandwidth (GB/s, read + write bytes), median of 20 after 3 warm-ups. */
static double copy_gbps(void *dst, const void *src, size_t bytes, int sms)
{
    size_t n = bytes / 16;
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<double> v;
    for (int i = 0; i < 23; i++) {
        CK(cudaEventRecord(a));
        copy_kernel<<<sms * 8, 512>>>((uint4 *)dst, (const uint4 *)src, n);
        CK(cudaGetLastError());
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (i >= 3)
            v.push_back(2.0 * (double)bytes / ((double)ms * 1e6));
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return med(v);
}

static bool same(const void *x, const void *y, size_t bytes)
{
    std::vector<char> hx(1 << 20), hy(1 << 20);
    for (size_t off = 0; off < bytes; off += bytes / 7 + 1) {
        size_t n = std::min((size_t)(1 << 20), bytes - off);
        CK(cudaMemcpy(hx.data(), (const char *)x + off, n, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hy.data(), (const char *)y + off, n, cudaMemcpyDeviceToHost));
        if (memcmp(hx.data(), hy.data(), n) != 0)
            return false;
    }
    return true;
}

int main()
{
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int drv = 0, rtv = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rtv);
    printf("device: %s, %d SMs, driver API %d, runtime %d\n", prop.name, prop.multiProcessorCount,
           drv, rtv);
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

    /* ---- pairs ---- */
    const size_t sizes[] = {256, 4096, 65536, 1 << 20};
    for (size_t s : sizes) {
        std::vector<double> v;
        for (int i = 0; i < 2000; i++) { /* warm the pool */
            void *p;
            CK(cudaMallocAsync(&p, s, st));
            CK(cudaFreeAsync(p, st));
        }
        for (int i = 0; i < 100000; i++) {
            void *p;
            uint64_t t0 = now_ns();
            CK(cudaMallocAsync(&p, s, st));
            CK(cudaFreeAsync(p, st));
            v.push_back((double)(now_ns() - t0));
        }
        printf("RESULT cudaMallocAsync_pair_%zuB_ns median=%.0f p99=%.0f\n", s, med(v), p99(v));
        CK(cudaStreamSynchronize(st));
        v.clear();
        for (int i = 0; i < 3000; i++) {
            void *p;
            uint64_t t0 = now_ns();
            CK(cudaMalloc(&p, s));
            CK(cudaFree(p));
            if (i >= 100)
                v.push_back((double)(now_ns() - t0));
        }
        printf("RESULT cudaMalloc_pair_%zuB_ns median=%.0f p99=%.0f\n", s, med(v), p99(v));
    }

    /* ---- memset 4 GiB ---- */
    const size_t big = 4ull << 30;
    void *m;
    CK(cudaMalloc(&m, big));
    {
        std::vector<double> ev, wall;
        cudaEvent_t a, b;
        CK(cudaEventCreate(&a));
        CK(cudaEventCreate(&b));
        for (int i = 0; i < 13; i++) {
            uint64_t t0 = now_ns();
            CK(cudaEventRecord(a, st));
            CK(cudaMemsetAsync(m, 0x5a, big, st));
            CK(cudaEventRecord(b, st));
            CK(cudaStreamSynchronize(st));
            uint64_t t1 = now_ns();
            float ms;
            CK(cudaEventElapsedTime(&ms, a, b));
            if (i >= 3) {
                ev.push_back((double)ms);
                wall.push_back((double)(t1 - t0) / 1e6);
            }
        }
        printf("RESULT cudaMemsetAsync_4GiB_ms=%.3f gbps=%.1f (wall incl. sync %.3f ms, gbps=%.1f)\n",
               med(ev), (double)big / (med(ev) * 1e6), med(wall), (double)big / (med(wall) * 1e6));
    }
    CK(cudaFree(m));

    /* ---- copy kernel: gms memory vs cudaMalloc memory ---- */
    const size_t cb = 2ull << 30;
    void *ca, *cb2;
    CK(cudaMalloc(&ca, cb));
    CK(cudaMalloc(&cb2, cb));
    init_kernel<<<prop.multiProcessorCount * 8, 512>>>((uint4 *)ca, cb / 16, 1);
    CK(cudaDeviceSynchronize());
    double g_cuda = copy_gbps(cb2, ca, cb, prop.multiProcessorCount);
    bool ok_cuda = same(ca, cb2, cb);

    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_CUDA;
    gms_runtime *rt = nullptr;
    if (gms_runtime_open(&rt, &o) != GMS_OK) {
        printf("gms runtime: %s\n", gms_error_last());
        return 1;
    }
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "anchors";
    d.user = "bench";
    gms_context *ctx;
    gms_buf ga, gb;
    void *pa, *pb;
    if (gms_context_open(&ctx, rt, &d) || gms_alloc(ctx, cb, 0, &ga) || gms_alloc(ctx, cb, 0, &gb) ||
        gms_buf_ptr(ctx, ga, &pa) || gms_buf_ptr(ctx, gb, &pb)) {
        printf("gms: %s\n", gms_error_last());
        return 1;
    }
    init_kernel<<<prop.multiProcessorCount * 8, 512>>>((uint4 *)pa, cb / 16, 1);
    CK(cudaDeviceSynchronize());
    double g_gms = copy_gbps(pb, pa, cb, prop.multiProcessorCount);
    bool ok_gms = same(pa, pb, cb) && same(pa, ca, cb);
    /* Twice, alternating, to see the spread. */
    double g_cuda2 = copy_gbps(cb2, ca, cb, prop.multiProcessorCount);
    double g_gms2 = copy_gbps(pb, pa, cb, prop.multiProcessorCount);
    printf("RESULT copy_2GiB gbps cudaMalloc=%.1f,%.1f gms=%.1f,%.1f ratio=%.4f data_ok=%d,%d\n", g_cuda,
           g_cuda2, g_gms, g_gms2, (g_gms + g_gms2) / (g_cuda + g_cuda2), ok_cuda, ok_gms);
    gms_free(ctx, ga);
    gms_free(ctx, gb);
    gms_context_close(ctx);
    gms_runtime_close(rt);
    CK(cudaFree(ca));
    CK(cudaFree(cb2));
    return 0;
}
