/*
 * services.c: what the pools, the handle table and the safety layer ask of
 * their runtime: metadata allocation that the failpoint can fail, and the
 * runtime's log.
 */
#include "core/pool.h"

#include <stdio.h>
#include <stdlib.h>

void *gms__alloc_meta(gms_runtime *rt, size_t size)
{
    if (gms__failpoint_hit(&rt->failpoint))
        return NULL;
    return malloc(size);
}

void gms__log(gms_runtime *rt, gms_log_level level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gms__log_write(rt->callbacks.log, rt->callbacks.log_user, level, msg);
}
