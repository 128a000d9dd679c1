/*
 * chain.c: the cryptographic chain of the audit trail and the small pieces
 * of the on-disk format that writer and readers share: HMAC-SHA-256 with
 * precomputed pads, per-segment key evolution, key files, segment names and
 * days.
 */
#include "audit/format.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

int64_t _Atomic gms__audit_clock_skew_ns;
uint32_t gms__audit_ring_slots;

void gms__hmac_init(gms_hmac *h, const uint8_t *key, size_t len)
{
    uint8_t k[64] = {0}, pad[64];
    if (len > 64) {
        SHA256(key, len, k); /* RFC 2104: long keys are hashed first */
    } else if (len) {
        memcpy(k, key, len);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    SHA256_Init(&h->inner);
    SHA256_Update(&h->inner, pad, 64);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    SHA256_Init(&h->outer);
    SHA256_Update(&h->outer, pad, 64);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
}

void gms__hmac_wipe(gms_hmac *h)
{
    OPENSSL_cleanse(h, sizeof *h);
}

void gms__hmac_mac(const gms_hmac *h, const uint8_t *prev, const void *data, size_t len,
                   uint8_t out[GMS_AUDIT_MAC])
{
    SHA256_CTX c = h->inner; /* a struct copy: the pads are already hashed */
    uint8_t inner[32];
    if (prev)
        SHA256_Update(&c, prev, GMS_AUDIT_MAC);
    SHA256_Update(&c, data, len);
    SHA256_Final(inner, &c);
    c = h->outer;
    SHA256_Update(&c, inner, sizeof inner);
    SHA256_Final(out, &c);
}

void gms__audit_block_mac(const gms_hmac *h, const uint8_t prev[GMS_AUDIT_MAC],
                          const gms_audit_block *b, uint8_t out[GMS_AUDIT_MAC])
{
    gms__hmac_mac(h, prev, b, GMS_AUDIT_BODY, out);
}

static void hmac_once(const uint8_t *key, size_t len, const char *label, uint64_t n,
                      uint8_t out[GMS_AUDIT_MAC])
{
    gms_hmac h;
    uint8_t msg[64];
    size_t l = strlen(label);
    memcpy(msg, label, l);
    memcpy(msg + l, &n, sizeof n);
    gms__hmac_init(&h, key, len);
    gms__hmac_mac(&h, NULL, msg, l + sizeof n, out);
    gms__hmac_wipe(&h);
}

void gms__audit_key_evolve(uint8_t k[GMS_AUDIT_MAC])
{
    uint8_t next[GMS_AUDIT_MAC];
    hmac_once(k, GMS_AUDIT_MAC, "gms-audit evolve", 0, next);
    memcpy(k, next, GMS_AUDIT_MAC);
    OPENSSL_cleanse(next, sizeof next);
}

int gms__audit_segment_key(const uint8_t *key, size_t len, uint64_t index,
                           uint8_t out[GMS_AUDIT_MAC])
{
    if (index < 1 || index > GMS_AUDIT_SEG_INDEX_MAX)
        return -1;
    hmac_once(key, len, "gms-audit segment key", 1, out);
    for (uint64_t i = 1; i < index; i++)
        gms__audit_key_evolve(out);
    return 0;
}

void gms__audit_key_id(const uint8_t *key, size_t len, uint8_t out[8])
{
    uint8_t m[GMS_AUDIT_MAC];
    hmac_once(key, len, "gms-audit key id", 0, m);
    memcpy(out, m, 8);
}

static const char *file_kind(mode_t m)
{
    return S_ISFIFO(m) ? "a FIFO" : S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a plain file";
}

int gms__audit_file_open(const char *path, bool nofollow, uint64_t *size, char *err,
                         size_t errsize)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0 && nofollow && errno == ELOOP) {
        snprintf(err, errsize, "a symbolic link, not a regular file");
        return -2;
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        snprintf(err, errsize, "%s", strerror(e));
        if (fd >= 0)
            close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errsize, "%s, not a regular file", file_kind(st.st_mode));
        close(fd);
        return -2;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

