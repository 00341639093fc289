/*
** tests/unit/test_doormsg.c -- the messages of a host's local door
** (raftd/host/doormsg.c): every message round-trips, every malformed one is
** refused with a reason, limits hold at their edges.
**
**   test_doormsg                      run the checks
**   test_doormsg --write-seeds DIR    write a seed corpus for
**                                     tests/fuzz/fuzz_door (the real
**                                     encoders' messages)
*/
#include "doormsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "lib/check.h"
#include "lib/seeds.h"

static void test_header(void)
{
    uint8_t b[RL_DOOR_HDR];
    rl_door_hdr h;
    char e[256];
    rl_door_hdr_put(b, RL_DOOR_HINT, 4);
    CHECK(rl_door_hdr_get(b, RL_DOOR_COMMIT, RL_DOOR_READ, 100, &h, e,
                          sizeof e) == 0,
          "%s", e);
    CHECK(h.kind == RL_DOOR_HINT && h.len == 4);
    /* Bad magic. */
    b[0] ^= 1;
    e[0] = 0;
    CHECK(rl_door_hdr_get(b, 1, 5, 100, &h, e, sizeof e) == -1);
    CHECK(strstr(e, "not a door message"), "%s", e);
    b[0] ^= 1;
    /* A kind outside what the receiver expects. */
    CHECK(rl_door_hdr_get(b, RL_DOOR_ANSWER, RL_DOOR_ANSWER, 100, &h, e,
                          sizeof e) == -1);
    CHECK(strstr(e, "unexpected message kind 3"), "%s", e);
    /* The length limit, at its edge. */
    rl_door_hdr_put(b, RL_DOOR_COMMIT, 100);
    CHECK(rl_door_hdr_get(b, 1, 5, 100, &h, e, sizeof e) == 0);
    rl_door_hdr_put(b, RL_DOOR_COMMIT, 101);
    CHECK(rl_door_hdr_get(b, 1, 5, 100, &h, e, sizeof e) == -1);
    CHECK(strstr(e, "101-byte message"), "%s", e);
}

static void test_requests(void)
{
    uint8_t b[RL_DOOR_HDR + RL_DOOR_COMMIT_FIXED + 8];
    rl_door_hdr h;
    rl_door_req r;
    char e[256];
    /* COMMIT: the header and fixed part, then the payload. */
    CHECK(rl_door_commit_head(b, 77, 9, 8) == 0);
    memcpy(b + RL_DOOR_HDR + RL_DOOR_COMMIT_FIXED, "RLTXdata", 8);
    CHECK(rl_door_hdr_get(b, RL_DOOR_COMMIT, RL_DOOR_READ, 1000, &h, e,
                          sizeof e) == 0);
    CHECK(h.len == RL_DOOR_COMMIT_FIXED + 8);
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == 0, "%s",
          e);
    CHECK(r.kind == RL_DOOR_COMMIT && r.base == 77 && r.txn == 9 &&
          r.len == 8 && memcmp(r.payload, "RLTXdata", 8) == 0);
    CHECK(r.payload == b + RL_DOOR_HDR + RL_DOOR_COMMIT_FIXED);
    /* A COMMIT without a transaction: refused by encoder and decoder. */
    CHECK(rl_door_commit_head(b, 1, 1, 0) == -1);
    h.kind = RL_DOOR_COMMIT;
    h.len = RL_DOOR_COMMIT_FIXED;
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == -1);
    CHECK(strstr(e, "carries no transaction"), "%s", e);
    h.len = 3;
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == -1);
    /* HINT and READ: a wait in [1, RL_DOOR_MAX_WAIT_MS]. */
    rl_door_ask_put(b, RL_DOOR_READ, 2000);
    CHECK(rl_door_hdr_get(b, RL_DOOR_COMMIT, RL_DOOR_READ, 1000, &h, e,
                          sizeof e) == 0);
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == 0);
    CHECK(r.kind == RL_DOOR_READ && r.wait_ms == 2000);
    rl_door_ask_put(b, RL_DOOR_HINT, RL_DOOR_MAX_WAIT_MS);
    CHECK(rl_door_hdr_get(b, 1, 5, 1000, &h, e, sizeof e) == 0);
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == 0);
    CHECK(r.kind == RL_DOOR_HINT && r.wait_ms == RL_DOOR_MAX_WAIT_MS);
    rl_door_ask_put(b, RL_DOOR_HINT, RL_DOOR_MAX_WAIT_MS + 1);
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == -1);
    CHECK(strstr(e, "a wait of"), "%s", e);
    rl_door_ask_put(b, RL_DOOR_HINT, 0);
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == -1);
    h.len = 5;
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == -1);
    CHECK(strstr(e, "4 expected"), "%s", e);
    /* An answer or a greeting is no request. */
    h.kind = RL_DOOR_ANSWER;
    h.len = 4;
    CHECK(rl_door_req_decode(&h, b + RL_DOOR_HDR, &r, e, sizeof e) == -1);
    CHECK(strstr(e, "not a request"), "%s", e);
}

