/*
 * rename.c: retention decides from the day in a segment's MAC'd header,
 * not from its file name, and verify tells every deletion of old segments
 * that retention did not record (in the chain, before deleting) from one
 * it did.
 *
 * - A segment written today, renamed to look 100 days old, survives the
 *   next runtime's retention; verify reports the rename.
 * - A segment 100 days old, renamed to look new, is still deleted.
 * - Oldest segments deleted by hand: verify reports tampering, where
 *   before it said "removed by retention".
 */
#include "util.h"
#include "gms/testing.h"

#include <time.h>

#define DAY_NS (86400ll * 1000000000ll)

static void some_ops(const char *dir, uint32_t retention)
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
    for (int i = 0; i < 10; i++) {
        gms_buf h;
        if (gms_alloc(c, 4096, 0, &h) == GMS_OK)
            gms_free(c, h);
    }
    gms_context_close(c);
    gms_runtime_close(rt);
}

/* Renames segment ix of dir to carry day (YYYYMMDD) in its name. */
static void rename_day(const char *dir, uint64_t ix, uint32_t day)
{
    char seg[16][PATH_MAX], to[PATH_MAX];
    size_t n = seg_files(dir, seg, 16);
    for (size_t i = 0; i < n; i++) {
        uint64_t x;
        uint32_t d;
        gms__audit_seg_parse(strrchr(seg[i], '/') + 1, &x, &d);
        if (x != ix)
            continue;
        snprintf(to, sizeof to, "%s/gms-audit-%08llu-%08u.seg", dir, (unsigned long long)ix, day);
        CHECK(rename(seg[i], to) == 0);
    }
}

static bool has_segment(const char *dir, uint64_t ix)
{
    char seg[16][PATH_MAX];
    size_t n = seg_files(dir, seg, 16);
    for (size_t i = 0; i < n; i++) {
        uint64_t x;
        uint32_t d;
        if (gms__audit_seg_parse(strrchr(seg[i], '/') + 1, &x, &d) == 0 && x == ix)
            return true;
    }
    return false;
}

static uint32_t day_ago(int days)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return gms__audit_day((uint64_t)ts.tv_sec * 1000000000ull - (uint64_t)days * DAY_NS);
}

int main(void)
{
    char dir[256];
    gms_trail_summary s;

    /* Today's segment 1 renamed to look 100 days old. */
    tmpdir_make(dir, sizeof dir);
    some_ops(dir, 0);
    some_ops(dir, 0);
    rename_day(dir, 1, day_ago(100));
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_TAMPERED);
    CHECK(strstr(s.message, "renamed") != NULL);
    printf("renamed to look old: %s\n", s.message);
    some_ops(dir, 90);
    CHECK(has_segment(dir, 1)); /* not deleted: its header says today */
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_TAMPERED);
    rm_rf(dir);

    /* A segment 100 days old renamed to look new: still deleted. */
    tmpdir_make(dir, sizeof dir);
    gms_testing_audit_clock_skew(-100 * DAY_NS);
    some_ops(dir, 1000);
    gms_testing_audit_clock_skew(0);
    some_ops(dir, 1000);
    CHECK(has_segment(dir, 1));
    rename_day(dir, 1, day_ago(0));
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_TAMPERED);
    some_ops(dir, 90);
    CHECK(!has_segment(dir, 1));
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_OK);
    CHECK(s.retention_gap && s.first_segment == 2);
    rm_rf(dir);

    /* The oldest segment deleted by hand: no retention record explains it. */
    tmpdir_make(dir, sizeof dir);
    some_ops(dir, 0);
    some_ops(dir, 0);
    some_ops(dir, 0);
    char seg[16][PATH_MAX];
    CHECK(seg_files(dir, seg, 16) == 3);
    CHECK(unlink(seg[0]) == 0);
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_TAMPERED);
    CHECK(strstr(s.message, "retention") != NULL);
    printf("oldest deleted by hand: %s\n", s.message);
    rm_rf(dir);

    /* After a real retention run, deleting the oldest kept segment too. */
    tmpdir_make(dir, sizeof dir);
    gms_testing_audit_clock_skew(-100 * DAY_NS);
    some_ops(dir, 0);
    gms_testing_audit_clock_skew(-10 * DAY_NS);
    some_ops(dir, 0);
    gms_testing_audit_clock_skew(0);
    some_ops(dir, 0); /* deletes segment 1, says so in segment 3 */
    some_ops(dir, 0);
    CHECK(seg_files(dir, seg, 16) == 3);
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_OK);
    CHECK(s.retention_gap && s.first_segment == 2);
    CHECK(unlink(seg[0]) == 0); /* segment 2, ten days old */
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_TAMPERED);
    printf("kept segment deleted by hand: %s\n", s.message);
    rm_rf(dir);

    /* Read without the key, a forged retention record with absurd fields
     * is refused, not computed with. */
    tmpdir_make(dir, sizeof dir);
    some_ops(dir, 0);
    size_t n = seg_files(dir, seg, 16);
    CHECK(n == 1);
    recs rs;
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    gms_audit_block b;
    memset(&b, 0, sizeof b);
    b.seq = s.last_seq + 1;
    b.time_ns = rs.v[rs.n - 1].time_ns;
    b.op = GMS_AUDIT_CONFIG;
    b.kind = GMS_AUDIT_KIND_RECORD;
    b.size = 1;
    b.handle = 20260101;
    b.context_id = (uint64_t)INT64_MAX;
    snprintf(b.text + 2, sizeof b.text - 2, "retention: deleted segment 1");
    free(rs.v);
    FILE *f = fopen(seg[0], "ab");
    CHECK(f && fwrite(&b, sizeof b, 1, f) == 1);
    if (f)
        fclose(f);
    CHECK_RC(gms__trail_read(dir, NULL, 0, NULL, NULL, &s), GMS_TRAIL_TAMPERED);
    printf("forged retention record, read without the key: %s\n", s.message);
    rm_rf(dir);

    return test_done();
}
