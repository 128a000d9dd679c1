/*
 * cuda.c: gms-inject's raw access on the CUDA backend: corrupting writes
 * through device addresses, and the child processes that make the writes
 * which must fault on the GPU.
 */
#include "inject.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the CUDA driver, for writes through device addresses -------------
 *
 * On the CUDA backend gms_buf_ptr gives a device address: the raw classes
 * write through it with the driver's copy functions, loaded here with
 * dlopen as the backend does (no toolkit needed to build). gms puts back
 * the caller's context after each call, so this thread holds the primary
 * context of device 0 (the backend's, o.device = 0) current itself; gms
 * then finds it current and switches nothing. */

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef unsigned long long CUdeviceptr;

static struct {
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
    CUresult (*CtxSynchronize)(void);
    CUresult (*GetErrorName)(CUresult, const char **);
} cu;

/* Loads the driver and makes device 0's primary context current on this
 * thread (retained for the life of the process). */
void cu_attach(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "gms-inject: --backend cuda: libcuda.so.1 did not load: %s\n", dlerror());
        exit(2);
    }
    static const struct {
        const char *sym;
        void **fn;
    } fns[] = {
        {"cuInit", (void **)&cu.Init},
        {"cuDeviceGet", (void **)&cu.DeviceGet},
        {"cuDevicePrimaryCtxRetain", (void **)&cu.DevicePrimaryCtxRetain},
        {"cuCtxSetCurrent", (void **)&cu.CtxSetCurrent},
        {"cuMemcpyHtoD_v2", (void **)&cu.MemcpyHtoD},
        {"cuMemcpyDtoH_v2", (void **)&cu.MemcpyDtoH},
        {"cuMemsetD8_v2", (void **)&cu.MemsetD8},
        {"cuCtxSynchronize", (void **)&cu.CtxSynchronize},
        {"cuGetErrorName", (void **)&cu.GetErrorName},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        if (!(*fns[i].fn = dlsym(lib, fns[i].sym))) {
            fprintf(stderr, "gms-inject: --backend cuda: the driver lacks %s\n", fns[i].sym);
            exit(2);
        }
    }
    CUdevice dev;
    CUcontext ctx;
    CUresult r = cu.Init(0);
    if (!r)
        r = cu.DeviceGet(&dev, 0);
    if (!r)
        r = cu.DevicePrimaryCtxRetain(&ctx, dev);
    if (!r)
        r = cu.CtxSetCurrent(ctx);
    if (r) {
        fprintf(stderr, "gms-inject: --backend cuda: entering device 0's primary context: CUresult %d\n", r);
        exit(2);
    }
}

static const char *cu_name(CUresult r)
{
    const char *s = NULL;
    if (cu.GetErrorName)
        cu.GetErrorName(r, &s);
    return s ? s : "unknown CUresult";
}

/* XORs n <= 64 bytes at device address a with random non-zero masks (the
 * bytes there are read first, so every byte changes), then waits for the
 * copy. Returns the driver's result: non-zero when it refused or faulted. */
int dev_corrupt(uint64_t a, size_t n)
{
    uint8_t buf[64];
    if (n > sizeof buf)
        n = sizeof buf;
    CUresult r = cu.MemcpyDtoH(buf, (CUdeviceptr)a, n);
    if (r)
        return r;
    for (size_t i = 0; i < n; i++)
        buf[i] ^= rnd_nonzero_byte();
    if ((r = cu.MemcpyHtoD((CUdeviceptr)a, buf, n)) != 0)
        return r;
    return cu.CtxSynchronize();
}

void raw_corrupt(uint8_t *p, size_t n)
{
    if (!on_cuda) {
        corrupt(p, n);
        return;
    }
    CUresult r = dev_corrupt((uint64_t)(uintptr_t)p, n);
    if (r) {
        fprintf(stderr, "gms-inject: a write of %zu bytes at device address 0x%" PRIx64 " failed: %s (%d)\n",
                n, (uint64_t)(uintptr_t)p, cu_name(r), r);
        exit(2);
    }
}

