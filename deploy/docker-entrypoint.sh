#!/bin/sh
# recoveryd's container entrypoint (deploy/Dockerfile): the API on every
# address, raft on this container's own address (`hostname -i`, the pod's
# or the container network's), so replicas on other hosts reach it; 127.0.0.1
# would only ever be reachable from inside this container.
#   RECOVERYD_RAFT_ADDRESS=HOST:PORT   raft's address instead (a DNS name a
#                                      peer resolves, or 127.0.0.1:7080 for a
#                                      replica alone)
# Further arguments go to recoveryd (--replica-id 2, --peer ..., --join).
set -eu
addr=${RECOVERYD_RAFT_ADDRESS:-}
if [ -z "$addr" ]; then
    ip=$(hostname -i 2>/dev/null | awk '{print $1}')
    if [ -z "$ip" ]; then
        echo "recoveryd-entrypoint: this container has no address of its own;" \
            "set RECOVERYD_RAFT_ADDRESS=HOST:PORT" >&2
        exit 1
    fi
    case $ip in
    *:*) addr="[$ip]:7080" ;;
    *) addr="$ip:7080" ;;
    esac
fi
exec /usr/bin/recoveryd --config /etc/recoveryd/recoveryd.yaml --listen 0.0.0.0:8080 \
    --raft-address "$addr" "$@"
