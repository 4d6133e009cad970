#!/usr/bin/env bash
# Steady-state footprint of the release reporter: RSS and CPU time over a window
# (WINDOW seconds, default 60) after a 10 s warm-up, against a private redis-server.
#   usage: scripts/footprint.sh target/release/vramroute-reporter [run flags...]
set -eu
BIN=$1; shift
PORT=${PORT:-16399}
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true' EXIT
sleep 0.5
"$BIN" run --redis-url redis://127.0.0.1:$PORT --advertise-ip 127.0.0.1 --no-nvml "$@" 2>/dev/null &
PID=$!
sleep 10
tick() { awk '{print $14+$15}' /proc/$PID/stat; }
t0=$(tick); s0=$(date +%s.%N)
sleep ${WINDOW:-60}
t1=$(tick); s1=$(date +%s.%N)
rss=$(awk '/VmRSS/{print $2}' /proc/$PID/status); hwm=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
hz=$(getconf CLK_TCK)
echo "args: $*"
echo "RSS now: $rss KiB, peak: $hwm KiB"
awk -v a=$t0 -v b=$t1 -v s=$s0 -v e=$s1 -v hz=$hz 'BEGIN{printf "CPU: %.3f s over %.1f s wall = %.4f %% of one core\n", (b-a)/hz, e-s, 100*(b-a)/hz/(e-s)}'
kill -TERM $PID; wait $PID
