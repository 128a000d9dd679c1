/*
 * test.h: the few assertion macros the C tests share. Each test program
 * counts its checks and ends with "N passed, N failed"; a failed check
 * prints where and why and makes the program exit non-zero, and so does a
 * program that made no check at all (it tested nothing). A test that
 * cannot run here (no GPU, no browser) ends with test_skip: CTest's skip
 * code, 77, which tests/CMakeLists.txt registers as SKIP_RETURN_CODE.
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

/* A fixed xorshift sequence: inputs that vary, the same on every run. */
static inline uint64_t test_random(void)
{
    static uint64_t state = 0x9e3779b97f4a7c15ull;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/* Whether the n bytes at p are all zero. */
static inline int test_zeros(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Whether the n bytes at p (n >= 8) repeat one non-zero 64-bit word, as
 * the poison does. */
static inline int test_one_word(const uint8_t *p, size_t n)
{
    uint64_t word;
    memcpy(&word, p, sizeof word);
    return word != 0 && memcmp(p, p + 8, n - 8) == 0;
}

/* CTest's code for "this test did not run" (SKIP_RETURN_CODE). */
#define TEST_SKIP 77

/* Prints the closing line and returns the exit status: 0 only when at
 * least one check ran and none failed. */
static inline int test_done(void)
{
    printf("%d passed, %d failed\n", test_passed, test_failed);
    if (test_passed + test_failed == 0) {
        fprintf(stderr, "no check ran: the test tested nothing\n");
        return 1;
    }
    return test_failed ? 1 : 0;
}

/* Ends a test that cannot run here, saying why: the skip code, unless a
 * check made before it (a precondition) failed. */
static inline int test_skip(const char *why)
{
    printf("SKIP: %s\n", why);
    if (test_failed) {
        printf("%d passed, %d failed\n", test_passed, test_failed);
        return 1;
    }
    return TEST_SKIP;
}

#endif
