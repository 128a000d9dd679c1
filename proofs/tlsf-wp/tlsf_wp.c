/*
 * proofs/tlsf-wp/tlsf_wp.c: ACSL contracts for the TLSF lists of
 * src/core/tlsf.c, proved by Frama-C WP on the real functions: this file
 * declares the contracts, then #includes src/core/tlsf.c itself, so the
 * bodies proved are the ones compiled into libgms (nothing is copied).
 *
 * Proved by WP (every goal Valid): mapping returns a class inside the
 * tables; insert and remove set and clear exactly the bits of the node's
 * list (the list's bit when it empties, the first level's when its whole
 * second-level map is empty), keep the list doubly linked where they touch
 * it (the node, its neighbours, the head) and change nothing else
 * (assigns); find returns NULL or a list head; no run-time error in fls64,
 * mapping, insert, remove and find (-wp-rte: shifts, indices, pointers).
 *
 * Proved by Z3 (proofs/tlsf-wp/bit_lemmas.py): that those bit updates keep
 * the bitmap invariant (first-level bit i set iff second-level map i is
 * non-zero; second-level bit (i, j) set iff list (i, j) is non-empty), and
 * every fact admitted below (the builtins' axioms, the `admit lemma`s):
 * bit-range facts WP's provers cannot do, used here as lemmas.
 */
#include "core/pool.h"

/*@ predicate bit(integer x, integer i) = (x & (1 << i)) != 0; */

/*@ axiomatic BUILTINS {
  @   // The counts of leading and trailing zeros of the builtins.
  @   logic integer clz64(integer x);
  @   logic integer ctz64(integer x);
  @   // BL1: the highest set bit of a non-zero 64-bit word.
  @   axiom clz_range: \forall integer x; 0 < x < 18446744073709551616 ==> 0 <= clz64(x) <= 63;
  @   // BL2: a size of at least 8 KiB has its highest bit at 13 or above, and
  @   // its six top bits, from there, read 32..63: sl = that ^ 32 is 0..31.
  @   axiom clz_class: \forall uint64_t x; 8192 <= x ==>
  @       clz64(x) <= 50 && (unsigned)((unsigned)(x >> (58 - clz64(x))) ^ 32) < 32;
  @   // BL3: the lowest set bit of a non-zero word is a set bit.
  @   axiom ctz_bit: \forall integer x; 0 < x < 18446744073709551616 ==>
  @       0 <= ctz64(x) <= 63 && bit(x, ctz64(x));
  @   // BL3': the lowest set bit of a masked word below 2^52 is below 52.
  @   axiom ctz_below52: \forall uint64_t x, m; x < 4503599627370496 && (x & m) != 0 ==>
  @       ctz64(x & m) < 52;
  @ }
  @*/

