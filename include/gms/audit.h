/*
 * gms/audit.h: what an audit record says, for readers of the trail (the gms
 * CLI, bindings, log pipelines). Included by gms.h.
 */
#ifndef GMS_AUDIT_H
#define GMS_AUDIT_H

/* The operation a record describes. Values are stable: they are stored. */
typedef enum gms_audit_op {
    GMS_AUDIT_RUNTIME_OPEN = 1,
    GMS_AUDIT_RUNTIME_CLOSE = 2,
    GMS_AUDIT_CONTEXT_OPEN = 3,
    GMS_AUDIT_CONTEXT_CLOSE = 4,
    GMS_AUDIT_ALLOC = 5,          /* result != 0: a failed allocation */
    GMS_AUDIT_FREE = 6,
    GMS_AUDIT_SHARE = 7,
    GMS_AUDIT_ACQUIRE = 8,
    GMS_AUDIT_RELEASE = 9,
    GMS_AUDIT_TRANSFER = 10,
    GMS_AUDIT_REVOKE = 11,
    GMS_AUDIT_QUOTA_REFUSED = 12,
    GMS_AUDIT_ACCESS_DENIED = 13, /* another context's or tenant's buffer */
    GMS_AUDIT_VIOLATION = 14,     /* stale/forged handle, double free,
                                     corruption; detail holds the evidence */
    GMS_AUDIT_LEAK = 15,          /* a block reclaimed at context close */
    GMS_AUDIT_WIPE = 16,
    GMS_AUDIT_CONFIG = 17,        /* a quota or option changed */
    GMS_AUDIT_DROPPED = 18,       /* lossy mode: size = records dropped */
    GMS_AUDIT_SEAL = 19,          /* gms_seal (docs/sealed.md) */
    GMS_AUDIT_UNSEAL = 20,        /* gms_unseal; a tag that fails is a VIOLATION */
    GMS_AUDIT_CRYPTO_ERASE = 21,  /* a sealed buffer's data key destroyed at its free */
    GMS_AUDIT_MIGRATE = 22,       /* gms_pool_migrate (docs/migration.md) */
    GMS_AUDIT_DEVICE_LOST = 23    /* a device declared lost; detail: the driver's words */
} gms_audit_op;

#endif
