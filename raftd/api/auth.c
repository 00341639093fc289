/*
** raftd/api/auth.c -- the auth file and the verdict on one call by the
** rules of the API's method table (see auth.h, methods.h). Pure but for
*rl_auth_load (one file read) and
** crypt_r: no gRPC, no globals, so it is fuzzed and unit-tested alone.
**
** It must never accept a password over plaintext, never let a client
** certificate call a node-to-node method, and never accept an auth file
** line it does not understand (a typo would silently grant or drop a
** permission): every refusal names FILE:LINE and the reason.
*/
#include "auth.h"
#include "errbuf.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "rpc.h"

typedef struct entry {
    int is_user;
    char name[RL_AUTH_NAME_MAX + 1];
    char *hash; /* users only */
    unsigned perms;
    /* The last password that matched hash, as SHA-256(key || password)
    ** under the process's random key (cache.key): a call with it again
    ** skips crypt(3) (yescrypt at its default cost takes ~0.25 s here). */
    unsigned char ok[32];
    int has_ok;
} entry;

/* Mutable from a const rl_auth: the verified-password cache. */
typedef struct cache {
    pthread_mutex_t mu;
    unsigned char key[32];
    int has_key;
} cache;

struct rl_auth {
    char file[512];
    entry *e;
    size_t n;
    unsigned anon;
    int has_anon;
    cache *c;
};

static const char *const perm_names[] = {"read",   "write",  "admin",
                                         "status", "backup", "node"};

const char *rl_perm_name(unsigned perm)
{
    for (unsigned i = 0; i < 6; i++)
        if (perm == 1u << i)
            return perm_names[i];
    return "?";
}

void rl_perm_list(unsigned perms, char *out, size_t outlen)
{
    size_t used = 0;
    if (!outlen)
        return;
    out[0] = 0;
    for (unsigned i = 0; i < 6; i++) {
        if (perms & (1u << i)) {
            int n = snprintf(out + used, outlen - used, "%s%s", used ? "," : "",
                             perm_names[i]);
            if (n < 0 || (size_t)n >= outlen - used)
                return;
            used += (size_t)n;
        }
    }
    if (!used)
        snprintf(out, outlen, "none");
}

/* One word of a line: [*p, end) split at spaces/tabs. Returns its length
** (0 at the end) and moves *p past it. */
static size_t word(const char **p, const char *end, const char **w)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    *w = s;
    while (s < end && *s != ' ' && *s != '\t')
        s++;
    *p = s;
    return (size_t)(s - *w);
}

/* Parses a PERMS word into *out; -1 with err naming the bad one. */
static int parse_perms(const char *w, size_t n, unsigned *out, char *why,
                       size_t whylen)
{
    unsigned perms = 0;
    if (n == 4 && !memcmp(w, "none", 4)) {
        *out = 0;
        return 0;
    }
    while (n > 0) {
        const char *c = memchr(w, ',', n);
        size_t k = c ? (size_t)(c - w) : n, i;
        if (k == 3 && !memcmp(w, "all", 3)) {
            perms |= RL_PERM_ALL;
        } else {
            for (i = 0; i < 5; i++)
                if (strlen(perm_names[i]) == k && !memcmp(w, perm_names[i], k))
                    break;
            if (i == 5) {
                rl_seterr(why, whylen,
                          "unknown permission '%.*s' (read, write, admin, "
                          "status, backup, all or none)",
                          (int)(k > 40 ? 40 : k), w);
                return -1;
            }
            perms |= 1u << i;
        }
        if (!c)
            break;
        n -= k + 1;
        w = c + 1;
        if (n == 0) {
            rl_seterr(why, whylen, "a permission list ends with ','");
            return -1;
        }
    }
    *out = perms;
    return 0;
}