static void test_answers(void)
{
    static uint8_t b[RL_DOOR_HDR + 20 + RL_DOOR_TEXT_MAX + 64];
    static char big[RL_DOOR_TEXT_MAX + 50];
    static rl_door_ans a;
    rl_door_hdr h;
    uint32_t st = 99;
    char e[256];
    size_t n = rl_door_ans_put(b, 5, 1234, 1200, "conflict: retry");
    CHECK(n == RL_DOOR_HDR + 20 + 15);
    CHECK(rl_door_hdr_get(b, RL_DOOR_ANSWER, RL_DOOR_ANSWER,
                          20 + RL_DOOR_TEXT_MAX, &h, e, sizeof e) == 0);
    CHECK(rl_door_ans_decode(&h, b + RL_DOOR_HDR, &a, e, sizeof e) == 0, "%s",
          e);
    CHECK(a.status == 5 && a.index == 1234 && a.L == 1200 &&
          strcmp(a.text, "conflict: retry") == 0);
    /* Text is cut at its limit. */
    memset(big, 'x', sizeof big - 1);
    n = rl_door_ans_put(b, 1, 0, 0, big);
    CHECK(n == RL_DOOR_HDR + 20 + RL_DOOR_TEXT_MAX);
    CHECK(rl_door_hdr_get(b, RL_DOOR_ANSWER, RL_DOOR_ANSWER,
                          20 + RL_DOOR_TEXT_MAX, &h, e, sizeof e) == 0);
    CHECK(rl_door_ans_decode(&h, b + RL_DOOR_HDR, &a, e, sizeof e) == 0);
    CHECK(strlen(a.text) == RL_DOOR_TEXT_MAX);
    /* A NUL inside the text, a body too short or too long. */
    n = rl_door_ans_put(b, 1, 0, 0, "abc");
    b[RL_DOOR_HDR + 21] = 0;
    rl_door_hdr_get(b, 1, 5, 5000, &h, e, sizeof e);
    CHECK(rl_door_ans_decode(&h, b + RL_DOOR_HDR, &a, e, sizeof e) == -1);
    CHECK(strstr(e, "NUL"), "%s", e);
    h.len = 19;
    CHECK(rl_door_ans_decode(&h, b + RL_DOOR_HDR, &a, e, sizeof e) == -1);
    h.len = 20 + RL_DOOR_TEXT_MAX + 1;
    CHECK(rl_door_ans_decode(&h, b + RL_DOOR_HDR, &a, e, sizeof e) == -1);
    /* Greetings. */
    rl_door_hello_put(b, RL_DOOR_FULL);
    CHECK(rl_door_hdr_get(b, RL_DOOR_HELLO, RL_DOOR_HELLO, 4, &h, e,
                          sizeof e) == 0);
    CHECK(rl_door_hello_decode(&h, b + RL_DOOR_HDR, &st, e, sizeof e) == 0 &&
          st == RL_DOOR_FULL);
    rl_put_le32(b + RL_DOOR_HDR, 7);
    CHECK(rl_door_hello_decode(&h, b + RL_DOOR_HDR, &st, e, sizeof e) == -1);
    CHECK(strstr(e, "status 7"), "%s", e);
    h.len = 8;
    CHECK(rl_door_hello_decode(&h, b + RL_DOOR_HDR, &st, e, sizeof e) == -1);
}

/* Seeds: each file is a stream of messages as the fuzzer reads them. */
static int write_seeds(const char *dir)
{
    uint8_t b[512];
    size_t n = 0;
    int bad = 0;
    rl_door_commit_head(b, 5, 1, 8);
    memcpy(b + RL_DOOR_HDR + RL_DOOR_COMMIT_FIXED, "RLTXdata", 8);
    n = RL_DOOR_HDR + RL_DOOR_COMMIT_FIXED + 8;
    rl_door_ask_put(b + n, RL_DOOR_HINT, 1000);
    n += RL_DOOR_HDR + 4;
    rl_door_ask_put(b + n, RL_DOOR_READ, 2000);
    n += RL_DOOR_HDR + 4;
    bad |= rl_seed_write(dir, "seed-requests", b, n);
    n = rl_door_ans_put(b, 2, 10, 9, "");
    n += rl_door_ans_put(b + n, 5, 0, 0, "conflict");
    rl_door_hello_put(b + n, RL_DOOR_OK);
    n += RL_DOOR_HDR + 4;
    bad |= rl_seed_write(dir, "seed-answers", b, n);
    rl_door_hello_put(b, RL_DOOR_REFUSED);
    bad |= rl_seed_write(dir, "seed-hello", b, RL_DOOR_HDR + 4);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return write_seeds(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--write-seeds DIR]\n", argv[0]);
        return 2;
    }
    test_header();
    test_requests();
    test_answers();
    return rl_check_report("test_doormsg");
}
