# raftd/rpc/: the only code that touches the gRPC C core (rpc.h). util.c is
# its grpc-free part (byte buffers, the deadline clock) that code fuzzed
# without gRPC links alone (RPC_PURE_SRCS).
RPC_PURE_SRCS := raftd/rpc/util.c
RPC_SRCS := raftd/rpc/server.c raftd/rpc/call.c raftd/rpc/client.c raftd/rpc/kept.c raftd/rpc/fan.c \
            raftd/rpc/core.c raftd/rpc/tls.c $(RPC_PURE_SRCS)
RPC_LIBS := -lgrpc -lgpr

# Unit test of the wrapper alone (tests/unit/test_rpc.c).
UNIT_TESTS += test_rpc
UNIT_SRCS_test_rpc := $(RPC_SRCS)
UNIT_LIBS_test_rpc := $(RPC_LIBS)
# Kept streams and quiet ends (tests/unit/test_rpc_kept.c).
UNIT_TESTS += test_rpc_kept
UNIT_SRCS_test_rpc_kept := $(RPC_SRCS)
UNIT_LIBS_test_rpc_kept := $(RPC_LIBS)
