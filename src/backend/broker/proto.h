/*
 * proto.h: the broker's wire protocol (docs/broker.md, "Protocol"), shared
 * by gmsd and the client backend (broker.c).
 *
 * One message is one SOCK_SEQPACKET packet: a 16-byte header (magic,
 * protocol version, type, sequence number, payload length; little-endian)
 * and a payload whose size the type fixes (an error's text excepted). The
 * decoder takes a whole packet and the number of file descriptors that came
 * with it, and accepts only a well-formed message of the expected direction
 * carrying exactly the descriptors its type carries: anything else is
 * refused with a reason, and nothing past the packet is ever read.
 */
#ifndef GMS_BROKER_PROTO_H
#define GMS_BROKER_PROTO_H

#include "backend/backend.h" /* GMS_BROKER_MEMORY_* */

#include <stddef.h>
#include <stdint.h>

#define GMS_BROKER_MAGIC 0x42534d47u /* "GMSB" */
#define GMS_BROKER_PROTO 5 /* 2: sessions (HELLO, WELCOME), ACQUIRED's owner, TRANSFER;
                              3: WELCOME's memory and device; 4: shares of CUDA
                              memory (SHARE's lease, ACQUIRED's copy), RESHARE;
                              5: TRANSFERRED's lease (transfers of CUDA memory) */
#define GMS_BROKER_HEADER 16
#define GMS_BROKER_TEXT_MAX 200      /* an error's text, bytes */
#define GMS_BROKER_TENANT_MAX 64     /* a tenant's name, NUL included */
#define GMS_BROKER_NAME_MAX 64       /* a grant's tenant or user, NUL included */
#define GMS_BROKER_GRANTS_MAX 16     /* GMS_SHARE_GRANTS_MAX */
#define GMS_BROKER_GRANT_BYTES (2 * GMS_BROKER_NAME_MAX + 8)
#define GMS_BROKER_MSG_MAX 4096      /* header and payload */

typedef enum gms_broker_type {
    /* client to broker */
    GMS_BROKER_HELLO = 1,    /* a = the session to resume (0: none) */
    GMS_BROKER_LEASE = 2,    /* a = bytes wanted */
    GMS_BROKER_RELEASE = 3,  /* a = lease id */
    GMS_BROKER_USAGE = 4,    /* empty: the tenant's use, for tests and tools */
    GMS_BROKER_SHARE = 5,    /* a = memfd bytes, b = the buffer's bytes, c = its
                                offset in the memfd, flags = immutable,
                                grants[ngrants] (1..16); CUDA memory: a =
                                the share's bytes, c = the buffer's offset
                                in lease d */
    GMS_BROKER_PUBLISH = 6,  /* a = share id: the owner has filled it */
    GMS_BROKER_ACQUIRE = 7,  /* a = share id, mode, language, user */
    GMS_BROKER_RELEASE_SHARE = 8, /* a = hold id */
    GMS_BROKER_REVOKE = 9,   /* a = share id */
    GMS_BROKER_TRANSFER = 10, /* a = hold id: its share, of another tenant, is
                                 taken over by this connection's tenant */
    GMS_BROKER_RESHARE = 11, /* SHARE's fields again, d = share id; one fd: the
                                share's memfd, which its owner hands back to
                                a restarted gmsd (with the grants, which
                                gmsd's state file does not keep) */
    /* broker to client */
    GMS_BROKER_WELCOME = 0x81, /* a = lease bytes, b = quota bytes, c = quota
                                  leases, level, languages (mask), d = the
                                  session, e = leases and holds taken over
                                  from the session resumed, flags = resumed
                                  (0 or 1), memory (GMS_BROKER_MEMORY_*),
                                  tenant, device (the GPU's UUID) */
    GMS_BROKER_LEASED = 0x82,  /* a = lease id, b = bytes; one fd: the memfd,
                                  or the device memory's descriptor */
    GMS_BROKER_RELEASED = 0x83,/* a = lease id */
    GMS_BROKER_USED = 0x84,    /* a = bytes, b = leases, c = quota bytes,
                                  d = quota leases (the whole tenant) */
    GMS_BROKER_SHARED = 0x85,  /* a = share id, b = the owner's hold id, c = bytes;
                                  one fd: the share's memfd, writable (CUDA
                                  memory: none) */
    GMS_BROKER_PUBLISHED = 0x86, /* a = share id */
    GMS_BROKER_ACQUIRED = 0x87,/* a = hold id, b = memfd bytes, c = the buffer's
                                  bytes, d = its offset, e = the lease of the
                                  reader's copy (CUDA memory), mode, flags =
                                  immutable, tenant = the owner's; one fd: the
                                  memfd, read-only unless mode lets the holder
                                  write (CUDA memory: the reader's copy) */
    GMS_BROKER_SHARE_RELEASED = 0x88, /* a = hold id */
    GMS_BROKER_REVOKED = 0x89, /* a = share id */
    GMS_BROKER_TRANSFERRED = 0x8a, /* a = the new hold id, b = bytes; one fd: the
                                      new share's memfd, writable, empty */
    GMS_BROKER_RESHARED = 0x8b, /* a = share id: acquirable again (unless revoked) */
    GMS_BROKER_ERROR = 0xff    /* code (GMS_E_*), err (errno), text */
} gms_broker_type;