/* A name: 1..RL_AUTH_NAME_MAX printable bytes (no control characters;
** spaces cannot occur inside a word). */
static int check_name(const char *w, size_t n, char *why, size_t whylen)
{
    if (n == 0) {
        rl_seterr(why, whylen, "a name is missing");
        return -1;
    }
    if (n > RL_AUTH_NAME_MAX) {
        rl_seterr(why, whylen, "the name is longer than %d bytes",
                  RL_AUTH_NAME_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)w[i];
        if (ch < 0x20 || ch == 0x7f) {
            rl_seterr(why, whylen, "the name holds a control character");
            return -1;
        }
    }
    return 0;
}

/* A crypt(3) hash of a modern method: "$id$..." of printable characters.
** DES hashes (no '$') keep 8 bytes of the password: refused. */
static int check_hash(const char *w, size_t n, char *why, size_t whylen)
{
    if (n < 4 || w[0] != '$' || !memchr(w + 1, '$', n - 1)) {
        rl_seterr(why, whylen,
                  "the password hash is not a crypt(3) hash of the form "
                  "$id$... (make one with: mkpasswd -m yescrypt, or "
                  "openssl passwd -6)");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)w[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == ':') {
            rl_seterr(why, whylen,
                      "the password hash holds a character a "
                      "crypt(3) hash never has");
            return -1;
        }
    }
    return 0;
}

static entry *find(const rl_auth *a, int is_user, const char *name, size_t n)
{
    for (size_t i = 0; a && i < a->n; i++)
        if (a->e[i].is_user == is_user && strlen(a->e[i].name) == n &&
            !memcmp(a->e[i].name, name, n))
            return &a->e[i];
    return NULL;
}

/* One line [s, end) (without its newline). 0, or -1 with why. */
static int parse_line(rl_auth *a, const char *s, const char *end, char *why,
                      size_t whylen)
{
    const char *p = s, *kw, *name = NULL, *hash = NULL, *perms, *extra;
    size_t kn, nn = 0, hn = 0, pn;
    unsigned pv;
    int is_user;
    entry *e;
    if (memchr(s, 0, (size_t)(end - s))) {
        rl_seterr(why, whylen, "the line holds a NUL byte");
        return -1;
    }
    kn = word(&p, end, &kw);
    if (kn == 0 || kw[0] == '#')
        return 0; /* blank or comment */
    if (kn == 9 && !memcmp(kw, "anonymous", 9)) {
        pn = word(&p, end, &perms);
        if (pn == 0) {
            rl_seterr(why, whylen, "'anonymous' needs PERMS");
            return -1;
        }
        if (word(&p, end, &extra) != 0) {
            rl_seterr(why, whylen, "'anonymous PERMS' takes nothing more");
            return -1;
        }
        if (a->has_anon) {
            rl_seterr(why, whylen, "a second 'anonymous' line");
            return -1;
        }
        if (parse_perms(perms, pn, &a->anon, why, whylen) != 0)
            return -1;
        a->has_anon = 1;
        return 0;
    }
    if (kn == 4 && !memcmp(kw, "user", 4)) {
        is_user = 1;
    } else if (kn == 4 && !memcmp(kw, "cert", 4)) {
        is_user = 0;
    } else {
        rl_seterr(why, whylen,
                  "unknown keyword '%.*s' (user NAME HASH PERMS, cert NAME "
                  "PERMS, anonymous PERMS, # comment)",
                  (int)(kn > 40 ? 40 : kn), kw);
        return -1;
    }
    nn = word(&p, end, &name);
    if (check_name(name, nn, why, whylen) != 0)
        return -1;
    if (is_user) {
        hn = word(&p, end, &hash);
        if (check_hash(hash, hn, why, whylen) != 0)
            return -1;
    }
    pn = word(&p, end, &perms);
    if (pn == 0) {
        rl_seterr(why, whylen, "%s '%.*s' needs PERMS (e.g. read,status)",
                  is_user ? "user" : "cert", (int)nn, name);
        return -1;
    }
    if (word(&p, end, &extra) != 0) {
        rl_seterr(why, whylen, "unexpected '%.*s' after PERMS",
                  (int)((size_t)(end - extra) > 40 ? 40 : end - extra), extra);
        return -1;
    }
    if (parse_perms(perms, pn, &pv, why, whylen) != 0)
        return -1;
    if (find(a, is_user, name, nn)) {
        rl_seterr(why, whylen, "%s '%.*s' is listed twice",
                  is_user ? "user" : "cert", (int)nn, name);
        return -1;
    }
    e = realloc(a->e, (a->n + 1) * sizeof *e);
    if (!e) {
        rl_seterr(why, whylen, "out of memory");
        return -1;
    }
    a->e = e;
    e = &a->e[a->n];
    memset(e, 0, sizeof *e);
    e->is_user = is_user;
    memcpy(e->name, name, nn);
    e->name[nn] = 0;
    e->perms = pv;
    if (is_user) {
        e->hash = malloc(hn + 1);
        if (!e->hash) {
            rl_seterr(why, whylen, "out of memory");
            return -1;
        }
        memcpy(e->hash, hash, hn);
        e->hash[hn] = 0;
    }
    a->n++;
    return 0;
}

