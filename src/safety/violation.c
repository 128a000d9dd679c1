/*
 * violation.c: reporting detected corruption. A violation is found with a
 * pool lock held; it is queued on the finding thread with the block's
 * history and delivered once the lock is gone: to the log, the audit trail,
 * the registered callbacks, and then, if the policy says so, abort(). Each
 * note is taken off the queue before anyone is called, so callbacks that
 * call gms (and find corruption of their own) never see a note twice.
 * Never silently repaired: the caller re-poisons only after noting.
 */
#include "safety/safety.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Violations found under one lock are usually few; a batch of frees or a
 * verify can find many. The queue grows on the heap as needed (up to
 * QUEUE_MAX, far more than any batch); what does not fit is counted in the
 * runtime's notes.lost and reported as a number. Log lines written under
 * a lock wait in the same queue, so that the log function, like the
 * callbacks, never runs with a gms lock held. */
#define QUEUE_MAX 65536

typedef struct vnote {
    gms_runtime *rt;
    bool is_log;          /* a log line (level, message), not a violation */
    gms_log_level level;
    gms_violation v;
    char tenant[GMS_NAME_MAX + 1];
    char message[480];
} vnote;

static _Thread_local vnote *queue;
static _Thread_local unsigned queued, capacity;

/* The deliveries running on this thread, innermost first. A callback that
 * calls gms makes calls that deliver too; for a runtime whose delivery is
 * already under way here they only queue, and that delivery takes their
 * notes when the callback returns: each note is delivered once, and
 * nesting never goes deeper than one level per runtime. */
typedef struct delivery {
    gms_runtime *rt;
    struct delivery *outer;
} delivery;
static _Thread_local delivery *delivering;

/* A cleared entry at the queue's end, counted in notes.queued; or NULL
 * when the queue is full: a lost violation is counted in notes.lost (and
 * still in notes.queued), a lost log line is dropped. */
static vnote *queue_push(gms_runtime *rt, bool is_log)
{
    atomic_fetch_add_explicit(&rt->notes.queued, 1, memory_order_relaxed);
    if (queued == capacity) {
        unsigned cap = capacity ? 2 * capacity : 8;
        vnote *q = cap <= QUEUE_MAX ? realloc(queue, cap * sizeof *q) : NULL;
        if (!q) {
            if (is_log)
                atomic_fetch_sub_explicit(&rt->notes.queued, 1, memory_order_relaxed);
            else
                atomic_fetch_add_explicit(&rt->notes.lost, 1, memory_order_relaxed);
            return NULL;
        }
        queue = q;
        capacity = cap;
    }
    vnote *n = &queue[queued++];
    memset(n, 0, sizeof *n);
    n->rt = rt;
    n->is_log = is_log;
    return n;
}

static const char *kind_name(gms_violation_kind k)
{
    switch (k) {
    case GMS_VIOLATION_OVERFLOW: return "overflow";
    case GMS_VIOLATION_UNDERFLOW: return "underflow";
    case GMS_VIOLATION_WRITE_AFTER_FREE: return "write after free";
    case GMS_VIOLATION_FREE_MEMORY: return "write to free memory";
    case GMS_VIOLATION_WIPE_FAILED: return "wipe failed";
    case GMS_VIOLATION_IMMUTABLE_WRITE: return "write to an immutable share";
    default: return "invariant broken";
    }
}

void gms__violation_note(gms_pool *p, gms_violation_kind kind, gms_buf handle, uint64_t addr,
                         const gms_block *b, const char *fmt, ...)
{
    vnote *n = queue_push(p->rt, false);
    if (!n)
        return;
    snprintf(n->tenant, sizeof n->tenant, "%s", p->tenant->name);
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int len = snprintf(n->message, sizeof n->message, "%s: tenant '%s' (%s, %s): ",
                       kind_name(kind), p->tenant->name, gms_language_name(p->language),
                       gms_level_name(p->level));
    if (b) {
        uint64_t now = gms__now_ns();
        len += snprintf(n->message + len, sizeof n->message - (size_t)len,
                        "buffer 0x%016llx of %llu bytes at 0x%llx, byte at offset %+lld: %s; allocated by user '%s' %.3f s ago",
                        (unsigned long long)handle, (unsigned long long)b->req_size,
                        (unsigned long long)b->addr, (long long)(addr - b->addr), what,
                        gms__user_name(p, b->alloc_user), (double)(now - b->alloc_ns) / 1e9);
        if (b->state != GMS_BLOCK_LIVE && len > 0 && (size_t)len < sizeof n->message)
            snprintf(n->message + len, sizeof n->message - (size_t)len,
                     ", freed by user '%s' %.3f s ago", gms__user_name(p, b->free_user),
                     (double)(now - b->free_ns) / 1e9);
    } else {
        snprintf(n->message + len, sizeof n->message - (size_t)len, "address 0x%llx: %s",
                 (unsigned long long)addr, what);
    }
    n->v.kind = kind;
    n->v.handle = handle;
    n->v.address = addr;
    n->v.offset = b ? (int64_t)(addr - b->addr) : 0;
    n->v.size = b ? b->req_size : 0;
}

