# proto/: protobuf-c code generated at build time from proto/raftlite.proto
# into $(BUILD)/gen (protoc-c); the .pb-c.c is compiled into raftd.
PROTO_GEN_C := $(BUILD)/gen/raftlite.pb-c.c
PROTO_GEN_H := $(BUILD)/gen/raftlite.pb-c.h
GEN_HDRS += $(PROTO_GEN_H)
RAFTD_SRCS += $(PROTO_GEN_C)

$(PROTO_GEN_H): proto/raftlite.proto | deps
	@mkdir -p $(@D)
	protoc-c -Iproto --c_out=$(@D) proto/raftlite.proto

$(PROTO_GEN_C): $(PROTO_GEN_H)
	@test -f $@ || { rm -f $<; $(MAKE) --no-print-directory $<; }

# The rule above would otherwise become make's default goal (this file is
# included before the top Makefile's `all`).
.DEFAULT_GOAL := all

# ---- fuzzing: libFuzzer targets for the decoders (tests/fuzz/fuzz_proto_*)
# Built with clang into $(BUILD)/fuzz; `make fuzz` runs each FUZZ_SECONDS;
# tests/fuzz/test_fuzz_proto.py runs each briefly inside `make test`.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_PROTO   := fuzz_proto_requests fuzz_proto_txnchunks
FUZZ_PROTO_BINS := $(patsubst %,$(BUILD)/fuzz/%,$(FUZZ_PROTO))
FUZZ_PROTO_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -D_GNU_SOURCE -DSQLITE_CORE \
                -Ilib -Iraftd -Iraftd/node -Iraftd/api -Iraftd/rpc -Iraftd/host -I$(BUILD)/gen

$(BUILD)/fuzz/%: tests/fuzz/%.c $(API_SVC_SRCS) $(RPC_PURE_SRCS) \
		$(PROTO_GEN_C) $(PROTO_GEN_H) $(wildcard raftd/api/*.h) raftd/rpc/rpc.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_PROTO_CFLAGS) -o $@ $< $(API_SVC_SRCS) $(RPC_PURE_SRCS) $(PROTO_GEN_C) \
	    -lprotobuf-c -lsqlite3 -lz -lpthread

.PHONY: fuzz-bins fuzz-proto
fuzz-bins: $(FUZZ_PROTO_BINS)
all: fuzz-bins

fuzz-proto: $(FUZZ_PROTO_BINS)
	@for f in $(FUZZ_PROTO); do \
	    mkdir -p $(BUILD)/fuzz/corpus/$$f; \
	    echo "fuzzing $$f for $(FUZZ_SECONDS)s"; \
	    $(BUILD)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	        -timeout=10 -print_final_stats=1 \
	        $(BUILD)/fuzz/corpus/$$f tests/fuzz/seeds/$$f || exit 1; \
	done
fuzz: fuzz-proto
