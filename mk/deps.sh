#!/bin/sh
# mk/deps.sh -- make sure the Debian packages raftlite builds and tests with
# are installed. As root it runs `apt-get update` once and installs what is
# missing; otherwise it prints the exact command and fails. It never installs
# anything that is already there, so a second run is silent and fast.
set -eu

PKGS="gcc make pkg-config sqlite3 libsqlite3-dev libraft-dev libuv1-dev
libprotobuf-c-dev protobuf-c-compiler libgrpc-dev protobuf-compiler
python3 python3-grpcio python3-grpc-tools python3-protobuf openssl libssl-dev
clang libclang-rt-14-dev iproute2 nftables gdb"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
    echo "mk/deps.sh: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >&2
else
    echo "mk/deps.sh: missing Debian packages. Run as root:" >&2
    echo "  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
