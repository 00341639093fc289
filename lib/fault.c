/*
** lib/fault.c -- the fault-point facility of fault builds (see fault.h).
**
** Compiled into every build, but holds code only with -DRL_FAULTS: a
** release build must not contain the facility or any point name. Never
** does anything but count and abort: a point that is not armed is free of
** side effects.
*/
#include "fault.h"

#ifdef RL_FAULTS
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char armed[128]; /* the armed point's name; "" = none */
static long armed_at;   /* the pass that aborts (1 = the first) */
static long passes;     /* passes through the armed point so far */

/* Reads RAFTLITE_FAULT once per process: "name" or "name:N". */
static void fault_init(void)
{
    const char *v = getenv("RAFTLITE_FAULT");
    const char *colon;
    size_t n;
    armed_at = 1;
    if (!v || !*v)
        return;
    colon = strchr(v, ':');
    n = colon ? (size_t)(colon - v) : strlen(v);
    if (n == 0 || n >= sizeof armed) {
        fprintf(stderr,
                "raftlite: RAFTLITE_FAULT=%s: expected name[:N] "
                "with a name of 1..127 bytes; no point armed\n",
                v);
        return;
    }
    if (colon) {
        char *end;
        long k = strtol(colon + 1, &end, 10);
        if (*end || k < 1) {
            fprintf(stderr,
                    "raftlite: RAFTLITE_FAULT=%s: N must be a "
                    "positive integer; no point armed\n",
                    v);
            return;
        }
        armed_at = k;
    }
    memcpy(armed, v, n);
    armed[n] = 0;
}

void rl_fault_point(const char *name)
{
    char msg[200];
    long k;
    int len;
    pthread_once(&once, fault_init);
    if (!armed[0] || strcmp(name, armed) != 0)
        return;
    k = __atomic_add_fetch(&passes, 1, __ATOMIC_SEQ_CST);
    if (k != armed_at)
        return;
    /* write(2), not stdio: other threads may hold stderr's lock. */
    len = snprintf(msg, sizeof msg,
                   "raftlite: fault point %s reached (pass %ld): abort\n", name,
                   k);
    if (len > 0 && write(2, msg, (size_t)len) < 0)
        msg[0] = 0;
    abort();
}

int rl_fault_synced_on(void)
{
    const char *v = getenv("RAFTLITE_FAULT_SYNCED");
    return v && strcmp(v, "1") == 0;
}

void rl_fault_save(const char *db_path, const char *name, const void *buf,
                   size_t n)
{
    char dir[4096], tmp[4200], dst[4200];
    int fd;
    snprintf(dir, sizeof dir, "%s-raft/synced", db_path);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    (void)mkdir(dir, 0700);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    for (size_t off = 0; off < n;) {
        ssize_t k = write(fd, (const char *)buf + off, n - off);
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    close(fd); /* our own copy file: no SQLite lock on it */
    if (rename(tmp, dst) != 0)
        unlink(tmp);
}
#else
/* An empty translation unit is not ISO C. */
typedef int rl_fault_unused;
#endif
