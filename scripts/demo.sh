#!/usr/bin/env bash
# A local demo cluster: a private redis-server on a free loopback port (never 6379), two
# vramroute-reporter processes on fixture sysfs trees (an AMD card and a CPU-only node)
# with distinct node ids / advertise IPs, and the coordinator daemon. Prints a few CLI
# and HTTP answers, then stops everything (also on Ctrl-C or error).
#
#   scripts/demo.sh            # build (debug) and run
#   KEEP=1 scripts/demo.sh     # leave it running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || { echo "demo.sh: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
command -v curl >/dev/null || { echo "demo.sh: needs curl" >&2; exit 1; }

echo "== building vramroute-reporter and vramroute-coordinator" >&2
cargo build -q -p vramroute-reporter -p vramroute-coordinator
target="${CARGO_TARGET_DIR:-target}/debug"
reporter="$target/vramroute-reporter"
coordinator="$target/vramroute-coordinator"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

redis_port="$(free_port)"
while [ "$redis_port" = 6379 ]; do redis_port="$(free_port)"; done
api_port="$(free_port)"
gateway_port="$(free_port)"
redis_url="redis://127.0.0.1:$redis_port/0"

echo "== redis-server on 127.0.0.1:$redis_port (private, no persistence)" >&2
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

echo "== two reporters: 127.0.0.2 (AMD fixture), 127.0.0.3 (no GPU)" >&2
"$reporter" --log-level warn run --redis-url "$redis_url" --no-nvml --no-ollama \
    --sysfs-root crates/probe/tests/data/amd-discrete \
    --node-id 127.0.0.2:11434 --advertise-ip 127.0.0.2 --interval 2 2>"$work/reporter-amd.log" &
pids+=($!)
"$reporter" --log-level warn run --redis-url "$redis_url" --no-nvml --no-ollama \
    --sysfs-root crates/probe/tests/data/empty \
    --node-id 127.0.0.3:11434 --advertise-ip 127.0.0.3 --interval 2 2>"$work/reporter-cpu.log" &
pids+=($!)

echo "== coordinator daemon on 127.0.0.1:$api_port" >&2
"$coordinator" --redis-url "$redis_url" daemon --listen "127.0.0.1:$api_port" \
    --gateway-listen "127.0.0.1:$gateway_port" 2>"$work/daemon.log" &
pids+=($!)
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$api_port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
# Wait (bounded) until both reporters are visible.
for _ in $(seq 50); do
    n="$("$coordinator" --redis-url "$redis_url" status --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))')"
    [ "$n" -ge 2 ] && break
    sleep 0.2
done

run() {
    echo
    echo "\$ $*"
    "$@"
}

run "$coordinator" --redis-url "$redis_url" status
run "$coordinator" --redis-url "$redis_url" route llama3.1:8b
run "$coordinator" --redis-url "$redis_url" check codellama:13b
run "$coordinator" --redis-url "$redis_url" plan llama3.1:70b
run curl -s "http://127.0.0.1:$api_port/v1/route?model=llama3.1:8b" -o "$work/route.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k: d[k] for k in ("model","size_mb","size_source","policy","placement","reason")}, indent=2))' "$work/route.json"
run curl -s -X POST "http://127.0.0.1:$api_port/v1/route" -H 'content-type: application/json' \
    -d '{"model":"my-model","size_mb":30000}' -o "$work/route2.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k: d[k] for k in ("placement","reason")}, indent=2))' "$work/route2.json"
run curl -s "http://127.0.0.1:$api_port/v1/route?model=mystery:7b"
echo
run curl -s "http://127.0.0.1:$api_port/healthz"
echo
echo
echo "\$ curl -s http://127.0.0.1:$api_port/metrics | grep -E '^vramroute_coordinator_(nodes|gpus|decisions_total)'"
curl -s "http://127.0.0.1:$api_port/metrics" | grep -E '^vramroute_coordinator_(nodes|gpus|decisions_total)'

if [ "${KEEP:-0}" = 1 ]; then
    echo
    echo "demo running: SOLLOL_REDIS_URL=$redis_url, API http://127.0.0.1:$api_port (Ctrl-C stops it)"
    wait
fi
echo
echo "demo.sh: done; stopping redis, reporters and the daemon" >&2
