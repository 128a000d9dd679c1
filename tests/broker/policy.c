/*
 * policy.c: gmsd refuses a bad policy file at start, saying where and why
 * (the line and column of a syntax error, the key of a bad value), and
 * accepts a good one (--check).
 */
#include "util.h"

static char dir[64];

/* gmsd --check on text: its exit status; its output in out. */
static int check(const char *text, char *out, size_t len)
{
    char policy[96], log[96];
    snprintf(policy, sizeof policy, "%s/policy.json", dir);
    snprintf(log, sizeof log, "%s/out.txt", dir);
    write_file(policy, text);
    const char *args[] = {"--policy", policy, "--check", NULL};
    int rc = gmsd_run(log, args);
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(out, 1, len - 1, f) : 0;
    out[n] = 0;
    if (f)
        fclose(f);
    return rc;
}

static void refused(const char *text, const char *want)
{
    char out[1024];
    int rc = check(text, out, sizeof out);
    CHECK(rc == 2);
    CHECK(strstr(out, "policy refused") != NULL);
    if (!strstr(out, want)) {
        fprintf(stderr, "want \"%s\" in gmsd's words: %s\n", want, out);
        CHECK(!"the reason");
    } else {
        CHECK(1);
    }
}

#define T(body) "{\"tenants\": [{\"name\": \"a\", \"uids\": [1], \"quota_bytes\": 4194304, " \
                "\"quota_leases\": 4" body "}]}"

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/gms-policy-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    char out[1024];
    CHECK(check(T(""), out, sizeof out) == 0);
    CHECK(strstr(out, "1 tenant") != NULL);
    CHECK(check("{\"lease_bytes\": 2097152, \"tenants\": [\n"
                " {\"name\": \"a\", \"uids\": [1, 2], \"gids\": [7], \"level\": \"secret\",\n"
                "  \"quota_bytes\": 1048576000, \"quota_leases\": 9, \"languages\": [\"c\", \"python\"]},\n"
                " {\"name\": \"b\", \"gids\": [8], \"quota_bytes\": 4096, \"quota_leases\": 1}]}\n",
                out, sizeof out) == 0);

    /* Syntax: the line and the column. */
    refused("{\n  \"tenants\": [\n    {\"name\": \"a\",, }\n  ]\n}\n", "policy.json:3:");
    refused("{\"tenants\": [], \"tenants\": []}", "duplicate");
    refused("", "policy.json:");
    /* Values: the key and why. */
    refused("[]", "expected an object at the top");
    refused("{\"tenant\": []}", "unknown key \"tenant\"");
    refused("{\"tenants\": []}", "\"tenants\": expected a list of 1 to 4096");
    refused("{\"lease_bytes\": 1000, \"tenants\": [{}]}", "lease_bytes 1000: must be a multiple of 2 MiB");
    refused(T(", \"quota\": 1"), "tenants[0]: unknown key \"quota\"");
    refused("{\"tenants\": [{\"name\": \"a\", \"uids\": [1], \"quota_leases\": 4}]}",
            "tenants[0] (\"a\"): \"quota_bytes\" is missing");
    refused(T(", \"level\": \"top\""), "tenants[0] (\"a\").level: expected public");
    refused(T(", \"max_connections\": 5000"), "max_connections: expected an integer from 1 to 1024");
    refused(T(", \"languages\": [\"cobol\"]"), "tenants[0] (\"a\").languages[0]");
    refused("{\"tenants\": [{\"name\": \"a\", \"uids\": [-1], \"quota_bytes\": 1, \"quota_leases\": 1}]}",
            "uids[0]: expected an id");
    refused("{\"tenants\": [{\"name\": \"a\", \"quota_bytes\": 1, \"quota_leases\": 1}]}",
            "names no uid and no gid");
    refused("{\"tenants\": [{\"name\": \"a\", \"uids\": [1], \"quota_bytes\": 0, \"quota_leases\": 1}]}",
            "quota_bytes: expected an integer from 1");
    refused("{\"tenants\": [{\"name\": \"a\", \"uids\": [5], \"quota_bytes\": 1, \"quota_leases\": 1},"
            " {\"name\": \"b\", \"uids\": [5], \"quota_bytes\": 1, \"quota_leases\": 1}]}",
            "uid 5 is in tenants \"a\" and \"b\"");
    refused("{\"tenants\": [{\"name\": \"a\", \"gids\": [5], \"quota_bytes\": 1, \"quota_leases\": 1},"
            " {\"name\": \"a\", \"gids\": [6], \"quota_bytes\": 1, \"quota_leases\": 1}]}",
            "both named \"a\"");
    refused("{\"tenants\": [{\"name\": \"a b\", \"gids\": [5], \"quota_bytes\": 1, \"quota_leases\": 1}]}",
            "printable ASCII without spaces");
    /* A missing file is refused too; and a running gmsd needs a socket. */
    const char *missing[] = {"--policy", "/nonexistent/policy.json", "--check", NULL};
    char log[96];
    snprintf(log, sizeof log, "%s/out.txt", dir);
    CHECK(gmsd_run(log, missing) == 2);
    const char *nosock[] = {"--policy", "/nonexistent/policy.json", NULL};
    CHECK(gmsd_run(log, nosock) == 2);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    return test_done();
}
