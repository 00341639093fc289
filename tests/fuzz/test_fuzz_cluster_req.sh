#!/bin/sh
# budget: 40
# tests/fuzz/test_fuzz_cluster_req.sh -- a short libFuzzer run (6 s; 60 s
# under make test-long) of the cluster and internal request checks
# (raftd/api/reqcheck.c: Join, Remove, Transfer, Leader, Nodes, Status,
# ReadIndex, ExecuteRead, FetchImage), build/fuzz/fuzz_cluster_req, from
# the committed seeds of valid requests. `make fuzz` runs it longer.
exec sh "$(dirname "$0")/run_fuzz.sh" fuzz_cluster_req 6 \
    --dir tests/fuzz/seeds/fuzz_cluster_req
