/*
** tests/unit/lib/entry_seal.h -- recompute the checksum of an encoded
** entry or manifest (raftd/node/entry.h) after a test damaged it on
** purpose, so that the decoder's other checks, not the checksum, are what
** must reject it. Shared by tests/unit/test_entry.c and
** tests/fuzz/fuzz_entry.c.
**
** Test code only: nothing under raftd/, vfs/ or ext/ may include it (a
** real reader must never re-seal what it was given).
*/
#ifndef RL_TEST_ENTRY_SEAL_H
#define RL_TEST_ENTRY_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "bytes.h"
#include "entry.h"

/* An entry of len bytes: header bytes 0..47 chained into the payload. */
static inline void rl_test_entry_reseal(uint8_t *b, size_t len)
{
    uint64_t h = rl_checksum64(0, b, 48);
    h = rl_checksum64(h, b + RL_ENTRY_HDR_SIZE, len - RL_ENTRY_HDR_SIZE);
    rl_put_le64(b + 48, h);
}

/* A manifest of len bytes: its last 8 bytes sum everything before. */
static inline void rl_test_manifest_reseal(uint8_t *p, size_t len)
{
    rl_put_le64(p + len - 8, rl_checksum64(0, p, len - 8));
}

#endif /* RL_TEST_ENTRY_SEAL_H */
