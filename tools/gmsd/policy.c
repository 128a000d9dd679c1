/*
 * policy.c: gmsd's policy file, parsed with jansson (policy.h). Strict: an
 * unknown key, a wrong type, a value out of range or a uid/gid given to two
 * tenants refuses the file, so that a typo never silently grants more.
 */
#include "policy.h"
#include "gms.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct where {
    const char *path;
    char *err;
    size_t len;
} where;

__attribute__((format(printf, 2, 3))) static int bad(where *w, const char *fmt, ...)
{
    int n = snprintf(w->err, w->len, "%s: ", w->path);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < w->len)
        vsnprintf(w->err + n, w->len - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* A positive integer at key (required), at most max. */
static int get_count(where *w, json_t *obj, const char *ctx, const char *key, uint64_t max,
                     uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return bad(w, "%s: \"%s\" is missing", ctx, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
        (uint64_t)json_integer_value(v) > max)
        return bad(w, "%s.%s: expected an integer from 1 to %llu", ctx, key,
                   (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* A list of ids at key (optional) into ids[*n]. */
static int get_ids(where *w, json_t *obj, const char *ctx, const char *key, uint32_t *ids,
                   unsigned *n)
{
    json_t *v = json_object_get(obj, key);
    *n = 0;
    if (!v)
        return 0;
    if (!json_is_array(v) || json_array_size(v) > GMSD_ID_MAX)
        return bad(w, "%s.%s: expected a list of at most %d ids", ctx, key, GMSD_ID_MAX);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 ||
            json_integer_value(x) >= 0xffffffffll)
            return bad(w, "%s.%s[%zu]: expected an id from 0 to 4294967294", ctx, key, i);
        ids[(*n)++] = (uint32_t)json_integer_value(x);
    }
    return 0;
}

static int parse_tenant(where *w, json_t *t, size_t i, gmsd_tenant *out)
{
    char ctx[128];
    snprintf(ctx, sizeof ctx, "tenants[%zu]", i);
    if (!json_is_object(t))
        return bad(w, "%s: expected an object", ctx);
    static const char *keys[] = {"name", "uids", "gids", "level", "quota_bytes",
                                 "quota_leases", "languages", "max_connections"};
    const char *key;
    json_t *v;
    json_object_foreach(t, key, v) {
        size_t k = 0;
        while (k < sizeof keys / sizeof *keys && strcmp(keys[k], key) != 0)
            k++;
        if (k == sizeof keys / sizeof *keys)
            return bad(w, "%s: unknown key \"%s\"", ctx, key);
    }
    const char *name = json_string_value(json_object_get(t, "name"));
    if (!name || !*name || strlen(name) >= sizeof out->name)
        return bad(w, "%s.name: expected a string of 1 to %zu bytes", ctx, sizeof out->name - 1);
    for (const char *c = name; *c; c++)
        if (*c < 0x21 || *c > 0x7e)
            return bad(w, "%s.name: printable ASCII without spaces only", ctx);
    strcpy(out->name, name);
    snprintf(ctx, sizeof ctx, "tenants[%zu] (\"%s\")", i, name);
    if (get_ids(w, t, ctx, "uids", out->uids, &out->nuids) ||
        get_ids(w, t, ctx, "gids", out->gids, &out->ngids))
        return -1;
    if (out->nuids + out->ngids == 0)
        return bad(w, "%s: names no uid and no gid: no process could be it", ctx);
    if (get_count(w, t, ctx, "quota_bytes", 1ull << 50, &out->quota_bytes) ||
        get_count(w, t, ctx, "quota_leases", 1u << 20, &out->quota_leases))
        return -1;
    out->max_connections = 64;
    if (json_object_get(t, "max_connections") &&
        get_count(w, t, ctx, "max_connections", 1024, &out->max_connections))
        return -1;
    out->level = GMS_LEVEL_INTERNAL;
    if ((v = json_object_get(t, "level"))) {
        const char *s = json_string_value(v);
        out->level = 4;
        for (uint32_t l = 0; s && l < 4; l++)
            if (strcmp(s, gms_level_name((gms_level)l)) == 0)
                out->level = l;
        if (out->level == 4)
            return bad(w, "%s.level: expected public, internal, confidential or secret", ctx);
    }
    out->languages = 0xff; /* all */
    if ((v = json_object_get(t, "languages"))) {
        if (!json_is_array(v))
            return bad(w, "%s.languages: expected a list of language names", ctx);
        out->languages = 0;
        size_t j;
        json_t *x;
        json_array_foreach(v, j, x) {
            const char *s = json_string_value(x);
            uint32_t l = 0;
            while (s && l < 8 && strcmp(s, gms_language_name((gms_language)l)) != 0)
                l++;
            if (!s || l == 8)
                return bad(w, "%s.languages[%zu]: expected c, rust, elixir, julia, zig, nim, "
                              "python or other", ctx, j);
            out->languages |= 1u << l;
        }
    }
    return 0;
}

/* No uid, gid or name in two tenants: which one a process is must never
 * depend on the order of the file. */
static int check_unique(where *w, const gmsd_policy *p)
{
    for (unsigned a = 0; a < p->ntenants; a++)
        for (unsigned b = a + 1; b < p->ntenants; b++) {
            const gmsd_tenant *x = &p->tenants[a], *y = &p->tenants[b];
            if (strcmp(x->name, y->name) == 0)
                return bad(w, "tenants[%u] and tenants[%u] are both named \"%s\"", a, b, x->name);
            for (unsigned i = 0; i < x->nuids; i++)
                for (unsigned j = 0; j < y->nuids; j++)
                    if (x->uids[i] == y->uids[j])
                        return bad(w, "uid %u is in tenants \"%s\" and \"%s\"",
                                   (unsigned)x->uids[i], x->name, y->name);
            for (unsigned i = 0; i < x->ngids; i++)
                for (unsigned j = 0; j < y->ngids; j++)
                    if (x->gids[i] == y->gids[j])
                        return bad(w, "gid %u is in tenants \"%s\" and \"%s\"",
                                   (unsigned)x->gids[i], x->name, y->name);
        }
    return 0;
}

int gmsd_policy_load(const char *path, gmsd_policy *p, char *err, size_t err_len)
{
    where w = {path, err, err_len};
    memset(p, 0, sizeof *p);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, err_len, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return -1;
    }
    int rc = -1;
    const char *key;
    json_t *v;
    if (!json_is_object(root)) {
        bad(&w, "expected an object at the top");
        goto out;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "lease_bytes") != 0 && strcmp(key, "tenants") != 0) {
            bad(&w, "unknown key \"%s\" (expected lease_bytes, tenants)", key);
            goto out;
        }
    }
    p->lease_bytes = 64ull << 20;
    if (json_object_get(root, "lease_bytes") &&
        (get_count(&w, root, "policy", "lease_bytes", 1ull << 40, &p->lease_bytes) ||
         p->lease_bytes % (2ull << 20))) {
        if (p->lease_bytes % (2ull << 20))
            bad(&w, "lease_bytes %llu: must be a multiple of 2 MiB",
                (unsigned long long)p->lease_bytes);
        goto out;
    }
    json_t *ts = json_object_get(root, "tenants");
    if (!json_is_array(ts) || json_array_size(ts) == 0 || json_array_size(ts) > 4096) {
        bad(&w, "\"tenants\": expected a list of 1 to 4096 tenants");
        goto out;
    }
    p->ntenants = (unsigned)json_array_size(ts);
    p->tenants = calloc(p->ntenants, sizeof *p->tenants);
    if (!p->tenants) {
        bad(&w, "out of memory");
        goto out;
    }
    size_t i;
    json_array_foreach(ts, i, v) {
        if (parse_tenant(&w, v, i, &p->tenants[i]))
            goto out;
    }
    rc = check_unique(&w, p);
out:
    json_decref(root);
    if (rc)
        gmsd_policy_free(p);
    return rc;
}

void gmsd_policy_free(gmsd_policy *p)
{
    free(p->tenants);
    memset(p, 0, sizeof *p);
}

gmsd_tenant *gmsd_policy_match(gmsd_policy *p, uid_t uid, gid_t gid)
{
    for (unsigned t = 0; t < p->ntenants; t++)
        for (unsigned i = 0; i < p->tenants[t].nuids; i++)
            if (p->tenants[t].uids[i] == uid)
                return &p->tenants[t];
    for (unsigned t = 0; t < p->ntenants; t++)
        for (unsigned i = 0; i < p->tenants[t].ngids; i++)
            if (p->tenants[t].gids[i] == gid)
                return &p->tenants[t];
    return NULL;
}
