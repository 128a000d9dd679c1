/*
 * reader.c: walks an audit trail and verifies it: every block's MAC
 * against the chain, sequence numbers without gaps, headers linking each
 * segment to the end of the one before, checkpoints linking to the
 * previous checkpoint. It stops at the first break and says, as precisely
 * as the evidence allows, whether a block was modified, deleted, inserted
 * or moved.
 *
 * A torn tail is told apart from tampering by where and what it is: only
 * the newest segment may end in a partial block or in zero-filled blocks
 * (what a write cut short by a crash or a power cut leaves); anywhere else,
 * or a whole non-zero block that fails its MAC, is tampering. Older
 * segments may carry a torn tail only if the next segment's header (itself
 * MAC'd) says exactly how many torn bytes it found there when the trail was
 * reopened.
 */
#include "audit/trail.h"
#include "gms.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

static const char *op_names[] = {
    NULL, "runtime_open", "runtime_close", "context_open", "context_close", "alloc", "free",
    "share", "acquire", "release", "transfer", "revoke", "quota_refused", "access_denied",
    "violation", "leak", "wipe", "config", "dropped", "seal", "unseal", "crypto_erase",
    "migrate", "device_lost"};
#define NOPS ((int)(sizeof op_names / sizeof op_names[0]))

const char *gms__trail_op_name(int op)
{
    return op > 0 && op < NOPS ? op_names[op] : NULL;
}

int gms__trail_op_parse(const char *name)
{
    for (int i = 1; i < NOPS; i++)
        if (strcmp(name, op_names[i]) == 0)
            return i;
    char *end;
    long v = strtol(name, &end, 10);
    if (*name && !*end && v > 0 && v < NOPS)
        return (int)v;
    return -1;
}

typedef struct seg_info {
    char path[4200];
    const char *name;
    uint64_t index, size;
    uint32_t name_day; /* the day its file name says */
    gms_audit_block header;
    bool header_ok;
    int load;      /* GMS_TRAIL_*: whether the file could be read */
    char why[200]; /* why not */
} seg_info;

