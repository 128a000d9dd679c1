"""proofs/snapshot/share_decision.py: the access decision of gms_acquire
(src/core/share.c: grants_copy, which stores a share's grants, granted(),
the best mode the grants give a context, and the checks gms_acquire makes
after it), proved against the rules of docs/sharing.md with Z3.

The model is transcribed from share.c condition by condition; it is
checked against the compiled library first, on random shares and
requesters (proofs/snapshot/acquire_oracle.c drives gms_share, gms_revoke
and gms_acquire). The rules are written from docs/sharing.md, separately:
a grant names a tenant (NULL: the owner's; "*": any), a user (NULL: any)
and a language (GMS_ANY_LANGUAGE: any), and the most it allows; a revoked
share admits nobody; an immutable one admits readers only; writing needs a
grant that allows it, and a read-write acquire needs no other writer.

Names are Z3 strings, so "any tenant, any user" means any string, not a
list of examples. Assumptions, read from the code: a context's tenant and
user are non-empty names (gms__name_check), its language is 0 to 7
(context.c); grants_copy accepts a grant's tenant only as NULL, "*" or a
name, its language as -1 to 7 and its mode as READ or READ_WRITE, and 1 to
16 grants; a requested mode other than READ, READ_WRITE and ATOMIC is
refused before the decision (GMS_E_INVALID_ARG).

Usage: share_decision.py [--mutant NAME]   (names: see MUTANTS)
snapshot.py imports it to prove the same rules on every share of a
snapshot.
"""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import z3
from bv import Goals, oracle

READ, READ_WRITE, ATOMIC = 1, 2, 3  # gms_access, GMS_ACCESS_ATOMIC
OK, DENIED, READ_ONLY, BUSY = 0, -3, -7, -11  # GMS_OK, GMS_E_*
ANY_LANGUAGE = -1
GRANTS_MAX = 16
# A grant's tenant as the caller gives it (gms_share_grant.tenant).
T_OWNER, T_ANY, T_NAMED = 0, 1, 2  # NULL, "*", a name

MUTANTS = {
    "or-for-and": "granted() with || for the first && (tenant || user && language)",
    "no-immutable-check": "gms_acquire without its immutable check (READ_WRITE and ATOMIC let in)",
    "no-writer-check": "gms_acquire without its one-writer check",
}
mutant = None


class Grant:
    """A grant as the caller gives it: tenant kind and name, user (None:
    NULL), language, mode. Fields are Z3 terms."""

    def __init__(self, kind, tenant, user_null, user, language, mode):
        self.kind, self.tenant, self.user_null, self.user = kind, tenant, user_null, user
        self.language, self.mode = language, mode


class Share:
    def __init__(self, owner, grants, n, immutable, revoked, writers):
        self.owner, self.grants, self.n = owner, grants, n  # owner: the owner's tenant
        self.immutable, self.revoked, self.writers = immutable, revoked, writers


class Requester:
    def __init__(self, tenant, user, language, mode):
        self.tenant, self.user, self.language, self.mode = tenant, user, language, mode


def stored(g, owner):
    """grants_copy: the record share.c keeps (tenant "" for any, the
    owner's name for NULL; user "" for any)."""
    tenant = z3.If(g.kind == T_OWNER, owner, z3.If(g.kind == T_ANY, z3.StringVal(""), g.tenant))
    user = z3.If(g.user_null, z3.StringVal(""), g.user)
    return tenant, user, g.language, g.mode


def granted(sh, r):
    """share.c's granted(): the best mode of the grants that match, 0 if
    none does."""
    best = z3.IntVal(0)
    for i, g in enumerate(sh.grants):
        tenant, user, language, mode = stored(g, sh.owner)
        t = z3.Or(tenant == "", tenant == r.tenant)
        u = z3.Or(user == "", user == r.user)
        lang = z3.Or(language == ANY_LANGUAGE, language == r.language)
        if mutant == "or-for-and":
            match = z3.Or(t, z3.And(u, lang, mode > best))
        else:
            match = z3.And(t, u, lang, mode > best)
        best = z3.If(z3.And(i < sh.n, match), mode, best)
    return best


def decision(sh, r):
    """gms_acquire's result after share_lock: its checks, built from the
    last outwards, so that the first check (revoked) is the outermost."""
    may = granted(sh, r)
    need = z3.If(r.mode == ATOMIC, READ_WRITE, r.mode)
    rc = z3.IntVal(OK)
    if mutant != "no-writer-check":
        rc = z3.If(z3.And(r.mode == READ_WRITE, sh.writers > 0), BUSY, rc)
    rc = z3.If(need > may, DENIED, rc)
    if mutant != "no-immutable-check":
        rc = z3.If(z3.And(need == READ_WRITE, sh.immutable), READ_ONLY, rc)
    rc = z3.If(may == 0, DENIED, rc)
    return z3.If(sh.revoked, DENIED, rc)


