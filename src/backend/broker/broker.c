/*
 * broker.c: the broker client backend (docs/broker.md). GMS_BROKER names
 * gmsd's socket; every chunk the pools reserve is a lease from gmsd: a
 * memfd made for this process's tenant (which gmsd knows from the kernel,
 * SO_PEERCRED), charged to the tenant's quota and passed over the socket
 * (SCM_RIGHTS). The chunk is then the host backend's chunk over that fd,
 * so commit, decommit, views and the scrub are the host's and the
 * alloc/free fast path never talks to the broker: only reserve and release
 * do, one round trip each, serialised on the socket's lock.
 *
 * When gmsd goes away (it stopped, crashed, or is restarting), the next
 * request reconnects and resumes the connection's session: the new gmsd
 * took over the accounting of what this process holds (docs/broker.md,
 * "Restarts"), and the request is sent again. A gmsd without that record
 * leaves the process detached: its memory stays mapped and valid, and
 * every later request fails saying why.
 */
#include "backend/backend.h"
#include "backend/broker/proto.h"
#include "backend/cuda/cuda.h"
#include "backend/vmm/vmm.h"

#include "gms.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef struct lease_entry {
    gms_backend_chunk *chunk;
    uint64_t id;
    struct lease_entry *next;
} lease_entry;

/* A share this process owns: gmsd's memfd mapped over a block's pages of
 * a chunk, until the block's last holder goes (gms__broker_unshare). */
typedef struct share_entry {
    uint64_t id, hold;
    int fd;                  /* the share's memfd; -1 on CUDA memory */
    gms_broker_msg *made;    /* the SHARE that made it: RESHARE repeats it */
    gms_backend_chunk *chunk;
    uint64_t addr, len;
    int lease_given; /* CUDA memory, mutable: the share is chunk's lease itself */
    struct share_entry *next;
} share_entry;

/* A share of another process acquired on CUDA memory, imported and
 * mapped: an immutable one's copy of this process's own (a lease gmsd made
 * for the hold), read-only, or a mutable one's memory itself (the owner's
 * lease; no lease of this process's), read-write. */
typedef struct copy_entry {
    uint64_t hold, lease; /* lease 0: a mutable share's */
    gms_vmm_import imp;
    struct copy_entry *next;
} copy_entry;

typedef struct broker_backend {
    gms_backend base; /* first: a gms_backend * is a broker_backend * */
    gms_backend_ops ops;
    gms_backend *gpu;     /* CUDA memory: the CUDA backend over the leases */
    pthread_mutex_t lock; /* everything below */
    int sock;             /* -1 while gmsd is gone */
    uint32_t seq;
    lease_entry *leases;
    share_entry *shares;
    copy_entry *copies;
    uint64_t holds;      /* shares of others acquired and not released */
    uint64_t nleases;    /* leases held, in either kind of memory */
    uint32_t memory;     /* GMS_BROKER_MEMORY_*: what gmsd's leases are */
    uint64_t session;    /* gmsd's name of the connection, to resume it by */
    uint64_t lease_bytes;
    char tenant[64];
    char path[108];      /* gmsd's socket */
    int waited;          /* gmsd went away and was waited for in vain */
    int detached;        /* gmsd came back without this process's record */
    char why[512];       /* why no request can go to gmsd now */
} broker_backend;

static broker_backend *bb_of(gms_backend *be)
{
    return (broker_backend *)be;
}

/* One request (with descriptor send_fd when >= 0: RESHARE's) and its reply
 * (lock held). *fd: the descriptor a reply carries, else -1. 0, EPROTO for
 * a reply that does not decode or answer the request, an errno for the
 * socket, or what an ERROR says.
 * An ERROR of sequence 0 is gmsd refusing the connection as it closes it
 * (an unknown peer, too many connections): it answers any request, and
 * may be waiting even when the request could not be sent. */
