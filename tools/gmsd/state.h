/*
 * state.h: gmsd's accounting kept in a file (docs/broker.md, "Restarts"),
 * so that a gmsd started after another stopped or died knows what its
 * clients still hold: each connection (a session), lease, share and hold
 * is one fixed-size record of a table the file maps. A record is written
 * whole before its kind is set, and its kind is cleared first when it
 * goes, so a gmsd killed at any point leaves only whole records; the page
 * cache keeps them when the process dies, and a file of another boot is
 * started afresh (its clients are gone with it).
 */
#ifndef GMSD_STATE_H
#define GMSD_STATE_H

#include <stddef.h>
#include <stdint.h>

enum {
    GMSD_REC_FREE = 0,
    GMSD_REC_SESSION = 1, /* a connection: its process and tenant */
    GMSD_REC_LEASE = 2,
    GMSD_REC_SHARE = 3,
    GMSD_REC_HOLD = 4
};

typedef struct gmsd_rec {
    uint32_t kind;     /* GMSD_REC_*: set last, cleared first */
    uint32_t flags;    /* share: GMSD_SHARE_*; hold: writer */
    uint64_t id;       /* the session's, lease's, share's or hold's id */
    uint64_t session;  /* lease, hold: its connection's session; share: its owner's */
    uint64_t share;    /* hold: its share's id; share: the lease whose memory
                          it is (a mutable share of CUDA memory), or 0 */
    uint64_t bytes;    /* lease, share: the memfd's bytes */
    uint64_t req, off; /* share: the buffer's bytes and offset in the memfd */
    uint64_t start;    /* session: its process's start time (/proc/PID/stat);
                          share: its memfd's inode (0 on CUDA memory), the one
                          file its owner may hand back after a restart */
    int32_t pid;       /* session: its process */
    uint32_t uid;      /* session */
    char tenant[64];   /* session: its tenant; share: the tenant charged */
} gmsd_rec;

enum { GMSD_SHARE_IMMUTABLE = 1, GMSD_SHARE_REVOKED = 2 };

/* Opens (creating it when missing) and locks the file at path: a file of
 * this boot keeps its records, any other is emptied. 0, or -1 with err
 * (err_len bytes) saying why (another gmsd holds the lock, ...). */
int gmsd_state_open(const char *path, char *err, size_t err_len);
/* The number of slots, and slot i (read-only: kind 0 when free). */
unsigned gmsd_state_slots(void);
const gmsd_rec *gmsd_state_at(unsigned i);
/* Writes r into a free slot, growing the file when none is left; the
 * slot, or -1 with errno set when the file cannot grow. */
long gmsd_state_put(const gmsd_rec *r);
/* Sets slot i's flags (one store: a share revoked). */
void gmsd_state_set_flags(unsigned i, uint32_t flags);
/* Frees slot i. */
void gmsd_state_clear(unsigned i);
void gmsd_state_close(void);

#endif
