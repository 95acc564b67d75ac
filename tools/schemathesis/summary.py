"""Summarises a schemathesis NDJSON report (scripts/schemathesis.sh writes one per run).

    python3 tools/schemathesis/summary.py REPORT.ndjson

For each operation and generation mode (positive: data the schema allows; negative: data it
forbids), the number of requests sent and how they were answered: the share of 2xx, the share that
got past the service's own validation to Kinesis (2xx, or one of the refusals only Kinesis makes),
and the problem `code` of each refusal (src/error.rs), so that "the generated data rarely reaches
the handler" is a number, not an impression. Reads the report only; prints plain lines (no line starts
with `test result:` or `pytest result:`, which .ci/run counts).
"""

import base64
import collections
import json
import sys


# Answers that only come after the request passed validation and went to Kinesis (src/error.rs).
FROM_KINESIS = {
    "stream_not_found",
    "kinesis_rejected",
    "throttled",
    "upstream_error",
    "upstream_unavailable",
    "upstream_timeout",
}


def interactions(path):
    """(operation label, generation mode, status, problem code) for every request sent."""
    with open(path, encoding="utf-8") as report:
        for line in report:
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished["recorder"]
            for case_id, interaction in recorder.get("interactions", {}).items():
                case = recorder["cases"].get(case_id, {}).get("value", {})
                mode = case.get("meta", {}).get("generation", {}).get("mode", "?")
                response = interaction.get("response") or {}
                status = response.get("status_code")
                code = ""
                content = (response.get("content") or {}).get("$base64")
                if status and status >= 400 and content:
                    try:
                        code = json.loads(base64.b64decode(content)).get("code", "")
                    except (ValueError, AttributeError):
                        code = "(not problem+json)"
                yield recorder["label"], mode, status, code


def main(path):
    seen = collections.defaultdict(collections.Counter)
    for label, mode, status, code in interactions(path):
        key = (label, mode)
        seen[key]["requests"] += 1
        if status is None:
            seen[key]["no answer"] += 1
        elif 200 <= status < 300:
            seen[key]["2xx"] += 1
        else:
            seen[key][f"{status} {code}".rstrip()] += 1
        if status is not None and (200 <= status < 300 or code in FROM_KINESIS):
            seen[key]["to kinesis"] += 1
    for (label, mode), counts in sorted(seen.items()):
        total = counts.pop("requests")
        ok = counts.pop("2xx", 0)
        sent = counts.pop("to kinesis", 0)
        share = lambda n: f"{100 * n // max(total, 1)}%"  # noqa: E731
        refusals = ", ".join(f"{n} {what}" for what, n in counts.most_common())
        line = f"{label} [{mode}]: {total} requests, {ok} 2xx ({share(ok)})"
        if label.endswith("/records"):
            line += f", {sent} past validation to Kinesis ({share(sent)})"
        print(line)
        if refusals:
            print(f"    others: {refusals}")


if __name__ == "__main__":
    main(sys.argv[1])