static int exchange(broker_backend *bb, gms_broker_msg *req, int send_fd, gms_broker_msg *rep,
                    int *fd, int *lost)
{
    uint8_t buf[GMS_BROKER_MSG_MAX];
    *fd = -1;
    *lost = 0;
    req->seq = ++bb->seq;
    int send_err = 0;
    if (gms__broker_send(bb->sock, req, send_fd, 0) != 0)
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
    if (got <= 0) {
        int err = send_err ? send_err : got == 0 ? ECONNRESET : errno;
        /* gmsd's end is closed, and no refusal came: it went away. */
        *lost = got == 0 || err == ECONNRESET || err == EPIPE || err == ENOTCONN;
        return err;
    }
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

static int reconnect_ms(void)
{
    const char *v = getenv("GMS_BROKER_RECONNECT_MS");
    return v && *v ? atoi(v) : 10000;
}

/* No request can go to gmsd: why says why (bb->why). */
static void detach(broker_backend *bb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detach(broker_backend *bb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bb->why, sizeof bb->why, fmt, ap);
    va_end(ap);
    bb->detached = 1;
    if (bb->sock >= 0)
        close(bb->sock);
    bb->sock = -1;
}

/* After resuming a session with a restarted gmsd: hands it back the memfd
 * of each share this process owns, which it took over without one, so
 * that others may acquire them again (RESHARE; gmsd takes back only the
 * very file, and keeps a revoked share revoked). A refusal leaves the
 * share as it was: its holders keep it, nobody new acquires it. */
static void shares_hand_back(broker_backend *bb)
{
    for (share_entry *e = bb->shares; e; e = e->next) {
        if (e->fd < 0)
            continue; /* CUDA memory: the new gmsd has no copy to hand out */
        gms_broker_msg *req = e->made, rep = {0};
        req->type = GMS_BROKER_RESHARE;
        req->d = e->id;
        int fd, lost;
        exchange(bb, req, e->fd, &rep, &fd, &lost);
        if (fd >= 0)
            close(fd);
    }
}

/* gmsd went away: connect again (waiting up to GMS_BROKER_RECONNECT_MS
 * for it to come back, the first time) and resume the session (lock held).
 * 0, or ENOTCONN with bb->why saying why. */
static int reconnect(broker_backend *bb)
{
    if (bb->sock >= 0)
        close(bb->sock);
    bb->sock = -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", bb->path);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long wait_ms = bb->waited ? 0 : reconnect_ms();
    gms_broker_msg req = {.type = GMS_BROKER_HELLO, .a = bb->session}, rep = {0};
    int err;
    for (;;) {
        /* A gmsd that is stopping may still take the connection, then
         * drop it unanswered: that is gmsd not back yet either. */
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), fd, lost = 1;
        err = s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) != 0 ? errno : 0;
        if (!err) {
            bb->sock = s;
            err = exchange(bb, &req, -1, &rep, &fd, &lost);
            if (fd >= 0)
                close(fd);
            if (!lost)
                break;
            bb->sock = -1;
        }
        if (s >= 0)
            close(s);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= wait_ms) {
            bb->waited = 1;
            snprintf(bb->why, sizeof bb->why,
                     "gmsd at %s went away and is not back (%s, waited %ld ms): this process's "
                     "memory stays mapped and valid; the next request tries again", bb->path,
                     strerror(err), wait_ms);
            return ENOTCONN;
        }
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    bb->waited = 0;
    if (err || rep.type != GMS_BROKER_WELCOME) {
        snprintf(bb->why, sizeof bb->why, "gmsd at %s, back after it went away, refused this "
                 "process: %s", bb->path, rep.type == GMS_BROKER_ERROR ? rep.text
                                                                       : strerror(err ? err : EPROTO));
        close(bb->sock);
        bb->sock = -1;
        return ENOTCONN;
    }
    if (strcmp(rep.tenant, bb->tenant) != 0 || rep.a != bb->lease_bytes) {
        detach(bb, "gmsd at %s came back serving this process as tenant '%s' with leases of %llu "
               "bytes, not as '%s' with %llu: close this runtime and open a new one", bb->path,
               rep.tenant, (unsigned long long)rep.a, bb->tenant,
               (unsigned long long)bb->lease_bytes);
        return ENOTCONN;
    }
    if (!rep.flags && (bb->nleases || bb->shares || bb->holds)) {
        detach(bb, "gmsd at %s restarted without this process's accounting (session 0x%016llx "
               "not resumed): its memory stays mapped and valid, but this runtime takes no more "
               "from gmsd: close it and open a new one", bb->path,
               (unsigned long long)bb->session);
        return ENOTCONN;
    }
    bb->session = rep.d;
    bb->why[0] = 0;
    shares_hand_back(bb);
    return 0;
}

/* One request and its reply (lock held), as exchange; when gmsd went
 * away, reconnect, resume and send the request again. ENOTCONN, with the
 * reason noted for gms__backend_fail, when no gmsd takes requests. A
 * request gmsd took but died before answering is sent again: what it
 * granted then stays charged to the tenant until the connection ends. */
static int call(broker_backend *bb, gms_broker_msg *req, gms_broker_msg *rep, int *fd)
{
    int lost = 1, err = ENOTCONN;
    *fd = -1;
    if (bb->sock >= 0)
        err = exchange(bb, req, -1, rep, fd, &lost);
    if (lost && !bb->detached && (err = reconnect(bb)) == 0)
        err = exchange(bb, req, -1, rep, fd, &lost);
    if (lost || err == ENOTCONN) {
        if (!bb->why[0])
            snprintf(bb->why, sizeof bb->why, "gmsd at %s went away", bb->path);
        gms__backend_note("%s", bb->why);
        return ENOTCONN;
    }
    return err;
}

