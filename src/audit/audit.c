/*
 * audit.c: the audit trail. Placeholder until the trail lands (issue 5):
 * no trail can be opened yet, so asking for one is refused.
 */
#include "audit/audit.h"
#include "core/internal.h"

#include <stdlib.h>

int gms__audit_open(gms_audit **out, const gms_runtime_options *opts)
{
    *out = NULL;
    const char *dir = opts->audit_dir ? opts->audit_dir : getenv("GMS_AUDIT_DIR");
    if (dir && *dir)
        return gms__fail(GMS_E_UNSUPPORTED, "audit trail: not built into this gms yet");
    return GMS_OK;
}

void gms__audit_close(gms_audit *a)
{
    (void)a;
}

void gms__audit_emit(gms_audit *a, const gms_audit_event *e)
{
    (void)a;
    (void)e;
}

int gms__audit_flush(gms_audit *a)
{
    (void)a;
    return gms__fail(GMS_E_UNSUPPORTED, "gms_audit_flush: this runtime has no audit trail");
}
