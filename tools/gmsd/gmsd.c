/*
 * gmsd: the gms broker (docs/broker.md). Owns the memory of every tenant
 * and hands it to client processes as leases: memfds passed over a Unix
 * socket. Who a client is comes from the kernel (SO_PEERCRED), never from
 * the client; the policy file maps its uid or gid to a tenant and quotas.
 *
 * One thread, one poll loop, non-blocking sockets: a client that sends
 * garbage is disconnected, one that never reads is disconnected when its
 * reply does not fit in the socket, and neither can make the broker wait.
 * A client that goes away, by close or by death (kill -9 included: the
 * kernel closes its socket), has every lease wiped and returned to its
 * tenant's quota in the loop turn that sees the hang-up.
 *
 * Every connection (session), lease, share and hold is on record in a
 * state file (state.c), so that the next gmsd, after a stop or a crash,
 * charges what clients still hold as before, until each client process
 * resumes its session or ends (docs/broker.md, "Restarts").
 *
 *   gmsd --policy FILE --socket PATH [--memory host|cuda] [--device N]
 *        [--spare-leases N]
 *        [--metrics WHERE] [--audit-dir DIR --audit-key-file FILE]
 *        [--state FILE] [--check] [--verbose] [--test-lease-delay-us N]
 *
 * --memory cuda serves device memory of CUDA GPU N (default 0) instead of
 * memfds: each lease is one physical allocation, zeroed by gmsd before it
 * is handed out and exported as a POSIX descriptor, which the client
 * imports and maps (docs/broker.md, "CUDA memory"). Making one costs the
 * driver most of a millisecond, so a thread of gmsd's keeps --spare-leases
 * N (default 2) of the policy's lease size made ahead, charged to nobody,
 * and the loop never waits for the driver while spares are ready.
 *
 * --metrics serves each tenant's use in Prometheus' text format
 * (metrics.c); --audit-dir writes the audit trail of every tenant's
 * connections, leases, refusals, violations and reclaimed leases
 * (docs/audit.md's format, read by `gms audit`).
 *
 * --test-lease-delay-us widens the window between a lease's quota check and
 * its charge, for the quota race test (tests/broker/quota.c).
 */
#include "metrics.h"
#include "policy.h"
#include "state.h"
#include "audit/audit.h"
#include "backend/broker/proto.h"
#include "backend/cuda/cuda.h"
#include "backend/vmm/vmm.h"
#include "gms.h"
#include "gms/access.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define FDS_IN_MAX 16 /* descriptors read off one packet; any but RESHARE's is refused */

typedef struct lease {
    uint64_t id;
    uint64_t bytes;
    int fd; /* the broker's own reference, for the wipe; -1 for one taken
               over from the gmsd before (its process holds the memfd) */
    uint64_t handle; /* CUDA memory (--memory cuda): gmsd's own handle; 0 none */
    struct share *share; /* CUDA memory: the mutable share whose memory this is */
    unsigned slot; /* its record in the state file */
    struct lease *next;
} lease;

/* A share across tenants (docs/broker.md, "Sharing across tenants"): a
 * memfd of its own holding exactly the shared buffer's pages, made by
 * gmsd, charged to the owner's tenant, and handed to each holder. */
typedef struct hold {
    uint64_t id;     /* random: the holder's name for it */
    uint64_t serial; /* the connection holding it */
    int writer;      /* may write: the single-writer rule counts it */
    unsigned slot;
    struct hold *next;
} hold;

typedef struct share {
    uint64_t id; /* random; what gms_share returns and others acquire by */
    int fd;      /* gmsd's own, read-write (write-sealed when immutable); -1
                    for one taken over from the gmsd before, or of CUDA memory */
    uint64_t handle; /* CUDA memory: gmsd's copy of the buffer, which each
                        reader gets a copy of (0: none) */
    lease *lease; /* CUDA memory, mutable: the owner's lease whose memory
                     this is (fd: a descriptor of it), which charges it while
                     it lives; NULL: the share is charged itself */
    uint64_t bytes, req, off; /* the memfd; the buffer's bytes and offset in it */
    gmsd_tenant *owner;       /* charged for it until its last hold goes */
    uint64_t owner_serial;    /* the owner's connection; 0 once it is gone */
    int immutable, published, revoked;
    int adopted; /* taken over from the gmsd before: no memfd to hand out
                    until its owner hands it back (RESHARE) */
    uint64_t ino; /* the memfd's inode: the one file RESHARE takes back */
    uint64_t moved_to; /* TRANSFER: the share that took this one over */
    uint32_t ngrants;
    gms_broker_grant grants[GMS_BROKER_GRANTS_MAX];
    hold *holds;
    unsigned slot;
    struct share *next;
} share;

#define HOLDS_MAX 1024 /* per connection: each is a malloc and a mapping */

/* A connection, or an orphan: a connection of the gmsd before this one
 * (docs/broker.md, "Restarts"), whose process still runs and may come
 * back to resume it; until then, or until the process ends, what it held
 * stays charged. */
typedef struct client {
    int sock;        /* -1: an orphan */
    uint64_t serial; /* the connection's number since gmsd started: the trail's context */
    uint64_t session; /* random: what the client resumes after a restart by */
    uint64_t start;  /* its process's start time, with pid naming the process */
    pid_t pid;
    uid_t uid;
    gid_t gid;
    gmsd_tenant *tenant; /* never NULL: unknown peers are not kept */
    lease *leases;
    unsigned holds; /* of shares, this connection's */
    unsigned slot;  /* its session record */
    int pidfd;      /* an orphan's: readable once its process ends */
    int ended;      /* an orphan whose process ended (this loop turn) */
} client;

static gmsd_policy policy;
static client clients[MAX_CLIENTS];
static client orphans[MAX_CLIENTS];
/* The listener, clients, metrics, orphans' processes. */
static struct pollfd pfds[2 * MAX_CLIENTS + 2];
static unsigned nclients, norphans;
static int verbose;
static gms_backend *gpu; /* --memory cuda: leases are its device memory; NULL: memfds */
#define SPARES_MAX 16
typedef struct spare {
    uint64_t handle;
    int fd;
} spare;
/* Spare leases, made by spare_maker; everything below under spare_lock. */
static spare spares[SPARES_MAX]; /* made, zeroed and exported, charged to nobody */
static unsigned nspares, spares_wanted = 2;
static int spares_stop;
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spare_wake = PTHREAD_COND_INITIALIZER;
static pthread_t spare_thread;

/* The spare maker: tops the spares up to spares_wanted, then sleeps until
 * one is taken. A failure (the device full) is tried again a second
 * later: meanwhile leases are made on request. */
static void *spare_maker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&spare_lock);
    while (!spares_stop) {
        if (nspares >= spares_wanted) {
            pthread_cond_wait(&spare_wake, &spare_lock);
            continue;
        }
        pthread_mutex_unlock(&spare_lock);
        spare s;
        int err = gms__vmm_lease_make(gpu, policy.lease_bytes, NULL, &s.handle, &s.fd);
        pthread_mutex_lock(&spare_lock);
        if (!err) {
            spares[nspares++] = s;
        } else {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec += 1;
            pthread_cond_timedwait(&spare_wake, &spare_lock, &t);
        }
    }
    pthread_mutex_unlock(&spare_lock);
    return NULL;
}

/* A spare lease of the policy's size into *s; 0 when none is ready. */
static int spare_take(spare *s)
{
    pthread_mutex_lock(&spare_lock);
    int got = nspares > 0;
    if (got)
        *s = spares[--nspares];
    pthread_cond_signal(&spare_wake);
    pthread_mutex_unlock(&spare_lock);
    return got;
}

/* Stops the maker and frees the spares (at gmsd's stop). */
static void spares_end(void)
{
    pthread_mutex_lock(&spare_lock);
    spares_stop = 1;
    pthread_cond_signal(&spare_wake);
    pthread_mutex_unlock(&spare_lock);
    pthread_join(spare_thread, NULL);
    while (nspares) {
        nspares--;
        close(spares[nspares].fd);
        gms__vmm_lease_free(gpu, spares[nspares].handle);
    }
}
static unsigned lease_delay_us;
static gmsd_counters totals;
static uint64_t serials;
static gms_audit *trail; /* NULL: no trail */
static volatile sig_atomic_t stopping;
static share *shares;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gmsd: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* One record of the trail, for client c (NULL: none); fmt: the detail. */
__attribute__((format(printf, 6, 7))) static void audit(gms_audit_op op, int result,
                                                        const client *c, uint64_t id,
                                                        uint64_t bytes, const char *fmt, ...)
{
    if (!trail)
        return;
    char user[64] = "", detail[200] = "";
    if (c)
        snprintf(user, sizeof user, "uid%u/pid%d", (unsigned)c->uid, (int)c->pid);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
    }
    gms_audit_event e = {.op = op, .result = result, .handle = id, .size = bytes,
                         .context_id = c ? c->serial : 0,
                         .tenant = c && c->tenant ? c->tenant->name : NULL,
                         .user = c ? user : NULL, .level = c && c->tenant ? (int)c->tenant->level : -1,
                         .language = -1, .detail = fmt ? detail : NULL};
    gms__audit_emit(trail, &e);
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* Writes a record of the state file; its slot, or -1 with errno set. */
static long record(uint32_t kind, uint64_t id, uint64_t session, uint64_t share_id, uint64_t bytes,
                   uint64_t req, uint64_t off, uint32_t flags, const char *tenant)
{
    gmsd_rec r = {.kind = kind, .flags = flags, .id = id, .session = session, .share = share_id,
                  .bytes = bytes, .req = req, .off = off};
    if (tenant)
        snprintf(r.tenant, sizeof r.tenant, "%s", tenant);
    return gmsd_state_put(&r);
}

static uint32_t share_flags(const share *sh)
{
    return (sh->immutable ? GMSD_SHARE_IMMUTABLE : 0) | (sh->revoked ? GMSD_SHARE_REVOKED : 0);
}

/* The state record of share sh, owned by the connection of session: with
 * its memfd's inode, so that a gmsd started later takes back that file
 * alone (RESHARE), whether it was revoked, and the lease whose memory it
 * is (a mutable share of CUDA memory: while that lease is on record, it
 * charges the memory, not the share). */
