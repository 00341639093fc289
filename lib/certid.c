/*
** lib/certid.c -- the identity a verified certificate carries (see
** certid.h for the convention). Pure parsing with OpenSSL: it must never
** accept a certificate that names two identities, nor a node id that
** could not name a node (ids end up in paths and logs).
*/
#include "certid.h"

#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "addr.h"

/* Copies the n bytes of s to out->name; -1 if they do not fit or hold a
** NUL (an ASN.1 string may contain one; a name must not). */
static int set_name(rl_cert_id *out, const unsigned char *s, size_t n,
                    char *err, size_t errlen)
{
    if (n >= sizeof out->name || memchr(s, '\0', n)) {
        snprintf(err, errlen,
                 "certificate identity is longer than %zu bytes or holds a NUL",
                 sizeof out->name - 1);
        return -1;
    }
    memcpy(out->name, s, n);
    out->name[n] = '\0';
    return 0;
}

/* Looks for one raftlite URI among the subjectAltNames: 1 found (out
** filled), 0 none, -1 error. */
static int from_san(X509 *cert, rl_cert_id *out, char *err, size_t errlen)
{
    GENERAL_NAMES *names =
        X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int found = 0, rc = 0;
    if (!names)
        return 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && rc == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        const unsigned char *s;
        size_t n, pn;
        enum rl_cert_role role;
        if (g->type != GEN_URI)
            continue;
        s = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        n = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (n > strlen(RL_CERT_NODE_PREFIX) &&
            !memcmp(s, RL_CERT_NODE_PREFIX, strlen(RL_CERT_NODE_PREFIX))) {
            role = RL_CERT_NODE;
            pn = strlen(RL_CERT_NODE_PREFIX);
        } else if (n > strlen(RL_CERT_CLIENT_PREFIX) &&
                   !memcmp(s, RL_CERT_CLIENT_PREFIX,
                           strlen(RL_CERT_CLIENT_PREFIX))) {
            role = RL_CERT_CLIENT;
            pn = strlen(RL_CERT_CLIENT_PREFIX);
        } else {
            continue; /* some other URI: not ours */
        }
        if (found) {
            snprintf(err, errlen,
                     "certificate names two raftlite identities in its "
                     "subjectAltName; issue it with exactly one");
            rc = -1;
            break;
        }
        found = 1;
        out->role = role;
        if (set_name(out, s + pn, n - pn, err, errlen) != 0)
            rc = -1;
    }
    GENERAL_NAMES_free(names);
    return rc < 0 ? -1 : found;
}

int rl_cert_identity(X509 *cert, rl_cert_id *out, char *err, size_t errlen)
{
    int rc;
    memset(out, 0, sizeof *out);
    if (!cert) {
        snprintf(err, errlen, "no certificate");
        return -1;
    }
    rc = from_san(cert, out, err, errlen);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        /* No raftlite URI: a client named by its subject CN. */
        X509_NAME *subj = X509_get_subject_name(cert);
        int at =
            subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
        ASN1_STRING *cn;
        if (at < 0) {
            snprintf(err, errlen,
                     "certificate has neither a raftlite: URI in its "
                     "subjectAltName nor a subject CN");
            return -1;
        }
        cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, at));
        out->role = RL_CERT_CLIENT;
        if (set_name(out, ASN1_STRING_get0_data(cn),
                     (size_t)ASN1_STRING_length(cn), err, errlen) != 0)
            return -1;
        if (out->name[0] == '\0') {
            snprintf(err, errlen, "certificate's subject CN is empty");
            return -1;
        }
    }
    if (out->role == RL_CERT_NODE) {
        char why[160];
        if (rl_node_id_check(out->name, sizeof out->name - 1,
                             "the certificate's node id", why,
                             sizeof why) != 0) {
            snprintf(err, errlen, "%s", why);
            return -1;
        }
    }
    return 0;
}

int rl_cert_identity_pem(const char *pem, size_t len, rl_cert_id *out,
                         char *err, size_t errlen)
{
    BIO *bio;
    X509 *cert;
    int rc;
    if (!pem || len == 0 || len > 1 << 20) {
        snprintf(err, errlen, "no PEM certificate (or one over 1 MiB)");
        return -1;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!cert) {
        snprintf(err, errlen, "the peer certificate is not valid PEM");
        return -1;
    }
    rc = rl_cert_identity(cert, out, err, errlen);
    X509_free(cert);
    return rc;
}
