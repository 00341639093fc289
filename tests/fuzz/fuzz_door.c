/*
** tests/fuzz/fuzz_door.c -- libFuzzer target for the messages of a host's
** local door (raftd/host/doormsg.c).
**
** The input is read as a stream of messages, twice: as the door reads a
** client's requests (header, then body, then the request decoder) and as
** a client reads the door's greetings and answers. Whatever decodes must
** hold its invariants: a COMMIT's payload inside its body and of the
** stated length, a wait within its limits, answer text without NUL and
** within its limit, and an answer or header re-encoded to the same bytes
** (each has one encoding). Any violation aborts; ASan/UBSan catch reads
** out of bounds. Built by raftd/module.mk as build/fuzz/fuzz_door.
*/
#include "doormsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                             \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "fuzz_door: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define MAX_BODY (1u << 20)

static void as_door(const uint8_t *p, size_t n)
{
    while (n >= RL_DOOR_HDR) {
        rl_door_hdr h;
        rl_door_req r;
        uint8_t *body, again[RL_DOOR_HDR];
        char e[256] = "";
        if (rl_door_hdr_get(p, RL_DOOR_COMMIT, RL_DOOR_READ, MAX_BODY, &h, e,
                            sizeof e) != 0) {
            REQUIRE(e[0]);
            return;
        }
        REQUIRE(h.kind >= RL_DOOR_COMMIT && h.kind <= RL_DOOR_READ);
        REQUIRE(h.len <= MAX_BODY);
        rl_door_hdr_put(again, h.kind, h.len);
        REQUIRE(memcmp(again, p, RL_DOOR_HDR) == 0);
        p += RL_DOOR_HDR;
        n -= RL_DOOR_HDR;
        if (h.len > n)
            return; /* the door would wait for the rest, then give up */
        /* A copy of exactly the body: reads past it are caught. */
        body = malloc(h.len ? h.len : 1);
        REQUIRE(body);
        memcpy(body, p, h.len);
        if (rl_door_req_decode(&h, body, &r, e, sizeof e) == 0) {
            REQUIRE(r.kind == h.kind);
            if (r.kind == RL_DOOR_COMMIT) {
                REQUIRE(r.len >= 1 && r.len + RL_DOOR_COMMIT_FIXED == h.len);
                REQUIRE(r.payload == body + RL_DOOR_COMMIT_FIXED);
            } else {
                REQUIRE(h.len == 4);
                REQUIRE(r.wait_ms >= 1 && r.wait_ms <= RL_DOOR_MAX_WAIT_MS);
            }
        } else {
            REQUIRE(e[0]);
        }
        free(body);
        p += h.len;
        n -= h.len;
    }
}

static void as_client(const uint8_t *p, size_t n)
{
    static rl_door_ans a;
    static uint8_t out[RL_DOOR_HDR + 20 + RL_DOOR_TEXT_MAX];
    while (n >= RL_DOOR_HDR) {
        rl_door_hdr h;
        uint8_t *body;
        uint32_t st;
        char e[256] = "";
        if (rl_door_hdr_get(p, RL_DOOR_HELLO, RL_DOOR_ANSWER,
                            20 + RL_DOOR_TEXT_MAX, &h, e, sizeof e) != 0) {
            REQUIRE(e[0]);
            return;
        }
        p += RL_DOOR_HDR;
        n -= RL_DOOR_HDR;
        if (h.len > n)
            return;
        body = malloc(h.len ? h.len : 1);
        REQUIRE(body);
        memcpy(body, p, h.len);
        if (h.kind == RL_DOOR_HELLO) {
            if (rl_door_hello_decode(&h, body, &st, e, sizeof e) == 0)
                REQUIRE(st <= RL_DOOR_REFUSED && h.len == 4);
            else
                REQUIRE(e[0]);
        } else if (rl_door_ans_decode(&h, body, &a, e, sizeof e) == 0) {
            size_t len = strlen(a.text);
            REQUIRE(len <= RL_DOOR_TEXT_MAX && len + 20 == h.len);
            REQUIRE(rl_door_ans_put(out, a.status, a.index, a.L, a.text) ==
                    RL_DOOR_HDR + h.len);
            REQUIRE(memcmp(out + RL_DOOR_HDR, body, h.len) == 0);
        } else {
            REQUIRE(e[0]);
        }
        free(body);
        p += h.len;
        n -= h.len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_door(data, size);
    as_client(data, size);
    return 0;
}