void gms__log_later(gms_runtime *rt, gms_log_level level, const char *fmt, ...)
{
    vnote *n = queue_push(rt, true);
    if (!n)
        return;
    n->level = level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->message, sizeof n->message, fmt, ap);
    va_end(ap);
}

void gms__log_mail(void *user, gms_log_level level, const char *msg)
{
    gms_runtime *rt = user;
    pthread_mutex_lock(&rt->notes.mail_lock);
    if (rt->notes.nmail < sizeof rt->notes.mail / sizeof rt->notes.mail[0]) {
        struct gms_mail *m = &rt->notes.mail[rt->notes.nmail++];
        m->level = level;
        snprintf(m->msg, sizeof m->msg, "%s", msg);
        atomic_fetch_add_explicit(&rt->notes.queued, 1, memory_order_relaxed);
    } else {
        rt->notes.mail_dropped++; /* said with the next line that gets through */
    }
    pthread_mutex_unlock(&rt->notes.mail_lock);
}

/* Writes the runtime's mail (no gms lock held); returns how many lines. */
static unsigned mail_deliver(gms_runtime *rt)
{
    struct gms_mail mail[sizeof rt->notes.mail / sizeof rt->notes.mail[0]];
    pthread_mutex_lock(&rt->notes.mail_lock);
    unsigned n = rt->notes.nmail, dropped = rt->notes.mail_dropped;
    memcpy(mail, rt->notes.mail, n * sizeof mail[0]);
    rt->notes.nmail = rt->notes.mail_dropped = 0;
    pthread_mutex_unlock(&rt->notes.mail_lock);
    if (n)
        atomic_fetch_sub_explicit(&rt->notes.queued, n, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++)
        gms__log(rt, mail[i].level, "%s", mail[i].msg);
    if (dropped)
        gms__log(rt, GMS_LOG_WARN, "gms: %u further log lines of the audit writer were dropped",
                 dropped);
    return n;
}

/* One note to the log, the audit trail and the callbacks. */
static void deliver_one(gms_runtime *rt, vnote *n)
{
    if (n->is_log) {
        gms__log(rt, n->level, "%s", n->message);
        return;
    }
    n->v.tenant = n->tenant;
    n->v.message = n->message;
    gms__log(rt, GMS_LOG_WARN, "gms: corruption: %s", n->message);
    if (rt->audit) {
        gms_audit_event e = {.op = GMS_AUDIT_VIOLATION, .result = GMS_E_CORRUPTION,
                             .handle = n->v.handle, .size = n->v.size, .tenant = n->tenant,
                             .level = -1, .language = -1, .detail = n->message};
        gms__audit_emit(rt->audit, &e);
    }
    uint32_t cbs = atomic_load_explicit(&rt->callbacks.n_on_violation, memory_order_acquire);
    for (uint32_t c = 0; c < cbs; c++)
        rt->callbacks.on_violation[c].fn(rt->callbacks.on_violation[c].user, &n->v);
}

/* Takes this thread's queue; the notes of other runtimes go back into it
 * (a nested call on another runtime left them: that runtime's own
 * delivery takes them). Returns the taken queue, rt's notes first, and
 * sets *n to their count. */
static vnote *queue_take(gms_runtime *rt, unsigned *n)
{
    vnote *taken = queue;
    unsigned total = queued;
    queue = NULL;
    queued = capacity = 0;
    unsigned mine = 0;
    for (unsigned i = 0; i < total; i++) {
        if (taken[i].rt == rt) {
            if (i != mine)
                taken[mine] = taken[i];
            mine++;
            continue;
        }
        gms_runtime *other = taken[i].rt;
        vnote *back = queue_push(other, taken[i].is_log);
        atomic_fetch_sub_explicit(&other->notes.queued, 1, memory_order_relaxed);
        if (back)
            *back = taken[i];
    }
    *n = mine;
    return taken;
}