static long record_share(share *sh, uint64_t session)
{
    struct stat st;
    sh->ino = sh->fd >= 0 && fstat(sh->fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
    gmsd_rec r = {.kind = GMSD_REC_SHARE, .flags = share_flags(sh), .id = sh->id,
                  .session = session, .share = sh->lease ? sh->lease->id : 0,
                  .bytes = sh->bytes, .req = sh->req, .off = sh->off, .start = sh->ino};
    snprintf(r.tenant, sizeof r.tenant, "%s", sh->owner->name);
    return gmsd_state_put(&r);
}

/* No new acquires of sh from now on, on record too: a gmsd started later
 * keeps it so even when its owner hands its memfd back. */
static void share_withdraw(share *sh)
{
    sh->revoked = 1;
    gmsd_state_set_flags(sh->slot, share_flags(sh));
}

/* Wipes a lease's memory (the pages go back to the kernel, so nothing of
 * it reaches the next tenant) and gives it back to the quota. */
static void lease_drop(client *c, lease *l)
{
    gmsd_state_clear(l->slot);
    if (l->share) {
        /* Its memory is a mutable share's, which other processes map: it
         * stays theirs, and charged, until the share's last release. */
        l->share->lease = NULL;
        close(l->fd);
        if (l->handle) /* none when taken over from the gmsd before */
            gms__vmm_lease_free(gpu, l->handle);
        audit(GMS_AUDIT_FREE, GMS_OK, c, l->id, l->bytes,
              "lease released; its memory stays with share 0x%016llx, charged to it until its "
              "last release", (unsigned long long)l->share->id);
        free(l);
        return;
    }
    if (l->handle) {
        close(l->fd);
        gms__vmm_lease_free(gpu, l->handle);
        audit(GMS_AUDIT_WIPE, GMS_OK, c, l->id, l->bytes,
              "lease freed (device memory: zeroed by gmsd before it was handed out)");
    } else if (l->fd >= 0) {
        if (fallocate(l->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)l->bytes) != 0)
            say("lease 0x%016llx: wipe failed: %s", (unsigned long long)l->id, strerror(errno));
        close(l->fd);
        audit(GMS_AUDIT_WIPE, GMS_OK, c, l->id, l->bytes, "lease wiped (pages punched out)");
    } else {
        audit(GMS_AUDIT_WIPE, GMS_OK, c, l->id, l->bytes,
              "lease taken over from the gmsd before: not wiped (gmsd holds no descriptor of it); "
              "its pages go with its process's last reference");
    }
    c->tenant->used_bytes -= l->bytes;
    c->tenant->used_leases--;
    free(l);
}

static void shares_drop(client *c, const char *why);

/* Takes lease l off c's list and drops it: a lease made for a request that
 * then failed. */
static void lease_forget(client *c, lease *l)
{
    lease **pp = &c->leases;
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    lease_drop(c, l);
}

static uint64_t lease_count(const client *c)
{
    uint64_t n = 0;
    for (const lease *l = c->leases; l; l = l->next)
        n++;
    return n;
}

/* A connection or an orphan ends: every lease wiped and returned, every
 * hold released, its shares revoked, its session record gone. */
static void session_end(client *c, const char *why)
{
    uint64_t n = 0, bytes = 0;
    while (c->leases) {
        lease *l = c->leases;
        c->leases = l->next;
        n++;
        bytes += l->bytes;
        audit(GMS_AUDIT_LEAK, GMS_OK, c, l->id, l->bytes,
              "connection ended (%s) holding the lease: wiped and returned to the quota",
              why ? why : "closed or died");
        lease_drop(c, l);
    }
    shares_drop(c, why);
    c->tenant->n.reclaimed_leases += n;
    c->tenant->n.reclaimed_bytes += bytes;
    audit(GMS_AUDIT_CONTEXT_CLOSE, GMS_OK, c, 0, n, "%s", why ? why : "connection closed");
    if (n || verbose || why)
        say("pid %d uid %u (%s) gone%s%s: %llu lease%s (%llu bytes) wiped and returned",
            (int)c->pid, (unsigned)c->uid, c->tenant ? c->tenant->name : "no tenant",
            why ? ": " : "", why ? why : "", (unsigned long long)n, n == 1 ? "" : "s",
            (unsigned long long)bytes);
    gmsd_state_clear(c->slot);
}

static void client_drop(unsigned i, const char *why)
{
    client *c = &clients[i];
    session_end(c, why);
    close(c->sock);
    c->tenant->connections--;
    totals.connections--;
    nclients--;
    clients[i] = clients[nclients];
    pfds[i + 1] = pfds[nclients + 1];
}

/* An orphan's process ended (or the orphan cannot be kept): as a
 * connection's end. */
static void orphan_drop(unsigned i, const char *why)
{
    client *o = &orphans[i];
    session_end(o, why);
    if (o->pidfd >= 0)
        close(o->pidfd);
    orphans[i] = orphans[--norphans];
    totals.orphans = norphans;
}

/* Sends a reply without waiting; -1 when it cannot go now (the client is
 * not reading: it is dropped by the caller). */
static int reply(client *c, const gms_broker_msg *m, int fd)
{
    return gms__broker_send(c->sock, m, fd, MSG_DONTWAIT);
}

/* Refuses request seq with code and the text, on the trail as op. */
__attribute__((format(printf, 6, 0))) static int vrefuse(client *c, uint32_t seq, int code,
                                                         gms_audit_op op, uint64_t id,
                                                         const char *fmt, va_list ap)
{
    gms_broker_msg m = {.type = GMS_BROKER_ERROR, .seq = seq, .code = code};
    vsnprintf(m.text, sizeof m.text, fmt, ap);
    if (verbose)
        say("pid %d uid %u: refused: %s", (int)c->pid, (unsigned)c->uid, m.text);
    if (code == GMS_E_QUOTA)
        c->tenant->n.quota_refusals++;
    if (code == GMS_E_INVALID_HANDLE)
        c->tenant->n.violations++;
    audit(code == GMS_E_QUOTA            ? GMS_AUDIT_QUOTA_REFUSED
          : code == GMS_E_INVALID_HANDLE ? GMS_AUDIT_VIOLATION
                                         : op,
          code, c, id, 0, "%s", m.text);
    return reply(c, &m, -1);
}

__attribute__((format(printf, 4, 5))) static int refuse(client *c, uint32_t seq, int code,
                                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vrefuse(c, seq, code, GMS_AUDIT_ALLOC, 0, fmt, ap);
    va_end(ap);
    return rc;
}

/* A refusal of a share request: access_denied on the trail (a quota or an
 * unknown id as refuse's), counted as a share refusal. */
__attribute__((format(printf, 5, 6))) static int refuse_share(client *c, uint32_t seq, int code,
                                                              uint64_t id, const char *fmt, ...)
{
    if (code != GMS_E_QUOTA && code != GMS_E_INVALID_HANDLE && code != GMS_E_INVALID_ARG)
        c->tenant->n.share_refusals++;
    va_list ap;
    va_start(ap, fmt);
    int rc = vrefuse(c, seq, code, code == GMS_E_INVALID_ARG ? GMS_AUDIT_SHARE : GMS_AUDIT_ACCESS_DENIED,
                     id, fmt, ap);
    va_end(ap);
    return rc;
}

/* Whether tenant t may take one more lease (a share counts as one) of
 * bytes. */
static int quota_fits(const gmsd_tenant *t, uint64_t bytes)
{
    return t->used_leases < t->quota_leases && bytes <= t->quota_bytes - t->used_bytes;
}

/* Refuses request seq, whose `what` of bytes quota_fits refused. */
static int refuse_quota(client *c, uint32_t seq, const char *what, uint64_t bytes)
{
    const gmsd_tenant *t = c->tenant;
    return refuse(c, seq, GMS_E_QUOTA,
                  "tenant '%s': %llu of %llu bytes and %llu of %llu leases in use; %s of %llu "
                  "bytes refused",
                  t->name, (unsigned long long)t->used_bytes, (unsigned long long)t->quota_bytes,
                  (unsigned long long)t->used_leases, (unsigned long long)t->quota_leases, what,
                  (unsigned long long)bytes);
}

/* The driver's words for a failure of its (gms__vmm_lease_make notes
 * them), else errno's. */
static const char *driver_why(int err)
{
    return gpu && gms__backend_cuda_why()[0] ? gms__backend_cuda_why() : strerror(err);
}

/* A new lease of bytes for c, charged to its tenant (quota checked by the
 * caller), on record and on c's list; `what` names it in the trail. On
 * CUDA memory, `from` (NULL: none) gives the bytes it starts with. NULL
 * when refused: the refusal of request seq is sent, *rc its result. */
