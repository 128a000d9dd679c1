/*
 * fault.h: an injected raw corruption of gms-soak and which violation
 * reports are its own (docs/soak.md). Also used by
 * tests/safety/reused_address.c.
 *
 * The address alone does not say whose a report is: a pool gives its
 * memory back once its last context closes, and another pool's next chunk
 * may be mapped at the same address while the first report is still on
 * its way to the callbacks (it is delivered once no lock is held). Each
 * thread injects into pools of tenants of its own, so the report's tenant
 * says which thread's fault it is; a report that names a buffer must name
 * the fault's, when the fault has one buffer.
 */
#ifndef GMS_SOAK_FAULT_H
#define GMS_SOAK_FAULT_H

#include <gms.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef struct fault {
    bool active;
    const char *tenant; /* the tenant of the pool the bytes lie in */
    gms_buf handle;     /* the buffer reports must name, or GMS_BUF_NULL: any */
    uint64_t lo, hi;    /* the bytes written */
    unsigned kinds;     /* 1 << gms_violation_kind */
    unsigned reports;
} fault;

static inline bool fault_matches(const fault *f, const gms_violation *v)
{
    return (f->kinds & (1u << v->kind)) && v->address >= f->lo && v->address < f->hi && v->tenant &&
           strcmp(v->tenant, f->tenant) == 0 &&
           (f->handle == GMS_BUF_NULL || v->handle == GMS_BUF_NULL || v->handle == f->handle);
}

/* The active fault among faults[0, n) that report v is of, or -1. */
static inline int fault_find(const fault *faults, unsigned n, const gms_violation *v)
{
    for (unsigned i = 0; i < n; i++)
        if (faults[i].active && fault_matches(&faults[i], v))
            return (int)i;
    return -1;
}

#endif
