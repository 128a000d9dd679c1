"""proofs/tlsf-arith: the size-class arithmetic of src/core/tlsf.c
(gms__tlsf_mapping, the rounding and bit-map search of gms__tlsf_find),
proved with Z3 over 64-bit vectors for every size the allocator is given.

The model below is the C transcribed operation by operation (same widths,
shifts, casts). It is checked against the compiled tlsf.c on boundary and
random sizes before anything is proved (proofs/lib/oracle.c); the proofs
are about the model.

Sizes: the TLSF lists see block sizes and requests that are multiples of
GMS_ALIGNMENT (256), at least 256, and at most 2^53 (gms_alloc accepts
2^52 bytes, plus a redzone and alignment padding). The class-table goals
hold for every 64-bit size.

Usage: tlsf_arith.py [--mutant NAME]   (names: see MUTANTS)
"""
import argparse
import random
import sys
import os

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import z3
from bv import Goals, bv, ctz, evaluate, fls64, oracle, u32

ALIGN_SHIFT = 8
SL_SHIFT = 5  # GMS_TLSF_SL_SHIFT
SL_COUNT = 1 << SL_SHIFT
FL_COUNT = 52  # GMS_TLSF_FL_COUNT
LINEAR_LIMIT = 1 << (ALIGN_SHIFT + SL_SHIFT)
MAX_SIZE = 1 << 53

MUTANTS = {
    "round-no-minus-one": "find rounds up by 2^(f-5) instead of 2^(f-5) - 1",
    "fl-off-by-one": "mapping's first level without its + 1",
    "search-same-fl": "the first-level search starts at fl, not fl + 1",
}
ap = argparse.ArgumentParser()
ap.add_argument("--mutant", choices=sorted(MUTANTS))
mutant = ap.parse_args().mutant


def mapping(size):
    """gms__tlsf_mapping: (fl, sl) as 64-bit values."""
    f = fls64(size)
    fl_big = f - (ALIGN_SHIFT + SL_SHIFT) + (0 if mutant == "fl-off-by-one" else 1)
    sl_big = u32(z3.LShR(size, f - SL_SHIFT)) ^ SL_COUNT
    lin = z3.ULT(size, LINEAR_LIMIT)
    return (z3.If(lin, bv(0), u32(fl_big)), z3.If(lin, u32(z3.LShR(size, ALIGN_SHIFT)), sl_big))


def rounded(size):
    """find's round up to the next class boundary."""
    step = bv(1) << (fls64(size) - SL_SHIFT)
    add = step if mutant == "round-no-minus-one" else step - 1
    return z3.If(z3.UGE(size, LINEAR_LIMIT), size + add, size)


def lex_ge(a, b):
    return z3.Or(z3.UGT(a[0], b[0]), z3.And(a[0] == b[0], z3.UGE(a[1], b[1])))


def class_low(c):
    """The smallest size of class c (fl >= 1: (32 + sl) << (fl + 7))."""
    fl, sl = c
    return z3.If(fl == 0, sl << ALIGN_SHIFT, (SL_COUNT + sl) << (fl + ALIGN_SHIFT - 1))


def in_domain(x):
    return z3.And(x & (1 << ALIGN_SHIFT) - 1 == 0, z3.UGE(x, 1 << ALIGN_SHIFT), z3.ULE(x, MAX_SIZE))


def search(fl, sl, fl_bitmap, sl_bitmap):
    """The bit-map part of gms__tlsf_find from the rounded class (fl, sl):
    (found, fl', sl')."""
    sl_map0 = z3.If(z3.ULT(sl, SL_COUNT),
                    sl_bitmap[fl] & (z3.BitVecVal(0xFFFFFFFF, 32) << z3.Extract(31, 0, sl)),
                    z3.BitVecVal(0, 32))
    start = fl if mutant == "search-same-fl" else fl + 1
    fl_map = z3.If(z3.ULT(start, 64), fl_bitmap & (bv(2**64 - 1) << start), bv(0))
    fl2 = z3.If(sl_map0 != 0, fl, ctz(fl_map, 64))
    sl_map = z3.If(sl_map0 != 0, sl_map0, sl_bitmap[fl2])
    found = z3.Or(sl_map0 != 0, fl_map != 0)
    return found, fl2, z3.ZeroExt(32, ctz(sl_map, 32))


def check_against_c():
    """The model's mapping and single-block find, against the C's."""
    s = z3.BitVec("s", 64)
    b = z3.BitVec("b", 64)
    m = mapping(s)
    own = mapping(s)
    r = mapping(rounded(s))
    mb = mapping(b)
    found = z3.Or(z3.And(own[0] == mb[0], own[1] == mb[1], z3.UGE(b, s), z3.ULT(own[0], FL_COUNT)),
                  z3.And(z3.ULT(r[0], FL_COUNT), lex_ge(mb, r)))
    rng = random.Random(19)
    sizes = set(range(0, 1 << 16, 256))
    for k in range(8, 54):
        for d in (-256, 0, 256):
            sizes.add((1 << k) + d)
    sizes |= {rng.randrange(1, MAX_SIZE >> 8) << 8 for _ in range(300)}
    sizes = sorted(x for x in sizes if 0 <= x <= MAX_SIZE)
    pairs = [(rng.choice(sizes), rng.choice(sizes)) for _ in range(600)]
    pairs += [(x, x) for x in sizes[::7]] + [(x + 256, x) for x in sizes[::11]]
    pairs = [(x, y) for x, y in pairs if x and y]
    got = oracle([f"map {x}" for x in sizes] + [f"find {x} {y}" for x, y in pairs])
    want = [f"{evaluate(m[0], [(s, bv(x))])} {evaluate(m[1], [(s, bv(x))])}" for x in sizes]
    want += [str(int(z3.is_true(z3.simplify(z3.substitute(found, (s, bv(y)), (b, bv(x)))))))
             for x, y in pairs]
    bad = [(q, w, g) for q, w, g in zip(sizes + pairs, want, got) if w != g]
    if bad or len(got) != len(want):
        print(f"  model and C disagree on {len(bad)} of {len(want)} queries, e.g. {bad[:3]}")
        sys.exit(1 if mutant else 2)
    print(f"  model agrees with the compiled tlsf.c on {len(want)} queries")


