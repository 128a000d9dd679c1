/*
 * tamper.c: `gms audit verify` names the first record where a change
 * breaks the chain, for each way of tampering: a modified record, a
 * deleted record, an inserted (replayed) record, two records swapped, a
 * deleted segment, a truncated older segment, a modified header, garbage
 * appended; and tells a torn tail (a partial or zero-filled end) apart
 * from tampering.
 */
#include "util.h"

#define B GMS_AUDIT_BLOCK

static char base[256], work[300], keyf[300], cli[PATH_MAX + 8];

static void copy_trail(void)
{
    rm_rf(work);
    CHECK(copy_dir(base, work) == 0);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*n + 4 * B);
    CHECK(fread(p, 1, *n, f) == *n);
    fclose(f);
    return p;
}

static void spit(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static uint64_t seq_at(const uint8_t *file, size_t block)
{
    const gms_audit_block *b = (const gms_audit_block *)(file + block * B);
    return b->seq;
}

/* Verifies the work copy; expects tampering at record seq want (0: any). */
static void expect_tampered(const char *what, uint64_t want, const char *word)
{
    gms_trail_summary s;
    int rc = trail_verify(work, &s);
    CHECK(rc == GMS_TRAIL_TAMPERED);
    if (want)
        CHECK(s.broken_seq == want);
    if (word)
        CHECK(strstr(s.message, word) != NULL);
    printf("%-22s -> %s\n", what, s.message);
    if (rc != GMS_TRAIL_TAMPERED || (want && s.broken_seq != want) ||
        (word && !strstr(s.message, word)))
        fprintf(stderr, "  want seq %llu, word '%s'; got seq %llu\n", (unsigned long long)want,
                word ? word : "", (unsigned long long)s.broken_seq);
}

int main(void)
{
    tmpdir_make(base, sizeof base);
    snprintf(work, sizeof work, "%s-work", base);
    snprintf(keyf, sizeof keyf, "%s.key", base);
    key_file_write(keyf);
    cli_path(cli, sizeof cli);

    /* A trail of several 64 KiB segments. */
    gms_runtime *rt = trail_open(base, 64 * 1024, 0);
    CHECK(rt != NULL);
    if (!rt)
        return test_done();
    gms_context *c[3] = {ctx_open(rt, "acme", "alice", GMS_LANG_RUST),
                         ctx_open(rt, "globex", "bob", GMS_LANG_PYTHON),
                         ctx_open(rt, "initech", "carol", GMS_LANG_JULIA)};
    for (int i = 0; i < 1200; i++) {
        gms_buf h;
        gms_context *x = c[i % 3];
        if (gms_alloc(x, 256u + (unsigned)i, 0, &h) == GMS_OK)
            gms_free(x, h);
    }
    for (int i = 0; i < 3; i++)
        gms_context_close(c[i]);
    gms_runtime_close(rt);

    char seg[16][PATH_MAX];
    size_t nseg = seg_files(base, seg, 16);
    CHECK(nseg >= 4);
    gms_trail_summary s;
    CHECK_RC(trail_verify(base, &s), GMS_TRAIL_OK);
    CHECK(s.records >= 2400 && s.torn[0] == 0);

    char out[8192];
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "verify", base, "--key-file", keyf) == 0);
    CHECK(strstr(out, "OK") != NULL);
    CHECK(run_tool(NULL, 0, 1, cli, "audit", "verify", base) == 2); /* no key */

    /* Work on segment 2 (records only, then its rotation checkpoint). */
    char wseg[PATH_MAX + 64];
    const char *name = strrchr(seg[1], '/') + 1;
    snprintf(wseg, sizeof wseg, "%s/%s", work, name);
    size_t n;
    uint8_t *orig = slurp(seg[1], &n);
    uint8_t *p = malloc(n + 4 * B);
    uint64_t s10 = seq_at(orig, 10), s11 = seq_at(orig, 11);

    /* 1. Modification of one byte of a record's size. */
    copy_trail();
    memcpy(p, orig, n);
    p[10 * B + 24] ^= 1;
    spit(wseg, p, n);
    expect_tampered("modified record", s10, "modified");
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "verify", work, "--key-file", keyf) == 1);
    CHECK(strstr(out, "TAMPERED") != NULL);

    /* 2. Deletion of record block 10. */
    copy_trail();
    memcpy(p, orig, 10 * B);
    memcpy(p + 10 * B, orig + 11 * B, n - 11 * B);
    spit(wseg, p, n - B);
    expect_tampered("deleted record", s10, "deleted");

    /* 3. Insertion: a copy of block 5 replayed after block 10. */
    copy_trail();
    memcpy(p, orig, 11 * B);
    memcpy(p + 11 * B, orig + 5 * B, B);
    memcpy(p + 12 * B, orig + 11 * B, n - 11 * B);
    spit(wseg, p, n + B);
    expect_tampered("inserted record", s11, "inserted");

    /* 4. Reordering: blocks 10 and 11 swapped. */
    copy_trail();
    memcpy(p, orig, n);
    memcpy(p + 10 * B, orig + 11 * B, B);
    memcpy(p + 11 * B, orig + 10 * B, B);
    spit(wseg, p, n);
    expect_tampered("reordered records", s10, "reordered");

    /* 5. A whole middle segment deleted. */
    copy_trail();
    unlink(wseg);
    expect_tampered("deleted segment", 0, "missing");

    /* 6. An older segment truncated by its last block (its checkpoint). */
    copy_trail();
    spit(wseg, orig, n - B);
    expect_tampered("truncated old segment", 0, "deleted");

    /* 7. A modified segment header. */
    copy_trail();
    memcpy(p, orig, n);
    p[8] ^= 0x80; /* its creation time */
    spit(wseg, p, n);
    expect_tampered("modified header", 0, "header");

    /* 8. Bytes appended to an old segment after it was closed. */
    copy_trail();
    memcpy(p, orig, n);
    memcpy(p + n, orig + 10 * B, B);
    spit(wseg, p, n + B);
    expect_tampered("appended to old segment", 0, "appended");
    free(orig);

    /* The newest segment: torn tails versus tampering. */
    const char *lname = strrchr(seg[nseg - 1], '/') + 1;
    char lseg[PATH_MAX + 64];
    snprintf(lseg, sizeof lseg, "%s/%s", work, lname);
    orig = slurp(seg[nseg - 1], &n);
    p = realloc(p, n + 4 * B);

    /* 9. A partial last block (a write cut short): torn, not tampering. */
    copy_trail();
    memcpy(p, orig, n);
    memcpy(p + n, orig + B, 100);
    spit(lseg, p, n + 100);
    CHECK_RC(trail_verify(work, &s), GMS_TRAIL_OK);
    CHECK(s.torn_bytes == 100 && strstr(s.torn, "not tampering") != NULL);
    printf("%-22s -> OK, %s\n", "partial last block", s.torn);
    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "verify", work, "--key-file", keyf) == 0);
    CHECK(strstr(out, "TORN TAIL") != NULL);

    /* 10. Zero-filled blocks at the end (a power cut): torn. */
    copy_trail();
    memcpy(p, orig, n);
    memset(p + n, 0, 2 * B);
    spit(lseg, p, n + 2 * B);
    CHECK_RC(trail_verify(work, &s), GMS_TRAIL_OK);
    CHECK(s.torn_bytes == 2 * B);

    /* 11. A whole non-zero block appended at the end: tampering. */
    copy_trail();
    memcpy(p, orig, n);
    memcpy(p + n, orig + 3 * B, B);
    spit(lseg, p, n + B);
    expect_tampered("block appended at end", 0, NULL);

    /* 12. A modified record in the newest segment, even the last one. */
    copy_trail();
    memcpy(p, orig, n);
    size_t last = n / B - 2; /* the last record, before the close checkpoint */
    p[last * B + 16] ^= 4;
    spit(lseg, p, n);
    expect_tampered("modified last record", seq_at(orig, last), "modified");

    /* 13. A zeroed record in the middle is tampering, not a torn tail. */
    copy_trail();
    memcpy(p, orig, n);
    memset(p + 2 * B, 0, B);
    spit(lseg, p, n);
    expect_tampered("zeroed record", seq_at(orig, 2), NULL);

    free(orig);
    free(p);
    rm_rf(work);
    rm_rf(base);
    unlink(keyf);
    return test_done();
}
