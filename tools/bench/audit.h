/*
 * audit.h: `gms-bench audit`, the audit trail's costs (tools/bench/audit.c).
 */
#ifndef GMS_BENCH_AUDIT_H
#define GMS_BENCH_AUDIT_H

/* argv[0] is "audit". Options: --json, --records N (writer test, default
 * 4000000), --pairs N (tight loop, default 2000000), --no-replay, --dir DIR
 * (where trails are written; default $TMPDIR or /tmp), trace files (default:
 * every *.csv.gz in $GMS_SHARED_DIR/traces or ../shared/traces). Returns
 * the exit status. */
int bench_audit(int argc, char **argv);

#endif
