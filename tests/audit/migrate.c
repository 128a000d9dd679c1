/*
 * migrate.c: the audit trail records pool migrations and lost devices
 * (docs/migration.md): a migration with its bytes and devices, a refused
 * one with its error, and a device declared lost with the driver's words;
 * the trail reader names both ops.
 */
#include "util.h"
#include "gms/migrate.h"
#include "gms/testing.h"

static const gms_trail_record *find(const recs *rs, int op, int result)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].op == op && rs->v[i].result == result)
            return &rs->v[i];
    return NULL;
}

int main(void)
{
    char dir[PATH_MAX];
    tmpdir_make(dir, sizeof dir);
    gms_runtime *rt = trail_open(dir, 0, 0);
    CHECK(rt != NULL);
    if (!rt)
        return test_done();
    uint64_t free_bytes[2] = {1ull << 34, 1ull << 34};
    uint32_t busy[2] = {0, 0};
    CHECK_OK(gms_testing_devices(rt, 2, free_bytes, busy));
    gms_context *c = ctx_open(rt, "acme", "alice", GMS_LANG_C);
    gms_buf x;
    CHECK_OK(gms_alloc(c, 100000, 0, &x));
    CHECK_OK(gms_pool_migrate(c, 1));
    CHECK_OK(gms_device_lost(rt, 0, "Xid 79: GPU has fallen off the bus"));
    CHECK_RC(gms_pool_migrate(c, 0), GMS_E_BACKEND);
    CHECK_OK(gms_free(c, x));
    CHECK_OK(gms_audit_flush(rt));

    recs rs;
    gms_trail_summary s;
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    CHECK(s.verified);
    const gms_trail_record *r = find(&rs, GMS_AUDIT_MIGRATE, 0);
    /* 100000 bytes live: the granules under them moved */
    CHECK(r && r->size >= 100000 && strstr(r->detail, "device 0 -> 1") &&
          strcmp(r->tenant, "acme") == 0);
    r = find(&rs, GMS_AUDIT_MIGRATE, GMS_E_BACKEND);
    CHECK(r && r->size == 0 && strstr(r->detail, "device 0 is lost"));
    r = find(&rs, GMS_AUDIT_DEVICE_LOST, 0);
    CHECK(r && r->size == 0 && strstr(r->detail, "device 0: Xid 79: GPU has fallen off the bus"));
    CHECK(strcmp(gms__trail_op_name(GMS_AUDIT_MIGRATE), "migrate") == 0);
    CHECK(strcmp(gms__trail_op_name(GMS_AUDIT_DEVICE_LOST), "device_lost") == 0);
    CHECK(gms__trail_op_parse("device_lost") == GMS_AUDIT_DEVICE_LOST);
    free(rs.v);
    gms_context_close(c);
    gms_runtime_close(rt);
    rm_rf(dir);
    return test_done();
}
