/*
 * cuda_async.h: the CUDA driver's stream-ordered allocator, the baseline
 * that `gms-bench replay --backend cuda` runs beside gms.
 *
 * cuMemAllocAsync/cuMemFreeAsync are what cudaMallocAsync/cudaFreeAsync
 * call. Like libgms's CUDA backend, libcuda.so.1 is loaded with dlopen and
 * no CUDA header is included, so gms-bench builds without the toolkit and
 * runs on the host backend without a driver. One device, one stream, one
 * pool per process: the state is kept here, not passed around.
 */
#ifndef GMS_BENCH_CUDA_ASYNC_H
#define GMS_BENCH_CUDA_ASYNC_H

#include <stdint.h>

/* A CUdeviceptr: unsigned long long in cuda.h, which uint64_t need not be. */
typedef unsigned long long bench_cuda_ptr;

/* Loads the driver, makes `device`'s primary context current on this
 * thread and keeps it retained until bench_cuda_close (each trace's gms
 * runtime releases its own hold on that context; ours keeps the stream and
 * the pool alive in between), creates one non-blocking stream and sets the
 * device's default memory pool's release threshold to UINT64_MAX, as
 * PyTorch's cudaMallocAsync backend does. Returns 0, or prints why and
 * returns BENCH_EXIT_FAIL; a missing driver or GPU is reported as "CUDA is
 * unavailable". */
int bench_cuda_open(int device);
void bench_cuda_close(void);

/* The stream, for gms_alloc_async/gms_free_async (a CUstream). */
void *bench_cuda_stream(void);

/* The timed calls, on the stream: 0 or the CUresult, for the caller to
 * report with what it was replaying. Size 0 gives pointer 0 and freeing 0
 * does nothing, as in PyTorch's backend (the driver refuses size 0). */
int bench_cuda_alloc(uint64_t size, bench_cuda_ptr *ptr);
int bench_cuda_free(bench_cuda_ptr ptr);
/* Prints "gms-bench: what: driver message (CUresult r)". */
void bench_cuda_report(const char *what, int r);

/* These print what failed and return BENCH_EXIT_FAIL, else 0. */
int bench_cuda_sync(void);
/* Gives all the pool's free memory back to the device and resets its
 * reserved high watermark: the next replay starts from nothing, as gms
 * does with a fresh runtime. Only once every block is freed and synced. */
int bench_cuda_pool_empty(void);
/* The most memory the pool has reserved since bench_cuda_pool_empty. */
int bench_cuda_pool_reserved_high(uint64_t *bytes);

#endif /* GMS_BENCH_CUDA_ASYNC_H */