int rl_auth_parse(const char *text, size_t len, const char *fname,
                  rl_auth **out, char *err, size_t errlen)
{
    rl_auth *a = calloc(1, sizeof *a);
    size_t pos = 0;
    unsigned lineno = 0;
    char why[256];
    *out = NULL;
    if (!a || !(a->c = calloc(1, sizeof *a->c))) {
        free(a);
        rl_seterr(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&a->c->mu, NULL);
    snprintf(a->file, sizeof a->file, "%s", fname ? fname : "");
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (parse_line(a, line, line + n, why, sizeof why) != 0) {
            rl_seterr(err, errlen, "%s:%u: %s", a->file[0] ? a->file : "auth",
                      lineno, why);
            rl_auth_free(a);
            return -1;
        }
    }
    *out = a;
    return 0;
}

int rl_auth_load(const char *path, rl_auth **out, char *err, size_t errlen)
{
    struct stat st;
    char *buf;
    ssize_t got;
    size_t n = 0;
    int fd, rc;
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rl_seterr(err, errlen, "cannot open the auth file %s: %s%s", path,
                  strerror(errno),
                  errno == ELOOP ? " (it is a symbolic link: name the file "
                                   "itself)"
                                 : "");
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rl_seterr(err, errlen, "the auth file %s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_mode & 077) {
        rl_seterr(
            err, errlen,
            "the auth file %s may be read by group or others (mode %03o); "
            "it holds password hashes: chmod 600 %s",
            path, (unsigned)(st.st_mode & 0777), path);
        close(fd);
        return -1;
    }
    if (st.st_size > RL_AUTH_MAX) {
        rl_seterr(err, errlen, "the auth file %s is larger than %d bytes", path,
                  RL_AUTH_MAX);
        close(fd);
        return -1;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rl_seterr(err, errlen, "out of memory");
        close(fd);
        return -1;
    }
    while (n < (size_t)st.st_size &&
           ((got = read(fd, buf + n, (size_t)st.st_size - n)) > 0 ||
            (got < 0 && errno == EINTR)))
        if (got > 0)
            n += (size_t)got;
    close(fd);
    rc = rl_auth_parse(buf, n, path, out, err, errlen);
    free(buf);
    return rc;
}

void rl_auth_free(rl_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->e[i].hash);
    free(a->e);
    pthread_mutex_destroy(&a->c->mu);
    OPENSSL_cleanse(a->c->key, sizeof a->c->key);
    free(a->c);
    free(a);
}

const char *rl_auth_file(const rl_auth *a)
{
    return a ? a->file : "";
}

int rl_auth_cert(const rl_auth *a, const char *name, unsigned *perms)
{
    entry *e = find(a, 0, name, strlen(name));
    if (e)
        *perms = e->perms;
    return e != NULL;
}

int rl_auth_user(const rl_auth *a, const char *name, const char **hash,
                 unsigned *perms)
{
    entry *e = find(a, 1, name, strlen(name));
    if (e) {
        *perms = e->perms;
        *hash = e->hash;
    }
    return e != NULL;
}

/* SHA-256(key || password) into out; 0 or -1. */
static int digest(const unsigned char *key, const char *password,
                  unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, key, 32) == 1 &&
             EVP_DigestUpdate(ctx, password, strlen(password)) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

