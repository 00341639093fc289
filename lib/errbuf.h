/*
** lib/errbuf.h -- an error message formatted into the caller's buffer, the
** one convention of the modules that answer (err, errlen).
**
** It must never write past errlen; a message cut short ends in "..." so
** that a reader knows it was cut. A NULL or empty buffer is ignored.
*/
#ifndef RL_ERRBUF_H
#define RL_ERRBUF_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static inline void rl_vseterr(char *err, size_t errlen, const char *fmt,
                              va_list ap)
{
    int n;
    if (!err || errlen == 0)
        return;
    n = vsnprintf(err, errlen, fmt, ap);
    if (n >= (int)errlen && errlen > 4)
        memcpy(err + errlen - 4, "...", 4);
}

static inline void rl_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void rl_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rl_vseterr(err, errlen, fmt, ap);
    va_end(ap);
}

/* rl_seterr, answering rc: `return rl_fail(err, errlen, CODE, ...);`. */
static inline int rl_fail(char *err, size_t errlen, int rc, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static inline int rl_fail(char *err, size_t errlen, int rc, const char *fmt,
                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    rl_vseterr(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

#endif
