/*
 * proto.c: the broker's message encoder and decoder (proto.h). The decoder
 * faces untrusted bytes in gmsd: it reads only within the packet it is
 * given and checks every length before using it. tests/fuzz/broker_decode.c
 * fuzzes it.
 */
#include "backend/broker/proto.h"

#include <errno.h>
#include <sys/socket.h>

#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The least payload size of each type (an error's and a share's grow from
 * it), the descriptors it carries and its direction; -1 for an unknown
 * type. */
static int layout(uint16_t type, int *fds, int *from_broker)
{
    *fds = 0;
    *from_broker = type >= 0x80;
    switch (type) {
    case GMS_BROKER_HELLO: return 8;
    case GMS_BROKER_LEASE: return 8;
    case GMS_BROKER_RELEASE: return 8;
    case GMS_BROKER_USAGE: return 0;
    case GMS_BROKER_SHARE: return 40 + GMS_BROKER_GRANT_BYTES;
    case GMS_BROKER_PUBLISH: return 8;
    case GMS_BROKER_ACQUIRE: return 16 + GMS_BROKER_NAME_MAX;
    case GMS_BROKER_RELEASE_SHARE: return 8;
    case GMS_BROKER_REVOKE: return 8;
    case GMS_BROKER_TRANSFER: return 8;
    case GMS_BROKER_RESHARE: *fds = 1; return 40 + GMS_BROKER_GRANT_BYTES;
    case GMS_BROKER_WELCOME: return 72 + GMS_BROKER_TENANT_MAX;
    case GMS_BROKER_LEASED: *fds = 1; return 16;
    case GMS_BROKER_RELEASED: return 8;
    case GMS_BROKER_USED: return 32;
    case GMS_BROKER_SHARED: *fds = 1; return 24;
    case GMS_BROKER_PUBLISHED: return 8;
    case GMS_BROKER_ACQUIRED: *fds = 1; return 48 + GMS_BROKER_TENANT_MAX;
    case GMS_BROKER_SHARE_RELEASED: return 8;
    case GMS_BROKER_REVOKED: return 8;
    case GMS_BROKER_TRANSFERRED: *fds = 1; return 24;
    case GMS_BROKER_RESHARED: return 8;
    case GMS_BROKER_ERROR: return 8;
    default: return -1;
    }
}

/* The most payload a type may have. */
static uint32_t layout_max(uint16_t type, int size)
{
    if (type == GMS_BROKER_ERROR)
        return 8 + GMS_BROKER_TEXT_MAX;
    if (type == GMS_BROKER_SHARE || type == GMS_BROKER_RESHARE)
        return 40 + GMS_BROKER_GRANTS_MAX * GMS_BROKER_GRANT_BYTES;
    return (uint32_t)size;
}

/* A name field: NUL-ended within its n bytes and zeros after the NUL, so
 * that it re-encodes to itself. */
static int name_ok(const uint8_t *p, size_t n)
{
    const uint8_t *end = memchr(p, 0, n);
    if (!end)
        return 0;
    for (; end < p + n; end++)
        if (*end)
            return 0;
    return 1;
}