/*@ // BL4: the linear classes below 8 KiB: size >> 8 is 0..31.
  @ admit lemma linear_class: \forall uint64_t x; x < 8192 ==> (unsigned)(x >> 8) < 32;
  @ // BL5: the bits of x | (1 << k) and of x & ~(1 << k), for 32- and 64-bit words.
  @ // (Written in the form WP gives the code's `x |= 1u << k`, `x &= ~(1u << k)`.)
  @ admit lemma bit_or64: \forall uint64_t x; \forall integer k, i; 0 <= k < 64 && 0 <= i < 64 ==>
  @     (bit((uint64_t)(1 << k) | x, i) <==> (bit(x, i) || i == k));
  @ admit lemma bit_or32: \forall uint32_t x; \forall integer k, i; 0 <= k < 32 && 0 <= i < 64 ==>
  @     (bit((uint32_t)(1 << k) | x, i) <==> (bit(x, i) || i == k));
  @ admit lemma bit_andnot64: \forall uint64_t x; \forall integer k, i; 0 <= k < 64 && 0 <= i < 64 ==>
  @     (bit((uint64_t)~(1 << k) & x, i) <==> (bit(x, i) && i != k));
  @ admit lemma bit_andnot32: \forall uint32_t x; \forall integer k, i; 0 <= k < 32 && 0 <= i < 64 ==>
  @     (bit((uint32_t)~(1 << k) & x, i) <==> (bit(x, i) && i != k));
  @ // BL6: a 32-bit word is zero iff none of its 32 bits is set.
  @ admit lemma zero32: \forall uint32_t x; x == 0 <==> (\forall integer i; 0 <= i < 32 ==> !bit(x, i));
  @ // BL7: the bits of x & m are bits of x; a word below 2^n has no bit at or above n.
  @ admit lemma bit_and: \forall uint64_t x, m; \forall integer i; 0 <= i < 64 && bit(x & m, i) ==> bit(x, i);
  @ admit lemma bit_below52: \forall uint64_t x; \forall integer i; 0 <= i < 64 && x < 4503599627370496 && bit(x, i) ==> i < 52;
  @ admit lemma bit_below32: \forall uint32_t x; \forall integer i; 0 <= i < 64 && bit(x, i) ==> i < 32;
  @ // BL8: setting a bit below 52 keeps a word below 2^52; clearing one keeps it below too.
  @ admit lemma or_below52: \forall uint64_t x; \forall integer k; x < 4503599627370496 && 0 <= k < 52 ==>
  @     ((uint64_t)(1 << k) | x) < 4503599627370496;
  @ admit lemma andnot_below52: \forall uint64_t x; \forall integer k; x < 4503599627370496 && 0 <= k < 64 ==>
  @     ((uint64_t)~(1 << k) & x) < 4503599627370496;
  @*/

/*@ logic integer tlsf_fl(uint64_t size) =
  @   size < 8192 ? 0 : (unsigned)((unsigned)(63 - clz64(size)) - 13 + 1);
  @ logic integer tlsf_sl(uint64_t size) =
  @   size < 8192 ? (unsigned)(size >> 8)
  @               : (unsigned)((unsigned)(size >> (unsigned)((unsigned)(63 - clz64(size)) - 5)) ^ 32);
  @*/

/* The bitmap invariant, as macros (frama-c -pp-annot) so that WP sees
 * the formulas themselves rather than a predicate it must unfold. */
#define FL_OK(t) \
    ((t)->fl_bitmap < 4503599627370496 && \
     (\forall integer i; 0 <= i < 52 ==> (bit((t)->fl_bitmap, i) <==> (t)->sl_bitmap[i] != 0)))
#define SL_OK(t) \
    (\forall integer i, j; 0 <= i < 52 && 0 <= j < 32 ==> \
        (bit((t)->sl_bitmap[i], j) <==> (t)->heads[i][j] != \null))
#define BITMAPS_OK(t) (FL_OK(t) && SL_OK(t))
/* The list (FL, SL) of block b's size. */
#define FL(b) tlsf_fl((b)->size)
#define SL(b) tlsf_sl((b)->size)
#define HEAD(t, b) (t)->heads[FL(b)][SL(b)]

/*@ requires x != 0;
  @ assigns \nothing;
  @ ensures \result == clz64(x);
  @*/
int __builtin_clzll(unsigned long long x);

/*@ requires x != 0;
  @ assigns \nothing;
  @ ensures \result == ctz64(x);
  @*/
int __builtin_ctzll(unsigned long long x);

/*@ requires x != 0;
  @ assigns \nothing;
  @ ensures \result == ctz64(x) && 0 <= \result < 32;
  @*/
int __builtin_ctz(unsigned int x);

/*@ requires x != 0;
  @ assigns \nothing;
  @ ensures \result == 63 - clz64(x);
  @*/
static inline unsigned fls64(uint64_t x);

/*@ requires \valid(fl) && \valid(sl) && \separated(fl, sl);
  @ assigns *fl, *sl;
  @ ensures *fl == tlsf_fl(size) && *sl == tlsf_sl(size);
  @ ensures *fl < 52 && *sl < 32;
  @*/
