# raftd/: the node and the gRPC sidecar.
# rpc.c is the only file that calls the gRPC C core (see rpc.h); service.c
# runs the API on the node's database; service_rpc.c binds the two.
RAFTD_SRCS += raftd/rpc.c raftd/rpc_util.c raftd/service.c raftd/sqlguard.c \
              raftd/service_rpc.c raftd/main.c
RAFTD_LIBS += -lgrpc -lgpr -lprotobuf-c -lz

# The hosted node (host.c) and its sidecar also live in the extension: the
# stock shell process hosts the node and serves gRPC. cluster.c: Join,
# Remove, Transfer, Leader, Nodes, ReadIndex and forwarding of a hosted
# node (service_rpc.c offers it every unary call when there is a host).
HOST_SRCS := raftd/host.c raftd/addr.c raftd/rpc.c raftd/rpc_util.c \
             raftd/service.c raftd/sqlguard.c raftd/identity.c \
             raftd/service_rpc.c raftd/cluster.c $(BUILD)/gen/raftlite.pb-c.c
LIB_SRCS   += $(HOST_SRCS)
LIB_LIBS   += -lgrpc -lgpr -lprotobuf-c -lz
RAFTD_SRCS += raftd/host.c raftd/addr.c raftd/identity.c raftd/cluster.c \
              vfs/vfs.c vfs/walfmt.c vfs/txn.c

# Unit test of the wrapper alone (tests/unit/test_rpc.c).
UNIT_TESTS += test_rpc
UNIT_SRCS_test_rpc := raftd/rpc.c raftd/rpc_util.c
UNIT_LIBS_test_rpc := -lgrpc -lgpr

# The remote-SQL allow-list alone (tests/unit/test_sqlguard.c).
UNIT_TESTS += test_sqlguard
UNIT_SRCS_test_sqlguard := raftd/sqlguard.c

# The Raft node (raftd/entry.c and raftd/node/fsm.c from
# raftd/node/module.mk, raftd/node.c, raftd/transport.c): no SQLite
# inside, so the same objects serve the extension, raftd and the unit
# tests.
NODE_SRCS := $(NODE_PURE_SRCS) raftd/node.c raftd/transport.c vfs/timing.c
LIB_SRCS   += $(NODE_SRCS)
RAFTD_SRCS += $(NODE_SRCS)
LIB_LIBS   += -lraft -luv
RAFTD_LIBS += -lraft -luv

# libFuzzer build of the entry/metadata/manifest decoders (clang; in
# FUZZ_DIR like the vfs targets: one build serves plain and ASan runs).
# `make test` builds it for tests/fuzz/test_fuzz_entry.sh (seeded by
# test_entry --write-seeds); `make fuzz` runs it for FUZZ_SECONDS.
FUZZ_DIR ?= build/fuzz
$(FUZZ_DIR)/fuzz_entry: tests/fuzz/fuzz_entry.c raftd/entry.c raftd/entry.h
	@mkdir -p $(@D)
	clang -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Ilib -Iraftd \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ tests/fuzz/fuzz_entry.c raftd/entry.c

test test-long: $(FUZZ_DIR)/fuzz_entry

# libFuzzer build of the identity-file parser (raftd/identity.c), run by
# tests/fuzz/test_fuzz_identity.sh from tests/fuzz/seeds/fuzz_identity.
$(FUZZ_DIR)/fuzz_identity: tests/fuzz/fuzz_identity.c raftd/identity.c \
		raftd/host.h
	@mkdir -p $(@D)
	clang -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Ilib -Iraftd \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ tests/fuzz/fuzz_identity.c raftd/identity.c

test test-long: $(FUZZ_DIR)/fuzz_identity

.PHONY: fuzz-identity
fuzz: fuzz-identity
fuzz-identity: $(FUZZ_DIR)/fuzz_identity
	@mkdir -p $(FUZZ_DIR)/corpus_identity
	$(FUZZ_DIR)/fuzz_identity -max_total_time=$(FUZZ_SECONDS) \
	    $(FUZZ_DIR)/corpus_identity tests/fuzz/seeds/fuzz_identity

.PHONY: fuzz-entry
fuzz: fuzz-entry
fuzz-entry: $(FUZZ_DIR)/fuzz_entry $(BUILD)/tests/unit/test_entry
	@mkdir -p $(FUZZ_DIR)/corpus_entry $(FUZZ_DIR)/artifacts_entry
	$(BUILD)/tests/unit/test_entry --write-seeds $(FUZZ_DIR)/corpus_entry
	$(FUZZ_DIR)/fuzz_entry -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts_entry/ \
	    $(FUZZ_DIR)/corpus_entry

# Consistent database images: the VFS side (vfs/image.c) serves FetchImage
# "@image"; image_fetch.c is the client that downloads and verifies one.
RAFTD_SRCS += vfs/vfs.c vfs/walfmt.c vfs/txn.c vfs/imagefmt.c vfs/image.c \
              raftd/image_fetch.c
LIB_SRCS   += raftd/image_fetch.c
