#!/usr/bin/env bash
# `make bench`: the service against a bare axum server (the ceiling) and against the Python class it
# replaces (newslaunch's KinesisWriter behind FastAPI/uvicorn), all writing to fake-kinesis.
#
# Everything runs on 127.0.0.1 on this machine, is bounded in time, and every process started here
# is stopped on exit, failure or Ctrl-C. Results: a markdown table on stdout, raw data under
# target/bench/.
#
# Knobs (environment):
#   BENCH_SECONDS=10            length of one measured run
#   BENCH_REPEAT=3              measured runs per target and scenario (the table quotes medians)
#   BENCH_WARMUP=2              seconds of unmeasured load before each target/scenario's first run
#   BENCH_TARGETS="ceiling service coalesce nolog sdk json aggregate python"
#                               (service: coalescing off; coalesce: the default configuration,
#                               coalescing on, lean publisher, CBOR, the access log on (one INFO
#                               line per request to a file, as a container's log pipe takes it);
#                               nolog: the default with telemetry.access_log=off; spool: the
#                               default with the bench stream spooled (durable acceptance: 202
#                               after an fsync, shipped in the background; a fresh spool.dir under
#                               target/bench), scenarios a and b; sdk: the default with
#                               kinesis.publisher=sdk; json: the default with
#                               kinesis.protocol=json; aggregate: the default plus KPL
#                               aggregation, scenarios b and d only)
#   BENCH_SCENARIOS="a b c d e" a: 1 x ~200 B JSON, c=64; b: 100 x ~200 B batch, c=16;
#                               c: 1 x 100 KiB octet-stream, c=16; d: b's 100 records as NDJSON
#                               lines with partition_key_pointer=/webUrl, c=16 (not for the
#                               Python peer: the class has neither); e: a's request at c=1
#                               (a lone client: does coalescing slow it? service targets only)
#   BENCH_PUBLISHER=1           then CPU per Kinesis call of each publisher alone
#                               (examples/publisher_cpu.rs; 0 skips it)
#   BENCH_SKIP_BUILD=1          use the release binaries already built
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bench="$root/bench"
out="$root/target/bench"
secs=${BENCH_SECONDS:-10}
repeat=${BENCH_REPEAT:-3}
warmup=${BENCH_WARMUP:-2}
targets=${BENCH_TARGETS:-"ceiling service coalesce nolog sdk json aggregate python"}
scenarios=${BENCH_SCENARIOS:-"a b c d e"}
stream=bench-stream
oha_version=1.16.0

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- cleanup: stop exactly the processes this script started -------------------------------------
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS [METHOD]: until URL answers 2xx.
wait_http() {
  local url=$1 limit=$2 method=${3:-GET} i
  for i in $(seq 1 $((limit * 10))); do
    curl -sf -o /dev/null -X "$method" --max-time 1 "$url" && return 0
    sleep 0.1
  done
  return 1
}

# --- tools -------------------------------------------------------------------------------------
install_oha() {
  command -v oha >/dev/null && return 0
  # HTTP only is all we need; native-tls builds in a fraction of the time of the rustls/aws-lc
  # default (and oha 1.16 does not compile with no TLS feature at all).
  if ! dpkg -s libssl-dev pkg-config >/dev/null 2>&1; then
    log "installing libssl-dev and pkg-config (for oha's native-tls build)"
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config >/dev/null
  fi
  log "installing oha $oha_version (cargo install, a few minutes once)"
  cargo install oha --version "$oha_version" --locked --no-default-features --features native-tls
}

