/*
 * hostile.c: what a client may send gmsd, and what it cannot do with it.
 * Forged, stale and other connections' lease ids are refused; garbage,
 * truncated packets, oversized lengths, replies sent as requests and
 * packets carrying descriptors (250 at a time, 2,000 in all) get the
 * sender disconnected (its leases
 * returned, the descriptors closed); a client that floods requests and
 * never reads is disconnected too. After each, another client is served
 * as before and gmsd holds no more descriptors than it did.
 */
#include "util.h"

#define MANY_FDS 250 /* the kernel passes at most 253 in one packet */

static broker b;
static int bystander; /* a well-behaved client's connection */

/* The bystander is still served, and the tenant holds only its lease. */
static void still_fine(const char *after)
{
    gms_broker_msg m = {.type = GMS_BROKER_USAGE};
    int fd;
    int t = raw_call(bystander, &m, &fd);
    if (t != GMS_BROKER_USED || m.b != 1)
        fprintf(stderr, "after %s: type %d, leases %llu\n", after, t, (unsigned long long)m.b);
    CHECK(t == GMS_BROKER_USED && m.b == 1);
}

/* Sends raw bytes (and nfd copies of fd when >= 0) on a new connection
 * that first takes a lease; checks gmsd hangs up and returns the lease. */
static void disconnects_fds(const char *what, const void *bytes, size_t n, int fd, int nfd)
{
    int s = raw_connect(b.sock), lfd = -1;
    gms_broker_msg m = {.type = GMS_BROKER_LEASE, .a = 1 << 20};
    CHECK(raw_call(s, &m, &lfd) == GMS_BROKER_LEASED);
    if (lfd >= 0)
        close(lfd);
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(MANY_FDS * sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {(void *)bytes, n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = &ctl;
        mh.msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
        for (int i = 0; i < nfd; i++)
            memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof fd);
    }
    CHECK(sendmsg(s, &mh, MSG_NOSIGNAL) == (ssize_t)n);
    struct pollfd p = {.fd = s, .events = POLLIN};
    char c;
    int hung_up = poll(&p, 1, 2000) == 1 && recv(s, &c, 1, 0) == 0;
    if (!hung_up)
        fprintf(stderr, "%s: gmsd did not disconnect the sender\n", what);
    CHECK(hung_up);
    close(s);
    still_fine(what);
}

static void disconnects(const char *what, const void *bytes, size_t n, int fd)
{
    disconnects_fds(what, bytes, n, fd, 1);
}

