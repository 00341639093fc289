# raftd/: the node and the gRPC sidecar (sources added as they land)

# The Raft node (raftd/entry.c, raftd/node*.c): no SQLite inside, so the
# same objects serve the extension, raftd and the unit tests.
NODE_SRCS := raftd/entry.c raftd/node.c
LIB_SRCS   += $(NODE_SRCS)
# build/raftd needs raftd/main.c (the sidecar's room): until it exists the
# node objects only go into the extension and the unit tests.
ifneq ($(wildcard raftd/main.c),)
RAFTD_SRCS += $(NODE_SRCS)
endif
LIB_LIBS   += -lraft -luv
RAFTD_LIBS += -lraft -luv

# libFuzzer target of the entry decoders (clang only). `make unit-bins`
# builds it so that make test runs tests/fuzz/test_fuzz_entry.sh; `make
# fuzz` runs it for FUZZ_SECONDS.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
$(BUILD)/fuzz/fuzz_entry: tests/fuzz/fuzz_entry.c raftd/entry.c raftd/entry.h
	@mkdir -p $(@D)
	$(FUZZ_CC) -g -O1 -std=gnu11 -Wall -Wextra -Werror -Iraftd \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ tests/fuzz/fuzz_entry.c raftd/entry.c

unit-bins: $(BUILD)/fuzz/fuzz_entry

.PHONY: fuzz-entry
fuzz-entry: $(BUILD)/fuzz/fuzz_entry
	@mkdir -p $(BUILD)/fuzz/corpus-entry
	$(BUILD)/fuzz/fuzz_entry -max_total_time=$(FUZZ_SECONDS) \
	    -rss_limit_mb=2048 -artifact_prefix=$(BUILD)/fuzz/ \
	    $(BUILD)/fuzz/corpus-entry
fuzz: fuzz-entry
