/*
 * cli.c: the gms CLI over a trail: export --format jsonl gives one JSON
 * object per record; query filters by tenant, op and time; report writes
 * the HTML page; verify's exit status tells OK, tampered and usage apart.
 */
#include "util.h"

#include <time.h>

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

int main(void)
{
    char dir[256], keyf[300], cli[PATH_MAX + 8], html[320];
    static char out[1 << 20];
    tmpdir_make(dir, sizeof dir);
    snprintf(keyf, sizeof keyf, "%s.key", dir);
    snprintf(html, sizeof html, "%s.html", dir);
    key_file_write(keyf);
    cli_path(cli, sizeof cli);

    gms_runtime *rt = trail_open(dir, 0, 0);
    CHECK(rt != NULL);
    gms_context *a = ctx_open(rt, "acme", "alice", GMS_LANG_RUST);
    gms_context *b = ctx_open(rt, "globex", "bob \"the\" <admin>", GMS_LANG_ELIXIR);
    gms_buf h[10];
    for (int i = 0; i < 10; i++)
        CHECK_OK(gms_alloc(i % 2 ? b : a, 1024u * (unsigned)(i + 1), 0, &h[i]));
    CHECK_RC(gms_free(b, h[0]), GMS_E_ACCESS_DENIED);
    for (int i = 0; i < 10; i++)
        CHECK_OK(gms_free(i % 2 ? b : a, h[i]));
    gms_context_close(a);
    gms_context_close(b);
    gms_runtime_close(rt);
    gms_trail_summary s;
    CHECK_RC(trail_verify(dir, &s), GMS_TRAIL_OK);

    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "export", dir, "--format", "jsonl", "--key-file", keyf) == 0);
    CHECK(count_lines(out) == (int)s.records);
    CHECK(strstr(out, "\"op\":\"alloc\"") != NULL);
    CHECK(strstr(out, "\"op\":\"access_denied\"") != NULL);
    CHECK(strstr(out, "\"user\":\"bob \\\"the\\\" <admin>\"") != NULL);
    CHECK(strstr(out, "\"language\":\"elixir\"") != NULL);
    CHECK(strncmp(out, "{\"seq\":1,", 9) == 0);

    CHECK(run_tool(NULL, 0, 1, cli, "audit", "export", dir) == 2); /* --format is required */

    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "query", dir, "--tenant", "acme", "--op", "alloc", "--key-file", keyf) == 0);
    CHECK(count_lines(out) == 5);
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "query", dir, "--op", "alloc,free", "--format", "jsonl", "--key-file", keyf) == 0);
    CHECK(count_lines(out) == 20); /* the refused free is recorded as access_denied */
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "query", dir, "--op", "access_denied", "--key-file", keyf) == 0);
    CHECK(count_lines(out) == 1 && strstr(out, "globex") != NULL);
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "query", dir, "--since", "-1h", "--until", "2999-01-01", "--key-file", keyf) == 0);
    CHECK(count_lines(out) == (int)s.records);
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "query", dir, "--since", "2999-01-01T00:00:00Z", "--key-file", keyf) == 0);
    CHECK(count_lines(out) == 0);
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "query", dir, "--until", "2000-01-01", "--key-file", keyf) == 0);
    CHECK(count_lines(out) == 0);
    CHECK(run_tool(NULL, 0, 1, cli, "audit", "query", dir, "--op", "nonsense") == 2);

    /* --limit N prints at most N records: 0 prints none. */
    const char *limits[] = {"0", "1", "3"};
    for (int i = 0; i < 3; i++) {
        CHECK(run_tool(out, sizeof out, 0, cli, "audit", "query", dir, "--limit", limits[i], "--key-file", keyf) == 0);
        CHECK(count_lines(out) == atoi(limits[i]));
        CHECK(run_tool(out, sizeof out, 0, cli, "audit", "export", dir, "--format", "jsonl", "--limit", limits[i], "--key-file", keyf) == 0);
        CHECK(count_lines(out) == atoi(limits[i]));
    }
    /* A limit that is not a count is a usage error, not 0 or "no limit". */
    const char *bad_limits[] = {"-1", "abc", "3x", "", "99999999999999999999999"};
    for (int i = 0; i < 5; i++)
        CHECK(run_tool(out, sizeof out, 1, cli, "audit", "query", dir, "--limit", bad_limits[i]) == 2);
    /* Times that are not times are usage errors too. */
    const char *bad_times[] = {"@", "@inf", "@-5", "-s", "-nand", "2026-13-01", "2026-01-32",
                               "2026-01-01T25:00", "2026-01-01T10:61", "2026-01-01T10:00:-5"};
    for (int i = 0; i < 10; i++)
        CHECK(run_tool(out, sizeof out, 1, cli, "audit", "query", dir, "--since", bad_times[i]) == 2);
    /* -o FILE is --output FILE. */
    char outf[320];
    snprintf(outf, sizeof outf, "%s.out", dir);
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "export", dir, "--format", "jsonl", "-o", outf, "--key-file", keyf) == 0);
    FILE *of = fopen(outf, "r");
    CHECK(of != NULL);
    if (of) {
        size_t n = fread(out, 1, sizeof out - 1, of);
        out[n] = 0;
        fclose(of);
        CHECK(count_lines(out) == (int)s.records);
    }
    unlink(outf);

    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "report", dir, "--html", html, "--key-file", keyf) == 0);
    FILE *f = fopen(html, "r");
    CHECK(f != NULL);
    if (f) {
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        fclose(f);
        CHECK(strstr(out, "Chain verified") != NULL);
        CHECK(strstr(out, "Per-tenant summary") != NULL);
        CHECK(strstr(out, "<svg") != NULL && strstr(out, "Memory in use (") != NULL);
        CHECK(strstr(out, "bob &quot;the&quot; &lt;admin&gt;") != NULL);
        CHECK(strstr(out, "<admin>") == NULL);
    }

    /* Read without the key, records are whatever someone wrote: sizes that
     * overflow a sum and times out of order still make a report (noted as
     * not verified), not undefined behaviour. */
    recs rs;
    CHECK_RC(trail_load(dir, &rs, &s), GMS_TRAIL_OK);
    char seg[4][PATH_MAX];
    size_t nseg = seg_files(dir, seg, 4);
    FILE *sf = nseg ? fopen(seg[nseg - 1], "ab") : NULL;
    CHECK(sf != NULL);
    for (int i = 0; sf && i < 3; i++) {
        gms_audit_block fb;
        memset(&fb, 0, sizeof fb);
        fb.seq = s.last_seq + 1 + (uint64_t)i;
        fb.time_ns = rs.v[0].time_ns - (i == 2 ? 10000000000ull : 0);
        fb.op = i < 2 ? GMS_AUDIT_ALLOC : GMS_AUDIT_FREE;
        fb.size = (uint64_t)INT64_MAX;
        fb.kind = GMS_AUDIT_KIND_RECORD;
        fb.level = fb.language = -1;
        memcpy(fb.text, "acme\0eve", 9);
        CHECK(fwrite(&fb, sizeof fb, 1, sf) == 1);
    }
    if (sf)
        fclose(sf);
    free(rs.v);
    CHECK(run_tool(out, sizeof out, 1, cli, "audit", "report", dir, "--html", html) == 0);
    CHECK(run_tool(out, sizeof out, 1, cli, "audit", "query", dir, "--tenant", "acme") == 0);

    /* keygen writes a usable key and refuses to overwrite it. */
    char kf2[320];
    snprintf(kf2, sizeof kf2, "%s.key2", dir);
    CHECK(run_tool(NULL, 0, 0, cli, "audit", "keygen", kf2) == 0);
    CHECK(run_tool(NULL, 0, 1, cli, "audit", "keygen", kf2) == 2);
    uint8_t k[GMS_AUDIT_KEY_MAX];
    size_t klen;
    char err[256];
    CHECK(gms__audit_key_load(kf2, k, &klen, err, sizeof err) == 0 && klen == 64);
    CHECK(run_tool(NULL, 0, 1, cli, "audit", "verify", dir, "--key-file", kf2) == 2); /* the wrong key: an error, not tampering */

    unlink(kf2);
    unlink(html);
    unlink(keyf);
    rm_rf(dir);
    return test_done();
}