if __name__ == "__main__":
    print(f"tlsf-arith{' (mutant: ' + MUTANTS[mutant] + ')' if mutant else ''}")
    # A mutant is a change to the model, so the C no longer matches it:
    # only the proofs themselves must reject it.
    if not mutant:
        check_against_c()
    g = Goals("tlsf-arith", stop_at_refutation=bool(mutant))
    s = z3.BitVec("s", 64)
    b = z3.BitVec("b", 64)
    fl, sl = mapping(s)
    g.prove("every 64-bit size maps inside the class tables (fl < 52, sl < 32)",
            z3.And(z3.ULT(fl, FL_COUNT), z3.ULT(sl, SL_COUNT)))
    rs = rounded(s)
    f = fls64(s)
    g.prove("rounding a size does not overflow and its shift is in range (sizes <= 2^53)",
            z3.And(z3.ULE(s, rs), z3.Implies(z3.UGE(s, LINEAR_LIMIT), z3.ULT(f - SL_SHIFT, 64)),
                   z3.BVAddNoOverflow(s, (bv(1) << (f - SL_SHIFT)) - 1, False)),
            [in_domain(s)])
    rc = mapping(rs)
    g.prove("the rounded class is inside the tables: find never gives up early",
            z3.And(z3.ULT(rc[0], FL_COUNT), z3.ULT(rc[1], SL_COUNT)), [in_domain(s)])
    g.prove("the bit shifts of insert/remove/find are in range (fl+1 <= 52 < 64, sl < 32)",
            z3.And(z3.ULT(rc[0] + 1, 64), z3.ULT(fl + 1, 64)), [in_domain(s)])
    mb = mapping(b)
    g.prove("class_low(c) is the least size of class c",
            z3.And(z3.ULE(class_low(mb), b), mapping(class_low(mb))[0] == mb[0],
                   mapping(class_low(mb))[1] == mb[1]), [in_domain(b)])
    g.prove("every block of a class at or above the rounded class is large enough",
            z3.Implies(lex_ge(mb, rc), z3.UGE(b, s)), [in_domain(s), in_domain(b)])
    prev = (z3.If(rc[1] == 0, rc[0] - 1, rc[0]), z3.If(rc[1] == 0, bv(SL_COUNT - 1), rc[1] - 1))
    g.prove("the rounded class is the lowest such class: the class below it holds a smaller block",
            z3.ULT(class_low(prev), s), [in_domain(s)])
    g.prove("a free block as large as the request is in its own class or at/above the rounded one"
            " (so a block just freed at this size is found)",
            z3.Implies(z3.UGE(b, s), z3.Or(z3.And(mb[0] == fl, mb[1] == sl), lex_ge(mb, rc))),
            [in_domain(s), in_domain(b)])
    # The search over any bit maps that keep the invariant (proved for the
    # code by proofs/tlsf-wp): fl bit i set iff sl_bitmap[i] != 0, no fl
    # bit at or past 52.
    flb = z3.BitVec("fl_bitmap", 64)
    slb = z3.Array("sl_bitmap", z3.BitVecSort(64), z3.BitVecSort(32))
    i = z3.BitVec("i", 64)
    j = z3.BitVec("j", 64)
    inv = [z3.ForAll([i], z3.Implies(z3.ULT(i, 64), (z3.Extract(0, 0, z3.LShR(flb, i)) == 1) ==
                                     z3.And(z3.ULT(i, FL_COUNT), slb[i] != 0)))]
    qf, qfl, qsl = search(rc[0], rc[1], flb, slb)
    nonempty = lambda a, c: z3.And(z3.ULT(a, FL_COUNT), z3.ULT(c, SL_COUNT),
                                   z3.Extract(0, 0, z3.LShR(slb[a], z3.Extract(31, 0, c))) == 1)
    pre = inv + [in_domain(s), z3.ULT(rc[0], FL_COUNT), z3.ULT(rc[1], SL_COUNT)]
    g.prove("the search returns a non-empty class at or above the rounded one",
            z3.Implies(qf, z3.And(nonempty(qfl, qsl), lex_ge((qfl, qsl), rc))), pre)
    g.prove("the search returns the lowest such class, and NULL only when there is none",
            z3.Implies(z3.And(nonempty(i, j), lex_ge((i, j), rc)),
                       z3.And(qf, lex_ge((i, j), (qfl, qsl)))), pre)
    g.finish()
