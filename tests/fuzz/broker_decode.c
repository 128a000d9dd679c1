/*
 * broker_decode.c: a libFuzzer target for the broker's message decoder
 * (src/backend/broker/proto.c), which gmsd runs on every packet a client
 * sends. The first input byte gives the descriptor count and direction,
 * the rest is the packet. A packet the decoder accepts must re-encode to
 * the same bytes (nothing read past it, nothing made up), and its strings
 * must end within their fields; ASan and UBSan watch every read.
 * tests/fuzz/broker_seeds holds one packet of each type (a SHARE with
 * grants, an ACQUIRE with a user, a HELLO resuming a session, a TRANSFER
 * and its answer ...), so that the fuzzer starts inside every layout.
 */
#include "backend/broker/proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned nfds = data[0] & 3;
    int from_broker = data[0] >> 7;
    /* A copy of exactly the packet's size, so ASan sees any over-read. */
    size_t n = size - 1;
    uint8_t *pkt = malloc(n ? n : 1);
    if (!pkt)
        return 0;
    memcpy(pkt, data + 1, n);
    gms_broker_msg m;
    int bad = gms__broker_decode(pkt, n, nfds, from_broker, &m);
    if (!bad) {
        uint8_t again[GMS_BROKER_MSG_MAX];
        size_t k = gms__broker_encode(&m, again);
        if (k != n || memcmp(again, pkt, n) != 0) {
            /* An error's text may hold a NUL, which ends it in the message. */
            int error_nul = m.type == GMS_BROKER_ERROR &&
                            memchr(pkt + GMS_BROKER_HEADER + 8, 0, n - GMS_BROKER_HEADER - 8);
            if (!error_nul) {
                fprintf(stderr, "broker_decode: accepted %zu bytes that re-encode differently\n", n);
                __builtin_trap();
            }
        }
        if (strlen(m.tenant) >= GMS_BROKER_TENANT_MAX || strlen(m.text) > GMS_BROKER_TEXT_MAX ||
            !memchr(m.user, 0, GMS_BROKER_NAME_MAX) ||
            m.ngrants > GMS_BROKER_GRANTS_MAX)
            __builtin_trap();
        for (uint32_t i = 0; i < m.ngrants; i++)
            if (!memchr(m.grants[i].tenant, 0, GMS_BROKER_NAME_MAX) ||
                !memchr(m.grants[i].user, 0, GMS_BROKER_NAME_MAX))
                __builtin_trap();
    } else if (!gms__broker_bad_name(bad)[0]) {
        __builtin_trap();
    }
    free(pkt);
    return 0;
}
