/*
** raftd/host/doormsg.c -- encodes and checks the messages of a host's local
** door (see doormsg.h). The sender is not trusted: a client process may
** be anything the host's user runs, so every length is checked against
** what the bytes hold before anything is read.
**
** It must never read past a body, accept one over the caller's limit, or
** hand out text with a NUL byte (messages are printed as C strings).
*/
#include "doormsg.h"

#include <stdio.h>
#include <string.h>

#include "bytes.h"
#include "errbuf.h"

#define ANS_FIXED 20 /* status, index, L */

void rl_door_hdr_put(uint8_t *out, uint32_t kind, uint32_t len)
{
    rl_put_le32(out, RL_DOOR_MAGIC);
    rl_put_le32(out + 4, kind);
    rl_put_le32(out + 8, len);
}

int rl_door_hdr_get(const uint8_t *in, uint32_t lo, uint32_t hi, uint32_t max,
                    rl_door_hdr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (rl_get_le32(in) != RL_DOOR_MAGIC) {
        rl_seterr(err, errlen, "not a door message (magic %08x)",
                  rl_get_le32(in));
        return -1;
    }
    out->kind = rl_get_le32(in + 4);
    out->len = rl_get_le32(in + 8);
    if (out->kind < lo || out->kind > hi) {
        rl_seterr(err, errlen, "unexpected message kind %u", out->kind);
        return -1;
    }
    if (out->len > max) {
        rl_seterr(err, errlen, "a %u-byte message (at most %u here)", out->len,
                  max);
        return -1;
    }
    return 0;
}

int rl_door_req_decode(const rl_door_hdr *hd, const uint8_t *body,
                       rl_door_req *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->kind = hd->kind;
    switch (hd->kind) {
    case RL_DOOR_COMMIT:
        if (hd->len <= RL_DOOR_COMMIT_FIXED) {
            rl_seterr(err, errlen,
                      "a COMMIT of %u bytes carries no transaction", hd->len);
            return -1;
        }
        out->base = rl_get_le64(body);
        out->txn = rl_get_le64(body + 8);
        out->payload = body + RL_DOOR_COMMIT_FIXED;
        out->len = hd->len - RL_DOOR_COMMIT_FIXED;
        return 0;
    case RL_DOOR_HINT:
    case RL_DOOR_READ:
        if (hd->len != 4) {
            rl_seterr(err, errlen, "a %s of %u bytes (4 expected)",
                      hd->kind == RL_DOOR_HINT ? "HINT" : "READ", hd->len);
            return -1;
        }
        out->wait_ms = rl_get_le32(body);
        if (out->wait_ms == 0 || out->wait_ms > RL_DOOR_MAX_WAIT_MS) {
            rl_seterr(err, errlen, "a wait of %u ms (1 to %u)", out->wait_ms,
                      RL_DOOR_MAX_WAIT_MS);
            return -1;
        }
        return 0;
    default:
        rl_seterr(err, errlen, "message kind %u is not a request", hd->kind);
        return -1;
    }
}

int rl_door_commit_head(uint8_t *out, uint64_t base, uint64_t txn, size_t len)
{
    if (len == 0 || len > UINT32_MAX - RL_DOOR_COMMIT_FIXED)
        return -1;
    rl_door_hdr_put(out, RL_DOOR_COMMIT,
                    (uint32_t)(len + RL_DOOR_COMMIT_FIXED));
    rl_put_le64(out + RL_DOOR_HDR, base);
    rl_put_le64(out + RL_DOOR_HDR + 8, txn);
    return 0;
}

void rl_door_ask_put(uint8_t *out, uint32_t kind, uint32_t wait_ms)
{
    rl_door_hdr_put(out, kind, 4);
    rl_put_le32(out + RL_DOOR_HDR, wait_ms);
}

void rl_door_hello_put(uint8_t *out, uint32_t status)
{
    rl_door_hdr_put(out, RL_DOOR_HELLO, 4);
    rl_put_le32(out + RL_DOOR_HDR, status);
}

int rl_door_hello_decode(const rl_door_hdr *hd, const uint8_t *body,
                         uint32_t *status, char *err, size_t errlen)
{
    if (hd->kind != RL_DOOR_HELLO || hd->len != 4) {
        rl_seterr(err, errlen, "a greeting of kind %u and %u bytes", hd->kind,
                  hd->len);
        return -1;
    }
    *status = rl_get_le32(body);
    if (*status > RL_DOOR_REFUSED) {
        rl_seterr(err, errlen, "a greeting with status %u", *status);
        return -1;
    }
    return 0;
}

size_t rl_door_ans_put(uint8_t *out, uint32_t status, uint64_t index,
                       uint64_t L, const char *text)
{
    size_t n = text ? strnlen(text, RL_DOOR_TEXT_MAX) : 0;
    rl_door_hdr_put(out, RL_DOOR_ANSWER, (uint32_t)(ANS_FIXED + n));
    rl_put_le32(out + RL_DOOR_HDR, status);
    rl_put_le64(out + RL_DOOR_HDR + 4, index);
    rl_put_le64(out + RL_DOOR_HDR + 12, L);
    if (n)
        memcpy(out + RL_DOOR_HDR + ANS_FIXED, text, n);
    return RL_DOOR_HDR + ANS_FIXED + n;
}

int rl_door_ans_decode(const rl_door_hdr *hd, const uint8_t *body,
                       rl_door_ans *out, char *err, size_t errlen)
{
    size_t n;
    memset(out, 0, sizeof *out);
    if (hd->kind != RL_DOOR_ANSWER || hd->len < ANS_FIXED ||
        hd->len > ANS_FIXED + RL_DOOR_TEXT_MAX) {
        rl_seterr(err, errlen, "an answer of kind %u and %u bytes", hd->kind,
                  hd->len);
        return -1;
    }
    n = hd->len - ANS_FIXED;
    if (memchr(body + ANS_FIXED, 0, n)) {
        rl_seterr(err, errlen, "an answer whose text holds a NUL byte");
        return -1;
    }
    out->status = rl_get_le32(body);
    out->index = rl_get_le64(body + 4);
    out->L = rl_get_le64(body + 12);
    memcpy(out->text, body + ANS_FIXED, n);
    out->text[n] = 0;
    return 0;
}
