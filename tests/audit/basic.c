/*
 * basic.c: every operation the core performs lands in the trail with its
 * fields (tenant, user, language, op, handle, size, result), in order, and
 * the trail verifies; the key is required and checked; flush makes
 * everything durable and sealed.
 */
#include "util.h"
#include "gms/access.h"

static const gms_trail_record *find(const recs *rs, int op, const char *tenant, size_t from)
{
    for (size_t i = from; i < rs->n; i++)
        if (rs->v[i].op == op && (!tenant || strcmp(rs->v[i].tenant, tenant) == 0))
            return &rs->v[i];
    return NULL;
}

int main(void)
{
    char dir[PATH_MAX], keyf[PATH_MAX + 16];
    tmpdir_make(dir, sizeof dir);
    snprintf(keyf, sizeof keyf, "%s.key", dir);
    key_file_write(keyf);

    /* A trail needs a key. */
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.audit_dir = dir;
    gms_runtime *rt = NULL;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "key") != NULL);
    o.audit_key = (const uint8_t *)"short";
    o.audit_key_len = 5;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);

    /* The key file option works; a second runtime on the same trail is busy. */
    o.audit_key = NULL;
    o.audit_key_len = 0;
    o.audit_key_file = keyf;
    CHECK_OK(gms_runtime_open(&rt, &o));
    gms_runtime *rt2 = NULL;
    CHECK_RC(gms_runtime_open(&rt2, &o), GMS_E_BUSY);

    gms_context *a = ctx_open(rt, "acme", "alice", GMS_LANG_RUST);
    gms_context *b = ctx_open(rt, "globex", "bob", GMS_LANG_PYTHON);
    CHECK(a && b);
    CHECK_OK(gms_tenant_set_quota(rt, "globex", 4096, GMS_UNLIMITED));
    gms_buf x, y, z;
    CHECK_OK(gms_alloc(a, 1000, 0, &x));
    CHECK_OK(gms_alloc(a, 5000, 0, &y));
    CHECK_RC(gms_alloc(b, 8192, 0, &z), GMS_E_QUOTA);      /* quota refusal */
    CHECK_RC(gms_free(b, x), GMS_E_ACCESS_DENIED);         /* another tenant's buffer */
    CHECK_OK(gms_free(a, x));
    CHECK_RC(gms_free(a, x), GMS_E_INVALID_HANDLE);        /* double free: a violation */
    CHECK_OK(gms_audit_flush(rt));

    /* After flush, everything so far is on disk, sealed: a reader sees it. */
    recs rs;
    gms_trail_summary s;
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    CHECK(s.verified);
    CHECK(s.checkpoints >= 1);
    CHECK(s.unsealed == 0);
    CHECK(rs.n >= 9);
    CHECK(rs.n && rs.v[0].op == GMS_AUDIT_RUNTIME_OPEN);
    for (size_t i = 0; i < rs.n; i++)
        CHECK(rs.v[i].seq == i + 1);
    const gms_trail_record *r = find(&rs, GMS_AUDIT_CONTEXT_OPEN, "acme", 0);
    CHECK(r && strcmp(r->user, "alice") == 0 && r->language == GMS_LANG_RUST);
    r = find(&rs, GMS_AUDIT_CONFIG, "globex", 0);
    CHECK(r && r->size == 4096 && strstr(r->detail, "quota") != NULL);
    r = find(&rs, GMS_AUDIT_ALLOC, "acme", 0);
    CHECK(r && r->handle == x && r->size == 1000 && r->result == 0 && r->time_ns > 0);
    r = find(&rs, GMS_AUDIT_QUOTA_REFUSED, "globex", 0);
    CHECK(r && r->size == 8192 && r->result == GMS_E_QUOTA && strcmp(r->user, "bob") == 0);
    r = find(&rs, GMS_AUDIT_ACCESS_DENIED, "globex", 0);
    CHECK(r && r->handle == x && r->result == GMS_E_ACCESS_DENIED && r->language == GMS_LANG_PYTHON);
    r = find(&rs, GMS_AUDIT_FREE, "acme", 0);
    CHECK(r && r->handle == x && r->size == 1000 && r->result == 0);
    r = find(&rs, GMS_AUDIT_VIOLATION, "acme", 0);
    CHECK(r && r->handle == x && r->result == GMS_E_INVALID_HANDLE && r->detail[0]);
    free(rs.v);

    /* Leaks at context close (y with a window open: a leak of its own),
     * context close, runtime close. */
    CHECK_OK(gms_access_begin(a, y, GMS_ACCESS_READ_WRITE, 0, NULL));
    gms_context_close(a);
    gms_context_close(b);
    gms_runtime_close(rt);
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    r = find(&rs, GMS_AUDIT_LEAK, "acme", 0);
    CHECK(r && r->handle == y && r->size == 5000);
    r = r ? find(&rs, GMS_AUDIT_LEAK, "acme", (size_t)(r - rs.v) + 1) : NULL;
    CHECK(r && r->handle == y && strstr(r->detail, "access window open at context close") != NULL);
    r = find(&rs, GMS_AUDIT_CONTEXT_CLOSE, "acme", 0);
    CHECK(r && r->size == 1);
    CHECK(rs.n && rs.v[rs.n - 1].op == GMS_AUDIT_RUNTIME_CLOSE);
    CHECK(s.unsealed == 0); /* close seals */
    size_t first_run = rs.n;
    free(rs.v);

    /* Reopening continues the same chain in a new segment. */
    rt = trail_open(dir, 0, 0);
    CHECK(rt != NULL);
    gms_runtime_close(rt);
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    CHECK(s.segments == 2 && rs.n == first_run + 2);
    CHECK(rs.n > first_run && rs.v[first_run].seq == first_run + 1);
    free(rs.v);

    /* The wrong key is an error, not tampering. */
    uint8_t wrong[32] = "another key, not the trail's!!!";
    CHECK_RC(gms__trail_read(dir, wrong, sizeof wrong, NULL, NULL, &s), GMS_TRAIL_ERROR);
    CHECK(strstr(s.message, "key") != NULL);
    /* Without a key the records are read but not verified. */
    CHECK_RC(gms__trail_read(dir, NULL, 0, NULL, NULL, &s), GMS_TRAIL_OK);
    CHECK(!s.verified);
    /* A runtime with another key refuses the trail. */
    o.audit_key_file = NULL;
    o.audit_key = wrong;
    o.audit_key_len = sizeof wrong;
    CHECK_RC(gms_runtime_open(&rt, &o), GMS_E_INVALID_ARG);
    /* No trail: flush says so. */
    gms_runtime_options plain = GMS_RUNTIME_OPTIONS_INIT;
    plain.backend = GMS_BACKEND_HOST;
    CHECK_OK(gms_runtime_open(&rt, &plain));
    CHECK_RC(gms_audit_flush(rt), GMS_E_UNSUPPORTED);
    gms_runtime_close(rt);

    rm_rf(dir);
    unlink(keyf);
    return test_done();
}
