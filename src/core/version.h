/*
 * version.h: reading the versioned structs of the public API (gms.h: "Versioned
 * structs"). A caller built against an older gms.h passes an older, smaller
 * struct: only the fields its version has are read, the rest keep their
 * defaults. Every version from 1 to the current one is accepted.
 */
#ifndef GMS_CORE_VERSION_H
#define GMS_CORE_VERSION_H

#include <stddef.h>
#include <stdint.h>

/* The bytes of a version whose last field is `field` of struct `type`. */
#define GMS__SIZE_UP_TO(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/* One versioned struct: its name, its initialiser, and the size of each
 * version (sizes[v] for v = 1..current; sizes[0] is unused). */
typedef struct gms_struct_versions {
    const char *name; /* "gms_runtime_options" */
    const char *init; /* "GMS_RUNTIME_OPTIONS_INIT" */
    uint32_t current;
    const size_t *sizes;
} gms_struct_versions;

extern const gms_struct_versions gms__runtime_options_versions;
extern const gms_struct_versions gms__context_desc_versions;
extern const gms_struct_versions gms__share_desc_versions;
extern const gms_struct_versions gms__dlpack_desc_versions;

/* Copies the caller's struct `given` (of any known version) over *out,
 * which holds the current version's defaults: only the bytes of given's
 * version are read. out's version then says the current one.
 * GMS_E_INVALID_ARG (naming fn) for version 0 or one above the current. */
int gms__struct_read(const gms_struct_versions *v, const char *fn, const void *given, void *out);

/* Writes the first sizes[version] bytes of `defaults` (the current
 * version's) to *out, and version as its version: a caller built against
 * an older header gets no byte past its struct. GMS_E_INVALID_ARG for a
 * NULL out or an unknown version. */
int gms__struct_init(const gms_struct_versions *v, const char *fn, void *out, uint32_t version,
                     const void *defaults);

#endif