/* A lease of size bytes from gmsd: its descriptor (a memfd, or CUDA
 * memory's) and id. 0, EPROTO for an answer that is not one, or the
 * refusal's errno value (EDQUOT for the quota). */
static int lease_take(broker_backend *bb, uint64_t size, int *fd, uint64_t *id)
{
    gms_broker_msg req = {.type = GMS_BROKER_LEASE, .a = size}, rep = {0};
    pthread_mutex_lock(&bb->lock);
    int err = call(bb, &req, &rep, fd);
    if (!err && rep.type != GMS_BROKER_LEASED)
        err = EPROTO;
    struct stat st;
    if (!err && (rep.b != size || (bb->memory == GMS_BROKER_MEMORY_HOST &&
                                   (fstat(*fd, &st) != 0 || (uint64_t)st.st_size != size))))
        err = EPROTO; /* not the memory asked for */
    if (!err) {
        bb->nleases++;
        *id = rep.a;
    } else if (rep.type == GMS_BROKER_LEASED) {
        /* Hand a lease that cannot be used straight back. */
        gms_broker_msg rel = {.type = GMS_BROKER_RELEASE, .a = rep.a}, ack = {0};
        int none;
        call(bb, &rel, &ack, &none);
        if (none >= 0)
            close(none);
    }
    pthread_mutex_unlock(&bb->lock);
    if (err && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    return err;
}

/* Sends RELEASE of lease id (lock held; its memory unmapped already:
 * gmsd frees it). */
static void lease_release_locked(broker_backend *bb, uint64_t id)
{
    gms_broker_msg req = {.type = GMS_BROKER_RELEASE, .a = id}, rep = {0};
    int fd;
    call(bb, &req, &rep, &fd); /* a broker gone away has released everything already */
    if (fd >= 0)
        close(fd);
}

/* Gives lease id of a chunk back. */
static void lease_give_back(broker_backend *bb, uint64_t id)
{
    pthread_mutex_lock(&bb->lock);
    bb->nleases--;
    lease_release_locked(bb, id);
    pthread_mutex_unlock(&bb->lock);
}

/* The CUDA backend's leaser (vmm.h): its chunks are these leases. */
static int cuda_take(void *ctx, uint64_t size, int *fd, uint64_t *id)
{
    return lease_take(ctx, size, fd, id);
}
static void cuda_give_back(void *ctx, uint64_t id)
{
    lease_give_back(ctx, id);
}
static void broker_destroy(gms_backend *be);
static void cuda_done(void *ctx)
{
    broker_destroy(&((broker_backend *)ctx)->base);
}

static int broker_reserve(gms_backend *be, uint64_t size, uint64_t align, uint64_t *base,
                          gms_backend_chunk **out)
{
    broker_backend *bb = bb_of(be);
    lease_entry *e = malloc(sizeof *e);
    if (!e)
        return ENOMEM;
    int fd;
    int err = lease_take(bb, size, &fd, &e->id);
    if (!err && (err = gms__backend_host_chunk_from_fd(fd, size, align, base, out)) != 0)
        lease_give_back(bb, e->id); /* fd is closed */
    if (err) {
        free(e);
        return err;
    }
    e->chunk = *out;
    pthread_mutex_lock(&bb->lock);
    e->next = bb->leases;
    bb->leases = e;
    pthread_mutex_unlock(&bb->lock);
    return 0;
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
    if (e)
        *pp = e->next;
    pthread_mutex_unlock(&bb->lock);
    if (e)
        lease_give_back(bb, e->id);
    free(e);
}

/* ---- sharing across tenants (backend.h, docs/broker.md) ---- */

/* One share request (lock held): 0 when the reply is of type want, else a
 * GMS_E_* code with why: gmsd's refusal, or what went wrong. */
static int share_call(broker_backend *bb, gms_broker_msg *req, gms_broker_msg *rep, int *fd,
                      uint16_t want, char *why, size_t why_len)
{
    int err = call(bb, req, rep, fd);
    if (!err && rep->type == want)
        return 0;
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    if (err == ENOTCONN) {
        snprintf(why, why_len, "%s", bb->why);
        return GMS_E_BACKEND;
    }
    if (rep->type == GMS_BROKER_ERROR) {
        snprintf(why, why_len, "%s", rep->text);
        return rep->code;
    }
    snprintf(why, why_len, "no answer from gmsd: %s", strerror(err ? err : EPROTO));
    return GMS_E_BACKEND;
}

/* Releases a hold of a share (lock held); gmsd frees the share with its
 * last hold. */
static void hold_release(broker_backend *bb, uint64_t hold)
{
    gms_broker_msg req = {.type = GMS_BROKER_RELEASE_SHARE, .a = hold}, rep = {0};
    int fd;
    call(bb, &req, &rep, &fd); /* a broker gone away has released it already */
    if (fd >= 0)
        close(fd);
}

static int fd_size_is(int fd, uint64_t bytes)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (uint64_t)st.st_size == bytes;
}

