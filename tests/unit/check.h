/*
** tests/unit/check.h -- the CHECK macro of the unit tests that count
** failures and report them once at the end (check_done). A test includes
** it once, from its own .c file: it defines the static counter.
*/
#ifndef RL_UNIT_CHECK_H
#define RL_UNIT_CHECK_H

#include <stdio.h>

static int failures;
#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #c);                                                       \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* The exit status of test name: 1 with the failure count, else 0. */
static inline int check_done(const char *name)
{
    if (failures) {
        fprintf(stderr, "%s: %d failures\n", name, failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#endif
