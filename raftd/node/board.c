/*
** raftd/node/board.c -- the board: a small file in which the loop posts
** this node's role and L for the other processes of this machine (the
** client processes of the node's host: raftd/host/client.c), so that they
** learn them without a call to the host.
**
** Written by the loop thread only, whenever the role or L it publishes
** changes, and before any writer can hear of that L (fsm_apply posts it
** before raft's apply callback answers the proposal): a reader that finds
** the node leading with L knows no transaction it was told of took effect
** after L, exactly as rl_node_status would tell it in the host's own
** process. What it must never do: leave a board that claims what the node
** no longer publishes. A write that fails empties the file and the node
** posts no more (readers then ask the host, as before the board).
**
**   0 4 magic "RLB1"   4 4 state (RL_STATE_*)   8 8 L
**  16 8 rl_checksum64 of bytes [0, 16)
**
** The reader checks the magic and the checksum: a read that raced a write
** fails the check and is read again.
*/
#include "node_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"

#define BOARD_MAGIC 0x31424c52u /* "RLB1" */
#define BOARD_SIZE  24

static void board_encode(uint8_t *b, int state, uint64_t L)
{
    rl_put_le32(b, BOARD_MAGIC);
    rl_put_le32(b + 4, (uint32_t)state);
    rl_put_le64(b + 8, L);
    rl_put_le64(b + 16, rl_checksum64(0, b, 16));
}

void node_board_open(struct rl_node *n)
{
    uint8_t b[BOARD_SIZE];
    int fd;
    n->board_fd = -1;
    if (!n->cfg.board_path)
        return;
    board_encode(b, RL_STATE_UNAVAILABLE, 0);
    fd = open(n->cfg.board_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || pwrite(fd, b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* Without a board, readers ask the host: slower, not wrong. */
        node_log(n, 1,
                 "cannot %s the board %s: %s; client processes will ask the "
                 "host instead",
                 fd < 0 ? "open" : "write", n->cfg.board_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    n->board_fd = fd;
    n->board_state = RL_STATE_UNAVAILABLE;
    n->board_L = 0;
}

/* Loop thread only, never under n->mu (node_log). Posts n->pub's role and
** L when they changed. */
void node_board_post(struct rl_node *n)
{
    uint8_t b[BOARD_SIZE];
    int state = n->pub.state; /* the loop is pub's only writer */
    uint64_t L = n->pub.L;
    if (n->board_fd < 0 || (state == n->board_state && L == n->board_L))
        return;
    board_encode(b, state, L);
    if (pwrite(n->board_fd, b, sizeof b, 0) != (ssize_t)sizeof b) {
        int e = errno;
        /* Never leave a stale claim: readers of an empty board ask. */
        if (ftruncate(n->board_fd, 0) != 0)
            unlink(n->cfg.board_path);
        close(n->board_fd);
        n->board_fd = -1;
        node_log(n, 1,
                 "cannot write the board %s: %s; client processes will ask "
                 "the host instead",
                 n->cfg.board_path, strerror(e));
        return;
    }
    n->board_state = state;
    n->board_L = L;
}

int rl_node_board_read(const char *path, struct rl_node_board *out)
{
    uint8_t b[BOARD_SIZE];
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
    if (fd < 0)
        return -1;
    for (int tries = 0; tries < 8 && rc != 0; tries++) {
        if (pread(fd, b, sizeof b, 0) != (ssize_t)sizeof b)
            break; /* absent, empty or short: no board */
        if (rl_get_le32(b) != BOARD_MAGIC ||
            rl_get_le64(b + 16) != rl_checksum64(0, b, 16))
            continue; /* raced a write, or damaged: read again */
        out->state = (int)rl_get_le32(b + 4);
        out->L = rl_get_le64(b + 8);
        rc = 0;
    }
    close(fd);
    return rc;
}
