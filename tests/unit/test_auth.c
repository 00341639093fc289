/*
** tests/unit/test_auth.c -- raftd/api/auth.c alone: the auth file's format and
** every refusal (FILE:LINE and the reason), the file-mode check, crypt(3)
** passwords (yescrypt and sha512 hashes made here), and the verdicts of the
** method table for each kind of caller: anonymous, client certificate,
** member and non-member node certificates, users; with and without mutual
** TLS and an auth file.
*/
#include "auth.h"
#include "rpc.h"

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/check.h"

static char yes_hash[256], sha_hash[256];

static void make_hashes(void)
{
    struct crypt_data cd;
    char *salt;
    memset(&cd, 0, sizeof cd);
    salt = crypt_gensalt_rn("$y$", 0, NULL, 0, cd.setting, sizeof cd.setting);
    EXPECT(salt != NULL);
    snprintf(yes_hash, sizeof yes_hash, "%s", crypt_r("s3cret", salt, &cd));
    memset(&cd, 0, sizeof cd);
    salt = crypt_gensalt_rn("$6$", 0, NULL, 0, cd.setting, sizeof cd.setting);
    EXPECT(salt != NULL);
    snprintf(sha_hash, sizeof sha_hash, "%s", crypt_r("pw2", salt, &cd));
    EXPECT(!strncmp(yes_hash, "$y$", 3) && !strncmp(sha_hash, "$6$", 3));
}

/* Parses text; expects a refusal whose message contains want. */
static void refused(const char *text, const char *want)
{
    rl_auth *a = NULL;
    char err[512] = "";
    int rc =
        rl_auth_parse(text, strlen(text), "auth.conf", &a, err, sizeof err);
    EXPECT(rc == -1 && a == NULL);
    if (!strstr(err, want)) {
        fprintf(stderr, "refusal of %s: '%s' lacks '%s'\n", text, err, want);
        rl_failures++;
    }
}

/* fmt with its two %s filled with the yescrypt hash, then the sha512
** one: an auth file that must be accepted, parsed into *a. */
static void parse_accepted(rl_auth **a, const char *fmt)
{
    char text[2048], err[512] = "";
    snprintf(text, sizeof text, fmt, yes_hash, sha_hash);
    EXPECT(rl_auth_parse(text, strlen(text), "auth.conf", a, err, sizeof err) ==
               0,
           "%s", err);
}

