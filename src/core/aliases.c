/*
 * aliases.c: exports the API's contract names gms_stats and gms_buf_info as
 * symbols. In C they cannot be both a type and a function, so gms.h spells
 * the calls gms_stats_get / gms_buf_info_get and maps the contract names to
 * them with function-like macros; bindings that look symbols up by name
 * (dlsym, ctypes) find these. This file must not include gms.h.
 */
#include <stdint.h>

#define GMS_EXPORT __attribute__((visibility("default")))

int gms_stats_get(void *rt, void *out);
int gms_buf_info_get(void *ctx, uint64_t buf, void *out);

GMS_EXPORT int gms_stats(void *rt, void *out);
GMS_EXPORT int gms_buf_info(void *ctx, uint64_t buf, void *out);

int gms_stats(void *rt, void *out)
{
    return gms_stats_get(rt, out);
}

int gms_buf_info(void *ctx, uint64_t buf, void *out)
{
    return gms_buf_info_get(ctx, buf, out);
}
