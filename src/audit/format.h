/*
 * format.h: the on-disk form of the audit trail, shared by the writer (the
 * runtime) and the readers (the gms CLI, tests). docs/audit.md describes it
 * for people; this is the definition.
 *
 * A trail is a directory of segment files, gms-audit-<index>-<YYYYMMDD>.seg.
 * Each file is an array of 256-byte blocks: a header, then records and
 * checkpoints. Fixed-size blocks make a torn write recognisable (a file
 * length that is not a multiple of 256) and let a reader seek by number.
 *
 * Every block ends with a MAC: HMAC-SHA-256(K_seg, previous MAC || the
 * block's first 224 bytes). The header's "previous MAC" is the last MAC of
 * the segment before it (zeros for the first segment), so the chain runs
 * unbroken through all segments, and deleting, inserting, reordering or
 * changing any block breaks it at that block. K_seg evolves one way per
 * segment (K_{n+1} = HMAC(K_n, "evolve")) and the writer forgets the old
 * key, so a process compromised later cannot re-seal earlier segments.
 *
 * Layout is the host's (little-endian on every platform gms supports).
 */
#ifndef GMS_AUDIT_FORMAT_H
#define GMS_AUDIT_FORMAT_H

#ifndef OPENSSL_SUPPRESS_DEPRECATED
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX: the fast way to reuse HMAC pads */
#endif
#include <openssl/sha.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GMS_AUDIT_BLOCK 256
#define GMS_AUDIT_BODY 224 /* what the MAC covers, with the previous MAC */
#define GMS_AUDIT_MAC 32
#define GMS_AUDIT_TEXT 168
#define GMS_AUDIT_VERSION 1

/* Block kinds: distinct magic words, so neither zeros nor random bytes
 * pass for a block. */
#define GMS_AUDIT_KIND_HEADER 0x48534d47u /* "GMSH" */
#define GMS_AUDIT_KIND_RECORD 0x52534d47u /* "GMSR" */
#define GMS_AUDIT_KIND_CHECKPOINT 0x43534d47u /* "GMSC" */

/* One block. For a record the fields mean what they say; text holds
 * "tenant\0user\0detail\0", each truncated to fit (tenant and user are at
 * most 63 bytes, the detail gets the rest: at least 40 bytes).
 *
 * Header: seq = first record seq of the segment, time_ns = creation,
 *   handle = segment index (from 1), size = valid bytes of the previous
 *   segment when this one was opened, context_id = previous segment index
 *   (0 for none), result = format version, aux = day (YYYYMMDD, UTC),
 *   text[0..32) = the previous segment's last MAC (the chain link),
 *   text[32..40) = key id, text[40..48) = torn bytes found after the
 *   previous segment's valid end at reopen, text[48..) = a human label.
 * Checkpoint: seq = last record seq sealed, time_ns = when, handle =
 *   records in this segment so far, size = bytes of the segment up to and
 *   including this checkpoint, context_id = records dropped (lossy mode) so
 *   far in this run, result = reason (GMS_AUDIT_SEAL_*), text[0..32) = MAC
 *   of the previous checkpoint of the segment (or of its header). */
typedef struct gms_audit_block {
    uint64_t seq;
    uint64_t time_ns; /* CLOCK_REALTIME, ns since the epoch */
    uint64_t handle;
    uint64_t size;
    uint64_t context_id;
    int32_t result;
    uint16_t op;
    int8_t level;
    int8_t language;
    uint32_t kind;
    uint32_t aux;
    char text[GMS_AUDIT_TEXT];
    uint8_t mac[GMS_AUDIT_MAC];
} gms_audit_block;

_Static_assert(sizeof(gms_audit_block) == GMS_AUDIT_BLOCK, "audit block is 256 bytes");

enum { GMS_AUDIT_SEAL_FLUSH = 1, GMS_AUDIT_SEAL_INTERVAL = 2, GMS_AUDIT_SEAL_ROTATE = 3,
       GMS_AUDIT_SEAL_CLOSE = 4, GMS_AUDIT_SEAL_RETENTION = 5 };

/* HMAC-SHA-256 with the pads hashed once: a MAC of one block then costs
 * six SHA-256 compressions and no allocation (~0.2 us with SHA-NI). */
