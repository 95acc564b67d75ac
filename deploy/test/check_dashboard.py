#!/usr/bin/env python3
"""Runs every query of the Grafana dashboard against a real Prometheus; fails on one that is empty.

    check_dashboard.py PROMETHEUS_URL DASHBOARD_JSON [RATE_INTERVAL]

Grafana's variables are replaced as Grafana would with "All" selected ($job, $instance: .+) and
$__rate_interval by RATE_INTERVAL (default 30s). Each target is an instant query; a panel "shows
nothing" when any of its targets returns no series. The dashboard's template-variable queries
(label_values) must list at least one value, and every alerting rule Prometheus loaded must be
healthy (evaluated without error). Standard library only.
"""
import json
import re
import sys
import urllib.parse
import urllib.request

url, path = sys.argv[1], sys.argv[2]
interval = sys.argv[3] if len(sys.argv) > 3 else "30s"


def get(endpoint, **params):
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{url}{endpoint}?{query}", timeout=10) as response:
        answer = json.load(response)
    if answer.get("status") != "success":
        raise RuntimeError(f"{endpoint}: {answer}")
    return answer["data"]


def substitute(expr):
    expr = expr.replace("$__rate_interval", interval)
    return re.sub(r"\$\{?(job|instance)\}?", ".+", expr)


dashboard = json.load(open(path))
failures, checked = [], 0

for var in dashboard["templating"]["list"]:
    if var["type"] != "query":
        continue
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["definition"])
    values = get(f"/api/v1/label/{m.group(2)}/values", **{"match[]": substitute(m.group(1))})
    checked += 1
    print(f"variable ${var['name']:<9} {len(values)} values: {', '.join(values)}")
    if not values:
        failures.append(f"variable ${var['name']}: no values")

for panel in dashboard["panels"]:
    if panel["type"] == "row":
        continue
    for target in panel["targets"]:
        result = get("/api/v1/query", query=substitute(target["expr"]))["result"]
        checked += 1
        values = [float(r["value"][1]) for r in result]
        shown = ", ".join(f"{v:.4g}" for v in values[:4]) + (" ..." if len(values) > 4 else "")
        print(f"{panel['title'][:34]:<34} {target['refId']}  {len(result):>2} series  {shown}")
        if not result:
            failures.append(f"panel {panel['title']!r} target {target['refId']}: no data for {target['expr']}")

rules = [r for g in get("/api/v1/rules")["groups"] for r in g["rules"]]
unhealthy = [r for r in rules if r.get("health") != "ok"]
print(f"alerting rules loaded: {len(rules)}, healthy: {len(rules) - len(unhealthy)}, "
      f"firing or pending: {sorted({r['name'] for r in rules if r.get('state') in ('firing', 'pending')})}")
for r in unhealthy:
    failures.append(f"rule {r['name']}: {r.get('health')} {r.get('lastError')}")
if not rules:
    failures.append("no alerting rules loaded")

if failures:
    print("\nFAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"dashboard: {checked} queries, every one returned data")
