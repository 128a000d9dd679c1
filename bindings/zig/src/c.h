/* What the binding translates: the public API and the testing knobs
 * (gms/testing.h, not a stable API: only gms.testing uses it). */
#include <gms.h>
#include <gms/testing.h>
