// launch_cost.cu: what a kernel launch costs the host, by the size of its
// parameters: 64 bytes against the 3 KB work list the stream-ordered scrub
// carries (src/kernels/scrub.h). Back-to-back launches of an empty kernel
// on one stream, best of five rounds of 2,000. Informational
// (bench/RESULTS.md, run AD); run by tests/gpu/run.sh's launch-cost step.
#include <chrono>
#include <cstdio>
#include <cuda_runtime.h>

template <int Words> struct params {
    unsigned long long w[Words];
};

// Never true: the compiler must keep the parameters.
template <int Words> __global__ void empty(params<Words> p)
{
    if (p.w[0] == 12345 && threadIdx.x == 999)
        printf("%llu", p.w[Words - 1]);
}

template <int Words> static double launch_us(cudaStream_t s)
{
    const int n = 2000;
    params<Words> p = {};
    for (int i = 0; i < 100; i++)
        empty<Words><<<1, 256, 0, s>>>(p);
    cudaStreamSynchronize(s);
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < n; i++)
            empty<Words><<<1, 256, 0, s>>>(p);
        auto t1 = std::chrono::steady_clock::now();
        cudaStreamSynchronize(s);
        double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / n;
        best = us < best ? us : best;
    }
    return best;
}

int main()
{
    cudaStream_t s;
    if (cudaStreamCreate(&s) != cudaSuccess) {
        fprintf(stderr, "launch_cost: no CUDA device\n");
        return 1;
    }
    printf("a launch's host cost: 64 B %.2f us, 512 B %.2f us, 1 KB %.2f us, 3 KB %.2f us\n",
           launch_us<8>(s), launch_us<64>(s), launch_us<128>(s), launch_us<392>(s));
    printf("on the default stream: 64 B %.2f us, 3 KB %.2f us\n", launch_us<8>(0),
           launch_us<392>(0));
    return cudaGetLastError() == cudaSuccess ? 0 : 1;
}
