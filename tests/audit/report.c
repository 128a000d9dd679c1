/*
 * report.c: the HTML compliance report renders in a real browser. Writes a
 * trail with three tenants whose use rises and falls over about two
 * seconds (with a quota refusal, an access denial and a double free),
 * makes the report with the gms CLI, screenshots it in headless Chromium
 * and checks the picture is not blank: its PNG must be several times
 * larger than a screenshot of an empty page of the same size. Skips (exit
 * 77, with a message) when Chromium is not installed (scripts/deps.sh
 * installs it).
 *
 * GMS_REPORT_KEEP=DIR keeps the HTML and the PNG there, to look at.
 */
#include "util.h"

#include <time.h>

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* The first of the names found in $PATH, searched here: no shell. */
static const char *find_chromium(void)
{
    static const char *names[] = {"chromium", "chromium-browser", "google-chrome", NULL};
    static char found[PATH_MAX];
    const char *path = getenv("PATH");
    for (int i = 0; names[i] && path; i++) {
        for (const char *p = path; *p;) {
            size_t n = strcspn(p, ":");
            snprintf(found, sizeof found, "%.*s/%s", (int)n, n ? p : ".", names[i]);
            if (access(found, X_OK) == 0)
                return found;
            p += n + (p[n] == ':');
        }
    }
    return NULL;
}

static int shot(const char *chromium, const char *url, const char *png)
{
    char arg[PATH_MAX + 16];
    unlink(png);
    snprintf(arg, sizeof arg, "--screenshot=%s", png);
    return run_tool(NULL, 0, 1, chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1200,1500", arg, url);
}

int main(void)
{
    const char *chromium = find_chromium();
    if (!chromium) {
        return test_skip("chromium is not installed (scripts/deps.sh installs it); the report was not rendered");
    }
    char dir[256], keyf[300], cli[PATH_MAX + 8], html[PATH_MAX], png[PATH_MAX], blank[PATH_MAX];
    static char out[8192];
    tmpdir_make(dir, sizeof dir);
    snprintf(keyf, sizeof keyf, "%s.key", dir);
    key_file_write(keyf);
    cli_path(cli, sizeof cli);
    const char *keep = getenv("GMS_REPORT_KEEP");
    snprintf(html, sizeof html, "%s/report.html", keep ? keep : dir);
    snprintf(png, sizeof png, "%s/report.png", keep ? keep : dir);
    snprintf(blank, sizeof blank, "%s/blank.png", dir);

    gms_runtime *rt = trail_open(dir, 0, 0);
    CHECK(rt != NULL);
    if (!rt)
        return test_done();
    const char *tenants[3] = {"acme-research", "globex-inference", "initech-batch"};
    const char *users[3] = {"alice", "bob", "carol"};
    gms_language langs[3] = {GMS_LANG_PYTHON, GMS_LANG_RUST, GMS_LANG_JULIA};
    gms_context *c[3];
    for (int t = 0; t < 3; t++)
        c[t] = ctx_open(rt, tenants[t], users[t], langs[t]);
    CHECK_OK(gms_tenant_set_quota(rt, "initech-batch", 48u << 20, GMS_UNLIMITED));
    enum { STEPS = 60, MAXB = 24 };
    gms_buf live[3][MAXB] = {{0}};
    int n[3] = {0, 0, 0};
    for (int step = 0; step < STEPS; step++) {
        for (int t = 0; t < 3; t++) {
            /* Each tenant follows its own wave of live buffers. */
            int want = t == 0 ? step * MAXB / STEPS
                     : t == 1 ? (step < STEPS / 2 ? step : STEPS - step) * MAXB / (STEPS / 2) * 2 / 3
                              : (step % 20) * MAXB / 20;
            while (n[t] < want && n[t] < MAXB) {
                if (gms_alloc(c[t], (size_t)(1 + t) << 21, 0, &live[t][n[t]]) != GMS_OK)
                    break;
                n[t]++;
            }
            while (n[t] > want)
                gms_free(c[t], live[t][--n[t]]);
        }
        if (step == 20) {
            gms_buf x;
            gms_alloc(c[2], 200u << 20, 0, &x);         /* over the quota */
            gms_free(c[1], live[0][0]);                 /* another tenant's buffer */
        }
        if (step == 40) {
            gms_buf x;
            if (gms_alloc(c[0], 4096, 0, &x) == GMS_OK) {
                gms_free(c[0], x);
                gms_free(c[0], x);                      /* double free */
            }
        }
        struct timespec d = {0, 30 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    for (int t = 0; t < 3; t++)
        gms_context_close(c[t]); /* what is still live is reported as leaks */
    gms_runtime_close(rt);

    CHECK(run_tool(out, sizeof out, 0, cli, "audit", "report", dir, "--html", html, "--key-file", keyf) == 0);
    CHECK(file_size(html) > 2000);

    char url[PATH_MAX + 16];
    snprintf(url, sizeof url, "file://%s", html);
    int rc = shot(chromium, url, png);
    CHECK(rc == 0);
    long size = file_size(png);
    CHECK(shot(chromium, "about:blank", blank) == 0);
    long bsize = file_size(blank);
    printf("report %s: screenshot %ld bytes, blank page %ld bytes\n", html, size, bsize);
    CHECK(size > 0 && bsize > 0);
    CHECK(size > 5 * bsize); /* text, tables and a chart, not a white page */

    unlink(keyf);
    rm_rf(dir);
    return test_done();
}
