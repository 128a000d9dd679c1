"""proofs/handle: the handle word of src/core/handle.c (gms__handle_make,
the slot lookup's decoding) and the generation rule of its callers
(buffer.c and share.c clear the slot's word and bump its 64-bit
generation at every free), proved with Z3 over 64-bit vectors.

The model is gms__handle_make transcribed operation by operation; it is
checked against the compiled handle.c on random and edge inputs first
(proofs/lib/oracle.c). A handle validates when it equals its slot's word
(gms__buf_lock, share_lock: `s->handle == h`), and the word is the handle
made from the slot's current generation, or 0 while the slot is free.

Assumptions (read from the code, not proved here): slots handed out are
1 .. 2^24 - 1 (page_add never lists slot 0, slots_max <= 2^24 - 1); the
64-bit generation only grows (it starts at 1 and is never reset) and does
not itself wrap (2^64 frees of one slot).

Usage: handle.py [--mutant NAME]   (names: see MUTANTS)
"""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import z3
from bv import Goals, bv, evaluate, oracle

SLOT_BITS, GEN_BITS, CHECK_BITS = 24, 19, 20
GEN_MASK = (1 << GEN_BITS) - 1
CHECK_MASK = (1 << CHECK_BITS) - 1
M1, M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

MUTANTS = {
    "no-generation-bump": "a free clears the slot but does not bump its generation",
    "fields-overlap": "the generation shifted by CHECK_BITS - 1, into the check bits",
    "check-ignores-generation": "the check bits hash the slot alone",
    "no-parity": "the top bit is left 0 instead of evening the word's set bits",
}
ap = argparse.ArgumentParser()
ap.add_argument("--mutant", choices=sorted(MUTANTS))
mutant = ap.parse_args().mutant


def mix64(x):
    x = x ^ z3.LShR(x, 30)
    x = x * M1
    x = x ^ z3.LShR(x, 27)
    x = x * M2
    return x ^ z3.LShR(x, 31)


def check_inner(slot, gen, k0, k1):
    """The 64-bit value whose low 20 bits are the check bits."""
    g = bv(0) if mutant == "check-ignores-generation" else gen
    return mix64(mix64(k0 ^ z3.ZeroExt(32, slot)) ^ g ^ k1)


def parity(x):
    """1 if the 64-bit x has an odd number of set bits (__builtin_parityll)."""
    p = z3.Extract(0, 0, x)
    for i in range(1, 64):
        p = p ^ z3.Extract(i, i, x)
    return z3.ZeroExt(63, p)


def fields(slot, gen, check):
    """The word below the parity bit: slot, generation field, check bits."""
    gshift = CHECK_BITS - 1 if mutant == "fields-overlap" else CHECK_BITS
    return (z3.ZeroExt(32, slot) << (GEN_BITS + CHECK_BITS)) | ((gen & GEN_MASK) << gshift) | (check & CHECK_MASK)


def with_parity(word):
    """The top bit evens the word's set bits."""
    return word if mutant == "no-parity" else word | (parity(word) << 63)


def make(slot, gen, k0, k1):
    """gms__handle_make (slot: 32 bits, as the C's uint32_t)."""
    return with_parity(fields(slot, gen, check_inner(slot, gen, k0, k1)))


BUMP = 0 if mutant == "no-generation-bump" else 1  # buffer.c/share.c: s->gen++


def check_against_c():
    slot, gen = z3.BitVec("slot", 32), z3.BitVec("gen", 64)
    k0, k1 = z3.BitVec("k0", 64), z3.BitVec("k1", 64)
    h = make(slot, gen, k0, k1)
    rng = random.Random(19)
    qs = [(rng.randrange(1, 1 << SLOT_BITS), rng.choice([1, 2, GEN_MASK, 1 << GEN_BITS, rng.randrange(1 << 64)]),
           rng.randrange(1 << 64), rng.randrange(1 << 64)) for _ in range(400)]
    qs += [(1, 1, 0, 0), ((1 << SLOT_BITS) - 1, (1 << 64) - 1, (1 << 64) - 1, (1 << 64) - 1)]
    got = oracle([f"handle {a} {b} {c} {d}" for a, b, c, d in qs])
    want = [str(evaluate(h, [(slot, z3.BitVecVal(a, 32)), (gen, bv(b)), (k0, bv(c)), (k1, bv(d))]))
            for a, b, c, d in qs]
    bad = [(q, w, g) for q, w, g in zip(qs, want, got) if w != g]
    if bad or len(got) != len(want):
        print(f"  model and C disagree on {len(bad)} of {len(want)} handles, e.g. {bad[:2]}")
        sys.exit(2)
    print(f"  model agrees with the compiled handle.c on {len(want)} handles")