static lease *lease_add(client *c, uint32_t seq, uint64_t bytes, const gms_vmm_source *from,
                        const char *what, int *rc)
{
    gmsd_tenant *t = c->tenant;
    if (lease_delay_us)
        usleep(lease_delay_us);
    lease *l = calloc(1, sizeof *l);
    if (!l) {
        *rc = refuse(c, seq, GMS_E_NO_MEMORY, "gmsd is out of memory");
        return NULL;
    }
    int err = 0;
    spare s;
    if (gpu && !from && bytes == policy.lease_bytes && spare_take(&s)) {
        l->handle = s.handle;
        l->fd = s.fd;
    } else if (gpu) {
        err = gms__vmm_lease_make(gpu, bytes, from, &l->handle, &l->fd);
    } else {
        char name[80];
        snprintf(name, sizeof name, "gmsd-%s", t->name);
        l->fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        err = l->fd < 0 ? errno : 0;
        /* The client may not resize it: its size is what the quota counts. */
        if (!err && (ftruncate(l->fd, (off_t)bytes) != 0 ||
                     fcntl(l->fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0))
            err = errno;
    }
    while (!err && !l->id)
        if (getrandom(&l->id, sizeof l->id, 0) != sizeof l->id)
            err = errno;
    /* On record before it is granted: a gmsd started after this one knows it. */
    long slot = err ? -1 : record(GMSD_REC_LEASE, l->id, c->session, 0, bytes, 0, 0, 0, NULL);
    if (!err && slot < 0)
        err = errno;
    if (err) {
        const char *why = driver_why(err);
        if (l->fd >= 0)
            close(l->fd);
        if (l->handle)
            gms__vmm_lease_free(gpu, l->handle);
        free(l);
        *rc = refuse(c, seq, err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND, "%s of %llu bytes: %s",
                     gpu ? "device memory" : "memfd", (unsigned long long)bytes, why);
        return NULL;
    }
    l->slot = (unsigned)slot;
    l->bytes = bytes;
    t->used_bytes += bytes;
    t->used_leases++;
    l->next = c->leases;
    c->leases = l;
    t->n.leases_granted++;
    audit(GMS_AUDIT_ALLOC, GMS_OK, c, l->id, bytes, "%s", what);
    if (verbose)
        say("pid %d uid %u (%s): %s 0x%016llx of %llu bytes", (int)c->pid, (unsigned)c->uid,
            t->name, what, (unsigned long long)l->id, (unsigned long long)bytes);
    return l;
}

static int lease_new(client *c, uint32_t seq, uint64_t bytes)
{
    long page = gpu ? (long)gpu->granularity : sysconf(_SC_PAGESIZE);
    if (bytes == 0 || bytes % (uint64_t)page)
        return refuse(c, seq, GMS_E_INVALID_ARG,
                      "lease of %llu bytes: must be a positive multiple of %ld",
                      (unsigned long long)bytes, page);
    if (!quota_fits(c->tenant, bytes))
        return refuse_quota(c, seq, "a lease", bytes);
    int rc = 0;
    lease *l = lease_add(c, seq, bytes, NULL, "lease", &rc);
    if (!l)
        return rc;
    gms_broker_msg m = {.type = GMS_BROKER_LEASED, .seq = seq, .a = l->id, .b = bytes};
    return reply(c, &m, l->fd); /* on failure the drop returns it */
}

static int lease_release(client *c, uint32_t seq, uint64_t id)
{
    lease **pp = &c->leases;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    if (!*pp) /* forged, stale, or another connection's */
        return refuse(c, seq, GMS_E_INVALID_HANDLE,
                      "lease 0x%016llx: not a live lease of this connection",
                      (unsigned long long)id);
    lease *l = *pp;
    *pp = l->next;
    audit(GMS_AUDIT_FREE, GMS_OK, c, l->id, l->bytes, "lease released");
    lease_drop(c, l);
    gms_broker_msg m = {.type = GMS_BROKER_RELEASED, .seq = seq, .a = id};
    return reply(c, &m, -1);
}

/* ---- sharing across tenants ---- */

static uint64_t random_id(void)
{
    uint64_t id = 0;
    while (!id)
        if (getrandom(&id, sizeof id, 0) != sizeof id)
            id = 0;
    return id;
}

static share *share_find(uint64_t id)
{
    for (share *sh = shares; sh; sh = sh->next)
        if (sh->id == id)
            return sh;
    return NULL;
}

/* Frees a share whose last hold went: wiped (unless write-sealed, when
 * the kernel refuses the punch and its pages go with the last reference),
 * closed, and its charge returned to the owner's tenant. */
static void share_free(client *by, share *sh)
{
    share **pp = &shares;
    while (*pp != sh)
        pp = &(*pp)->next;
    *pp = sh->next;
    gmsd_state_clear(sh->slot);
    if (sh->fd >= 0 && !sh->immutable && !gpu &&
        fallocate(sh->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)sh->bytes) != 0)
        say("share 0x%016llx: wipe failed: %s", (unsigned long long)sh->id, strerror(errno));
    if (sh->fd >= 0)
        close(sh->fd);
    if (sh->handle)
        gms__vmm_lease_free(gpu, sh->handle);
    if (sh->lease) { /* the lease still charges its memory */
        sh->lease->share = NULL;
    } else {
        sh->owner->used_bytes -= sh->bytes;
        sh->owner->used_leases--;
    }
    sh->owner->live_shares--;
    audit(GMS_AUDIT_WIPE, GMS_OK, by, sh->id, sh->bytes,
          "share of tenant '%s' freed by its last release%s", sh->owner->name,
          sh->handle ? " (device memory: gmsd's copy released)"
          : gpu && sh->fd >= 0 ? " (device memory: the owner's lease's, which gmsd zeroed before "
                                 "it was handed out; the driver frees it with its last mapping)"
          : sh->fd < 0 ? " (taken over from the gmsd before: its pages go with the last mapping)"
          : sh->immutable ? " (write-sealed: its pages go with the memfd)"
                          : ": pages punched out");
    free(sh);
}

/* Drops hold *pp of share sh, of connection c; frees the share when it
 * was the last (then returns 1: sh is gone). */
static int hold_drop(client *c, share *sh, hold **pp)
{
    hold *h = *pp;
    *pp = h->next;
    gmsd_state_clear(h->slot);
    free(h);
    c->holds--;
    if (sh->holds)
        return 0;
    share_free(c, sh);
    return 1;
}

/* A new hold of c on sh, on record; NULL when out of memory or the state
 * file cannot grow. */
static hold *hold_new(client *c, share *sh, int writer)
{
    hold *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->id = random_id();
    long slot = record(GMSD_REC_HOLD, h->id, c->session, sh->id, 0, 0, 0, (uint32_t)writer, NULL);
    if (slot < 0) {
        free(h);
        return NULL;
    }
    h->slot = (unsigned)slot;
    h->serial = c->serial;
    h->writer = writer;
    h->next = sh->holds;
    sh->holds = h;
    c->holds++;
    return h;
}

/* A share's own memory, charged to tenant t: a memfd of bytes that can
 * neither grow nor shrink (plus the seals in `more`). Named "gmsd-share",
 * not "gmsd-<tenant>": nothing of the tenant's leases is in it. 0, or the
 * errno (*fd then -1 or a descriptor the caller closes). */
static int share_memfd(const gmsd_tenant *t, uint64_t bytes, int more, int *fd)
{
    char name[80];
    snprintf(name, sizeof name, "gmsd-share:%s", t->name);
    *fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (*fd < 0)
        return errno;
    if (ftruncate(*fd, (off_t)bytes) != 0 ||
        fcntl(*fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | more) != 0)
        return errno;
    return 0;
}

/* A share of CUDA memory: gmsd copies the buffer's bytes (m->b at m->c
 * in the owner's lease l) into device memory of its own, which no process
 * maps; each reader gets a copy of that (share_acquire). 0 with
 * sh->handle, or an errno value. */
static int share_copy_in(const gms_broker_msg *m, const lease *l, share *sh)
{
    gms_vmm_source from = {.handle = l->handle, .size = l->bytes, .off = m->c, .len = m->b};
    return gms__vmm_lease_make(gpu, m->a, &from, &sh->handle, NULL); /* nobody maps it */
}

/* The owner's lease holding a share of CUDA memory, checked: NULL when
 * refused (the refusal sent, *rc its result). A mutable share hands out
 * the memory itself, so it must be a whole lease, which then holds the
 * shared buffer alone (the client gives a GMS_ALLOC_PAGES buffer a lease
 * of its own); an immutable one is copied from anywhere in a lease. */
static lease *share_source(client *c, const gms_broker_msg *m, int *rc)
{
    lease *l = c->leases;
    while (l && l->id != m->d)
        l = l->next;
    if (!l)
        *rc = refuse_share(c, m->seq, GMS_E_INVALID_HANDLE, 0,
                           "share: lease 0x%016llx is not a live lease of this connection",
                           (unsigned long long)m->d);
    else if (!l->handle)
        *rc = refuse_share(c, m->seq, GMS_E_UNSUPPORTED, 0,
                           "share: lease 0x%016llx was taken over from the gmsd before, which "
                           "kept its handle: share a buffer of a lease granted since",
                           (unsigned long long)l->id);
    else if (m->c > l->bytes || m->b > l->bytes - m->c)
        *rc = refuse_share(c, m->seq, GMS_E_INVALID_ARG, 0,
                           "share of %llu bytes at %llu: past the end of lease 0x%016llx (%llu "
                           "bytes)", (unsigned long long)m->b, (unsigned long long)m->c,
                           (unsigned long long)l->id, (unsigned long long)l->bytes);
    else if (!m->flags && (m->c != 0 || m->a != l->bytes))
        *rc = refuse_share(c, m->seq, GMS_E_INVALID_ARG, 0,
                           "share: a mutable share of CUDA memory hands out the memory itself, "
                           "so it is a whole lease (%llu bytes of lease 0x%016llx asked for, of "
                           "%llu): allocate the buffer with GMS_ALLOC_PAGES, which gets a lease "
                           "of its own", (unsigned long long)m->a, (unsigned long long)l->id,
                           (unsigned long long)l->bytes);
    else if (!m->flags && l->share)
        *rc = refuse_share(c, m->seq, GMS_E_BUSY, 0, "share: lease 0x%016llx is shared already",
                           (unsigned long long)l->id);
    else
        return l;
    return NULL;
}

/* The first of m's grants with a mode or language out of range, or
 * m->ngrants when none is. */
static uint32_t grant_bad(const gms_broker_msg *m)
{
    uint32_t i = 0;
    for (; i < m->ngrants; i++) {
        const gms_broker_grant *g = &m->grants[i];
        if ((g->mode != GMS_ACCESS_READ && g->mode != GMS_ACCESS_READ_WRITE) ||
            g->language < GMS_ANY_LANGUAGE || g->language > GMS_LANG_OTHER)
            break;
    }
    return i;
}

