# raftd/api/: the gRPC API of a node (proto/raftlite.proto). The SQL
# service (API_SVC_SRCS) knows no gRPC and no host: it is fuzzed alone
# (tests/fuzz/fuzz_proto_*). service_rpc.c binds it to an rl_rpc_server;
# cluster*.c serve the cluster operations of a hosted node; auth.c and
# reqcheck.c are pure checks (fuzzed: fuzz_auth, fuzz_cluster_req).
API_SVC_SRCS := raftd/api/service.c raftd/api/service_conn.c \
                raftd/api/service_read.c raftd/api/methods.c \
                raftd/api/service_write.c raftd/api/txnasm.c raftd/api/msg.c \
                raftd/api/group.c raftd/api/sqlguard.c
API_SRCS := $(API_SVC_SRCS) raftd/api/service_rpc.c raftd/api/reqcheck.c \
            raftd/api/auth.c raftd/api/cluster.c raftd/api/cluster_rpc.c \
            raftd/api/status_json.c raftd/api/sidecar.c

# The auth file, the method table and the verdicts (tests/unit/test_auth.c).
UNIT_TESTS += test_auth
UNIT_SRCS_test_auth := raftd/api/auth.c raftd/api/methods.c
UNIT_LIBS_test_auth := -lcrypt -lcrypto

# The remote-SQL allow-list alone (tests/unit/test_sqlguard.c).
UNIT_TESTS += test_sqlguard
UNIT_SRCS_test_sqlguard := raftd/api/sqlguard.c
