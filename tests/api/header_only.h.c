/* Compiles the public headers alone with -std=c11 -pedantic -Werror. */
#include "gms.h"
#include "gms.h" /* include guard holds */
#include "gms/access.h"
#include "gms/dlpack.h"
#include "gms/migrate.h"
#include "gms/migrate.h" /* include guard holds */
#include "gms/seal.h"
#include "gms/testing.h"

int main(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    gms_share_desc s = GMS_SHARE_DESC_INIT;
    gms_dlpack_desc t = GMS_DLPACK_DESC_INIT;
    gms_testing_options k = {0};
    gms_atomic_item a = {0, 1, 0, GMS_ATOMIC_ADD, 8};
    (void)a;
    if (0) { /* the initialiser macros expand to valid C */
        gms_runtime_options_init(&o);
        gms_context_desc_init(&d);
        gms_share_desc_init(&s);
    }
    (void)o;
    (void)d;
    (void)s;
    (void)t;
    (void)k;
    return 0;
}
