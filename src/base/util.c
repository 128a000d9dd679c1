/*
 * util.c: small helpers every layer uses: name checks, the names of the
 * public enums, the coarse clock, an atomic maximum, and writing a log line.
 */
#include "base/base.h"

#include <stdio.h>
#include <time.h>

int gms__name_check(const char *what, const char *name)
{
    if (!name)
        return gms__fail(GMS_E_INVALID_ARG, "%s is NULL", what);
    size_t n = 0;
    for (; name[n]; n++) {
        if (n >= GMS_NAME_MAX)
            return gms__fail(GMS_E_INVALID_ARG, "%s is longer than %d bytes", what, GMS_NAME_MAX);
        if (name[n] < 0x20 || name[n] > 0x7e)
            return gms__fail(GMS_E_INVALID_ARG,
                             "%s has a byte 0x%02x at %zu: printable ASCII only", what,
                             (unsigned char)name[n], n);
    }
    if (n == 0)
        return gms__fail(GMS_E_INVALID_ARG, "%s is empty", what);
    return GMS_OK;
}

const char *gms_level_name(gms_level level)
{
    static const char *names[] = {"public", "internal", "confidential", "secret"};
    return (unsigned)level < 4 ? names[level] : "invalid";
}

const char *gms_language_name(gms_language language)
{
    static const char *names[] = {"c", "rust", "elixir", "julia", "zig", "nim", "python", "other"};
    return (unsigned)language < 8 ? names[language] : "invalid";
}

uint64_t gms__now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

void gms__atomic_max(uint64_t _Atomic *v, uint64_t x)
{
    uint64_t cur = atomic_load_explicit(v, memory_order_relaxed);
    while (x > cur && !atomic_compare_exchange_weak(v, &cur, x)) {
    }
}

void gms__log_write(gms_log_fn fn, void *user, gms_log_level level, const char *msg)
{
    if (fn) {
        char saved[GMS_ERROR_MAX];
        gms__error_save(saved);
        fn(user, level, msg);
        gms__error_restore(saved);
    } else if (level <= GMS_LOG_WARN)
        fprintf(stderr, "%s\n", msg);
}