int gms__broker_decode(const void *buf, size_t n, unsigned nfds, int from_broker,
                       gms_broker_msg *out)
{
    const uint8_t *p = buf;
    memset(out, 0, sizeof *out);
    if (n < GMS_BROKER_HEADER)
        return GMS_BROKER_BAD_SHORT;
    if (get32(p) != GMS_BROKER_MAGIC)
        return GMS_BROKER_BAD_MAGIC;
    if (get16(p + 4) != GMS_BROKER_PROTO)
        return GMS_BROKER_BAD_VERSION;
    uint16_t type = get16(p + 6);
    uint32_t len = get32(p + 12);
    int fds, dir;
    int size = layout(type, &fds, &dir);
    if (size < 0 || dir != (from_broker != 0))
        return GMS_BROKER_BAD_TYPE;
    uint32_t most = layout_max(type, size);
    if (len < (uint32_t)size || len > most)
        return GMS_BROKER_BAD_LENGTH;
    if (n != GMS_BROKER_HEADER + (size_t)len)
        return GMS_BROKER_BAD_TRUNCATED;
    /* SHARED of CUDA memory carries none: gmsd copies the bytes itself. */
    if (nfds != (unsigned)fds && !(type == GMS_BROKER_SHARED && nfds == 0))
        return GMS_BROKER_BAD_FDS;
    out->type = type;
    out->seq = get32(p + 8);
    const uint8_t *q = p + GMS_BROKER_HEADER;
    switch (type) {
    case GMS_BROKER_HELLO:
    case GMS_BROKER_LEASE:
    case GMS_BROKER_RELEASE:
    case GMS_BROKER_RELEASED:
    case GMS_BROKER_PUBLISH:
    case GMS_BROKER_RELEASE_SHARE:
    case GMS_BROKER_REVOKE:
    case GMS_BROKER_TRANSFER:
    case GMS_BROKER_PUBLISHED:
    case GMS_BROKER_SHARE_RELEASED:
    case GMS_BROKER_REVOKED:
    case GMS_BROKER_RESHARED:
        out->a = get64(q);
        break;
    case GMS_BROKER_LEASED:
        out->a = get64(q);
        out->b = get64(q + 8);
        break;
    case GMS_BROKER_SHARED:
    case GMS_BROKER_TRANSFERRED:
        out->a = get64(q);
        out->b = get64(q + 8);
        out->c = get64(q + 16);
        break;
    case GMS_BROKER_SHARE:
    case GMS_BROKER_RESHARE:
        out->a = get64(q);
        out->b = get64(q + 8);
        out->c = get64(q + 16);
        out->d = get64(q + 24);
        out->flags = get32(q + 32);
        out->ngrants = get32(q + 36);
        if (out->flags > 1 || out->ngrants == 0 || out->ngrants > GMS_BROKER_GRANTS_MAX ||
            len != 40 + out->ngrants * GMS_BROKER_GRANT_BYTES)
            return GMS_BROKER_BAD_FIELD;
        for (uint32_t i = 0; i < out->ngrants; i++) {
            const uint8_t *g = q + 40 + i * GMS_BROKER_GRANT_BYTES;
            gms_broker_grant *r = &out->grants[i];
            if (!name_ok(g, GMS_BROKER_NAME_MAX) ||
                !name_ok(g + GMS_BROKER_NAME_MAX, GMS_BROKER_NAME_MAX))
                return GMS_BROKER_BAD_FIELD;
            memcpy(r->tenant, g, GMS_BROKER_NAME_MAX);
            memcpy(r->user, g + GMS_BROKER_NAME_MAX, GMS_BROKER_NAME_MAX);
            r->language = (int32_t)get32(g + 2 * GMS_BROKER_NAME_MAX);
            r->mode = get32(g + 2 * GMS_BROKER_NAME_MAX + 4);
        }
        break;
    case GMS_BROKER_ACQUIRE:
        out->a = get64(q);
        out->mode = get32(q + 8);
        out->language = (int32_t)get32(q + 12);
        if (!name_ok(q + 16, GMS_BROKER_NAME_MAX))
            return GMS_BROKER_BAD_FIELD;
        memcpy(out->user, q + 16, GMS_BROKER_NAME_MAX);
        break;
    case GMS_BROKER_ACQUIRED:
        out->a = get64(q);
        out->b = get64(q + 8);
        out->c = get64(q + 16);
        out->d = get64(q + 24);
        out->e = get64(q + 32);
        out->mode = get32(q + 40);
        out->flags = get32(q + 44);
        if (out->flags > 1 || !name_ok(q + 48, GMS_BROKER_TENANT_MAX))
            return GMS_BROKER_BAD_FIELD;
        memcpy(out->tenant, q + 48, GMS_BROKER_TENANT_MAX);
        break;
    case GMS_BROKER_USED:
    case GMS_BROKER_WELCOME: {
        out->a = get64(q);
        out->b = get64(q + 8);
        out->c = get64(q + 16);
        out->d = get64(q + 24);
        if (type == GMS_BROKER_USED)
            break;
        out->level = (uint32_t)out->d;
        out->languages = (uint32_t)(out->d >> 32);
        out->d = get64(q + 32);
        out->e = get64(q + 40);
        out->flags = get32(q + 48); /* resumed */
        out->memory = get32(q + 52);
        if (out->flags > 1 || out->memory > GMS_BROKER_MEMORY_CUDA ||
            !name_ok(q + 56, GMS_BROKER_TENANT_MAX))
            return GMS_BROKER_BAD_FIELD;
        memcpy(out->tenant, q + 56, GMS_BROKER_TENANT_MAX);
        memcpy(out->device, q + 56 + GMS_BROKER_TENANT_MAX, sizeof out->device);
        break;
    }
    case GMS_BROKER_ERROR:
        out->code = (int32_t)get32(q);
        out->err = get32(q + 4);
        if (out->code >= 0)
            return GMS_BROKER_BAD_FIELD;
        memcpy(out->text, q + 8, len - 8);
        out->text[len - 8] = 0;
        break;
    default:
        break;
    }
    return 0;
}

