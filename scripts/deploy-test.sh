#!/usr/bin/env bash
# `make deploy-test`: deploy/ against the running service (needs the release binary; ~1 min).
#
# 1. The Kubernetes ConfigMap + Secret as the environment of a real instance: it starts with the
#    production profile, turns ready, and its keys and allowlist behave (401 / 403 / 200), and
#    /metrics needs a key (Prometheus' own, which writes nothing).
# 2. The Grafana dashboard against a real Prometheus (Debian's package) that scraped three
#    instances under load: "healthy" (coalescing, emulator), "flaky" (not coalescing, so both
#    PutRecord and PutRecords, on a Kinesis that throttles and fails on purpose:
#    deploy/test/flaky_kinesis.py) and "tight" (coalescing with a 20-byte buffer,
#    so it refuses some writes with 503 overloaded). Every query of every panel must return data
#    (deploy/test/check_dashboard.py), and every rule of deploy/prometheus/alerts.yml, loaded into
#    that Prometheus, must evaluate without error.
# Everything on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${KW_BIN:-target/release/kinesis-writer}

command -v prometheus >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
scripts/deploy-check.sh >/dev/null   # installs deploy/.venv (PyYAML) and checks the files first
python3 -c 'import requests' 2>/dev/null || python3 -m pip install -q requests
[ -x "$bin" ] || nice -n 19 cargo build --release --locked --bin kinesis-writer

