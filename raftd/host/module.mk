# raftd/host/: a database's node hosted in a process (see host.h): the
# identity and host lock, the replicator port, the applier callbacks,
# rebuild and image install, the read gate, bootstrap and join, and the
# FetchImage client (image_fetch.c, image_rx.c). It knows no gRPC service:
# the sidecar (raftd/api/sidecar.c) is started by whoever opens a host.
HOST_ROOM_SRCS := raftd/host/base.c raftd/host/host.c raftd/host/identity.c \
                  raftd/host/door.c raftd/host/doormsg.c \
                  raftd/host/replicator.c raftd/host/client.c \
                  raftd/host/fresh.c raftd/host/applier.c \
                  raftd/host/rebuild.c raftd/host/gate.c raftd/host/setup.c \
                  raftd/host/image_fetch.c raftd/host/image_rx.c \
                  raftd/host/peers.c raftd/host/forward.c
