# tests/unit/: each test_NAME.c is a program; UNIT_SRCS_test_NAME names the
# module sources it links (compiled with -DSQLITE_CORE), UNIT_LIBS_test_NAME
# extra libraries.
UNIT_TESTS += test_smoke
UNIT_SRCS_test_smoke :=
UNIT_TESTS += test_walfmt test_walfmt_live test_txn
UNIT_SRCS_test_walfmt := vfs/walfmt.c
UNIT_SRCS_test_walfmt_live := vfs/walfmt.c
UNIT_SRCS_test_txn := vfs/txn.c

UNIT_TESTS += test_entry
UNIT_SRCS_test_entry := raftd/node/entry.c

# The local door's messages (raftd/host/doormsg.c).
UNIT_TESTS += test_doormsg
UNIT_SRCS_test_doormsg := raftd/host/doormsg.c

# The Raft node on real nodes in one process (tests/unit/lib/node_cluster.c):
# proposals and verdicts; membership and restarts; a solo node, stop, start.
NODE_CLUSTER_SRCS := $(NODE_SRCS) $(NODE_LIB_SRCS) \
    tests/unit/lib/fake_applier.c tests/unit/lib/node_cluster.c
UNIT_TESTS += test_node test_node_membership test_node_start
UNIT_SRCS_test_node := $(NODE_CLUSTER_SRCS)
UNIT_LIBS_test_node := $(NODE_LIB_LIBS)
UNIT_SRCS_test_node_membership := $(NODE_CLUSTER_SRCS)
UNIT_LIBS_test_node_membership := $(NODE_LIB_LIBS)
UNIT_SRCS_test_node_start := $(NODE_CLUSTER_SRCS)
UNIT_LIBS_test_node_start := $(NODE_LIB_LIBS)

# The pure FSM (raftd/node/) under raft's deterministic in-memory fixture:
# partitions, drops, delays, disk faults, kills, snapshots, many seeds.
UNIT_TESTS += test_fsm_fixture
UNIT_SRCS_test_fsm_fixture := $(NODE_PURE_SRCS) tests/unit/lib/fixture_shim.c \
    tests/unit/lib/fsm_canon.c
UNIT_LIBS_test_fsm_fixture := -lraft

# Consistent images: source under concurrent writes, install, refusals.
UNIT_TESTS += test_image
UNIT_SRCS_test_image := lib/timing.c vfs/image.c vfs/imagefmt.c $(VFS_SRCS) vfs/walfmt.c \
                        vfs/txn.c

# The image client against the real FetchImage service and a fake peer.
UNIT_TESTS += test_image_fetch
UNIT_SRCS_test_image_fetch := $(HOST_ROOM_SRCS) $(RPC_SRCS) $(API_SRCS) \
    $(PROTO_GEN_C) vfs/image.c vfs/imagefmt.c $(VFS_SRCS) vfs/walfmt.c \
    vfs/txn.c $(NODE_SRCS) $(NODE_TLS_SRCS)
UNIT_LIBS_test_image_fetch := -lgrpc -lgpr -lprotobuf-c -lz -lraft -luv \
    -lssl -lcrypto -lcrypt

# raftlite's Raft transport (TCP_NODELAY on every connection; mutual TLS)
# alone.
UNIT_TESTS += test_transport
UNIT_SRCS_test_transport := raftd/node/transport.c raftd/node/tls_transport.c \
    raftd/node/tls_conn.c \
    lib/certid.c lib/addr.c
UNIT_LIBS_test_transport := -lraft -luv -lssl -lcrypto -lpthread

# tests/cluster/raft_forge.c: one forged AppendEntries, plaintext or TLS
# (tests/cluster/test_raft_tls.py); built with the unit tests.
RAFT_FORGE_OBJS = $(patsubst %.c,$(BUILD)/core/%.o,tests/cluster/raft_forge.c \
                    $(NODE_SRCS) $(NODE_LIB_SRCS) vfs/txn.c)
$(BUILD)/tests/tools/raft_forge: $(RAFT_FORGE_OBJS)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_SAN) $(NODE_LIB_LIBS)
unit-bins: $(BUILD)/tests/tools/raft_forge

# Group commit's queue and combiner alone (tests/unit/test_group.c).
UNIT_TESTS += test_group
UNIT_SRCS_test_group := raftd/api/group.c
UNIT_LIBS_test_group := -lpthread
