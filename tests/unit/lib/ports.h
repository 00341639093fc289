/*
** tests/unit/lib/ports.h -- free TCP ports on 127.0.0.1 for tests and
** benchmarks that run Raft nodes in one process (test_node, test_transport,
** bench/bench_node.c).
**
** Ports come from 20000..31999, or from the range RL_PORTS ("LO-HI") that
** tests/run.py gives each test running beside another (so two never pick
** the same port): below Linux's ephemeral range (tests use ports < 32768),
** so no outgoing connection takes one between the check and the bind that
** follows. Test and benchmark code only.
*/
#ifndef RL_TEST_PORTS_H
#define RL_TEST_PORTS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* 1 if a socket can bind 127.0.0.1:port now. */
static inline int rl_test_port_free(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

/* The range ports are drawn from: RL_PORTS when it is a valid range below
** 32768, else 20000..31999. */
static inline void rl_test_port_range(int *lo, int *hi)
{
    const char *env = getenv("RL_PORTS");
    int a, b;
    *lo = 20000;
    *hi = 31999;
    if (env && sscanf(env, "%d-%d", &a, &b) == 2 && a >= 1024 && a < b &&
        b < 32768) {
        *lo = a;
        *hi = b;
    }
}

/* Fill ports[0..n) with distinct free ports, none equal to avoid (0: no
** port to avoid), drawn with rand(). 0, or -1 after 1000 tries for one. */
static inline int rl_test_pick_ports(int *ports, int n, int avoid)
{
    int lo, hi;
    rl_test_port_range(&lo, &hi);
    for (int i = 0; i < n; i++) {
        for (int tries = 0;; tries++) {
            if (tries > 1000)
                return -1;
            int p = lo + rand() % (hi - lo + 1);
            int dup = p == avoid;
            for (int j = 0; j < i; j++)
                dup |= ports[j] == p;
            if (!dup && rl_test_port_free(p)) {
                ports[i] = p;
                break;
            }
        }
    }
    return 0;
}

#endif /* RL_TEST_PORTS_H */
