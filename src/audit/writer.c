/*
 * writer.c: the audit writer thread and the segment files it keeps.
 *
 * The writer drains the rings, gives each record the next sequence number,
 * chains its MAC to the one before and appends whole 256-byte blocks to the
 * current segment with one write() per batch. It seals (writes a
 * checkpoint block and fdatasync()s) on every gms_audit_flush, once a
 * second while records arrive, when a segment ends and at close. Segments
 * rotate by size and at midnight UTC; retention deletes whole segments,
 * oldest first, and says so in the trail.
 *
 * Crash safety: a new segment's header is written to a temporary file,
 * synced and renamed into place, so every segment file starts with a whole
 * header. Blocks are only ever appended, so a crash can leave at most a
 * partial last block (or, after a power cut, zero-filled blocks) at the end
 * of the newest segment. The next open verifies the last whole block
 * against its predecessor, and the new segment's header records how many
 * valid bytes the old one has and how many torn bytes follow them: the
 * verifier accepts exactly those torn bytes and no others.
 */
#include "audit/writer.h"
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define NS_PER_DAY (86400ull * 1000000000ull)
#define SEAL_INTERVAL_NS 1000000000ull

static void wlog(gms_audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wlog(gms_audit *a, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (a->log)
        a->log(a->log_user, GMS_LOG_ERROR, msg);
    else
        fprintf(stderr, "%s\n", msg);
}

static int mkdirs(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n >= sizeof path)
        return ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return errno;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return errno;
    return 0;
}

static void seg_path(const gms_audit *a, uint64_t index, uint32_t day, char *out, size_t size)
{
    snprintf(out, size, "%s/" GMS_AUDIT_SEG_PREFIX "%08llu-%08u" GMS_AUDIT_SEG_SUFFIX, a->dir,
             (unsigned long long)index, day);
}