install_venv() {
  local stamp="$bench/.venv/.requirements.sha256"
  local want
  want=$(sha256sum "$bench/requirements.txt" | cut -d' ' -f1)
  if [ -x "$bench/.venv/bin/uvicorn" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "creating bench/.venv (newslaunch, FastAPI, uvicorn; pinned in bench/requirements.txt)"
  rm -rf "$bench/.venv"
  python3 -m venv "$bench/.venv"
  "$bench/.venv/bin/pip" install -q --disable-pip-version-check -r "$bench/requirements.txt"
  echo "$want" >"$stamp"
}

install_oha
export PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null || die "oha not found after install"
install_venv
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries (a cold build takes ~8 min on 2 cores)"
  cargo build --release -p kinesis-writer -p fake-kinesis --bin kinesis-writer --bin fake-kinesis \
    --example ceiling --example publisher_cpu
fi
rel="$root/target/release"
for b in "$rel/kinesis-writer" "$rel/fake-kinesis" "$rel/examples/ceiling" \
  "$rel/examples/publisher_cpu"; do
  [ -x "$b" ] || die "missing $b"
done

# --- inputs ------------------------------------------------------------------------------------
rm -rf "$out"
mkdir -p "$out/runs"
python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
def record(i):
    # ~200 bytes of JSON, shaped like the articles newslaunch streams.
    r = {"webUrl": f"https://example.co.uk/news/2026/article-{i:06d}",
         "webTitle": "Example headline for the benchmark",
         "webPublicationDate": "2026-01-01T00:00:00Z", "content": ""}
    r["content"] = "x" * (200 - len(json.dumps(r, separators=(",", ":"))))
    return r
open(f"{out}/a.json", "w").write(json.dumps(record(0), separators=(",", ":")))
open(f"{out}/b.json", "w").write(json.dumps([record(i) for i in range(100)], separators=(",", ":")))
open(f"{out}/c.bin", "wb").write(bytes((i * 7) % 251 for i in range(100 * 1024)))
# d: the same 100 records as b, one per line, each keyed by its own webUrl.
open(f"{out}/d.ndjson", "w").write("".join(json.dumps(record(i), separators=(",", ":")) + "\n" for i in range(100)))
EOF

# scenario -> concurrency, records per request, content type, body file, query
scenario_conf() {
  case $1 in
    a) echo "64 1 application/json $out/a.json record_per_entry=false" ;;
    b) echo "16 100 application/json $out/b.json record_per_entry=true" ;;
    c) echo "16 1 application/octet-stream $out/c.bin record_per_entry=false" ;;
    d) echo "16 100 application/x-ndjson $out/d.ndjson partition_key_pointer=/webUrl" ;;
    e) echo "1 1 application/json $out/a.json record_per_entry=false" ;;
    *) die "unknown scenario $1" ;;
  esac
}

# --- processes ---------------------------------------------------------------------------------
fake_port=$(free_port)
# --list-shards: one shard in ListShards, so the aggregating target has a shard map.
"$rel/fake-kinesis" --port "$fake_port" --count-only --list-shards >"$out/fake.log" 2>&1 &
pids+=($!)
fake_pid=$!
fake="http://127.0.0.1:$fake_port"
wait_http "$fake/_stats" 20 || die "fake-kinesis did not start (see $out/fake.log)"

declare -A url
declare -A tpid # target -> the pid of its (top) process
for t in $targets; do
  port=$(free_port)
  case $t in
    ceiling)
      "$rel/examples/ceiling" --port "$port" >"$out/ceiling.log" 2>&1 &
      tpid[$t]=$!
      ;;
    service | coalesce | nolog | spool | sdk | json | aggregate)
      # `service`: coalescing off (each request its own call); `coalesce`: the default
      # configuration (coalescing on, lean publisher, CBOR); `sdk`: the default with the SDK
      # publisher; `json`: the default speaking JSON; `aggregate`: the default plus KPL
      # aggregation.
      coalesce=true aggregate=false publisher=lean protocol=cbor access_log=all
      [ "$t" = service ] && coalesce=false
      [ "$t" = nolog ] && access_log=off
      spool_streams="" spool_dir=""
      if [ "$t" = spool ]; then
        spool_dir="$out/spool-$port" spool_streams=$stream
        rm -rf "$spool_dir" && mkdir -p "$spool_dir"
      fi
      [ "$t" = sdk ] && publisher=sdk
      [ "$t" = json ] && protocol=json
      [ "$t" = aggregate ] && aggregate=true
      # The production profile's log filter (info): the access log is on, as deployed.
      env APP_ENVIRONMENT=local APP_SERVER__PORT="$port" APP_TELEMETRY__FILTER=info \
        APP_TELEMETRY__ACCESS_LOG="$access_log" \
        APP_SPOOL__DIR="$spool_dir" APP_SPOOL__STREAMS="$spool_streams" \
        APP_COALESCE__ENABLED="$coalesce" APP_AGGREGATION__ENABLED="$aggregate" \
        APP_KINESIS__PUBLISHER="$publisher" APP_KINESIS__PROTOCOL="$protocol" \
        AWS_ENDPOINT_URL_KINESIS="$fake" APP_KINESIS__ENDPOINT_URL="$fake" AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true \
        "$rel/kinesis-writer" >"$out/$t.log" 2>&1 &
      tpid[$t]=$!
      ;;
    python)
      env AWS_ENDPOINT_URL_KINESIS="$fake" AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true \
        "$bench/.venv/bin/uvicorn" python_peer:app --app-dir "$bench" --host 127.0.0.1 \
        --port "$port" --workers 2 --loop uvloop --http httptools \
        --log-level warning --no-access-log >"$out/python.log" 2>&1 &
      tpid[$t]=$!
      ;;
    *) die "unknown target $t" ;;
  esac
  # Registered for cleanup at once, so a start-up that fails below stops it too.
  pids+=("${tpid[$t]}")
  url[$t]="http://127.0.0.1:$port"
