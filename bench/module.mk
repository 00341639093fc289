# bench/: `make bench` runs bench/run.py (see bench/README.md). The node
# benchmark is a C program linking the node's core objects (no SQLite).
BENCH_NODE_OBJS := $(BUILD)/core/bench/bench_node.o \
                   $(patsubst %.c,$(BUILD)/core/%.o,$(NODE_SRCS) $(NODE_TLS_SRCS))
$(BUILD)/bench/bench_node: $(BENCH_NODE_OBJS)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_SAN) -lraft -luv $(NODE_TLS_LIBS)

.PHONY: bench-bins
bench-bins: $(BUILD)/bench/bench_node
bench: bench-bins