static int share_new(client *c, const gms_broker_msg *m)
{
    gmsd_tenant *t = c->tenant;
    uint64_t unit = gpu ? gpu->granularity : (uint64_t)sysconf(_SC_PAGESIZE);
    /* On CUDA memory an immutable share holds the buffer at its start, in
     * the fewest whole granules (m->c and m->d place it in the owner's
     * lease), and a mutable one is lease m->d (share_source); on the host,
     * in the owner's block's whole pages, at offset m->c. */
    int bad = gpu ? m->b > m->a || (m->flags && m->a - m->b >= unit)
                  : m->c > m->a || m->b > m->a - m->c || m->d != 0;
    if (m->a == 0 || m->a % unit || m->b == 0 || bad)
        return refuse_share(c, m->seq, GMS_E_INVALID_ARG, 0,
                            "share of %llu bytes at %llu in %llu: must be whole %s holding "
                            "the buffer", (unsigned long long)m->b, (unsigned long long)m->c,
                            (unsigned long long)m->a, gpu ? "granules, the fewest" : "pages");
    uint32_t bad_grant = grant_bad(m);
    if (bad_grant < m->ngrants)
        return refuse_share(c, m->seq, GMS_E_INVALID_ARG, 0,
                            "share: grant %u: mode %u or language %d out of range", bad_grant,
                            m->grants[bad_grant].mode, m->grants[bad_grant].language);
    int rc = 0;
    lease *from = gpu ? share_source(c, m, &rc) : NULL;
    if (gpu && !from)
        return rc;
    /* A mutable share of CUDA memory is the owner's lease itself, which
     * already charges it. */
    lease *of = gpu && !m->flags ? from : NULL;
    if (c->holds >= HOLDS_MAX)
        return refuse_share(c, m->seq, GMS_E_QUOTA, 0, "connection holds %u shares, the most",
                            c->holds);
    if (!of && !quota_fits(t, m->a))
        return refuse_quota(c, m->seq, "a share", m->a);
    share *sh = calloc(1, sizeof *sh);
    if (!sh)
        return refuse(c, m->seq, GMS_E_NO_MEMORY, "gmsd is out of memory");
    sh->fd = -1;
    int err = of ? ((sh->fd = fcntl(of->fd, F_DUPFD_CLOEXEC, 0)) < 0 ? errno : 0)
              : gpu ? share_copy_in(m, from, sh) : 0;
    if (err) {
        free(sh);
        return refuse(c, m->seq, err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND,
                      "%s the share's %llu bytes: %s", of ? "a descriptor of" : "copying",
                      (unsigned long long)m->b, of ? strerror(err) : driver_why(err));
    }
    if (!gpu && (err = share_memfd(t, m->a, 0, &sh->fd)) != 0) {
        if (sh->fd >= 0)
            close(sh->fd);
        free(sh);
        return refuse(c, m->seq, err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND,
                      "memfd of %llu bytes: %s", (unsigned long long)m->a, strerror(err));
    }
    sh->id = random_id();
    sh->bytes = m->a;
    sh->req = m->b;
    sh->off = gpu ? 0 : m->c;
    sh->owner = t;
    sh->owner_serial = c->serial;
    sh->immutable = (int)m->flags;
    sh->ngrants = m->ngrants;
    memcpy(sh->grants, m->grants, sizeof sh->grants);
    sh->lease = of;
    long slot = record_share(sh, c->session);
    hold *h = slot < 0 ? NULL : (sh->slot = (unsigned)slot, hold_new(c, sh, !m->flags));
    if (!h) {
        err = errno;
        if (slot >= 0)
            gmsd_state_clear((unsigned)slot);
        if (sh->fd >= 0)
            close(sh->fd);
        if (sh->handle)
            gms__vmm_lease_free(gpu, sh->handle);
        free(sh);
        return refuse(c, m->seq, GMS_E_NO_MEMORY, "gmsd cannot keep the share: %s", strerror(err));
    }
    sh->next = shares;
    shares = sh;
    if (of) {
        of->share = sh;
    } else {
        t->used_bytes += sh->bytes;
        t->used_leases++;
    }
    t->live_shares++;
    t->n.shares++;
    audit(GMS_AUDIT_SHARE, GMS_OK, c, sh->id, sh->req, "share of %llu bytes, %s, %u grant%s%s",
          (unsigned long long)sh->bytes, sh->immutable ? "immutable" : "mutable", sh->ngrants,
          sh->ngrants == 1 ? "" : "s",
          of ? ", device memory: the owner's lease itself"
          : gpu ? ", device memory copied by gmsd" : "");
    gms_broker_msg r = {.type = GMS_BROKER_SHARED, .seq = m->seq, .a = sh->id, .b = h->id,
                        .c = sh->bytes};
    return reply(c, &r, gpu ? -1 : sh->fd); /* CUDA memory: none, the owner has it */
}

/* The owner has filled the memfd: an immutable share is sealed against
 * every write (which the kernel refuses while a writable mapping of it
 * exists), and the share can be acquired from now on. */
static int share_publish(client *c, const gms_broker_msg *m)
{
    share *sh = share_find(m->a);
    if (!sh || sh->published || sh->owner_serial != c->serial)
        return refuse_share(c, m->seq, GMS_E_INVALID_HANDLE, m->a,
                            "share 0x%016llx: not an unpublished share of this connection",
                            (unsigned long long)m->a);
    int seals = F_SEAL_SEAL | (sh->immutable ? F_SEAL_WRITE : 0);
    if (sh->fd >= 0 && !gpu && fcntl(sh->fd, F_ADD_SEALS, seals) != 0)
        return refuse_share(c, m->seq, GMS_E_BUSY, sh->id,
                            "share 0x%016llx: cannot seal it (%s): the owner keeps a writable "
                            "mapping or sealed it itself", (unsigned long long)sh->id,
                            strerror(errno));
    sh->published = 1;
    gms_broker_msg r = {.type = GMS_BROKER_PUBLISHED, .seq = m->seq, .a = sh->id};
    return reply(c, &r, -1);
}

/* The most the grants let c's tenant, user and language take: 0 none. */
static uint32_t share_granted(const share *sh, const client *c, const gms_broker_msg *m)
{
    uint32_t best = 0;
    for (uint32_t i = 0; i < sh->ngrants; i++) {
        const gms_broker_grant *g = &sh->grants[i];
        if ((!g->tenant[0] || strcmp(g->tenant, c->tenant->name) == 0) &&
            (!g->user[0] || strcmp(g->user, m->user) == 0) &&
            (g->language == GMS_ANY_LANGUAGE || g->language == m->language) && g->mode > best)
            best = g->mode;
    }
    return best;
}

static int share_acquire(client *c, const gms_broker_msg *m)
{
    share *sh = share_find(m->a);
    if (!sh || !sh->published)
        return refuse_share(c, m->seq, GMS_E_INVALID_HANDLE, m->a,
                            "share 0x%016llx does not exist (never made, forged, or freed)",
                            (unsigned long long)m->a);
    if (m->mode != GMS_ACCESS_READ && m->mode != GMS_ACCESS_READ_WRITE &&
        m->mode != GMS_ACCESS_ATOMIC)
        return refuse_share(c, m->seq, GMS_E_INVALID_ARG, sh->id, "acquire: mode %u", m->mode);
    uint32_t need = m->mode == GMS_ACCESS_ATOMIC ? GMS_ACCESS_READ_WRITE : m->mode;
    uint32_t may = share_granted(sh, c, m);
    int writer = 0;
    for (hold *h = sh->holds; h; h = h->next)
        writer |= h->writer;
    const char *who = c->tenant->name;
    if (sh->adopted && !sh->revoked)
        return refuse_share(c, m->seq, GMS_E_ACCESS_DENIED, sh->id,
                            "share 0x%016llx cannot be acquired now: gmsd restarted since it was "
                            "made, and its owner has not handed its memory back (its holders keep "
                            "it)", (unsigned long long)sh->id);
    if (sh->revoked)
        return refuse_share(c, m->seq, GMS_E_ACCESS_DENIED, sh->id,
                            "share 0x%016llx was revoked%s", (unsigned long long)sh->id,
                            sh->moved_to ? " (another tenant took it over)"
                            : sh->owner_serial ? ""
                                               : " (its owner's connection ended)");
    if (!may)
        return refuse_share(c, m->seq, GMS_E_ACCESS_DENIED, sh->id,
                            "tenant '%s' user '%s' language %d is not on the access list of "
                            "share 0x%016llx", who, m->user, m->language,
                            (unsigned long long)sh->id);
    if (need == GMS_ACCESS_READ_WRITE && sh->immutable)
        return refuse_share(c, m->seq, GMS_E_READ_ONLY, sh->id,
                            "share 0x%016llx is immutable: read only", (unsigned long long)sh->id);
    if (need > may)
        return refuse_share(c, m->seq, GMS_E_ACCESS_DENIED, sh->id,
                            "tenant '%s' user '%s' may only read share 0x%016llx", who, m->user,
                            (unsigned long long)sh->id);
    if (gpu && !sh->immutable && m->mode == GMS_ACCESS_READ)
        return refuse_share(c, m->seq, GMS_E_UNSUPPORTED, sh->id,
                            "share 0x%016llx is mutable device memory, which whoever imports it "
                            "can map writable: a read-only hold cannot be kept to, so acquire it "
                            "read-write or atomic (if its grants allow), or have it shared "
                            "immutable (each reader then gets a copy)", (unsigned long long)sh->id);
    if (m->mode == GMS_ACCESS_READ_WRITE && writer)
        return refuse_share(c, m->seq, GMS_E_BUSY, sh->id,
                            "share 0x%016llx already has a writer (one at a time)",
                            (unsigned long long)sh->id);
    if (c->holds >= HOLDS_MAX)
        return refuse_share(c, m->seq, GMS_E_QUOTA, sh->id, "connection holds %u shares, the most",
                            c->holds);
    /* CUDA memory, immutable: a reader gets device memory of its own,
     * charged to its tenant, with the share's bytes copied in: an imported
     * allocation can be mapped writable by whoever holds it, so what it
     * writes reaches nobody else. A lease of c's, so that its release, c's
     * death and a restart return it as any lease. Mutable: every holder
     * gets a descriptor of the owner's lease itself (sh->fd). */
    lease *copy = NULL;
    if (gpu && sh->immutable) {
        char what[48];
        snprintf(what, sizeof what, "a copy of share 0x%016llx", (unsigned long long)sh->id);
        if (!quota_fits(c->tenant, sh->bytes))
            return refuse_quota(c, m->seq, what, sh->bytes);
        gms_vmm_source from = {.handle = sh->handle, .size = sh->bytes, .len = sh->req};
        int rc = 0;
        if (!(copy = lease_add(c, m->seq, sh->bytes, &from, what, &rc)))
            return rc;
    }
    /* A reader gets a descriptor of its own open file, read-only: the
     * kernel then refuses a writable shared mapping of it and an
     * mprotect to write. */
    int fd = copy ? copy->fd : sh->fd;
    if (need == GMS_ACCESS_READ && !copy) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", sh->fd);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return refuse(c, m->seq, GMS_E_BACKEND, "reopening share 0x%016llx read-only: %s",
                          (unsigned long long)sh->id, strerror(errno));
    }
    hold *h = hold_new(c, sh, m->mode == GMS_ACCESS_READ_WRITE);
    if (!h) {
        int err = errno;
        if (copy)
            lease_forget(c, copy);
        else if (fd != sh->fd)
            close(fd);
        return refuse(c, m->seq, GMS_E_NO_MEMORY, "gmsd cannot keep the hold: %s", strerror(err));
    }
    c->tenant->n.acquires++;
    audit(GMS_AUDIT_ACQUIRE, GMS_OK, c, h->id, sh->req, "share 0x%016llx of tenant '%s', %s",
          (unsigned long long)sh->id, sh->owner->name,
          m->mode == GMS_ACCESS_READ ? "read" : m->mode == GMS_ACCESS_ATOMIC ? "atomic" : "read-write");
    gms_broker_msg r = {.type = GMS_BROKER_ACQUIRED, .seq = m->seq, .a = h->id, .b = sh->bytes,
                        .c = sh->req, .d = sh->off, .e = copy ? copy->id : 0, .mode = m->mode,
                        .flags = (uint32_t)sh->immutable};
    snprintf(r.tenant, sizeof r.tenant, "%s", sh->owner->name);
    int rc = reply(c, &r, fd); /* on failure the drop releases the hold (and the copy) */
    if (!copy && fd != sh->fd)
        close(fd);
    return rc;
}

