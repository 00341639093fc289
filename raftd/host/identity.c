/*
** raftd/host/identity.c -- a database's stored node identity
** ("<db>-raft/identity", see host.h): its parser, fuzzed alone
** (tests/fuzz/fuzz_identity.c), and the file's read and atomic write.
**
** The file is "key=value" lines: node_id, raft_addr, grpc_addr, tls_cert,
** tls_key, tls_ca, tls_client_auth, auth_file, insecure. It must never
** write past a field (a value too long for its field is ignored, as an
** unknown key is) and never accept an identity without node_id and raft_addr.
*The raft id
** of a node id (rl_raft_id_of) lives here too: pure, and needed by the
** request checks (reqcheck.c) that are fuzzed without a host.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ------------------------------------------------------------ the file */

static int path_join(char *out, size_t n, const char *a, const char *b)
{
    return snprintf(out, n, "%s%s", a, b) < (int)n ? 0 : -1;
}

/* identity file: three lines "node_id=...", "raft_addr=...",
** "grpc_addr=..." */
int rl_identity_read(const char *db_path, rl_identity *id, char *err,
                     size_t errlen)
{
    char path[PATH_MAX];
    FILE *f;
    memset(id, 0, sizeof *id);
    if (path_join(path, sizeof path, db_path, "-raft/identity") != 0) {
        snprintf(err, errlen, "path too long: %s", db_path);
        return -1;
    }
    f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    {
        /* One byte more than the limit tells a file that is too large. */
        char *buf = malloc(RL_IDENTITY_MAX + 1);
        size_t n = buf ? fread(buf, 1, RL_IDENTITY_MAX + 1, f) : 0;
        char why[128];
        int bad = !buf || ferror(f) || n > RL_IDENTITY_MAX;
        fclose(f);
        if (bad) {
            snprintf(err, errlen, "cannot read %s: %s", path,
                     !buf ? "out of memory"
                     : n > RL_IDENTITY_MAX
                         ? "larger than an identity file can be"
                         : "read error");
            free(buf);
            return -1;
        }
        if (rl_identity_parse(buf, n, id, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s is damaged: %s", path, why);
            free(buf);
            return -1;
        }
        free(buf);
    }
    return 0;
}

int rl_identity_write(const char *db_path, const rl_identity *id, char *err,
                      size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    FILE *f;
    if (path_join(path, sizeof path, db_path, "-raft/identity") != 0 ||
        path_join(tmp, sizeof tmp, db_path, "-raft/identity.tmp") != 0) {
        snprintf(err, errlen, "path too long: %s", db_path);
        return -1;
    }
    {
        /* Private: it names the node's TLS files. */
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f && fd >= 0)
            close(fd); /* our own file: no SQLite lock lives on it */
    }
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f,
            "node_id=%s\nraft_addr=%s\ngrpc_addr=%s\ntls_cert=%s\n"
            "tls_key=%s\ntls_ca=%s\ntls_client_auth=%d\n"
            "auth_file=%s\ninsecure=%d\n",
            id->node_id, id->raft_addr, id->grpc_addr, id->tls_cert,
            id->tls_key, id->tls_ca, id->tls_client_auth, id->auth_file,
            id->insecure);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        return -1;
    }
    fclose(f);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
