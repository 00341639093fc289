# tests/unit/: each test_NAME.c is a program; UNIT_SRCS_test_NAME names the
# module sources it links (compiled with -DSQLITE_CORE), UNIT_LIBS_test_NAME
# extra libraries.
UNIT_TESTS += test_smoke
UNIT_SRCS_test_smoke :=
UNIT_TESTS += test_walfmt test_txn
UNIT_SRCS_test_walfmt := vfs/walfmt.c
UNIT_SRCS_test_txn := vfs/txn.c
