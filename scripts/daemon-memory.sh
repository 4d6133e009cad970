#!/bin/bash
# The daemon's memory under a simulated cluster (docs/scale.md, "Daemon memory").
# usage: scripts/daemon-memory.sh BIN NODES SECONDS LABEL [VAR=value...]
#   BIN: a vramroute-coordinator binary; NODES simulated by vramroute-sim against a
#   private redis-server on a random loopback port; VAR=value: the daemon's environment
#   (e.g. MIMALLOC_PURGE_DELAY=0). Prints VmRSS/VmHWM every 10 s and smaps_rollup at
#   the end; keeps everything under /tmp/daemem/LABEL. Load: 20 routes + 20 status
#   reads a second (curl), the simulator's 5 s interval and churn defaults.
BIN=$1; NODES=$2; SECS=$3; LABEL=$4; shift 4
T=${CARGO_TARGET_DIR:-target}/release
PORT=$((20000 + RANDOM % 20000))
D=/tmp/daemem/$LABEL; mkdir -p $D
redis-server --port $PORT --save '' --appendonly no --daemonize no --notify-keyspace-events KEA > $D/redis.log 2>&1 &
RPID=$!
sleep 0.5
$T/vramroute-sim --redis-url redis://127.0.0.1:$PORT --nodes $NODES --duration $((SECS+30))s > $D/sim.out 2> $D/sim.err &
SPID=$!
sleep 6
APIPORT=$((PORT+1))
env "$@" $BIN --redis-url redis://127.0.0.1:$PORT --log-level warn daemon --listen 127.0.0.1:$APIPORT --gateway-listen off > $D/daemon.out 2> $D/daemon.err &
CPID=$!
# light route load: a request every 10 ms
( end=$((SECONDS+SECS)); while [ $SECONDS -lt $end ]; do curl -s "http://127.0.0.1:$APIPORT/v1/route?model=llama3.2:3b" >/dev/null; curl -s "http://127.0.0.1:$APIPORT/v1/status" > /dev/null; sleep 0.05; done ) &
LPID=$!
for i in $(seq 1 $((SECS/10))); do
  sleep 10
  echo "t=$((i*10)) $(grep -E 'VmRSS|VmHWM|RssAnon|RssFile' /proc/$CPID/status | tr -s ' \t' ' ' | tr '\n' ' ') threads=$(ls /proc/$CPID/task | wc -l)"
done | tee $D/rss.txt
# CPU seconds the daemon used (utime + stime; clock ticks at 100 Hz)
awk '{printf "cpu_s=%.2f\n", ($14 + $15) / 100}' /proc/$CPID/stat | tee -a $D/rss.txt
cat /proc/$CPID/smaps_rollup > $D/smaps_rollup.txt
cp /proc/$CPID/smaps $D/smaps.txt
kill $LPID 2>/dev/null
kill -TERM $CPID; wait $CPID
kill -TERM $SPID; wait $SPID
kill $RPID; wait $RPID 2>/dev/null
grep -E "Rss|Anon|Huge|Private" $D/smaps_rollup.txt
