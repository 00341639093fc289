/*
** tests/unit/test_addr.c -- the safe-by-default parts of lib/addr.c:
** which addresses are loopback, the refusal of an exposed address without
** TLS (naming the flag that allows it) and the reachability probe a
** leader runs on a joining node's Raft address (a listening socket, a
** closed port, a malformed address).
*/
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/check.h"

static void test_loopback(void)
{
    static const char *const yes[] = {"127.0.0.1:1", "127.9.8.7:65535",
                                      "[::1]:80", "localhost:5000"};
    static const char *const no[] = {
        "0.0.0.0:1",      ":50051",      "10.0.0.1:7001", "[::]:80",
        "example.com:80", "128.0.0.1:1", "nocolon",       ""};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        EXPECT(rl_addr_is_loopback(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        EXPECT(!rl_addr_is_loopback(no[i]));
}

static void test_exposed(void)
{
    char err[512] = "";
    EXPECT(rl_addr_exposed_check("127.0.0.1:1", "-grpc", 0, 0, "-insecure", err,
                                 sizeof err) == 0);
    EXPECT(rl_addr_exposed_check("10.0.0.1:1", "-grpc", 1, 0, "-insecure", err,
                                 sizeof err) == 0);
    EXPECT(rl_addr_exposed_check("10.0.0.1:1", "-grpc", 0, 1, "-insecure", err,
                                 sizeof err) == 0);
    EXPECT(rl_addr_exposed_check(":50051", "-grpc", 0, 0, "-insecure", err,
                                 sizeof err) == -1);
    EXPECT(strstr(err, "-grpc :50051 (every interface) is not a loopback") &&
           strstr(err, "-insecure allows it"));
}

static void test_reachable(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    char addr[64], why[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
           listen(fd, 4) == 0 &&
           getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    EXPECT(rl_addr_reachable(addr, 2000, why, sizeof why) == 0);
    close(fd); /* nobody listens there now */
    why[0] = 0;
    EXPECT(rl_addr_reachable(addr, 2000, why, sizeof why) == -1 &&
           strstr(why, "refused"));
    EXPECT(rl_addr_reachable("localhost:1", 100, why, sizeof why) == -1 &&
           strstr(why, "not IPv4:PORT"));
    EXPECT(rl_addr_reachable("127.0.0.1:0", 100, why, sizeof why) == -1);
}

int main(void)
{
    test_loopback();
    test_exposed();
    test_reachable();
    return rl_check_report("test_addr");
}
