/*
** lib/addr.c -- address checks (see addr.h). Pure parsing plus, for a
** Raft address given as a host name, one getaddrinfo look-up to suggest
** the numeric form; it never binds, and connects only in
** rl_addr_reachable (a probe closed before any byte is sent).
*/
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The port after the last ':' of a (1..65535), or -1. */
static long port_of(const char *a, const char **colon_out)
{
    const char *colon = strrchr(a, ':'), *p;
    long port = 0;
    *colon_out = colon;
    if (!colon || !colon[1])
        return -1;
    for (p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            return -1;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535 ? port : -1;
}

int rl_addr_check(const char *addr, enum rl_addr_kind kind, const char *what,
                  char *err, size_t errlen)
{
    const char *colon;
    char host[256];
    size_t hn;
    long port;
    struct in_addr in;

    if (!addr || !*addr) {
        snprintf(err, errlen, "%s is empty; write it like 127.0.0.1:7001",
                 what);
        return -1;
    }
    port = port_of(addr, &colon);
    if (!colon) {
        snprintf(err, errlen,
                 "%s '%s' is not host:port; write it like 127.0.0.1:7001", what,
                 addr);
        return -1;
    }
    if (port < 0) {
        snprintf(err, errlen,
                 "%s '%s' needs a numeric port 1..65535 after the last ':', "
                 "e.g. 127.0.0.1:7001",
                 what, addr);
        return -1;
    }
    hn = (size_t)(colon - addr);
    if (hn >= sizeof host) {
        snprintf(err, errlen,
                 "%s '%.40s...' has a host part longer than %zu "
                 "bytes",
                 what, addr, sizeof host - 1);
        return -1;
    }
    memcpy(host, addr, hn);
    host[hn] = 0;
    if (kind == RL_ADDR_GRPC)
        return 0; /* a name, an IP, [IPv6] or empty (all interfaces) */
    if (inet_pton(AF_INET, host, &in) == 1)
        return 0;
    {
        /* A host name (or IPv6): say what to write instead. */
        struct addrinfo hints, *res = NULL;
        char ip[INET_ADDRSTRLEN] = "";
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        if (hn && getaddrinfo(host, NULL, &hints, &res) == 0 && res) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr,
                      ip, sizeof ip);
        }
        if (res)
            freeaddrinfo(res);
        if (ip[0])
            snprintf(err, errlen,
                     "%s '%s' names a host; the Raft transport takes a "
                     "numeric IPv4 address: write %s:%ld",
                     what, addr, ip, port);
        else
            snprintf(err, errlen,
                     "%s '%s' is not a numeric IPv4 address%s; the Raft "
                     "transport takes IPv4:PORT, e.g. 127.0.0.1:%ld",
                     what, addr,
                     hn ? " (and the host does not resolve to one)" : "", port);
        return -1;
    }
}

int rl_node_id_check(const char *id, size_t max_len, const char *what,
                     char *err, size_t errlen)
{
    size_t n = id ? strlen(id) : 0;
    const char *p;
    if (n == 0) {
        snprintf(err, errlen, "%s is empty; give a name such as node1", what);
        return -1;
    }
    if (n > max_len) {
        snprintf(err, errlen, "%s is %zu bytes; at most %zu are allowed", what,
                 n, max_len);
        return -1;
    }
    if (!strcmp(id, ".") || !strcmp(id, "..")) {
        snprintf(err, errlen,
                 "%s '%s' cannot name a node; use letters, "
                 "digits, '-', '_' or '.'",
                 what, id);
        return -1;
    }
    for (p = id; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '/') {
            snprintf(err, errlen,
                     "%s contains %s 0x%02x; a node id is printable text "
                     "without '/' (it names a directory and a line of the "
                     "identity file)",
                     what, c == '/' ? "the path separator" : "the character",
                     (unsigned)c);
            return -1;
        }
    }
    return 0;
}

int rl_addr_is_loopback(const char *addr)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    char host[256];
    size_t hn;
    struct in_addr in;
    struct in6_addr in6;
    if (!colon)
        return 0;
    hn = (size_t)(colon - addr);
    if (hn >= sizeof host)
        return 0;
    memcpy(host, addr, hn);
    host[hn] = 0;
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        memmove(host, host + 1, hn - 2);
        host[hn - 2] = 0;
    }
    if (!strcmp(host, "localhost"))
        return 1;
    if (inet_pton(AF_INET, host, &in) == 1)
        return (ntohl(in.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &in6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&in6);
    return 0;
}

int rl_addr_exposed_check(const char *addr, const char *what, int tls,
                          int insecure, const char *insecure_flag, char *err,
                          size_t errlen)
{
    if (tls || insecure || rl_addr_is_loopback(addr))
        return 0;
    snprintf(err, errlen,
             "%s %s%s is not a loopback address and this node has no TLS: "
             "anyone who reaches it could join, read and change the "
             "cluster. Give the node TLS (raftd -tls-cert/-tls-key/-tls-ca "
             "-tls-client-auth, URI raft_tls_*), or bind 127.0.0.1; %s "
             "allows it without TLS, for a trusted private network only",
             what, addr, addr[0] == ':' ? " (every interface)" : "",
             insecure_flag);
    return -1;
}

int rl_addr_reachable(const char *addr, int ms, char *why, size_t whylen)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa;
    struct pollfd pfd;
    int fd, rc, soerr = 0;
    socklen_t sl = sizeof soerr;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        snprintf(why, whylen, "not IPv4:PORT");
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || atoi(colon + 1) <= 0 ||
        atoi(colon + 1) > 65535) {
        snprintf(why, whylen, "not IPv4:PORT");
        return -1;
    }
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return -1;
    }
    rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    if (rc != 0 && errno == EINPROGRESS) {
        pfd.fd = fd;
        pfd.events = POLLOUT;
        do {
            rc = poll(&pfd, 1, ms);
        } while (rc < 0 && errno == EINTR);
        if (rc == 0) {
            snprintf(why, whylen, "no answer within %d ms", ms);
            close(fd);
            return -1;
        }
        rc = rc > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
                     soerr == 0
                 ? 0
                 : -1;
        if (rc != 0)
            errno = soerr ? soerr : errno;
    }
    if (rc != 0)
        snprintf(why, whylen, "%s", strerror(errno));
    close(fd);
    return rc;
}
