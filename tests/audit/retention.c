/*
 * retention.c: segments rotate at midnight UTC and by size; retention
 * deletes whole segments older than the limit, records that it did, and
 * the chain stays verifiable from the oldest kept segment.
 */
#include "util.h"
#include "gms/testing.h"

#include <time.h>

#define DAY_NS (86400ll * 1000000000ll)

static void some_ops(const char *dir, uint32_t retention, int n)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.audit_dir = dir;
    o.audit_key = test_key;
    o.audit_key_len = sizeof test_key;
    o.audit_retention_days = retention;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return;
    gms_context *c = ctx_open(rt, "acme", "alice", GMS_LANG_C);
    for (int i = 0; i < n; i++) {
        gms_buf h;
        if (gms_alloc(c, 4096, 0, &h) == GMS_OK)
            gms_free(c, h);
    }
    gms_context_close(c);
    gms_runtime_close(rt);
}

static uint32_t day_of(const char *path)
{
    uint64_t ix;
    uint32_t day = 0;
    gms__audit_seg_parse(strrchr(path, '/') + 1, &ix, &day);
    return day;
}

int main(void)
{
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    char seg[64][PATH_MAX];

    /* Segments written 100 and 50 days ago, then today with 90 days kept. */
    gms_testing_audit_clock_skew(-100 * DAY_NS);
    some_ops(dir, 0, 10);
    gms_testing_audit_clock_skew(-50 * DAY_NS);
    some_ops(dir, 0, 10);
    CHECK(seg_files(dir, seg, 64) == 2);
    gms_testing_audit_clock_skew(0);
    some_ops(dir, 0, 10);
    size_t n = seg_files(dir, seg, 64);
    CHECK(n == 2); /* the 100-day-old segment is gone */
    recs rs;
    gms_trail_summary s;
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    CHECK(s.retention_gap && s.first_segment == 2);
    bool said = false;
    for (size_t i = 0; i < rs.n; i++)
        said |= rs.v[i].op == GMS_AUDIT_CONFIG && strstr(rs.v[i].detail, "retention: deleted segment 1");
    CHECK(said);
    free(rs.v);

    /* A shorter retention removes the 50-day-old one too; verify starts at
     * the oldest kept checkpoint (segment 3's header). */
    some_ops(dir, 30, 1);
    n = seg_files(dir, seg, 64);
    CHECK(n == 2);
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_OK);
    CHECK(s.first_segment == 3);

    /* Rotation at midnight UTC: start 300 ms before it. */
    rm_rf(dir);
    tmpdir_make(dir, sizeof dir);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
    int64_t midnight = (now / DAY_NS + 1) * DAY_NS;
    gms_testing_audit_clock_skew(midnight - now - 300000000ll);
    gms_runtime *rt = trail_open(dir, 0, 0);
    CHECK(rt != NULL);
    gms_context *c = ctx_open(rt, "acme", "alice", GMS_LANG_C);
    for (int i = 0; i < 120; i++) {
        gms_buf h;
        if (gms_alloc(c, 64, 0, &h) == GMS_OK)
            gms_free(c, h);
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    gms_context_close(c);
    gms_runtime_close(rt);
    gms_testing_audit_clock_skew(0);
    n = seg_files(dir, seg, 64);
    CHECK(n == 2);
    if (n == 2)
        CHECK(gms__audit_day_number(day_of(seg[1])) == gms__audit_day_number(day_of(seg[0])) + 1);
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    /* Every record of the first segment is before midnight, of the second after. */
    for (size_t i = 0; i < rs.n; i++)
        CHECK((rs.v[i].segment == 1) == (rs.v[i].time_ns < (uint64_t)midnight));
    free(rs.v);

    /* Rotation by size keeps every segment within the limit. */
    rm_rf(dir);
    tmpdir_make(dir, sizeof dir);
    rt = trail_open(dir, 32 * 1024, 0);
    c = ctx_open(rt, "acme", "alice", GMS_LANG_C);
    for (int i = 0; i < 2000; i++) {
        gms_buf h;
        if (gms_alloc(c, 64, 0, &h) == GMS_OK)
            gms_free(c, h);
    }
    gms_context_close(c);
    gms_runtime_close(rt);
    n = seg_files(dir, seg, 64);
    CHECK(n >= 15);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        CHECK(stat(seg[i], &st) == 0 && st.st_size <= 32 * 1024 && st.st_size % 256 == 0);
    }
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_OK);
    CHECK(s.records == 4004);

    rm_rf(dir);
    return test_done();
}
