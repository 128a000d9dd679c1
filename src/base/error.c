/*
 * error.c: error codes, their names, and the thread-local message of the
 * last failed call (gms_error_last never returns NULL).
 */
#include "base/base.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_message[GMS_ERROR_MAX];

const char *gms_strerror(int code)
{
    switch (code) {
    case GMS_OK: return "GMS_OK: success";
    case GMS_E_INVALID_ARG: return "GMS_E_INVALID_ARG: invalid argument";
    case GMS_E_INVALID_HANDLE: return "GMS_E_INVALID_HANDLE: stale, freed or forged handle";
    case GMS_E_ACCESS_DENIED: return "GMS_E_ACCESS_DENIED: the buffer belongs to another context";
    case GMS_E_OUT_OF_BOUNDS: return "GMS_E_OUT_OF_BOUNDS: access outside the buffer";
    case GMS_E_QUOTA: return "GMS_E_QUOTA: tenant quota exceeded";
    case GMS_E_NO_MEMORY: return "GMS_E_NO_MEMORY: out of memory";
    case GMS_E_READ_ONLY: return "GMS_E_READ_ONLY: the buffer is read-only";
    case GMS_E_CORRUPTION: return "GMS_E_CORRUPTION: corruption detected";
    case GMS_E_BACKEND: return "GMS_E_BACKEND: the device backend failed";
    case GMS_E_UNSUPPORTED: return "GMS_E_UNSUPPORTED: not supported";
    case GMS_E_BUSY: return "GMS_E_BUSY: the object is busy";
    default: return "GMS_E_UNKNOWN: unknown error code";
    }
}

const char *gms_error_last(void)
{
    return last_message;
}

int gms__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return code;
}

void gms__error_save(char *buf)
{
    memcpy(buf, last_message, sizeof last_message);
}

void gms__error_restore(const char *buf)
{
    memcpy(last_message, buf, sizeof last_message);
}

int gms__backend_fail(int err, const char *what, uint64_t bytes)
{
    char buf[128];
    /* strerror_r (GNU flavour) returns the string it used. */
    const char *s = strerror_r(err, buf, sizeof buf);
    if (err == EDQUOT) /* the broker's quota for this tenant (docs/broker.md) */
        return gms__fail(GMS_E_QUOTA, "backend %s of %llu bytes refused by gmsd: the tenant's "
                         "quota (its policy) is used up", what, (unsigned long long)bytes);
    return gms__fail(err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND,
                     "backend %s of %llu bytes failed: %s", what,
                     (unsigned long long)bytes, s);
}