size_t gms__broker_encode(const gms_broker_msg *m, uint8_t *buf)
{
    int fds, dir;
    int size = layout(m->type, &fds, &dir);
    size_t len = size < 0 ? 0 : (size_t)size;
    uint8_t *q = buf + GMS_BROKER_HEADER;
    memset(buf, 0, GMS_BROKER_MSG_MAX);
    switch (m->type) {
    case GMS_BROKER_HELLO:
    case GMS_BROKER_LEASE:
    case GMS_BROKER_RELEASE:
    case GMS_BROKER_RELEASED:
    case GMS_BROKER_PUBLISH:
    case GMS_BROKER_RELEASE_SHARE:
    case GMS_BROKER_REVOKE:
    case GMS_BROKER_TRANSFER:
    case GMS_BROKER_PUBLISHED:
    case GMS_BROKER_SHARE_RELEASED:
    case GMS_BROKER_REVOKED:
    case GMS_BROKER_RESHARED:
        put64(q, m->a);
        break;
    case GMS_BROKER_LEASED:
        put64(q, m->a);
        put64(q + 8, m->b);
        break;
    case GMS_BROKER_SHARED:
    case GMS_BROKER_TRANSFERRED:
        put64(q, m->a);
        put64(q + 8, m->b);
        put64(q + 16, m->c);
        break;
    case GMS_BROKER_SHARE:
    case GMS_BROKER_RESHARE: {
        uint32_t n = m->ngrants > GMS_BROKER_GRANTS_MAX ? GMS_BROKER_GRANTS_MAX : m->ngrants;
        put64(q, m->a);
        put64(q + 8, m->b);
        put64(q + 16, m->c);
        put64(q + 24, m->d);
        put32(q + 32, m->flags);
        put32(q + 36, n);
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *g = q + 40 + i * GMS_BROKER_GRANT_BYTES;
            const gms_broker_grant *r = &m->grants[i];
            memcpy(g, r->tenant, strnlen(r->tenant, GMS_BROKER_NAME_MAX - 1));
            memcpy(g + GMS_BROKER_NAME_MAX, r->user, strnlen(r->user, GMS_BROKER_NAME_MAX - 1));
            put32(g + 2 * GMS_BROKER_NAME_MAX, (uint32_t)r->language);
            put32(g + 2 * GMS_BROKER_NAME_MAX + 4, r->mode);
        }
        len = 40 + (size_t)n * GMS_BROKER_GRANT_BYTES;
        break;
    }
    case GMS_BROKER_ACQUIRE:
        put64(q, m->a);
        put32(q + 8, m->mode);
        put32(q + 12, (uint32_t)m->language);
        memcpy(q + 16, m->user, strnlen(m->user, GMS_BROKER_NAME_MAX - 1));
        break;
    case GMS_BROKER_ACQUIRED:
        put64(q, m->a);
        put64(q + 8, m->b);
        put64(q + 16, m->c);
        put64(q + 24, m->d);
        put64(q + 32, m->e);
        put32(q + 40, m->mode);
        put32(q + 44, m->flags);
        memcpy(q + 48, m->tenant, strnlen(m->tenant, GMS_BROKER_TENANT_MAX - 1));
        break;
    case GMS_BROKER_USED:
    case GMS_BROKER_WELCOME:
        put64(q, m->a);
        put64(q + 8, m->b);
        put64(q + 16, m->c);
        if (m->type == GMS_BROKER_USED) {
            put64(q + 24, m->d);
            break;
        }
        put64(q + 24, (uint64_t)m->languages << 32 | m->level);
        put64(q + 32, m->d);
        put64(q + 40, m->e);
        put32(q + 48, m->flags != 0);
        put32(q + 52, m->memory);
        memcpy(q + 56, m->tenant, strnlen(m->tenant, GMS_BROKER_TENANT_MAX - 1));
        memcpy(q + 56 + GMS_BROKER_TENANT_MAX, m->device, sizeof m->device);
        break;
    case GMS_BROKER_ERROR: {
        put32(q, (uint32_t)m->code);
        put32(q + 4, m->err);
        size_t t = strnlen(m->text, GMS_BROKER_TEXT_MAX);
        memcpy(q + 8, m->text, t);
        len += t;
        break;
    }
    default:
        break;
    }
    put32(buf, GMS_BROKER_MAGIC);
    put16(buf + 4, GMS_BROKER_PROTO);
    put16(buf + 6, m->type);
    put32(buf + 8, m->seq);
    put32(buf + 12, (uint32_t)len);
    return GMS_BROKER_HEADER + len;
}

const char *gms__broker_bad_name(int reason)
{
    switch (reason) {
    case 0: return "ok";
    case GMS_BROKER_BAD_SHORT: return "shorter than a header";
    case GMS_BROKER_BAD_MAGIC: return "bad magic";
    case GMS_BROKER_BAD_VERSION: return "unknown protocol version";
    case GMS_BROKER_BAD_TYPE: return "unknown type or wrong direction";
    case GMS_BROKER_BAD_LENGTH: return "length out of range for the type";
    case GMS_BROKER_BAD_TRUNCATED: return "packet size is not header + length";
    case GMS_BROKER_BAD_FDS: return "unexpected file descriptors";
    case GMS_BROKER_BAD_FIELD: return "a field out of range";
    default: return "unknown reason";
    }
}

int gms__broker_send(int s, const gms_broker_msg *m, int fd, int flags)
{
    uint8_t buf[GMS_BROKER_MSG_MAX];
    size_t n = gms__broker_encode(m, buf);
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {buf, n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = &ctl;
        mh.msg_controllen = sizeof ctl;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    ssize_t sent = sendmsg(s, &mh, flags | MSG_NOSIGNAL);
    if (sent == (ssize_t)n)
        return 0;
    if (sent >= 0)
        errno = EIO;
    return -1;
}
