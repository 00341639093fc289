/*
** raftd/identity.c -- parsing of a database's stored node identity
** ("<db>-raft/identity", see host.h), apart from host.c so that it is
** fuzzed alone (tests/fuzz/fuzz_identity.c).
**
** The file is "key=value" lines: node_id, raft_addr, grpc_addr, tls_cert,
** tls_key, tls_ca, tls_client_auth, auth_file, insecure. It must never write
*past a field
** (a value too long for its field is ignored, as an unknown key is) and
** never accept an identity without node_id and raft_addr. The raft id
** of a node id (rl_raft_id_of) lives here too: pure, and needed by the
** request checks (reqcheck.c) that are fuzzed without a host.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

uint64_t rl_raft_id_of(const char *node_id)
{
    uint64_t x = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)node_id; *p; p++) {
        x ^= *p;
        x *= 0x100000001b3ull;
    }
    /* Raft ids are nonzero; keep them below 2^63 for SQL integers. */
    x &= 0x7fffffffffffffffull;
    return x ? x : 1;
}

int rl_identity_parse(const char *text, size_t len, rl_identity *id, char *err,
                      size_t errlen)
{
    size_t pos = 0;
    memset(id, 0, sizeof *id);
    while (pos < len) {
        const char *line = text + pos;
        const char *end = memchr(line, '\n', len - pos);
        size_t n = end ? (size_t)(end - line) : len - pos;
        const char *eq = memchr(line, '=', n);
        char *dst = NULL;
        size_t cap = RL_META_STR_MAX + 1, klen, vlen;
        pos += n + (end ? 1 : 0);
        if (!eq) {
            continue;
        }
        klen = (size_t)(eq - line);
        vlen = n - klen - 1;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(line, k, klen) == 0)
        if (KEY("node_id")) {
            dst = id->node_id;
        } else if (KEY("raft_addr")) {
            dst = id->raft_addr;
        } else if (KEY("grpc_addr")) {
            dst = id->grpc_addr;
        } else if (KEY("tls_cert")) {
            dst = id->tls_cert, cap = sizeof id->tls_cert;
        } else if (KEY("tls_key")) {
            dst = id->tls_key, cap = sizeof id->tls_key;
        } else if (KEY("tls_ca")) {
            dst = id->tls_ca, cap = sizeof id->tls_ca;
        } else if (KEY("auth_file")) {
            dst = id->auth_file, cap = sizeof id->auth_file;
        } else if (KEY("tls_client_auth") || KEY("insecure")) {
            char num[16];
            size_t m = vlen < sizeof num - 1 ? vlen : sizeof num - 1;
            memcpy(num, eq + 1, m);
            num[m] = 0;
            if (KEY("insecure"))
                id->insecure = atoi(num) != 0;
            else
                id->tls_client_auth = atoi(num) != 0;
        }
#undef KEY
        /* A NUL inside the value would cut it silently: ignore it. */
        if (dst && vlen < cap && !memchr(eq + 1, 0, vlen)) {
            memcpy(dst, eq + 1, vlen);
            dst[vlen] = 0;
        }
    }
    if (!id->node_id[0] || !id->raft_addr[0]) {
        snprintf(err, errlen, "it must name node_id and raft_addr");
        return -1;
    }
    return 0;
}
