/*
** raftd/api/status_json.c -- a node's status (rl_cluster_status) as the
** JSON of PRAGMA raft_status (see cluster.h).
**
** Pure formatting: it must never write past the caller's buffer nor leave
** it unterminated or cut inside a UTF-8 sequence.
*/
#include "cluster.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct jbuf {
    char *p;
    size_t len, cap;
} jbuf;

static void jput(jbuf *b, const char *s, size_t n)
{
    /* Keeps room for the terminator; drops what does not fit. */
    if (b->cap == 0 || b->len + n >= b->cap) {
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void jfmt(jbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void jfmt(jbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(tmp)) {
        jput(b, tmp, (size_t)n);
    }
}

/* A JSON string; bytes below 0x20, '"' and '\\' escaped, the rest as is
** (node ids are validated UTF-8-agnostic bytes without NUL). */
static void jstr(jbuf *b, const char *s)
{
    jput(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jput(b, e, 2);
        } else if (c < 0x20) {
            jfmt(b, "\\u%04x", c);
        } else {
            jput(b, s, 1);
        }
    }
    jput(b, "\"", 1);
}

char *rl_cluster_status_json(const rl_cluster_status *s, char *out,
                             size_t outlen)
{
    jbuf b = {out, 0, outlen};
    if (outlen) {
        out[0] = 0;
    }
    jput(&b, "{\"id\":", 6);
    jstr(&b, s->id);
    /* Raft ids are unsigned 64-bit; SQLite integers are signed, and
    ** raft_nodes.raft_id shows the same bits as a signed integer: so does
    ** this, so that the two compare equal. */
    jfmt(&b, ",\"raft_id\":%lld", (long long)s->raft_id);
    jput(&b, ",\"state\":", 9);
    jstr(&b, s->state ? s->state : "unavailable");
    jfmt(&b, ",\"term\":%" PRIu64, s->term);
    jput(&b, ",\"leader\":", 10);
    if (s->leader_known && s->leader[0]) {
        jstr(&b, s->leader);
    } else {
        jput(&b, "null", 4);
    }
    jput(&b, ",\"leader_grpc\":", 15);
    if (s->leader_known && s->leader_grpc[0]) {
        jstr(&b, s->leader_grpc);
    } else {
        jput(&b, "null", 4);
    }
    jfmt(&b, ",\"commit_index\":%" PRIu64, s->commit_index);
    jfmt(&b, ",\"applied_index\":%" PRIu64, s->applied_index);
    jfmt(&b, ",\"last_index\":%" PRIu64, s->last_index);
    jfmt(&b, ",\"snapshot_index\":%" PRIu64, s->snapshot_index);
    jfmt(&b, ",\"read_points\":%" PRIu64, s->read_points);
    jfmt(&b, ",\"read_rounds\":%" PRIu64, s->read_rounds);
    jfmt(&b, ",\"local_calls\":%" PRIu64, s->local_calls);
    jfmt(&b, ",\"forward_sessions\":%" PRIu64 "}", s->forward_sessions);
    return out;
}
