"""Turns bench/run.sh's raw results (target/bench/) into the markdown table. Standard library only.

    python3 bench/report.py target/bench
"""

import json
import statistics
import sys
from pathlib import Path

SCENARIOS = {
    "a": "a: 1 x 200 B JSON, c=64",
    "b": "b: 100 x 200 B batch, c=16",
    "c": "c: 1 x 100 KiB bytes, c=16",
    "d": "d: b as 100 NDJSON lines, key from /webUrl, c=16",
    "e": "e: 1 x 200 B JSON, c=1 (a lone client)",
}
# The metric each scenario is judged by.
TARGETS = {
    "a": ("req_s", None),
    "b": ("rec_s", None),
    "c": ("req_s", None),
    "d": ("rec_s", None),
    "e": ("req_s", None),
}
# Issue #14's targets, for the default configuration (coalescing on: target `coalesce`) against
# the tuned Python peer; the 1:1 ceiling ratios are retired (the ceiling makes no Kinesis call).
DEFAULT_VS_PYTHON = {"a": 25.0, "b": 10.0, "c": 6.0}
DEFAULT_VS_CEILING = {"a": 0.45}
# Coalescing on by default (issue #14): a lone client's p50 within 10% of the direct path's.
MAX_E_P50_RATIO = 1.10
# Records v2 (issue #12): NDJSON with a key per record from the data keeps scenario b's records/s
# within 15% (same records, same run).
MIN_D_VS_B = 0.85
# KPL aggregation (issue #14's target, with it on): scenario b against the Python peer.
MIN_AGGREGATE_VS_PYTHON_B = 30.0
# The access log on (the default) costs at most 10% of scenario a against it off (issue #27).
MIN_LOG_ON_VS_OFF_A = 0.90
# Durable acceptance (issue #23): a spooled stream's a and b at least half the synchronous default.
MIN_SPOOL_VS_DEFAULT = 0.5
# The lean publisher (issue #14, item 3) stays only if it cuts CPU per Kinesis call this much.
MIN_LEAN_CPU_CUT = 1.5


def load(out: Path):
    runs = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        o = json.loads(Path(r["oha"]).read_text())
        codes = {int(k): v for k, v in (o.get("statusCodeDistribution") or {}).items()}
        ok = sum(v for k, v in codes.items() if 200 <= k < 300)
        non2xx = sum(v for k, v in codes.items() if not 200 <= k < 300)
        transport = sum((o.get("errorDistribution") or {}).values())
        secs = o["summary"]["total"]
        lat = o.get("latencyPercentiles") or {}
        runs.setdefault((r["target"], r["scenario"]), []).append(
            {
                "req_s": ok / secs,
                "rec_s": ok * r["records_per_request"] / secs,
                "p50": (lat.get("p50") or 0) * 1000,
                "p99": (lat.get("p99") or 0) * 1000,
                "errors": non2xx + transport,
                "acked": ok * r["records_per_request"],
                "arrived": r["arrived"],
                # Cores busy during the run: CPU seconds / wall seconds (absent in old results).
                "cpu_t": r.get("cpu_target_s", 0) / secs,
                "cpu_f": r.get("cpu_fake_s", 0) / secs,
                "cpu_o": r.get("cpu_oha_s", 0) / secs,
            }
        )
    return runs


def med(rs, k):
    return statistics.median(x[k] for x in rs)