static void test_parse(void)
{
    char text[2048];
    rl_auth *a = NULL;
    char err[512] = "";
    unsigned p = 0;
    const char *h = NULL;
    snprintf(text, sizeof text,
             "# the operators\n"
             "\n"
             "user alice %s read,write\n"
             "  user bob\t%s status # not a comment: refused below\n",
             yes_hash, sha_hash);
    /* Trailing words after PERMS are refused (a typo must not pass). */
    refused(text, "auth.conf:4: unexpected '# not a comment");
    parse_accepted(&a, "# the operators\r\n"
                       "user alice %s read,write\n"
                       "user bob %s all\n"
                       "cert app read,status\n"
                       "cert ops admin,backup,status\n"
                       "cert nobody none\n"
                       "anonymous status\n");
    EXPECT(rl_auth_user(a, "alice", &h, &p) &&
           p == (RL_PERM_READ | RL_PERM_WRITE) && !strcmp(h, yes_hash));
    EXPECT(rl_auth_user(a, "bob", &h, &p) && p == RL_PERM_ALL);
    EXPECT(!rl_auth_user(a, "app", &h, &p)); /* a cert, not a user */
    EXPECT(rl_auth_cert(a, "app", &p) && p == (RL_PERM_READ | RL_PERM_STATUS));
    EXPECT(rl_auth_cert(a, "nobody", &p) && p == 0);
    EXPECT(!rl_auth_cert(a, "alice", &p));
    EXPECT(rl_auth_anonymous(a) == RL_PERM_STATUS);
    EXPECT(rl_auth_password_ok(yes_hash, "s3cret"));
    EXPECT(!rl_auth_password_ok(yes_hash, "s3cret "));
    EXPECT(!rl_auth_password_ok(yes_hash, ""));
    EXPECT(rl_auth_password_ok(sha_hash, "pw2"));
    EXPECT(!rl_auth_password_ok(sha_hash, "pw"));
    EXPECT(!rl_auth_password_ok("$6$broken", "pw"));
    {
        /* rl_auth_login: right, remembered (the next logins skip
        ** yescrypt: ten take less than the first), wrong never. */
        struct timespec t0, t1, t2;
        double first, ten;
        EXPECT(!rl_auth_login(a, "alice", "nope", &p));
        EXPECT(!rl_auth_login(a, "app", "s3cret", &p)); /* not a user */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        p = 0;
        EXPECT(rl_auth_login(a, "alice", "s3cret", &p) &&
               p == (RL_PERM_READ | RL_PERM_WRITE));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (int i = 0; i < 10; i++)
            EXPECT(rl_auth_login(a, "alice", "s3cret", &p));
        clock_gettime(CLOCK_MONOTONIC, &t2);
        first = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        ten = (double)(t2.tv_sec - t1.tv_sec) * 1e3 +
              (double)(t2.tv_nsec - t1.tv_nsec) / 1e6;
        EXPECT(ten < first);
        EXPECT(!rl_auth_login(a, "alice", "s3cret!", &p));
        EXPECT(!rl_auth_login(a, "alice", "", &p));
        EXPECT(rl_auth_login(a, "bob", "pw2", &p) && p == RL_PERM_ALL);
        EXPECT(rl_auth_login(a, "alice", "s3cret", &p));
    }
    rl_auth_free(a);

    refused("cert a read\nfrobnicate x\n", "auth.conf:2: unknown keyword "
                                           "'frobnicate'");
    refused("cert a read,delete\n", "auth.conf:1: unknown permission 'delete'");
    refused("cert a read,\n", "ends with ','");
    refused("cert a\n", "auth.conf:1: cert 'a' needs PERMS");
    refused("cert\n", "a name is missing");
    refused("user u abcdefghijklm read\n", "not a crypt(3) hash");
    refused("user u $6$x$y\n", "user 'u' needs PERMS");
    refused("cert a read\ncert a write\n", "auth.conf:2: cert 'a' is listed "
                                           "twice");
    refused("anonymous read\nanonymous write\n", "a second 'anonymous'");
    refused("anonymous\n", "'anonymous' needs PERMS");
    refused("cert a\001b read\n", "control character");
    {
        static const char nul[] = "cert a read\ncert b\0 read\n";
        EXPECT(rl_auth_parse(nul, sizeof nul - 1, "f", &a, err, sizeof err) ==
                   -1 &&
               strstr(err, "f:2: the line holds a NUL"));
    }
    /* An empty file is valid: it grants nothing. */
    EXPECT(rl_auth_parse("", 0, "f", &a, err, sizeof err) == 0 &&
           rl_auth_anonymous(a) == 0);
    rl_auth_free(a);
}

static void test_load(void)
{
    char dir[] = "/tmp/rlauthXXXXXX", path[128], link[128], err[512] = "";
    rl_auth *a = NULL;
    FILE *f;
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/auth", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    f = fopen(path, "w");
    EXPECT(f != NULL);
    fprintf(f, "cert app read\n");
    fclose(f);
    EXPECT(chmod(path, 0644) == 0);
    EXPECT(rl_auth_load(path, &a, err, sizeof err) == -1 &&
           strstr(err, "chmod 600") && strstr(err, "mode 644"));
    EXPECT(chmod(path, 0640) == 0);
    EXPECT(rl_auth_load(path, &a, err, sizeof err) == -1 &&
           strstr(err, "chmod 600"));
    EXPECT(chmod(path, 0600) == 0);
    EXPECT(rl_auth_load(path, &a, err, sizeof err) == 0 &&
           !strcmp(rl_auth_file(a), path));
    rl_auth_free(a);
    EXPECT(symlink(path, link) == 0);
    EXPECT(rl_auth_load(link, &a, err, sizeof err) == -1 &&
           strstr(err, "symbolic link"));
    EXPECT(rl_auth_load(dir, &a, err, sizeof err) == -1);
    snprintf(path + strlen(path), sizeof path - strlen(path), ".none");
    EXPECT(rl_auth_load(path, &a, err, sizeof err) == -1 &&
           strstr(err, "cannot open the auth file"));
    unlink(link);
    path[strlen(path) - 5] = 0;
    unlink(path);
    rmdir(dir);
}

