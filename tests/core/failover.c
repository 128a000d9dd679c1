/*
 * failover.c: a simulated device that reports an unrecoverable error
 * (gms_testing_device_fail, docs/migration.md "Failover"). The pools on it
 * fail every call at once with GMS_E_BACKEND naming the device and the
 * driver's words; a pool migrated away before keeps working, data intact;
 * nothing can be moved to or from the lost device; frees and closes still
 * clean up; the log says it.
 */
#include "test.h"
#include "gms/migrate.h"
#include "gms/testing.h"

#define MiB ((uint64_t)1 << 20)

static const char *WORDS = "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered";
static int logged_loss;

static void log_fn(void *user, gms_log_level level, const char *msg)
{
    (void)user;
    if (level == GMS_LOG_ERROR && strstr(msg, "device 0 lost") && strstr(msg, WORDS))
        logged_loss++;
}

static gms_context *open_ctx(gms_runtime *rt, const char *tenant)
{
    gms_context_desc d;
    gms_context_desc_init(&d);
    d.tenant = tenant;
    d.user = "u";
    gms_context *c = NULL;
    CHECK_OK(gms_context_open(&c, rt, &d));
    return c;
}

/* The last error names the device and the driver's words. */
static int says_lost(void)
{
    return strstr(gms_error_last(), "device 0") && strstr(gms_error_last(), WORDS);
}

int main(void)
{
    gms_runtime_options o;
    gms_runtime_options_init(&o);
    o.backend = GMS_BACKEND_HOST;
    o.log = log_fn;
    gms_runtime *rt;
    CHECK_OK(gms_testing_runtime_open(&rt, &o, NULL));
    uint64_t free_bytes[2] = {1ull << 34, 1ull << 34};
    uint32_t busy[2] = {0, 0};
    CHECK_OK(gms_testing_devices(rt, 2, free_bytes, busy));
    gms_context *stay = open_ctx(rt, "stays");
    gms_context *moved = open_ctx(rt, "moved");
    gms_buf hs, hm;
    CHECK_OK(gms_alloc(stay, MiB, 0, &hs));
    CHECK_OK(gms_alloc(moved, MiB, 0, &hm));
    CHECK_OK(gms_fill(stay, hs, 0, 0x11, MiB));
    CHECK_OK(gms_fill(moved, hm, 0, 0x22, MiB));
    void *pm = NULL, *pm2 = NULL;
    CHECK_OK(gms_buf_ptr(moved, hm, &pm));
    CHECK_OK(gms_pool_migrate(moved, 1)); /* moved away in time */

    /* Wrong input changes nothing. */
    CHECK_RC(gms_testing_device_fail(NULL, 0, WORDS), GMS_E_INVALID_ARG);
    CHECK_RC(gms_testing_device_fail(rt, 2, WORDS), GMS_E_INVALID_ARG);
    CHECK_RC(gms_device_lost(rt, -1, WORDS), GMS_E_INVALID_ARG);
    uint8_t x = 0;
    CHECK_OK(gms_read(stay, hs, 5, &x, 1));

    CHECK_OK(gms_testing_device_fail(rt, 0, WORDS));
    CHECK(logged_loss == 1);
    CHECK_OK(gms_testing_device_fail(rt, 0, "later words")); /* once is enough */
    CHECK(logged_loss == 1);

    /* The pool left on device 0: every call fails fast, saying why. */
    gms_buf h2 = 1;
    CHECK_RC(gms_alloc(stay, 100, 0, &h2), GMS_E_BACKEND);
    CHECK(says_lost());
    CHECK(h2 == GMS_BUF_NULL);
    CHECK_RC(gms_read(stay, hs, 0, &x, 1), GMS_E_BACKEND);
    CHECK(says_lost());
    CHECK_RC(gms_write(stay, hs, 0, &x, 1), GMS_E_BACKEND);
    CHECK_RC(gms_fill(stay, hs, 0, 0, 10), GMS_E_BACKEND);
    void *p = NULL;
    CHECK_RC(gms_buf_ptr(stay, hs, &p), GMS_E_BACKEND);
    CHECK_RC(gms_pool_migrate(stay, 1), GMS_E_BACKEND); /* its data is gone */
    CHECK(says_lost());
    int d = -1;
    CHECK_OK(gms_pool_device(stay, &d));
    CHECK(d == 0);

    /* The pool moved before keeps working, under the same pointer. */
    CHECK_OK(gms_read(moved, hm, MiB - 1, &x, 1));
    CHECK(x == 0x22);
    CHECK_OK(gms_buf_ptr(moved, hm, &pm2));
    CHECK(pm == pm2 && ((uint8_t *)pm2)[7] == 0x22);
    gms_buf h3;
    CHECK_OK(gms_alloc(moved, 3 * MiB, 0, &h3));
    CHECK_RC(gms_pool_migrate(moved, 0), GMS_E_BACKEND); /* not onto the lost one */
    CHECK(says_lost());
    int pick = -1;
    CHECK_OK(gms_device_pick(rt, MiB, &pick));
    CHECK(pick == 1);

    /* Freeing and closing still clean up. */
    CHECK_OK(gms_free(stay, hs));
    CHECK_OK(gms_free(moved, hm));
    CHECK_OK(gms_free(moved, h3));
    gms_context_close(stay);
    gms_context_close(moved);
    gms_runtime_close(rt);
    return test_done();
}
