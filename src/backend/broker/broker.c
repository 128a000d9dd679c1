/*
 * broker.c: the broker client backend (docs/broker.md). GMS_BROKER names
 * gmsd's socket; every chunk the pools reserve is a lease from gmsd: a
 * memfd made for this process's tenant (which gmsd knows from the kernel,
 * SO_PEERCRED), charged to the tenant's quota and passed over the socket
 * (SCM_RIGHTS). The chunk is then the host backend's chunk over that fd,
 * so commit, decommit, views and the scrub are the host's and the
 * alloc/free fast path never talks to the broker: only reserve and release
 * do, one round trip each, serialised on the socket's lock.
 */
#include "backend/backend.h"
#include "backend/broker/proto.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct lease_entry {
    gms_backend_chunk *chunk;
    uint64_t id;
    struct lease_entry *next;
} lease_entry;

typedef struct broker_backend {
    gms_backend base; /* first: a gms_backend * is a broker_backend * */
    gms_backend_ops ops;
    pthread_mutex_t lock; /* the socket, seq and the lease list */
    int sock;
    uint32_t seq;
    lease_entry *leases;
} broker_backend;

static broker_backend *bb_of(gms_backend *be)
{
    return (broker_backend *)be;
}

/* One request and its reply (lock held). *fd: the descriptor a LEASED
 * reply carries, else -1. 0, EPROTO for a reply that does not decode or
 * answer the request, an errno for the socket, or what an ERROR says.
 * An ERROR of sequence 0 is gmsd refusing the connection as it closes it
 * (an unknown peer, too many connections): it answers any request, and
 * may be waiting even when the request could not be sent. */
static int call(broker_backend *bb, gms_broker_msg *req, gms_broker_msg *rep, int *fd)
{
    uint8_t buf[GMS_BROKER_MSG_MAX];
    *fd = -1;
    req->seq = ++bb->seq;
    size_t n = gms__broker_encode(req, buf);
    int send_err = 0;
    if (send(bb->sock, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
        send_err = errno ? errno : EIO;
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                        .msg_controllen = sizeof ctl};
    ssize_t got;
    int resets = 0;
    /* A socket gmsd closed with our request unread reports ECONNRESET
     * once (which clears it) before the refusal queued ahead of it. */
    do
        got = recvmsg(bb->sock, &mh, MSG_CMSG_CLOEXEC | (send_err || resets ? MSG_DONTWAIT : 0));
    while (got < 0 && (errno == EINTR || (errno == ECONNRESET && resets++ == 0)));
    if (got <= 0)
        return send_err ? send_err : got == 0 ? ECONNRESET : errno;
    int fds[4], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && nfds < 4; i++)
            memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    int bad = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ? GMS_BROKER_BAD_TRUNCATED
              : gms__broker_decode(buf, (size_t)got, (unsigned)nfds, 1, rep);
    int refusal = !bad && rep->type == GMS_BROKER_ERROR && rep->seq == 0;
    if (bad || (rep->seq != req->seq && !refusal) || (send_err && !refusal)) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        return send_err ? send_err : EPROTO;
    }
    if (rep->type == GMS_BROKER_ERROR) /* GMS_E_* codes (gms.h) to errno values */
        return rep->code == -5   ? EDQUOT /* GMS_E_QUOTA: gms__backend_fail knows it */
               : rep->code == -6 ? ENOMEM
               : rep->code == -1 ? EINVAL
               : rep->err        ? (int)rep->err
                                 : EIO;
    if (nfds == 1)
        *fd = fds[0];
    return 0;
}