static int share_release(client *c, const gms_broker_msg *m)
{
    for (share *sh = shares; sh; sh = sh->next)
        for (hold **pp = &sh->holds; *pp; pp = &(*pp)->next)
            if ((*pp)->id == m->a && (*pp)->serial == c->serial) {
                audit(GMS_AUDIT_RELEASE, GMS_OK, c, m->a, sh->req, "share 0x%016llx released",
                      (unsigned long long)sh->id);
                hold_drop(c, sh, pp);
                gms_broker_msg r = {.type = GMS_BROKER_SHARE_RELEASED, .seq = m->seq, .a = m->a};
                return reply(c, &r, -1);
            }
    return refuse_share(c, m->seq, GMS_E_INVALID_HANDLE, m->a,
                        "hold 0x%016llx: not a live hold of this connection",
                        (unsigned long long)m->a);
}

static int share_revoke(client *c, const gms_broker_msg *m)
{
    share *sh = share_find(m->a);
    if (!sh || !sh->published)
        return refuse_share(c, m->seq, GMS_E_INVALID_HANDLE, m->a,
                            "share 0x%016llx does not exist", (unsigned long long)m->a);
    if (sh->owner_serial != c->serial)
        return refuse_share(c, m->seq, GMS_E_ACCESS_DENIED, sh->id,
                            "share 0x%016llx: only its owner's connection may revoke it",
                            (unsigned long long)sh->id);
    share_withdraw(sh);
    audit(GMS_AUDIT_REVOKE, GMS_OK, c, sh->id, sh->req, "share revoked: no new acquires");
    gms_broker_msg r = {.type = GMS_BROKER_REVOKED, .seq = m->seq, .a = sh->id};
    return reply(c, &r, -1);
}

/* RESHARE: the owner of a share taken over from the gmsd before repeats
 * its SHARE (share id m->d) with the memfd (fd, ours to keep or close) and
 * the grants, which the state file does not keep. Only that very file is
 * taken: the inode on record, the size, and the seals the share had (a
 * write seal for an immutable one), so no other bytes can pass for it;
 * and the share as made (bytes, buffer, immutable). A share revoked before
 * the restart stays revoked. */
static int share_reshare(client *c, const gms_broker_msg *m, int fd)
{
    share *sh = share_find(m->d);
    if (!sh || !sh->adopted || sh->fd >= 0 || sh->owner_serial != c->serial) {
        close(fd);
        return refuse_share(c, m->seq, GMS_E_INVALID_HANDLE, m->d,
                            "reshare: share 0x%016llx is not this connection's, taken over from "
                            "the gmsd before and not handed back yet", (unsigned long long)m->d);
    }
    if (m->a != sh->bytes || m->b != sh->req || m->c != sh->off ||
        m->flags != (uint32_t)sh->immutable || grant_bad(m) < m->ngrants) {
        close(fd);
        return refuse_share(c, m->seq, GMS_E_INVALID_ARG, sh->id,
                            "reshare: share 0x%016llx was made otherwise (%llu bytes, the buffer's "
                            "%llu at %llu, %s), or a grant is out of range",
                            (unsigned long long)sh->id, (unsigned long long)sh->bytes,
                            (unsigned long long)sh->req, (unsigned long long)sh->off,
                            sh->immutable ? "immutable" : "mutable");
    }
    struct stat st;
    int want = F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL | (sh->immutable ? F_SEAL_WRITE : 0);
    int seals = fcntl(fd, F_GET_SEALS);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !sh->ino ||
        (uint64_t)st.st_ino != sh->ino || (uint64_t)st.st_size != sh->bytes || seals < 0 ||
        (seals & want) != want) {
        close(fd);
        return refuse_share(c, m->seq, GMS_E_INVALID_ARG, sh->id,
                            "reshare: the descriptor is not share 0x%016llx's memory",
                            (unsigned long long)sh->id);
    }
    sh->fd = fd;
    sh->adopted = 0;
    sh->ngrants = m->ngrants;
    memcpy(sh->grants, m->grants, sizeof sh->grants);
    audit(GMS_AUDIT_SHARE, GMS_OK, c, sh->id, sh->req, "share handed back after a restart%s",
          sh->revoked ? " (revoked: still no new acquires)" : ": acquirable again");
    gms_broker_msg r = {.type = GMS_BROKER_RESHARED, .seq = m->seq, .a = sh->id};
    return reply(c, &r, -1);
}

/* TRANSFER: c's hold m->a, the only hold left of a share of another
 * tenant, moves the share's charge to c's tenant. The bytes must not stay
 * in memory the first tenant may still map (a writer keeps its mapping
 * if it skips libgms), so the new owner gets new memory of its own (a
 * memfd; on CUDA, a lease of its connection's), charged to its tenant,
 * with a new hold; the client copies the bytes into it, maps it in place
 * of the old one and releases the old hold, which frees the old share and
 * returns its charge. gmsd copies nothing: a loop turn stays one short
 * message whatever the buffer's size. The old share is revoked at once; a
 * refusal changes nothing. */
static int share_transfer(client *c, const gms_broker_msg *m)
{
    share *sh = NULL;
    hold *mine = NULL;
    unsigned holders = 0;
    for (share *s = shares; s && !mine; s = s->next)
        for (hold *h = s->holds; h; h = h->next)
            if (h->id == m->a && h->serial == c->serial) {
                sh = s;
                mine = h;
                break;
            }
    if (!mine) /* forged, stale (released, or transferred already), or another connection's */
        return refuse_share(c, m->seq, GMS_E_INVALID_HANDLE, m->a,
                            "transfer: hold 0x%016llx is not a live hold of this connection",
                            (unsigned long long)m->a);
    if (sh->moved_to) /* the hold's last use is its release */
        return refuse_share(c, m->seq, GMS_E_INVALID_HANDLE, m->a,
                            "transfer: share 0x%016llx was taken over already (as 0x%016llx): "
                            "release hold 0x%016llx", (unsigned long long)sh->id,
                            (unsigned long long)sh->moved_to, (unsigned long long)m->a);
    for (hold *h = sh->holds; h; h = h->next)
        holders++;
    gmsd_tenant *t = c->tenant;
    if (!mine->writer)
        return refuse_share(c, m->seq, GMS_E_READ_ONLY, sh->id,
                            "transfer: hold 0x%016llx of share 0x%016llx is not read-write: only "
                            "a writer takes a buffer over", (unsigned long long)m->a,
                            (unsigned long long)sh->id);
    if (holders > 1)
        return refuse_share(c, m->seq, GMS_E_BUSY, sh->id,
                            "transfer: share 0x%016llx has %u holds: only its sole holder takes it "
                            "over", (unsigned long long)sh->id, holders);
    if (sh->owner == t)
        return refuse_share(c, m->seq, GMS_E_INVALID_ARG, sh->id,
                            "transfer: share 0x%016llx is tenant '%s''s already",
                            (unsigned long long)sh->id, t->name);
    if (c->holds >= HOLDS_MAX)
        return refuse_share(c, m->seq, GMS_E_QUOTA, sh->id, "connection holds %u shares, the most",
                            c->holds);
    if (!quota_fits(t, sh->bytes)) {
        char what[48];
        snprintf(what, sizeof what, "taking over share 0x%016llx", (unsigned long long)sh->id);
        return refuse_quota(c, m->seq, what, sh->bytes);
    }
    share *ns = calloc(1, sizeof *ns);
    if (!ns)
        return refuse(c, m->seq, GMS_E_NO_MEMORY, "gmsd is out of memory");
    /* CUDA memory: the new memory is a lease of c's (zeroed, charged to
     * its tenant), and the new share's memory, as a mutable share's is its
     * owner's lease. */
    int err = 0;
    if (gpu) {
        char what[48];
        snprintf(what, sizeof what, "taking over share 0x%016llx", (unsigned long long)sh->id);
        int rc = 0;
        if (!(ns->lease = lease_add(c, m->seq, sh->bytes, NULL, what, &rc))) {
            free(ns);
            return rc;
        }
        ns->fd = -1;
    } else {
        err = share_memfd(t, sh->bytes, F_SEAL_SEAL, &ns->fd);
    }
    ns->id = random_id();
    ns->bytes = sh->bytes;
    ns->req = sh->req;
    ns->off = sh->off;
    ns->owner = t;
    ns->owner_serial = c->serial;
    ns->published = 1;
    ns->revoked = 1; /* exclusive: nobody acquires it */
    long slot = err ? -1 : record_share(ns, c->session);
    if (!err && slot < 0)
        err = errno;
    hold *h = err ? NULL : (ns->slot = (unsigned)slot, hold_new(c, ns, 1));
    if (!err && !h)
        err = errno ? errno : ENOMEM;
    if (err) {
        if (slot >= 0)
            gmsd_state_clear((unsigned)slot);
        if (ns->fd >= 0)
            close(ns->fd);
        if (ns->lease)
            lease_forget(c, ns->lease);
        free(ns);
        return refuse(c, m->seq, err == ENOMEM ? GMS_E_NO_MEMORY : GMS_E_BACKEND,
                      "transfer: %s of %llu bytes: %s", gpu ? "the share's record" : "a memfd",
                      (unsigned long long)sh->bytes, strerror(err));
    }
    ns->next = shares;
    shares = ns;
    sh->moved_to = ns->id;
    share_withdraw(sh);
    if (ns->lease) {
        ns->lease->share = ns;
    } else {
        t->used_bytes += ns->bytes;
        t->used_leases++;
    }
    t->live_shares++;
    t->n.transfers_in++;
    sh->owner->n.transfers_out++;
    audit(GMS_AUDIT_TRANSFER, GMS_OK, c, h->id, ns->req,
          "share 0x%016llx of tenant '%s' taken over as share 0x%016llx: %llu bytes now charged "
          "to tenant '%s', the old share's go back with its release",
          (unsigned long long)sh->id, sh->owner->name, (unsigned long long)ns->id,
          (unsigned long long)ns->bytes, t->name);
    gms_broker_msg r = {.type = GMS_BROKER_TRANSFERRED, .seq = m->seq, .a = h->id, .b = ns->bytes,
                        .c = ns->lease ? ns->lease->id : 0};
    /* on failure the drop releases both holds (and the lease) */
    return reply(c, &r, ns->lease ? ns->lease->fd : ns->fd);
}