/* ---- device faults on cuda: batches of trials in fresh processes ------
 *
 * A write that must fault on the GPU is made from a child process: a
 * context that faults is lost for good, and a CUDA context cannot be used
 * across fork. So the child is this program again (fork + exec of
 * /proc/self/exe with --child KIND), which opens its own runtime and
 * context, runs up to DEV_BATCH trials and reports each on a pipe: an
 * 'A' record just before the write, an 'R' record with the driver's
 * results after it. A trial is detected when the write (cuMemcpyHtoD_v2 or
 * cuMemsetD8_v2) or the cuCtxSynchronize after it returns an error, or
 * when the child dies of a signal between the two records. After a failed
 * synchronize (the context is gone) the child exits 3 and the rest of its
 * batch goes to a new child. */

#define DEV_JOBS 8u

typedef struct dev_rec {
    char tag; /* 'A' armed, 'R' result */
    uint8_t method; /* 0: cuMemcpyHtoD_v2, 1: cuMemsetD8_v2 */
    uint16_t pad;
    int32_t rw, rs; /* the write's and the synchronize's results */
} dev_rec;

static const char *dev_method[] = {"cuMemcpyHtoD_v2", "cuMemsetD8_v2"};

/* Outcomes seen, for the class's `how`. */
#define HMAX 24
static struct {
    int method, rw, rs, sig;
    uint64_t n;
} hist[HMAX];
static unsigned nhist;

void dev_outcomes_reset(void)
{
    nhist = 0;
}

static void hist_add(int method, int rw, int rs, int sig)
{
    for (unsigned i = 0; i < nhist; i++)
        if (hist[i].method == method && hist[i].rw == rw && hist[i].rs == rs && hist[i].sig == sig) {
            hist[i].n++;
            return;
        }
    if (nhist < HMAX) {
        hist[nhist].method = method;
        hist[nhist].rw = rw;
        hist[nhist].rs = rs;
        hist[nhist].sig = sig;
        hist[nhist++].n = 1;
    }
}

void dev_outcomes_format(char *buf, size_t size)
{
    size_t at = strlen(buf);
    for (unsigned i = 0; i < nhist && at < size; i++) {
        const char *sep = i ? "; " : " Outcomes: ";
        int w;
        if (hist[i].sig)
            w = snprintf(buf + at, size - at, "%schild killed by signal %d during %s: %" PRIu64, sep,
                         hist[i].sig, dev_method[hist[i].method], hist[i].n);
        else if (hist[i].rw)
            w = snprintf(buf + at, size - at, "%s%s returned %s (%d): %" PRIu64, sep,
                         dev_method[hist[i].method], cu_name(hist[i].rw), hist[i].rw, hist[i].n);
        else if (hist[i].rs)
            w = snprintf(buf + at, size - at, "%s%s returned success, then cuCtxSynchronize %s (%d), the context lost: %" PRIu64,
                         sep, dev_method[hist[i].method], cu_name(hist[i].rs), hist[i].rs, hist[i].n);
        else
            w = snprintf(buf + at, size - at, "%s%s succeeded (missed): %" PRIu64, sep,
                         dev_method[hist[i].method], hist[i].n);
        at += w > 0 ? (size_t)w : 0;
    }
    if (at < size)
        snprintf(buf + at, size - at, ".");
}

