/* proofs/tlsf-wp/atomic_shim.h, included before anything else when
 * Frama-C parses src/core/tlsf.c: Frama-C's <stdatomic.h> cannot load an
 * _Atomic pointer (pool.h's gms__slot_owned, which tlsf.c never calls).
 * A plain load stands in for it; nothing proved here uses it. */
#include <stdatomic.h>
#undef atomic_load_explicit
#define atomic_load_explicit(p, order) (*(p))
