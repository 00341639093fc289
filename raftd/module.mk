# raftd/: the node and the gRPC sidecar.
# rpc.c is the only file that calls the gRPC C core (see rpc.h); service.c
# runs the API on the node's database; service_rpc.c binds the two.
RAFTD_SRCS += raftd/rpc.c raftd/rpc_util.c raftd/service.c raftd/service_rpc.c raftd/main.c
RAFTD_LIBS += -lgrpc -lgpr -lprotobuf-c -lz

# Unit test of the wrapper alone (tests/unit/test_rpc.c).
UNIT_TESTS += test_rpc
UNIT_SRCS_test_rpc := raftd/rpc.c raftd/rpc_util.c
UNIT_LIBS_test_rpc := -lgrpc -lgpr
