// vmm_costs.cu: what mapping a run of granules costs the host, call by
// call, by the run's length and by how its physical memory is made: one
// allocation per 2 MiB granule (what a pool did before extents, so that
// single granules could go back) or one allocation for the whole run; and what moving a
// run's memory to another address costs (its handles mapped there, the old
// mapping left for later). Medians of 7, idle device and while a kernel
// runs on another stream. Informational (docs/stream-ordered.md); run by
// tests/gpu/run.sh's vmm-costs step.
#include "vmm_timing.h"

enum { CREATE, MAP, ACCESS, UNMAP, RELEASE, NCOST };
static const size_t gran = 2 << 20;
static CUmemAllocationProp prop;
static CUmemAccessDesc rw;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Maps n granules at va, as n allocations (per_granule) or one, and unmaps
// them; adds each call kind's time to t.
static void map_unmap(CUdeviceptr va, int n, bool per_granule, double t[NCOST])
{
    CUmemGenericAllocationHandle h[64];
    int parts = per_granule ? n : 1;
    size_t part = per_granule ? gran : n * gran;
    double t0 = now_us();
    for (int i = 0; i < parts; i++)
        CK(cuMemCreate(&h[i], part, &prop, 0));
    double t1 = now_us();
    for (int i = 0; i < parts; i++)
        CK(cuMemMap(va + i * part, part, 0, h[i], 0));
    double t2 = now_us();
    CK(cuMemSetAccess(va, n * gran, &rw, 1));
    double t3 = now_us();
    for (int i = 0; i < parts; i++)
        CK(cuMemUnmap(va + i * part, part));
    double t4 = now_us();
    for (int i = 0; i < parts; i++)
        CK(cuMemRelease(h[i]));
    double t5 = now_us();
    t[CREATE] = t1 - t0, t[MAP] = t2 - t1, t[ACCESS] = t3 - t2, t[UNMAP] = t4 - t3,
    t[RELEASE] = t5 - t4;
}

// Moves n granules mapped at a (one allocation each) to b: their handles
// mapped at b with access, then a unmapped. Times the map and access at b
// (what an allocation would wait for) and the unmap of a (what could be
// left to later).
static void move(CUdeviceptr a, CUdeviceptr b, int n, double t[NCOST])
{
    CUmemGenericAllocationHandle h[64];
    for (int i = 0; i < n; i++) {
        CK(cuMemCreate(&h[i], gran, &prop, 0));
        CK(cuMemMap(a + i * gran, gran, 0, h[i], 0));
    }
    CK(cuMemSetAccess(a, n * gran, &rw, 1));
    double t0 = now_us();
    for (int i = 0; i < n; i++)
        CK(cuMemMap(b + i * gran, gran, 0, h[i], 0));
    double t1 = now_us();
    CK(cuMemSetAccess(b, n * gran, &rw, 1));
    double t2 = now_us();
    for (int i = 0; i < n; i++)
        CK(cuMemUnmap(a + i * gran, gran));
    double t3 = now_us();
    for (int i = 0; i < n; i++) {
        CK(cuMemUnmap(b + i * gran, gran));
        CK(cuMemRelease(h[i]));
    }
    t[CREATE] = 0, t[MAP] = t1 - t0, t[ACCESS] = t2 - t1, t[UNMAP] = t3 - t2, t[RELEASE] = 0;
}

int main()
{
    CUstream s = device_open();
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    rw.location = prop.location;
    rw.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CUdeviceptr va;
    CK(cuMemAddressReserve(&va, 256 * gran, gran, 0, 0));
    const int sizes[] = {1, 4, 16, 64};
    const int reps = 7;
    printf("%-6s %-28s %4s %9s %9s %9s %9s %9s %11s\n", "device", "what", "n", "create", "map",
           "access", "unmap", "release", "us/granule");
    for (int busy = 0; busy < 2; busy++) {
        for (int kind = 0; kind < 3; kind++) {
            for (int n : sizes) {
                double all[NCOST][reps];
                for (int r = 0; r < reps; r++) {
                    if (busy)
                        spin<<<1, 1, 0, (cudaStream_t)s>>>(20000000ull); // ~10 ms
                    double t[NCOST];
                    if (kind < 2)
                        map_unmap(va, n, kind == 0, t);
                    else
                        move(va, va + 128 * gran, n, t);
                    for (int k = 0; k < NCOST; k++)
                        all[k][r] = t[k];
                    CK(cuCtxSynchronize());
                }
                double med[NCOST], sum = 0;
                for (int k = 0; k < NCOST; k++) {
                    qsort(all[k], reps, sizeof(double), cmp);
                    med[k] = all[k][reps / 2];
                    sum += med[k];
                }
                const char *what[3] = {"one allocation a granule", "one allocation a run",
                                       "move (map elsewhere, unmap)"};
                printf("%-6s %-28s %4d", busy ? "busy" : "idle", what[kind], n);
                for (int k = 0; k < NCOST; k++)
                    printf(" %9.1f", med[k]);
                printf(" %11.1f\n", sum / n);
            }
        }
    }
    CK(cuMemAddressFree(va, 256 * gran));
    return 0;
}
