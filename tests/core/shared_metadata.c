/*
 * shared_metadata.c: no tenant can deny another service through what all
 * tenants share (docs/api.md, "What a tenant can exhaust").
 *
 * - Pools of (tenant, level, language) triples seen over a runtime's life
 *   give back their handle slots, chunks and pool records when they fall
 *   idle: thousands of triples, one after another or at once, leave the
 *   next tenant's first allocation working and nothing held.
 * - One tenant cannot take the whole handle table: past a reserve kept for
 *   tenants holding few handles it gets GMS_E_QUOTA, by allocating or by
 *   acquiring another tenant's share over and over, and other tenants can
 *   still allocate. Freed handles go back to everyone.
 * The table-size bound runs on a small table (the test hook
 * gms__handle_slots_max) so that filling it takes a moment.
 */
#include "test.h"

#include "core/internal.h"

/* Safety off where the metadata is under test, not the poison. */
static gms_safety_mode safety = GMS_SAFETY_OFF;

static gms_runtime *open_rt(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.granule_bytes = 64 << 10;
    o.chunk_bytes = 1 << 20;
    o.safety = safety;
    gms_runtime *rt = NULL;
    CHECK_OK(gms_runtime_open(&rt, &o));
    return rt;
}

static gms_context *open_ctx(gms_runtime *rt, const char *tenant, int level, int language)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "tester";
    d.level = (gms_level)level;
    d.language = (gms_language)language;
    gms_context *ctx = NULL;
    CHECK_OK(gms_context_open(&ctx, rt, &d));
    return ctx;
}

/* Nothing is held once every context is closed. */
static void check_all_returned(gms_runtime *rt)
{
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.live_blocks == 0);
    CHECK(st.reserved_bytes == 0);
    CHECK(st.held_bytes == 0);
    CHECK(st.pools == 0);
    CHECK_OK(gms_verify(rt, NULL));
}

/* The defect: a pool kept its page of the handle table for the runtime's
 * life, so the 4096th triple's first allocation failed, and every later
 * one. */
static void triples_one_after_another(void)
{
    gms_runtime *rt = open_rt();
    if (!rt)
        return;
    enum { TRIPLES = 4600 };
    int failed = 0;
    for (int i = 0; i < TRIPLES && !failed; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i / 32);
        gms_context *c = open_ctx(rt, name, i % 4, (i / 4) % 8);
        gms_buf b;
        int rc = gms_alloc(c, 1000, 0, &b);
        if (rc != GMS_OK) {
            fprintf(stderr, "triple %d: %s\n", i, gms_error_last());
            failed = 1;
        } else {
            CHECK_OK(gms_free(c, b));
        }
        gms_context_close(c);
    }
    CHECK(!failed);
    gms_context *late = open_ctx(rt, "latecomer", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf b;
    CHECK_OK(gms_alloc(late, 1000, 0, &b));
    CHECK_OK(gms_free(late, b));
    gms_context_close(late);
    check_all_returned(rt);
    gms_runtime_close(rt);
}

/* Thousands of pools live at once, one buffer each. */
static void triples_at_once(void)
{
    gms_runtime *rt = open_rt();
    if (!rt)
        return;
    enum { N = 2000 };
    static gms_context *ctx[N];
    static gms_buf buf[N];
    int ok = 1;
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "at-once-%d", i);
        ctx[i] = open_ctx(rt, name, i % 4, i % 8);
        if (!ctx[i] || gms_alloc(ctx[i], 100, 0, &buf[i]) != GMS_OK) {
            fprintf(stderr, "pool %d: %s\n", i, gms_error_last());
            ok = 0;
            break;
        }
    }
    CHECK(ok);
    gms_context *late = open_ctx(rt, "latecomer", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf b;
    CHECK_OK(gms_alloc(late, 1000, 0, &b));
    CHECK_OK(gms_free(late, b));
    gms_context_close(late);
    CHECK_OK(gms_verify(rt, NULL));
    for (int i = 0; i < N && ctx[i]; i++) {
        gms_free(ctx[i], buf[i]);
        gms_context_close(ctx[i]);
    }
    check_all_returned(rt);
    gms_runtime_close(rt);
}

/* A pool whose last context closed while another tenant still held one of
 * its buffers gives everything back once that buffer goes. */
