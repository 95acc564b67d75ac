#!/usr/bin/env bash
# `make lb-test`: two instances behind HAProxy on loopback, a rolling restart under steady load.
#
#   emulator (kinesis-local) <- instance s1, instance s2 <- HAProxy (health check GET /health/ready,
#   keep-alive to the backends) <- a pooled client (deploy/test/load.py: requests.Session per worker)
#
# While the client writes unique bodies at a steady rate, each instance in turn gets SIGTERM,
# must drain and exit 0, is started again, and must be back UP in HAProxy before the other one is
# touched. Then: 0 failed requests at the client, no 5xx (no 502/503 from the balancer), every
# body answered 200 in the stream exactly once and nothing else there (GetRecords on every shard).
# Prints the figures. The HAProxy settings that make this work are in deploy/haproxy/haproxy.cfg,
# and docs/deployment.md, "Behind a load balancer", explains them.
#
# Environment: RATE (requests/s, default 200), WORKERS (client connections, default 8),
# HAPROXY_CFG (default deploy/haproxy/haproxy.cfg; e.g. a copy without the retries, to see why
# they are there).
# Needs: target/release/kinesis-writer (built if missing), haproxy (apt-get installed if missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rate=${RATE:-200}
workers=${WORKERS:-8}
bin=${KW_BIN:-target/release/kinesis-writer}

command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
python3 -c 'import requests' 2>/dev/null || python3 -m pip install -q requests
[ -x "$bin" ] || nice -n 19 cargo build --release --locked --bin kinesis-writer

work=$(mktemp -d /tmp/kw-lb-test.XXXXXX)
# shellcheck source=SCRIPTDIR/../deploy/test/lib.sh
. deploy/test/lib.sh
declare -A pid port
haproxy_pid=""

