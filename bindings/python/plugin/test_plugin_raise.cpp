// test_plugin_raise.cpp: a refused allocation reaches PyTorch as a C++
// exception once the plug-in raises (gms.torch.use_gms() turns it on),
// called through a std::function as PyTorch's pluggable allocator calls
// it; off, it is a NULL. The refusal is a tenant quota's, on the host
// backend (GMS_TORCH_BACKEND=host, set by CTest).
#include <gms.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <new>
#include <sys/types.h>

extern "C" {
void *gms_torch_alloc(ssize_t size, int device, void *stream);
void gms_torch_free(void *ptr, ssize_t size, int device, void *stream);
gms_runtime *gms_torch_runtime(int device);
void gms_torch_raise_on_failure(int on);
}

static int passed, failed;

static void check(bool ok, const char *what)
{
    if (ok) {
        passed++;
    } else {
        std::fprintf(stderr, "CHECK failed: %s\n", what);
        failed++;
    }
}

int main()
{
    std::function<void *(ssize_t, int, void *)> alloc = gms_torch_alloc;
    void *first = alloc(4096, 0, nullptr); // opens the device's runtime
    check(first != nullptr, "a first allocation");
    gms_runtime *rt = gms_torch_runtime(0);
    check(rt && gms_tenant_set_quota(rt, "torch", 1 << 16, GMS_UNLIMITED) == GMS_OK,
          "a 64 KiB quota");

    void *got = alloc(1 << 20, 0, nullptr); // not raising yet: a NULL
    check(got == nullptr, "past the quota, not raising: NULL");

    gms_torch_raise_on_failure(1);
    bool thrown = false;
    try {
        got = alloc(1 << 20, 0, nullptr);
    } catch (const std::bad_alloc &e) {
        thrown = true;
        std::printf("raised: %s\n", e.what());
        check(std::strstr(e.what(), "1048576 bytes on device 0") != nullptr, "the request named");
        check(std::strstr(e.what(), "quota") != nullptr, "gms's reason");
    }
    check(thrown, "past the quota, raising: a bad_alloc");
    void *small = alloc(4096, 0, nullptr); // within the quota: still served
    check(small != nullptr, "within the quota after the raise");
    gms_torch_raise_on_failure(0);

    gms_torch_free(small, 4096, 0, nullptr);
    gms_torch_free(first, 4096, 0, nullptr);
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
