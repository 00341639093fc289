# raftd/node/: the Raft node (see node.h and node_int.h). No SQLite inside,
# so the same objects serve the extension, raftd, the unit tests and the
# node benchmark.
#
# NODE_PURE_SRCS: the FSM's verdicts, L, metadata and manifests (fsm.c)
# and the entry codec, with no loop, thread or host; the deterministic
# consensus test runs them on raft's in-memory fixture
# (tests/unit/test_fsm_fixture.c).
NODE_PURE_SRCS := raftd/node/fsm.c raftd/node/entry.c
NODE_SRCS := $(NODE_PURE_SRCS) raftd/node/base.c raftd/node/board.c raftd/node/node.c raftd/node/request.c raftd/node/lease.c raftd/node/confirm.c \
             raftd/node/membership.c raftd/node/raftfsm.c \
             raftd/node/applier.c raftd/node/loop.c raftd/node/status.c \
             raftd/node/raftio.c raftd/node/reload.c raftd/node/transport.c \
             raftd/node/tls_transport.c raftd/node/tls_conn.c
# The lib/ files the node links (the extension and raftd have them from
# lib/module.mk; unit tests and the benchmark add them), and its libraries.
NODE_LIB_SRCS := lib/timing.c lib/certid.c lib/addr.c
NODE_LIB_LIBS := -lraft -luv -lssl -lcrypto -lpthread
# Old names, for rules of other rooms.
NODE_TLS_SRCS = $(NODE_LIB_SRCS)
NODE_TLS_LIBS := -lssl -lcrypto -lpthread
LIB_SRCS   += $(NODE_SRCS)
RAFTD_SRCS += $(NODE_SRCS)
LIB_LIBS   += -lraft -luv
RAFTD_LIBS += -lraft -luv

# libFuzzer build of the entry/metadata/manifest decoders (clang; in
# FUZZ_DIR like the vfs targets: one build serves plain and ASan runs).
# `make test` builds it for tests/fuzz/test_fuzz_entry.sh (seeded by
# test_entry --write-seeds); `make fuzz` runs it for FUZZ_SECONDS.
FUZZ_DIR ?= build/fuzz
$(FUZZ_DIR)/fuzz_entry: tests/fuzz/fuzz_entry.c raftd/node/entry.c \
		raftd/node/entry.h tests/unit/lib/entry_seal.h
	@mkdir -p $(@D)
	clang -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Ilib \
	    -Iraftd/node \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ tests/fuzz/fuzz_entry.c raftd/node/entry.c

test test-long: $(FUZZ_DIR)/fuzz_entry

.PHONY: fuzz-entry
fuzz: fuzz-entry
fuzz-entry: $(FUZZ_DIR)/fuzz_entry $(BUILD)/tests/unit/test_entry
	@mkdir -p $(FUZZ_DIR)/corpus_entry $(FUZZ_DIR)/artifacts_entry
	$(BUILD)/tests/unit/test_entry --write-seeds $(FUZZ_DIR)/corpus_entry
	$(FUZZ_DIR)/fuzz_entry -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts_entry/ \
	    $(FUZZ_DIR)/corpus_entry
