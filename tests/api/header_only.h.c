/* Compiles the public header alone with -std=c11 -pedantic -Werror. */
#include "gms.h"
#include "gms.h" /* include guard holds */

int main(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    (void)o;
    (void)d;
    return 0;
}