int rl_auth_login(const rl_auth *a, const char *name, const char *password,
                  unsigned *perms)
{
    entry *e = a ? find(a, 1, name, strlen(name)) : NULL;
    unsigned char d[32];
    int have_d = 0, ok;
    if (!e)
        return 0;
    pthread_mutex_lock(&a->c->mu);
    if (!a->c->has_key && RAND_bytes(a->c->key, sizeof a->c->key) == 1)
        a->c->has_key = 1;
    if (a->c->has_key && digest(a->c->key, password, d) == 0)
        have_d = 1;
    ok = have_d && e->has_ok && CRYPTO_memcmp(d, e->ok, sizeof d) == 0;
    pthread_mutex_unlock(&a->c->mu);
    if (!ok && rl_auth_password_ok(e->hash, password)) {
        ok = 1;
        if (have_d) {
            pthread_mutex_lock(&a->c->mu);
            memcpy(e->ok, d, sizeof d);
            e->has_ok = 1;
            pthread_mutex_unlock(&a->c->mu);
        }
    }
    OPENSSL_cleanse(d, sizeof d);
    if (ok)
        *perms = e->perms;
    return ok;
}

unsigned rl_auth_anonymous(const rl_auth *a)
{
    return a && a->has_anon ? a->anon : 0;
}

int rl_auth_password_ok(const char *hash, const char *password)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    const char *h;
    size_t n, i;
    unsigned char diff = 0;
    int ok = 0;
    if (!cd)
        return 0;
    h = crypt_r(password, hash, cd);
    /* crypt_r fails with NULL or a string starting with '*'. */
    if (h && h[0] != '*' && (n = strlen(h)) == strlen(hash)) {
        for (i = 0; i < n; i++)
            diff |= (unsigned char)(h[i] ^ hash[i]);
        ok = diff == 0;
    }
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return ok;
}

/* ---------------------------------------------------------- one call */