static void orphan_pool(void)
{
    gms_runtime *rt = open_rt();
    if (!rt)
        return;
    gms_context *owner = open_ctx(rt, "owner", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_context *reader = open_ctx(rt, "reader", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf b, r;
    CHECK_OK(gms_alloc(owner, 5000, 0, &b));
    gms_share_grant g = {"reader", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = &g;
    sd.ngrants = 1;
    gms_share_id id;
    CHECK_OK(gms_share(owner, b, &sd, &id));
    CHECK_OK(gms_acquire(reader, id, GMS_ACCESS_READ, &r));
    CHECK_OK(gms_free(owner, b));
    gms_context_close(owner); /* its pool lives on: reader holds r */
    gms_stats st;
    CHECK_OK(gms_stats_get(rt, &st));
    CHECK(st.pools == 2 && st.live_blocks == 1);
    char byte;
    CHECK_OK(gms_read(reader, r, 0, &byte, 1));
    CHECK_OK(gms_release(reader, r));
    gms_context_close(reader);
    check_all_returned(rt);
    gms_runtime_close(rt);
}

#define SMALL_TABLE 65536u

/* One tenant allocating without end is stopped short of the whole table. */
static void greedy_allocator(void)
{
    gms__handle_slots_max = SMALL_TABLE;
    gms_runtime *rt = open_rt();
    gms__handle_slots_max = 0;
    if (!rt)
        return;
    gms_context *greedy = open_ctx(rt, "greedy", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_context *modest = open_ctx(rt, "modest", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_context *other = open_ctx(rt, "other", GMS_LEVEL_PUBLIC, GMS_LANG_PYTHON);
    static gms_buf mine[SMALL_TABLE];
    unsigned n = 0;
    int rc = GMS_OK;
    while (n < SMALL_TABLE && (rc = gms_alloc(greedy, 16, 0, &mine[n])) == GMS_OK)
        n++;
    CHECK_RC(rc, GMS_E_QUOTA);
    CHECK(strstr(gms_error_last(), "handle") != NULL);
    CHECK(n >= SMALL_TABLE - SMALL_TABLE / 16 && n < SMALL_TABLE);
    /* Others are not denied. */
    static gms_buf theirs[1000];
    for (int i = 0; i < 1000; i++)
        CHECK_OK(gms_alloc(i % 2 ? modest : other, 16, 0, &theirs[i]));
    CHECK_OK(gms_verify(rt, NULL));
    for (int i = 0; i < 1000; i++)
        CHECK_OK(gms_free(i % 2 ? modest : other, theirs[i]));
    /* What greedy frees goes back to everyone. */
    for (unsigned i = 0; i < n; i++)
        CHECK_OK(gms_free(greedy, mine[i]));
    gms_context_close(greedy);
    gms_context *next = open_ctx(rt, "next", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    unsigned m = 0;
    while (m < n && gms_alloc(next, 16, 0, &mine[m]) == GMS_OK)
        m++;
    CHECK(m + 512 >= n); /* all of it, but what other pools keep cached */
    for (unsigned i = 0; i < m; i++)
        CHECK_OK(gms_free(next, mine[i]));
    gms_context_close(next);
    gms_context_close(modest);
    gms_context_close(other);
    check_all_returned(rt);
    gms_runtime_close(rt);
}

/* Handles acquired on another tenant's share count for the acquirer. */
static void greedy_acquirer(void)
{
    gms__handle_slots_max = SMALL_TABLE;
    gms_runtime *rt = open_rt();
    gms__handle_slots_max = 0;
    if (!rt)
        return;
    gms_context *owner = open_ctx(rt, "owner", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_context *greedy = open_ctx(rt, "greedy", GMS_LEVEL_INTERNAL, GMS_LANG_C);
    gms_buf b;
    CHECK_OK(gms_alloc(owner, 64, 0, &b));
    gms_share_grant g = {"*", NULL, GMS_ANY_LANGUAGE, GMS_ACCESS_READ};
    gms_share_desc sd = GMS_SHARE_DESC_INIT;
    sd.grants = &g;
    sd.ngrants = 1;
    gms_share_id id;
    CHECK_OK(gms_share(owner, b, &sd, &id));
    static gms_buf held[SMALL_TABLE];
    unsigned n = 0;
    int rc = GMS_OK;
    while (n < SMALL_TABLE && (rc = gms_acquire(greedy, id, GMS_ACCESS_READ, &held[n])) == GMS_OK)
        n++;
    CHECK_RC(rc, GMS_E_QUOTA);
    CHECK(n >= SMALL_TABLE - SMALL_TABLE / 16 && n < SMALL_TABLE);
    /* The owner, whose pool the handles came from, still allocates. */
    gms_buf more[100];
    for (int i = 0; i < 100; i++)
        CHECK_OK(gms_alloc(owner, 64, 0, &more[i]));
    gms_buf_info info;
    CHECK_OK(gms_buf_info_get(owner, b, &info));
    CHECK(info.holders == n + 1);
    CHECK_OK(gms_verify(rt, NULL));
    for (int i = 0; i < 100; i++)
        CHECK_OK(gms_free(owner, more[i]));
    for (unsigned i = 0; i < n; i++)
        CHECK_OK(gms_release(greedy, held[i]));
    CHECK_OK(gms_free(owner, b));
    gms_context_close(greedy);
    gms_context_close(owner);
    check_all_returned(rt);
    gms_runtime_close(rt);
}

int main(void)
{
    triples_one_after_another();
    triples_at_once();
    orphan_pool();
    /* With safety on, freed blocks wait in quarantine: idle pools check
     * and empty it before they give their memory back. */
    safety = GMS_SAFETY_ON;
    triples_at_once();
    orphan_pool();
    safety = GMS_SAFETY_OFF;
    greedy_allocator();
    greedy_acquirer();
    return test_done();
}
