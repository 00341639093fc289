# Makefile -- the one build entry of raftlite.
#
#   make            build/raftlite.so (the SQLite extension) and build/raftd
#   make test       every test, plus an ASan/UBSan build of the unit and
#                   mirror tests; closes with "N passed, N failed"
#   make test-long  the same tests at full size
#   make bench      benchmarks (bench/), ratios against a same-run baseline
#   make fuzz       the libFuzzer decoders, longer than the run in make test
#   make demo       a 3-node raftd cluster used from the shell and over gRPC
#
# Each directory adds its sources in its own module.mk; this file only holds
# the rules. Nothing here may depend on state outside the tree except the
# Debian packages mk/deps.sh installs.

BUILD    ?= build
CC       ?= gcc
OPT      ?= -O2
SAN      ?=
PYTHON   ?= /usr/bin/python3

CFLAGS_COMMON = -std=gnu11 -Wall -Wextra -Werror -g -fPIC -D_GNU_SOURCE \
                $(OPT) $(SAN) -Ilib -Ivfs -Iext -Iraftd -Iraftd/node \
                -Iraftd/host -Iraftd/api -Iraftd/rpc -I$(BUILD)/gen
# Objects linked into the extension call SQLite through sqlite3_api;
# objects of unit tests and raftd link libsqlite3 directly (SQLITE_CORE).
CFLAGS_EXT  = $(CFLAGS_COMMON)
CFLAGS_CORE = $(CFLAGS_COMMON) -DSQLITE_CORE
LDFLAGS_SAN = $(SAN)

LIB_SRCS   :=
LIB_LIBS   := -lpthread
RAFTD_SRCS :=
RAFTD_LIBS := -lsqlite3 -lpthread
UNIT_TESTS :=
GEN_HDRS   :=

include lib/module.mk
include vfs/module.mk
include ext/module.mk
include raftd/node/module.mk
include raftd/host/module.mk
include raftd/rpc/module.mk
include raftd/api/module.mk
include raftd/module.mk
include proto/module.mk
include tests/unit/module.mk
include bench/module.mk

LIB_OBJS   = $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
RAFTD_OBJS = $(patsubst %.c,$(BUILD)/core/%.o,$(RAFTD_SRCS))
UNIT_BINS  = $(patsubst %,$(BUILD)/tests/unit/%,$(UNIT_TESTS))

.PHONY: all deps test test-long bench fuzz demo clean unit-bins asan format

all: deps $(BUILD)/raftlite.so $(if $(RAFTD_SRCS),$(BUILD)/raftd)

# Every compile waits for deps (order only): under make -j a compile must
# never race the package install that brings its headers.
deps:
	@sh mk/deps.sh

$(BUILD)/raftlite.so: $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) -shared -o $@ $^ $(LDFLAGS_SAN) $(LIB_LIBS)

$(BUILD)/raftd: $(RAFTD_OBJS)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_SAN) $(RAFTD_LIBS)

$(BUILD)/obj/%.o: %.c $(GEN_HDRS) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXT) -MMD -MP -c -o $@ $<

$(BUILD)/core/%.o: %.c $(GEN_HDRS) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CORE) -MMD -MP -c -o $@ $<

# A unit test tests/unit/NAME.c links the core objects listed in
# UNIT_SRCS_NAME (set in tests/unit/module.mk) and libsqlite3.
# (The patsubst sits in a variable: a % written in a pattern rule's
# prerequisites is replaced by the stem before secondary expansion.)
unit_objs = $(patsubst %.c,$(BUILD)/core/%.o,$(UNIT_SRCS_$(1)))
.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/tests/unit/%: $(BUILD)/core/tests/unit/%.o \
		$$(call unit_objs,$$*)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDFLAGS_SAN) $(UNIT_LIBS_$*) -lsqlite3 -lpthread

unit-bins: $(UNIT_BINS)

ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined
asan:
	$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	    SAN="$(ASAN_FLAGS)" build/asan/raftlite.so unit-bins \
	    $(if $(RAFTD_SRCS),build/asan/raftd)

test: all unit-bins asan
	$(PYTHON) tests/run.py

test-long: all unit-bins asan
	$(PYTHON) tests/run.py --long

bench: all
	@if [ -f bench/run.py ]; then $(PYTHON) bench/run.py; else \
	    echo "make bench: no benchmarks yet (bench/ is empty)"; exit 1; fi

# demo/demo.py: 3 raftd on loopback (free ports, temp dir), a shell and a
# gRPC session, everything stopped and removed at the end.
demo: all
	@$(PYTHON) demo/demo.py

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
