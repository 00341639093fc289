# vfs/: the replicating VFS (sources added as they land)

# WAL / wal-index formats and the replicated transaction record (pure code).
LIB_SRCS += vfs/walfmt.c vfs/txn.c

# libFuzzer build of the transaction-record decoder: clang, its own directory
# (not $(BUILD): one fuzz build serves both the plain and the ASan runs).
# `make test` builds it for tests/fuzz/test_fuzz_txn.sh (a short run);
# `make fuzz` runs it for FUZZ_TXN_SECONDS on a corpus kept in build/fuzz/.
FUZZ_DIR         ?= build/fuzz
FUZZ_TXN_SECONDS ?= 300
FUZZ_CFLAGS = -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Ivfs \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

$(FUZZ_DIR)/fuzz_txn: tests/fuzz/fuzz_txn.c vfs/txn.c vfs/txn.h
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_txn.c vfs/txn.c -lpthread

test test-long: $(FUZZ_DIR)/fuzz_txn

.PHONY: fuzz-txn
fuzz: fuzz-txn
fuzz-txn: $(FUZZ_DIR)/fuzz_txn $(BUILD)/tests/unit/test_txn
	@mkdir -p $(FUZZ_DIR)/corpus_txn $(FUZZ_DIR)/artifacts_txn
	$(BUILD)/tests/unit/test_txn --write-seeds $(FUZZ_DIR)/corpus_txn
	$(FUZZ_DIR)/fuzz_txn -max_total_time=$(FUZZ_TXN_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts_txn/ $(FUZZ_DIR)/corpus_txn