/* gms__violations_deliver's work, apart: its frame (a saved error
 * message) would cost the common call, with nothing queued, more than its
 * test. */
static __attribute__((noinline)) unsigned deliver_queued(gms_runtime *rt)
{
    for (delivery *d = delivering; d; d = d->outer)
        if (d->rt == rt)
            return 0; /* called from a callback: the delivery under way takes them */
    delivery me = {rt, delivering};
    delivering = &me;
    char saved[GMS_ERROR_MAX];
    gms__error_save(saved);
    unsigned count = 0;
    bool fatal = false;
    for (;;) {
        unsigned mailed = mail_deliver(rt);
        unsigned n;
        vnote *taken = queue_take(rt, &n);
        uint64_t lost = atomic_exchange_explicit(&rt->notes.lost, 0, memory_order_relaxed);
        /* Counted as delivering before they stop counting as queued, so
         * that a settling thread never sees both at 0 in between. */
        atomic_fetch_add_explicit(&rt->notes.delivering, n, memory_order_seq_cst);
        if (n)
            atomic_fetch_sub_explicit(&rt->notes.queued, n, memory_order_seq_cst);
        for (unsigned i = 0; i < n; i++) {
            deliver_one(rt, &taken[i]);
            if (!taken[i].is_log) {
                count++;
                fatal |= rt->safety.abort_on_corruption;
            }
        }
        free(taken);
        atomic_fetch_sub_explicit(&rt->notes.delivering, n, memory_order_seq_cst);
        if (lost) {
            atomic_fetch_sub_explicit(&rt->notes.queued, lost, memory_order_relaxed);
            gms__log(rt, GMS_LOG_WARN,
                     "gms: corruption: %llu further report%s found at once, not itemised",
                     (unsigned long long)lost, lost == 1 ? "" : "s");
            count += (unsigned)lost;
            fatal |= rt->safety.abort_on_corruption;
        }
        if (!n && !lost && !mailed)
            break; /* nothing more: the callbacks queued nothing new */
    }
    delivering = me.outer;
    gms__error_restore(saved);
    if (fatal) {
        gms__log(rt, GMS_LOG_ERROR, "gms: aborting on corruption (GMS_ON_CORRUPTION_ABORT)");
        abort();
    }
    return count;
}

unsigned gms__violations_deliver(gms_runtime *rt)
{
    if (!atomic_load_explicit(&rt->notes.queued, memory_order_relaxed))
        return 0; /* the common case, on every alloc and free */
    return deliver_queued(rt);
}

int gms_on_violation(gms_runtime *rt, gms_violation_fn fn, void *user)
{
    if (!rt || !fn)
        return gms__fail(GMS_E_INVALID_ARG, "gms_on_violation: %s is NULL", rt ? "fn" : "runtime");
    pthread_mutex_lock(&rt->lock);
    uint32_t n = atomic_load(&rt->callbacks.n_on_violation);
    if (n == sizeof rt->callbacks.on_violation / sizeof rt->callbacks.on_violation[0]) {
        pthread_mutex_unlock(&rt->lock);
        return gms__fail(GMS_E_BUSY, "gms_on_violation: %u callbacks registered, the most there can be", n);
    }
    rt->callbacks.on_violation[n].fn = fn;
    rt->callbacks.on_violation[n].user = user;
    atomic_store_explicit(&rt->callbacks.n_on_violation, n + 1, memory_order_release);
    pthread_mutex_unlock(&rt->lock);
    return GMS_OK;
}

void gms__violations_settle(gms_runtime *rt)
{
    gms__violations_deliver(rt);
    if (delivering)
        return; /* from a callback: the delivery it is part of may be the one waited for */
    struct timespec pause = {0, 50 * 1000};
    for (int i = 0; i < 20000; i++) { /* 20,000 pauses of 50 us: a second */
        if (!atomic_load_explicit(&rt->notes.queued, memory_order_seq_cst) &&
            !atomic_load_explicit(&rt->notes.delivering, memory_order_seq_cst))
            return;
        nanosleep(&pause, NULL);
        gms__violations_deliver(rt);
    }
}