done
for t in $targets; do
  case $t in
    ceiling) wait_http "${url[$t]}/streams/x/records" 30 POST || die "ceiling did not start" ;;
    service | coalesce | nolog | spool | sdk | json | aggregate)
      wait_http "${url[$t]}/health/ready" 60 || die "$t not ready in 60 s (see $out/$t.log)" ;;
    python) wait_http "${url[$t]}/health" 60 || die "python peer did not start (see $out/python.log)" ;;
  esac
done
log "fake $fake; $(for t in $targets; do printf '%s %s; ' "$t" "${url[$t]}"; done)"

# stable_arrived: the fake's records_accepted once it stops moving (late in-flight writes).
stable_arrived() {
  local prev=-1 cur i
  for i in $(seq 1 50); do
    cur=$(curl -sf "$fake/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records_accepted"])')
    [ "$cur" = "$prev" ] && { echo "$cur"; return; }
    prev=$cur
    sleep 0.2
  done
  echo "$cur"
}

# PID and its children (the Python peer's uvicorn workers; nobody else has any).
with_children() { echo "$1" $(pgrep -P "$1" || true); }

# CPU seconds used so far by process PID and its children.
cpu_seconds() {
  local ticks=0 p
  for p in $(with_children "$1"); do
    ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$ticks" -v hz="$clk_tck" 'BEGIN { printf "%.3f", t / hz }'
}
clk_tck=$(getconf CLK_TCK)

# CPU seconds between two saved outputs of `times` (its 2nd line: this shell's waited-for
# children). Only oha runs between them, and `times` must run in the main shell (a subshell's
# children are its own), hence the files.
children_cpu() {
  awk 'FNR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
                  v[++n] = u[1] * 60 + u[2] + s[1] * 60 + s[2] }
       END { printf "%.3f", v[2] - v[1] }' "$1" "$2"
}

# load TARGET SCENARIO DURATION OUTFILE
load() {
  local t=$1 s=$2 d=$3 file=$4 conc rpr ctype body query
  read -r conc rpr ctype body query <<<"$(scenario_conf "$s")"
  # --wait-ongoing-requests-after-deadline: every request sent is answered and counted, so
  # "acknowledged" can be compared exactly with what reached the fake.
  timeout $((d + 60)) oha -z "${d}s" -c "$conc" --no-tui --output-format json \
    --wait-ongoing-requests-after-deadline -m POST -H "content-type: $ctype" -D "$body" \
    "${url[$t]}/streams/$stream/records?$query" >"$file" 2>"$file.err" ||
    die "oha failed for $t/$s (see $file.err)"
}

