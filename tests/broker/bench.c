/*
 * bench.c: the broker's costs on the host backend, printed (not asserted:
 * a shared CI machine's timings are no contract). A lease round trip
 * (LEASE to LEASED, the memfd passed; its RELEASE is timed apart), median
 * of 2000, target <= 30 us; and a gms_alloc/gms_free pair of 256 bytes
 * inside a lease against the same pair in-process on the host backend,
 * median of 21 runs of 20000 pairs each, target within 1.2x
 * (docs/broker.md, "Costs"). And a share through gmsd: gms_share of a
 * 64 KiB GMS_ALLOC_PAGES buffer (SHARE, the copy into gmsd's memfd,
 * PUBLISH, the remap; mutable and immutable, where gmsd write-seals it),
 * and gms_acquire + gms_release of it (ACQUIRE, the memfd passed, mapped;
 * RELEASE_SHARE), medians of 500.
 */
#include "util.h"

#define ROUNDS 2000
#define PAIRS 20000
#define RUNS 21

static broker b;


#define SHARES 500

/* Median us of gms_share (and, acq, of an acquire; rel, of a release) of
 * a 64 KiB buffer in ctx, immutable or not. */
static double share_costs(gms_context *ctx, int immutable, double *acq, double *rel)
{
    static double share_us[SHARES], acq_us[SHARES], rel_us[SHARES];
    gms_share_grant g[] = {{NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ}};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = g;
    sd.ngrants = 1;
    sd.immutable = immutable;
    int bad = 0;
    for (int i = 0; i < SHARES; i++) {
        gms_buf buf, h = GMS_BUF_NULL;
        gms_share_id id = 0;
        bad |= gms_alloc(ctx, 64 << 10, GMS_ALLOC_PAGES, &buf);
        double t0 = now_s();
        bad |= gms_share(ctx, buf, &sd, &id);
        double t1 = now_s();
        bad |= gms_acquire(ctx, id, GMS_ACCESS_READ, &h); /* through gmsd: id is gmsd's */
        double t2 = now_s();
        bad |= gms_release(ctx, h);
        double t3 = now_s();
        bad |= gms_free(ctx, buf);
        share_us[i] = (t1 - t0) * 1e6;
        acq_us[i] = (t2 - t1) * 1e6;
        rel_us[i] = (t3 - t2) * 1e6;
    }
    CHECK(bad == 0);
    *acq = median(acq_us, SHARES);
    *rel = median(rel_us, SHARES);
    return median(share_us, SHARES);
}

static gms_context *open_ctx(gms_runtime **rt, int brokered)
{
    if (brokered)
        setenv("GMS_BROKER", b.sock, 1);
    else
        unsetenv("GMS_BROKER");
    gms_context *ctx = NULL;
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = "self"; /* gmsd's name for this uid */
    d.user = "u";
    CHECK_OK(gms_runtime_open(rt, &o));
    if (*rt)
        CHECK_OK(gms_context_open(&ctx, *rt, &d));
    if (ctx)
        CHECK(strcmp(gms_runtime_backend_name(*rt), brokered ? "broker" : "host") == 0);
    unsetenv("GMS_BROKER");
    return ctx;
}

/* ns per alloc/free pair in ctx, one run. */
static double pair_run(gms_context *ctx)
{
    gms_buf buf;
    int bad = 0;
    double t0 = now_s();
    for (int i = 0; i < PAIRS; i++)
        bad |= gms_alloc(ctx, 256, 0, &buf) | gms_free(ctx, buf);
    CHECK(bad == 0);
    return (now_s() - t0) * 1e9 / PAIRS;
}

int main(void)
{
    broker_start_one(&b, 1ull << 30, 64, "");
    int s = raw_connect(b.sock), fd = -1;
    static double lease_us[ROUNDS], release_us[ROUNDS];
    int ok = 1;
    for (int i = 0; i < ROUNDS; i++) {
        gms_broker_msg m = {.type = GMS_BROKER_LEASE, .a = 2u << 20};
        double t0 = now_s();
        ok &= raw_call(s, &m, &fd) == GMS_BROKER_LEASED;
        double t1 = now_s();
        if (fd >= 0)
            close(fd);
        m = (gms_broker_msg){.type = GMS_BROKER_RELEASE, .a = m.a};
        ok &= raw_call(s, &m, &fd) == GMS_BROKER_RELEASED;
        lease_us[i] = (t1 - t0) * 1e6;
        release_us[i] = (now_s() - t1) * 1e6;
    }
    CHECK(ok);
    close(s);
    double lease = median(lease_us, ROUNDS), release = median(release_us, ROUNDS);
    /* Runs alternate, so that the machine's other load falls on both. */
    gms_runtime *hrt, *brt;
    gms_context *hctx = open_ctx(&hrt, 0), *bctx = open_ctx(&brt, 1);
    double hruns[RUNS], bruns[RUNS], host = 0, brokered = 0;
    if (hctx && bctx) {
        for (int r = 0; r < RUNS; r++) {
            hruns[r] = pair_run(hctx);
            bruns[r] = pair_run(bctx);
        }
        host = median(hruns, RUNS);
        brokered = median(bruns, RUNS);
    }
    double share_mut = 0, share_imm = 0, acq = 0, rel = 0, acq_imm = 0, rel_imm = 0;
    if (bctx) {
        share_mut = share_costs(bctx, 0, &acq, &rel);
        share_imm = share_costs(bctx, 1, &acq_imm, &rel_imm);
    }
    gms_context_close(hctx);
    gms_context_close(bctx);
    gms_runtime_close(hrt);
    gms_runtime_close(brt);
    printf("lease round trip (2 MiB memfd passed): median %.1f us (target <= 30 us); "
           "release %.1f us\n", lease, release);
    printf("alloc/free pair of 256 B: %.1f ns in a broker's lease, %.1f ns in-process: "
           "%.2fx (target <= 1.2x)\n", brokered, host, host > 0 ? brokered / host : 0);
    printf("share of 64 KiB through gmsd: gms_share %.1f us mutable, %.1f us immutable "
           "(write-sealed); gms_acquire round trip %.1f us (%.1f immutable), release %.1f us\n",
           share_mut, share_imm, acq, acq_imm, rel);
    CHECK(lease > 0 && brokered > 0 && host > 0 && share_mut > 0 && acq > 0);
    CHECK(broker_stop(&b) == 0);
    return test_done();
}
