/*
 * placement.c: gms_device_pick's choice among simulated devices
 * (docs/migration.md, "Load balancing"): room first, then the least busy,
 * then the most free memory, then the lowest ordinal; lost devices never;
 * without simulated devices, the host's one. And a pool placed by it.
 */
#include "test.h"
#include "gms/migrate.h"
#include "gms/testing.h"

#define GiB ((uint64_t)1 << 30)

static int pick(gms_runtime *rt, uint64_t bytes)
{
    int d = -1;
    int rc = gms_device_pick(rt, bytes, &d);
    return rc == GMS_OK ? d : rc;
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    gms_runtime *rt;
    CHECK_OK(gms_testing_runtime_open(&rt, &o, NULL));
    CHECK(pick(rt, 1) == 0); /* the host's one device */

    uint64_t free_bytes[4] = {8 * GiB, 16 * GiB, 16 * GiB, 40 * GiB};
    uint32_t busy[4] = {10, 50, 10, 90};
    CHECK_OK(gms_testing_devices(rt, 4, free_bytes, busy));
    CHECK(pick(rt, 1 * GiB) == 2);  /* 0 and 2 least busy; 2 has more free */
    CHECK(pick(rt, 10 * GiB) == 2);
    CHECK(pick(rt, 20 * GiB) == 3); /* only 3 has room, busy as it is */
    CHECK(pick(rt, 41 * GiB) == GMS_E_NO_MEMORY);
    CHECK(strstr(gms_error_last(), "no device") != NULL);
    busy[0] = 5;
    CHECK_OK(gms_testing_devices(rt, 4, free_bytes, busy));
    CHECK(pick(rt, 1 * GiB) == 0); /* now the least busy */
    busy[2] = 5;
    free_bytes[2] = 8 * GiB;
    CHECK_OK(gms_testing_devices(rt, 4, free_bytes, busy));
    CHECK(pick(rt, 1 * GiB) == 0); /* a tie: the lowest ordinal */

    /* A pool goes where the pick says, and a lost device is passed over. */
    gms_context_desc cd;
    gms_context_desc_init(&cd);
    cd.tenant = "t";
    cd.user = "u";
    gms_context *ctx;
    CHECK_OK(gms_context_open(&ctx, rt, &cd));
    gms_buf h;
    CHECK_OK(gms_alloc(ctx, 4096, 0, &h));
    int d = pick(rt, 4096);
    CHECK_OK(gms_pool_migrate(ctx, d));
    int at = -1;
    CHECK_OK(gms_pool_device(ctx, &at));
    CHECK(at == 0);
    CHECK_OK(gms_device_lost(rt, 0, "Xid 79: GPU has fallen off the bus"));
    CHECK(pick(rt, 1 * GiB) == 2);
    CHECK_OK(gms_free(ctx, h));
    gms_context_close(ctx);

    /* Wrong input changes nothing. */
    CHECK_RC(gms_device_pick(NULL, 1, &d), GMS_E_INVALID_ARG);
    CHECK_RC(gms_device_pick(rt, 1, NULL), GMS_E_INVALID_ARG);
    CHECK_RC(gms_testing_devices(rt, 65, free_bytes, busy), GMS_E_INVALID_ARG);
    CHECK_RC(gms_testing_devices(rt, 2, NULL, busy), GMS_E_INVALID_ARG);
    busy[1] = 101;
    CHECK_RC(gms_testing_devices(rt, 4, free_bytes, busy), GMS_E_INVALID_ARG);
    CHECK(pick(rt, 1 * GiB) == 2);
    gms_runtime_close(rt);
    return test_done();
}
