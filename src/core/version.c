/*
 * version.c: the library's version, and the versions of the public structs
 * that callers fill in (gms.h, "Versioned structs").
 *
 * When a struct grows: add its fields at the end, raise its *_VERSION in
 * the header, and add the new version's size to its table here
 * (GMS__SIZE_UP_TO its last field). Older versions' sizes never change.
 */
#include "core/version.h"
#include "core/internal.h"
#include "gms/dlpack.h"

#include <string.h>

uint32_t gms_version(void)
{
    return GMS_VERSION;
}

/* ---- the size of each version ---- */

static const size_t runtime_options_sizes[] = {
    0,
    GMS__SIZE_UP_TO(gms_runtime_options, max_held_bytes), /* 1 */
    GMS__SIZE_UP_TO(gms_runtime_options, broker),         /* 2 */
};
static const size_t context_desc_sizes[] = {
    0,
    GMS__SIZE_UP_TO(gms_context_desc, language), /* 1 */
};
static const size_t share_desc_sizes[] = {
    0,
    GMS__SIZE_UP_TO(gms_share_desc, immutable), /* 1 */
};
static const size_t dlpack_desc_sizes[] = {
    0,
    GMS__SIZE_UP_TO(gms_dlpack_desc, byte_offset), /* 1 */
};

/* Each table has exactly one entry per version. */
#define SIZES_MATCH(table, current) \
    _Static_assert(sizeof table / sizeof table[0] == (current) + 1, #table " lacks a version")
SIZES_MATCH(runtime_options_sizes, GMS_RUNTIME_OPTIONS_VERSION);
SIZES_MATCH(context_desc_sizes, GMS_CONTEXT_DESC_VERSION);
SIZES_MATCH(share_desc_sizes, GMS_SHARE_DESC_VERSION);
SIZES_MATCH(dlpack_desc_sizes, GMS_DLPACK_DESC_VERSION);

const gms_struct_versions gms__runtime_options_versions = {
    "gms_runtime_options", "GMS_RUNTIME_OPTIONS_INIT", GMS_RUNTIME_OPTIONS_VERSION,
    runtime_options_sizes};
const gms_struct_versions gms__context_desc_versions = {
    "gms_context_desc", "GMS_CONTEXT_DESC_INIT", GMS_CONTEXT_DESC_VERSION, context_desc_sizes};
const gms_struct_versions gms__share_desc_versions = {
    "gms_share_desc", "GMS_SHARE_DESC_INIT", GMS_SHARE_DESC_VERSION, share_desc_sizes};
const gms_struct_versions gms__dlpack_desc_versions = {
    "gms_dlpack_desc", "GMS_DLPACK_DESC_INIT", GMS_DLPACK_DESC_VERSION, dlpack_desc_sizes};

static int version_check(const gms_struct_versions *v, const char *fn, uint32_t version)
{
    if (version >= 1 && version <= v->current)
        return GMS_OK;
    if (v->current == 1)
        return gms__fail(GMS_E_INVALID_ARG, "%s: %s version %u; this gms reads version 1 (initialise it with %s)",
                         fn, v->name, version, v->init);
    return gms__fail(GMS_E_INVALID_ARG,
                     "%s: %s version %u; this gms reads versions 1 to %u (initialise it with %s)", fn,
                     v->name, version, v->current, v->init);
}

/* Every versioned struct starts with its uint32_t version. */
int gms__struct_read(const gms_struct_versions *v, const char *fn, const void *given, void *out)
{
    uint32_t version;
    memcpy(&version, given, sizeof version);
    int rc = version_check(v, fn, version);
    if (rc)
        return rc;
    memcpy(out, given, v->sizes[version]);
    memcpy(out, &v->current, sizeof v->current);
    return GMS_OK;
}

int gms__struct_init(const gms_struct_versions *v, const char *fn, void *out, uint32_t version,
                     const void *defaults)
{
    if (!out)
        return gms__fail(GMS_E_INVALID_ARG, "%s: the struct is NULL", fn);
    int rc = version_check(v, fn, version);
    if (rc)
        return rc;
    memcpy(out, defaults, v->sizes[version]);
    memcpy(out, &version, sizeof version);
    return GMS_OK;
}

/* ---- the initialisers ---- */

int gms_runtime_options_init_version(gms_runtime_options *opts, uint32_t version)
{
    const gms_runtime_options d = GMS_RUNTIME_OPTIONS_INIT;
    return gms__struct_init(&gms__runtime_options_versions, "gms_runtime_options_init", opts, version, &d);
}

int gms_context_desc_init_version(gms_context_desc *desc, uint32_t version)
{
    const gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    return gms__struct_init(&gms__context_desc_versions, "gms_context_desc_init", desc, version, &d);
}

int gms_share_desc_init_version(gms_share_desc *desc, uint32_t version)
{
    const gms_share_desc d = GMS_SHARE_DESC_INIT;
    return gms__struct_init(&gms__share_desc_versions, "gms_share_desc_init", desc, version, &d);
}

/* The symbols of the one-argument initialisers, which gms.h maps to the
 * ones above: binaries and bindings that call them by name were built
 * against version 1, so they get version 1. NULL does nothing, as ever. */
void (gms_runtime_options_init)(gms_runtime_options *opts)
{
    if (opts)
        gms_runtime_options_init_version(opts, 1);
}

void (gms_context_desc_init)(gms_context_desc *desc)
{
    if (desc)
        gms_context_desc_init_version(desc, 1);
}

void (gms_share_desc_init)(gms_share_desc *desc)
{
    if (desc)
        gms_share_desc_init_version(desc, 1);
}
