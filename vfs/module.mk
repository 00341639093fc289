# vfs/: the replicating VFS, one mechanism per file (vfs/vfs_int.h):
# the shim and guards, the file object's base, the error channel, the lock
# protocol and read gate, the port's calls, capture, the applied record and
# its locked calls, apply. Other rooms link $(VFS_SRCS) rather than naming
# the files.
VFS_SRCS := vfs/vfs.c vfs/file.c vfs/error.c vfs/lock.c vfs/port.c \
            vfs/capture.c vfs/record.c vfs/record_api.c vfs/apply.c
LIB_SRCS += $(VFS_SRCS)

# WAL / wal-index formats and the replicated transaction record (pure code).
LIB_SRCS += vfs/walfmt.c vfs/txn.c

# libFuzzer builds of the decoders (clang; their own directory, not
# $(BUILD): one fuzz build serves the plain and the ASan test runs).
# `make test` builds them for tests/fuzz/test_fuzz_{txn,walfmt}.sh (short
# runs); `make fuzz` runs each for FUZZ_SECONDS on a corpus kept in
# build/fuzz/corpus_NAME.
FUZZ_DIR     ?= build/fuzz
FUZZ_SECONDS ?= 300
FUZZ_VFS_CFLAGS = -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Ilib -Ivfs \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

$(FUZZ_DIR)/fuzz_txn: tests/fuzz/fuzz_txn.c vfs/txn.c vfs/txn.h
	@mkdir -p $(@D)
	clang $(FUZZ_VFS_CFLAGS) -o $@ tests/fuzz/fuzz_txn.c vfs/txn.c -lpthread

$(FUZZ_DIR)/fuzz_walfmt: tests/fuzz/fuzz_walfmt.c vfs/walfmt.c vfs/walfmt.h
	@mkdir -p $(@D)
	clang $(FUZZ_VFS_CFLAGS) -o $@ tests/fuzz/fuzz_walfmt.c vfs/walfmt.c

test test-long: $(FUZZ_DIR)/fuzz_txn $(FUZZ_DIR)/fuzz_walfmt

.PHONY: fuzz-txn fuzz-walfmt
fuzz: fuzz-txn fuzz-walfmt
fuzz-txn: $(FUZZ_DIR)/fuzz_txn $(BUILD)/tests/unit/test_txn
	@mkdir -p $(FUZZ_DIR)/corpus_txn $(FUZZ_DIR)/artifacts_txn
	$(BUILD)/tests/unit/test_txn --write-seeds $(FUZZ_DIR)/corpus_txn
	$(FUZZ_DIR)/fuzz_txn -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts_txn/ $(FUZZ_DIR)/corpus_txn
fuzz-walfmt: $(FUZZ_DIR)/fuzz_walfmt
	@mkdir -p $(FUZZ_DIR)/corpus_walfmt $(FUZZ_DIR)/artifacts_walfmt
	$(FUZZ_DIR)/fuzz_walfmt -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts_walfmt/ \
	    $(FUZZ_DIR)/corpus_walfmt

# Consistent database images (vfs/image.h): the format and its streaming
# checker (imagefmt.c, pure, fuzzed) and the source/install (image.c).
LIB_SRCS += vfs/imagefmt.c vfs/image.c

$(FUZZ_DIR)/fuzz_image: tests/fuzz/fuzz_image.c vfs/imagefmt.c vfs/image.h \
		vfs/txn.c vfs/txn.h
	@mkdir -p $(@D)
	clang $(FUZZ_VFS_CFLAGS) -o $@ tests/fuzz/fuzz_image.c vfs/imagefmt.c \
	    vfs/txn.c -lpthread

test test-long: $(FUZZ_DIR)/fuzz_image

.PHONY: fuzz-image
fuzz: fuzz-image
fuzz-image: $(FUZZ_DIR)/fuzz_image $(BUILD)/tests/unit/test_image
	@mkdir -p $(FUZZ_DIR)/corpus_image $(FUZZ_DIR)/artifacts_image
	$(BUILD)/tests/unit/test_image --write-seeds $(FUZZ_DIR)/corpus_image
	$(FUZZ_DIR)/fuzz_image -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts_image/ $(FUZZ_DIR)/corpus_image

