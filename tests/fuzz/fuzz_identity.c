/*
** tests/fuzz/fuzz_identity.c -- libFuzzer target for the identity-file
** parser (raftd/host/identity.c): any bytes, and the checks that an accepted
** identity names node_id and raft_addr, that every field is a
** NUL-terminated string inside its array and that the parse of the same
** bytes is deterministic.
*/
#include "host.h"

#include <stdlib.h>
#include <string.h>

static void check(int ok)
{
    if (!ok)
        abort();
}

static void terminated(const char *s, size_t cap)
{
    check(memchr(s, 0, cap) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rl_identity a, b;
    char err[128];
    /* A private copy of exactly size bytes: ASan sees any overread. */
    char *text = malloc(size ? size : 1);
    int rc, rc2;
    if (!text)
        return 0;
    memcpy(text, data, size);
    rc = rl_identity_parse(text, size, &a, err, sizeof err);
    terminated(a.node_id, sizeof a.node_id);
    terminated(a.raft_addr, sizeof a.raft_addr);
    terminated(a.grpc_addr, sizeof a.grpc_addr);
    terminated(a.tls_cert, sizeof a.tls_cert);
    terminated(a.tls_key, sizeof a.tls_key);
    terminated(a.tls_ca, sizeof a.tls_ca);
    terminated(a.auth_file, sizeof a.auth_file);
    check(a.tls_client_auth == 0 || a.tls_client_auth == 1);
    check(a.insecure == 0 || a.insecure == 1);
    if (rc == 0) {
        check(a.node_id[0] && a.raft_addr[0]);
    } else {
        check(rc == -1 && err[0]);
    }
    rc2 = rl_identity_parse(text, size, &b, err, sizeof err);
    check(rc2 == rc && memcmp(&a, &b, sizeof a) == 0);
    free(text);
    return 0;
}
