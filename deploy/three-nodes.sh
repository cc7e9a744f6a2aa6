#!/bin/sh
# Three clusterhost nodes on this machine, each from its own config file:
# the first bootstraps the cluster with a plugin, the others join it.
# Copy and adapt; Ctrl-C stops all three (SIGTERM: leaders hand over).
#
#   deploy/three-nodes.sh target/plugins/kv.wasm [directory]
#
# CLUSTERHOST names the binary (default: clusterhost on PATH); BASE_PORT the
# first of nine consecutive ports (default 7400): node i uses gRPC
# BASE_PORT+3i, gossip +1, metrics +2.
set -eu

plugin=${1:?usage: three-nodes.sh PLUGIN.wasm [DIRECTORY]}
directory=${2:-./three-nodes}
binary=${CLUSTERHOST:-clusterhost}
base=${BASE_PORT:-7400}
mkdir -p "$directory"

for i in 0 1 2; do
  grpc=$((base + 3 * i))
  config="$directory/node$i.toml"
  {
    echo "data_dir = \"$directory/data$i\""
    echo "listen = \"127.0.0.1:$grpc\""
    echo "gossip = \"127.0.0.1:$((grpc + 1))\""
    echo "metrics_listen = \"127.0.0.1:$((grpc + 2))\""
    echo "node_id = $((i + 1))"
    if [ "$i" = 0 ]; then
      echo "plugin = \"$plugin\""
      echo "bootstrap = true"
    else
      echo "join = [\"127.0.0.1:$((base + 1))\"]"
    fi
  } > "$config"
done

pids=""
stop() { kill -TERM $pids 2>/dev/null; wait; }
trap stop INT TERM

"$binary" run --config "$directory/node0.toml" > "$directory/node0.log" 2>&1 &
pids="$!"
# The first node must lead before the others join it.
until "$binary" status -e "127.0.0.1:$base" > /dev/null 2>&1; do sleep 0.2; done
for i in 1 2; do
  "$binary" run --config "$directory/node$i.toml" > "$directory/node$i.log" 2>&1 &
  pids="$pids $!"
done
until [ "$("$binary" status -e "127.0.0.1:$base" --json 2>/dev/null | grep -c '"suffrage": "voter"')" = 3 ]; do
  sleep 0.2
done
echo "cluster ready: gRPC 127.0.0.1:$base, metrics and status page http://127.0.0.1:$((base + 2))/"
wait