/* A connection ends: its holds go (the last hold of a share frees it,
 * whoever's it was), and the shares it owns are revoked; those still held
 * by others stay, charged to the owner's tenant, until their last
 * release. */
static void shares_drop(client *c, const char *why)
{
    for (share *sh = shares, *next; sh; sh = next) {
        next = sh->next;
        if (sh->owner_serial == c->serial) {
            sh->owner_serial = 0;
            share_withdraw(sh);
        }
        for (hold **pp = &sh->holds; *pp;) {
            if ((*pp)->serial != c->serial) {
                pp = &(*pp)->next;
                continue;
            }
            audit(GMS_AUDIT_LEAK, GMS_OK, c, (*pp)->id, sh->req,
                  "connection ended (%s) holding share 0x%016llx: released",
                  why ? why : "closed or died", (unsigned long long)sh->id);
            if (hold_drop(c, sh, pp))
                break; /* sh is freed */
        }
    }
}

/* ---- restarts (docs/broker.md, "Restarts") ---- */

/* The start time of process pid (field 22 of /proc/PID/stat, clock ticks
 * after boot): with the pid, it names one process for the whole boot. 0
 * when the process is gone. */
static uint64_t proc_start(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command's name may hold anything */
    for (int field = 3; p && *p; field++) {
        p = strchr(p, ' ');
        if (p && field == 22)
            return strtoull(p + 1, NULL, 10);
        if (p)
            p++;
    }
    return 0;
}

/* A descriptor that becomes readable when process pid, started at start,
 * ends; -1 when it has ended (or the pid is another process's now). */
static int pidfd_of(pid_t pid, uint64_t start)
{
    if (pid <= 0 || !start)
        return -1;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0 && proc_start(pid) != start) { /* checked after the open: no race */
        close(fd);
        fd = -1;
    }
    return fd;
}

/* HELLO naming session prev: a connection of the gmsd before, whose
 * process reconnects. Only that very process (pid and start time from
 * the kernel, the same tenant) takes it over, on a connection that holds
 * nothing yet: its leases, holds and shares become this connection's.
 * 1 when it did (*taken: the leases and holds), else 0. */
static int resume(client *c, uint64_t prev, uint64_t *taken)
{
    unsigned k = 0;
    while (k < norphans && orphans[k].session != prev)
        k++;
    if (k == norphans) {
        say("pid %d uid %u (%s): session 0x%016llx is not one gmsd knows: not resumed", (int)c->pid,
            (unsigned)c->uid, c->tenant->name, (unsigned long long)prev);
        audit(GMS_AUDIT_ACCESS_DENIED, GMS_E_INVALID_HANDLE, c, prev, 0,
              "session 0x%016llx not resumed: gmsd has no record of it", (unsigned long long)prev);
        return 0;
    }
    client *o = &orphans[k];
    if (o->pid != c->pid || !c->start || o->start != c->start || o->tenant != c->tenant) {
        c->tenant->n.violations++;
        audit(GMS_AUDIT_VIOLATION, GMS_E_ACCESS_DENIED, c, prev, 0,
              "session 0x%016llx is pid %d's of tenant '%s': not resumed", (unsigned long long)prev,
              (int)o->pid, o->tenant->name);
        say("pid %d uid %u (%s): session 0x%016llx is another process's: not resumed", (int)c->pid,
            (unsigned)c->uid, c->tenant->name, (unsigned long long)prev);
        return 0;
    }
    if (c->leases || c->holds)
        return 0;
    uint64_t leases = lease_count(o), holds = o->holds;
    c->leases = o->leases;
    for (share *sh = shares; sh; sh = sh->next) {
        if (sh->owner_serial == o->serial)
            sh->owner_serial = c->serial;
        for (hold *h = sh->holds; h; h = h->next)
            if (h->serial == o->serial)
                h->serial = c->serial;
    }
    c->holds = o->holds;
    /* The connection is the session now: its own, new record goes. */
    gmsd_state_clear(c->slot);
    c->slot = o->slot;
    c->session = o->session;
    if (o->pidfd >= 0)
        close(o->pidfd);
    orphans[k] = orphans[--norphans];
    totals.orphans = norphans;
    *taken = leases + holds;
    audit(GMS_AUDIT_CONTEXT_OPEN, GMS_OK, c, prev, *taken,
          "session resumed after gmsd restarted: %llu leases and %llu holds taken over",
          (unsigned long long)leases, (unsigned long long)holds);
    say("pid %d uid %u (%s): session 0x%016llx resumed: %llu leases, %llu holds", (int)c->pid,
        (unsigned)c->uid, c->tenant->name, (unsigned long long)prev, (unsigned long long)leases,
        (unsigned long long)holds);
    return 1;
}

static gmsd_tenant *tenant_named(const char *name)
{
    for (unsigned i = 0; i < policy.ntenants; i++)
        if (strcmp(policy.tenants[i].name, name) == 0)
            return &policy.tenants[i];
    return NULL;
}

static client *orphan_of(uint64_t session)
{
    for (unsigned i = 0; i < norphans; i++)
        if (orphans[i].session == session)
            return &orphans[i];
    return NULL;
}

/* Takes record r (slot i) of the gmsd before over; 0 when it cannot be
 * kept (its tenant left the policy, what it names is gone, or it is not
 * one gmsd writes). */
static int restore_one(unsigned i, const gmsd_rec *r)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    if (!memchr(r->tenant, 0, sizeof r->tenant) || !r->id)
        return 0;
    int bytes_ok = r->bytes && r->bytes % page == 0 && r->bytes <= (1ull << 52);
    switch (r->kind) {
    case GMSD_REC_SESSION: {
        gmsd_tenant *t = tenant_named(r->tenant);
        if (!t || norphans == MAX_CLIENTS || orphan_of(r->id))
            return 0;
        orphans[norphans++] = (client){.sock = -1, .serial = ++serials, .session = r->id,
                                       .start = r->start, .pid = r->pid, .uid = r->uid,
                                       .tenant = t, .slot = i, .pidfd = -1};
        return 1;
    }
    case GMSD_REC_SHARE: {
        gmsd_tenant *t = tenant_named(r->tenant);
        if (!t || !bytes_ok || r->off > r->bytes || !r->req || r->req > r->bytes - r->off ||
            share_find(r->id))
            return 0;
        share *sh = calloc(1, sizeof *sh);
        if (!sh)
            return 0;
        client *o = orphan_of(r->session);
        *sh = (share){.id = r->id, .fd = -1, .bytes = r->bytes, .req = r->req, .off = r->off,
                      .owner = t, .owner_serial = o ? o->serial : 0,
                      .immutable = (r->flags & GMSD_SHARE_IMMUTABLE) != 0, .published = 1,
                      .revoked = (r->flags & GMSD_SHARE_REVOKED) != 0, .adopted = 1,
                      .ino = r->start,
                      .slot = i, .next = shares};
        shares = sh;
        /* A mutable share of CUDA memory is its owner's lease: while that
         * lease is on record (restored before the shares), the lease
         * charges it, as before the restart. */
        for (lease *l = o && r->share ? o->leases : NULL; l && !sh->lease; l = l->next)
            if (l->id == r->share && !l->share && l->bytes == sh->bytes) {
                sh->lease = l;
                l->share = sh;
            }
        if (!sh->lease) {
            t->used_bytes += sh->bytes;
            t->used_leases++;
        }
        t->live_shares++;
        return 1;
    }
    case GMSD_REC_LEASE: {
        client *o = orphan_of(r->session);
        lease *l = o && bytes_ok ? calloc(1, sizeof *l) : NULL;
        if (!l)
            return 0;
        *l = (lease){.id = r->id, .bytes = r->bytes, .fd = -1, .slot = i, .next = o->leases};
        o->leases = l;
        o->tenant->used_bytes += l->bytes;
        o->tenant->used_leases++;
        return 1;
    }
    case GMSD_REC_HOLD: {
        client *o = orphan_of(r->session);
        share *sh = share_find(r->share);
        hold *h = o && sh ? calloc(1, sizeof *h) : NULL;
        if (!h)
            return 0;
        *h = (hold){.id = r->id, .serial = o->serial, .writer = r->flags & 1, .slot = i,
                    .next = sh->holds};
        sh->holds = h;
        o->holds++;
        return 1;
    }
    default:
        return 0;
    }
}

