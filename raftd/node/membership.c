/*
** raftd/node/membership.c -- membership changes of the Raft cluster: add
** (then promote to the role asked, and propose the joiner's metadata),
** assign, remove and leadership transfer, from the caller's arguments to
** raft's callbacks.
**
** The rl_node_* calls here run on a caller's thread and reach raft only
** through a request (request.c); node_member_submit and the callbacks run
** on the loop thread. It must never change the configuration on a node
** that is not the leader, and never wait inside a raft callback.
*/
#include "node_int.h"

#include <stdio.h>
#include <string.h>

static void change_done_cb(struct raft_change *c, int status)
{
    struct req *r = c->data;
    struct rl_node *n = r->node;
    if (status == 0) {
        node_req_finish(n, r, RL_OK, NULL);
    } else {
        char msg[256];
        snprintf(msg, sizeof msg, "membership change failed: %s",
                 raft_strerror(status));
        node_req_finish(n, r, RL_ERR_UNKNOWN, msg);
    }
}

static void add_cb(struct raft_change *c, int status)
{
    struct req *r = c->data;
    struct rl_node *n = r->node;
    if (status != 0 || r->role == RL_ROLE_SPARE || n->closing) {
        change_done_cb(c, status ? status : (n->closing ? RAFT_SHUTDOWN : 0));
        return;
    }
    int rc = raft_assign(&n->raft, &r->change, r->id, r->role, change_done_cb);
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "added as spare, raft_assign failed: %s",
                 raft_errmsg(&n->raft));
        node_req_finish(n, r, RL_ERR_RAFT, msg);
    }
}

static void transfer_cb(struct raft_transfer *t)
{
    struct req *r = t->data;
    struct rl_node *n = r->node;
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&n->raft, &id, &addr);
    if (id != 0 && id != n->cfg.raft_id && (r->id == 0 || id == r->id)) {
        node_req_finish(n, r, RL_OK, NULL);
    } else {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "leadership transfer did not complete (leader now %llu)",
                 (unsigned long long)id);
        node_req_finish(n, r, RL_ERR_RAFT, msg);
    }
}

/* The loop's half: hand the change to raft (the node is the leader). */
void node_member_submit(struct rl_node *n, struct req *r)
{
    struct raft *raft = &n->raft;
    int rc = RAFT_INVALID;
    r->change.data = r;
    r->transfer.data = r;
    switch (r->type) {
    case REQ_ADD:
        if (r->has_meta && node_ready(n)) {
            uint8_t buf[1024];
            size_t len = rl_meta_encode(&r->meta, buf, sizeof buf);
            if (len)
                node_propose_internal(n, RL_ENTRY_META, buf, len);
        }
        rc = raft_add(raft, &r->change, r->id, r->addr, add_cb);
        break;
    case REQ_ASSIGN:
        rc = raft_assign(raft, &r->change, r->id, r->role, change_done_cb);
        break;
    case REQ_REMOVE:
        rc = raft_remove(raft, &r->change, r->id, change_done_cb);
        break;
    case REQ_TRANSFER:
        rc = raft_transfer(raft, &r->transfer, r->id, transfer_cb);
        break;
    }
    if (rc == 0)
        return;
    /* raft takes one configuration change at a time: say so as a code, so
    ** a caller can wait and retry without reading the message. */
    if (rc == RAFT_CANTCHANGE) {
        pthread_mutex_lock(&n->mu);
        r->res.detail = RL_ERR_CANTCHANGE;
        pthread_mutex_unlock(&n->mu);
    }
    char msg[256];
    snprintf(msg, sizeof msg, "%s (nothing changed)", raft_errmsg(raft));
    node_req_finish(n, r, rc == RAFT_NOTLEADER ? RL_ERR_NOTLEADER : RL_ERR_RAFT,
                    msg);
}

/* The caller's half: check the arguments, queue the request, wait. */
static rl_err member_req(struct rl_node *n, int type, uint64_t id,
                         const char *addr, int role, const struct rl_meta *meta,
                         unsigned timeout_ms, struct rl_result *res)
{
    memset(res, 0, sizeof *res);
    if ((type != REQ_TRANSFER && id == 0) ||
        (type == REQ_ADD && (!addr || strlen(addr) >= 256)) ||
        ((type == REQ_ADD || type == REQ_ASSIGN) &&
         (role < RL_ROLE_STANDBY || role > RL_ROLE_SPARE))) {
        node_copy_str(res->msg, sizeof res->msg, "bad id, address or role");
        return RL_ERR_INVALID;
    }
    struct req *r = node_req_new(type);
    if (r == NULL)
        return RL_ERR_NOMEM;
    r->node = n;
    r->id = id;
    r->role = role;
    if (addr)
        node_copy_str(r->addr, sizeof r->addr, addr);
    if (meta) {
        r->has_meta = 1;
        r->meta = *meta;
    }
    return node_req_run(n, r, timeout_ms, res);
}

rl_err rl_node_add(struct rl_node *n, uint64_t id, const char *raft_addr,
                   int role, const struct rl_meta *meta, unsigned timeout_ms,
                   struct rl_result *res)
{
    return member_req(n, REQ_ADD, id, raft_addr, role, meta, timeout_ms, res);
}

rl_err rl_node_assign(struct rl_node *n, uint64_t id, int role,
                      unsigned timeout_ms, struct rl_result *res)
{
    return member_req(n, REQ_ASSIGN, id, NULL, role, NULL, timeout_ms, res);
}

rl_err rl_node_remove(struct rl_node *n, uint64_t id, unsigned timeout_ms,
                      struct rl_result *res)
{
    return member_req(n, REQ_REMOVE, id, NULL, 0, NULL, timeout_ms, res);
}

rl_err rl_node_transfer(struct rl_node *n, uint64_t to, unsigned timeout_ms,
                        struct rl_result *res)
{
    return member_req(n, REQ_TRANSFER, to, NULL, 0, NULL, timeout_ms, res);
}