# ---- the rules of docs/sharing.md ----

def admits(g, owner, r):
    """'A context may acquire if one grant matches its tenant, user and
    language.'"""
    tenant = z3.If(g.kind == T_OWNER, r.tenant == owner,
                   z3.If(g.kind == T_ANY, True, r.tenant == g.tenant))
    return z3.And(tenant, z3.Or(g.user_null, r.user == g.user),
                  z3.Or(g.language == ANY_LANGUAGE, g.language == r.language))


def allowed(sh, r):
    """What the rules allow: not revoked; a grant that matches and, to
    write (READ_WRITE or ATOMIC), allows READ_WRITE on a mutable share;
    READ_WRITE only while no holder writes."""
    def by(i, g):
        writes = z3.And(g.mode == READ_WRITE, z3.Not(sh.immutable),
                        z3.Or(r.mode == ATOMIC, sh.writers == 0))
        return z3.And(i < sh.n, admits(g, sh.owner, r), z3.Or(r.mode == READ, writes))
    return z3.And(z3.Not(sh.revoked), z3.Or([by(i, g) for i, g in enumerate(sh.grants)]))


def any_admits(sh, r, also=lambda g: True):
    """Whether a grant of the share admits r (and has property `also`)."""
    return z3.Or([z3.And(i < sh.n, admits(g, sh.owner, r), also(g)) for i, g in enumerate(sh.grants)])


def symbolic_requester():
    r = Requester(z3.String("req_tenant"), z3.String("req_user"), z3.Int("req_language"),
                  z3.Int("req_mode"))
    domain = [z3.Length(r.tenant) > 0, z3.Length(r.user) > 0, r.language >= 0, r.language <= 7,
              z3.Or(r.mode == READ, r.mode == READ_WRITE, r.mode == ATOMIC)]
    return r, domain


def symbolic_share(ngrants=GRANTS_MAX):
    grants, domain = [], []
    for i in range(ngrants):
        g = Grant(z3.Int(f"g{i}_kind"), z3.String(f"g{i}_tenant"), z3.Bool(f"g{i}_user_null"),
                  z3.String(f"g{i}_user"), z3.Int(f"g{i}_language"), z3.Int(f"g{i}_mode"))
        grants.append(g)
        domain += [g.kind >= T_OWNER, g.kind <= T_NAMED,
                   z3.Implies(g.kind == T_NAMED, z3.And(z3.Length(g.tenant) > 0, g.tenant != "*")),
                   z3.Implies(z3.Not(g.user_null), z3.Length(g.user) > 0),
                   g.language >= ANY_LANGUAGE, g.language <= 7,
                   z3.Or(g.mode == READ, g.mode == READ_WRITE)]
    sh = Share(z3.String("owner_tenant"), grants, z3.Int("ngrants"), z3.Bool("immutable"),
               z3.Bool("revoked"), z3.Int("writers"))
    domain += [z3.Length(sh.owner) > 0, sh.n >= 1, sh.n <= ngrants, sh.writers >= 0]
    return sh, domain


def rules(sh, r):
    """The goals about one share (symbolic or a snapshot's) and any
    requester, as (title, claim) pairs."""
    rc = decision(sh, r)
    names_it = [z3.And(i < sh.n, z3.Or(x.kind == T_ANY, z3.And(x.kind == T_NAMED, x.tenant == r.tenant)))
                for i, x in enumerate(sh.grants)]
    return [("never grants what the rules forbid", z3.Implies(rc == OK, allowed(sh, r))),
            ("grants what the rules allow", z3.Implies(allowed(sh, r), rc == OK)),
            ("another tenant gets in only through a grant naming it or any tenant",
             z3.Implies(z3.And(rc == OK, r.tenant != sh.owner), z3.Or(names_it)))]


def prove_codes(g, sh, r, domain):
    """Each refusal has the code of docs/sharing.md's table."""
    wants_write = r.mode != READ
    matched = any_admits(sh, r)
    may_write = any_admits(sh, r, lambda x: x.mode == READ_WRITE)
    rc = decision(sh, r)
    rows = [
        ("after gms_revoke: GMS_E_ACCESS_DENIED", sh.revoked, DENIED),
        ("no grant matches: GMS_E_ACCESS_DENIED", z3.Not(matched), DENIED),
        ("write of an immutable share: GMS_E_READ_ONLY",
         z3.And(z3.Not(sh.revoked), matched, wants_write, sh.immutable), READ_ONLY),
        ("write beyond what the grants allow: GMS_E_ACCESS_DENIED",
         z3.And(z3.Not(sh.revoked), matched, wants_write, z3.Not(sh.immutable), z3.Not(may_write)), DENIED),
        ("read-write while another holder writes: GMS_E_BUSY",
         z3.And(z3.Not(sh.revoked), may_write, r.mode == READ_WRITE, z3.Not(sh.immutable), sh.writers > 0), BUSY),
    ]
    for title, when, code in rows:
        g.prove(f"refusal code: {title}", z3.Implies(when, rc == code), domain)


