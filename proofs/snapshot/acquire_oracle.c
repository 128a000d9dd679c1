/*
 * proofs/snapshot/acquire_oracle.c: the compiled library's access
 * decision, through its public calls, so that the Z3 model of share.c's
 * gms_acquire in proofs/snapshot/share_decision.py can be checked against
 * it on many inputs (the model is what is proved; this ties it to the
 * code). Linked with build/libgms.so by proofs/run.sh.
 *
 * One query a line, one answer a line:
 *   acquire IMMUTABLE REVOKED WRITERS TENANT USER LANGUAGE MODE N (T U L M)*N
 * A buffer of the owner (tenant "a", user "u", language C) is shared with
 * the N grants (tenant T: a name, "-" for NULL (the owner's), "*" for any;
 * user U: a name or "-"; language L, -1 for any; mode M), immutable or
 * not, then revoked or not. With WRITERS 0 the owner first acquires it to
 * read and frees its own read-write handle, so no holder writes; that
 * needs a grant letting the owner in, and the answer is "skip" without
 * one. Then a context of (TENANT, USER, LANGUAGE) acquires with MODE: the
 * answer is gms_acquire's result code.
 */
#include "gms.h"
#include "gms/access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTEXTS_MAX 256

static gms_runtime *rt;
static struct {
    char tenant[16], user[16];
    int language;
    gms_context *ctx;
} ctxs[CONTEXTS_MAX];
static int nctxs;

static gms_context *context(const char *tenant, const char *user, int language)
{
    for (int i = 0; i < nctxs; i++)
        if (!strcmp(ctxs[i].tenant, tenant) && !strcmp(ctxs[i].user, user) &&
            ctxs[i].language == language)
            return ctxs[i].ctx;
    if (nctxs == CONTEXTS_MAX)
        return NULL;
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = user;
    d.language = (gms_language)language;
    if (gms_context_open(&ctxs[nctxs].ctx, rt, &d) != GMS_OK)
        return NULL;
    snprintf(ctxs[nctxs].tenant, sizeof ctxs[nctxs].tenant, "%s", tenant);
    snprintf(ctxs[nctxs].user, sizeof ctxs[nctxs].user, "%s", user);
    ctxs[nctxs].language = language;
    return ctxs[nctxs++].ctx;
}

static const char *name_or_null(const char *s)
{
    return strcmp(s, "-") ? s : NULL;
}

/* One query; prints its answer. Returns 0, or 2 on a malformed query or
 * a call that should not fail. */
static int query(void)
{
    int immutable, revoked, writers, language, mode;
    size_t n;
    char tenant[16], user[16];
    if (scanf("%d %d %d %15s %15s %d %d %zu", &immutable, &revoked, &writers, tenant, user,
              &language, &mode, &n) != 8 || n == 0 || n > GMS_SHARE_GRANTS_MAX)
        return 2;
    static char names[GMS_SHARE_GRANTS_MAX][2][16];
    gms_share_grant g[GMS_SHARE_GRANTS_MAX];
    for (size_t i = 0; i < n; i++) {
        int l, m;
        if (scanf("%15s %15s %d %d", names[i][0], names[i][1], &l, &m) != 4)
            return 2;
        g[i] = (gms_share_grant){name_or_null(names[i][0]), name_or_null(names[i][1]), l,
                                 (gms_access)m};
    }
    gms_context *owner = context("a", "u", GMS_LANG_C), *who = context(tenant, user, language);
    if (!owner || !who)
        return 2;
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = g;
    d.ngrants = n;
    d.immutable = immutable;
    gms_buf buf, keep = GMS_BUF_NULL, got = GMS_BUF_NULL;
    gms_share_id id;
    if (gms_alloc(owner, 64, 0, &buf) != GMS_OK || gms_share(owner, buf, &d, &id) != GMS_OK)
        return 2;
    int rc = GMS_OK;
    if (!writers) {
        rc = gms_acquire(owner, id, GMS_ACCESS_READ, &keep);
        if (rc == GMS_OK && gms_free(owner, buf) == GMS_OK)
            buf = GMS_BUF_NULL;
        else if (rc == GMS_OK)
            return 2;
    }
    if (rc == GMS_OK && revoked && gms_revoke(owner, id) != GMS_OK)
        return 2;
    if (rc == GMS_OK) {
        rc = gms_acquire(who, id, (gms_access)mode, &got);
        printf("%d\n", rc);
    } else {
        printf("skip\n");
    }
    if ((got && gms_free(who, got) != GMS_OK) || (keep && gms_free(owner, keep) != GMS_OK) ||
        (buf && gms_free(owner, buf) != GMS_OK))
        return 2;
    return 0;
}

int main(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    if (gms_runtime_open(&rt, &o) != GMS_OK) {
        fprintf(stderr, "acquire_oracle: %s\n", gms_error_last());
        return 2;
    }
    char op[16];
    int rc = 0;
    while (rc == 0 && scanf("%15s", op) == 1)
        rc = strcmp(op, "acquire") ? 2 : query();
    if (rc)
        fprintf(stderr, "acquire_oracle: bad query or failed call: %s\n", gms_error_last());
    for (int i = 0; i < nctxs; i++)
        gms_context_close(ctxs[i].ctx);
    gms_runtime_close(rt);
    return rc;
}