static int read_block(int fd, uint64_t i, gms_audit_block *b)
{
    ssize_t r = pread(fd, b, sizeof *b, (off_t)(i * GMS_AUDIT_BLOCK));
    return r == (ssize_t)sizeof *b ? 0 : -1;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Notes segment index, of day, for retention (indices only grow). */
static int run_add(gms_audit *a, uint64_t index, uint32_t day)
{
    gms_audit_seg_run *r = a->nruns ? &a->runs[a->nruns - 1] : NULL;
    if (r && r->last + 1 == index && r->day == day && day) {
        r->last = index;
        return 0;
    }
    if (a->nruns == a->runs_cap) {
        size_t cap = a->runs_cap ? 2 * a->runs_cap : 16;
        gms_audit_seg_run *v = realloc(a->runs, cap * sizeof *v);
        if (!v)
            return -1;
        a->runs = v;
        a->runs_cap = cap;
    }
    a->runs[a->nruns++] = (gms_audit_seg_run){index, index, day};
    return 0;
}

/* Writes a new segment's header through a temporary file and opens the
 * segment for appending. The chain continues from a->last_mac. */
static int segment_create(gms_audit *a, uint64_t index, uint64_t prev_index, uint64_t prev_valid,
                          uint64_t torn, char *err, size_t errsize)
{
    uint64_t now = gms__audit_now();
    uint32_t day = gms__audit_day(now);
    gms_audit_block h;
    memset(&h, 0, sizeof h);
    h.seq = a->next_seq;
    h.time_ns = now;
    h.handle = index;
    h.size = prev_valid;
    h.context_id = prev_index;
    h.result = GMS_AUDIT_VERSION;
    h.kind = GMS_AUDIT_KIND_HEADER;
    h.aux = day;
    h.level = h.language = -1;
    memcpy(h.text, a->last_mac, GMS_AUDIT_MAC);
    memcpy(h.text + 32, a->key_id, 8);
    memcpy(h.text + 40, &torn, 8);
    snprintf(h.text + 48, GMS_AUDIT_TEXT - 48, "gms audit trail, segment %llu",
             (unsigned long long)index);
    gms__audit_block_mac(&a->hmac, a->last_mac, &h, h.mac);

    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s/.gms-audit-new", a->dir);
    seg_path(a, index, day, path, sizeof path);
    /* A new file, never one reached through a link planted under this
     * name (O_EXCL): what a crash left there goes first. */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errsize, "audit trail: cannot create %.400s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write(fd, &h, sizeof h) != (ssize_t)sizeof h || fdatasync(fd) != 0 ||
        rename(tmp, path) != 0) {
        snprintf(err, errsize, "audit trail: cannot write segment %.400s: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    fsync_dir(a->dir);
    if (run_add(a, index, day) != 0) {
        snprintf(err, errsize, "audit trail: out of host memory");
        close(fd);
        return -1;
    }
    a->seg_fd = fd;
    a->seg_index = index;
    a->seg_bytes = GMS_AUDIT_BLOCK;
    a->seg_records = 0;
    a->day_end_ns = (now / NS_PER_DAY + 1) * NS_PER_DAY;
    memcpy(a->last_mac, h.mac, GMS_AUDIT_MAC);
    memcpy(a->ckpt_mac, h.mac, GMS_AUDIT_MAC);
    a->last_is_seal = true; /* nothing to seal yet */
    return 0;
}

/* The day segment (fd, index) was made, from its header authenticated with
 * the segment's key hm; 0 when the header does not verify. */
static uint32_t header_day(gms_audit *a, int fd, uint64_t index, const gms_hmac *hm,
                           gms_audit_block *h)
{
    uint8_t mac[GMS_AUDIT_MAC];
    if (read_block(fd, 0, h) != 0 || h->kind != GMS_AUDIT_KIND_HEADER || h->handle != index ||
        memcmp(h->text + 32, a->key_id, 8) != 0)
        return 0;
    gms__audit_block_mac(hm, (const uint8_t *)h->text, h, mac);
    return CRYPTO_memcmp(mac, h->mac, GMS_AUDIT_MAC) == 0 ? h->aux : 0;
}

/* Reads where the newest segment ends: its last whole block must verify
 * against the block before it (or be the header). Trailing partial or
 * zero-filled blocks are a torn tail. */
static int resume(gms_audit *a, int fd, const char *path, uint64_t size, const gms_hmac *hm,
                  const gms_audit_block *h, uint64_t *valid, uint64_t *torn)
{
    gms_audit_block b, prev;
    uint8_t mac[GMS_AUDIT_MAC];
    /* Back over the zero-filled tail, a chunk at a time (a segment is at
     * most GMS_AUDIT_SEG_BYTES_MAX). */
    static const uint8_t zeros[GMS_AUDIT_BLOCK];
    uint8_t chunk[64 * GMS_AUDIT_BLOCK];
    uint64_t p = size / GMS_AUDIT_BLOCK - 1; /* the last whole block */
    while (p > 0) {
        uint64_t from = p >= 64 ? p - 63 : 1, cnt = p - from + 1;
        if (pread(fd, chunk, cnt * GMS_AUDIT_BLOCK, (off_t)(from * GMS_AUDIT_BLOCK)) !=
            (ssize_t)(cnt * GMS_AUDIT_BLOCK))
            return gms__fail(GMS_E_BACKEND, "audit trail: cannot read %s: %s", path,
                             strerror(errno));
        uint64_t q = cnt;
        while (q > 0 && memcmp(chunk + (q - 1) * GMS_AUDIT_BLOCK, zeros, GMS_AUDIT_BLOCK) == 0)
            q--;
        p = from + q - 1;
        if (q > 0)
            break;
    }
    if (p == 0) {
        memcpy(a->last_mac, h->mac, GMS_AUDIT_MAC);
        a->next_seq = h->seq;
    } else if (read_block(fd, p - 1, &prev) != 0 || read_block(fd, p, &b) != 0) {
        return gms__fail(GMS_E_BACKEND, "audit trail: cannot read %s: %s", path, strerror(errno));
    } else {
        gms__audit_block_mac(hm, prev.mac, &b, mac);
        if (CRYPTO_memcmp(mac, b.mac, GMS_AUDIT_MAC) != 0 ||
            (b.kind != GMS_AUDIT_KIND_RECORD && b.kind != GMS_AUDIT_KIND_CHECKPOINT))
            return gms__fail(GMS_E_CORRUPTION,
                             "audit trail: the last block of %s (offset %llu) does not verify: the trail was changed; run gms audit verify on %s",
                             path, (unsigned long long)(p * GMS_AUDIT_BLOCK), a->dir);
        memcpy(a->last_mac, b.mac, GMS_AUDIT_MAC);
        a->next_seq = b.seq + 1;
    }
    *valid = (p + 1) * GMS_AUDIT_BLOCK;
    *torn = size - *valid;
    return GMS_OK;
}

/* Reads the segments already in the directory: every header is
 * authenticated (the trail's key is at hand only now), so that retention
 * goes by the days they say; the newest is resumed. Neither a file name
 * nor a file type is trusted: a file that is not a regular one is never
 * read (a FIFO would block), an index past the limit is never derived. */
static int scan(gms_audit *a, const uint8_t *key, size_t len, char **names, const uint64_t *ix,
                size_t n, uint64_t *valid, uint64_t *torn, uint8_t k[GMS_AUDIT_MAC])
{
    if (ix[n - 1] > GMS_AUDIT_SEG_INDEX_MAX)
        return gms__fail(GMS_E_CORRUPTION,
                         "audit trail: %s/%s has index %llu, beyond any gms writes (at most %llu); run gms audit verify on %s",
                         a->dir, names[n - 1], (unsigned long long)ix[n - 1],
                         (unsigned long long)GMS_AUDIT_SEG_INDEX_MAX, a->dir);
    if (n > 1 && ix[n - 1] == ix[n - 2])
        return gms__fail(GMS_E_CORRUPTION,
                         "audit trail: %s and %s both claim to be segment %llu; run gms audit verify on %s",
                         names[n - 2], names[n - 1], (unsigned long long)ix[n - 1], a->dir);
    gms__audit_segment_key(key, len, ix[0], k);
    int rc = GMS_OK;
    for (size_t i = 0; i < n && rc == GMS_OK; i++) {
        for (uint64_t j = i ? ix[i - 1] : ix[0]; j < ix[i]; j++)
            gms__audit_key_evolve(k);
        char path[4200], why[160];
        snprintf(path, sizeof path, "%s/%s", a->dir, names[i]);
        uint64_t size = 0;
        uint32_t day = 0;
        bool newest = i + 1 == n;
        int fd = gms__audit_file_open(path, true, &size, why, sizeof why);
        gms_audit_block h;
        memset(&h, 0, sizeof h);
        gms_hmac hm;
        gms__hmac_init(&hm, k, GMS_AUDIT_MAC);
        if (fd >= 0 && size <= GMS_AUDIT_SEG_BYTES_MAX)
            day = header_day(a, fd, ix[i], &hm, &h);
        if (newest) {
            if (fd == -1)
                rc = gms__fail(GMS_E_BACKEND, "audit trail: cannot open %.400s: %s", path, why);
            else if (fd < 0)
                rc = gms__fail(GMS_E_CORRUPTION,
                               "audit trail: %s is %s; run gms audit verify on %s", path, why,
                               a->dir);
            else if (size > GMS_AUDIT_SEG_BYTES_MAX)
                rc = gms__fail(GMS_E_CORRUPTION,
                               "audit trail: %s is %llu bytes, larger than any segment gms writes; run gms audit verify on %s",
                               path, (unsigned long long)size, a->dir);
            else if (size >= GMS_AUDIT_BLOCK && h.kind == GMS_AUDIT_KIND_HEADER &&
                     memcmp(h.text + 32, a->key_id, 8) != 0)
                rc = gms__fail(GMS_E_INVALID_ARG,
                               "audit trail %s was written with another key; use its key or another directory",
                               a->dir);
            else if (!day)
                rc = gms__fail(GMS_E_CORRUPTION,
                               "audit trail: the header of %s does not verify; run gms audit verify on %s",
                               path, a->dir);
            else
                rc = resume(a, fd, path, size, &hm, &h, valid, torn);
        }
        gms__hmac_wipe(&hm);
        if (fd >= 0)
            close(fd);
        if (rc == GMS_OK && (i == 0 || ix[i] != ix[i - 1]) && run_add(a, ix[i], day) != 0)
            rc = gms__fail(GMS_E_NO_MEMORY, "out of host memory for the audit trail");
    }
    return rc;
}

int gms__audit_writer_prepare(gms_audit *a, const uint8_t *key, size_t len)
{
    int e = mkdirs(a->dir);
    if (e)
        return gms__fail(GMS_E_BACKEND, "audit trail: cannot create directory %s: %s", a->dir,
                         strerror(e));
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/.lock", a->dir);
    /* Not through a planted link, not a FIFO. */
    a->lock_fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    struct stat st;
    if (a->lock_fd < 0 || fstat(a->lock_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int loop = errno == ELOOP;
        const char *why = a->lock_fd >= 0 ? "not a regular file"
                          : loop         ? "a symbolic link, not a regular file"
                                         : strerror(errno);
        gms__audit_writer_release(a);
        return gms__fail(GMS_E_BACKEND, "audit trail: cannot use %.400s: %s", path, why);
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        close(a->lock_fd);
        a->lock_fd = -1;
        return gms__fail(busy ? GMS_E_BUSY : GMS_E_BACKEND,
                         "audit trail %s: %s", a->dir,
                         busy ? "in use by another runtime (one writer per directory)"
                              : strerror(errno));
    }
    gms__audit_key_id(key, len, a->key_id);
    char **names;
    uint64_t *ix;
    size_t n;
    if (gms__audit_seg_list(a->dir, &names, &ix, &n) != 0) {
        gms__audit_writer_release(a);
        return gms__fail(GMS_E_BACKEND, "audit trail: cannot list %s: %s", a->dir, strerror(errno));
    }
    uint64_t index = 1, prev_index = 0, valid = 0, torn = 0;
    a->next_seq = 1;
    memset(a->last_mac, 0, sizeof a->last_mac);
    if (n) {
        int rc = scan(a, key, len, names, ix, n, &valid, &torn, a->seg_key);
        prev_index = ix[n - 1];
        index = prev_index + 1;
        if (rc == GMS_OK && index > GMS_AUDIT_SEG_INDEX_MAX)
            rc = gms__fail(GMS_E_BACKEND, "audit trail %s: the last segment index (%llu) is used; start a new directory",
                           a->dir, (unsigned long long)GMS_AUDIT_SEG_INDEX_MAX);
        if (rc) {
            gms__audit_seg_list_free(names, ix, n);
            gms__audit_writer_release(a);
            return rc;
        }
    }
    gms__audit_seg_list_free(names, ix, n);
    if (n)
        gms__audit_key_evolve(a->seg_key); /* the newest segment's key to the next one's */
    else
        gms__audit_segment_key(key, len, index, a->seg_key);
    gms__hmac_init(&a->hmac, a->seg_key, sizeof a->seg_key);
    if (segment_create(a, index, prev_index, valid, torn, err, sizeof err) != 0) {
        gms__audit_writer_release(a);
        return gms__fail(GMS_E_BACKEND, "%s", err);
    }
    a->last_seal_ns = gms__audit_now();
    return GMS_OK;
}

void gms__audit_writer_release(gms_audit *a)
{
    if (a->seg_fd >= 0)
        close(a->seg_fd);
    if (a->lock_fd >= 0)
        close(a->lock_fd); /* releases the flock */
    a->seg_fd = a->lock_fd = -1;
}

static void fail(gms_audit *a, const char *what)
{
    pthread_mutex_lock(&a->mu);
    bool first = !a->failed;
    if (first) {
        a->failed = 1;
        snprintf(a->failure, sizeof a->failure, "audit trail %.100s: %.60s: %.40s; records are being lost",
                 a->dir, what, strerror(errno));
    }
    pthread_mutex_unlock(&a->mu);
    if (first)
        wlog(a, "gms: %s", a->failure);
}

static void write_out(gms_audit *a)
{
    if (a->failed) {
        a->lost += a->nout;
        a->nout = 0;
        return;
    }
    const char *p = (const char *)a->out;
    size_t left = a->nout * sizeof *a->out;
    while (left) {
        ssize_t w = write(a->seg_fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fail(a, "write failed");
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    a->nout = 0;
}

static gms_audit_block *out_next(gms_audit *a)
{
    if (a->nout == a->outcap)
        write_out(a);
    return &a->out[a->nout];
}

/* Chains the block being built at out[nout] and commits it. */
static void out_commit(gms_audit *a, gms_audit_block *b)
{
    gms__audit_block_mac(&a->hmac, a->last_mac, b, b->mac);
    memcpy(a->last_mac, b->mac, GMS_AUDIT_MAC);
    a->nout++;
    a->seg_bytes += GMS_AUDIT_BLOCK;
}

static void seal(gms_audit *a, int reason)
{
    static const char *why[] = {"", "flush", "interval", "rotation", "close", "retention"};
    if (!a->last_is_seal) {
        gms_audit_block *b = out_next(a);
        memset(b, 0, sizeof *b);
        b->seq = a->next_seq - 1;
        b->time_ns = gms__audit_now();
        b->handle = a->seg_records;
        b->size = a->seg_bytes + GMS_AUDIT_BLOCK;
        b->context_id = a->dropped_total;
        b->result = reason;
        b->kind = GMS_AUDIT_KIND_CHECKPOINT;
        b->level = b->language = -1;
        memcpy(b->text, a->ckpt_mac, GMS_AUDIT_MAC);
        snprintf(b->text + 32, GMS_AUDIT_TEXT - 32, "checkpoint (%s)", why[reason]);
        out_commit(a, b);
        memcpy(a->ckpt_mac, b->mac, GMS_AUDIT_MAC);
        a->last_is_seal = true;
    }
    write_out(a);
    if (!a->failed && fdatasync(a->seg_fd) != 0)
        fail(a, "fdatasync failed");
    a->unsealed = 0;
    a->last_seal_ns = gms__audit_now();
}

static void append_internal(gms_audit *a, gms_audit_op op, uint64_t size, uint64_t handle,
                            uint64_t context_id, const char *detail);

/* Deletes expired segments, oldest first, never the current one, never
 * past a segment whose day is not authenticated or past a gap. Each
 * deletion is recorded in the chain and sealed before the file goes, so
 * verify can tell retention's deletions (the oldest kept segment follows
 * one a record names) from anyone else's, even after a crash between the
 * two. */
static void retention_sweep(gms_audit *a)
{
    if (a->sweeping || a->failed || !a->nruns)
        return;
    a->sweeping = true;
    int64_t today = gms__audit_day_number(gms__audit_day(gms__audit_now()));
    uint64_t first = a->runs[0].first, upto = first; /* [first, upto) expire */
    for (size_t r = 0; r < a->nruns; r++) {
        const gms_audit_seg_run *x = &a->runs[r];
        if (x->first != upto || !x->day ||
            gms__audit_day_number(x->day) + (int64_t)a->retention_days >= today)
            break;
        upto = x->last < a->seg_index ? x->last + 1 : a->seg_index;
        if (upto == a->seg_index)
            break;
    }
    for (uint64_t k = first, r = 0; k < upto; k++) {
        while (a->runs[r].last < k)
            r++;
        uint32_t day = a->runs[r].day;
        char msg[160];
        snprintf(msg, sizeof msg, "retention: deleted segment %llu of %04u-%02u-%02u (older than %u days)",
                 (unsigned long long)k, day / 10000, day / 100 % 100, day % 100,
                 a->retention_days);
        append_internal(a, GMS_AUDIT_CONFIG, k, day, a->retention_days, msg);
    }
    if (upto > first)
        seal(a, GMS_AUDIT_SEAL_RETENTION);
    char **names;
    uint64_t *ix;
    size_t n;
    if (upto == first || a->failed || gms__audit_seg_list(a->dir, &names, &ix, &n) != 0) {
        a->sweeping = false;
        return;
    }
    size_t i = 0;
    for (uint64_t k = first; k < upto; k++) {
        while (i < n && ix[i] < k)
            i++;
        /* Exactly one file of this index (two: leave both to verify). */
        if (i >= n || ix[i] != k || (i + 1 < n && ix[i + 1] == k))
            break;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", a->dir, names[i]);
        if (unlink(path) != 0)
            break;
        a->runs[0].first = k + 1;
        if (a->runs[0].first > a->runs[0].last)
            memmove(a->runs, a->runs + 1, --a->nruns * sizeof *a->runs);
    }
    fsync_dir(a->dir);
    gms__audit_seg_list_free(names, ix, n);
    a->sweeping = false;
}

static void rotate(gms_audit *a)
{
    seal(a, GMS_AUDIT_SEAL_ROTATE);
    if (a->failed)
        return;
    close(a->seg_fd);
    a->seg_fd = -1;
    uint64_t prev = a->seg_index, valid = a->seg_bytes;
    /* Forward security: the old segment's key is gone once this returns. */
    gms__audit_key_evolve(a->seg_key);
    gms__hmac_wipe(&a->hmac);
    gms__hmac_init(&a->hmac, a->seg_key, sizeof a->seg_key);
    char err[512];
    if (prev + 1 > GMS_AUDIT_SEG_INDEX_MAX) {
        errno = EFBIG;
        fail(a, "the last segment index is used");
        return;
    }
    if (segment_create(a, prev + 1, prev, valid, 0, err, sizeof err) != 0) {
        errno = EIO;
        fail(a, err);
        return;
    }
    retention_sweep(a);
}

/* Room for this block and a checkpoint after it, in today's segment. */
static void ensure_room(gms_audit *a, uint64_t time_ns)
{
    if (a->failed)
        return;
    if (a->seg_bytes + 2 * GMS_AUDIT_BLOCK > a->seg_max || time_ns >= a->day_end_ns)
        rotate(a);
}

static void append_internal(gms_audit *a, gms_audit_op op, uint64_t size, uint64_t handle,
                            uint64_t context_id, const char *detail)
{
    uint64_t now = gms__audit_now();
    if (a->seg_bytes + 2 * GMS_AUDIT_BLOCK > a->seg_max)
        rotate(a); /* a sweep runs after the new header: there is room */
    gms_audit_block *b = out_next(a);
    memset(b, 0, sizeof *b);
    b->seq = a->next_seq++;
    b->time_ns = now;
    b->size = size;
    b->handle = handle;
    b->context_id = context_id;
    b->op = (uint16_t)op;
    b->level = b->language = -1;
    b->kind = GMS_AUDIT_KIND_RECORD;
    /* tenant "" and user "" then the detail */
    snprintf(b->text + 2, GMS_AUDIT_TEXT - 2, "%s", detail);
    out_commit(a, b);
    a->seg_records++;
    a->unsealed++;
    a->last_is_seal = false;
}

/* Moves every record ready in the rings (up to limit[i] per shard when
 * limit is given) into the output; returns how many. */
static uint64_t drain(gms_audit *a, const uint64_t *limit)
{
    uint64_t got = 0, dropped = 0;
    for (int i = 0; i < GMS_AUDIT_SHARDS; i++) {
        gms_audit_shard *sh = &a->shards[i];
        dropped += atomic_exchange_explicit(&sh->dropped, 0, memory_order_relaxed);
        for (;;) {
            uint64_t pos = sh->head;
            if (limit && pos >= limit[i])
                break;
            gms_audit_slot *sl = &sh->slots[pos & a->mask];
            if (atomic_load_explicit(&sl->turn, memory_order_acquire) != pos + 1) {
                if (!limit)
                    break;
                /* Claimed before the flush began and being filled now: the
                 * producer is between its CAS and its store, never waiting. */
                continue;
            }
            ensure_room(a, sl->time_ns);
            gms_audit_block *b = out_next(a);
            b->seq = a->next_seq++;
            b->time_ns = sl->time_ns;
            b->handle = sl->handle;
            b->size = sl->size;
            b->context_id = sl->context_id;
            b->result = sl->result;
            b->op = sl->op;
            b->level = sl->level;
            b->language = sl->language;
            b->kind = GMS_AUDIT_KIND_RECORD;
            b->aux = 0;
            memcpy(b->text, sl->text, GMS_AUDIT_TEXT);
            atomic_store_explicit(&sl->turn, pos + a->mask + 1, memory_order_release);
            sh->head = pos + 1;
            out_commit(a, b);
            a->seg_records++;
            a->unsealed++;
            a->last_is_seal = false;
            got++;
        }
    }
    if (dropped) {
        a->dropped_total += dropped;
        char msg[96];
        snprintf(msg, sizeof msg, "lossy mode: %llu records dropped (ring full)",
                 (unsigned long long)dropped);
        append_internal(a, GMS_AUDIT_DROPPED, dropped, 0, 0, msg);
    }
    return got;
}

void *gms__audit_writer_main(void *arg)
{
    gms_audit *a = arg;
    retention_sweep(a);
    uint64_t idle_ms = 1, last_active = 0;
    bool got_any = false;
    for (;;) {
        uint64_t got = drain(a, NULL);
        pthread_mutex_lock(&a->mu);
        uint64_t req = a->flush_req;
        bool stop = a->stop, flush = req > a->flush_done;
        pthread_mutex_unlock(&a->mu);
        if (flush || stop) {
            uint64_t snap[GMS_AUDIT_SHARDS];
            for (int i = 0; i < GMS_AUDIT_SHARDS; i++)
                snap[i] = atomic_load_explicit(&a->shards[i].tail, memory_order_acquire);
            drain(a, snap);
            seal(a, stop ? GMS_AUDIT_SEAL_CLOSE : GMS_AUDIT_SEAL_FLUSH);
            pthread_mutex_lock(&a->mu);
            a->flush_done = req;
            pthread_cond_broadcast(&a->done);
            pthread_mutex_unlock(&a->mu);
            if (stop)
                break;
            continue;
        }
        if (got) {
            idle_ms = 1;
            got_any = true;
            if (a->nout >= a->outcap / 2)
                write_out(a);
            if (a->unsealed && gms__audit_now() - a->last_seal_ns >= SEAL_INTERVAL_NS)
                seal(a, GMS_AUDIT_SEAL_INTERVAL);
            continue;
        }
        if (a->nout)
            write_out(a);
        if (a->unsealed && gms__audit_now() - a->last_seal_ns >= SEAL_INTERVAL_NS)
            seal(a, GMS_AUDIT_SEAL_INTERVAL);
        /* Records came in the last 2 ms: more are likely, and a sleep and
         * wake-up would cost more than the batch. Poll, yielding the core. */
        struct timespec mt;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &mt);
        uint64_t mono = (uint64_t)mt.tv_sec * 1000000000ull + (uint64_t)mt.tv_nsec;
        if (got_any) {
            last_active = mono;
            got_any = false;
        }
        if (mono - last_active < 2000000ull) {
            sched_yield();
            continue;
        }
        /* Idle: sleep a little longer each time (up to 8 ms); a caller
         * that finds its ring full wakes the writer at once. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(idle_ms * 1000000);
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&a->mu);
        if (!a->stop && a->flush_req == a->flush_done &&
            atomic_load_explicit(&a->waiting, memory_order_relaxed) == 0)
            pthread_cond_timedwait(&a->wake, &a->mu, &ts);
        atomic_store_explicit(&a->waiting, 0, memory_order_relaxed);
        pthread_mutex_unlock(&a->mu);
        if (idle_ms < 8)
            idle_ms *= 2;
    }
    if (a->lost)
        wlog(a, "gms: audit trail %s: %llu records lost after a write failure", a->dir,
             (unsigned long long)a->lost);
    gms__audit_writer_release(a);
    return NULL;
}