void gms__tlsf_mapping(uint64_t size, unsigned *fl, unsigned *sl);

/*@ requires \valid(t) && \valid(b) && \separated(t, b);
  @ requires HEAD(t, b) == \null ||
  @     (\valid(HEAD(t, b)) && \separated(HEAD(t, b), b) && \separated(HEAD(t, b), t) &&
  @      HEAD(t, b)->u.free.prev == \null);
  @ assigns t->fl_bitmap, t->sl_bitmap[FL(b)], HEAD(t, b), b->u.free.prev, b->u.free.next,
  @     HEAD(t, b)->u.free.prev;
  @ ensures t->fl_bitmap == ((uint64_t)(1 << FL(b)) | \old(t->fl_bitmap));
  @ ensures t->sl_bitmap[FL(b)] == ((uint32_t)(1 << SL(b)) | \old(t->sl_bitmap[FL(b)]));
  @ ensures HEAD(t, b) == b;
  @ ensures b->u.free.prev == \null && b->u.free.next == \old(HEAD(t, b));
  @ ensures \old(HEAD(t, b)) != \null ==> \old(HEAD(t, b))->u.free.prev == b;
  @*/
void gms__tlsf_insert(gms_tlsf *t, gms_block *b);

/*@ requires \valid(t) && \valid(b) && \separated(t, b);
  @ requires \let p = b->u.free.prev; \let n = b->u.free.next;
  @     (p == \null ==> HEAD(t, b) == b) &&
  @     (p != \null ==> \valid(p) && p->u.free.next == b && \separated(p, t) && \separated(p, b) &&
  @                    HEAD(t, b) != \null && HEAD(t, b) != b) &&
  @     (n != \null ==> \valid(n) && n->u.free.prev == b && \separated(n, t) && \separated(n, b)) &&
  @     (p != \null && n != \null ==> \separated(p, n));
  @ assigns t->fl_bitmap, t->sl_bitmap[FL(b)], HEAD(t, b),
  @     b->u.free.prev->u.free.next, b->u.free.next->u.free.prev;
  @ ensures \let p = \old(b->u.free.prev); \let n = \old(b->u.free.next);
  @     (p != \null ==> p->u.free.next == n && HEAD(t, b) == \old(HEAD(t, b))) &&
  @     (p == \null ==> HEAD(t, b) == n) &&
  @     (n != \null ==> n->u.free.prev == p);
  @ // The bits: the list's bit goes when the list empties, the first
  @ // level's bit when its whole second-level map is empty.
  @ ensures HEAD(t, b) != \null ==>
  @     t->sl_bitmap[FL(b)] == \old(t->sl_bitmap[FL(b)]) && t->fl_bitmap == \old(t->fl_bitmap);
  @ ensures HEAD(t, b) == \null ==>
  @     t->sl_bitmap[FL(b)] == ((uint32_t)~(1 << SL(b)) & \old(t->sl_bitmap[FL(b)]));
  @ ensures HEAD(t, b) == \null && t->sl_bitmap[FL(b)] != 0 ==> t->fl_bitmap == \old(t->fl_bitmap);
  @ ensures HEAD(t, b) == \null && t->sl_bitmap[FL(b)] == 0 ==>
  @     t->fl_bitmap == ((uint64_t)~(1 << FL(b)) & \old(t->fl_bitmap));
  @*/
void gms__tlsf_remove(gms_tlsf *t, gms_block *b);

/*@ requires \valid_read(t) && BITMAPS_OK(t);
  @ requires \forall integer i, j; 0 <= i < 52 && 0 <= j < 32 ==>
  @     t->heads[i][j] == \null || \valid_read(t->heads[i][j]);
  @ assigns \nothing;
  @ ensures \result == \null ||
  @     (\exists integer i, j; 0 <= i < 52 && 0 <= j < 32 && \result == t->heads[i][j]);
  @*/
gms_block *gms__tlsf_find(gms_tlsf *t, uint64_t size);

#include "core/tlsf.c"
