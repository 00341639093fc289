# bench/: `make bench` runs bench/run.py (see bench/README.md). The node
# benchmark is a C program linking the node's core objects (no SQLite)
# and the fake applier of the node's unit test (tests/unit/lib/).
BENCH_NODE_OBJS := $(BUILD)/core/bench/bench_node.o \
                   $(patsubst %.c,$(BUILD)/core/%.o,$(NODE_SRCS) $(NODE_LIB_SRCS) \
                     tests/unit/lib/fake_applier.c)
$(BUILD)/bench/bench_node: $(BENCH_NODE_OBJS)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_SAN) $(NODE_LIB_LIBS)

# One loopback round trip of the gRPC stack (the `anywhere` benchmark's
# unit): the raftd objects but its main, with SQLite.
BENCH_RTT_OBJS := $(BUILD)/core/bench/bench_rtt.o \
                  $(patsubst %.c,$(BUILD)/core/%.o,\
                    $(filter-out raftd/main.c,$(RAFTD_SRCS)))
$(BUILD)/bench/bench_rtt: $(BENCH_RTT_OBJS)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_SAN) $(RAFTD_LIBS) -lsqlite3

.PHONY: bench-bins
bench-bins: $(BUILD)/bench/bench_node $(BUILD)/bench/bench_rtt
bench: bench-bins

# The dqlite peer of the `peers` benchmark (bench/dqlite/main.go): Go,
# GOPATH mode, offline, against Debian's go-dqlite sources; caches inside
# the build tree. go-dqlite's cgo flags include -Wl,-z,now, which Go only
# accepts when allowed by name.
DQLITE_BENCH_ENV = GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= \
    GOENV=off GOPROXY=off GOCACHE=$(abspath $(BUILD))/gocache \
    CGO_LDFLAGS_ALLOW=-Wl,-z,now
$(BUILD)/bench/dqlite-bench: bench/dqlite/main.go | deps-bench
	@mkdir -p $(@D)
	cd bench/dqlite && env $(DQLITE_BENCH_ENV) go build -buildvcs=false \
	    -o $(abspath $@) .

.PHONY: deps-bench
deps-bench:
	@sh mk/deps.sh bench
bench-bins: $(BUILD)/bench/dqlite-bench
