#!/usr/bin/env python3
"""Steady write load from a pooled client, for scripts/lb-test.sh and scripts/image-test.sh.

    load.py --url http://127.0.0.1:PORT --stream NAME --rate 200 --workers 8 \
            --duration 60 [--stop-file PATH] --acked FILE --tag RUN

Each worker owns a requests.Session (a keep-alive connection pool, as a real client has) and sends
POST /streams/NAME/records with a unique text/plain body "TAG-WORKER-SEQ", at RATE requests/s in
all, until DURATION seconds have passed or STOP_FILE exists. Nothing is retried: every exception
(connection refused or reset, timeout) is a failure. The bodies answered 200 are written to ACKED,
one a line, for the caller to compare with what the stream holds. Prints one JSON summary line.
"""
import argparse
import collections
import json
import os
import threading
import time

import requests

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--stream", required=True)
p.add_argument("--rate", type=float, default=200)
p.add_argument("--workers", type=int, default=8)
p.add_argument("--duration", type=float, default=60)
p.add_argument("--stop-file")
p.add_argument("--acked", required=True)
p.add_argument("--tag", default="load")
args = p.parse_args()

lock = threading.Lock()
statuses = collections.Counter()
failures = collections.Counter()
failure_examples = []
acked = []
latencies = []
deadline = time.monotonic() + args.duration
stop = threading.Event()


def worker(n):
    session = requests.Session()
    interval = args.workers / args.rate
    url = f"{args.url}/streams/{args.stream}/records"
    next_at = time.monotonic() + interval * n / args.workers
    seq = 0
    while not stop.is_set() and time.monotonic() < deadline:
        now = time.monotonic()
        if next_at > now:
            time.sleep(next_at - now)
        next_at += interval
        body = f"{args.tag}-{n}-{seq}"
        seq += 1
        started = time.monotonic()
        try:
            r = session.post(url, data=body.encode(), headers={"Content-Type": "text/plain"}, timeout=30)
            elapsed = time.monotonic() - started
            with lock:
                statuses[r.status_code] += 1
                latencies.append(elapsed)
                if r.status_code == 200:
                    acked.append(body)
        except requests.RequestException as e:
            with lock:
                failures[type(e).__name__] += 1
                if len(failure_examples) < 5:
                    failure_examples.append(f"{time.strftime('%H:%M:%S')} {body}: {e}")


def watch_stop_file():
    while not stop.is_set() and time.monotonic() < deadline:
        if args.stop_file and os.path.exists(args.stop_file):
            stop.set()
        time.sleep(0.05)


threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.workers)]
watcher = threading.Thread(target=watch_stop_file)
started = time.monotonic()
for t in threads + [watcher]:
    t.start()
for t in threads:
    t.join()
stop.set()
watcher.join()
wall = time.monotonic() - started

with open(args.acked, "w") as f:
    f.writelines(b + "\n" for b in acked)
latencies.sort()


def pct(q):
    return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else None


print(json.dumps({
    "requests": sum(statuses.values()) + sum(failures.values()),
    "answered": sum(statuses.values()),
    "statuses": {str(k): v for k, v in sorted(statuses.items())},
    "failures": sum(failures.values()),
    "failure_types": dict(failures),
    "failure_examples": failure_examples,
    "acked": len(acked),
    "seconds": round(wall, 1),
    "req_per_s": round((sum(statuses.values()) + sum(failures.values())) / wall, 1),
    "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
}))
