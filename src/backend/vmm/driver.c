/*
 * driver.c: the one place every GPU driver call goes through (driver.h),
 * and the backends' thread-local note of why their last call failed
 * (backend.h).
 */
#include "backend/vmm/driver.h"
#include "backend/backend.h"
#include "base/base.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Thread_local char backend_why[512];

const char *gms__backend_why(void)
{
    return backend_why;
}

void gms__backend_why_clear(void)
{
    backend_why[0] = 0;
}

int gms__backend_fail(int err, const char *what, uint64_t bytes)
{
    char buf[128];
    /* strerror_r (GNU flavour) returns the string it used. */
    const char *s = strerror_r(err, buf, sizeof buf);
    if (err == EDQUOT) /* the broker's quota for this tenant (docs/broker.md) */
        return gms__fail(GMS_E_QUOTA, "backend %s of %llu bytes refused by gmsd: the tenant's "
                         "quota (its policy) is used up", what, (unsigned long long)bytes);
    /* A device backend's note names the driver call and the driver's error. */
    const char *why = gms__backend_why();
    int rc = gms__fail(err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND,
                       "backend %s of %llu bytes failed: %s%s%s%s", what,
                       (unsigned long long)bytes, s, why[0] ? " (" : "", why, why[0] ? ")" : "");
    gms__backend_why_clear();
    return rc;
}

void gms__backend_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(backend_why, sizeof backend_why, fmt, ap);
    va_end(ap);
}

_Thread_local uint64_t gms__drv_began;

uint64_t gms__drv_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int gms__drv_quiet(gms_drv *d, int kind, int rc)
{
    atomic_fetch_add_explicit(&d->calls[kind], 1, memory_order_relaxed);
    if (gms__drv_began) {
        atomic_fetch_add_explicit(&d->ns[kind], gms__drv_clock() - gms__drv_began, memory_order_relaxed);
        gms__drv_began = 0;
    }
    if (rc != 0)
        atomic_fetch_add_explicit(&d->fails[kind], 1, memory_order_relaxed);
    return rc;
}

int gms__drv_check(gms_drv *d, int kind, const char *detail, int rc)
{
    if (gms__drv_quiet(d, kind, rc) == 0)
        return 0;
    const char *call = d->call_names[kind];
    const char *name = d->error_name ? d->error_name(rc) : NULL;
    const char *text = d->error_string ? d->error_string(rc) : NULL;
    if (!call) { /* a setup call: the detail names it */
        call = detail ? detail : gms__drv_kind_name(kind);
        detail = NULL;
    }
    gms__backend_note("%s: %s%s%s%s: %s: %s (%s %d)", d->name, call, detail ? " (" : "",
                      detail ? detail : "", detail ? ")" : "", name ? name : "unknown error",
                      text ? text : "no description", d->result_type, rc);
    return d->errno_of(rc);
}

const char *gms__drv_kind_name(int kind)
{
#define GMS_DRV_NAME(name) #name,
    static const char *const names[GMS_DRV_NCALLS] = {GMS_DRV_CALLS(GMS_DRV_NAME) "setup"};
#undef GMS_DRV_NAME
    return kind >= 0 && kind < GMS_DRV_NCALLS ? names[kind] : "?";
}

void gms__drv_dump(const gms_drv *d, FILE *f)
{
    for (int k = 0; k < GMS_DRV_NCALLS; k++) {
        unsigned long long n = atomic_load_explicit(&d->calls[k], memory_order_relaxed);
        unsigned long long e = atomic_load_explicit(&d->fails[k], memory_order_relaxed);
        unsigned long long ns = atomic_load_explicit(&d->ns[k], memory_order_relaxed);
        if (n && d->timed)
            fprintf(f, "%s %-18s %-36s %12llu calls %6llu failed %12.0f us %9.2f us/call\n",
                    d->name, gms__drv_kind_name(k), d->call_names[k] ? d->call_names[k] : "", n,
                    e, ns / 1e3, ns / 1e3 / (double)n);
        else if (n)
            fprintf(f, "%s %-18s %-36s %12llu calls %6llu failed\n", d->name,
                    gms__drv_kind_name(k), d->call_names[k] ? d->call_names[k] : "", n, e);
    }
}
