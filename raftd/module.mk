# raftd/: the node, the host and the daemon. The gRPC wrapper
# (raftd/rpc/module.mk: RPC_SRCS) and the API served over it
# (raftd/api/module.mk: API_SRCS) list their own sources.
RAFTD_SRCS += $(RPC_SRCS) $(API_SRCS) raftd/main.c
RAFTD_LIBS += $(RPC_LIBS) -lprotobuf-c -lz -lssl -lcrypto -lcrypt

# The hosted node (raftd/host/, HOST_ROOM_SRCS, with host/peers.c: the
# calls a node makes to its peers' sidecars) and its sidecar (raftd/api/,
# sidecar.c) also live in the extension: the stock shell process hosts the
# node and serves gRPC.
HOST_SRCS := $(HOST_ROOM_SRCS) $(RPC_SRCS) $(API_SRCS) \
             $(BUILD)/gen/raftlite.pb-c.c
LIB_SRCS   += $(HOST_SRCS)
LIB_LIBS   += $(RPC_LIBS) -lprotobuf-c -lz -lssl -lcrypto -lcrypt
RAFTD_SRCS += $(HOST_ROOM_SRCS) $(VFS_SRCS) vfs/walfmt.c vfs/txn.c

# A libFuzzer target of a parser seeded from tests/fuzz/seeds/fuzz_NAME,
# built for make test (tests/fuzz/test_fuzz_NAME.sh runs it briefly) and
# run longer by make fuzz-NAME: $(call seeded_fuzzer,NAME,SOURCES,DEPS,LIBS)
define seeded_fuzzer
$$(FUZZ_DIR)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(2) $(3)
	@mkdir -p $$(@D)
	clang -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Ilib -Iraftd -Iraftd/node -Iraftd/host -Iraftd/api -Iraftd/rpc \
	    -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $$@ tests/fuzz/fuzz_$(1).c $(2) $(4)

test test-long: $$(FUZZ_DIR)/fuzz_$(1)

.PHONY: fuzz-$(1)
fuzz: fuzz-$(1)
fuzz-$(1): $$(FUZZ_DIR)/fuzz_$(1)
	@mkdir -p $$(FUZZ_DIR)/corpus_$(1)
	$$(FUZZ_DIR)/fuzz_$(1) -max_total_time=$$(FUZZ_SECONDS) \
	    $$(FUZZ_DIR)/corpus_$(1) tests/fuzz/seeds/fuzz_$(1)
endef

# The identity-file parser (raftd/host/identity.c) and the auth-file parser
# with its verdicts (raftd/api/auth.c).
$(eval $(call seeded_fuzzer,identity,raftd/host/identity.c,raftd/host/host.h,))
# The local door's messages (raftd/host/doormsg.c).
$(eval $(call seeded_fuzzer,door,raftd/host/doormsg.c,raftd/host/doormsg.h,))
$(eval $(call seeded_fuzzer,auth,raftd/api/auth.c raftd/api/methods.c,raftd/api/auth.h raftd/api/methods.h,-lcrypt -lcrypto))

# Consistent database images: the VFS side (vfs/image.c) serves FetchImage
# "@image"; raftd/host/image_fetch.c is the client that downloads and
# verifies one (in HOST_ROOM_SRCS).
RAFTD_SRCS += $(VFS_SRCS) vfs/walfmt.c vfs/txn.c vfs/imagefmt.c vfs/image.c

# Flags of the libFuzzer builds below (pure raftd code with the generated
# protobuf-c code).
FUZZ_RAFTD_CFLAGS = -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE \
    -Ilib -Iraftd -Iraftd/node -Iraftd/host -Iraftd/api -Iraftd/rpc -Ivfs -I$(BUILD)/gen -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined

# libFuzzer build of the chunk checks of an image fetch (image_rx.c), run
# by tests/fuzz/test_fuzz_image_rx.sh, seeded with test_image's images.
$(FUZZ_DIR)/fuzz_image_rx: tests/fuzz/fuzz_image_rx.c raftd/host/image_rx.c \
		raftd/host/image_rx.h vfs/imagefmt.c vfs/image.h vfs/txn.c \
		$(PROTO_GEN_C) $(PROTO_GEN_H)
	@mkdir -p $(@D)
	clang $(FUZZ_RAFTD_CFLAGS) -o $@ tests/fuzz/fuzz_image_rx.c \
	    raftd/host/image_rx.c vfs/imagefmt.c vfs/txn.c $(PROTO_GEN_C) \
	    -lprotobuf-c -lz -lpthread

test test-long: $(FUZZ_DIR)/fuzz_image_rx

.PHONY: fuzz-image-rx
fuzz: fuzz-image-rx
fuzz-image-rx: $(FUZZ_DIR)/fuzz_image_rx $(BUILD)/tests/unit/test_image
	@mkdir -p $(FUZZ_DIR)/corpus_image_rx
	sh tests/fuzz/seed_image_rx.sh $(BUILD)/tests/unit/test_image \
	    $(FUZZ_DIR)/corpus_image_rx
	$(FUZZ_DIR)/fuzz_image_rx -max_total_time=$(FUZZ_SECONDS) \
	    $(FUZZ_DIR)/corpus_image_rx

# libFuzzer build of the cluster and internal request checks (reqcheck.c:
# Join, Remove, Transfer, ..., FetchImage), run by
# tests/fuzz/test_fuzz_cluster_req.sh from tests/fuzz/seeds/fuzz_cluster_req.
$(FUZZ_DIR)/fuzz_cluster_req: tests/fuzz/fuzz_cluster_req.c raftd/api/reqcheck.c \
		raftd/api/reqcheck.h lib/addr.c raftd/host/identity.c raftd/node/entry.c \
		$(PROTO_GEN_C) $(PROTO_GEN_H)
	@mkdir -p $(@D)
	clang $(FUZZ_RAFTD_CFLAGS) -o $@ tests/fuzz/fuzz_cluster_req.c \
	    raftd/api/reqcheck.c lib/addr.c raftd/host/identity.c raftd/node/entry.c \
	    $(PROTO_GEN_C) -lprotobuf-c

test test-long: $(FUZZ_DIR)/fuzz_cluster_req

.PHONY: fuzz-cluster-req
fuzz: fuzz-cluster-req
fuzz-cluster-req: $(FUZZ_DIR)/fuzz_cluster_req
	@mkdir -p $(FUZZ_DIR)/corpus_cluster_req
	$(FUZZ_DIR)/fuzz_cluster_req -max_total_time=$(FUZZ_SECONDS) \
	    $(FUZZ_DIR)/corpus_cluster_req tests/fuzz/seeds/fuzz_cluster_req