work=$(mktemp -d /tmp/kw-deploy-test.XXXXXX)
# shellcheck source=SCRIPTDIR/../deploy/test/lib.sh
. deploy/test/lib.sh
pids=()
cleanup() {
  local status=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  emulator_stop
  if [ "$status" -ne 0 ]; then echo "deploy-test FAILED (logs kept in $work)" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

kinesis_port=$(free_port)
emulator_start "$kinesis_port"
# shellcheck disable=SC2046
env $(service_env 0 "$kinesis_port") APP_DEV__CREATE_STREAMS=dash:2,clickstream:1,orders:1 \
  "$bin" create-streams >"$work/create.log" 2>&1

echo "== 1. deploy/k8s ConfigMap + Secret as a real instance's environment"
k8s_port=$(free_port)
# Every variable of the ConfigMap and the Secret, as the pod gets them; then only what a laptop
# must change: listen on loopback, the emulator instead of AWS, dummy credentials.
deploy/.venv/bin/python - >"$work/k8s.env" <<'PY'
import yaml
for f in ("deploy/k8s/configmap.yaml", "deploy/k8s/secret.yaml"):
    doc = yaml.safe_load(open(f))
    for k, v in (doc.get("data") or doc.get("stringData")).items():
        print(f"{k}={v}", end="\0")
PY
(
  set -a
  while IFS= read -r -d '' line; do export "${line?}"; done <"$work/k8s.env"
  export APP_ENVIRONMENT=production APP_SERVER__HOST=127.0.0.1 APP_SERVER__PORT=$k8s_port \
    APP_KINESIS__ENDPOINT_URL=http://127.0.0.1:$kinesis_port AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
  exec "$bin"
) >"$work/k8s.log" 2>&1 &
k8s_pid=$!
pids+=("$k8s_pid")
wait_http "http://127.0.0.1:$k8s_port/health/ready"
post() { curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' "$@"; }
no_key=$(post -d x "http://127.0.0.1:$k8s_port/streams/clickstream/records")
key_a=$(post -H 'Authorization: Bearer example-key-change-me' -d x "http://127.0.0.1:$k8s_port/streams/clickstream/records")
wrong_stream=$(post -H 'Authorization: Bearer example-key-change-me' -d x "http://127.0.0.1:$k8s_port/streams/orders/records")
key_b=$(post -H 'x-api-key: example-key-b-change-me' -d x "http://127.0.0.1:$k8s_port/streams/orders/records")
unlisted=$(post -H 'Authorization: Bearer example-key-change-me' -d x "http://127.0.0.1:$k8s_port/streams/dash/records")
# /metrics names the streams, so production asks for a key: Prometheus has one that writes nothing.
get() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
metrics_no_key=$(get "http://127.0.0.1:$k8s_port/metrics")
metrics_prom=$(get -H 'Authorization: Bearer example-prometheus-key-change-me' "http://127.0.0.1:$k8s_port/metrics")
prom_writes=$(post -H 'Authorization: Bearer example-prometheus-key-change-me' -d x "http://127.0.0.1:$k8s_port/streams/clickstream/records")
kill -TERM "$k8s_pid"
set +e; wait "$k8s_pid"; k8s_exit=$?; set -e
echo "$(tr -cd '\0' <"$work/k8s.env" | wc -c) variables; ready; no key $no_key, team-a key on clickstream $key_a," \
  "team-a on orders $wrong_stream, team-b on orders $key_b, unlisted stream $unlisted;" \
  "/metrics without a key $metrics_no_key, with Prometheus' $metrics_prom; Prometheus' key writing" \
  "$prom_writes; JSON logs: $(head -c 1 "$work/k8s.log")...; SIGTERM -> exit $k8s_exit"
got="$no_key/$key_a/$wrong_stream/$key_b/$unlisted/$metrics_no_key/$metrics_prom/$prom_writes/$k8s_exit"
[ "$got" = "401/200/403/200/404/401/200/403/0" ] \
  || { echo "FAIL: $got, expected 401/200/403/200/404/401/200/403/0" >&2; exit 1; }
head -c 1 "$work/k8s.log" | grep -q '{' || { echo "FAIL: not JSON logs" >&2; exit 1; }

echo "== 2. the dashboard against Prometheus scraping three instances under load"
flaky_port=$(free_port)
python3 deploy/test/flaky_kinesis.py "$flaky_port" >"$work/flaky.log" 2>&1 &
pids+=($!)
declare -A port
for s in healthy flaky tight; do port[$s]=$(free_port); done
# shellcheck disable=SC2046
env $(service_env "${port[healthy]}" "$kinesis_port") APP_COALESCE__ENABLED=true \
  "$bin" >"$work/healthy.log" 2>&1 &
pids+=($!)
# shellcheck disable=SC2046
env $(service_env "${port[flaky]}" "$kinesis_port") APP_KINESIS__ENDPOINT_URL="http://127.0.0.1:$flaky_port" \
  APP_DELIVERY__MAX_ATTEMPTS=2 APP_DELIVERY__BASE_BACKOFF_MS=5 APP_DELIVERY__MAX_BACKOFF_MS=20 \
  APP_COALESCE__ENABLED=false \
  "$bin" >"$work/flaky-instance.log" 2>&1 &
pids+=($!)
# shellcheck disable=SC2046
env $(service_env "${port[tight]}" "$kinesis_port") APP_COALESCE__ENABLED=true \
  APP_COALESCE__MAX_BUFFERED_BYTES=20 "$bin" >"$work/tight.log" 2>&1 &
pids+=($!)
for s in healthy flaky tight; do wait_http "http://127.0.0.1:${port[$s]}/health/ready"; done

prom_port=$(free_port)
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: kinesis-writer
    static_configs:
      - targets: ['127.0.0.1:${port[healthy]}', '127.0.0.1:${port[flaky]}', '127.0.0.1:${port[tight]}']
EOF
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$prom_port/-/ready" 30

# Readiness probes, as a kubelet or a balancer would send them.
(
  end=$((SECONDS + 25))
  while [ $SECONDS -lt $end ]; do
    for s in healthy flaky tight; do curl -s -o /dev/null "http://127.0.0.1:${port[$s]}/health/ready" || true; done
    sleep 0.5
  done
) &
probe_pid=$!
load() {
  python3 deploy/test/load.py --url "http://127.0.0.1:${port[$1]}" --stream dash --rate "$2" --workers "$3" \
    --duration 20 --acked "$work/acked-$1" --tag "dash-$1" >"$work/load-$1.json"
}
load healthy 150 8 &
l1=$!
load flaky 60 4 &
l2=$!
load tight 80 8 &
l3=$!
# Batches too (PutRecords: per-entry failures), to the flaky instance.
(
  batch='["b1","b2","b3","b4","b5","b6","b7","b8","b9","b10"]'
  end=$((SECONDS + 20))
  while [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d "$batch" \
      "http://127.0.0.1:${port[flaky]}/streams/dash/records?record_per_entry=true" || true
    sleep 0.1
  done
) &
batches=$!
wait $l1 $l2 $l3 $probe_pid $batches
for s in healthy flaky tight; do
  echo "load on $s: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["requests"], "requests, statuses", r["statuses"], "failures", r["failures"])' "$work/load-$s.json")"
done
sleep 2   # one more scrape after the load
deploy/.venv/bin/python deploy/test/check_dashboard.py "http://127.0.0.1:$prom_port" \
  deploy/grafana/kinesis-writer.json 30s
echo "deploy-test: PASSED"
