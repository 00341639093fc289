# raftd/: the node and the gRPC sidecar (sources added as they land)
