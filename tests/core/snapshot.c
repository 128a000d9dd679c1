/*
 * snapshot.c: gms_testing_snapshot writes the runtime's state as JSON:
 * tenants (names escaped) with the quota counters gms_tenant_stats shows,
 * one entry per block of each state, shares with their grants as share.c
 * stores them (NULL tenant: the owner's name; "*": ""; NULL user: "") and
 * their revoked flag. A NULL runtime, a negative or unwritable descriptor
 * are refused with their codes and change nothing.
 */
#include "test.h"
#include "gms/testing.h"

#include <fcntl.h>
#include <unistd.h>

static int count(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* The snapshot as text (a static buffer), "" when it could not be read. */
static const char *snapshot(gms_runtime *rt)
{
    static char text[1 << 20];
    text[0] = 0;
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f)
        return text;
    CHECK_OK(gms_testing_snapshot(rt, fileno(f)));
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    return text;
}

/* The unsigned number after `key` in the first object that has `name`. */
static unsigned long long field(const char *text, const char *name, const char *key)
{
    const char *at = strstr(text, name);
    const char *k = at ? strstr(at, key) : NULL;
    return k ? strtoull(k + strlen(key), NULL, 10) : ~0ull;
}

int main(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 << 10;
    o.chunk_bytes = 1 << 20;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    if (!rt)
        return test_done();
    const char *odd = "we\"ird\\name"; /* a name JSON must escape */
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = odd;
    d.user = "alice";
    gms_context *a = NULL, *b = NULL;
    CHECK_OK(gms_context_open(&a, rt, &d));
    d.tenant = "other";
    d.user = "bob";
    d.language = GMS_LANG_PYTHON;
    CHECK_OK(gms_context_open(&b, rt, &d));
    if (!a || !b)
        return test_done();

    gms_buf x, y, z, gone;
    CHECK_OK(gms_alloc(a, 1000, 0, &x));
    CHECK_OK(gms_alloc(a, 5000, 0, &y));
    CHECK_OK(gms_alloc(b, 300, 0, &z));
    CHECK_OK(gms_alloc(b, 700, 0, &gone));
    CHECK_OK(gms_free(b, gone)); /* quarantined */
    gms_share_grant grants[] = {
        {"*", "bob", GMS_LANG_PYTHON, GMS_ACCESS_READ_WRITE},
        {NULL, NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ},
    };
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = grants;
    sd.ngrants = 2;
    gms_share_id id;
    CHECK_OK(gms_share(a, x, &sd, &id));
    CHECK_OK(gms_revoke(a, id));

    /* Wrong inputs: refused, nothing written or changed. */
    gms_stats before, after;
    CHECK_OK(gms_stats_get(rt, &before));
    CHECK_RC(gms_testing_snapshot(NULL, 1), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "runtime is NULL") != NULL);
    CHECK_RC(gms_testing_snapshot(rt, -1), GMS_E_INVALID_ARG);
    CHECK(strstr(gms_error_last(), "file descriptor -1") != NULL);
    int ro = open("/dev/null", O_RDONLY);
    CHECK(ro >= 0);
    CHECK_RC(gms_testing_snapshot(rt, ro), GMS_E_BACKEND);
    CHECK(strstr(gms_error_last(), "Bad file descriptor") != NULL);
    close(ro);
    CHECK_OK(gms_stats_get(rt, &after));
    CHECK(before.live_bytes == after.live_bytes && before.pools == after.pools &&
          before.live_blocks == after.live_blocks && before.shares == after.shares);

    const char *s = snapshot(rt);
    CHECK(strncmp(s, "{\"gms_snapshot\": 1, \"backend\": \"host\", \"granule\": 65536", 54) == 0);
    CHECK(strstr(s, "\"name\": \"we\\\"ird\\\\name\"") != NULL);
    CHECK(count(s, "\"state\": \"live\"") == 3);
    CHECK(count(s, "\"state\": \"quarantine\"") == 1);
    CHECK(count(s, "\"owner_tenant\": \"other\"") == 1); /* z's owner */
    gms_tenant_stats ts;
    CHECK_OK(gms_tenant_stats_get(rt, 1, &ts));
    CHECK(strcmp(ts.tenant, "other") == 0);
    CHECK(field(s, "{\"name\": \"other\"", "\"live_bytes\": ") == ts.live_bytes);
    CHECK(field(s, "{\"name\": \"other\"", "\"live_allocs\": ") == ts.live_blocks);
    /* The grants as share.c stores them. */
    CHECK(strstr(s, "\"revoked\": true, \"holders\": 1, \"writers\": 1") != NULL);
    CHECK(strstr(s, "{\"tenant\": \"\", \"user\": \"bob\", \"language\": 6, \"mode\": 2}") != NULL);
    CHECK(strstr(s, "{\"tenant\": \"we\\\"ird\\\\name\", \"user\": \"\", \"language\": -1, \"mode\": 1}") != NULL);
    CHECK(strlen(s) > 4 && strcmp(s + strlen(s) - 4, "]\n}\n") == 0);

    CHECK_OK(gms_free(a, x));
    CHECK_OK(gms_free(a, y));
    CHECK_OK(gms_free(b, z));
    CHECK_OK(gms_verify(rt, NULL));
    CHECK(count(snapshot(rt), "\"state\": \"live\"") == 0);
    gms_context_close(a);
    gms_context_close(b);
    gms_runtime_close(rt);
    return test_done();
}
