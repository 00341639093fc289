"""tests/lib/rltls.py -- certificates for the TLS tests, made with openssl
in a scratch directory: a CA, and certificates it signs for servers
(127.0.0.1 / localhost), clients, or nodes (both: a node serves gRPC and
calls its peers with the same certificate). A node's certificate carries
the SAN URI raftlite:node:<id> (make_node_cert): Raft's mutual TLS and
the gRPC API's node-to-node methods accept member nodes only."""
import os
import subprocess

from rltest import fail


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd,
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("openssl %s failed:\n%s" % (" ".join(args), r.stderr))


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=%s" % name, "-keyout", name + ".key",
            "-out", name + ".pem", cwd=d)


def make_cert(d, ca, name, server, client=None, uri=None):
    """server: serverAuth with SANs for 127.0.0.1 and localhost; client
    (default: not server): clientAuth. Both for a node. uri: a
    subjectAltName URI (raftlite:node:<id> marks a node, see
    lib/certid.h)."""
    if client is None:
        client = not server
    ext = os.path.join(d, name + ".ext")
    uses = [u for u, on in (("serverAuth", server), ("clientAuth", client))
            if on]
    sans = (["IP:127.0.0.1", "DNS:localhost"] if server else []) + \
        (["URI:" + uri] if uri else [])
    with open(ext, "w") as f:
        if sans:
            f.write("subjectAltName=%s\n" % ",".join(sans))
        f.write("extendedKeyUsage=%s\n" % ",".join(uses))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name,
            "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
            "-CAkey", ca + ".key", "-CAcreateserial", "-days", "2",
            "-extfile", ext, "-out", name + ".pem", cwd=d)


def make_node_cert(d, ca, node_id, name=None):
    """The certificate of node `node_id` (file name `name`, default the
    id): serves gRPC, calls peers, and carries raftlite:node:<id>, which
    the Raft transport requires of every peer."""
    make_cert(d, ca, name or node_id, True, True,
              uri="raftlite:node:%s" % node_id)


def rd(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()