# --- runs --------------------------------------------------------------------------------------
for rep in $(seq 1 "$repeat"); do
  for s in $scenarios; do
    for t in $targets; do
      # The Python class has no NDJSON and no per-record keys: nothing to compare in d.
      if [ "$s" = d ] && [ "$t" = python ]; then continue; fi
      # Aggregation only changes batches: single-record scenarios go out plain anyway.
      if [ "$t" = aggregate ] && { [ "$s" = a ] || [ "$s" = c ]; }; then continue; fi
      # e compares the service with and without coalescing for a lone client, nothing else.
      if [ "$s" = e ] && [ "$t" != service ] && [ "$t" != coalesce ]; then continue; fi
      # spool: durable acceptance against the synchronous default, on a and b.
      if [ "$t" = spool ] && [ "$s" != a ] && [ "$s" != b ]; then continue; fi
      # nolog measures what the access log costs: on a, b and c.
      if [ "$t" = nolog ] && { [ "$s" = d ] || [ "$s" = e ]; }; then continue; fi
      # sdk and json are compared with the default on a, b and c; d and e add nothing to that.
      if { [ "$t" = sdk ] || [ "$t" = json ]; } && { [ "$s" = d ] || [ "$s" = e ]; }; then
        continue
      fi
      if [ "$rep" = 1 ] && [ "$warmup" -gt 0 ]; then
        load "$t" "$s" "$warmup" "$out/runs/warmup-$t-$s.json"
      fi
      # A spooled target may still be shipping the previous run's backlog: let it finish first.
      if [ "$t" = spool ]; then stable_arrived >/dev/null; fi
      if [ "$t" != ceiling ]; then curl -sf -X POST "$fake/_reset" >/dev/null; fi
      log "run $rep/$repeat: $t, scenario $s, ${secs}s"
      f="$out/runs/$t-$s-$rep.json"
      # CPU used during the run by the target, the fake and oha: where the machine's 2 cores went.
      t0=$(cpu_seconds "${tpid[$t]}"); f0=$(cpu_seconds "$fake_pid")
      times >"$out/.times0"
      load "$t" "$s" "$secs" "$f"
      times >"$out/.times1"
      cpu_t=$(awk -v a="$t0" -v b="$(cpu_seconds "${tpid[$t]}")" 'BEGIN { printf "%.3f", b - a }')
      cpu_f=$(awk -v a="$f0" -v b="$(cpu_seconds "$fake_pid")" 'BEGIN { printf "%.3f", b - a }')
      cpu_o=$(children_cpu "$out/.times0" "$out/.times1")
      arrived=null
      [ "$t" != ceiling ] && arrived=$(stable_arrived)
      read -r conc rpr _ <<<"$(scenario_conf "$s")"
      printf '{"target":"%s","scenario":"%s","rep":%s,"concurrency":%s,"records_per_request":%s,"arrived":%s,"oha":"%s","cpu_target_s":%s,"cpu_fake_s":%s,"cpu_oha_s":%s}\n' \
        "$t" "$s" "$rep" "$conc" "$rpr" "$arrived" "$f" "$cpu_t" "$cpu_f" "$cpu_o" >>"$out/results.jsonl"
    done
  done
done

# --- memory and machine ------------------------------------------------------------------------
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
{
  echo "{"
  echo "\"nproc\": $(nproc),"
  echo "\"cpu\": \"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\","
  echo "\"mem_total_kb\": $(awk '/MemTotal/ {print $2}' /proc/meminfo),"
  for t in service coalesce nolog spool sdk json aggregate; do
    [ -n "${tpid[$t]:-}" ] || continue
    p=${tpid[$t]}
    echo "\"${t}_vmhwm_kb\": $(vm "$p" VmHWM), \"${t}_vmrss_kb\": $(vm "$p" VmRSS),"
  done
  if [ -n "${tpid[python]:-}" ]; then
    peer_rss=0
    for p in $(with_children "${tpid[python]}"); do peer_rss=$((peer_rss + $(vm "$p" VmHWM))); done
    echo "\"python_vmhwm_kb_total\": $peer_rss,"
  fi
  echo "\"seconds\": $secs, \"repeat\": $repeat"
  echo "}"
} >"$out/machine.json"

# --- CPU per Kinesis call, each publisher alone ------------------------------------------------
# After the memory readings: the service targets are stopped first, so the two cores are the
# example's and the fake's.
if [ "${BENCH_PUBLISHER:-1}" = 1 ]; then
  for t in service coalesce nolog spool sdk json aggregate; do
    [ -n "${tpid[$t]:-}" ] && kill -TERM "${tpid[$t]}" 2>/dev/null || true
  done
  sleep 1
  log "CPU per Kinesis call: SDK, lean JSON and lean CBOR publishers, $repeat rep(s)"
  curl -sf -X POST "$fake/_reset" >/dev/null
  AWS_EC2_METADATA_DISABLED=true timeout 600 "$rel/examples/publisher_cpu" --endpoint "$fake" \
    --repeat "$repeat" --cbor >"$out/publisher.jsonl" 2>"$out/publisher.err" ||
    die "publisher_cpu failed (see $out/publisher.err)"
fi

python3 "$bench/report.py" "$out" | tee "$out/report.md"