# ---- the model against the compiled library ----

TENANTS, USERS = ["a", "b", "c"], ["u", "v", "w"]


def random_query(rng):
    n = GRANTS_MAX if rng.random() < 0.1 else rng.randint(1, 4)
    grants = []
    for _ in range(n):
        tenant = rng.choice(["-", "-", "*", "a", "b", "c"])
        user = rng.choice(["-", "-", "u", "v", "w"])
        language = rng.choice([ANY_LANGUAGE, ANY_LANGUAGE, 0, rng.randint(0, 7)])
        grants.append((tenant, user, language, rng.choice([READ, READ_WRITE])))
    return (rng.random() < 0.3, rng.random() < 0.15, rng.choice([0, 1, 1]),
            rng.choice(TENANTS), rng.choice(USERS), rng.choice([0, 0, rng.randint(0, 7)]),
            rng.choice([READ, READ, READ_WRITE, ATOMIC]), grants)


_templates = {}


def model_result(q):
    """The model's decision on query q: the symbolic decision for its
    number of grants (made once), its variables replaced by q's values."""
    immutable, revoked, writers, tenant, user, language, mode, grants = q
    if len(grants) not in _templates:
        sh, _ = symbolic_share(len(grants))
        sh.n = z3.IntVal(len(grants))
        r, _ = symbolic_requester()
        _templates[len(grants)] = (sh, r, decision(sh, r))
    sh, r, rc = _templates[len(grants)]
    sub = [(sh.owner, z3.StringVal("a")), (sh.immutable, z3.BoolVal(immutable)),
           (sh.revoked, z3.BoolVal(revoked)), (sh.writers, z3.IntVal(writers)),
           (r.tenant, z3.StringVal(tenant)), (r.user, z3.StringVal(user)),
           (r.language, z3.IntVal(language)), (r.mode, z3.IntVal(mode))]
    for g, (t, u, lang, m) in zip(sh.grants, grants):
        kind = T_OWNER if t == "-" else T_ANY if t == "*" else T_NAMED
        sub += [(g.kind, z3.IntVal(kind)), (g.tenant, z3.StringVal(t if kind == T_NAMED else "")),
                (g.user_null, z3.BoolVal(u == "-")), (g.user, z3.StringVal("" if u == "-" else u)),
                (g.language, z3.IntVal(lang)), (g.mode, z3.IntVal(m))]
    return z3.simplify(z3.substitute(rc, *sub)).as_long()


def check_against_c(count=1200):
    rng = random.Random(19)
    qs = [random_query(rng) for _ in range(count)]
    lines = []
    for imm, rev, wr, t, u, lang, mode, grants in qs:
        gs = " ".join(f"{a} {b} {c} {d}" for a, b, c, d in grants)
        lines.append(f"acquire {int(imm)} {int(rev)} {wr} {t} {u} {lang} {mode} {len(grants)} {gs}")
    got = oracle(lines, env="GMS_ACQUIRE_ORACLE")
    if len(got) != len(qs):
        print(f"  the oracle answered {len(got)} of {len(qs)} queries")
        sys.exit(2)
    compared, bad, codes = 0, [], {}
    for q, answer in zip(qs, got):
        if answer == "skip":  # WRITERS 0 needs the owner let in to read
            continue
        want = model_result(q)
        compared += 1
        codes[want] = codes.get(want, 0) + 1
        if str(want) != answer:
            bad.append((q, want, answer))
    if bad or compared < count // 2 or len(codes) < 4:
        print(f"  model and C disagree on {len(bad)} of {compared} acquires, e.g. {bad[:2]}; "
              f"codes seen {codes}")
        sys.exit(2)
    print(f"  model agrees with the compiled gms_acquire on {compared} acquires "
          f"(results {dict(sorted(codes.items()))})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mutant", choices=sorted(MUTANTS))
    mutant = ap.parse_args().mutant
    print(f"share-decision{' (mutant: ' + MUTANTS[mutant] + ')' if mutant else ''}")
    if not mutant:
        check_against_c()
    g = Goals("share-decision", stop_at_refutation=bool(mutant))
    sh, sdom = symbolic_share()
    r, rdom = symbolic_requester()
    for title, claim in rules(sh, r):
        g.prove(f"any share of 1 to {GRANTS_MAX} grants, any requester: {title}", claim, sdom + rdom)
    prove_codes(g, sh, r, sdom + rdom)
    g.finish()
