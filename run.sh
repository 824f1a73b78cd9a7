#!/usr/bin/env bash
# Runs both services on the embedded defaults: SQLite databases and the
# zone-file provider under ./data, gRPC on 127.0.0.1:50051 (cache-service) and
# 127.0.0.1:50052 (tracking-service). Ctrl-C stops both cleanly.
#
# Any setting can be overridden through the environment (see README.md).
# CACHE_SERVICE_URL follows CACHE_LISTEN_ADDR when only that is set.
# RUN_PROFILE=debug builds and runs the debug binaries instead of the release
# ones (the tests use it, to reuse their build). The binaries are taken from
# where cargo reports it put them, so CARGO_TARGET_DIR is honoured.
#
# Exits non-zero when either service fails to start or stops with an error;
# the other one is then stopped too.
set -euo pipefail
cd "$(dirname "$0")"
export DNS_ZONE="${DNS_ZONE:-example.com}"

if [ -n "${CACHE_LISTEN_ADDR:-}" ] && [ -z "${CACHE_SERVICE_URL:-}" ]; then
  host=${CACHE_LISTEN_ADDR%:*}
  port=${CACHE_LISTEN_ADDR##*:}
  case $host in
    0.0.0.0) host=127.0.0.1 ;;
    "[::]") host="[::1]" ;;
  esac
  scheme=http
  [ -z "${TLS_CERT_FILE:-}" ] || scheme=https
  export CACHE_SERVICE_URL="$scheme://$host:$port"
fi

case ${RUN_PROFILE:-release} in
  release) profile=(--release) ;;
  debug) profile=() ;;
  *)
    echo "run.sh: RUN_PROFILE must be release or debug, not '${RUN_PROFILE}'" >&2
    exit 2
    ;;
esac
artifacts=$(cargo build "${profile[@]}" -p cache-service -p tracking-service --bins \
  --message-format=json-render-diagnostics)
cache_bin=
tracking_bin=
while IFS= read -r exe; do
  case $exe in
    */cache-service) cache_bin=$exe ;;
    */tracking-service) tracking_bin=$exe ;;
  esac
done < <(sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' <<<"$artifacts")
if [ ! -x "$cache_bin" ] || [ ! -x "$tracking_bin" ]; then
  echo "run.sh: cargo did not report where it built cache-service and tracking-service" >&2
  exit 1
fi

"$cache_bin" &
cache=$!
"$tracking_bin" &
tracking=$!
declare -A name=(["$cache"]=cache-service ["$tracking"]=tracking-service)
running=("$cache" "$tracking")
stopping=
stop() {
  stopping=1
  kill -TERM "${running[@]}" 2>/dev/null || true
}
trap stop INT TERM

status=0
while [ ${#running[@]} -gt 0 ]; do
  ended=
  code=0
  wait -n -p ended "${running[@]}" || code=$?
  # A signal interrupted the wait (the trap has run): keep waiting.
  [ -n "${ended:-}" ] || continue
  left=()
  for pid in "${running[@]}"; do
    [ "$pid" = "$ended" ] || left+=("$pid")
  done
  running=("${left[@]}")
  if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$code
    echo "run.sh: ${name[$ended]} exited with status $code" >&2
  fi
  [ -n "$stopping" ] || stop
done
exit "$status"
