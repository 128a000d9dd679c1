/*
 * seal.c: the audit trail records a sealed buffer's life (docs/sealed.md):
 * the seal, a tag that fails at unseal (a violation naming the chunk),
 * the unseal, and the crypto-erase of its data key when it is freed.
 */
#include "util.h"
#include "gms/seal.h"

static int provider(void *user, const char *tenant, uint8_t key[32])
{
    (void)user;
    (void)tenant;
    memset(key, 7, 32);
    return 0;
}

static const gms_trail_record *find(const recs *rs, int op, uint64_t handle)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].op == op && rs->v[i].handle == handle)
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
    gms_context *c = ctx_open(rt, "acme", "alice", GMS_LANG_C);
    CHECK_OK(gms_on_key_request(rt, provider, NULL));
    gms_buf x, y;
    CHECK_OK(gms_alloc(c, 100000, 0, &x));
    CHECK_OK(gms_alloc(c, 1000, 0, &y));
    void *p = NULL;
    CHECK_OK(gms_buf_ptr(c, x, &p));
    CHECK_OK(gms_seal(c, x));
    ((volatile uint8_t *)p)[70000] ^= 4; /* chunk 1 */
    CHECK_RC(gms_unseal(c, x), GMS_E_CORRUPTION);
    ((volatile uint8_t *)p)[70000] ^= 4;
    CHECK_OK(gms_unseal(c, x));
    CHECK_OK(gms_seal(c, x));
    CHECK_OK(gms_free(c, x));
    CHECK_OK(gms_free(c, y)); /* never sealed: no crypto-erase */
    CHECK_OK(gms_audit_flush(rt));

    recs rs;
    gms_trail_summary s;
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    CHECK(s.verified);
    const gms_trail_record *r = find(&rs, GMS_AUDIT_SEAL, x);
    CHECK(r && r->result == 0 && r->size == 100000 && strstr(r->detail, "2 chunks") &&
          strcmp(r->tenant, "acme") == 0);
    r = find(&rs, GMS_AUDIT_VIOLATION, x);
    CHECK(r && r->result == GMS_E_CORRUPTION && strstr(r->detail, "chunk 1 "));
    r = find(&rs, GMS_AUDIT_UNSEAL, x);
    CHECK(r && r->result == 0);
    r = find(&rs, GMS_AUDIT_CRYPTO_ERASE, x);
    CHECK(r && r->size == 100000 && strcmp(r->tenant, "acme") == 0 &&
          strstr(r->detail, "data key destroyed (1 keys, 2 seals); its ciphertext is unrecoverable"));
    CHECK(find(&rs, GMS_AUDIT_CRYPTO_ERASE, y) == NULL);
    const gms_trail_record *fr = find(&rs, GMS_AUDIT_FREE, x);
    CHECK(fr && r && r->seq < fr->seq); /* the key goes before the free returns */
    CHECK(strcmp(gms__trail_op_name(GMS_AUDIT_CRYPTO_ERASE), "crypto_erase") == 0);
    free(rs.v);
    gms_context_close(c);
    gms_runtime_close(rt);
    rm_rf(dir);
    return test_done();
}
