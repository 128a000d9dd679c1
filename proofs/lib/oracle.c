/*
 * proofs/lib/oracle.c: the real src/core/tlsf.c and src/core/handle.c,
 * compiled and linked as they are, answering queries on stdin so that the
 * Z3 models of proofs/tlsf-arith and proofs/handle can be checked against
 * the C on many inputs (the model is what is proved; this ties it to the
 * code). One query a line, one answer a line:
 *   map SIZE            -> "FL SL" of gms__tlsf_mapping
 *   find BLOCK SIZE     -> 1 if gms__tlsf_find(SIZE) returns the one free
 *                          block, of size BLOCK, else 0
 *   handle SLOT GEN K0 K1 -> gms__handle_make under key (K0, K1)
 */
#include "core/pool.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* handle.c's error paths, never reached by these queries. */
int gms__fail(int code, const char *fmt, ...)
{
    (void)fmt;
    return code;
}

void *gms__alloc_meta(gms_runtime *rt, size_t size)
{
    (void)rt;
    return malloc(size);
}

static gms_runtime rt;
static gms_tlsf tlsf;

int main(void)
{
    char op[16];
    while (scanf("%15s", op) == 1) {
        if (strcmp(op, "map") == 0) {
            uint64_t size;
            unsigned fl, sl;
            if (scanf("%" SCNu64, &size) != 1)
                return 2;
            gms__tlsf_mapping(size, &fl, &sl);
            printf("%u %u\n", fl, sl);
        } else if (strcmp(op, "find") == 0) {
            uint64_t block, size;
            if (scanf("%" SCNu64 " %" SCNu64, &block, &size) != 2)
                return 2;
            gms_block b = {.size = block};
            memset(&tlsf, 0, sizeof tlsf);
            gms__tlsf_insert(&tlsf, &b);
            printf("%d\n", gms__tlsf_find(&tlsf, size) == &b);
            gms__tlsf_remove(&tlsf, &b);
            if (tlsf.fl_bitmap) /* remove must leave the bitmaps empty */
                return 3;
        } else if (strcmp(op, "handle") == 0) {
            uint32_t slot;
            uint64_t gen;
            if (scanf("%" SCNu32 " %" SCNu64 " %" SCNu64 " %" SCNu64, &slot, &gen, &rt.handles.key[0],
                      &rt.handles.key[1]) != 4)
                return 2;
            printf("%" PRIu64 "\n", gms__handle_make(&rt, slot, gen));
        } else {
            return 2;
        }
    }
    return 0;
}