int gms__audit_key_load(const char *path, uint8_t *key, size_t *len, char *err, size_t errsize)
{
    /* A key file may be a link (secrets are often mounted as links), but
     * not a FIFO or a device: reading one could block or never end. */
    char why[128];
    uint64_t size;
    int fd = gms__audit_file_open(path, false, &size, why, sizeof why);
    if (fd < 0) {
        snprintf(err, errsize, "audit key file %s: %s", path, why);
        return -1;
    }
    size_t n = 0;
    bool more = false, failed = false;
    while (n < GMS_AUDIT_KEY_MAX) {
        ssize_t r = read(fd, key + n, GMS_AUDIT_KEY_MAX - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            failed = r < 0;
            break;
        }
        n += (size_t)r;
    }
    uint8_t extra;
    if (n == GMS_AUDIT_KEY_MAX)
        more = read(fd, &extra, 1) > 0;
    int e = errno;
    close(fd);
    if (failed || more) {
        OPENSSL_cleanse(key, GMS_AUDIT_KEY_MAX);
        if (failed)
            snprintf(err, errsize, "audit key file %s: %s", path, strerror(e));
        else
            snprintf(err, errsize, "audit key file %s: longer than %d bytes", path, GMS_AUDIT_KEY_MAX);
        return -1;
    }
    /* A key written with echo or an editor ends in a newline that the
     * person who wrote it does not count as part of the key. */
    while (n && (key[n - 1] == '\n' || key[n - 1] == '\r' || key[n - 1] == ' ' ||
                 key[n - 1] == '\t'))
        n--;
    if (n < GMS_AUDIT_KEY_MIN) {
        OPENSSL_cleanse(key, GMS_AUDIT_KEY_MAX);
        snprintf(err, errsize, "audit key file %s: %zu bytes, at least %d needed", path, n,
                 GMS_AUDIT_KEY_MIN);
        return -1;
    }
    *len = n;
    return 0;
}

int gms__audit_seg_parse(const char *name, uint64_t *index, uint32_t *day)
{
    size_t pl = strlen(GMS_AUDIT_SEG_PREFIX);
    if (strncmp(name, GMS_AUDIT_SEG_PREFIX, pl) != 0)
        return -1;
    const char *p = name + pl;
    uint64_t ix = 0;
    int digits = 0;
    for (; isdigit((unsigned char)*p); p++, digits++)
        ix = ix * 10 + (uint64_t)(*p - '0');
    if (digits < 1 || digits > 18 || *p != '-')
        return -1;
    p++;
    uint32_t d = 0;
    for (digits = 0; isdigit((unsigned char)*p); p++, digits++)
        d = d * 10 + (uint32_t)(*p - '0');
    if (digits != 8 || strcmp(p, GMS_AUDIT_SEG_SUFFIX) != 0 || ix == 0)
        return -1;
    *index = ix;
    *day = d;
    return 0;
}

uint32_t gms__audit_day(uint64_t time_ns)
{
    time_t s = (time_t)(time_ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&s, &tm);
    return (uint32_t)((tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
}

int64_t gms__audit_day_number(uint32_t d)
{
    /* Days from civil (proleptic Gregorian), after H. Hinnant's method. */
    int64_t y = d / 10000, m = (d / 100) % 100, dd = d % 100;
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + dd - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

typedef struct seg_ent {
    uint64_t index;
    char *name;
} seg_ent;

static int seg_cmp(const void *a, const void *b)
{
    const seg_ent *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

int gms__audit_seg_list(const char *dir, char ***names, uint64_t **indices, size_t *n)
{
    *names = NULL;
    *indices = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    seg_ent *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t ix;
        uint32_t day;
        if (gms__audit_seg_parse(de->d_name, &ix, &day) != 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            seg_ent *nv = realloc(v, cap * sizeof *v);
            if (!nv)
                goto fail;
            v = nv;
        }
        v[cnt].index = ix;
        v[cnt].name = strdup(de->d_name);
        if (!v[cnt].name)
            goto fail;
        cnt++;
    }
    closedir(d);
    if (cnt > 1)
        qsort(v, cnt, sizeof *v, seg_cmp);
    *names = calloc(cnt ? cnt : 1, sizeof **names);
    *indices = calloc(cnt ? cnt : 1, sizeof **indices);
    if (!*names || !*indices) {
        free(*names);
        free(*indices);
        *names = NULL;
        *indices = NULL;
        d = NULL;
        goto fail;
    }
    for (size_t i = 0; i < cnt; i++) {
        (*names)[i] = v[i].name;
        (*indices)[i] = v[i].index;
    }
    free(v);
    *n = cnt;
    return 0;
fail:
    if (d)
        closedir(d);
    for (size_t i = 0; i < cnt; i++)
        free(v[i].name);
    free(v);
    errno = ENOMEM;
    return -1;
}

void gms__audit_seg_list_free(char **names, uint64_t *indices, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    free(indices);
}

void gms__audit_text_split(const gms_audit_block *b, char tenant[64], char user[64],
                           char detail[GMS_AUDIT_TEXT])
{
    const char *p = b->text, *end = b->text + GMS_AUDIT_TEXT;
    char *outs[3] = {tenant, user, detail};
    size_t caps[3] = {64, 64, GMS_AUDIT_TEXT};
    for (int i = 0; i < 3; i++) {
        size_t n = 0;
        while (p < end && *p && n + 1 < caps[i])
            outs[i][n++] = *p++;
        outs[i][n] = 0;
        while (p < end && *p) /* a field longer than its output: skip it */
            p++;
        if (p < end)
            p++;
    }
}