/* At start: what the gmsd before recorded. The sessions of processes
 * still running become orphans, charged as before, until the process
 * resumes its session or ends; what processes that ended meanwhile held
 * is returned at once. */
static void restore(void)
{
    unsigned n = gmsd_state_slots(), kept = 0, dropped = 0;
    /* Sessions first, then what names them (a hold names its share too);
     * a record of no kind gmsd writes, last, is dropped. */
    for (uint32_t kind = GMSD_REC_SESSION; kind <= GMSD_REC_HOLD + 1; kind++)
        for (unsigned i = 0; i < n; i++) {
            const gmsd_rec *r = gmsd_state_at(i);
            uint32_t k = r->kind;
            if (k == GMSD_REC_FREE || (k != kind && !(kind > GMSD_REC_HOLD && k > GMSD_REC_HOLD)))
                continue;
            if (restore_one(i, r)) {
                kept++;
            } else {
                gmsd_state_clear(i);
                dropped++;
            }
        }
    for (share *sh = shares, *next; sh; sh = next) {
        next = sh->next;
        if (!sh->holds) /* nobody holds it any more */
            share_free(NULL, sh);
    }
    uint64_t alive = 0;
    for (unsigned i = norphans; i-- > 0;) {
        client *o = &orphans[i];
        if (!o->leases && !o->holds) { /* nothing to keep charged */
            gmsd_state_clear(o->slot);
            orphans[i] = orphans[--norphans];
            continue;
        }
        o->pidfd = pidfd_of(o->pid, o->start);
        if (o->pidfd < 0)
            orphan_drop(i, "its process ended while no gmsd ran");
        else
            alive++;
    }
    totals.orphans = norphans;
    if (kept || dropped)
        say("state: %u records of the gmsd before, %u dropped; %llu processes still hold memory "
            "and may resume their sessions", kept, dropped, (unsigned long long)alive);
    for (unsigned i = 0; i < norphans; i++) {
        uint64_t leases = lease_count(&orphans[i]);
        audit(GMS_AUDIT_CONTEXT_OPEN, GMS_OK, &orphans[i], orphans[i].session, leases,
              "session 0x%016llx of the gmsd before: %llu leases and %u holds stay charged until "
              "its process resumes it or ends", (unsigned long long)orphans[i].session,
              (unsigned long long)leases, orphans[i].holds);
    }
}

/* One packet from client i; -1: drop the client. */
static int serve(unsigned i)
{
    client *c = &clients[i];
    uint8_t buf[GMS_BROKER_MSG_MAX];
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(FDS_IN_MAX * sizeof(int))];
    } ctl;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                        .msg_controllen = sizeof ctl};
    ssize_t n = recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0)
        return -1; /* closed */
    /* Only RESHARE carries a descriptor (the decoder holds each type to
     * its count); every other one is closed here. */
    int fds[FDS_IN_MAX] = {-1};
    unsigned nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t j = 0; j < k && nfds < FDS_IN_MAX; j++)
            memcpy(&fds[nfds++], CMSG_DATA(cm) + j * sizeof(int), sizeof(int));
    }
    gms_broker_msg m;
    int why = (mh.msg_flags & MSG_TRUNC) ? GMS_BROKER_BAD_LENGTH
              : (mh.msg_flags & MSG_CTRUNC) ? GMS_BROKER_BAD_FDS
              : gms__broker_decode(buf, (size_t)n, nfds, 0, &m);
    int given = !why && m.type == GMS_BROKER_RESHARE && nfds == 1 ? fds[0] : -1;
    for (unsigned j = 0; j < nfds; j++)
        if (fds[j] != given)
            close(fds[j]);
    if (why) {
        say("pid %d uid %u: bad message (%s): disconnected", (int)c->pid, (unsigned)c->uid,
            gms__broker_bad_name(why));
        c->tenant->n.violations++;
        audit(GMS_AUDIT_VIOLATION, GMS_E_INVALID_ARG, c, 0, (uint64_t)n,
              "malformed message (%s): disconnected", gms__broker_bad_name(why));
        return -1;
    }
    gmsd_tenant *t = c->tenant;
    switch (m.type) {
    case GMS_BROKER_HELLO: {
        uint64_t taken = 0;
        int resumed = m.a ? resume(c, m.a, &taken) : 0;
        gms_broker_msg w = {.type = GMS_BROKER_WELCOME, .seq = m.seq, .a = policy.lease_bytes,
                            .b = t->quota_bytes, .c = t->quota_leases, .level = t->level,
                            .languages = t->languages, .d = c->session, .e = taken,
                            .flags = (uint32_t)resumed,
                            .memory = gpu ? GMS_BROKER_MEMORY_CUDA : GMS_BROKER_MEMORY_HOST};
        strcpy(w.tenant, t->name);
        if (gpu)
            memcpy(w.device, gpu->device_uuid, sizeof w.device);
        return reply(c, &w, -1);
    }
    case GMS_BROKER_LEASE: return lease_new(c, m.seq, m.a);
    case GMS_BROKER_RELEASE: return lease_release(c, m.seq, m.a);
    case GMS_BROKER_SHARE: return share_new(c, &m);
    case GMS_BROKER_PUBLISH: return share_publish(c, &m);
    case GMS_BROKER_ACQUIRE: return share_acquire(c, &m);
    case GMS_BROKER_RELEASE_SHARE: return share_release(c, &m);
    case GMS_BROKER_REVOKE: return share_revoke(c, &m);
    case GMS_BROKER_TRANSFER: return share_transfer(c, &m);
    case GMS_BROKER_RESHARE: return share_reshare(c, &m, given);
    case GMS_BROKER_USAGE: {
        gms_broker_msg u = {.type = GMS_BROKER_USED, .seq = m.seq, .a = t->used_bytes,
                            .b = t->used_leases, .c = t->quota_bytes, .d = t->quota_leases};
        return reply(c, &u, -1);
    }
    default: return -1; /* the decoder lets no other type through */
    }
}

/* Accepts one connection; 0 when none was waiting. A peer the policy does not name, or one of a
 * tenant at its connection limit, gets an ERROR of sequence 0 and is
 * closed at once: it holds nothing of gmsd's, and one tenant's
 * connections cannot take the slots of others. */
static int client_add(int listener)
{
    int s = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0)
        return 0; /* none left, or no descriptor: the next turn tries again */
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
        say("connection refused: SO_PEERCRED: %s", strerror(errno));
        close(s);
        return 1;
    }
    client c = {.sock = s, .pid = cr.pid, .uid = cr.uid, .gid = cr.gid};
    c.tenant = gmsd_policy_match(&policy, cr.uid, cr.gid);
    int code = 0;
    char why[160];
    if (!c.tenant) {
        code = GMS_E_ACCESS_DENIED;
        snprintf(why, sizeof why, "uid %u gid %u: no tenant in gmsd's policy", (unsigned)cr.uid,
                 (unsigned)cr.gid);
    } else if (c.tenant->connections >= c.tenant->max_connections) {
        code = GMS_E_QUOTA;
        snprintf(why, sizeof why, "tenant '%s': %llu connections open, its limit", c.tenant->name,
                 (unsigned long long)c.tenant->connections);
    } else if (nclients == MAX_CLIENTS) {
        code = GMS_E_BUSY;
        snprintf(why, sizeof why, "gmsd serves %d connections, its most", MAX_CLIENTS);
    }
    if (code) {
        gms_broker_msg m = {.type = GMS_BROKER_ERROR, .seq = 0, .code = code};
        snprintf(m.text, sizeof m.text, "%s", why);
        say("pid %d: connection refused: %s", (int)cr.pid, why);
        if (!c.tenant)
            totals.unknown_peers++;
        else if (code == GMS_E_QUOTA)
            c.tenant->n.connection_refusals++;
        audit(code == GMS_E_QUOTA ? GMS_AUDIT_QUOTA_REFUSED : GMS_AUDIT_ACCESS_DENIED, code, &c,
              0, 0, "connection refused: %s", why);
        reply(&c, &m, -1);
        close(s);
        return 1;
    }
    /* The session's record: a gmsd started after this one knows the
     * process, and lets only it resume the session. */
    c.start = proc_start(cr.pid);
    c.session = random_id();
    gmsd_rec r = {.kind = GMSD_REC_SESSION, .id = c.session, .start = c.start,
                  .pid = (int32_t)cr.pid, .uid = (uint32_t)cr.uid};
    snprintf(r.tenant, sizeof r.tenant, "%s", c.tenant->name);
    long slot = gmsd_state_put(&r);
    if (slot < 0) {
        gms_broker_msg m = {.type = GMS_BROKER_ERROR, .seq = 0, .code = GMS_E_BACKEND};
        snprintf(m.text, sizeof m.text, "gmsd cannot record the connection: %s", strerror(errno));
        say("pid %d: connection refused: %s", (int)cr.pid, m.text);
        reply(&c, &m, -1);
        close(s);
        return 1;
    }
    c.slot = (unsigned)slot;
    if (verbose)
        say("pid %d uid %u gid %u: tenant %s", (int)cr.pid, (unsigned)cr.uid, (unsigned)cr.gid,
            c.tenant->name);
    c.tenant->connections++;
    totals.connections++;
    c.serial = ++serials;
    audit(GMS_AUDIT_CONTEXT_OPEN, GMS_OK, &c, 0, 0, "connection (gid %u)", (unsigned)cr.gid);
    clients[nclients] = c;
    pfds[nclients + 1] = (struct pollfd){.fd = s, .events = POLLIN};
    nclients++;
    return 1;
}

/* Frees what gmsd keeps of c, leaving its records and its memory to its
 * process. */