def publisher_table(out: Path, verdicts) -> None:
    """CPU per Kinesis call of each publisher alone (examples/publisher_cpu.rs), if it ran."""
    path = out / "publisher.jsonl"
    if not path.exists() or not path.read_text().strip():
        return
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    shapes = sorted({r["records_per_call"] for r in rows})
    print()
    print(
        "CPU per Kinesis call, each publisher alone in a process, 16 calls in flight against "
        "fake-kinesis (median of runs):\n"
    )
    cbor = any(r["publisher"] == "lean-cbor" for r in rows)
    extra = " lean CBOR µs CPU / call | SDK / lean CBOR |" if cbor else ""
    print(f"| records per call | SDK µs CPU / call | lean µs CPU / call | SDK / lean |{extra} SDK calls/s | lean calls/s |")
    print("|---:|---:|---:|---:|" + ("---:|---:|" if cbor else "") + "---:|---:|")
    for n in shapes:
        pick = lambda p, k: statistics.median(
            r[k] for r in rows if r["records_per_call"] == n and r["publisher"] == p
        )
        sdk, lean = pick("sdk", "cpu_us_per_call"), pick("lean", "cpu_us_per_call")
        cut = sdk / lean if lean else 0
        cells = ""
        if cbor:
            c = pick("lean-cbor", "cpu_us_per_call")
            cells = f" {c:.1f} | {sdk / c if c else 0:.2f}x |"
        print(
            f"| {n} | {sdk:.1f} | {lean:.1f} | {cut:.2f}x |{cells} {pick('sdk', 'calls_s'):,.0f} "
            f"| {pick('lean', 'calls_s'):,.0f} |"
        )
        plural = "s" if n > 1 else ""
        what = f"CPU per call, SDK / lean JSON ({n} record{plural} per call)"
        verdicts.append(("lean", "-", what, cut, MIN_LEAN_CPU_CUT, 0, "(equal)"))
        if cbor and (c := pick("lean-cbor", "cpu_us_per_call")):
            what = f"CPU per call, SDK / lean CBOR, the default ({n} record{plural} per call)"
            verdicts.append(("lean", "-", what, sdk / c, MIN_LEAN_CPU_CUT, 0, "(equal)"))


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench")
    runs = load(out)
    machine = json.loads((out / "machine.json").read_text())
    reps = max(len(v) for v in runs.values())
    print(
        f"{machine['nproc']} cores ({machine['cpu']}), shared by load generator (oha), target and "
        f"fake-kinesis; {machine['seconds']} s per run, median of {reps} run(s). The last column is "
        f"the CPU each process used during the run, in cores (CPU seconds / wall seconds).\n"
    )
    print(
        "| target | scenario | req/s | records/s | p50 ms | p99 ms | errors | acked / arrived "
        "| service/ceiling | service/Python | cores: target / fake / oha | target CPU s per M records |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|")
    verdicts = []
    for s, label in SCENARIOS.items():
        metric = TARGETS[s][0]
        for t in ("ceiling", "service", "coalesce", "nolog", "spool", "sdk", "json", "aggregate", "python"):
            rs = runs.get((t, s))
            if not rs:
                continue
            errors = sum(x["errors"] for x in rs)
            if t == "ceiling":
                acked = "n/a"
            elif t == "aggregate":
                # The fake counts Kinesis records: aggregates, not user records.
                acked_n = sum(x["acked"] for x in rs)
                arrived_n = sum(x["arrived"] for x in rs)
                per = arrived_n / max(acked_n, 1)
                acked = f"{acked_n} user / {arrived_n} Kinesis records ({per:.3f} per user record)"
            else:
                acked_n = sum(x["acked"] for x in rs)
                arrived_n = sum(x["arrived"] for x in rs)
                same = all(x["acked"] == x["arrived"] for x in rs)
                acked = f"{acked_n} / {arrived_n} {'(equal)' if same else '(DIFFER)'}"
            ratio_c = ratio_p = ""
            if s == "d" and t in ("service", "coalesce", "aggregate"):
                if (b := runs.get((t, "b"))) and med(b, metric):
                    r = med(rs, metric) / med(b, metric)
                    same = "(equal)" if t == "aggregate" else acked
                    verdicts.append((t, s, "records/s vs scenario b", r, MIN_D_VS_B, errors, same))
            if s == "e" and t == "coalesce" and (d := runs.get(("service", "e"))) and med(d, "p50"):
                r = med(rs, "p50") / med(d, "p50")
                # Lower is better here: judged as direct / coalesced >= 1 / 1.10.
                verdicts.append(
                    (t, s, "p50 direct / p50 coalesced", 1 / r, 1 / MAX_E_P50_RATIO, errors, acked)
                )
            if t == "aggregate" and (b := runs.get(("coalesce", s))) and med(b, metric):
                r = med(rs, metric) / med(b, metric)
                ratio_c = f"{r:.2f}x default"
                verdicts.append(
                    (t, s, "records/s vs the default without aggregation", r, 1.0, errors, "(equal)")
                )
            if t == "aggregate" and s == "b" and (p := runs.get(("python", s))) and med(p, metric):
                r = med(rs, metric) / med(p, metric)
                ratio_p = f"{r:.1f}x"
                verdicts.append((t, s, f"{metric} vs Python", r, MIN_AGGREGATE_VS_PYTHON_B, errors, "(equal)"))
            if t == "coalesce" and s == "a" and (n := runs.get(("nolog", s))) and med(n, metric):
                r = med(rs, metric) / med(n, metric)
                verdicts.append((t, s, "req/s with the access log on vs off", r, MIN_LOG_ON_VS_OFF_A, errors, acked))
            if t == "spool" and (d := runs.get(("coalesce", s))) and med(d, metric):
                r = med(rs, metric) / med(d, metric)
                ratio_c = f"{r:.2f}x default (ack=kinesis)"
                verdicts.append((t, s, f"{metric} vs the synchronous default", r, MIN_SPOOL_VS_DEFAULT, errors, acked))
            if t == "nolog" and (d := runs.get(("coalesce", s))) and med(d, metric):
                ratio_c = f"default / this: {med(d, metric) / med(rs, metric):.2f}"
            if t in ("sdk", "json") and (d := runs.get(("coalesce", s))) and med(d, "rec_s") and med(rs, "rec_s"):
                # What the publisher or protocol costs end to end: CPU per record over the
                # default's (shown; the per-call figure below is the one judged).
                per_rec = lambda x: med(x, "cpu_t") / med(x, "rec_s")
                ratio_c = f"CPU/record {per_rec(rs) / per_rec(d):.2f}x default"
            if t in ("service", "coalesce", "sdk", "json"):
                # Shown for all; judged for the default configuration only.
                judged = t == "coalesce"
                if t not in ("sdk", "json") and (c := runs.get(("ceiling", s))) and med(c, metric):
                    r = med(rs, metric) / med(c, metric)
                    ratio_c = f"{r:.2f}"
                    if judged and s in DEFAULT_VS_CEILING:
                        want = DEFAULT_VS_CEILING[s]
                        verdicts.append((t, s, f"{metric} vs ceiling", r, want, errors, acked))
                if (p := runs.get(("python", s))) and med(p, metric):
                    r = med(rs, metric) / med(p, metric)
                    ratio_p = f"{r:.1f}x"
                    if judged and s in DEFAULT_VS_PYTHON:
                        want = DEFAULT_VS_PYTHON[s]
                        verdicts.append((t, s, f"{metric} vs Python", r, want, errors, acked))
            fake = "-" if t == "ceiling" else f"{med(rs, 'cpu_f'):.2f}"
            cores = f"{med(rs, 'cpu_t'):.2f} / {fake} / {med(rs, 'cpu_o'):.2f}"
            # CPU seconds the target spent per million records written: what a record costs.
            per_m = med(rs, "cpu_t") / med(rs, "rec_s") * 1e6 if med(rs, "rec_s") else 0
            print(
                f"| {t} | {label} | {med(rs, 'req_s'):,.0f} | {med(rs, 'rec_s'):,.0f} "
                f"| {med(rs, 'p50'):.2f} | {med(rs, 'p99'):.2f} | {errors} | {acked} "
                f"| {ratio_c} | {ratio_p} | {cores} | {per_m:,.1f} |"
            )
    publisher_table(out, verdicts)
    print()
    print("Targets (ratios of medians; 'coalesce' is the default configuration):\n")
    for t, s, what, r, want, errors, acked in verdicts:
        ok = r >= want and errors == 0 and "(equal)" in acked
        print(
            f"- {t} {s}: {what} = {r:.2f} (want >= {want}); errors {errors}; acked/arrived "
            f"{acked} -> {'MET' if ok else 'MISSED'}"
        )
    print()
    for t in ("service", "coalesce", "nolog", "spool", "sdk", "json", "aggregate"):
        if f"{t}_vmhwm_kb" in machine:
            print(
                f"{t.capitalize()} memory: peak RSS (VmHWM) {machine[f'{t}_vmhwm_kb'] / 1024:.1f} "
                f"MiB, RSS at the end {machine[f'{t}_vmrss_kb'] / 1024:.1f} MiB."
            )
    if "python_vmhwm_kb_total" in machine:
        print(
            f"Python peer (uvicorn parent + 2 workers) peak RSS, summed: "
            f"{machine['python_vmhwm_kb_total'] / 1024:.1f} MiB."
        )


if __name__ == "__main__":
    main()
