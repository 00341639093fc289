/*
** lib/timing.c -- see timing.h: per-commit timing points, on only with
** RAFTLITE_TIMING=DIR. Never fails a commit: errors drop the line.
*/
#include "timing.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int rl_timing_on;

static const char *timing_dir;
static int timing_fd = -1;
static pthread_mutex_t timing_mu = PTHREAD_MUTEX_INITIALIZER;

/* This thread's commit in progress (t[RL_T_CAPTURE] != 0 while open). */
static _Thread_local uint64_t cur[RL_T_N];

__attribute__((constructor)) static void timing_init(void)
{
    const char *d = getenv("RAFTLITE_TIMING");
    if (d && *d) {
        timing_dir = d;
        rl_timing_on = 1;
    }
}

uint64_t rl_timing_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rl_timing_begin(void)
{
    memset(cur, 0, sizeof cur);
    cur[RL_T_CAPTURE] = rl_timing_now();
}

void rl_timing_mark(int point)
{
    if (point > RL_T_CAPTURE && point < RL_T_N && cur[RL_T_CAPTURE])
        cur[point] = rl_timing_now();
}

void rl_timing_set(int point, uint64_t ns)
{
    if (point > RL_T_CAPTURE && point < RL_T_N && cur[RL_T_CAPTURE])
        cur[point] = ns;
}

void rl_timing_end(void)
{
    char line[RL_T_N * 24 + 2];
    int len = 0;
    if (!cur[RL_T_CAPTURE])
        return;
    cur[RL_T_DONE] = rl_timing_now();
    for (int i = 1; i < RL_T_N; i++) {
        uint64_t d =
            cur[i] >= cur[RL_T_CAPTURE] ? cur[i] - cur[RL_T_CAPTURE] : 0;
        len += snprintf(line + len, sizeof line - (size_t)len, "%s%llu",
                        i > 1 ? " " : "", (unsigned long long)d);
    }
    line[len++] = '\n';
    cur[RL_T_CAPTURE] = 0;
    pthread_mutex_lock(&timing_mu);
    if (timing_fd < 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/commits-%d.txt", timing_dir,
                 (int)getpid());
        timing_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    }
    if (timing_fd >= 0 && write(timing_fd, line, (size_t)len) != len) {
        /* a lost line is a lost sample, nothing more */
    }
    pthread_mutex_unlock(&timing_mu);
}
