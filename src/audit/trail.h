/*
 * trail.h: reading an audit trail back: walk every record of a trail
 * directory in order, verifying the chain as it goes. The gms CLI (verify,
 * export, query, report) and the tests use it; it is not public API, and
 * not part of libgms: reader.c and chain.c build the gms_trail library.
 */
#ifndef GMS_AUDIT_TRAIL_H
#define GMS_AUDIT_TRAIL_H

#include "audit/format.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gms_trail_record {
    uint64_t seq, time_ns, handle, size, context_id;
    int result, op, level, language;
    char tenant[64], user[64], detail[GMS_AUDIT_TEXT];
    uint64_t segment, offset; /* where it lies */
} gms_trail_record;

enum {
    GMS_TRAIL_OK = 0,       /* every block verified (a torn tail may be noted) */
    GMS_TRAIL_TAMPERED = 1, /* the chain breaks: message says where and how */
    GMS_TRAIL_ERROR = 2     /* could not read, wrong key, not a trail */
};

typedef struct gms_trail_summary {
    int status;
    bool verified; /* MACs were checked (a key was given) */
    uint64_t segments, first_segment, last_segment;
    uint64_t records, checkpoints, first_seq, last_seq;
    uint64_t sealed_seq;  /* last record covered by a checkpoint */
    uint64_t unsealed;    /* records after the last checkpoint */
    uint64_t first_time_ns, last_time_ns;
    uint8_t last_checkpoint_mac[GMS_AUDIT_MAC];
    bool retention_gap;   /* the oldest kept segment follows deleted ones */
    uint64_t torn_bytes;  /* in the newest segment, after its last valid block */
    uint64_t acknowledged_torn; /* in older segments, noted by a restart */
    uint64_t broken_seq;  /* the first record where the chain breaks */
    uint64_t broken_segment, broken_offset;
    char message[1024];   /* why it is tampered or unreadable */
    char torn[512];       /* the torn tail, in words; "" when none */
} gms_trail_summary;

/* Return non-zero to stop the walk (status stays OK). */
typedef int (*gms_trail_fn)(void *user, const gms_trail_record *r);

/* Walks the trail in dir. With a key every block's MAC is checked and the
 * walk stops at the first broken one; without (key NULL) the structure and
 * sequence only. fn may be NULL. Returns the status (also in out). */
int gms__trail_read(const char *dir, const uint8_t *key, size_t keylen, gms_trail_fn fn,
                    void *user, gms_trail_summary *out);

/* Names for the stored enums: "alloc", "quota_refused", ...; NULL if none. */
const char *gms__trail_op_name(int op);
/* The op for a name (or a number); -1 if none. */
int gms__trail_op_parse(const char *name);

#endif
