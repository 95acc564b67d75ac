#!/usr/bin/env bash
# `make deploy-check`: the offline checks of deploy/ (seconds once the tools are there):
#   1. promtool check rules + promtool test rules on deploy/prometheus/alerts.yml;
#   2. kubernetes-validate --strict on deploy/k8s/*.yaml (Kubernetes 1.30, the first with the
#      preStop sleep action the Deployment uses, and the newest schema the package knows);
#   3. consistency: every setting of config/base.yaml is in the ConfigMap or Secret in its
#      environment-variable form, the grace period outlasts preStop + drain, and every metric
#      the alerts and the Grafana dashboard use is one the service exports (src/metrics.rs).
# It installs what it lacks: Debian's prometheus package (promtool) with apt-get, and
# kubernetes-validate into deploy/.venv with pip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v promtool >/dev/null; then
  echo "deploy-check: installing promtool (Debian package prometheus)..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null
fi
venv=deploy/.venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "deploy-check: installing kubernetes-validate into $venv..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 PyYAML
fi

echo "== promtool check rules"
promtool check rules deploy/prometheus/alerts.yml
echo "== promtool test rules"
promtool test rules deploy/prometheus/alerts.test.yml

echo "== kubernetes-validate"
manifests=(deploy/k8s/configmap.yaml deploy/k8s/secret.yaml deploy/k8s/deployment.yaml
  deploy/k8s/service.yaml deploy/k8s/pdb.yaml deploy/k8s/hpa.yaml deploy/k8s/spooled/statefulset.yaml)
for version in 1.30.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
  echo "${#manifests[@]} files valid against Kubernetes $version (strict)"
done

echo "== consistency"
"$venv/bin/python" deploy/check_consistency.py
