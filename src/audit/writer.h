/*
 * writer.h: the trail's state, shared by the record rings (audit.c) and the
 * writer thread (writer.c). Nothing outside src/audit sees it.
 *
 * Callers append to one of GMS_AUDIT_SHARDS bounded multi-producer rings
 * (Vyukov's sequence-per-slot queue): a thread always uses the same shard,
 * so its records stay in order, and threads spread over the shards, so
 * there is no lock and little cache-line sharing between them. The single
 * writer thread drains the shards, numbers the records, chains their MACs
 * and writes whole blocks; it takes no gms lock, so a caller that waits
 * for ring space while holding a pool lock cannot deadlock it.
 */
#ifndef GMS_AUDIT_WRITER_H
#define GMS_AUDIT_WRITER_H

#include "audit/audit.h"
#include "audit/format.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define GMS_AUDIT_SHARDS 8
#define GMS_AUDIT_SLOTS_DEFAULT 2048 /* per shard: 512 KiB, 4 MiB in all */

/* What retention knows of the segments on disk, oldest first: consecutive
 * segments of one day share a run. The day is the one the segment's MAC'd
 * header says (read at open with the trail's key, or known from making the
 * segment), never the file name's; 0 when it could not be authenticated:
 * such a segment is never deleted, nor any after it. */
typedef struct gms_audit_seg_run {
    uint64_t first, last;
    uint32_t day;
} gms_audit_seg_run;

/* A ring slot: a record as the caller made it, without seq and MAC. */
typedef struct gms_audit_slot {
    uint64_t _Atomic turn; /* pos + 1: filled; pos + slots: free for the next lap */
    uint64_t time_ns;
    uint64_t handle;
    uint64_t size;
    uint64_t context_id;
    int32_t result;
    uint16_t op;
    int8_t level;
    int8_t language;
    char text[GMS_AUDIT_TEXT];
} gms_audit_slot;

typedef struct gms_audit_shard {
    _Alignas(64) uint64_t _Atomic tail; /* producers claim here */
    _Alignas(64) uint64_t head;         /* the writer's; no one else reads it */
    uint64_t _Atomic dropped;           /* lossy mode: records not appended */
    gms_audit_slot *slots;
} gms_audit_shard;

struct gms_audit {
    gms_audit_shard shards[GMS_AUDIT_SHARDS];
    uint64_t mask; /* slots per shard - 1 */
    bool lossy;

    /* Control: callers of flush and close talk to the writer here. */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* the writer waits here when idle */
    pthread_cond_t done; /* flushers wait here */
    uint64_t flush_req, flush_done;
    bool stop, running;
    int failed; /* a write failed: the trail stopped; GMS_E_BACKEND */
    char failure[256];
    uint64_t _Atomic waiting; /* strict mode: callers waiting for space */
    pthread_t thread;

    /* The writer's own state (and the opener's, before it starts). */
    char *dir;
    int lock_fd, seg_fd;
    uint64_t seg_index, seg_bytes, seg_records, seg_max;
    uint64_t day_end_ns; /* rotate when a record's time reaches this */
    uint32_t retention_days;
    gms_audit_seg_run *runs;
    size_t nruns, runs_cap;
    bool sweeping; /* a rotation inside a sweep does not start another */
    uint8_t seg_key[GMS_AUDIT_MAC];
    gms_hmac hmac;
    uint8_t key_id[8];
    uint8_t last_mac[GMS_AUDIT_MAC], ckpt_mac[GMS_AUDIT_MAC];
    uint64_t next_seq, dropped_total, unsealed, last_seal_ns, lost;
    bool last_is_seal;
    gms_audit_block *out;
    size_t nout, outcap;
    gms_log_fn log;
    void *log_user;
};

/* The trail's clock: coarse realtime (a few ns, no system call) plus the
 * test skew. */
uint64_t gms__audit_now(void);

/* writer.c */
/* Finds where the trail in a->dir left off (verifying its last block) and
 * opens the next segment. Called before the writer starts. */
int gms__audit_writer_prepare(gms_audit *a, const uint8_t *key, size_t len);
void *gms__audit_writer_main(void *arg);
/* Drops the writer's files after a failed start. */
void gms__audit_writer_release(gms_audit *a);

#endif
