/*
** lib/err.h -- the project's error codes: what went wrong, as a number that
** control flow can decide on.
**
** Every module returns an `rl_err` (0 = RL_OK) and, where a person will read
** it, writes the reason into the caller's (err, errlen) buffer (errbuf.h).
** Code must never decide on the text of a message (strstr on "cannot
** reach" and the like): it decides on the code, and the text is built once,
** for the user who meets it (raft_last_error(), a gRPC status, a log line).
**
** The numbers are internal: they never go on the wire or to disk. The gRPC
** status or SQLite result code a caller sees is chosen from the code where
** the answer is made (the API's handlers, the VFS's commit).
*/
#ifndef RL_ERR_H
#define RL_ERR_H

typedef enum rl_err {
    RL_OK = 0,
    /* Consensus outcomes of a proposal (a write, a membership change). */
    RL_ERR_NOTLEADER = 1, /* definite: not appended, or replaced */
    RL_ERR_UNKNOWN = 2,   /* appended (maybe): the outcome is unknown */
    RL_ERR_SHUTDOWN = 3,  /* definite: the node is stopping */
    RL_ERR_TIMEOUT = 4,   /* definite: not taken in time */
    RL_ERR_INVALID = 5,   /* bad arguments or input */
    RL_ERR_NOMEM = 6,
    RL_ERR_RAFT = 7,        /* Raft refused it (message says why) */
    RL_ERR_CANTCHANGE = 8,  /* a membership change is already under way */
    RL_ERR_UNREACHABLE = 9, /* no connection to the peer: never sent */
    RL_ERR_APPLIED = 10,    /* the transaction is already in the WAL */
    RL_ERR_CONFLICT = 11,   /* based on a state another write replaced */
    RL_ERR_HOLDS_DATA = 12, /* a joiner's database is not empty */
    RL_ERR_FULL = 13,       /* the disk is full */
    RL_ERR_IO = 14,         /* a file operation failed */
    RL_ERR_PERM = 15,       /* not allowed (identity, permissions) */
    RL_ERR_BUSY = 16,       /* locked by someone else; retry later */
    RL_ERR_NOLEADER = 17,   /* no leader known (election under way) */
    RL_ERR_REMOTE = 18,     /* a peer answered with an error (see text) */
    RL_ERR_CORRUPT = 19,    /* a file or message failed its checks */
    RL_ERR_INTERNAL = 20,
} rl_err;

/* The code's name, for logs and tests ("RL_ERR_CONFLICT"). Never NULL. */
static inline const char *rl_err_name(rl_err e)
{
    switch (e) {
    case RL_OK:
        return "RL_OK";
    case RL_ERR_NOTLEADER:
        return "RL_ERR_NOTLEADER";
    case RL_ERR_UNKNOWN:
        return "RL_ERR_UNKNOWN";
    case RL_ERR_SHUTDOWN:
        return "RL_ERR_SHUTDOWN";
    case RL_ERR_TIMEOUT:
        return "RL_ERR_TIMEOUT";
    case RL_ERR_INVALID:
        return "RL_ERR_INVALID";
    case RL_ERR_NOMEM:
        return "RL_ERR_NOMEM";
    case RL_ERR_RAFT:
        return "RL_ERR_RAFT";
    case RL_ERR_CANTCHANGE:
        return "RL_ERR_CANTCHANGE";
    case RL_ERR_UNREACHABLE:
        return "RL_ERR_UNREACHABLE";
    case RL_ERR_APPLIED:
        return "RL_ERR_APPLIED";
    case RL_ERR_CONFLICT:
        return "RL_ERR_CONFLICT";
    case RL_ERR_HOLDS_DATA:
        return "RL_ERR_HOLDS_DATA";
    case RL_ERR_FULL:
        return "RL_ERR_FULL";
    case RL_ERR_IO:
        return "RL_ERR_IO";
    case RL_ERR_PERM:
        return "RL_ERR_PERM";
    case RL_ERR_BUSY:
        return "RL_ERR_BUSY";
    case RL_ERR_NOLEADER:
        return "RL_ERR_NOLEADER";
    case RL_ERR_REMOTE:
        return "RL_ERR_REMOTE";
    case RL_ERR_CORRUPT:
        return "RL_ERR_CORRUPT";
    case RL_ERR_INTERNAL:
        return "RL_ERR_INTERNAL";
    }
    return "RL_ERR_?";
}

#endif