typedef struct gms_hmac {
    SHA256_CTX inner, outer;
} gms_hmac;

void gms__hmac_init(gms_hmac *h, const uint8_t *key, size_t len);
void gms__hmac_wipe(gms_hmac *h);
/* HMAC(prev || data). prev may be NULL (nothing before data). */
void gms__hmac_mac(const gms_hmac *h, const uint8_t *prev, const void *data, size_t len,
                   uint8_t out[GMS_AUDIT_MAC]);
/* The MAC of a block chained to prev. */
void gms__audit_block_mac(const gms_hmac *h, const uint8_t prev[GMS_AUDIT_MAC],
                          const gms_audit_block *b, uint8_t out[GMS_AUDIT_MAC]);

/* The key of segment index (from 1), derived from the trail's key: index
 * - 1 evolutions. -1 for an index past GMS_AUDIT_SEG_INDEX_MAX. */
int gms__audit_segment_key(const uint8_t *key, size_t len, uint64_t index,
                           uint8_t out[GMS_AUDIT_MAC]);
/* One step of the one-way evolution: K_{n+1} from K_n, in place. */
void gms__audit_key_evolve(uint8_t k[GMS_AUDIT_MAC]);
/* 8 bytes naming the key without revealing it, kept in every header so a
 * wrong key is told apart from tampering. */
void gms__audit_key_id(const uint8_t *key, size_t len, uint8_t out[8]);

#define GMS_AUDIT_KEY_MIN 16
#define GMS_AUDIT_KEY_MAX 1024
/* Reads a key file (raw bytes; trailing whitespace stripped; a regular
 * file, or a link to one). Returns 0, or -1 with a message in err. */
int gms__audit_key_load(const char *path, uint8_t *key, size_t *len, char *err, size_t errsize);

/* What readers accept, so that no file name and no file makes them loop or
 * read for ever. A segment's key is its index - 1 evolutions from the
 * trail's key (0.3 us each): the largest index gms writes or reads costs
 * about 5 s. No segment is larger than audit_segment_bytes, at most
 * GMS_AUDIT_SEG_BYTES_MAX. */
#define GMS_AUDIT_SEG_INDEX_MAX (1ull << 24)
#define GMS_AUDIT_SEG_BYTES_MAX (1ull << 30)

/* Opens a file of the trail, or the key file, for reading. It never blocks
 * (a FIFO with no writer would block the open or the read for ever) and
 * refuses all but a regular file; with nofollow, a symbolic link too (gms
 * never makes one in a trail). Returns the descriptor and the file's size;
 * -1 when it cannot be opened (errno), -2 when it is not a regular file;
 * err says why: "a FIFO, not a regular file", or strerror. */
int gms__audit_file_open(const char *path, bool nofollow, uint64_t *size, char *err,
                         size_t errsize);

/* Segment file names. */
#define GMS_AUDIT_SEG_PREFIX "gms-audit-"
#define GMS_AUDIT_SEG_SUFFIX ".seg"
/* Parses a segment file name; 0 when it is one. */
int gms__audit_seg_parse(const char *name, uint64_t *index, uint32_t *day);
/* YYYYMMDD of a time in ns since the epoch, UTC; and days since the epoch. */
uint32_t gms__audit_day(uint64_t time_ns);
int64_t gms__audit_day_number(uint32_t yyyymmdd);

/* Lists a directory's segments sorted by index: *names is an array of n
 * malloc'd names (free with gms__audit_seg_list_free). -1 on error. */
int gms__audit_seg_list(const char *dir, char ***names, uint64_t **indices, size_t *n);
void gms__audit_seg_list_free(char **names, uint64_t *indices, size_t n);

/* Splits a record's text into its three strings (copied, NUL-terminated). */
void gms__audit_text_split(const gms_audit_block *b, char tenant[64], char user[64],
                           char detail[GMS_AUDIT_TEXT]);

/* Test hooks, set through gms/testing.h (audit.c). Added to the trail's
 * clock (records and segment days), so tests can write segments dated in
 * the past. */
extern int64_t _Atomic gms__audit_clock_skew_ns;
/* Ring slots per shard (a power of two), read when a trail opens; 0: the
 * default. */
extern uint32_t gms__audit_ring_slots;

#endif