/* One grant of a share, as gms_share_grant with names inline: tenant ""
 * is any tenant, user "" any user, language -1 any language. */
typedef struct gms_broker_grant {
    char tenant[GMS_BROKER_NAME_MAX]; /* NUL-terminated, zeros after */
    char user[GMS_BROKER_NAME_MAX];
    int32_t language;
    uint32_t mode; /* gms_access */
} gms_broker_grant;

typedef struct gms_broker_msg {
    uint16_t type;
    uint32_t seq;                 /* a reply carries its request's */
    uint64_t a, b, c, d, e;
    uint32_t level, languages;
    int32_t code;
    uint32_t err;
    char tenant[GMS_BROKER_TENANT_MAX]; /* NUL-terminated; WELCOME: the client's,
                                          ACQUIRED: the share owner's */
    uint32_t mode, flags;         /* ACQUIRE, ACQUIRED; SHARE, ACQUIRED, WELCOME */
    uint32_t memory;              /* WELCOME: GMS_BROKER_MEMORY_* */
    uint8_t device[16];           /* WELCOME: the GPU's UUID (CUDA memory); zeros */
    int32_t language;             /* ACQUIRE: the context's, -1 none */
    char user[GMS_BROKER_NAME_MAX]; /* ACQUIRE: the context's user */
    uint32_t ngrants;             /* SHARE */
    gms_broker_grant grants[GMS_BROKER_GRANTS_MAX];
    char text[GMS_BROKER_TEXT_MAX + 1]; /* NUL-terminated */
} gms_broker_msg;

/* Why a packet was refused (gms__broker_decode); 0 is accepted. */
enum {
    GMS_BROKER_BAD_SHORT = 1,   /* shorter than the header */
    GMS_BROKER_BAD_MAGIC,
    GMS_BROKER_BAD_VERSION,
    GMS_BROKER_BAD_TYPE,        /* unknown, or of the wrong direction */
    GMS_BROKER_BAD_LENGTH,      /* length field too large for the type */
    GMS_BROKER_BAD_TRUNCATED,   /* the packet is not header + length */
    GMS_BROKER_BAD_FDS,         /* descriptors the type does not carry */
    GMS_BROKER_BAD_FIELD        /* a field out of range (a name not NUL-ended and
                                   zero-padded, a grant count, a flag) */
};

/* Decodes the packet buf[0..n) that came with nfds descriptors; from_broker
 * says which direction it travelled. 0, or a GMS_BROKER_BAD_* reason. */
int gms__broker_decode(const void *buf, size_t n, unsigned nfds, int from_broker,
                       gms_broker_msg *out);
/* Encodes m into buf (GMS_BROKER_MSG_MAX bytes); returns the length. */
size_t gms__broker_encode(const gms_broker_msg *m, uint8_t *buf);
/* The reason's words. */
const char *gms__broker_bad_name(int reason);
/* Encodes m and sends it on the socket s as one packet, with descriptor fd
 * when fd >= 0 (SCM_RIGHTS); flags are sendmsg's (MSG_NOSIGNAL is added).
 * 0, or -1 with errno set (a short send too). */
int gms__broker_send(int s, const gms_broker_msg *m, int fd, int flags);

#endif