static int broker_reserve(gms_backend *be, uint64_t size, uint64_t align, uint64_t *base,
                          gms_backend_chunk **out)
{
    broker_backend *bb = bb_of(be);
    lease_entry *e = malloc(sizeof *e);
    if (!e)
        return ENOMEM;
    gms_broker_msg req = {.type = GMS_BROKER_LEASE, .a = size}, rep = {0};
    int fd;
    pthread_mutex_lock(&bb->lock);
    int err = call(bb, &req, &rep, &fd);
    if (!err && rep.type != GMS_BROKER_LEASED)
        err = EPROTO;
    struct stat st;
    if (!err && (rep.b != size || fstat(fd, &st) != 0 || (uint64_t)st.st_size != size))
        err = EPROTO; /* not the memory asked for */
    if (!err) {
        err = gms__backend_host_chunk_from_fd(fd, size, align, base, out);
        fd = -1; /* the chunk's now, or closed */
    }
    if (!err) {
        e->chunk = *out;
        e->id = rep.a;
        e->next = bb->leases;
        bb->leases = e;
        e = NULL;
    } else if (rep.type == GMS_BROKER_LEASED) {
        /* Hand a lease that could not be used straight back. */
        gms_broker_msg rel = {.type = GMS_BROKER_RELEASE, .a = rep.a}, ack = {0};
        int none;
        call(bb, &rel, &ack, &none);
        if (none >= 0)
            close(none);
    }
    pthread_mutex_unlock(&bb->lock);
    if (fd >= 0)
        close(fd);
    free(e);
    return err;
}

static void broker_release(gms_backend *be, gms_backend_chunk *chunk)
{
    broker_backend *bb = bb_of(be);
    if (!chunk)
        return;
    /* Unmapped first: once released, the broker wipes and reuses it. */
    gms__backend_host_ops.release(be, chunk);
    pthread_mutex_lock(&bb->lock);
    lease_entry **pp = &bb->leases;
    while (*pp && (*pp)->chunk != chunk)
        pp = &(*pp)->next;
    lease_entry *e = *pp;
    if (e) {
        *pp = e->next;
        gms_broker_msg req = {.type = GMS_BROKER_RELEASE, .a = e->id}, rep = {0};
        int fd;
        /* A broker gone away has released everything already. */
        call(bb, &req, &rep, &fd);
        if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&bb->lock);
    free(e);
}

static void broker_destroy(gms_backend *be)
{
    broker_backend *bb = bb_of(be);
    for (lease_entry *e = bb->leases, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    close(bb->sock); /* the broker releases whatever is left */
    pthread_mutex_destroy(&bb->lock);
    free(bb);
}

int gms__backend_broker_create(const char *path, uint64_t *lease_bytes, gms_backend **out,
                              char *why, size_t why_len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(why, why_len, "the socket path is longer than %zu bytes", sizeof sa.sun_path - 1);
        return EINVAL;
    }
    strcpy(sa.sun_path, path);
    broker_backend *bb = calloc(1, sizeof *bb);
    if (!bb) {
        snprintf(why, why_len, "out of host memory");
        return ENOMEM;
    }
    if (pthread_mutex_init(&bb->lock, NULL) != 0) {
        free(bb);
        snprintf(why, why_len, "cannot create a lock");
        return ENOMEM;
    }
    bb->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    int err = bb->sock < 0 ? errno : 0;
    if (!err && connect(bb->sock, (struct sockaddr *)&sa, sizeof sa) != 0)
        err = errno;
    if (err) {
        snprintf(why, why_len, "cannot connect to gmsd: %s", strerror(err));
        goto fail;
    }
    gms_broker_msg req = {.type = GMS_BROKER_HELLO}, rep = {0};
    int fd;
    err = call(bb, &req, &rep, &fd);
    if (fd >= 0)
        close(fd);
    if (!err && rep.type != GMS_BROKER_WELCOME)
        err = EPROTO;
    if (err) {
        snprintf(why, why_len, "gmsd refused this process: %s%s%s", strerror(err),
                 rep.type == GMS_BROKER_ERROR ? ": " : "",
                 rep.type == GMS_BROKER_ERROR ? rep.text : "");
        goto fail;
    }
    bb->ops = gms__backend_host_ops;
    bb->ops.name = "broker";
    bb->ops.reserve = broker_reserve;
    bb->ops.release = broker_release;
    bb->ops.destroy = broker_destroy;
    bb->base.ops = &bb->ops;
    bb->base.granularity = (uint64_t)sysconf(_SC_PAGESIZE);
    bb->base.no_scrub = NULL;
    *lease_bytes = rep.a;
    *out = &bb->base;
    return 0;
fail:
    if (bb->sock >= 0)
        close(bb->sock);
    pthread_mutex_destroy(&bb->lock);
    free(bb);
    return err;
}