static pid_t dev_spawn(const char *kind, uint64_t seed, uint64_t n, int *fd)
{
    int pfd[2];
    if (pipe(pfd)) {
        perror("gms-inject: pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("gms-inject: fork");
        exit(2);
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        char a_seed[32], a_n[32], a_max[32];
        snprintf(a_seed, sizeof a_seed, "%" PRIu64, seed);
        snprintf(a_n, sizeof a_n, "%" PRIu64, n);
        snprintf(a_max, sizeof a_max, "%" PRIu64, opt.max_size);
        execl("/proc/self/exe", "gms-inject", "--backend", "cuda", "--child", kind, "--seed", a_seed,
              "--trials", a_n, "--max-size", a_max, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    *fd = pfd[0];
    return pid;
}

/* DEV_JOBS children at a time. */
void run_device_children(tally *t, const char *kind, uint64_t trials)
{
    struct {
        pid_t pid;
        int fd;
        uint64_t n;
    } kids[DEV_JOBS];
    unsigned nk = 0, jobs = opt.jobs < DEV_JOBS ? opt.jobs : DEV_JOBS;
    uint64_t left = trials;
    static dev_rec recs[2 * DEV_BATCH + 2];
    while (left || nk) {
        while (left && nk < jobs) {
            uint64_t n = left < DEV_BATCH ? left : DEV_BATCH;
            kids[nk].pid = dev_spawn(kind, rnd(), n, &kids[nk].fd);
            kids[nk].n = n;
            nk++;
            left -= n;
        }
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            perror("gms-inject: wait");
            exit(2);
        }
        unsigned k = 0;
        while (k < nk && kids[k].pid != pid)
            k++;
        if (k == nk)
            continue;
        /* The child is gone: what it wrote (at most 24 KB) waits in the pipe. */
        size_t got_bytes = 0;
        for (;;) {
            ssize_t r = read(kids[k].fd, (char *)recs + got_bytes, sizeof recs - got_bytes);
            if (r > 0)
                got_bytes += (size_t)r;
            else if (r == 0 || errno != EINTR)
                break;
        }
        close(kids[k].fd);
        uint64_t done = 0;
        bool armed = false;
        int method = 0;
        for (size_t i = 0; i < got_bytes / sizeof *recs; i++) {
            const dev_rec *r = &recs[i];
            if (r->tag == 'A') {
                armed = true;
                method = r->method;
                continue;
            }
            armed = false;
            done++;
            bool d = r->rw != 0 || r->rs != 0;
            hist_add(r->method, r->rw, r->rs, 0);
            if (!d)
                miss(t, "%s: %s succeeded on an address that should not be writable", kind,
                     dev_method[r->method]);
            t->by_fault += d;
            count(t, d);
        }
        if (done < kids[k].n) {
            if (armed && WIFSIGNALED(status)) {
                hist_add(method, 0, 0, WTERMSIG(status));
                t->by_fault++;
                count(t, true);
                done++;
            } else if (armed || !WIFEXITED(status) || WEXITSTATUS(status) != 3) {
                /* It failed outside a write: a miss, so each child uses up a trial. */
                fprintf(stderr, "gms-inject: %s: a child %s %d after %" PRIu64 " of %" PRIu64 " trials\n", kind,
                        WIFSIGNALED(status) ? "died of signal" : "exited with status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), done, kids[k].n);
                count(t, false);
                done++;
            }
        }
        left += kids[k].n - done;
        kids[k] = kids[--nk];
    }
}

static void dev_put(const dev_rec *r)
{
    if (write(1, r, sizeof *r) != (ssize_t)sizeof *r)
        _exit(2);
}

void dev_wild(uint64_t target, size_t n)
{
    uint8_t buf[64];
    if (n > sizeof buf)
        n = sizeof buf;
    for (size_t i = 0; i < n; i++)
        buf[i] = rnd_nonzero_byte();
    dev_rec r = {'A', (uint8_t)(rnd() & 1), 0, 0, 0};
    dev_put(&r);
    r.tag = 'R';
    r.rw = r.method == 0 ? cu.MemcpyHtoD((CUdeviceptr)target, buf, n)
                         : cu.MemsetD8((CUdeviceptr)target, buf[0], n);
    r.rs = cu.CtxSynchronize();
    dev_put(&r);
    if (r.rs)
        _exit(3);
}