/* SHARE of CUDA memory (docs/broker.md, "CUDA memory"); no descriptor
 * comes back. Immutable: gmsd copies the req bytes at addr of lease chunk
 * into memory of its own, so the device must be done writing them first.
 * Mutable: chunk [addr, addr+len) is a whole lease holding the one buffer,
 * and becomes the share itself, which other processes import (this one
 * maps it already). e joins bb->shares. */
static int share_device(broker_backend *bb, gms_backend_chunk *chunk, uint64_t addr, uint64_t len,
                        uint64_t req, int immutable, gms_broker_msg *q, gms_broker_msg *rep,
                        share_entry *e, char *why, size_t why_len)
{
    uint64_t lease, base, gran = bb->gpu->granularity;
    if (gms__vmm_chunk_lease(chunk, &lease, &base) != 0 || (!immutable && base != addr)) {
        snprintf(why, why_len, "the buffer is not %s lease of gmsd's", immutable ? "in a" : "a whole");
        return GMS_E_INVALID_ARG;
    }
    if (immutable && gms__vmm_device_sync(bb->gpu) != 0) {
        snprintf(why, why_len, "waiting for the device before gmsd copies the buffer: %s",
                 gms__backend_why());
        return GMS_E_BACKEND;
    }
    q->a = immutable ? (req + gran - 1) / gran * gran : len;
    q->c = addr - base;
    q->d = lease;
    int fd = -1;
    pthread_mutex_lock(&bb->lock);
    int rc = share_call(bb, q, rep, &fd, GMS_BROKER_SHARED, why, why_len);
    if (!rc && (fd >= 0 || rep->c != q->a)) {
        hold_release(bb, rep->b);
        snprintf(why, why_len, "gmsd's answer does not describe a share of CUDA memory");
        rc = GMS_E_BACKEND;
    }
    if (fd >= 0)
        close(fd);
    uint64_t share = rep->a, hold = rep->b;
    gms_broker_msg pub = {.type = GMS_BROKER_PUBLISH, .a = share};
    if (!rc && (rc = share_call(bb, &pub, rep, &fd, GMS_BROKER_PUBLISHED, why, why_len)) != 0)
        hold_release(bb, hold);
    if (!rc) {
        *e = (share_entry){.id = share, .hold = hold, .fd = -1, .lease_given = !immutable,
                           .next = bb->shares};
        bb->shares = e;
    }
    pthread_mutex_unlock(&bb->lock);
    return rc;
}

