/*
** tests/fuzz/fuzz_auth.c -- libFuzzer target for the auth-file parser
** (raftd/api/auth.c): any bytes. An accepted file must answer lookups for the
** names it holds, a refused one must say FILE:LINE and why, the parse must
** be deterministic, and rl_auth_decide over the parsed file must give an
** allowed verdict or PERMISSION_DENIED/UNAUTHENTICATED with a message for
** every method and caller kind (no passwords: crypt(3) cost parameters
** come from the file, which its operator writes).
*/
#include "auth.h"
#include "rpc.h"

#include <stdlib.h>
#include <string.h>

static void check(int ok)
{
    if (!ok)
        abort();
}

static int member(void *ctx, const char *id)
{
    (void)ctx;
    return !strcmp(id, "n1");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const meth[] = {
        "ExecuteRead", "ExecuteWrite", "Join",   "Remove", "FetchImage",
        "ForwardTxn",  "ReadIndex",    "Status", "Bogus"};
    rl_auth *a = NULL, *b = NULL;
    char err[256], err2[256];
    /* A private copy of exactly size bytes: ASan sees any overread. */
    char *text = malloc(size ? size : 1);
    int rc, rc2;
    if (!text)
        return 0;
    memcpy(text, data, size);
    err[0] = err2[0] = 0;
    rc = rl_auth_parse(text, size, "f", &a, err, sizeof err);
    rc2 = rl_auth_parse(text, size, "f", &b, err2, sizeof err2);
    check(rc == rc2 && strcmp(err, err2) == 0);
    if (rc != 0) {
        check(rc == -1 && a == NULL && !strncmp(err, "f:", 2));
    } else {
        rl_auth_server s = {a, 1, member, NULL};
        unsigned p1 = 0, p2 = 0;
        check(a != NULL);
        check(rl_auth_cert(a, "alice", &p1) == rl_auth_cert(b, "alice", &p2));
        check(p1 == p2 && (p1 & ~RL_PERM_ALL) == 0);
        check((rl_auth_anonymous(a) & ~RL_PERM_ALL) == 0);
        for (int k = 0; k < 4; k++) {
            for (size_t i = 0; i < sizeof meth / sizeof meth[0]; i++) {
                rl_auth_caller c;
                char who[300];
                memset(&c, 0, sizeof c);
                c.tls = 1;
                if (k > 0) {
                    c.has_cert = 1;
                    c.cert.role = k == 1 ? RL_CERT_CLIENT : RL_CERT_NODE;
                    strcpy(c.cert.name, k == 3 ? "n1" : "alice");
                }
                err[0] = 0;
                rc = rl_auth_decide(&s, meth[i], &c, "alice", who, sizeof who,
                                    err, sizeof err);
                check(rc == 0 || ((rc == RL_RPC_PERMISSION_DENIED ||
                                   rc == RL_RPC_UNAUTHENTICATED) &&
                                  err[0]));
                check(strcmp(meth[i], "Bogus") || rc != 0);
                /* A client certificate never passes a node-only method. */
                if (k == 1 && (!strcmp(meth[i], "ForwardTxn") ||
                               !strcmp(meth[i], "ReadIndex")))
                    check(rc != 0);
            }
        }
    }
    rl_auth_free(a);
    rl_auth_free(b);
    free(text);
    return 0;
}
