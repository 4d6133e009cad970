#!/bin/bash
# The daemon's live heap over time under a settled simulated cluster (docs/scale.md,
# "What the daemon's memory is made of now"): a glibc build of the coordinator
# (`cargo build --release -p vramroute-coordinator --no-default-features`, copied to
# BIN) runs under heaptrack against a private redis-server and `vramroute-sim --settled`;
# a route request every 20 ms. Prints the heap after the warm-up (min/median/p90/max,
# from heaptrack's massif output) and what is live at the end by allocation site.
# usage: scripts/daemon-heap.sh BIN NODES SECONDS   (everything kept under /tmp/daemon-heap)
set -u
BIN=$1; NODES=$2; SECS=$3
T=${CARGO_TARGET_DIR:-target}/release
command -v heaptrack >/dev/null || { echo "heaptrack is not installed (apt-get install heaptrack)" >&2; exit 2; }
PORT=$((20000 + RANDOM % 20000)); APIPORT=$((PORT + 1))
D=/tmp/daemon-heap; rm -rf $D; mkdir -p $D
redis-server --port $PORT --save '' --appendonly no --daemonize no --notify-keyspace-events KEA > $D/redis.log 2>&1 &
RPID=$!
sleep 0.5
$T/vramroute-sim --redis-url redis://127.0.0.1:$PORT --nodes $NODES --settled --duration $((SECS + 40))s > $D/sim.out 2> $D/sim.err &
SPID=$!
sleep 8
heaptrack -o $D/daemon $BIN --redis-url redis://127.0.0.1:$PORT --log-level warn daemon \
    --listen 127.0.0.1:$APIPORT --gateway-listen off > $D/daemon.out 2> $D/daemon.err &
HPID=$!
sleep 3
CPID=$(pgrep -n -f "^$BIN --redis-url redis://127.0.0.1:$PORT ")
( end=$((SECONDS + SECS)); while [ $SECONDS -lt $end ]; do
    curl -s "http://127.0.0.1:$APIPORT/v1/route?model=llama3.1:8b&size_mb=4700" > /dev/null; sleep 0.02
  done ) &
LPID=$!
sleep $SECS
kill $LPID 2>/dev/null
# SIGKILL: no destructors run, so "leaked" below is what was live at this moment.
kill -KILL $CPID; wait $HPID
kill -TERM $SPID; wait $SPID
kill $RPID; wait $RPID 2>/dev/null
heaptrack_print -f $D/daemon.zst -M $D/massif.out > /dev/null 2>&1
python3 - $D/massif.out <<'PY'
import re, sys
s = open(sys.argv[1]).read()
snaps = [(float(t), int(b)) for t, b in re.findall(r'time=([\d.]+)\nmem_heap_B=(\d+)', s)]
end = max(t for t, _ in snaps)
steady = sorted(b / 1e6 for t, b in snaps if 30 < t < end - 5)
q = lambda f: steady[min(len(steady) - 1, int(f * len(steady)))]
print(f"heap after 30 s (MB): min {steady[0]:.1f}, median {q(0.5):.1f}, p90 {q(0.9):.1f}, max {steady[-1]:.1f} ({len(steady)} snapshots)")
PY
heaptrack_print -f $D/daemon.zst --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    --print-leaks 1 2>/dev/null | grep "leaked over" -A1 | grep -v -- "^--" | paste - - \
    | grep -v "calls from:" | cut -c1-160 | head -12
