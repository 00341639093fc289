# proto/: protobuf-c code generated at build time from proto/raftlite.proto
# into $(BUILD)/gen (protoc-c); the .pb-c.c is compiled into raftd.
PROTO_GEN_C := $(BUILD)/gen/raftlite.pb-c.c
PROTO_GEN_H := $(BUILD)/gen/raftlite.pb-c.h
GEN_HDRS += $(PROTO_GEN_H)
RAFTD_SRCS += $(PROTO_GEN_C)

$(PROTO_GEN_H): proto/raftlite.proto
	@mkdir -p $(@D)
	protoc-c -Iproto --c_out=$(@D) proto/raftlite.proto

$(PROTO_GEN_C): $(PROTO_GEN_H)
	@test -f $@ || { rm -f $<; $(MAKE) --no-print-directory $<; }
