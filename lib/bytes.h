/*
** lib/bytes.h -- byte order: integers read from and written to byte
** buffers in big- or little-endian order, whatever the host's order.
**
** The ground floor (lib/): no dependencies, nothing of SQLite or Raft.
** Every on-disk and on-wire format of raftlite reads its integers through
** these. They never check bounds: the caller owns the buffer's size.
*/
#ifndef RL_BYTES_H
#define RL_BYTES_H

#include <stdint.h>

static inline uint32_t rl_get_be16(const uint8_t *p)
{
    return ((uint32_t)p[0] << 8) | p[1];
}

static inline uint32_t rl_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void rl_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t rl_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline void rl_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint64_t rl_get_le64(const uint8_t *p)
{
    return (uint64_t)rl_get_le32(p) | ((uint64_t)rl_get_le32(p + 4) << 32);
}

static inline void rl_put_le64(uint8_t *p, uint64_t v)
{
    rl_put_le32(p, (uint32_t)v);
    rl_put_le32(p + 4, (uint32_t)(v >> 32));
}

#endif