int main(void)
{
    broker_start_one(&b, 16ull << 20, 8, ", \"max_connections\": 16");
    bystander = raw_connect(b.sock);
    int fd;
    gms_broker_msg m = {.type = GMS_BROKER_HELLO};
    CHECK(raw_call(bystander, &m, &fd) == GMS_BROKER_WELCOME);
    CHECK(strcmp(m.tenant, "self") == 0 && m.a == 2u << 20 && m.b == 16u << 20 && m.c == 8);
    m = (gms_broker_msg){.type = GMS_BROKER_LEASE, .a = 1 << 20};
    CHECK(raw_call(bystander, &m, &fd) == GMS_BROKER_LEASED && fd >= 0);
    uint64_t live = m.a;
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 1 << 20);
    /* The client cannot resize its lease: the quota counts its size. */
    CHECK(ftruncate(fd, 64 << 20) != 0 && errno == EPERM);
    CHECK(ftruncate(fd, 0) != 0 && errno == EPERM);
    close(fd);
    int baseline = fd_baseline(b.pid);
    CHECK(baseline > 0);

    /* Lease ids: forged, another connection's, stale. */
    m = (gms_broker_msg){.type = GMS_BROKER_RELEASE, .a = live ^ 1};
    CHECK(raw_call(bystander, &m, &fd) == GMS_BROKER_ERROR && m.code == GMS_E_INVALID_HANDLE);
    int other = raw_connect(b.sock);
    m = (gms_broker_msg){.type = GMS_BROKER_RELEASE, .a = live};
    CHECK(raw_call(other, &m, &fd) == GMS_BROKER_ERROR && m.code == GMS_E_INVALID_HANDLE);
    m = (gms_broker_msg){.type = GMS_BROKER_LEASE, .a = 1 << 20};
    CHECK(raw_call(other, &m, &fd) == GMS_BROKER_LEASED);
    close(fd);
    uint64_t mine = m.a;
    m = (gms_broker_msg){.type = GMS_BROKER_RELEASE, .a = mine};
    CHECK(raw_call(other, &m, &fd) == GMS_BROKER_RELEASED && m.a == mine);
    m = (gms_broker_msg){.type = GMS_BROKER_RELEASE, .a = mine}; /* stale */
    CHECK(raw_call(other, &m, &fd) == GMS_BROKER_ERROR && m.code == GMS_E_INVALID_HANDLE);
    CHECK(strstr(m.text, "not a live lease") != NULL);
    /* Sizes out of range are refused and the connection lives on. */
    uint64_t sizes[] = {0, 1000, 17u << 20, ~0ull & ~4095ull};
    for (int i = 0; i < 4; i++) {
        m = (gms_broker_msg){.type = GMS_BROKER_LEASE, .a = sizes[i]};
        CHECK(raw_call(other, &m, &fd) == GMS_BROKER_ERROR &&
              m.code == (i < 2 ? GMS_E_INVALID_ARG : GMS_E_QUOTA));
    }
    close(other);
    still_fine("lease ids");

    /* Malformed packets. */
    uint8_t good[GMS_BROKER_MSG_MAX], bad[GMS_BROKER_MSG_MAX];
    gms_broker_msg usage = {.type = GMS_BROKER_USAGE};
    size_t n = gms__broker_encode(&usage, good);
    memcpy(bad, good, n);
    disconnects("garbage", "\x13\x37 not a message at all, just bytes", 36, -1);
    disconnects("a short header", good, 7, -1);
    bad[0] ^= 0xff;
    disconnects("a bad magic", bad, n, -1);
    memcpy(bad, good, n);
    bad[4] = GMS_BROKER_PROTO + 1;
    disconnects("an unknown protocol version", bad, n, -1);
    bad[4] = 1;
    disconnects("protocol version 1", bad, n, -1);
    memcpy(bad, good, n);
    bad[12] = 0xff, bad[13] = 0xff, bad[14] = 0xff, bad[15] = 0x7f;
    disconnects("an oversized length", bad, n, -1);
    gms_broker_msg lease = {.type = GMS_BROKER_LEASE, .a = 4096};
    size_t ln = gms__broker_encode(&lease, bad);
    disconnects("a truncated lease", bad, ln - 3, -1);
    uint8_t huge[8192];
    memset(huge, 0, sizeof huge);
    memcpy(huge, bad, ln);
    disconnects("a packet longer than any message", huge, sizeof huge, -1);
    gms_broker_msg welcome = {.type = GMS_BROKER_WELCOME};
    disconnects("a reply sent as a request", bad, gms__broker_encode(&welcome, bad), -1);
    int devnull = open("/dev/null", O_RDONLY);
    disconnects("a request with a descriptor", good, n, devnull);
    for (int i = 0; i < 8; i++) /* 2,000 descriptors: more than gmsd reads */
        disconnects_fds("a request with 250 descriptors", good, n, devnull, MANY_FDS);
    close(devnull);
    CHECK(fd_count_settles(b.pid, baseline)); /* the descriptors were closed */

    /* A client that floods requests and never reads is dropped when its
     * replies no longer fit; gmsd never waits for it. */
    int flood = raw_connect(b.sock);
    int fl = fcntl(flood, F_GETFL);
    fcntl(flood, F_SETFL, fl | O_NONBLOCK);
    unsigned sent = 0;
    double t0 = now_s();
    while (now_s() - t0 < 5) {
        if (send(flood, good, n, MSG_NOSIGNAL) == (ssize_t)n) {
            sent++;
            continue;
        }
        if (errno == EAGAIN) {
            usleep(1000);
            continue;
        }
        break; /* EPIPE or ECONNRESET: dropped */
    }
    CHECK(now_s() - t0 < 5);
    printf("a client flooding %u requests without reading was disconnected\n", sent);
    close(flood);
    still_fine("a flood");

    /* A tenant's connections are capped (16 here), so that it cannot take
     * the slots of others; the one past the cap is told why and closed. */
    int conns[15];
    for (int i = 0; i < 15; i++) {
        conns[i] = raw_connect(b.sock);
        m = (gms_broker_msg){.type = GMS_BROKER_HELLO};
        CHECK(raw_call(conns[i], &m, &fd) == GMS_BROKER_WELCOME);
    }
    int extra = raw_connect(b.sock);
    m = (gms_broker_msg){.type = GMS_BROKER_HELLO};
    CHECK(raw_call(extra, &m, &fd) == GMS_BROKER_ERROR && m.code == GMS_E_QUOTA);
    CHECK(strstr(m.text, "16 connections open") != NULL);
    CHECK(raw_recv(extra, &m, &fd) == -1); /* closed */
    close(extra);
    close(conns[0]);
    int again = -1;
    for (int i = 0; i < 100 && again < 0; i++) { /* once gmsd has seen the close */
        int s = raw_connect(b.sock);
        m = (gms_broker_msg){.type = GMS_BROKER_HELLO};
        if (raw_call(s, &m, &fd) == GMS_BROKER_WELCOME)
            again = s;
        else
            close(s), usleep(10000);
    }
    CHECK(again >= 0);
    close(again);
    for (int i = 1; i < 15; i++)
        close(conns[i]);
    still_fine("the connection cap");

    /* A thousand connections opened and dropped: nothing held. */
    for (int i = 0; i < 1000; i++) {
        int s = raw_connect(b.sock);
        if (i % 2 && s >= 0) {
            gms_broker_msg l = {.type = GMS_BROKER_LEASE, .a = 4096};
            raw_send(s, &l, -1);
        }
        if (s >= 0)
            close(s);
    }
    still_fine("a thousand connections");
    CHECK(fd_count_settles(b.pid, baseline));
    close(bystander);
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