static int member(void *ctx, const char *id)
{
    (void)ctx;
    return !strcmp(id, "n1") || !strcmp(id, "n2");
}

static rl_auth_caller cert(enum rl_cert_role role, const char *name)
{
    rl_auth_caller c;
    memset(&c, 0, sizeof c);
    c.tls = 1;
    c.has_cert = 1;
    c.cert.role = role;
    snprintf(c.cert.name, sizeof c.cert.name, "%s", name);
    return c;
}

/* rl_auth_decide; expects code and, if not 0, a message holding want1 and
** want2. */
static void verdict(const rl_auth_server *s, const char *method,
                    rl_auth_caller c, const char *join_id, int code,
                    const char *want1, const char *want2, int line)
{
    char err[RL_RPC_ERRMAX] = "";
    int rc = rl_auth_decide(s, method, &c, join_id, NULL, 0, err, sizeof err);
    if (rc != code || (code && (!strstr(err, want1) || !strstr(err, want2)))) {
        fprintf(stderr,
                "line %d: %s: got %d '%s', want %d with '%s' and '%s'\n", line,
                method, rc, err, code, want1, want2);
        rl_failures++;
    }
}
#define V(s, m, c, j, code, w1, w2) verdict(s, m, c, j, code, w1, w2, __LINE__)
#define DENIED                      RL_RPC_PERMISSION_DENIED
#define UNAUTH                      RL_RPC_UNAUTHENTICATED

