/*
** lib/addr.h -- checks of the addresses and node ids a user gives
** (raftd flags, the raft_bootstrap/raft_join arguments) before anything
** starts with them.
**
** A Raft address is bound and dialled by libraft's raft_uv_tcp, which
** takes numeric IPv4 only: a host name there fails late with a message
** about the address being in use. A gRPC address may name a host (the
** gRPC core resolves it). Both need a port 1..65535. This module never
** binds; only rl_addr_reachable connects.
*/
#ifndef RL_ADDR_H
#define RL_ADDR_H

#include <stddef.h>

enum rl_addr_kind {
    RL_ADDR_RAFT, /* IPv4:PORT */
    RL_ADDR_GRPC  /* HOST:PORT, [IPv6]:PORT, or :PORT (all interfaces) */
};

/* 0 if addr is acceptable as kind; otherwise -1 with err saying what is
** wrong with it and what to write instead (what: how the caller names
** the address to the user, e.g. "-raft" or "raft address"). A Raft
** address given as a host name is refused with the numeric address it
** resolves to as the suggestion. */
int rl_addr_check(const char *addr, enum rl_addr_kind kind, const char *what,
                  char *err, size_t errlen);

/* 1 if the host part of addr (HOST:PORT) is a loopback address:
** 127.0.0.0/8, ::1 ([::1]) or "localhost". ":PORT" (every interface),
** other names and other addresses are not. */
int rl_addr_is_loopback(const char *addr);

/* Safe by default (issue 16): binding addr (what: "-grpc", "raft address"
** ...) is refused unless it is loopback, the node uses TLS, or the
** operator said the network is trusted (insecure, spelled insecure_flag
** in the message, e.g. "-insecure"). 0 or -1 with err. */
int rl_addr_exposed_check(const char *addr, const char *what, int tls,
                          int insecure, const char *insecure_flag, char *err,
                          size_t errlen);

/* Whether a TCP connection to addr (IPv4:PORT) opens within ms: 0, or -1
** with why. The connection is closed at once, before any byte (the Raft
** listener drops it). The leader asks it of a joining node's Raft
** address before it adds the node. */
int rl_addr_reachable(const char *addr, int ms, char *why, size_t whylen);

/* 0 if id can name a node: 1..max_len bytes without control characters
** or '/', and not "." or ".." (ids end up in paths, such as raftd's
** DATA/ID, and in logs and the identity file's lines); otherwise -1 with
** err saying why (what: how the caller names it, e.g. "-id"). */
int rl_node_id_check(const char *id, size_t max_len, const char *what,
                     char *err, size_t errlen);

#endif
