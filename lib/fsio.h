/*
** lib/fsio.h -- small file and time helpers used across raftlite: a write
** that finishes (short writes and EINTR), and a sleep that is not cut
** short by a signal.
**
** The ground floor (lib/): libc only. Never for a descriptor of a
** database or -shm file that SQLite holds locks on: closing such a
** descriptor drops the process's POSIX locks (these helpers never close).
*/
#ifndef RL_FSIO_H
#define RL_FSIO_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* Writes all n bytes of buf to fd: 0, or -1 with errno set (a write that
** wrote nothing counts as an error, so a full disk cannot loop). */
static inline int rl_write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sleeps ms milliseconds (the whole time, across signals). */
static inline void rl_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#endif