int rl_auth_decide(const rl_auth_server *s, const char *method,
                   const rl_auth_caller *c, const char *join_id, char *who,
                   size_t wholen, char *err, size_t errlen)
{
    const rl_auth_method *m = rl_auth_method_find(method);
    const char *file = s->auth ? rl_auth_file(s->auth) : "";
    char id[RL_AUTH_NAME_MAX + 64], src[600];
    unsigned perms = 0;
    int node = 0, member = 0, anonymous = 0;

    if (s->auth)
        snprintf(src, sizeof src, "the auth file %s", file);
    else
        snprintf(src, sizeof src,
                 "no auth file (-auth / raft_auth): client certificates get "
                 "read,write,status");
    if (!m) {
        rl_seterr(err, errlen, "%s is not in the method table: refused",
                  method);
        return RL_RPC_PERMISSION_DENIED;
    }
    if (c->user || c->password) {
        if (!c->tls) {
            rl_seterr(
                err, errlen,
                "%s: a password is accepted over TLS only, and this "
                "connection is plaintext (serve TLS with -tls-cert/-tls-key "
                "and connect with TLS)",
                method);
            return RL_RPC_UNAUTHENTICATED;
        }
        if (!c->user || !c->password) {
            rl_seterr(err, errlen, "%s: metadata %s and %s go together", method,
                      RL_AUTH_MD_USER, RL_AUTH_MD_PASSWORD);
            return RL_RPC_UNAUTHENTICATED;
        }
        if (!s->auth) {
            rl_seterr(err, errlen,
                      "%s: user '%.127s' sent a password, but this node has no "
                      "auth file (-auth / raft_auth): it knows no users",
                      method, c->user);
            return RL_RPC_UNAUTHENTICATED;
        }
        if (!rl_auth_login(s->auth, c->user, c->password, &perms)) {
            rl_seterr(err, errlen,
                      "%s: unknown user or wrong password for '%.127s'", method,
                      c->user);
            return RL_RPC_UNAUTHENTICATED;
        }
        snprintf(id, sizeof id, "user '%s'", c->user);
    } else if (c->has_cert && c->cert.role == RL_CERT_NODE) {
        node = 1;
        member = s->is_member && s->is_member(s->ctx, c->cert.name);
        snprintf(id, sizeof id, "node '%s'%s", c->cert.name,
                 member ? "" : " (not a member of this cluster)");
        /* A member node forwards its clients' calls: it may call every
        ** method (its own server checked the client). */
        if (member)
            perms = RL_PERM_ALL | RL_PERM_NODE;
        else
            perms = RL_PERM_STATUS;
    } else if (c->has_cert) {
        snprintf(id, sizeof id, "client certificate '%s'", c->cert.name);
        if (s->auth) {
            if (!rl_auth_cert(s->auth, c->cert.name, &perms))
                perms = rl_auth_anonymous(s->auth);
        } else {
            perms = RL_PERM_CERT_DEFAULT;
        }
    } else {
        anonymous = 1;
        snprintf(id, sizeof id, "an anonymous caller%s%s",
                 c->cert_err ? " (its certificate names no identity: " : "",
                 c->cert_err ? c->cert_err : "");
        if (c->cert_err)
            snprintf(id + strlen(id), sizeof id - strlen(id), ")");
        if (!s->auth && !s->mtls) {
            /* Plaintext or server-only TLS without an auth file: nothing
            ** can be checked (today's behaviour; README "Security"). */
            perms = RL_PERM_ALL | RL_PERM_NODE;
        } else {
            perms = rl_auth_anonymous(s->auth);
        }
    }
    if (who)
        snprintf(who, wholen, "%s", id);

    switch (m->rule) {
    case RL_RULE_CLIENT:
        if (perms & m->perm)
            return 0;
        break;
    case RL_RULE_NODE:
        if (perms & RL_PERM_NODE)
            return 0;
        rl_seterr(
            err, errlen,
            "%s is node-to-node: it needs permission 'node' (the "
            "certificate of a member node, SAN URI %s<id>); %s has not got "
            "it",
            method, RL_CERT_NODE_PREFIX, id);
        return anonymous && (s->auth || s->mtls) ? RL_RPC_UNAUTHENTICATED
                                                 : RL_RPC_PERMISSION_DENIED;
    case RL_RULE_NODE_OR:
        if ((perms & RL_PERM_NODE) || (!node && (perms & m->perm)))
            return 0;
        break;
    case RL_RULE_JOIN:
        if (perms & RL_PERM_NODE)
            return 0;
        /* The joining node itself: its certificate names the id it joins
        ** as, so nobody adds a voter under another node's name. */
        if (node && join_id && !strcmp(join_id, c->cert.name))
            return 0;
        if (node) {
            rl_seterr(err, errlen,
                      "Join needs permission 'admin' or the joining node's own "
                      "certificate: %s may join only as '%s', not as '%.127s'",
                      id, c->cert.name, join_id ? join_id : "");
            return RL_RPC_PERMISSION_DENIED;
        }
        if (perms & m->perm)
            return 0;
        break;
    }
    if (anonymous && (s->auth || s->mtls)) {
        rl_seterr(
            err, errlen,
            "%s needs permission '%s' and the call carried no credentials "
            "(a client certificate, or metadata %s/%s over TLS); %s grants "
            "anonymous callers no '%s'",
            method, rl_perm_name(m->perm), RL_AUTH_MD_USER, RL_AUTH_MD_PASSWORD,
            src, rl_perm_name(m->perm));
        return RL_RPC_UNAUTHENTICATED;
    }
    if (node && m->rule == RL_RULE_NODE_OR) {
        rl_seterr(
            err, errlen,
            "%s needs permission '%s' (or a member node's certificate); %s "
            "has not got it",
            method, rl_perm_name(m->perm), id);
        return RL_RPC_PERMISSION_DENIED;
    }
    rl_seterr(err, errlen, "%s needs permission '%s'; %s has not got it (%s)",
              method, rl_perm_name(m->perm), id, src);
    return RL_RPC_PERMISSION_DENIED;
}