static void forget(client *c)
{
    while (c->leases) {
        lease *l = c->leases;
        c->leases = l->next;
        if (l->fd >= 0)
            close(l->fd);
        free(l);
    }
}

/* gmsd stops: connections that already ended end as usual; the others'
 * memory stays with their processes, untouched (wiping it would pull it
 * from under them), and on record for the next gmsd to take over. */
static void stop(void)
{
    if (poll(pfds, nclients + 1, 0) > 0)
        for (unsigned i = nclients; i-- > 0;)
            if (pfds[i + 1].revents & (POLLHUP | POLLERR | POLLNVAL))
                client_drop(i, NULL);
    for (unsigned i = 0; i < nclients; i++) {
        client *c = &clients[i];
        uint64_t n = lease_count(c);
        audit(GMS_AUDIT_CONTEXT_CLOSE, GMS_OK, c, 0, n,
              "gmsd stopping: the connection's %llu leases and %u holds stay with its process, on "
              "record for the next gmsd", (unsigned long long)n, c->holds);
        close(c->sock);
        forget(c);
    }
    for (unsigned i = 0; i < norphans; i++) {
        if (orphans[i].pidfd >= 0)
            close(orphans[i].pidfd);
        forget(&orphans[i]);
    }
    nclients = norphans = 0;
    while (shares) {
        share *sh = shares;
        shares = sh->next;
        while (sh->holds) {
            hold *h = sh->holds;
            sh->holds = h->next;
            free(h);
        }
        if (sh->fd >= 0)
            close(sh->fd);
        free(sh);
    }
    gmsd_state_close();
}

/* Raises the descriptor limit as far as allowed: gmsd holds one per lease
 * and one per connection. Warns when the policy could grant more. */
static void fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    uint64_t need = 64 + 2 * MAX_CLIENTS; /* connections, and orphans' pidfds */
    for (unsigned t = 0; t < policy.ntenants; t++)
        need += policy.tenants[t].quota_leases;
    if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
        say("warning: the policy grants leases and connections needing %llu descriptors, more "
            "than the %llu gmsd may open: raise its RLIMIT_NOFILE, or one tenant could use up "
            "what others need", (unsigned long long)need, (unsigned long long)rl.rlim_cur);
}

static int usage(void)
{
    fprintf(stderr, "usage: gmsd --policy FILE --socket PATH [--memory host|cuda] [--device N]\n"
                    "            [--spare-leases 0-16]\n"
                    "            [--metrics PORT|IPV4:PORT|unix:PATH]\n"
                    "            [--audit-dir DIR --audit-key-file FILE] [--state FILE] [--check]\n"
                    "            [--verbose]\n"
                    "            [--test-lease-delay-us N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *policy_path = NULL, *sock_path = NULL, *metrics = NULL, *state_path = NULL;
    const char *memory = "host";
    int device = 0;
    gms_runtime_options trail_opts;
    gms_runtime_options_init(&trail_opts);
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
            policy_path = argv[++i];
        else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            sock_path = argv[++i];
        else if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc)
            metrics = argv[++i];
        else if (strcmp(argv[i], "--memory") == 0 && i + 1 < argc)
            memory = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = atoi(argv[++i]);
        else if (strcmp(argv[i], "--spare-leases") == 0 && i + 1 < argc &&
                 (unsigned)atoi(argv[i + 1]) <= SPARES_MAX)
            spares_wanted = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
            state_path = argv[++i];
        else if (strcmp(argv[i], "--audit-dir") == 0 && i + 1 < argc)
            trail_opts.audit_dir = argv[++i];
        else if (strcmp(argv[i], "--audit-key-file") == 0 && i + 1 < argc)
            trail_opts.audit_key_file = argv[++i];
        else if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strcmp(argv[i], "--verbose") == 0)
            verbose = 1;
        else if (strcmp(argv[i], "--test-lease-delay-us") == 0 && i + 1 < argc)
            lease_delay_us = (unsigned)strtoul(argv[++i], NULL, 10);
        else
            return usage();
    }
    if (!policy_path || (!sock_path && !check) ||
        (strcmp(memory, "host") != 0 && strcmp(memory, "cuda") != 0))
        return usage();
    char err[512];
    if (gmsd_policy_load(policy_path, &policy, err, sizeof err) != 0) {
        say("policy refused: %s", err);
        return 2;
    }
    if (check) {
        printf("%s: %u tenant%s, leases of %llu bytes\n", policy_path, policy.ntenants,
               policy.ntenants == 1 ? "" : "s", (unsigned long long)policy.lease_bytes);
        gmsd_policy_free(&policy);
        return 0;
    }
    if (strcmp(memory, "cuda") == 0) {
        int e = gms__backend_cuda_create(device, &gpu);
        if (!e && policy.lease_bytes % gpu->granularity)
            e = EINVAL, gms__backend_note("the policy's lease_bytes is not a multiple of the "
                                          "device's granularity, %llu bytes",
                                          (unsigned long long)gpu->granularity);
        if (!e && (e = pthread_create(&spare_thread, NULL, spare_maker, NULL)) != 0)
            gms__backend_note("cannot start the thread that makes spare leases: %s", strerror(e));
        if (e) {
            say("--memory cuda --device %d: %s", device, gms__backend_cuda_why());
            if (gpu)
                gpu->ops->destroy(gpu);
            gmsd_policy_free(&policy);
            return 1;
        }
    }
    /* The trail (GMS_AUDIT_DIR and GMS_AUDIT_KEY_FILE when the options
     * name none), and the metrics endpoint, both ready before the
     * clients' socket is, so that a client's connection is on the trail. */
    if (gms__audit_open(&trail, &trail_opts) != GMS_OK) {
        say("audit trail: %s", gms_error_last());
        gmsd_policy_free(&policy);
        return 1;
    }
    int metrics_fd = -1;
    if (metrics) {
        metrics_fd = gmsd_metrics_start(metrics, &policy, &totals, err, sizeof err);
        if (metrics_fd < 0) {
            say("%s", err);
            gms__audit_close(trail);
            gmsd_policy_free(&policy);
            return 1;
        }
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char state_default[sizeof sa.sun_path + 8];
    if (strlen(sock_path) >= sizeof sa.sun_path) {
        say("%s: socket path too long", sock_path);
        gmsd_metrics_stop();
        gms__audit_close(trail);
        gmsd_policy_free(&policy);
        return 2;
    }
    /* The accounting the gmsd before left, locked before the socket is
     * touched: a second gmsd on the same state stops here. */
    if (!state_path) {
        snprintf(state_default, sizeof state_default, "%s.state", sock_path);
        state_path = state_default;
    }
    if (gmsd_state_open(state_path, err, sizeof err) != 0) {
        say("%s", err);
        gmsd_metrics_stop();
        gms__audit_close(trail);
        gmsd_policy_free(&policy);
        return 1;
    }
    strcpy(sa.sun_path, sock_path);
    int listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct stat st;
    if (lstat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(sock_path); /* a previous gmsd's */
    /* Anyone may connect: the policy, not the file mode, says who is served. */
    if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        chmod(sock_path, 0666) != 0 || listen(listener, 128) != 0) {
        say("%s: %s", sock_path, strerror(errno));
        if (listener >= 0)
            close(listener);
        gmsd_state_close();
        gmsd_metrics_stop();
        gms__audit_close(trail);
        gmsd_policy_free(&policy);
        return 1;
    }
    audit(GMS_AUDIT_RUNTIME_OPEN, GMS_OK, NULL, 0, policy.ntenants,
          "gmsd started: %u tenants, leases of %llu bytes", policy.ntenants,
          (unsigned long long)policy.lease_bytes);
    restore(); /* before the first connection is accepted */
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    fd_limit();
    say("listening on %s: %u tenant%s", sock_path, policy.ntenants,
        policy.ntenants == 1 ? "" : "s");
    pfds[0] = (struct pollfd){.fd = listener, .events = POLLIN};
    while (!stopping) {
        /* The metrics' descriptor rides in the slot after the clients'. A
         * timeout, so that a stop signal arriving just before poll waits
         * at most this long (and libmicrohttpd's timeouts run). */
        pfds[nclients + 1] = (struct pollfd){.fd = metrics_fd, .events = POLLIN};
        /* Then the orphans' processes: readable when one ends. */
        for (unsigned k = 0; k < norphans; k++)
            pfds[nclients + 2 + k] = (struct pollfd){.fd = orphans[k].pidfd, .events = POLLIN};
        if (poll(pfds, nclients + 2 + norphans, 500) < 0) {
            if (errno == EINTR)
                continue;
            say("poll: %s", strerror(errno));
            break;
        }
        for (unsigned k = 0; k < norphans; k++)
            orphans[k].ended = pfds[nclients + 2 + k].revents != 0;
        gmsd_metrics_run();
        /* Backwards: a dropped client's slot takes the last one's. */
        for (unsigned i = nclients; i-- > 0;) {
            short ev = pfds[i + 1].revents;
            if (!ev)
                continue;
            if ((ev & POLLIN) ? serve(i) != 0 : (ev & (POLLHUP | POLLERR | POLLNVAL)) != 0)
                client_drop(i, NULL);
        }
        /* Orphans whose process ended (a resumed one is not among them). */
        for (unsigned k = norphans; k-- > 0;)
            if (orphans[k].ended)
                orphan_drop(k, "its process ended before it resumed its session");
        /* Pending connections, a bounded number per turn. */
        for (int k = 0; k < 64 && (pfds[0].revents & POLLIN) && client_add(listener); k++)
            ;
    }
    /* No new connection from here: one the kernel queued is reset, and
     * its client takes that as gmsd not back yet. */
    close(listener);
    unlink(sock_path);
    stop();
    gmsd_metrics_stop();
    audit(GMS_AUDIT_RUNTIME_CLOSE, GMS_OK, NULL, 0, 0, "gmsd stopped");
    gms__audit_close(trail);
    if (gpu) { /* the spares' thread reads the policy: stopped first */
        spares_end();
        gpu->ops->destroy(gpu);
    }
    gmsd_policy_free(&policy);
    say("stopped");
    return 0;
}
