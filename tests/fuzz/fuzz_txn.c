/*
** tests/fuzz/fuzz_txn.c -- libFuzzer target for the transaction-record
** decoder (vfs/txn.c).
**
** Each input is decoded twice: as is (exercising the framing and checksum
** checks), and with its checksum field recomputed, so that mutations reach
** the table and rl_txn_validate checks behind the checksum. Whatever decodes
** must satisfy the record invariants and re-encode to the identical bytes
** (the format has exactly one encoding per record). Any violation aborts,
** which libFuzzer reports as a crash; ASan/UBSan catch out-of-bounds reads.
** Built by vfs/module.mk as build/fuzz/fuzz_txn.
*/
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                             \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "fuzz_txn: %s:%d: %s\n", __FILE__, __LINE__, #c);  \
            abort();                                                           \
        }                                                                      \
    } while (0)

static void try_decode(const uint8_t *buf, size_t len)
{
    rl_txn t;
    char err[256] = "";
    int rc = rl_txn_decode(buf, len, &t, err, sizeof(err));

    if (rc != RL_TXN_OK) {
        /* Every rejection explains itself and leaves nothing allocated. */
        REQUIRE(rc < 0);
        REQUIRE(err[0] != '\0');
        REQUIRE(t.pages == NULL && t.n_pages == 0);
        return;
    }
    REQUIRE(rl_txn_validate(&t, NULL, 0) == RL_TXN_OK);
    REQUIRE(t.owned == NULL);
    REQUIRE(rl_txn_encoded_size(&t) == len);
    {
        uint8_t *out = malloc(len);
        uint32_t i;
        uint64_t sum = 0;
        REQUIRE(out != NULL);
        REQUIRE(rl_txn_encode(&t, out, len) == RL_TXN_OK);
        REQUIRE(memcmp(out, buf, len) == 0);
        /* Zero copy: every page points inside the input. */
        for (i = 0; i < t.n_pages; i++) {
            REQUIRE(t.pages[i].data >= buf &&
                    t.pages[i].data + t.page_size <= buf + len);
            sum += t.pages[i].data[t.page_size - 1];
        }
        (void)sum;
        free(out);
    }
    rl_txn_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_decode(data, size);
    if (size >= RL_TXN_HDR_SIZE) {
        /* An exact-size heap copy keeps ASan's redzone right after it. */
        uint8_t *copy = malloc(size);
        uint32_t crc;
        REQUIRE(copy != NULL);
        memcpy(copy, data, size);
        crc = rl_txn_checksum(copy, size);
        copy[28] = (uint8_t)crc;
        copy[29] = (uint8_t)(crc >> 8);
        copy[30] = (uint8_t)(crc >> 16);
        copy[31] = (uint8_t)(crc >> 24);
        try_decode(copy, size);
        free(copy);
    }
    return 0;
}
