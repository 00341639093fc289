/*
** tests/unit/test_certid.c -- lib/certid.c alone: certificates made in
** memory with OpenSSL (self-signed; trust is not this module's concern)
** carrying node and client identities, and every refusal: two raftlite
** URIs, a node id with a '/', no identity at all, a name too long, bad
** PEM. Also the PEM path gRPC's auth context uses.
*/
#include "certid.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "lib/check.h"

static EVP_PKEY *key;

/* A self-signed certificate with subject CN cn (NULL: none) and the
** subjectAltName san (NULL: none), e.g. "URI:raftlite:node:n1". */
static X509 *make(const char *cn, const char *san)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_get_subject_name(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    if (cn)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (san) {
        X509V3_CTX ctx;
        X509_EXTENSION *ext;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        EXPECT(ext != NULL);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    return x;
}

/* Identity of a certificate made from cn and san: rc and *out. */
static int ident(const char *cn, const char *san, rl_cert_id *out, char *err)
{
    X509 *x = make(cn, san);
    int rc = rl_cert_identity(x, out, err, 256);
    X509_free(x);
    return rc;
}

int main(void)
{
    rl_cert_id id;
    char err[256], longname[300], longsan[340];
    key = EVP_RSA_gen(2048);
    EXPECT(key != NULL);

    /* A node certificate: the URI names role and id; the CN is ignored. */
    EXPECT(ident("whatever", "URI:raftlite:node:n1,DNS:localhost", &id, err) ==
           0);
    EXPECT(id.role == RL_CERT_NODE && !strcmp(id.name, "n1"));
    /* A client certificate by URI, and by CN alone. */
    EXPECT(ident("x", "URI:raftlite:client:app", &id, err) == 0);
    EXPECT(id.role == RL_CERT_CLIENT && !strcmp(id.name, "app"));
    EXPECT(ident("reporting", "DNS:localhost", &id, err) == 0);
    EXPECT(id.role == RL_CERT_CLIENT && !strcmp(id.name, "reporting"));
    EXPECT(ident("web", NULL, &id, err) == 0);
    EXPECT(id.role == RL_CERT_CLIENT && !strcmp(id.name, "web"));
    /* Other URIs are not ours. */
    EXPECT(ident("c", "URI:spiffe://x/y,URI:raftlite:node:n2", &id, err) == 0);
    EXPECT(id.role == RL_CERT_NODE && !strcmp(id.name, "n2"));

    /* Refusals, each with its reason. */
    EXPECT(ident("c", "URI:raftlite:node:n1,URI:raftlite:client:c", &id, err) ==
           -1);
    EXPECT(strstr(err, "two raftlite identities") != NULL);
    EXPECT(ident("c", "URI:raftlite:node:a/b", &id, err) == -1);
    EXPECT(strstr(err, "node id") != NULL);
    EXPECT(ident("c", "URI:raftlite:node:..", &id, err) == -1);
    EXPECT(ident(NULL, "DNS:localhost", &id, err) == -1);
    EXPECT(strstr(err, "neither") != NULL);
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    snprintf(longsan, sizeof longsan, "URI:raftlite:client:%s", longname);
    EXPECT(ident("c", longsan, &id, err) == -1);
    EXPECT(strstr(err, "longer") != NULL);
    EXPECT(rl_cert_identity(NULL, &id, err, sizeof err) == -1);

    /* PEM, as gRPC hands it over. */
    {
        X509 *x = make("c", "URI:raftlite:node:n3");
        BIO *b = BIO_new(BIO_s_mem());
        char *pem;
        long n;
        PEM_write_bio_X509(b, x);
        n = BIO_get_mem_data(b, &pem);
        EXPECT(rl_cert_identity_pem(pem, (size_t)n, &id, err, sizeof err) == 0);
        EXPECT(id.role == RL_CERT_NODE && !strcmp(id.name, "n3"));
        EXPECT(rl_cert_identity_pem(pem, 20, &id, err, sizeof err) == -1);
        EXPECT(strstr(err, "PEM") != NULL);
        EXPECT(rl_cert_identity_pem("", 0, &id, err, sizeof err) == -1);
        BIO_free(b);
        X509_free(x);
    }
    EVP_PKEY_free(key);
    return rl_check_report("test_certid");
}
