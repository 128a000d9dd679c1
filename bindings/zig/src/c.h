/* What the binding translates: the public API (gms.h, gms/access.h) and
 * the testing knobs (gms/testing.h, not a stable API: only gms.testing
 * uses it). */
#include <gms.h>
#include <gms/access.h>
#include <gms/testing.h>
