#!/usr/bin/env python3
"""A Kinesis that throttles and fails on purpose, for the dashboard test (scripts/deploy-test.sh).

    flaky_kinesis.py PORT

AWS JSON 1.1 on 127.0.0.1:PORT, standard library only. ListStreams answers (so the service turns
ready); PutRecord and PutRecords throttle or fail a fixed share of calls and entries, so the
service's throttling, failed-entry, retry, failed-record and 5xx metrics all get data. The records
themselves are thrown away: the emulator half of the test checks what is written.
"""
import json
import random
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

THROTTLE = 0.3   # share of calls / entries answered ProvisionedThroughputExceededException
FAIL = 0.1       # share of whole calls answered 500 InternalFailure
rng = random.Random(15)
seq = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header("x-amzn-ErrorType", body["__type"])
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        global seq
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            # Not JSON: the service's CBOR probe (kinesis.protocol: auto). Answer as a JSON-only
            # endpoint does (moto: a 500 with a traceback), so the service settles on JSON; a
            # handler that raised instead dropped the connection, which settles nothing.
            data = b"Traceback (most recent call last): the body is not JSON"
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if operation == "ListStreams":
            return self.answer(200, {"StreamNames": [], "HasMoreStreams": False})
        if operation not in ("PutRecord", "PutRecords"):
            return self.answer(400, {"__type": "UnknownOperationException", "message": operation})
        roll = rng.random()
        if roll < FAIL:
            return self.answer(500, {"__type": "InternalFailure", "message": "injected"})
        if operation == "PutRecord":
            if roll < FAIL + THROTTLE:
                return self.answer(400, {"__type": "ProvisionedThroughputExceededException",
                                         "message": "Rate exceeded for shard shardId-000000000000 (injected)"})
            seq += 1
            return self.answer(200, {"ShardId": "shardId-000000000000", "SequenceNumber": str(seq)})
        entries, failed = [], 0
        for _ in body.get("Records", []):
            if rng.random() < THROTTLE:
                failed += 1
                entries.append({"ErrorCode": "ProvisionedThroughputExceededException",
                                "ErrorMessage": "Rate exceeded (injected)"})
            else:
                seq += 1
                entries.append({"ShardId": "shardId-000000000000", "SequenceNumber": str(seq)})
        return self.answer(200, {"FailedRecordCount": failed, "Records": entries})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print(f"flaky kinesis on http://127.0.0.1:{sys.argv[1]}", flush=True)
    server.serve_forever()
