#!/usr/bin/env bash
# The Python client (clients/python) against the service and the emulator, side by side with the
# Python class it replaces (newslaunch==0.0.1) as the oracle.
#   scripts/python-client-test.sh [pytest args...]
# Creates clients/python/.venv if missing, installs the client and the pinned test requirements,
# then runs pytest. The tests start the emulator and target/debug/kinesis-writer themselves (cargo
# builds it if it is missing; KINESIS_WRITER_BIN=path uses another binary) on free loopback ports.
# The last line is "pytest result: N passed; M failed;" for .ci/run's total.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
client="$root/clients/python"
venv="$client/.venv"
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  echo "Creating $venv ..."
  "$python" -m venv "$venv"
fi
stamp="$venv/.installed"
# Reinstall when the requirements or the client's sources changed since the last install.
if [ ! -f "$stamp" ] || [ -n "$(find "$client/requirements-test.txt" "$client/pyproject.toml" "$client/src" -newer "$stamp" -print -quit)" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$client/requirements-test.txt"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$client"
  touch "$stamp"
fi

export AWS_EC2_METADATA_DISABLED=true
cd "$client"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider --junitxml="$report" "$@"
status=$?
set -e
# Counts from pytest's own JUnit report (its terminal summary wording varies with the outcome mix).
"$venv/bin/python" - "$report" <<'PY'
import sys
import xml.etree.ElementTree as ET

try:
    suites = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("pytest result: 0 passed; 1 failed;")  # pytest did not get as far as a report
    sys.exit(0)
suites = suites if suites.tag == "testsuites" else [suites]
tests = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(f"pytest result: {tests - failed - skipped} passed; {failed} failed; {skipped} skipped;")
PY
exit $status
