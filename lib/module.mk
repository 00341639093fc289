# lib/: the ground floor (no dependencies but libc): byte order, small fs
# helpers, fault points. Headers only, except the fault-point facility.

# Fault points (lib/fault.h, issue #6): RL_FAULT() compiles to nothing in
# the normal builds. build/fault/raftlite.so is the test variant with
# -DRL_FAULTS that tests/cluster/test_crash_matrix.py loads
# (RAFTLITE_FAULT=name[:N] arms a point); tests/vfs/test_fault_build.py
# checks that build/raftlite.so holds no point name.
LIB_SRCS   += lib/fault.c
RAFTD_SRCS += lib/fault.c
FAULT_BUILD ?= build/fault
.PHONY: fault
fault:
	$(MAKE) --no-print-directory BUILD=$(FAULT_BUILD) SAN=-DRL_FAULTS \
	    $(FAULT_BUILD)/raftlite.so
test test-long: fault
