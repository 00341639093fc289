/*
** raftd/host/doormsg.h -- the messages of a host's local door: the Unix
** socket "<db>-raft/door" through which the client processes of this
** machine (other processes with the database open) hand their commits,
** write-lock hints and read points to the process that hosts the node
** (raftd/host/door.c serves it; client.c calls it).
**
** Every message is a 12-byte header, then its body:
**     magic "RLD1" (u32 LE), kind (u32 LE), body length (u32 LE)
**   HELLO   door -> client, first on every connection: status (u32)
**   COMMIT  base (u64), origin txn (u64), the encoded rl_txn (rest, >= 1)
**   HINT    timeout ms (u32): the leader's commit index and L, at once
**   READ    timeout ms (u32): a linearizable read point
**   ANSWER  door -> client: status (u32), index (u64), L (u64), text (rest)
** The origin node and process of a commit are not in it: the door takes
** them from itself and from the socket's peer credentials.
**
** Pure: no socket, no clock, no allocation, so that it is fuzzed
** (tests/fuzz/fuzz_door.c). It must never accept a message whose lengths
** disagree, a kind the receiver does not expect, a body over the limit the
** caller gives, or text with a NUL byte.
*/
#ifndef RL_DOORMSG_H
#define RL_DOORMSG_H

#include <stddef.h>
#include <stdint.h>

#define RL_DOOR_MAGIC 0x31444c52u /* "RLD1" as little-endian bytes */
#define RL_DOOR_HDR   12

enum {
    RL_DOOR_HELLO = 1,
    RL_DOOR_COMMIT = 2,
    RL_DOOR_HINT = 3,
    RL_DOOR_READ = 4,
    RL_DOOR_ANSWER = 5,
};

/* HELLO's status. */
enum {
    RL_DOOR_OK = 0,      /* ask away */
    RL_DOOR_FULL = 1,    /* too many connections: use gRPC */
    RL_DOOR_REFUSED = 2, /* not this host's user: use gRPC */
};

/* Longest ANSWER text, and longest HINT/READ timeout. */
#define RL_DOOR_TEXT_MAX    1536
#define RL_DOOR_MAX_WAIT_MS 60000u
/* COMMIT's fixed part: base and origin txn. */
#define RL_DOOR_COMMIT_FIXED 16

typedef struct rl_door_hdr {
    uint32_t kind;
    uint32_t len; /* body bytes */
} rl_door_hdr;

/* A request as the door reads it. */
typedef struct rl_door_req {
    uint32_t kind;          /* RL_DOOR_COMMIT, _HINT or _READ */
    uint64_t base, txn;     /* COMMIT */
    const uint8_t *payload; /* COMMIT: points into the body */
    size_t len;
    uint32_t wait_ms; /* HINT, READ */
} rl_door_req;

/* An answer as a client reads it (status: an RL_OUTCOME_* for COMMIT, 0
** or 1 (failed: text says why) for HINT and READ). */
typedef struct rl_door_ans {
    uint32_t status;
    uint64_t index, L;
    char text[RL_DOOR_TEXT_MAX + 1];
} rl_door_ans;

/* Writes a header into out[RL_DOOR_HDR]. */
void rl_door_hdr_put(uint8_t *out, uint32_t kind, uint32_t len);
/* Checks a received header: the magic, a kind in [lo, hi] and a body of at
** most max bytes. 0, or -1 with err. */
int rl_door_hdr_get(const uint8_t *in, uint32_t lo, uint32_t hi, uint32_t max,
                    rl_door_hdr *out, char *err, size_t errlen);
/* Decodes a request's body of kind hd->kind (a checked header). 0, or -1
** with err. */
int rl_door_req_decode(const rl_door_hdr *hd, const uint8_t *body,
                       rl_door_req *out, char *err, size_t errlen);
/* A COMMIT's header and fixed part (RL_DOOR_HDR + RL_DOOR_COMMIT_FIXED
** bytes), which the payload of len bytes follows on the wire. 0, or -1
** when len does not fit the format. */
int rl_door_commit_head(uint8_t *out, uint64_t base, uint64_t txn, size_t len);
/* A HINT or READ request (RL_DOOR_HDR + 4 bytes). */
void rl_door_ask_put(uint8_t *out, uint32_t kind, uint32_t wait_ms);
/* A HELLO (RL_DOOR_HDR + 4 bytes). */
void rl_door_hello_put(uint8_t *out, uint32_t status);
/* Decodes a HELLO's body (4 bytes): its status, or -1 with err. */
int rl_door_hello_decode(const rl_door_hdr *hd, const uint8_t *body,
                         uint32_t *status, char *err, size_t errlen);
/* An ANSWER into out (room: RL_DOOR_HDR + 20 + RL_DOOR_TEXT_MAX); text
** is cut at RL_DOOR_TEXT_MAX bytes. Returns its length. */
size_t rl_door_ans_put(uint8_t *out, uint32_t status, uint64_t index,
                       uint64_t L, const char *text);
/* Decodes an ANSWER's body. 0, or -1 with err. */
int rl_door_ans_decode(const rl_door_hdr *hd, const uint8_t *body,
                       rl_door_ans *out, char *err, size_t errlen);

#endif
