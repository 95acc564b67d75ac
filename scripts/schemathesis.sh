#!/usr/bin/env bash
# Schemathesis against the running service, described by openapi.yaml.
#
#   scripts/schemathesis.sh [extra schemathesis run options]
#
# 1. a venv in tools/schemathesis/.venv from the pinned tools/schemathesis/requirements.txt;
# 2. the emulator (kinesis-local, installed by scripts/emulator.sh install) on free loopback ports,
#    started here with its own pid (not .run/emulator.pid, which `make run` owns);
# 3. the debug service (cargo build --bin kinesis-writer) on a free port, after
#    `kinesis-writer create-streams` has created example-stream (config/local.yaml);
# 4. schemathesis run openapi.yaml --url http://127.0.0.1:PORT with the checks below, bounded.
# On exit (however it ends) the emulator is SIGKILLed and the service gets SIGTERM.
#
# Environment:
#   ST_MAX_EXAMPLES  test cases per operation (default 50)
#   ST_CHECKS        schemathesis checks (default not_a_server_error,response_schema_conformance)
#   ST_MAX_TIME      optional time budget in seconds for the whole run (--max-time)
#   ST_SEED          optional seed for a reproducible run
#   ST_WORKERS       concurrent workers (default 1; the emulator is slow)
# After the run, tools/schemathesis/summary.py prints how the requests were answered (share of 2xx,
# refusals by problem code) from the run's NDJSON report.
# Reports (JUnit, NDJSON), the emulator and service logs and the replay cache go to
# tools/schemathesis/report/ (gitignored). Replay a failure: SCHEMATHESIS_HOOKS=tools/schemathesis/hooks.py
# tools/schemathesis/.venv/bin/schemathesis --config-file tools/schemathesis/schemathesis.toml replay ID
# (against a service you started). Exit status: schemathesis'.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tool="$root/tools/schemathesis"
venv="$tool/.venv"
report="$tool/report"
mkdir -p "$report"

# --- 1. the pinned venv (reinstalled when requirements.txt changes) --------------------------------
if [ ! -x "$venv/bin/schemathesis" ] || ! cmp -s "$tool/requirements.txt" "$venv/.requirements.txt"; then
  echo "Installing schemathesis into $venv ..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$tool/requirements.txt"
  cp "$tool/requirements.txt" "$venv/.requirements.txt"
fi

free_port() {
  "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

emulator_pid="" service_pid=""
cleanup() {
  local rc=$?
  if [ -n "$service_pid" ]; then
    kill -TERM "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  if [ -n "$emulator_pid" ]; then
    kill -KILL "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 2. the emulator ------------------------------------------------------------------------------
scripts/emulator.sh install
emulator_dir="$root/tools/kinesis-local/node_modules/kinesis-local"
kinesis_port=${KINESIS_PORT:-$(free_port)}
kinesis_tls_port=${KINESIS_TLS_PORT:-$(free_port)}
KINESIS_MOCK_CERT_PATH="$emulator_dir/server.json" \
KINESIS_MOCK_PLAIN_PORT="$kinesis_port" KINESIS_MOCK_TLS_PORT="$kinesis_tls_port" \
CREATE_STREAM_DURATION=0ms LOG_LEVEL=WARN \
  node "$emulator_dir/main.js" >"$report/emulator.log" 2>&1 &
emulator_pid=$!

emulator_answers() {
  curl -sf -o /dev/null -X POST -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'X-Amz-Target: Kinesis_20131202.ListStreams' -H 'X-Amz-Date: 20260101T000000Z' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00' \
    -d '{}' "http://127.0.0.1:$kinesis_port/"
}
for i in $(seq 1 300); do
  emulator_answers && break
  kill -0 "$emulator_pid" 2>/dev/null || { echo "The emulator exited:" >&2; cat "$report/emulator.log" >&2; exit 1; }
  [ "$i" = 300 ] && { echo "The emulator did not answer within 60 s" >&2; exit 1; }
  sleep 0.2
done
echo "Emulator on http://127.0.0.1:$kinesis_port (pid $emulator_pid)"

# --- 3. the service -------------------------------------------------------------------------------
cargo build --quiet --locked --bin kinesis-writer
app_port=$(free_port)
export APP_ENVIRONMENT=${APP_ENVIRONMENT:-local}
export APP_SERVER__PORT="$app_port"
export APP_KINESIS__ENDPOINT_URL="http://127.0.0.1:$kinesis_port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
export AWS_REGION=${AWS_REGION:-us-east-1}
target/debug/kinesis-writer create-streams
target/debug/kinesis-writer >"$report/service.log" 2>&1 &
service_pid=$!
base="http://127.0.0.1:$app_port"
for i in $(seq 1 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health/ready" || true)" = 200 ] && break
  kill -0 "$service_pid" 2>/dev/null || { echo "The service exited:" >&2; cat "$report/service.log" >&2; exit 1; }
  [ "$i" = 300 ] && { echo "The service was not ready within 60 s" >&2; exit 1; }
  sleep 0.2
done
echo "Service on $base (pid $service_pid)"

# --- 4. schemathesis ------------------------------------------------------------------------------
args=(--config-file "$tool/schemathesis.toml" run openapi.yaml --url "$base"
  --checks "${ST_CHECKS:-not_a_server_error,response_schema_conformance}"
  --max-examples "${ST_MAX_EXAMPLES:-50}"
  --workers "${ST_WORKERS:-1}"
  --request-timeout 20
  --generation-database none
  --report junit,ndjson --report-dir "$report"
  --output-sanitize false
  --no-color)
[ -n "${ST_MAX_TIME:-}" ] && args+=(--max-time "$ST_MAX_TIME")
[ -n "${ST_SEED:-}" ] && args+=(--seed "$ST_SEED")
# make test runs this each time (a few MB of NDJSON per run): keep the reports of the last 4 runs.
for kind in ndjson junit; do
  ls -t "$report"/"$kind"-* 2>/dev/null | tail -n +4 | xargs -r rm -f -- || true
done
start=$(date +%s)
set +e
SCHEMATHESIS_HOOKS="$tool/hooks.py" "$venv/bin/schemathesis" "${args[@]}" "$@"
status=$?
set -e
# How the generated requests were answered (share of 2xx, refusals by problem code).
latest=$(ls -t "$report"/ndjson-*.ndjson 2>/dev/null | head -n 1 || true)
[ -n "$latest" ] && { "$venv/bin/python" "$tool/summary.py" "$latest" || true; }
echo "schemathesis exited $status after $(( $(date +%s) - start )) s; reports in $report"
exit "$status"