int gms__broker_share(gms_backend *be, gms_backend_chunk *chunk, uint64_t addr, uint64_t len,
                      uint64_t req, uint64_t data_off, int immutable,
                      const gms_broker_share_grant *grants, unsigned n, uint64_t *id,
                      uint64_t *view, char *why, size_t why_len)
{
    broker_backend *bb = bb_of(be);
    if (n == 0 || n > GMS_BROKER_GRANTS_MAX) {
        snprintf(why, why_len, "%u grants: gmsd takes 1 to %d", n, GMS_BROKER_GRANTS_MAX);
        return GMS_E_INVALID_ARG;
    }
    share_entry *e = calloc(1, sizeof *e);
    gms_broker_msg *m = calloc(2, sizeof *m); /* a request and its reply: 2 KiB each */
    if (!e || !m) {
        free(e);
        free(m);
        snprintf(why, why_len, "out of host memory");
        return GMS_E_NO_MEMORY;
    }
    gms_broker_msg *q = &m[0], *rep = &m[1];
    q->type = GMS_BROKER_SHARE;
    q->a = len;
    q->b = req;
    q->c = data_off;
    q->flags = immutable != 0;
    q->ngrants = n;
    for (unsigned i = 0; i < n; i++) {
        snprintf(q->grants[i].tenant, GMS_BROKER_NAME_MAX, "%s", grants[i].tenant);
        snprintf(q->grants[i].user, GMS_BROKER_NAME_MAX, "%s", grants[i].user);
        q->grants[i].language = grants[i].language;
        q->grants[i].mode = grants[i].mode;
    }
    int fd = -1, rc;
    void *v = MAP_FAILED;
    if (bb->memory != GMS_BROKER_MEMORY_HOST) {
        rc = share_device(bb, chunk, immutable ? addr + data_off : addr, len, req, immutable, q,
                          rep, e, why, why_len);
        if (rc == 0) {
            *id = e->id;
            *view = 0;
            e = NULL; /* on bb->shares */
        }
        goto done;
    }
    uint64_t chunk_base;
    int chunk_fd = gms__backend_host_chunk_fd(chunk, &chunk_base);
    pthread_mutex_lock(&bb->lock);
    rc = share_call(bb, q, rep, &fd, GMS_BROKER_SHARED, why, why_len);
    if (rc)
        goto out;
    e->id = rep->a;
    e->hold = rep->b;
    if (rep->c != len || !fd_size_is(fd, len)) {
        rc = GMS_E_BACKEND;
        snprintf(why, why_len, "gmsd sent a share of the wrong size");
        goto fail;
    }
    /* The owner's bytes into it, written (not mapped: an immutable share
     * is write-sealed next, which a writable mapping would prevent). */
    for (uint64_t done = 0; done < len;) {
        ssize_t k = pwrite(fd, (const void *)(uintptr_t)(addr + done), len - done, (off_t)done);
        if (k <= 0) {
            rc = k < 0 && errno == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND;
            snprintf(why, why_len, "filling the share: %s", k < 0 ? strerror(errno) : "short write");
            goto fail;
        }
        done += (uint64_t)k;
    }
    gms_broker_msg pub = {.type = GMS_BROKER_PUBLISH, .a = e->id};
    int none;
    if ((rc = share_call(bb, &pub, rep, &none, GMS_BROKER_PUBLISHED, why, why_len)) != 0)
        goto fail;
    v = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (v == MAP_FAILED ||
        mmap((void *)(uintptr_t)addr, len, immutable ? PROT_READ : PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        rc = errno == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND;
        snprintf(why, why_len, "mapping the share: %s", strerror(errno));
        goto fail;
    }
    /* The chunk's copy is unused until the share ends: back to the kernel. */
    fallocate(chunk_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(addr - chunk_base),
              (off_t)len);
    e->fd = fd;
    e->chunk = chunk;
    e->addr = addr;
    e->len = len;
    e->made = m;
    m = NULL; /* kept with the entry */
    e->next = bb->shares;
    bb->shares = e;
    *id = e->id;
    *view = (uint64_t)(uintptr_t)v;
    e = NULL;
    goto out;
fail:
    if (v != MAP_FAILED)
        munmap(v, len);
    hold_release(bb, e->hold);
    close(fd);
out:
    pthread_mutex_unlock(&bb->lock);
done:
    free(e);
    free(m);
    return rc;
}

int gms__broker_unshare(gms_backend *be, uint64_t id)
{
    broker_backend *bb = bb_of(be);
    pthread_mutex_lock(&bb->lock);
    share_entry **pp = &bb->shares;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    share_entry *e = *pp;
    int given = e && e->lease_given;
    if (e && e->fd < 0) { /* CUDA memory: the owner's buffer never moved */
        *pp = e->next;
        hold_release(bb, e->hold);
    } else if (e) {
        *pp = e->next;
        uint64_t chunk_base;
        int chunk_fd = gms__backend_host_chunk_fd(e->chunk, &chunk_base);
        /* The chunk's pages back, then the share's last bytes into them.
         * Leaving the share mapped would let the wipe that follows write
         * into memory other holders still read: never. */
        void *at = (void *)(uintptr_t)e->addr;
        if (mmap(at, e->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, chunk_fd,
                 (off_t)(e->addr - chunk_base)) == MAP_FAILED) {
            fprintf(stderr, "gms: cannot map a chunk back under share 0x%016llx: %s\n",
                    (unsigned long long)id, strerror(errno));
            abort();
        }
        for (uint64_t done = 0; done < e->len;) {
            ssize_t k = pread(e->fd, (char *)at + done, e->len - done, (off_t)done);
            if (k <= 0)
                break; /* the chunk's pages read as zeros: the redzone check says so */
            done += (uint64_t)k;
        }
        close(e->fd);
        hold_release(bb, e->hold);
    }
    pthread_mutex_unlock(&bb->lock);
    if (e)
        free(e->made);
    free(e);
    /* The lease goes with the share: this process's work on it must be
     * done before the chunk is unmapped. A failed wait (a device fault)
     * leaves nothing of ours running on it. */
    if (given)
        gms__vmm_device_sync(bb->gpu);
    return given;
}

/* ACQUIRED on CUDA memory (lock held), imported and mapped between guard
 * ranges: of an immutable share, fd is this process's copy, a lease of its
 * own (rep->e) that gmsd made for the hold, mapped read-only; of a mutable
 * one, the owner's lease itself, mapped read-write (gmsd refuses a reader:
 * an importer can map anything writable). On failure the hold and the
 * copy go back. */
static int acquire_import(broker_backend *bb, int fd, unsigned mode, const gms_broker_msg *rep,
                          gms_broker_hold *out, char *why, size_t why_len)
{
    uint64_t bytes = rep->b, gran = bb->gpu->granularity;
    int immutable = rep->flags != 0;
    copy_entry *c = calloc(1, sizeof *c);
    int rc = c ? GMS_OK : GMS_E_NO_MEMORY;
    if (!c)
        snprintf(why, why_len, "out of host memory");
    if (!rc && (rep->mode != mode || (mode == GMS_ACCESS_READ) != immutable ||
                (rep->e != 0) != immutable || fd < 0 || bytes == 0 || bytes % gran ||
                bytes > (1ull << 52) || rep->d != 0 || rep->c == 0 || rep->c > bytes)) {
        rc = GMS_E_BACKEND;
        snprintf(why, why_len, "gmsd's answer does not describe the share's memory");
    }
    int err = rc ? 0 : gms__vmm_import(bb->gpu, fd, bytes, !immutable, &c->imp);
    if (err) {
        rc = err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND;
        snprintf(why, why_len, "mapping the share's memory: %s", gms__backend_why());
    }
    if (rc) {
        free(c);
        hold_release(bb, rep->a);
        if (rep->e)
            lease_release_locked(bb, rep->e);
        return rc;
    }
    c->hold = rep->a;
    c->lease = rep->e;
    c->next = bb->copies;
    bb->copies = c;
    out->hold = rep->a;
    out->map = c->imp.region;
    out->map_len = c->imp.region_size;
    out->addr = c->imp.base;
    out->req = rep->c;
    out->immutable = immutable;
    out->foreign = strcmp(rep->tenant, bb->tenant) != 0;
    bb->holds++;
    return GMS_OK;
}

int gms__broker_acquire(gms_backend *be, uint64_t id, unsigned mode, int language,
                        const char *user, gms_broker_hold *out, char *why, size_t why_len)
{
    broker_backend *bb = bb_of(be);
    gms_broker_msg *m = calloc(2, sizeof *m);
    if (!m) {
        snprintf(why, why_len, "out of host memory");
        return GMS_E_NO_MEMORY;
    }
    gms_broker_msg *q = &m[0], *rep = &m[1];
    q->type = GMS_BROKER_ACQUIRE;
    q->a = id;
    q->mode = mode;
    q->language = language;
    snprintf(q->user, sizeof q->user, "%s", user);
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    int fd = -1;
    pthread_mutex_lock(&bb->lock);
    int rc = share_call(bb, q, rep, &fd, GMS_BROKER_ACQUIRED, why, why_len);
    if (rc)
        goto out;
    if (bb->memory != GMS_BROKER_MEMORY_HOST) {
        rc = acquire_import(bb, fd, mode, rep, out, why, why_len);
        goto out;
    }
    uint64_t bytes = rep->b;
    if (rep->mode != mode || bytes == 0 || bytes % page || bytes > (1ull << 52) ||
        rep->d > bytes || rep->c == 0 || rep->c > bytes - rep->d || !fd_size_is(fd, bytes)) {
        rc = GMS_E_BACKEND;
        snprintf(why, why_len, "gmsd's answer does not describe the share it sent");
        goto fail;
    }
    /* Guard pages on both sides: a raw access past either end faults. */
    void *r = mmap(NULL, bytes + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    int prot = mode == GMS_ACCESS_READ ? PROT_READ : PROT_READ | PROT_WRITE;
    if (r == MAP_FAILED ||
        mmap((char *)r + page, bytes, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        rc = errno == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND;
        snprintf(why, why_len, "mapping the share: %s", strerror(errno));
        if (r != MAP_FAILED)
            munmap(r, bytes + 2 * page);
        goto fail;
    }
    out->hold = rep->a;
    out->map = (uint64_t)(uintptr_t)r;
    out->map_len = bytes + 2 * page;
    out->addr = out->map + page + rep->d;
    out->req = rep->c;
    out->immutable = (int)rep->flags;
    out->foreign = strcmp(rep->tenant, bb->tenant) != 0;
    bb->holds++;
    goto out;
fail:
    hold_release(bb, rep->a);
out:
    pthread_mutex_unlock(&bb->lock);
    if (fd >= 0)
        close(fd); /* the mapping keeps the memory; no descriptor stays */
    free(m);
    return rc;
}

void gms__broker_release_hold(gms_backend *be, uint64_t hold, uint64_t map, uint64_t map_len)
{
    broker_backend *bb = bb_of(be);
    pthread_mutex_lock(&bb->lock);
    copy_entry **pp = &bb->copies;
    while (*pp && (*pp)->hold != hold)
        pp = &(*pp)->next;
    copy_entry *c = *pp;
    if (c) {
        /* Unmapped and released before gmsd frees it. */
        *pp = c->next;
        gms__vmm_unimport(bb->gpu, &c->imp);
        if (c->lease)
            lease_release_locked(bb, c->lease);
        free(c);
    } else {
        munmap((void *)(uintptr_t)map, map_len);
    }
    hold_release(bb, hold);
    bb->holds--;
    pthread_mutex_unlock(&bb->lock);
}

/* TRANSFERRED on host memory: the buffer's bytes into gmsd's new memfd,
 * which then replaces the old one under the same addresses: raw pointers
 * stay valid, and nothing of the buffer stays in memory the first tenant
 * may still map. */
static int transfer_memfd(int fd, uint64_t map, uint64_t map_len, const gms_broker_msg *rep,
                          char *why, size_t why_len)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t bytes = map_len - 2 * page;
    char *at = (char *)(uintptr_t)(map + page);
    if (rep->b != bytes || rep->c != 0 || !fd_size_is(fd, bytes)) {
        snprintf(why, why_len, "gmsd's new memory is not the share's size");
        return GMS_E_BACKEND;
    }
    for (uint64_t done = 0; done < bytes;) {
        ssize_t k = pwrite(fd, at + done, bytes - done, (off_t)done);
        if (k <= 0) {
            snprintf(why, why_len, "copying into gmsd's new memory: %s",
                     k < 0 ? strerror(errno) : "short write");
            return k < 0 && errno == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND;
        }
        done += (uint64_t)k;
    }
    if (mmap(at, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        snprintf(why, why_len, "mapping gmsd's new memory: %s", strerror(errno));
        return errno == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND;
    }
    return GMS_OK;
}

/* TRANSFERRED on CUDA memory (lock held): the bytes of the import that
 * hold names move into the lease gmsd made for this tenant (fd, rep->c),
 * which takes the import's place under the same addresses. */
static int transfer_import(broker_backend *bb, uint64_t hold, int fd, const gms_broker_msg *rep,
                           char *why, size_t why_len)
{
    copy_entry *c = bb->copies;
    while (c && c->hold != hold)
        c = c->next;
    if (!c || c->lease || fd < 0 || rep->c == 0 || rep->b != c->imp.size) {
        snprintf(why, why_len, "gmsd's new memory is not the share's");
        return GMS_E_BACKEND;
    }
    int err = gms__vmm_import_move(bb->gpu, &c->imp, fd);
    if (err) {
        snprintf(why, why_len, "moving the buffer into gmsd's new memory: %s", gms__backend_why());
        return err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND;
    }
    c->hold = rep->a;
    c->lease = rep->c;
    return GMS_OK;
}

int gms__broker_transfer(gms_backend *be, uint64_t *hold, uint64_t map, uint64_t map_len,
                         char *why, size_t why_len)
{
    broker_backend *bb = bb_of(be);
    gms_broker_msg *m = calloc(2, sizeof *m);
    if (!m) {
        snprintf(why, why_len, "out of host memory");
        return GMS_E_NO_MEMORY;
    }
    gms_broker_msg *q = &m[0], *rep = &m[1];
    q->type = GMS_BROKER_TRANSFER;
    q->a = *hold;
    int fd = -1;
    pthread_mutex_lock(&bb->lock);
    int rc = share_call(bb, q, rep, &fd, GMS_BROKER_TRANSFERRED, why, why_len);
    if (rc)
        goto out;
    rc = bb->memory == GMS_BROKER_MEMORY_HOST
             ? transfer_memfd(fd, map, map_len, rep, why, why_len)
             : transfer_import(bb, *hold, fd, rep, why, why_len);
    if (rc) { /* the old share stays held (revoked: gmsd already stopped new acquires) */
        hold_release(bb, rep->a);
        if (rep->c)
            lease_release_locked(bb, rep->c);
        goto out;
    }
    hold_release(bb, *hold); /* the old share: freed, its charge back to its owner */
    *hold = rep->a;
out:
    pthread_mutex_unlock(&bb->lock);
    if (fd >= 0)
        close(fd);
    free(m);
    return rc;
}

int gms__broker_revoke(gms_backend *be, uint64_t id, char *why, size_t why_len)
{
    broker_backend *bb = bb_of(be);
    gms_broker_msg req = {.type = GMS_BROKER_REVOKE, .a = id};
    gms_broker_msg *rep = calloc(1, sizeof *rep);
    if (!rep) {
        snprintf(why, why_len, "out of host memory");
        return GMS_E_NO_MEMORY;
    }
    int fd;
    pthread_mutex_lock(&bb->lock);
    int rc = share_call(bb, &req, rep, &fd, GMS_BROKER_REVOKED, why, why_len);
    pthread_mutex_unlock(&bb->lock);
    free(rep);
    return rc;
}

static void broker_destroy(gms_backend *be)
{
    broker_backend *bb = bb_of(be);
    for (lease_entry *e = bb->leases, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    /* Shares still mapped outlive no runtime: their blocks died first. */
    for (share_entry *e = bb->shares, *next; e; e = next) {
        next = e->next;
        if (e->fd >= 0)
            close(e->fd);
        free(e->made);
        free(e);
    }
    for (copy_entry *c = bb->copies, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    close(bb->sock); /* the broker releases whatever is left */
    pthread_mutex_destroy(&bb->lock);
    free(bb);
}

/* A GPU's UUID as nvidia-smi writes it. */
static void uuid_text(const uint8_t u[16], char out[41])
{
    char *p = out + sprintf(out, "GPU-");
    for (int i = 0; i < 16; i++)
        p += sprintf(p, "%s%02x", i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "", u[i]);
}

/* The memory backend of a gmsd that serves CUDA memory: the CUDA backend
 * on device, whose chunks are bb's leases; it destroys bb last. */
static int cuda_leased(broker_backend *bb, int backend, int device, const uint8_t gpu[16],
                       gms_backend **out, char *why, size_t why_len)
{
    if (backend != GMS_BACKEND_AUTO && backend != GMS_BACKEND_CUDA) {
        snprintf(why, why_len, "gmsd serves CUDA memory, and backend %d was asked (take "
                 "GMS_BACKEND_AUTO or GMS_BACKEND_CUDA)", backend);
        return EINVAL;
    }
    int err = gms__backend_cuda_create(device, out);
    if (err) {
        snprintf(why, why_len, "gmsd serves CUDA memory, and this process cannot use it: %s",
                 gms__backend_cuda_why());
        return err;
    }
    /* Its leases are memory of that GPU: mapped for another one, every
     * access would cross the interconnect, or fail. */
    if (memcmp((*out)->device_uuid, gpu, 16) != 0) {
        char theirs[41], ours[41];
        uuid_text(gpu, theirs);
        uuid_text((*out)->device_uuid, ours);
        snprintf(why, why_len, "gmsd serves memory of %s, and device %d of this process is %s: "
                 "open the runtime on gmsd's GPU (gms_runtime_options.device)", theirs, device,
                 ours);
        (*out)->ops->destroy(*out);
        return EINVAL;
    }
    /* A lease made ahead: importing and mapping one costs the driver about
     * 0.1 ms (H200), several times a cuMemAlloc, which the allocation that
     * needs a new lease would otherwise pay. GMS_BROKER_SPARE=0: none. */
    const char *spare = getenv("GMS_BROKER_SPARE");
    gms_vmm_leaser l = {.name = "broker", .ctx = bb, .take = cuda_take,
                        .give_back = cuda_give_back, .done = cuda_done,
                        .spare_size = spare && strcmp(spare, "0") == 0 ? 0 : bb->lease_bytes};
    gms__vmm_set_leaser(*out, &l);
    bb->gpu = *out;
    return 0;
}

int gms__backend_broker_create(const char *path, int backend, int device, uint64_t *lease_bytes,
                               gms_broker_identity *id, gms_backend **out, gms_backend **conn,
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
    int fd, lost;
    err = exchange(bb, &req, -1, &rep, &fd, &lost);
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
    if (rep.memory == GMS_BROKER_MEMORY_HOST && backend != GMS_BACKEND_AUTO &&
        backend != GMS_BACKEND_HOST) {
        snprintf(why, why_len, "gmsd serves host memory, and backend %d was asked (take "
                 "GMS_BACKEND_AUTO or GMS_BACKEND_HOST)", backend);
        err = EINVAL;
        goto fail;
    }
    bb->memory = rep.memory;
    bb->ops = gms__backend_host_ops;
    bb->ops.name = "broker";
    bb->ops.reserve = broker_reserve;
    bb->ops.release = broker_release;
    bb->ops.destroy = broker_destroy;
    /* A lease is gmsd's memory, counted there: it does not move. */
    bb->ops.move_create = NULL;
    bb->ops.move_remap = NULL;
    bb->ops.move_release = NULL;
    bb->base.ops = &bb->ops;
    bb->base.granularity = (uint64_t)sysconf(_SC_PAGESIZE);
    bb->base.no_scrub = NULL;
    *lease_bytes = rep.a;
    bb->lease_bytes = rep.a;
    bb->session = rep.d;
    snprintf(bb->tenant, sizeof bb->tenant, "%s", rep.tenant);
    snprintf(bb->path, sizeof bb->path, "%s", path);
    snprintf(id->tenant, sizeof id->tenant, "%s", rep.tenant);
    id->level = rep.level;
    id->languages = rep.languages;
    id->memory = rep.memory;
    *conn = &bb->base;
    if (bb->memory == GMS_BROKER_MEMORY_HOST) {
        *out = &bb->base;
        return 0;
    }
    if ((err = cuda_leased(bb, backend, device, rep.device, out, why, why_len)) != 0)
        goto fail;
    return 0;
fail:
    if (bb->sock >= 0)
        close(bb->sock);
    pthread_mutex_destroy(&bb->lock);
    free(bb);
    return err;
}
