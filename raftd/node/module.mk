# raftd/node/: the pure parts of the Raft node (see fsm.h): the FSM's
# verdicts, L, metadata and manifests, with no SQLite, loop, thread or
# host. raftd/module.mk links them into the node (NODE_SRCS); the
# deterministic consensus test runs them on raft's in-memory fixture
# (tests/unit/test_fsm_fixture.c).
NODE_PURE_SRCS := raftd/node/fsm.c raftd/entry.c
