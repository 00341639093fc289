/*
** tests/unit/lib/seeds.h -- writes one file of a fuzzer's seed corpus
** (the `--write-seeds DIR` mode of test_txn and test_doormsg, which the
** tests/fuzz/test_fuzz_*.sh scripts run through run_fuzz.sh --write).
**
** Header-only, test code only.
*/
#ifndef RL_TEST_SEEDS_H
#define RL_TEST_SEEDS_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* dir/name holds the n bytes at p: 0, or 1 with the cause on stderr. */
static int rl_seed_write(const char *dir, const char *name, const void *p,
                         size_t n) __attribute__((unused));
static int rl_seed_write(const char *dir, const char *name, const void *p,
                         size_t n)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    if (fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "%s: short write\n", path);
        fclose(f);
        return 1;
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

#endif
