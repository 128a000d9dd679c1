/*
 * audit.h: how the core hands records to the audit trail.
 *
 * The core calls gms__audit_emit on every operation (docs/audit.md)
 * from any thread, possibly holding a pool lock; the call copies a
 * fixed-size record into a ring and returns: formatting, chaining (HMAC-
 * SHA-256) and writing happen on the trail's writer thread, which takes no
 * gms lock. In strict mode a full ring makes the caller wait for space; in
 * lossy mode the record is dropped and counted.
 */
#ifndef GMS_AUDIT_INTERNAL_H
#define GMS_AUDIT_INTERNAL_H

#include "gms.h"

typedef struct gms_audit gms_audit;

typedef struct gms_audit_event {
    gms_audit_op op;
    int result;          /* GMS_OK or the GMS_E_* code returned */
    uint64_t handle;     /* 0 when none */
    uint64_t size;       /* bytes, or the op's count */
    uint64_t context_id; /* 0 when none */
    const char *tenant;  /* NULL when none */
    const char *user;    /* NULL when none */
    int level;           /* gms_level, -1 when none */
    int language;        /* gms_language, -1 when none */
    const char *detail;  /* evidence or message; NULL when none; truncated */
} gms_audit_event;

/* Opens the trail the options (or GMS_AUDIT_DIR / GMS_AUDIT_KEY_FILE) ask
 * for; *out is NULL when none is asked for. */
int gms__audit_open(gms_audit **out, const gms_runtime_options *opts);
/* Writes and seals what is queued, stops the writer, frees. NULL is fine. */
void gms__audit_close(gms_audit *a);
void gms__audit_emit(gms_audit *a, const gms_audit_event *e);
int gms__audit_flush(gms_audit *a);

#endif
