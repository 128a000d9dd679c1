"""proofs/tlsf-wp/bit_lemmas.py: the facts proofs/tlsf-wp/tlsf_wp.c admits
(the BUILTINS axioms and each `admit lemma`), proved over bit-vectors, and
that the bit updates WP proves of insert and remove keep the bitmap
invariant. bit(x, i) is (x & (1 << i)) != 0, as in tlsf_wp.c; clz64/ctz64
are __builtin_clzll/__builtin_ctzll.

Usage: bit_lemmas.py [--mutant]  (the mutant: remove clears the
first-level bit even when the second-level map is not empty)
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import z3
from bv import Goals, bv, ctz, fls64

mutant = "--mutant" in sys.argv
g = Goals("tlsf-wp bit lemmas", stop_at_refutation=mutant)
x, m, k, i = (z3.BitVec(n, 64) for n in "xmki")
x32 = z3.BitVec("x32", 32)
w32 = z3.ZeroExt(32, x32)


def bit(v, j):
    return v & (bv(1) << j) != 0


clz = 63 - fls64(x)
ULT, UGE = z3.ULT, z3.UGE
if not mutant:
    g.prove("clz_range: 0 <= clz64(x) <= 63 for x != 0", ULT(clz, 64), [x != 0])
    sh = 58 - clz
    sl = z3.ZeroExt(32, z3.Extract(31, 0, z3.LShR(x, sh))) ^ 32
    g.prove("clz_class: x >= 8192: clz64(x) <= 50 and ((unsigned)(x >> (58 - clz)) ^ 32) < 32",
            z3.And(z3.ULE(clz, 50), ULT(sl, 32)), [UGE(x, 8192)])
    g.prove("ctz_bit: x != 0: ctz64(x) <= 63 and bit(x, ctz64(x))",
            z3.And(ULT(ctz(x, 64), 64), bit(x, ctz(x, 64))), [x != 0])
    g.prove("ctz_below52: x < 2^52 and x & m != 0: ctz64(x & m) < 52",
            ULT(ctz(x & m, 64), 52), [ULT(x, 1 << 52), x & m != 0])
    g.prove("__builtin_ctz's contract: a non-zero 32-bit word's ctz64 is below 32",
            ULT(ctz(w32, 64), 32), [x32 != 0])
    g.prove("linear_class: x < 8192 ==> (unsigned)(x >> 8) < 32", ULT(z3.LShR(x, 8), 32), [ULT(x, 8192)])
    rng = [ULT(i, 64)]
    g.prove("bit_or64", bit((bv(1) << k) | x, i) == z3.Or(bit(x, i), i == k), rng + [ULT(k, 64)])
    g.prove("bit_or32", bit(((bv(1) << k) & 0xFFFFFFFF) | w32, i) == z3.Or(bit(w32, i), i == k),
            rng + [ULT(k, 32)])
    g.prove("bit_andnot64", bit(~(bv(1) << k) & x, i) == z3.And(bit(x, i), i != k), rng + [ULT(k, 64)])
    g.prove("bit_andnot32", bit((~(bv(1) << k) & 0xFFFFFFFF) & w32, i) == z3.And(bit(w32, i), i != k),
            rng + [ULT(k, 32)])
    j = z3.BitVec("j", 64)
    g.prove("zero32: x == 0 iff no bit 0..31 is set",
            (w32 == 0) == z3.ForAll([j], z3.Implies(ULT(j, 32), z3.Not(bit(w32, j)))))
    g.prove("bit_and", z3.Implies(bit(x & m, i), bit(x, i)), rng)
    g.prove("bit_below52", z3.Implies(z3.And(ULT(x, 1 << 52), bit(x, i)), ULT(i, 52)), rng)
    g.prove("bit_below32", z3.Implies(bit(w32, i), ULT(i, 32)), rng)
    g.prove("or_below52", ULT((bv(1) << k) | x, 1 << 52), [ULT(x, 1 << 52), ULT(k, 52)])
    g.prove("andnot_below52", ULT(~(bv(1) << k) & x, 1 << 52), [ULT(x, 1 << 52), ULT(k, 64)])

# The bitmap invariant over any state: fl (the first-level map), sl[i]
# (second-level maps), ne(i, j) (list (i, j) non-empty).
fl = z3.BitVec("fl_bitmap", 64)
sl = z3.Array("sl_bitmap", z3.BitVecSort(64), z3.BitVecSort(32))
ne_fn = z3.Function("nonempty", z3.BitVecSort(64), z3.BitVecSort(64), z3.BoolSort())
ne = lambda p, q: ne_fn(p, q)


def inv(fl, sl, ne):
    a, b = z3.BitVecs("a b", 64)
    return z3.And(ULT(fl, 1 << 52),
                  z3.ForAll([a], z3.Implies(ULT(a, 52), bit(fl, a) == (sl[a] != 0))),
                  z3.ForAll([a, b], z3.Implies(z3.And(ULT(a, 52), ULT(b, 32)),
                                               bit(z3.ZeroExt(32, sl[a]), b) == ne(a, b))))


F, S = z3.BitVecs("F S", 64)  # the node's list
cls = [ULT(F, 52), ULT(S, 32)]
s1 = z3.Extract(31, 0, bv(1) << S)
# insert (WP: fl |= 1 << F, sl[F] |= 1 << S, head(F, S) = the node)
ne_ins = lambda p, q: z3.Or(ne(p, q), z3.And(p == F, q == S))
if not mutant:
    g.prove("insert's bit updates keep the bitmap invariant",
            inv((bv(1) << F) | fl, z3.Store(sl, F, s1 | sl[F]), ne_ins), [inv(fl, sl, ne)] + cls)
# remove: the list may empty (emptied) or not
emptied = z3.Bool("emptied")
ne_rm = lambda p, q: z3.If(z3.And(p == F, q == S, emptied), False, ne(p, q))
new_slF = z3.If(emptied, ~s1 & sl[F], sl[F])
new_sl = z3.Store(sl, F, new_slF)
clear_fl = emptied if mutant else z3.And(emptied, new_slF == 0)
new_fl = z3.If(clear_fl, ~(bv(1) << F) & fl, fl)
# (the node is in list (F, S), so that list was non-empty)
g.prove("remove's bit updates keep the bitmap invariant",
        inv(new_fl, new_sl, ne_rm), [inv(fl, sl, ne), ne(F, S)] + cls)
g.finish()
