/*
** raftd/node/tls_int.h -- the internals the two files of the Raft
** transport's TLS half share: tls_conn.c (the connection threads:
** connect or accept, handshake, peer check, pump) and tls_transport.c
** (the loop side and raft's raft_uv_transport methods). See
** tls_transport.c for how a connection travels and what must never
** happen.
**
** Private to those two files: nothing else may include it.
*/
#ifndef RL_TLS_INT_H
#define RL_TLS_INT_H

#include "tls_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bytes.h"
#include "certid.h"

#define PREAMBLE_PROTOCOL 1
#define ADDRESS_MAX       1024  /* longest preamble address accepted */
#define HANDSHAKE_MS      5000  /* TCP connect + TLS handshake + preamble */
#define MAX_CONNS         256   /* threads; more connections are refused */
#define LOG_QUEUE         16    /* refusals waiting for the loop */
#define LOG_MEMORY        32    /* recent refusals remembered for dedup */
#define LOG_REPEAT_MS     60000 /* the same refusal is logged once a minute */
#define PUMP_BUF          65536

enum { C_HANDSHAKE, C_READY, C_FAILED };

struct conn {
    struct rl_tls *tls;
    struct conn *next;  /* tls->conns (mu) */
    struct conn *later; /* the loop's private lists in async_cb */
    pthread_t th;
    int dial;   /* 1 dialled by us, 0 accepted */
    int fd;     /* TCP socket (the thread's) */
    int theirs; /* raft's socketpair end, until the loop takes it */
    SSL *ssl;
    raft_id id;                      /* dialled, or claimed in the preamble */
    char address[ADDRESS_MAX];       /* dialled, or claimed in the preamble */
    char peer[INET6_ADDRSTRLEN + 8]; /* remote IP, for logs */
    struct raft_uv_connect *req;     /* dial: raft's request */
    int state;                       /* C_* (mu) */
    int delivered;                   /* loop has acted on state (loop only) */
    int exited;                      /* thread is done (mu) */
    int stopped; /* the thread's wait saw the transport close (thread) */
};

struct rl_tls {
    struct rl_transport *t;
    uv_loop_t *loop;
    SSL_CTX *ctx;
    uint64_t (*raft_id_of)(const char *node_id);
    raft_id id;
    char address[ADDRESS_MAX];
    int stopfd; /* eventfd: readable once the transport closes */
    uv_async_t async;
    uv_poll_t lpoll;
    int lfd;
    int async_open, lpoll_open; /* handles initialized and not yet closed */
    int closing;                /* tr_close (or rl_tls_free) started */
    int free_when_closed;       /* rl_tls_free ran before handles closed */
    raft_uv_transport_close_cb close_cb;
    pthread_mutex_t mu;
    struct conn *conns;        /* live threads (mu) */
    unsigned nconns;           /* (mu) */
    char logq[LOG_QUEUE][512]; /* refusals for the loop to log (mu) */
    unsigned nlogq;            /* (mu) */
    struct {
        uint64_t hash, at;
    } said[LOG_MEMORY]; /* loop only */
};

/* The functions tls_conn.c offers tls_transport.c (hidden from the
** dynamic symbol table of raftlite.so). */
#pragma GCC visibility push(hidden)

/* CLOCK_MONOTONIC in ms. */
uint64_t tls_now_ms(void);
/* Any thread: queue a refusal for the loop to log (dropped if full). */
void tls_queue_log(struct rl_tls *tls, const char *msg);
/* The first OpenSSL error of this thread's queue (in buf), or `dflt`. */
const char *tls_ssl_reason(char *buf, size_t n, const char *dflt);
/* "host:port" or "[v6]:port" into host and port; -1 if malformed. */
int tls_split_addr(const char *addr, char *host, size_t hn, char *port,
                   size_t pn);
/* Loop thread: a conn (dial 1: to c->address; 0: accepted fd), counted
** in tls->conns; NULL and why if refused (too many, out of memory). */
struct conn *tls_conn_start(struct rl_tls *tls, int dial, int fd, char *why,
                            size_t n);
/* Loop thread: start the conn's thread; -1 and why if it cannot (the
** conn is then unlinked and the caller frees it). */
int tls_conn_run(struct conn *c, char *why, size_t n);

#pragma GCC visibility pop

#endif /* RL_TLS_INT_H */
