/*
 * base.h: the bottom layer of src/ (docs/design.md, "Layers"): the
 * thread-local error message, randomness, the coarse clock, name checks
 * and writing a log line. Every other layer may use it; it includes
 * nothing of src/ but itself, only the public gms.h.
 */
#ifndef GMS_BASE_H
#define GMS_BASE_H

#include "gms.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors (error.c) ---- */

/* Sets this thread's message and returns code. */
int gms__fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* This thread's message, kept across a call of user code (a callback's
 * own failed calls must not replace the message of the call it runs in). */
#define GMS_ERROR_MAX 512
void gms__error_save(char *buf);          /* buf: GMS_ERROR_MAX bytes */
void gms__error_restore(const char *buf);

/* ---- randomness (random.c) ---- */

int gms__random_bytes(void *buf, size_t len);

/* ---- names, the clock, the log (util.c) ---- */

/* 0 if name is 1..GMS_NAME_MAX printable ASCII bytes, else an error. */
int gms__name_check(const char *what, const char *name);
/* The monotonic clock, coarse (a few ns to read). */
uint64_t gms__now_ns(void);
/* Raises *v to x if x is larger. */
void gms__atomic_max(uint64_t _Atomic *v, uint64_t x);
/* Writes one log line through fn (NULL: warnings and errors to stderr),
 * keeping this thread's error message across the call: only with no gms
 * lock held, since fn may call gms. */
void gms__log_write(gms_log_fn fn, void *user, gms_log_level level, const char *msg);

#endif