static void test_decide(void)
{
    rl_auth_server open = {NULL, 0, member, NULL},
                   mtls = {NULL, 1, member, NULL};
    rl_auth_server withfile = {NULL, 1, member, NULL};
    rl_auth_caller anon, cl = cert(RL_CERT_CLIENT, "app"),
                         n1 = cert(RL_CERT_NODE, "n1"),
                         n9 = cert(RL_CERT_NODE, "n9"), u;
    rl_auth *a = NULL;
    memset(&anon, 0, sizeof anon);

    /* No auth file, no mutual TLS: nothing can be checked. */
    V(&open, "ForwardTxn", anon, NULL, 0, "", "");
    V(&open, "Join", anon, "x", 0, "", "");
    V(&open, "ExecuteWrite", anon, NULL, 0, "", "");
    /* ... but a password over plaintext is refused, never checked. */
    u = anon;
    u.user = "alice";
    u.password = "s3cret";
    V(&open, "ExecuteRead", u, NULL, UNAUTH, "over TLS only", "plaintext");

    /* Mutual TLS without an auth file: clients read, write, status. */
    V(&mtls, "ExecuteWrite", cl, NULL, 0, "", "");
    V(&mtls, "ExecuteRead", cl, NULL, 0, "", "");
    V(&mtls, "Status", cl, NULL, 0, "", "");
    V(&mtls, "Join", cl, "app", DENIED, "permission 'admin'",
      "client certificate 'app'");
    V(&mtls, "Remove", cl, NULL, DENIED, "permission 'admin'",
      "client certificate 'app'");
    V(&mtls, "Transfer", cl, NULL, DENIED, "'admin'", "'app'");
    V(&mtls, "FetchImage", cl, NULL, DENIED, "permission 'backup'", "'app'");
    V(&mtls, "ForwardTxn", cl, NULL, DENIED, "permission 'node'",
      "client certificate 'app'");
    V(&mtls, "ReadIndex", cl, NULL, DENIED, "'node'", "'app'");
    /* A member node may call everything (it forwards its clients). */
    V(&mtls, "ForwardTxn", n1, NULL, 0, "", "");
    V(&mtls, "ReadIndex", n1, NULL, 0, "", "");
    V(&mtls, "FetchImage", n1, NULL, 0, "", "");
    V(&mtls, "Remove", n1, NULL, 0, "", "");
    V(&mtls, "ExecuteWrite", n1, NULL, 0, "", "");
    V(&mtls, "Join", n1, "n7", 0, "", ""); /* forwarded by a member */
    /* A node that is not a member: only its own Join, and status. */
    V(&mtls, "Join", n9, "n9", 0, "", "");
    V(&mtls, "Join", n9, "n3", DENIED, "may join only as 'n9'", "'n3'");
    V(&mtls, "ReadIndex", n9, NULL, DENIED, "'node'",
      "node 'n9' (not a member");
    V(&mtls, "ForwardTxn", n9, NULL, DENIED, "'node'", "not a member");
    V(&mtls, "FetchImage", n9, NULL, DENIED, "'backup'", "not a member");
    V(&mtls, "Remove", n9, NULL, DENIED, "'admin'", "not a member");
    V(&mtls, "ExecuteWrite", n9, NULL, DENIED, "'write'", "node 'n9'");
    V(&mtls, "Status", n9, NULL, 0, "", "");
    /* The image header (page size, index) a node reads before it joins. */
    V(&mtls, "FetchImageHeader", n9, NULL, 0, "", "");
    V(&mtls, "NoSuchMethod", n1, NULL, DENIED, "not in the method table", "");
    /* A certificate without a usable identity is anonymous. */
    anon.tls = 1;
    anon.cert_err = "no CN";
    V(&mtls, "ExecuteRead", anon, NULL, UNAUTH, "carried no credentials",
      "'read'");
    anon.cert_err = NULL;

    /* An auth file. */
    parse_accepted(&a, "user alice %s read,status\n"
                       "user bob %s read,write\n"
                       "cert app read\n"
                       "cert ops admin,backup\n"
                       "anonymous status\n");
    withfile.auth = a;
    V(&withfile, "ExecuteRead", cl, NULL, 0, "", "");
    V(&withfile, "ExecuteWrite", cl, NULL, DENIED, "permission 'write'",
      "client certificate 'app'");
    V(&withfile, "ExecuteWrite", cl, NULL, DENIED, "auth file auth.conf", "");
    V(&withfile, "Remove", cert(RL_CERT_CLIENT, "ops"), NULL, 0, "", "");
    V(&withfile, "Join", cert(RL_CERT_CLIENT, "ops"), "n5", 0, "", "");
    V(&withfile, "FetchImage", cert(RL_CERT_CLIENT, "ops"), NULL, 0, "", "");
    V(&withfile, "ForwardTxn", cert(RL_CERT_CLIENT, "ops"), NULL, DENIED,
      "'node'", "'ops'");
    /* A certificate the file does not list gets the anonymous rights. */
    V(&withfile, "Status", cert(RL_CERT_CLIENT, "stranger"), NULL, 0, "", "");
    V(&withfile, "ExecuteRead", cert(RL_CERT_CLIENT, "stranger"), NULL, DENIED,
      "'read'", "'stranger'");
    u = cl;
    u.user = "alice";
    u.password = "s3cret";
    V(&withfile, "ExecuteRead", u, NULL, 0, "", "");
    V(&withfile, "ExecuteWrite", u, NULL, DENIED, "permission 'write'",
      "user 'alice'");
    u.password = "wrong";
    V(&withfile, "ExecuteRead", u, NULL, UNAUTH, "wrong password", "'alice'");
    u.user = "mallory";
    V(&withfile, "ExecuteRead", u, NULL, UNAUTH, "unknown user", "'mallory'");
    u.user = "bob";
    u.password = "pw2";
    V(&withfile, "ExecuteWrite", u, NULL, 0, "", "");
    u.password = NULL;
    V(&withfile, "ExecuteWrite", u, NULL, UNAUTH, "go together", "");
    u.tls = 0;
    u.password = "pw2";
    V(&withfile, "ExecuteWrite", u, NULL, UNAUTH, "over TLS only", "");
    /* Server-only TLS with an auth file: a caller without credentials. */
    withfile.mtls = 0;
    memset(&anon, 0, sizeof anon);
    anon.tls = 1;
    V(&withfile, "Status", anon, NULL, 0, "", "");
    V(&withfile, "ExecuteRead", anon, NULL, UNAUTH, "carried no credentials",
      "'read'");
    V(&withfile, "ForwardTxn", anon, NULL, UNAUTH, "'node'", "anonymous");
    rl_auth_free(a);

    {
        char list[64];
        rl_perm_list(RL_PERM_READ | RL_PERM_BACKUP, list, sizeof list);
        EXPECT(!strcmp(list, "read,backup"));
        rl_perm_list(0, list, sizeof list);
        EXPECT(!strcmp(list, "none"));
    }
}

int main(void)
{
    make_hashes();
    test_parse();
    test_load();
    test_decide();
    return rl_check_report("test_auth");
}
