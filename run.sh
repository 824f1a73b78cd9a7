#!/usr/bin/env bash
# Runs both services on the embedded defaults: SQLite databases and the
# zone-file provider under ./data, gRPC on 127.0.0.1:50051 (cache-service) and
# 127.0.0.1:50052 (tracking-service). Ctrl-C stops both cleanly.
# Any setting can be overridden through the environment (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
export DNS_ZONE="${DNS_ZONE:-example.com}"
cargo build --release -p cache-service -p tracking-service
./target/release/cache-service & cache=$!
./target/release/tracking-service & tracking=$!
trap 'kill -TERM $cache $tracking 2>/dev/null; wait $cache $tracking' INT TERM
wait -n $cache $tracking || true
kill -TERM $cache $tracking 2>/dev/null || true
wait $cache $tracking 2>/dev/null || true
