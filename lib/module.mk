# lib/: the ground floor (no dependencies but libc, and OpenSSL for
# certid.c): byte order, typed errors, small fs helpers, fault points,
# commit timing, address checks, certificate identities. Headers only,
# except the files listed here.
LIB_GROUND_SRCS := lib/fault.c lib/timing.c lib/addr.c lib/certid.c
LIB_SRCS   += $(LIB_GROUND_SRCS)
RAFTD_SRCS += $(LIB_GROUND_SRCS)

# Fault points (lib/fault.h, issue #6): RL_FAULT() compiles to nothing in
# the normal builds. build/fault/raftlite.so is the test variant with
# -DRL_FAULTS that tests/cluster/test_crash_matrix.py loads
# (RAFTLITE_FAULT=name[:N] arms a point); tests/vfs/test_fault_build.py
# checks that build/raftlite.so holds no point name.
FAULT_BUILD ?= build/fault
.PHONY: fault
fault:
	$(MAKE) --no-print-directory BUILD=$(FAULT_BUILD) SAN=-DRL_FAULTS \
	    $(FAULT_BUILD)/raftlite.so
test test-long: fault

# Who a certificate speaks for (tests/unit/test_certid.c).
UNIT_TESTS += test_certid
UNIT_SRCS_test_certid := lib/certid.c lib/addr.c
UNIT_LIBS_test_certid := -lssl -lcrypto

# Loopback, exposed addresses and the Join probe (tests/unit/test_addr.c).
UNIT_TESTS += test_addr
UNIT_SRCS_test_addr := lib/addr.c
