/*
 * policy.h: gmsd's policy file (docs/broker.md, "Policy"): which uids and
 * gids are which tenant, with its level, quotas and languages. Parsed once
 * at start with jansson; any error refuses the whole file.
 */
#ifndef GMSD_POLICY_H
#define GMSD_POLICY_H

#include <stdint.h>
#include <sys/types.h>

#define GMSD_ID_MAX 64 /* uids or gids per tenant */

/* What happened to a tenant since gmsd started (the metrics' counters). */
typedef struct gmsd_tenant_counts {
    uint64_t leases_granted;
    uint64_t quota_refusals;      /* leases refused for the quota */
    uint64_t connection_refusals; /* connections past max_connections */
    uint64_t violations;          /* malformed messages, forged or stale lease ids */
    uint64_t reclaimed_leases;    /* wiped after their connection ended holding them */
    uint64_t reclaimed_bytes;
    uint64_t shares;              /* shares the tenant made (docs/broker.md) */
    uint64_t acquires;            /* holds its processes acquired */
    uint64_t share_refusals;      /* acquires and revokes refused: no grant,
                                     revoked, read-only, busy */
    uint64_t transfers_in;        /* shares of other tenants it took over (TRANSFER) */
    uint64_t transfers_out;       /* its shares other tenants took over */
} gmsd_tenant_counts;

typedef struct gmsd_tenant {
    char name[64];
    uid_t uids[GMSD_ID_MAX];
    gid_t gids[GMSD_ID_MAX];
    unsigned nuids, ngids;
    uint32_t level;     /* gms_level */
    uint32_t languages; /* bit i: gms_language i allowed */
    uint64_t quota_bytes, quota_leases;
    uint64_t max_connections;
    uint64_t used_bytes, used_leases; /* live, all connections together;
                                         a share counts as a lease */
    uint64_t live_shares;             /* shares charged to it now */
    uint64_t connections;             /* open now */
    gmsd_tenant_counts n;
} gmsd_tenant;

typedef struct gmsd_policy {
    uint64_t lease_bytes; /* the size clients lease by default */
    gmsd_tenant *tenants;
    unsigned ntenants;
} gmsd_policy;

/* Reads path into *p. 0, or -1 with err (err_len bytes) saying where
 * ("FILE:LINE:COLUMN: ..." for a syntax error, "FILE: tenants[i].key: ..."
 * for a value) and why. */
int gmsd_policy_load(const char *path, gmsd_policy *p, char *err, size_t err_len);
void gmsd_policy_free(gmsd_policy *p);
/* The tenant of a peer: by uid first, then by gid; NULL if none. */
gmsd_tenant *gmsd_policy_match(gmsd_policy *p, uid_t uid, gid_t gid);

#endif
