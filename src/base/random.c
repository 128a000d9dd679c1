/*
 * random.c: randomness for the per-runtime secrets (the handle secret, the
 * key of immutable shares' MACs).
 */
#include "base/base.h"

#include <errno.h>
#include <sys/random.h>

int gms__random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return gms__fail(GMS_E_BACKEND, "getrandom failed: errno %d", errno);
        }
        p += n;
        len -= (size_t)n;
    }
    return GMS_OK;
}
