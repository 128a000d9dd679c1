/*
 * test.h: the few assertion macros the C tests share. Each test program
 * counts its checks and ends with "N passed, N failed"; a failed check
 * prints where and why and makes the program exit non-zero.
 */
#ifndef GMS_TEST_H
#define GMS_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include "gms.h"

static int test_passed, test_failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            test_passed++;                                                   \
        } else {                                                             \
            test_failed++;                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n",    \
                    __FILE__, __LINE__, #cond, gms_error_last());            \
        }                                                                    \
    } while (0)

/* Checks that an expression returns the expected gms code. */
#define CHECK_RC(expr, want)                                                 \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        if (rc_ == (want)) {                                                 \
            test_passed++;                                                   \
        } else {                                                             \
            test_failed++;                                                   \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s): %s\n", \
                    __FILE__, __LINE__, #expr, rc_, gms_strerror(rc_),       \
                    (want), gms_strerror(want), gms_error_last());           \
        }                                                                    \
    } while (0)

#define CHECK_OK(expr) CHECK_RC((expr), GMS_OK)

/* Prints the closing line and returns the exit status. */
static inline int test_done(void)
{
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

#endif
