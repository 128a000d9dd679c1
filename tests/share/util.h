/*
 * util.h: what the sharing tests share: a private host runtime and
 * contexts named by (tenant, user, language), with a quiet log.
 */
#ifndef GMS_TEST_SHARE_UTIL_H
#define GMS_TEST_SHARE_UTIL_H

#include "test.h"

static inline void quiet_log(void *user, gms_log_level level, const char *msg)
{
    (void)user, (void)level, (void)msg;
}

static inline gms_runtime *open_runtime(void)
{
    gms_runtime_options o = GMS_RUNTIME_OPTIONS_INIT;
    o.backend = GMS_BACKEND_HOST;
    o.log = quiet_log;
    gms_runtime *rt = NULL;
    if (gms_runtime_open(&rt, &o) != GMS_OK) {
        fprintf(stderr, "runtime: %s\n", gms_error_last());
        exit(1);
    }
    return rt;
}

static inline gms_context *open_ctx(gms_runtime *rt, const char *tenant, const char *user,
                                    gms_language lang)
{
    gms_context_desc d = GMS_CONTEXT_DESC_INIT;
    d.tenant = tenant;
    d.user = user;
    d.language = lang;
    gms_context *c = NULL;
    if (gms_context_open(&c, rt, &d) != GMS_OK) {
        fprintf(stderr, "context: %s\n", gms_error_last());
        exit(1);
    }
    return c;
}

/* A share of buf by owner with one grant. */
static inline int share_one(gms_context *owner, gms_buf buf, const char *tenant, const char *user,
                            int language, gms_access mode, int immutable, gms_share_id *id)
{
    gms_share_grant g = {tenant, user, language, mode};
    gms_share_desc d = GMS_SHARE_DESC_INIT;
    d.grants = &g;
    d.ngrants = 1;
    d.immutable = immutable;
    return gms_share(owner, buf, &d, id);
}

#endif