if __name__ == "__main__":
    print(f"handle{' (mutant: ' + MUTANTS[mutant] + ')' if mutant else ''}")
    if not mutant:
        check_against_c()
    g = Goals("handle", stop_at_refutation=bool(mutant))
    slot, slot2 = z3.BitVec("slot", 32), z3.BitVec("slot2", 32)
    gen, n = z3.BitVec("gen", 64), z3.BitVec("frees", 64)
    k0, k1 = z3.BitVec("k0", 64), z3.BitVec("k1", 64)
    issued = lambda s: z3.And(z3.UGE(s, 1), z3.ULT(s, 1 << SLOT_BITS))
    h = make(slot, gen, k0, k1)
    ones = bv(2**64 - 1)
    fs = fields(z3.BitVecVal((1 << SLOT_BITS) - 1, 32), bv(0), bv(0))  # slot field alone
    gf = fields(z3.BitVecVal(0, 32), bv(GEN_MASK), bv(0))
    top = bv(1 << 63)
    g.prove("parity bit, slot, generation and check fields are disjoint and cover the word",
            z3.And(fs & gf == 0, (fs | gf) & CHECK_MASK == 0, (fs | gf | CHECK_MASK) & top == 0,
                   fs | gf | CHECK_MASK | top == ones))
    g.prove("round trip: the lookup's slot, the generation field and the check field come back",
            z3.And(z3.Extract(31, 0, z3.LShR(h, GEN_BITS + CHECK_BITS)) & ((1 << SLOT_BITS) - 1) == slot,
                   z3.LShR(h, CHECK_BITS) & GEN_MASK == gen & GEN_MASK,
                   h & CHECK_MASK == check_inner(slot, gen, k0, k1) & CHECK_MASK),
            [issued(slot)])
    # Every handle has an even number of set bits, whatever its check bits
    # (c stands for them), so one flipped bit never turns a handle into
    # another: a corrupted word is refused always, not with probability.
    c, w, i = z3.BitVec("check", 64), z3.BitVec("word", 64), z3.BitVec("bit", 64)
    g.prove("every handle has an even number of set bits",
            parity(with_parity(fields(slot, gen, c))) == 0, [issued(slot)])
    g.prove("flipping one bit of a word with an even number of set bits makes it odd",
            z3.Implies(parity(w) == 0, parity(w ^ (bv(1) << i)) == 1), [z3.ULT(i, 64)])
    g.prove("GMS_BUF_NULL (0) is never issued, so a free slot's word (0) matches no handle",
            h != 0, [issued(slot)])
    g.prove("handles of two different slots never match, whatever the generations and key",
            make(slot, gen, k0, k1) != make(slot2, n, k0, k1),
            [issued(slot), issued(slot2), slot != slot2])
    # After `frees` frees the slot's generation is gen + frees * BUMP.
    later = gen + n * BUMP
    nowrap = [z3.BVMulNoOverflow(n, bv(BUMP), False), z3.BVAddNoOverflow(gen, n * BUMP, False)]
    g.prove(f"a freed slot's old handle never validates again before 2^{GEN_BITS} more frees",
            make(slot, gen, k0, k1) != make(slot, later, k0, k1),
            [issued(slot), z3.UGE(n, 1), z3.ULT(n, 1 << GEN_BITS)] + nowrap)
    # The parity bit is a function of the rest, so two handles are equal
    # exactly when the words under it are: the wrap is argued on those.
    w2 = z3.BitVec("word2", 64)
    g.prove("the parity bit hides no difference: words under it that differ give handles that differ",
            with_parity(w) != with_parity(w2), [w & top == 0, w2 & top == 0, w != w2])
    ck = lambda gg: check_inner(slot, gg, k0, k1)
    g.prove(f"after a wrap (a multiple of 2^{GEN_BITS} frees) the handles differ only in the check bits",
            (fields(slot, gen, ck(gen)) == fields(slot, later, ck(later))) ==
            (check_inner(slot, gen, k0, k1) & CHECK_MASK == check_inner(slot, later, k0, k1) & CHECK_MASK),
            [issued(slot), z3.UGE(n, 1), n & GEN_MASK == 0] + nowrap)
    # The check bits are the low 20 bits of a keyed bijection of the full
    # generation: two generations never get the same 64 bits under them,
    # so a wrapped handle is accepted only if 20 of those bits collide
    # (probability 2^-20 if mix64 under a secret key behaves as a random
    # permutation: that is assumed, not proved). The bijection is proved
    # step by step, since a composition of injective steps is injective.
    inner = lambda gg: mix64(k0 ^ z3.ZeroExt(32, slot)) ^ (bv(0) if mutant == "check-ignores-generation" else gg) ^ k1
    g.prove("after a wrap, the outer mix64 gets different inputs",
            inner(gen) != inner(later), [issued(slot), z3.UGE(n, 1), n & GEN_MASK == 0] + nowrap)
    x = z3.BitVec("x", 64)
    for sh in (30, 27, 31):  # 2 * sh < 64 <= 3 * sh
        y = x ^ z3.LShR(x, sh)
        g.prove(f"mix64's step x ^= x >> {sh} is injective: y ^ (y >> {sh}) ^ (y >> {2 * sh}) undoes it",
                y ^ z3.LShR(y, sh) ^ z3.LShR(y, 2 * sh) == x)
    for m in (M1, M2):
        g.prove(f"mix64's step x *= {m:#x} is injective: its inverse mod 2^64 undoes it",
                (x * m) * pow(m, -1, 1 << 64) == x)
    g.finish()
