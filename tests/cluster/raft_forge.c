/*
** tests/cluster/raft_forge.c -- the attack of issue 16 as a program: one
** forged AppendEntries, posing as "leader 999" at term 1000, sent to a
** node's Raft port. Built by make (build/tests/tools/raft_forge) for
** tests/cluster/test_raft_tls.py.
**
**   raft_forge DIR ADDR PREV_INDEX [CERT KEY CA]
**
** The message is encoded by libraft itself (raft_uv's send over
** raftlite's transport), its one entry by the project's own encoders
** (rl_txn_encode, rl_entry_encode): a TXN writing page 1. PREV_INDEX is the
** log index the entry claims to follow: the test picks one far beyond the
** node's log, so a node that accepts the message only adopts term 1000 and
** leader 999 (visible in its Status) and appends nothing. Without CERT the
** connection is plaintext (raft_uv_tcp); with CERT, KEY and CA it speaks
** TLS with that certificate, trusting CA and any node id the server names.
** DIR is a scratch directory raft_uv needs.
**
** Prints "sent" when libraft reports the message written to the
** connection, "not sent: ..." otherwise, and exits 0 either way: whether
** the node was fooled is for the test to read from the node.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "entry.h"
#include "transport.h"
#include "txn.h"

#define FORGED_ID   999
#define FORGED_TERM 1000

static uv_loop_t loop;
static struct raft_io io;
static struct rl_transport tr;
static uv_timer_t timer;
static int done;
static uint64_t target_id = 1; /* any: the node never sees this id */

static uint64_t any_node(const char *node_id)
{
    (void)node_id; /* the attacker trusts whatever node answers */
    return target_id;
}

static void io_closed(struct raft_io *i)
{
    (void)i;
}

static void finish(const char *what)
{
    if (done)
        return;
    done = 1;
    printf("%s\n", what);
    fflush(stdout);
    uv_close((uv_handle_t *)&timer, NULL);
    io.close(&io, io_closed);
}

static void sent(struct raft_io_send *req, int status)
{
    (void)req;
    char msg[128];
    snprintf(msg, sizeof msg, status == 0 ? "sent" : "not sent: %s",
             raft_strerror(status));
    finish(msg);
}

static void timed_out(uv_timer_t *t)
{
    (void)t;
    finish("not sent: no connection within 5 s");
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 7) {
        fprintf(stderr,
                "usage: raft_forge DIR ADDR PREV_INDEX [CERT KEY CA]\n");
        return 2;
    }
    /* libuv writes without MSG_NOSIGNAL; a refusing node closes on us. */
    signal(SIGPIPE, SIG_IGN);
    const char *dir = argv[1], *addr = argv[2];
    uint64_t prev = strtoull(argv[3], NULL, 10);
    struct rl_transport_tls tls = {0};
    struct rl_transport_opts opts = {.nodelay = 1};
    if (argc == 7) {
        tls.cert_file = argv[4];
        tls.key_file = argv[5];
        tls.ca_file = argv[6];
        tls.raft_id_of = any_node;
        opts.tls = &tls;
    }

    /* The entry: a TXN writing page 1 with 'A's, as a leader would. */
    static uint8_t page[4096];
    memset(page, 'A', sizeof page);
    rl_page pg = {.pgno = 1, .data = page};
    rl_txn t = {
        .page_size = sizeof page, .db_pages = 1, .n_pages = 1, .pages = &pg};
    size_t tlen = rl_txn_encoded_size(&t);
    uint8_t *txn = malloc(tlen);
    struct rl_entry_hdr h = {.kind = RL_ENTRY_TXN,
                             .origin_node = FORGED_ID,
                             .origin_txn = 1,
                             .payload_len = tlen};
    size_t elen = rl_entry_size(tlen);
    void *ebuf = raft_malloc(elen);
    if (!txn || !ebuf || rl_txn_encode(&t, txn, tlen) != 0 ||
        rl_entry_encode(&h, txn, ebuf, elen) != 0) {
        fprintf(stderr, "raft_forge: encoding the entry failed\n");
        return 1;
    }
    free(txn);

    int rv;
    if (uv_loop_init(&loop) != 0 ||
        (rv = rl_transport_init(&tr, &loop, &opts)) != 0) {
        fprintf(stderr, "raft_forge: transport: %s\n", tr.raft.errmsg);
        return 1;
    }
    if ((rv = raft_uv_init(&io, &loop, dir, &tr.raft)) != 0 ||
        (rv = io.init(&io, FORGED_ID, "127.0.0.1:9")) != 0) {
        fprintf(stderr, "raft_forge: raft_uv: %s\n", io.errmsg);
        return 1;
    }
    struct raft_entry entry = {.term = FORGED_TERM,
                               .type = RAFT_COMMAND,
                               .buf = {.base = ebuf, .len = elen}};
    struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES,
                             .server_id = target_id,
                             .server_address = addr};
    m.append_entries.term = FORGED_TERM;
    m.append_entries.prev_log_index = prev;
    m.append_entries.prev_log_term = FORGED_TERM - 1;
    m.append_entries.leader_commit = 0;
    m.append_entries.entries = &entry;
    m.append_entries.n_entries = 1;
    struct raft_io_send req;
    uv_timer_init(&loop, &timer);
    uv_timer_start(&timer, timed_out, 5000, 0);
    if ((rv = io.send(&io, &req, &m, sent)) != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "not sent: %s", io.errmsg);
        finish(msg);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    raft_uv_close(&io);
    rl_transport_close(&tr);
    uv_run(&loop, UV_RUN_DEFAULT); /* handles the frees closed */
    uv_loop_close(&loop);
    raft_free(ebuf);
    return 0;
}
