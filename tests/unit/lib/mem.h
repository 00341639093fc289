/*
** tests/unit/lib/mem.h -- memory for unit tests: an allocation that cannot
** fail (it ends the test instead), shared so no test writes its own.
**
** Test code only; nothing under raftd/, vfs/ or ext/ may include it.
*/
#ifndef RL_TEST_MEM_H
#define RL_TEST_MEM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* n bytes (at least one), or the test exits 1. */
static inline void *rl_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* A malloc'd copy of n bytes of src, exactly n long (ASan sees overreads). */
static inline uint8_t *rl_xmemdup(const void *src, size_t n)
{
    uint8_t *p = rl_xmalloc(n);
    memcpy(p, src, n);
    return p;
}

#endif
