"""proofs/snapshot/snapshot.py: tenant isolation proved with Z3 on a
snapshot of a real runtime (gms_testing_snapshot, written by
`gms verify --snapshot FILE`; docs/proofs.md, section 5).

The snapshot's numbers become Z3 terms, and each goal is stated for a Z3
variable that ranges over the whole state: every address, every granule
number, every block, every tenant, every requester. The solver looks for
a value that breaks the goal and prints it if there is one. Goals:

  (a) every granule (the granule-sized, granule-aligned ranges of the
      whole address space) holds blocks of one tenant at most: blocks of
      every state, since a free block is memory of its pool's tenant too;
  (a2) every live block's owner context is of its pool's tenant;
  (b) every block lies inside its chunk, and the chunk is its pool's;
  (c) every address lies in one live block at most: no two overlap;
  (d) every tenant's quota counters equal the bytes and the count of its
      live blocks;
  (f) every granule under a live block is mapped;
  (e) every share's grants are as grants_copy stores them and its block
      is live in its pool, and for any requester (any tenant, user,
      language and mode) gms_acquire's decision on those grants grants
      exactly what docs/sharing.md allows (share_decision.py's model,
      which share_decision.py checks against the compiled library).

Usage: snapshot.py [--mutant NAME] SNAPSHOT
A mutant seeds one bug into the snapshot as read (MUTANTS); the run must
refute that mutant's goal: exit 1 if it does, 2 if it does not.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import z3
from bv import Goals
import share_decision as sd
from share_decision import rules

MUTANTS = {  # name: (what is seeded, the goal that must refute it)
    "overlap": ("a live block moved into the live block before it", "c"),
    "granule-two-tenants": ("a block that shares a granule filed in a pool of another tenant", "a"),
    "outside-chunk": ("the last block of a chunk 256 bytes longer, past the chunk's end", "b"),
    "quota": ("a tenant charged 256 bytes more than its live blocks", "d"),
    "owner-other-tenant": ("a live block owned by a context of another tenant", "a2"),
    "unmapped": ("a granule under a live block not mapped", "f"),
    "grant-mode": ("a grant stored with mode 3, which grants_copy refuses", "e"),
}


def fail(msg):
    print(f"snapshot: {msg}")
    sys.exit(2)


# The fields each entry of a snapshot has, and their types.
FIELDS = {
    "tenants": {"name": str, "max_bytes": int, "max_allocs": int, "live_bytes": int,
                "live_allocs": int},
    "pools": {"id": int, "tenant": str, "level": int, "language": int, "live_bytes": int,
              "live_blocks": int},
    "chunks": {"pool": int, "base": int, "size": int, "granules": list},
    "blocks": {"pool": int, "chunk": int, "addr": int, "size": int, "req_size": int,
               "state": str, "owner_tenant": (str, type(None))},
    "shares": {"id": int, "pool": int, "owner_tenant": str, "block": (int, type(None)),
               "owner_ctx": int, "immutable": bool, "revoked": bool, "holders": int,
               "writers": int, "grants": list},
}
GRANT = {"tenant": str, "user": str, "language": int, "mode": int}


def well_typed(entry, fields):
    # bool is an int to Python: a number field must be exactly int.
    ok = lambda v, t: type(v) in (t if isinstance(t, tuple) else (t,))
    return isinstance(entry, dict) and all(k in entry and ok(entry[k], t) for k, t in fields.items())


def load(path):
    """The snapshot at path; exit 2 if it is not one of format 1 with
    every field of FIELDS."""
    try:
        with open(path) as f:
            snap = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")
    if not isinstance(snap, dict) or snap.get("gms_snapshot") != 1:
        fail(f"{path} is not a gms snapshot of format 1")
    if type(snap.get("granule")) is not int or type(snap.get("alignment")) is not int or \
            snap["granule"] <= 0:
        fail(f"{path}: no granule or alignment")
    for key, fields in FIELDS.items():
        for n, entry in enumerate(snap.get(key) if isinstance(snap.get(key), list) else [None]):
            if not well_typed(entry, fields):
                fail(f"{path}: {key} entry {n} lacks a field of {sorted(fields)} or has one of the wrong type")
    for s in snap["shares"]:
        if not all(well_typed(x, GRANT) for x in s["grants"]):
            fail(f"{path}: share {s['id']} has a malformed grant")
    for c in snap["chunks"]:
        if not all(isinstance(x, list) and len(x) == 3 and all(type(v) is int for v in x)
                   for x in c["granules"]):
            fail(f"{path}: chunk at {c['base']} has a malformed granule")
    return snap


# ---- seeded bugs ----

def granules_of(snap, b):
    g = snap["granule"]
    return set(range(b["addr"] // g, (b["addr"] + b["size"] - 1) // g + 1))


def seed(snap, name):
    """Seeds the mutant into the snapshot; fails (exit 2) when this
    snapshot has no place for it."""
    blocks, pools = snap["blocks"], {p["id"]: p for p in snap["pools"]}
    tenant_of = {p["id"]: p["tenant"] for p in snap["pools"]}
    live = [b for b in blocks if b["state"] == "live"]
    if name == "overlap":
        for a, b in zip(blocks, blocks[1:]):
            if a["state"] == b["state"] == "live" and a["chunk"] == b["chunk"]:
                b["addr"] = a["addr"] + a["size"] - snap["alignment"]
                return
    elif name == "granule-two-tenants":
        for a, b in zip(blocks, blocks[1:]):
            others = [p for p in pools.values() if p["tenant"] != tenant_of[b["pool"]]]
            if b["state"] != "live" and a["chunk"] == b["chunk"] and others and \
                    granules_of(snap, a) & granules_of(snap, b):
                b["pool"] = others[0]["id"]
                return
    elif name == "outside-chunk":
        for i, b in enumerate(blocks):
            if i + 1 == len(blocks) or blocks[i + 1]["chunk"] != b["chunk"]:
                b["size"] += snap["alignment"]
                if b["state"] == "live":  # still charged right: only the chunk is broken
                    t = next(t for t in snap["tenants"] if t["name"] == tenant_of[b["pool"]])
                    t["live_bytes"] += snap["alignment"]
                return
    elif name == "quota":
        snap["tenants"][0]["live_bytes"] += snap["alignment"]
        return
    elif name == "owner-other-tenant":
        for b in live:
            others = [t["name"] for t in snap["tenants"] if t["name"] != b["owner_tenant"]]
            if b["owner_tenant"] and others:
                b["owner_tenant"] = others[0]
                return
    elif name == "unmapped":
        if live:
            b = live[0]
            c = snap["chunks"][b["chunk"]]
            first = b["addr"] // snap["granule"] - c["base"] // snap["granule"]
            c["granules"] = [g for g in c["granules"] if g[0] != first]
            return
    elif name == "grant-mode":
        if snap["shares"]:
            snap["shares"][0]["grants"][0]["mode"] = 3
            return
    fail(f"this snapshot has no place for mutant {name}")


# ---- the goals ----

def table(index, values):
    """values[index] for a symbolic index in range (an If chain)."""
    expr = z3.IntVal(values[-1])
    for k in range(len(values) - 2, -1, -1):
        expr = z3.If(index == k, values[k], expr)
    return expr


def for_every(g, title, n, claim, name):
    """Proves claim(k) for every k in [0, n): the index is a Z3 variable,
    so a counterexample names it."""
    k = z3.Int(name)
    g.prove(title, z3.And([z3.Implies(k == x, claim(x)) for x in range(n)]), [k >= 0, k < n])


def prove_memory(g, snap):
    G = snap["granule"]
    tenants = [t["name"] for t in snap["tenants"]]
    # Tenants by number: -1 for a name the snapshot does not list.
    number = lambda name: z3.IntVal(tenants.index(name) if name in tenants else -1)
    pool_tenant = {p["id"]: p["tenant"] for p in snap["pools"]}
    chunks, blocks = snap["chunks"], snap["blocks"]
    if not blocks or not chunks:
        fail("the snapshot holds no block")
    tenant_of = lambda b: number(pool_tenant.get(b["pool"]))
    live = [b for b in blocks if b["state"] == "live"]
    A, S = lambda b: z3.IntVal(b["addr"]), lambda b: z3.IntVal(b["size"])
    # Whether block b has memory in granule number y (the granule's
    # addresses are [G*y, G*y + G)): no division, so the solver stays
    # linear.
    on = lambda b, y: z3.And(S(b) > 0, G * y < A(b) + S(b), A(b) < G * y + G)
    y, x, t = z3.Int("granule"), z3.Int("address"), z3.Int("tenant")

    g.prove("(a) every granule holds blocks of one tenant at most",
            z3.Sum([z3.If(z3.Or([z3.And(tenant_of(b) == u, on(b, y)) for b in blocks]), 1, 0)
                    for u in range(-1, len(tenants))]) <= 1)
    for_every(g, "(a2) every live block's owner context is of its pool's tenant", len(live),
              lambda k: z3.BoolVal(True) if live[k]["owner_tenant"] is None
              else number(live[k]["owner_tenant"]) == tenant_of(live[k]), "live_block")

    def inside(b):
        if not 0 <= b["chunk"] < len(chunks):
            return z3.BoolVal(False)
        c = chunks[b["chunk"]]
        return z3.And(z3.IntVal(c["pool"]) == b["pool"], S(b) > 0, c["base"] <= A(b),
                      A(b) + S(b) <= z3.IntVal(c["base"]) + c["size"])
    for_every(g, "(b) every block lies inside its chunk, a chunk of its own pool", len(blocks),
              lambda k: inside(blocks[k]), "block")
    g.prove("(c) every address lies in one live block at most",
            z3.Sum([z3.If(z3.And(A(b) <= x, x < A(b) + S(b)), 1, 0) for b in live] + [z3.IntVal(0)]) <= 1)
    charged = lambda key: table(t, [x[key] for x in snap["tenants"]])
    g.prove("(d) every tenant's quota counters equal its live blocks' bytes and count",
            z3.And(charged("live_bytes") == z3.Sum([z3.If(tenant_of(b) == t, S(b), 0) for b in live] + [z3.IntVal(0)]),
                   charged("live_allocs") == z3.Sum([z3.If(tenant_of(b) == t, 1, 0) for b in live] + [z3.IntVal(0)])),
            [t >= 0, t < len(tenants)])
    mapped = [c["base"] // G + r[0] for c in chunks for r in c["granules"] if r[2]]
    g.prove("(f) every granule under a live block is mapped",
            z3.Implies(z3.Or([on(b, y) for b in live] or [z3.BoolVal(False)]),
                       z3.Or([y == m for m in mapped] or [z3.BoolVal(False)])))


def share_of(s):
    """A snapshot share as share_decision's Share (its grants as stored;
    the writer count left symbolic: any later state), and the facts about
    it that grants_copy and share.c keep."""
    grants, facts = [], []
    for x in s["grants"]:
        tenant, user = z3.StringVal(x["tenant"]), z3.StringVal(x["user"])
        language, mode = z3.IntVal(x["language"]), z3.IntVal(x["mode"])
        grants.append(sd.Grant(z3.If(tenant == "", sd.T_ANY, sd.T_NAMED), tenant, user == "", user,
                               language, mode))
        facts += [language >= sd.ANY_LANGUAGE, language <= 7, tenant != "*",
                  z3.Or(mode == sd.READ, mode == sd.READ_WRITE)]
    n = z3.IntVal(len(grants))
    facts += [n >= 1, n <= sd.GRANTS_MAX]
    sh = sd.Share(z3.StringVal(s["owner_tenant"]), grants, n, z3.BoolVal(s["immutable"]),
                  z3.BoolVal(s["revoked"]), z3.Int("writers"))
    return sh, facts


def prove_shares(g, snap):
    pools = {p["id"]: p["tenant"] for p in snap["pools"]}
    blocks = snap["blocks"]
    r, rdom = sd.symbolic_requester()
    for n, s in enumerate(snap["shares"]):
        sh, facts = share_of(s)
        b = s["block"]
        # The owner is its pool's tenant; its block (none: an imported
        # tensor's) is live, in its pool.
        facts.append(z3.StringVal(pools.get(s["pool"], "")) == sh.owner)
        if b is not None:
            facts += [z3.BoolVal(0 <= b < len(blocks))]
            if 0 <= b < len(blocks):
                facts += [z3.StringVal(blocks[b]["state"]) == "live",
                          z3.IntVal(blocks[b]["pool"]) == s["pool"]]
        label = f"(e) share {n} ({len(s['grants'])} grant{'s' if len(s['grants']) > 1 else ''}" \
                f"{', immutable' if s['immutable'] else ''}{', revoked' if s['revoked'] else ''})"
        claims = rules(sh, r)
        g.prove(f"{label}: its grants are as grants_copy stores them, its block live in its pool; "
                f"any requester: gms_acquire {', '.join(title for title, _ in claims)}",
                z3.And(facts + [claim for _, claim in claims]), rdom + [sh.writers >= 0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mutant", choices=sorted(MUTANTS))
    ap.add_argument("snapshot")
    a = ap.parse_args()
    g = Goals("snapshot")
    try:  # a field missing or of the wrong type is no refutation: exit 2
        snap = load(a.snapshot)
        if a.mutant:
            seed(snap, a.mutant)
        print(f"snapshot {a.snapshot}: {len(snap['tenants'])} tenants, {len(snap['pools'])} pools, "
              f"{len(snap['chunks'])} chunks, {len(snap['blocks'])} blocks, "
              f"{len(snap['shares'])} shares" + (f" (mutant: {MUTANTS[a.mutant][0]})" if a.mutant else ""))
        prove_memory(g, snap)
        prove_shares(g, snap)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError, z3.Z3Exception) as e:
        fail(f"malformed snapshot: {e!r}")
    if a.mutant:
        target = MUTANTS[a.mutant][1]
        hit = any(t.startswith(f"({target})") for t in g.refuted_titles)
        if not hit:
            print(f"snapshot: mutant {a.mutant} was not refuted by goal ({target})")
            sys.exit(2)
    g.finish()


if __name__ == "__main__":
    main()
