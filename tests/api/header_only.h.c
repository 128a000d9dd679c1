/* Compiles the public headers alone with -std=c11 -pedantic -Werror. */
#include "gms.h"
#include "gms.h" /* include guard holds */
#include "gms/dlpack.h"

int main(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    gms_share_desc s = GMS_SHARE_DESC_INIT;
    gms_dlpack_desc t = GMS_DLPACK_DESC_INIT;
    (void)o;
    (void)d;
    (void)s;
    (void)t;
    return 0;
}