static void say(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

static bool is_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* Buffered block reader over one segment file. */
typedef struct breader {
    int fd;
    gms_audit_block *buf;
    uint64_t first, count; /* blocks in buf */
} breader;

#define BR_BLOCKS 4096

static const gms_audit_block *br_get(breader *r, uint64_t i)
{
    if (i < r->first || i >= r->first + r->count) {
        ssize_t n = pread(r->fd, r->buf, BR_BLOCKS * GMS_AUDIT_BLOCK, (off_t)(i * GMS_AUDIT_BLOCK));
        if (n < GMS_AUDIT_BLOCK)
            return NULL;
        r->first = i;
        r->count = (uint64_t)n / GMS_AUDIT_BLOCK;
    }
    return &r->buf[i - r->first];
}

typedef struct walk {
    gms_trail_summary *s;
    const uint8_t *key;
    size_t keylen;
    gms_hmac hm;
    uint8_t chain[GMS_AUDIT_MAC], ckpt[GMS_AUDIT_MAC];
    uint64_t expect; /* next record seq */
    bool have_expect;
    gms_trail_fn fn;
    void *user;
    bool stopped;
    /* The oldest kept segment follows segments deleted by retention: a
     * record of the chain must say that retention deleted this one (the
     * last of them). */
    uint64_t retention_needed;
    bool retention_seen;
} walk;

static int tampered(walk *w, const seg_info *g, uint64_t p, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int tampered(walk *w, const seg_info *g, uint64_t p, uint64_t seq, const char *fmt, ...)
{
    char why[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    w->s->status = GMS_TRAIL_TAMPERED;
    w->s->broken_seq = seq;
    w->s->broken_segment = g->index;
    w->s->broken_offset = p * GMS_AUDIT_BLOCK;
    say(w->s->message, sizeof w->s->message, "%s, offset %llu (block %llu): %s", g->name,
        (unsigned long long)(p * GMS_AUDIT_BLOCK), (unsigned long long)p, why);
    return GMS_TRAIL_TAMPERED;
}

/* Says why block p broke the chain: the record's own sequence number,
 * compared with the one expected, tells a deletion or a move from a
 * change of content. */
static int diagnose(walk *w, const seg_info *g, breader *r, uint64_t p, uint64_t end,
                    const gms_audit_block *b)
{
    uint64_t e = w->expect;
    if (b->kind == GMS_AUDIT_KIND_CHECKPOINT)
        return tampered(w, g, p, e,
                        "the checkpoint after record seq %llu does not match its MAC: it was modified, or records before it were deleted, inserted or reordered",
                        (unsigned long long)(e - 1));
    if (b->kind != GMS_AUDIT_KIND_RECORD)
        return tampered(w, g, p, e,
                        "where record seq %llu should be, the block is not a record (kind 0x%08x): overwritten or inserted bytes",
                        (unsigned long long)e, b->kind);
    if (b->seq == e)
        return tampered(w, g, p, e,
                        "record seq %llu does not match its MAC: its content was modified (or it was replaced)",
                        (unsigned long long)e);
    if (b->seq > e) {
        uint64_t seq = b->seq;
        for (uint64_t q = p + 1; q < end && q < p + 4096; q++) {
            const gms_audit_block *c = br_get(r, q);
            if (c && c->kind == GMS_AUDIT_KIND_RECORD && c->seq == e)
                return tampered(w, g, p, e,
                                "record seq %llu stands where seq %llu should be; seq %llu appears later at offset %llu: records were reordered",
                                (unsigned long long)seq, (unsigned long long)e,
                                (unsigned long long)e, (unsigned long long)(q * GMS_AUDIT_BLOCK));
        }
        if (seq - e == 1)
            return tampered(w, g, p, e,
                            "record seq %llu stands where seq %llu should be: record seq %llu was deleted",
                            (unsigned long long)seq, (unsigned long long)e, (unsigned long long)e);
        return tampered(w, g, p, e,
                        "record seq %llu stands where seq %llu should be: records seq %llu to %llu were deleted",
                        (unsigned long long)seq, (unsigned long long)e, (unsigned long long)e,
                        (unsigned long long)(seq - 1));
    }
    return tampered(w, g, p, e,
                    "record seq %llu stands where seq %llu should be (after seq %llu): a record was inserted, or records were reordered",
                    (unsigned long long)b->seq, (unsigned long long)e, (unsigned long long)(e - 1));
}

static bool mac_ok(walk *w, const uint8_t *prev, const gms_audit_block *b)
{
    if (!w->key)
        return true;
    uint8_t m[GMS_AUDIT_MAC];
    gms__audit_block_mac(&w->hm, prev, b, m);
    return CRYPTO_memcmp(m, b->mac, GMS_AUDIT_MAC) == 0;
}

/* A record retention wrote before it deleted a segment: "retention:
 * deleted segment N ..." (no tenant, no user), size = N, handle = the
 * segment's day as its header said, context_id = the retention in days.
 * Notes the one the oldest kept segment needs; a deletion that breaks the
 * rule is tampering (returns non-zero). */
static int retention_record(walk *w, const seg_info *g, uint64_t p, const gms_audit_block *b)
{
    static const char prefix[] = "retention: deleted segment ";
    if (b->text[0] || b->text[1] || strncmp(b->text + 2, prefix, sizeof prefix - 1) != 0)
        return 0;
    uint32_t day = (uint32_t)b->handle, today = gms__audit_day(b->time_ns);
    if (b->handle > 99991231 || b->context_id > UINT32_MAX || /* unverified reads see anything */
        gms__audit_day_number(day) + (int64_t)b->context_id >= gms__audit_day_number(today))
        return tampered(w, g, p, b->seq,
                        "record seq %llu says retention deleted segment %llu of day %u on %u, but it was not older than %llu days",
                        (unsigned long long)b->seq, (unsigned long long)b->size, day, today,
                        (unsigned long long)b->context_id);
    if (b->size == w->retention_needed)
        w->retention_seen = true;
    return 0;
}

/* Verifies blocks 1..end of segment g (end: block count that is valid by
 * the next header; final: the whole file). */
static int walk_segment(walk *w, seg_info *g, uint64_t end_bytes, bool final)
{
    char why[200];
    uint64_t size;
    int fd = gms__audit_file_open(g->path, true, &size, why, sizeof why);
    if (fd < 0) {
        w->s->status = GMS_TRAIL_ERROR;
        say(w->s->message, sizeof w->s->message, "cannot read %s: %s", g->path, why);
        return GMS_TRAIL_ERROR;
    }
    breader r = {fd, malloc(BR_BLOCKS * GMS_AUDIT_BLOCK), UINT64_MAX, 0};
    if (!r.buf) {
        close(fd);
        w->s->status = GMS_TRAIL_ERROR;
        say(w->s->message, sizeof w->s->message, "out of memory");
        return GMS_TRAIL_ERROR;
    }
    int rc = GMS_TRAIL_OK;
    uint64_t nblocks = end_bytes / GMS_AUDIT_BLOCK;
    for (uint64_t p = 1; p < nblocks && !w->stopped; p++) {
        const gms_audit_block *b = br_get(&r, p);
        if (!b) {
            rc = tampered(w, g, p, w->expect, "the segment ends before its recorded length");
            break;
        }
        bool ok = (b->kind == GMS_AUDIT_KIND_RECORD || b->kind == GMS_AUDIT_KIND_CHECKPOINT) &&
                  mac_ok(w, w->chain, b);
        if (ok && b->kind == GMS_AUDIT_KIND_RECORD && b->seq != w->expect)
            ok = false; /* only a forger with the key gets here */
        if (ok && b->kind == GMS_AUDIT_KIND_CHECKPOINT &&
            (b->seq != w->expect - 1 || memcmp(b->text, w->ckpt, GMS_AUDIT_MAC) != 0))
            ok = false;
        if (!ok) {
            if (final) {
                /* Zero blocks from here to the end: a power cut's torn tail. */
                bool zeros = true;
                for (uint64_t q = p; q < nblocks && zeros; q++) {
                    const gms_audit_block *c = br_get(&r, q);
                    zeros = c && is_zero(c, sizeof *c);
                }
                if (zeros) {
                    uint64_t torn = g->size - p * GMS_AUDIT_BLOCK;
                    w->s->torn_bytes = torn;
                    say(w->s->torn, sizeof w->s->torn,
                        "%s ends with %llu zero-filled bytes after offset %llu (after record seq %llu): blocks allocated but never written when the writer stopped (crash or power cut); not tampering",
                        g->name, (unsigned long long)torn,
                        (unsigned long long)(p * GMS_AUDIT_BLOCK),
                        (unsigned long long)(w->expect - 1));
                    break;
                }
            }
            rc = diagnose(w, g, &r, p, nblocks, b);
            break;
        }
        memcpy(w->chain, b->mac, GMS_AUDIT_MAC);
        if (b->kind == GMS_AUDIT_KIND_CHECKPOINT) {
            memcpy(w->ckpt, b->mac, GMS_AUDIT_MAC);
            memcpy(w->s->last_checkpoint_mac, b->mac, GMS_AUDIT_MAC);
            w->s->checkpoints++;
            w->s->sealed_seq = b->seq;
            w->s->unsealed = 0;
            continue;
        }
        if (b->op == GMS_AUDIT_CONFIG && retention_record(w, g, p, b)) {
            rc = GMS_TRAIL_TAMPERED;
            break;
        }
        w->expect++;
        w->s->records++;
        w->s->unsealed++;
        if (!w->s->first_seq)
            w->s->first_seq = b->seq;
        w->s->last_seq = b->seq;
        if (!w->s->first_time_ns)
            w->s->first_time_ns = b->time_ns;
        w->s->last_time_ns = b->time_ns;
        if (w->fn) {
            gms_trail_record rec;
            rec.seq = b->seq;
            rec.time_ns = b->time_ns;
            rec.handle = b->handle;
            rec.size = b->size;
            rec.context_id = b->context_id;
            rec.result = b->result;
            rec.op = b->op;
            rec.level = b->level;
            rec.language = b->language;
            gms__audit_text_split(b, rec.tenant, rec.user, rec.detail);
            rec.segment = g->index;
            rec.offset = p * GMS_AUDIT_BLOCK;
            if (w->fn(w->user, &rec))
                w->stopped = true;
        }
    }
    free(r.buf);
    close(fd);
    return rc;
}

/* Reads what the walk needs of a segment before walking it: its size and
 * header. A file that is not a regular one (a FIFO would block the reader),
 * or larger than any segment, is refused here and reported at its turn. */
static void seg_load(const char *dir, const char *name, uint64_t index, seg_info *g)
{
    g->name = name;
    g->index = index;
    g->header_ok = false;
    g->load = GMS_TRAIL_OK;
    g->why[0] = 0;
    memset(&g->header, 0, sizeof g->header);
    snprintf(g->path, sizeof g->path, "%s/%s", dir, name);
    uint64_t ix;
    gms__audit_seg_parse(name, &ix, &g->name_day);
    char why[160];
    int fd = gms__audit_file_open(g->path, true, &g->size, why, sizeof why);
    if (fd < 0) {
        g->load = fd == -2 ? GMS_TRAIL_TAMPERED : GMS_TRAIL_ERROR;
        say(g->why, sizeof g->why, fd == -2 ? "%s: the segment was replaced" : "%s", why);
        return;
    }
    if (g->size > GMS_AUDIT_SEG_BYTES_MAX) {
        g->load = GMS_TRAIL_TAMPERED;
        say(g->why, sizeof g->why, "%llu bytes, larger than any segment gms writes (%llu)",
            (unsigned long long)g->size, (unsigned long long)GMS_AUDIT_SEG_BYTES_MAX);
    } else {
        g->header_ok = pread(fd, &g->header, sizeof g->header, 0) == (ssize_t)sizeof g->header;
    }
    close(fd);
}

static const char *day_text(uint32_t d, char buf[16])
{
    snprintf(buf, 16, "%04u-%02u-%02u", d / 10000 % 10000, d / 100 % 100, d % 100);
    return buf;
}

int gms__trail_read(const char *dir, const uint8_t *key, size_t keylen, gms_trail_fn fn,
                    void *user, gms_trail_summary *out)
{
    gms_trail_summary dummy;
    gms_trail_summary *s = out ? out : &dummy;
    memset(s, 0, sizeof *s);
    s->verified = key != NULL;
    char **names;
    uint64_t *ix;
    size_t n;
    if (gms__audit_seg_list(dir, &names, &ix, &n) != 0) {
        s->status = GMS_TRAIL_ERROR;
        say(s->message, sizeof s->message, "cannot read the trail directory %s: %s", dir,
            strerror(errno));
        return s->status;
    }
    if (n == 0) {
        gms__audit_seg_list_free(names, ix, n);
        s->status = GMS_TRAIL_ERROR;
        say(s->message, sizeof s->message, "%s holds no audit segments (gms-audit-*.seg)", dir);
        return s->status;
    }
    /* Two segments at a time: the one walked, and the next, whose header
     * says where the walked one ends. */
    seg_info *g = malloc(2 * sizeof *g);
    walk w;
    memset(&w, 0, sizeof w);
    w.s = s;
    w.key = key;
    w.keylen = keylen;
    w.fn = fn;
    w.user = user;
    uint8_t k[GMS_AUDIT_MAC];
    char d1[16], d2[16];
    uint64_t first_seq = 0;
    if (!g) {
        s->status = GMS_TRAIL_ERROR;
        say(s->message, sizeof s->message, "out of memory");
        goto done;
    }
    s->segments = n;
    s->first_segment = ix[0];
    s->last_segment = ix[n - 1];
    seg_load(dir, names[0], ix[0], &g[0]);
    if (key && g[0].header_ok && g[0].header.kind == GMS_AUDIT_KIND_HEADER) {
        uint8_t id[8];
        gms__audit_key_id(key, keylen, id);
        if (memcmp(g[0].header.text + 32, id, 8) != 0) {
            s->status = GMS_TRAIL_ERROR;
            say(s->message, sizeof s->message,
                "the key does not match this trail (key id differs): wrong --key-file?");
            goto done;
        }
    }
    for (size_t i = 0; i < n && !w.stopped; i++) {
        seg_info *cur = &g[i % 2], *next = &g[(i + 1) % 2];
        const gms_audit_block *h = &cur->header;
        /* The name is checked before anything is derived from it: the key
         * of segment N costs N - 1 steps. */
        if (ix[i] > GMS_AUDIT_SEG_INDEX_MAX) {
            tampered(&w, cur, 0, w.expect,
                     "segment index %llu is beyond any gms writes (at most %llu): the file was renamed or planted",
                     (unsigned long long)ix[i], (unsigned long long)GMS_AUDIT_SEG_INDEX_MAX);
            break;
        }
        if (i > 0 && ix[i] == ix[i - 1]) {
            tampered(&w, cur, 0, w.expect, "%s and %s both claim to be segment %llu",
                     names[i - 1], names[i], (unsigned long long)ix[i]);
            break;
        }
        if (i > 0 && ix[i] != ix[i - 1] + 1) {
            tampered(&w, cur, 0, w.expect,
                     "segment %llu follows segment %llu: %s %llu%s%.0llu %s missing (deleted)",
                     (unsigned long long)ix[i], (unsigned long long)ix[i - 1],
                     ix[i] - ix[i - 1] > 2 ? "segments" : "segment",
                     (unsigned long long)(ix[i - 1] + 1), ix[i] - ix[i - 1] > 2 ? " to " : "",
                     ix[i] - ix[i - 1] > 2 ? (unsigned long long)(ix[i] - 1) : 0ull,
                     ix[i] - ix[i - 1] > 2 ? "are" : "is");
            break;
        }
        if (cur->load == GMS_TRAIL_TAMPERED) {
            tampered(&w, cur, 0, w.expect, "%s", cur->why);
            break;
        }
        if (cur->load != GMS_TRAIL_OK) {
            s->status = GMS_TRAIL_ERROR;
            say(s->message, sizeof s->message, "cannot read %s: %s", cur->path, cur->why);
            break;
        }
        if (key && i == 0)
            gms__audit_segment_key(key, keylen, ix[0], k);
        else if (key)
            gms__audit_key_evolve(k);
        if (key) {
            gms__hmac_wipe(&w.hm);
            gms__hmac_init(&w.hm, k, sizeof k);
        }
        if (!cur->header_ok || h->kind != GMS_AUDIT_KIND_HEADER || h->handle != cur->index ||
            !mac_ok(&w, (const uint8_t *)h->text, h)) {
            tampered(&w, cur, 0, w.expect,
                     "the segment header does not verify: the header was modified, or the file was replaced or renamed");
            break;
        }
        if (h->result != GMS_AUDIT_VERSION) {
            s->status = GMS_TRAIL_ERROR;
            say(s->message, sizeof s->message, "%s: format version %d, this gms reads %d",
                cur->name, h->result, GMS_AUDIT_VERSION);
            break;
        }
        /* The day in the name is what a person (and an old gms's
         * retention) goes by; the header's is the authenticated one. */
        if (cur->name_day != h->aux) {
            tampered(&w, cur, 0, w.expect,
                     "the file name says %s but the segment's authenticated header says %s: the file was renamed",
                     day_text(cur->name_day, d1), day_text(h->aux, d2));
            break;
        }
        if (i == 0) {
            first_seq = h->seq;
            if (ix[0] > 1 && h->context_id == ix[0] - 1) {
                s->retention_gap = true; /* older segments deleted by retention */
                w.retention_needed = ix[0] - 1;
            } else if (ix[0] > 1 || h->context_id != 0 || !is_zero(h->text, GMS_AUDIT_MAC) ||
                       h->seq != 1) {
                tampered(&w, cur, 0, 1, "the first segment does not start the trail");
                break;
            }
            w.expect = h->seq;
        } else if (h->context_id != ix[i - 1] ||
                   memcmp(h->text, w.chain, GMS_AUDIT_MAC) != 0 || h->seq != w.expect) {
            tampered(&w, cur, 0, w.expect,
                     "the header does not link to the end of segment %llu: records at the end of segment %llu were deleted or changed",
                     (unsigned long long)ix[i - 1], (unsigned long long)ix[i - 1]);
            break;
        }
        memcpy(w.chain, h->mac, GMS_AUDIT_MAC);
        memcpy(w.ckpt, h->mac, GMS_AUDIT_MAC);
        bool final = i + 1 == n, bounded = false;
        uint64_t end = cur->size - cur->size % GMS_AUDIT_BLOCK, torn = 0;
        if (!final) {
            /* The next header (checked when its turn comes: a forged one
             * fails there) says where this segment ended and how many torn
             * bytes followed. Blocks are walked first, so a deleted or
             * inserted record is named before the length is compared. An
             * unreadable next segment is reported at its turn. */
            seg_load(dir, names[i + 1], ix[i + 1], next);
            const gms_audit_block *nh = &next->header;
            bounded = next->header_ok && nh->kind == GMS_AUDIT_KIND_HEADER;
            if (bounded) {
                memcpy(&torn, nh->text + 40, sizeof torn);
                if (nh->size < end)
                    end = nh->size - nh->size % GMS_AUDIT_BLOCK;
            }
        }
        if (walk_segment(&w, cur, end, final))
            break;
        if (bounded) {
            uint64_t want = next->header.size;
            if (want > cur->size) {
                tampered(&w, cur, cur->size / GMS_AUDIT_BLOCK, w.expect,
                         "the segment was %llu bytes when closed and is %llu now: records at its end were deleted",
                         (unsigned long long)want, (unsigned long long)cur->size);
                break;
            }
            if (want % GMS_AUDIT_BLOCK || want + torn != cur->size) {
                tampered(&w, cur, want / GMS_AUDIT_BLOCK, w.expect,
                         "%llu bytes follow the segment's end (%llu) but %llu were recorded as torn: bytes were appended after it was closed",
                         (unsigned long long)(cur->size - want), (unsigned long long)want,
                         (unsigned long long)torn);
                break;
            }
            s->acknowledged_torn += torn;
        }
        if (final && cur->size % GMS_AUDIT_BLOCK && !s->torn_bytes) {
            s->torn_bytes = cur->size % GMS_AUDIT_BLOCK;
            say(s->torn, sizeof s->torn,
                "%s ends with a partial block of %llu bytes after record seq %llu: a write cut short (crash); the records before it are intact; not tampering",
                cur->name, (unsigned long long)s->torn_bytes, (unsigned long long)(w.expect - 1));
        }
    }
    /* Only retention deletes the oldest segments, and it says so in the
     * chain before it does: a start that no record explains was cut by
     * hand. (A walk stopped early by fn cannot tell.) */
    if (s->status == GMS_TRAIL_OK && !w.stopped && w.retention_needed && !w.retention_seen) {
        g[0].name = names[0];
        g[0].index = ix[0];
        tampered(&w, &g[0], 0, first_seq > 1 ? first_seq - 1 : 1,
                 "%s 1%s%.0llu %s missing, and no record in the trail says retention deleted segment %llu: %s deleted by hand",
                 ix[0] > 2 ? "segments" : "segment", ix[0] > 2 ? " to " : "",
                 ix[0] > 2 ? (unsigned long long)(ix[0] - 1) : 0ull, ix[0] > 2 ? "are" : "is",
                 (unsigned long long)(ix[0] - 1), ix[0] > 2 ? "they were" : "it was");
    }
    if (key)
        OPENSSL_cleanse(k, sizeof k);
done:
    gms__hmac_wipe(&w.hm);
    free(g);
    gms__audit_seg_list_free(names, ix, n);
    return s->status;
}
