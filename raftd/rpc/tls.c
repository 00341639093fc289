/*
** raftd/rpc/tls.c -- the wrapper's TLS credentials: PEM files read and
** checked, server credentials (optionally requiring and verifying client
** certificates) and channel credentials.
**
** It must never accept a half setting silently (a certificate without its
** key, mutual TLS without a CA): it says which flag is missing.
*/
#include "rpc_int.h"
#include "errbuf.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reads a whole PEM file into a NUL-terminated malloc'd string. */
static char *read_pem(const char *path, const char *what, char *err,
                      size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f) {
        rl_seterr(err, errlen, "cannot open TLS %s file %s: %s", what, path,
                  strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        rl_seterr(err, errlen, "cannot read TLS %s file %s", what, path);
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        rl_seterr(err, errlen, "cannot read TLS %s file %s", what, path);
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = 0;
    fclose(f);
    if (!strstr(buf, "-----BEGIN")) {
        rl_seterr(err, errlen, "TLS %s file %s is not PEM (no -----BEGIN line)",
                  what, path);
        free(buf);
        return NULL;
    }
    return buf;
}

grpc_server_credentials *rl_rpc_server_creds(const rl_rpc_tls *t, char *err,
                                             size_t errlen)
{
    grpc_server_credentials *creds = NULL;
    char *cert = NULL, *key = NULL, *ca = NULL;
    if (!t || (!t->cert_file && !t->key_file && !t->ca_file)) {
        return grpc_insecure_server_credentials_create();
    }
    if (!t->cert_file || !t->key_file) {
        rl_seterr(err, errlen,
                  "TLS needs both a certificate and a key file "
                  "(-tls-cert and -tls-key)");
    } else if (t->client_auth && !t->ca_file) {
        rl_seterr(err, errlen,
                  "mutual TLS (-tls-client-auth) needs the CA "
                  "that signs client certificates (-tls-ca)");
    } else if ((cert = read_pem(t->cert_file, "certificate", err, errlen)) &&
               (key = read_pem(t->key_file, "key", err, errlen)) &&
               (!t->ca_file ||
                (ca = read_pem(t->ca_file, "CA", err, errlen)))) {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds = grpc_ssl_server_credentials_create_ex(
            ca, &pair, 1,
            t->client_auth
                ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            NULL);
        if (!creds) {
            rl_seterr(err, errlen, "gRPC rejected the TLS certificate/key");
        }
    }
    free(cert);
    free(key);
    free(ca);
    return creds;
}

grpc_channel_credentials *rl_rpc_channel_creds(const rl_rpc_tls *tls, char *err,
                                               size_t errlen)
{
    grpc_channel_credentials *creds = NULL;
    char *cert = NULL, *key = NULL, *ca = NULL;
    int ok = 1;
    if (!tls || (!tls->cert_file && !tls->key_file && !tls->ca_file)) {
        return grpc_insecure_credentials_create();
    }
    if (!tls->cert_file != !tls->key_file) {
        rl_seterr(err, errlen,
                  "a client certificate needs its key file and "
                  "the other way round");
        ok = 0;
    }
    if (ok && tls->ca_file &&
        !(ca = read_pem(tls->ca_file, "CA", err, errlen))) {
        ok = 0;
    }
    if (ok && tls->cert_file &&
        (!(cert = read_pem(tls->cert_file, "certificate", err, errlen)) ||
         !(key = read_pem(tls->key_file, "key", err, errlen)))) {
        ok = 0;
    }
    if (ok) {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds =
            grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
        if (!creds) {
            rl_seterr(err, errlen, "gRPC rejected the TLS settings");
        }
    }
    free(cert);
    free(key);
    free(ca);
    return creds;
}
