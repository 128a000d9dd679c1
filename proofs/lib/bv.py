"""proofs/lib/bv.py: what the Z3 proofs share. Bit-vector helpers that
mirror C's unsigned arithmetic, a goal runner, and the check of a model
against the compiled C (proofs/lib/oracle.c).

A script's exit status: 0 every goal proved, 1 a goal refuted (Z3 found a
counterexample, printed), 2 anything else (a crash, Z3 answering unknown,
the model disagreeing with the C). proofs/run.sh counts a proof as passed
on 0 and a mutant as passed (rejected) on 1 only.
"""
import os
import subprocess
import sys

import z3

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def bv(n, w=64):
    return z3.BitVecVal(n, w)


def fls64(x):
    """63 - __builtin_clzll(x) for x != 0 (undefined for 0, like the C)."""
    r = bv(0)
    for i in range(64):  # the highest set bit wins: later Ifs override
        r = z3.If(z3.Extract(i, i, x) == 1, bv(i), r)
    return r


def ctz(x, w):
    """__builtin_ctz/ctzll for x != 0: the lowest set bit."""
    r = z3.BitVecVal(0, w)
    for i in reversed(range(w)):
        r = z3.If(z3.Extract(i, i, x) == 1, z3.BitVecVal(i, w), r)
    return r


def u32(x):
    """A 64-bit value cast to C's unsigned, widened back to 64 bits."""
    return z3.ZeroExt(32, z3.Extract(31, 0, x))


class Goals:
    """Proves goals (valid for every value of their free variables)."""

    def __init__(self, name, stop_at_refutation=False):
        """stop_at_refutation: for a mutant, where one refuted goal is
        the answer and the goals after it need not run."""
        self.name = name
        self.refuted = 0
        self.refuted_titles = []
        self.stop = stop_at_refutation

    def prove(self, title, claim, assumptions=(), timeout_ms=120000):
        s = z3.Solver()
        s.set("timeout", timeout_ms)
        s.add(*assumptions)
        s.add(z3.Not(claim))
        r = s.check()
        if r == z3.unsat:
            print(f"  proved: {title}")
            return True
        if r == z3.sat:
            m = " ".join(str(s.model()).split())
            print(f"  REFUTED: {title}\n    counterexample: {m[:300]}")
            self.refuted += 1
            self.refuted_titles.append(title)
            if self.stop:
                self.finish()
            return False
        print(f"  UNKNOWN: {title} ({s.reason_unknown()})")
        sys.exit(2)

    def finish(self):
        if self.refuted:
            print(f"{self.name}: {self.refuted} goal(s) refuted")
            sys.exit(1)
        print(f"{self.name}: every goal proved")
        sys.exit(0)


def oracle(queries, env="GMS_PROOF_ORACLE"):
    """Runs the compiled C (proofs/lib/oracle.c, built by proofs/run.sh
    into $GMS_PROOF_ORACLE; or the program another variable names, such as
    $GMS_ACQUIRE_ORACLE) on query lines; returns its answer lines."""
    exe = os.environ.get(env)
    if not exe:
        print(f"{env} is not set (proofs/run.sh builds it)")
        sys.exit(2)
    out = subprocess.run([exe], input="\n".join(queries) + "\n", check=True,
                         capture_output=True, text=True)
    return out.stdout.splitlines()


def evaluate(expr, subst):
    """The value of a Z3 term with its variables replaced by constants."""
    return z3.simplify(z3.substitute(expr, *subst)).as_long()