cleanup() {
  local status=$?
  touch "$work/stop"
  for s in s1 s2; do
    if [ -n "${pid[$s]:-}" ] && kill -0 "${pid[$s]}" 2>/dev/null; then
      kill -TERM "${pid[$s]}" 2>/dev/null || true
      wait "${pid[$s]}" 2>/dev/null || true
    fi
  done
  [ -n "$haproxy_pid" ] && kill -TERM "$haproxy_pid" 2>/dev/null || true
  [ -n "${load_pid:-}" ] && kill -TERM "$load_pid" 2>/dev/null || true
  emulator_stop
  if [ "$status" -ne 0 ]; then echo "lb-test FAILED (logs kept in $work)" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

start_instance() {
  local s=$1
  # shellcheck disable=SC2046
  env $(service_env "${port[$s]}" "$kinesis_port") "$bin" >>"$work/$s.log" 2>&1 &
  pid[$s]=$!
}

# The server's state and counters in HAProxy's CSV stats: status (UP/DOWN/...).
server_status() {
  curl -s "http://127.0.0.1:$stats_port/stats;csv" | awk -F, -v s="$1" '$1=="kinesis_writer" && $2==s {print $18}'
}
wait_status() {
  local s=$1 want=$2
  for _ in $(seq 1 300); do
    [ "$(server_status "$s")" = "$want" ] && return 0
    sleep 0.1
  done
  echo "$s did not become $want in HAProxy (now: $(server_status "$s"))" >&2
  return 1
}
ts() { date -u +%H:%M:%S.%3N; }

kinesis_port=$(free_port)
port[s1]=$(free_port)
port[s2]=$(free_port)
front_port=$(free_port)
stats_port=$(free_port)
stream=lb-test

emulator_start "$kinesis_port"
# shellcheck disable=SC2046
env $(service_env 0 "$kinesis_port") APP_DEV__CREATE_STREAMS="$stream:2" "$bin" create-streams >"$work/create.log" 2>&1
start_instance s1
start_instance s2
wait_http "http://127.0.0.1:${port[s1]}/health/ready"
wait_http "http://127.0.0.1:${port[s2]}/health/ready"

export LB_PORT=$front_port LB_STATS_PORT=$stats_port S1_PORT=${port[s1]} S2_PORT=${port[s2]}
cfg=${HAPROXY_CFG:-deploy/haproxy/haproxy.cfg}
haproxy -c -q -f "$cfg"
haproxy -f "$cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
wait_status s1 UP
wait_status s2 UP
echo "$(ts) emulator :$kinesis_port, s1 :${port[s1]}, s2 :${port[s2]}, HAProxy :$front_port (stats :$stats_port); load $rate req/s from $workers pooled connections"

started=$(date +%s.%N)
python3 deploy/test/load.py --url "http://127.0.0.1:$front_port" --stream "$stream" --rate "$rate" \
  --workers "$workers" --duration 300 --stop-file "$work/stop" --acked "$work/acked" --tag "lb$$" \
  >"$work/load.json" &
load_pid=$!
sleep 3

for s in s1 s2; do
  t0=$(date +%s.%N)
  echo "$(ts) SIGTERM $s (pid ${pid[$s]})"
  kill -TERM "${pid[$s]}"
  set +e; wait "${pid[$s]}"; code=$?; set -e
  t1=$(date +%s.%N)
  echo "$(ts) $s exited with status $code after $(printf %.2f "$(echo "$t1 - $t0" | bc)") s; HAProxy sees it $(server_status "$s")"
  [ "$code" -eq 0 ] || { echo "$s did not exit 0 after SIGTERM" >&2; tail -5 "$work/$s.log" >&2; exit 1; }
  wait_status "$s" DOWN
  sleep 2
  start_instance "$s"
  wait_status "$s" UP
  t2=$(date +%s.%N)
  echo "$(ts) $s started again (pid ${pid[$s]}), UP in HAProxy $(printf %.2f "$(echo "$t2 - $t1" | bc)") s after its exit"
  sleep 3
done

touch "$work/stop"
wait "$load_pid"
load_pid=""
ended=$(date +%s.%N)

# What the balancer itself answered (its own 5xx: 502 bad gateway, 503 no server, 504).
stats=$(curl -s "http://127.0.0.1:$stats_port/stats;csv")
front_5xx=$(echo "$stats" | awk -F, '$1=="front" && $2=="FRONTEND" {print $44}')
retries=$(echo "$stats" | awk -F, '$1=="kinesis_writer" && $2=="BACKEND" {print $16}')
redispatches=$(echo "$stats" | awk -F, '$1=="kinesis_writer" && $2=="BACKEND" {print $17}')
backend_connects=$(echo "$stats" | awk -F, '$1=="kinesis_writer" && $2=="BACKEND" {print $85}')
backend_reuses=$(echo "$stats" | awk -F, '$1=="kinesis_writer" && $2=="BACKEND" {print $86}')

stream_data "$stream" "$kinesis_port" >"$work/stream"
python3 - "$work/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"client: {r['requests']} requests in {r['seconds']} s ({r['req_per_s']}/s), statuses {r['statuses']}, "
      f"failures {r['failures']} {r['failure_types'] or ''}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
for e in r["failure_examples"]:
    print("  failure:", e)
PY
echo "HAProxy: 5xx answered by the frontend $front_5xx, retries $retries, redispatches $redispatches;" \
  "backend connections opened $backend_connects, requests on a reused (kept-alive) one $backend_reuses"
echo "wall time of the run: $(printf %.1f "$(echo "$ended - $started" | bc)") s"

ok=true
compare_records "$work/acked" "$work/stream" || ok=false
python3 - "$work/load.json" "$front_5xx" <<'PY' || ok=false
import json, sys
r = json.load(open(sys.argv[1]))
bad = {k: v for k, v in r["statuses"].items() if k != "200"}
problems = []
if r["failures"]: problems.append(f"{r['failures']} failed requests at the client")
if bad: problems.append(f"answers other than 200: {bad}")
if int(sys.argv[2] or 0): problems.append(f"HAProxy answered {sys.argv[2]} 5xx")
if r["requests"] < 100: problems.append("too few requests to mean anything")
for p in problems: print("FAIL:", p)
sys.exit(1 if problems else 0)
PY
if ! grep -q '"Stopped"' "$work/s1.log"; then echo "FAIL: s1 did not log Stopped" >&2; ok=false; fi
$ok || exit 1
echo "lb-test: PASSED"
