/*
 * tenant.c: tenants and their quotas. A tenant is made the first time a
 * context or a quota names it and lives as long as the runtime; its
 * counters are atomics that every pool of the tenant draws on (the quota
 * itself is taken and given back in buffer.c).
 */
#include "core/internal.h"

#include <stdio.h>
#include <string.h>

gms_tenant *gms__tenant_find(gms_runtime *rt, const char *name)
{
    for (gms_tenant *t = rt->tenants; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* Finds or creates a tenant (rt->lock held). */
int gms__tenant_get(gms_runtime *rt, const char *name, gms_tenant **out)
{
    gms_tenant *t = gms__tenant_find(rt, name);
    if (!t) {
        t = gms__alloc_meta(rt, sizeof *t);
        if (!t)
            return gms__fail(GMS_E_NO_MEMORY, "out of host memory for a tenant");
        memset(t, 0, sizeof *t);
        strcpy(t->name, name);
        t->index = rt->ntenants++;
        atomic_init(&t->max_bytes, GMS_UNLIMITED);
        atomic_init(&t->max_allocs, GMS_UNLIMITED);
        *rt->tenants_tail = t;
        rt->tenants_tail = &t->next;
    }
    *out = t;
    return GMS_OK;
}

int gms_tenant_set_quota(gms_runtime *rt, const char *tenant, uint64_t max_bytes,
                         uint64_t max_allocs)
{
    if (!rt)
        return gms__fail(GMS_E_INVALID_ARG, "gms_tenant_set_quota: runtime is NULL");
    int rc = gms__name_check("tenant", tenant);
    if (rc)
        return rc;
    pthread_mutex_lock(&rt->lock);
    gms_tenant *t;
    rc = gms__tenant_get(rt, tenant, &t);
    if (rc == GMS_OK) {
        atomic_store(&t->max_bytes, max_bytes);
        atomic_store(&t->max_allocs, max_allocs);
    }
    pthread_mutex_unlock(&rt->lock);
    if (rc == GMS_OK && rt->audit) {
        char detail[96];
        snprintf(detail, sizeof detail, "quota max_bytes=%llu max_allocs=%llu",
                 (unsigned long long)max_bytes, (unsigned long long)max_allocs);
        gms_audit_event e = {.op = GMS_AUDIT_CONFIG, .size = max_bytes, .handle = max_allocs,
                             .tenant = tenant, .level = -1, .language = -1, .detail = detail};
        gms__audit_emit(rt->audit, &e);
    }
    return rc;
}
