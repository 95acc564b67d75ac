#!/usr/bin/env python3
"""Static checks that tie deploy/ to the code (run by scripts/deploy-check.sh, needs PyYAML):

- every setting of config/base.yaml (but dev.*, which the server ignores) is in the ConfigMap or
  the Secret of deploy/k8s in its environment-variable form, APP_<SECTION>__<KEY> (a variable there
  that is no setting is only warned about: the service ignores it);
- terminationGracePeriodSeconds outlasts the preStop sleep plus the drain timeout;
- every metric the alerts and the dashboard use is exported by the service (src/metrics.rs), with
  the _bucket suffix of its histograms, or is Prometheus' own `up`.
"""
import json
import re
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
errors = []

base = yaml.safe_load((root / "config/base.yaml").read_text())
settings = {f"APP_{section.upper()}__{key.upper()}"
            for section, keys in base.items() if section != "dev" for key in keys}
docs = {d["kind"]: d for f in ("configmap.yaml", "secret.yaml")
        for d in yaml.safe_load_all((root / "deploy/k8s" / f).read_text())}
given = set(docs["ConfigMap"]["data"]) | set(docs["Secret"]["stringData"])
for missing in sorted(settings - given):
    errors.append(f"ConfigMap/Secret lacks {missing}")
# The service ignores variables it does not know, so one for a setting not (or no longer) in
# base.yaml is only worth a warning (it also lets the ConfigMap run ahead of a setting being added).
for unknown in sorted(v for v in given - settings if v.startswith("APP_")):
    print(f"warning: ConfigMap/Secret sets {unknown}, which is not a setting of config/base.yaml")
print(f"settings: {len(settings)} in config/base.yaml, all {len(settings & given)} in the ConfigMap/Secret")

deployment = next(d for d in yaml.safe_load_all((root / "deploy/k8s/deployment.yaml").read_text())
                  if d["kind"] == "Deployment")
pod = deployment["spec"]["template"]["spec"]
grace = pod["terminationGracePeriodSeconds"]
pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
drain = int(docs["ConfigMap"]["data"]["APP_SERVER__SHUTDOWN_DRAIN_TIMEOUT_MS"]) / 1000
if not grace > pre_stop + drain:
    errors.append(f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + drain {drain}")
print(f"shutdown: preStop {pre_stop} s + drain {drain:g} s < grace period {grace} s")

source = (root / "src/metrics.rs").read_text()
exported = set(re.findall(r'pub const \w+: &str = "(\w+)";', source))
histograms = {"http_request_duration_seconds", "kinesis_call_duration_seconds",
              "coalesce_batch_records", "coalesce_batch_requests"}
known = exported | {h + s for h in histograms & exported for s in ("_bucket", "_sum", "_count")} | {"up"}
rules = yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())
exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
dashboard = json.loads((root / "deploy/grafana/kinesis-writer.json").read_text())
exprs += [t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]
exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
functions = {"sum", "rate", "by", "histogram_quantile", "max", "max_over_time", "label_values",
             "le", "job", "instance", "stream", "status", "route", "operation", "outcome", "code"}
used = set()
for e in exprs:
    e = re.sub(r'"[^"]*"', '""', e)                 # label values
    e = re.sub(r"\{[^}]*\}", "", e)                  # selectors
    e = re.sub(r"\[[^\]]*\]", "", e)                 # ranges
    used |= {w for w in re.findall(r"[a-z_][a-z0-9_]*", e) if w not in functions}
for name in sorted(used - known):
    errors.append(f"metric {name} is used by deploy/ but not exported by src/metrics.rs")
print(f"metrics: {len(used)} names used by the alerts and the dashboard, all exported by src/metrics.rs")

if errors:
    print("FAILED:\n  " + "\n  ".join(errors))
    sys.exit(1)
