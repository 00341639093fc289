/*
** tests/unit/lib/check.h -- the assertions of every unit test, in one place.
**
**   CHECK(cond)  or  CHECK(cond, "fmt", args...)
**       counts a check; if cond is false prints file, line, the condition
**       and the message, runs the test's cleanup (rl_check_cleanup, e.g.
**       stop nodes and remove scratch files) and exits 1.
**   EXPECT(cond) or  EXPECT(cond, "fmt", args...)
**       the same, but a failure is counted and the test goes on (decoder
**       tables, where one failure must not hide the next).
**   rl_check_report("test_x") at the end of main: prints the count and
**       returns the exit status (1 if an EXPECT failed).
**
** Header-only: each test program has its own counters. Test code only;
** nothing under raftd/, vfs/ or ext/ may include it.
*/
#ifndef RL_TEST_CHECK_H
#define RL_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int rl_checks __attribute__((unused));   /* checks evaluated */
static int rl_failures __attribute__((unused)); /* EXPECTs that failed */
/* Called once before a failing CHECK exits (may be NULL). */
static void (*rl_check_cleanup)(void) __attribute__((unused));

static void rl_check_fail(const char *file, int line, const char *cond,
                          int fatal, const char *fmt, ...)
    __attribute__((format(printf, 5, 6), unused));
static void rl_check_fail(const char *file, int line, const char *cond,
                          int fatal, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: check failed: %s:", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (!fatal) {
        rl_failures++;
        return;
    }
    void (*cleanup)(void) = rl_check_cleanup;
    rl_check_cleanup = NULL; /* a CHECK inside the cleanup must not loop */
    if (cleanup)
        cleanup();
    fflush(stdout);
    fflush(stderr);
    /* _exit: other threads (nodes, servers) may still run. */
    _exit(1);
}

/* The message is optional: " " __VA_ARGS__ is " " alone without one, so
** the format is never empty (-Wformat-zero-length). The condition's text
** is taken here, before its macros are expanded, so that a failure
** quotes the source as written. */
#define CHECK(c, ...)  RL_CHECK_AT(c, #c, 1, " " __VA_ARGS__)
#define EXPECT(c, ...) RL_CHECK_AT(c, #c, 0, " " __VA_ARGS__)

/* fatal: CHECK ends the test at the first failure, EXPECT counts it and
** goes on. */
#define RL_CHECK_AT(c, text, fatal, ...)                                       \
    do {                                                                       \
        rl_checks++;                                                           \
        if (!(c))                                                              \
            rl_check_fail(__FILE__, __LINE__, text, fatal, __VA_ARGS__);       \
    } while (0)

static int rl_check_report(const char *name) __attribute__((unused));
static int rl_check_report(const char *name)
{
    if (rl_failures) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, rl_failures,
                rl_checks);
        return 1;
    }
    printf("%s: %d checks passed\n", name, rl_checks);
    return 0;
}

#endif /* RL_TEST_CHECK_H */
