/*
** tests/unit/lib/rng.h -- the deterministic random numbers of the unit
** tests: xorshift64* on an explicit state, so a run is a function of its
** seed and a failure reproduces from the seed it prints.
**
** Test code only. Never seed from the clock where a test must replay; a
** test that wants variety takes a seed argument and prints it.
*/
#ifndef RL_TEST_RNG_H
#define RL_TEST_RNG_H

#include <stdint.h>

struct rl_rng {
    uint64_t s; /* never 0 */
};

/* Any seed, 0 included: splitmix64 spreads it to a nonzero state. */
static inline void rl_rng_seed(struct rl_rng *r, uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    r->s = z ? z : 0x2545f4914f6cdd1dull;
}

/* Next 32 random bits (xorshift64*, the high half of the product). */
static inline uint32_t rl_rng_u32(struct rl_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (uint32_t)((r->s * 2685821657736338717ull) >> 32);
}

/* Uniform enough in [0, n); 0 if n is 0. */
static inline uint32_t rl_rng_below(struct rl_rng *r, uint32_t n)
{
    return n ? rl_rng_u32(r) % n : 0;
}

/* 1 with probability pct/100. */
static inline int rl_rng_pct(struct rl_rng *r, unsigned pct)
{
    return rl_rng_below(r, 100) < pct;
}

#endif /* RL_TEST_RNG_H */
