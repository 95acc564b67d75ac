#!/usr/bin/env python3
"""Prints every record of a stream in the local emulator: shard, partition key, data.

    scripts/read-stream.py STREAM [ENDPOINT]      (ENDPOINT defaults to http://127.0.0.1:4568)

For the examples of README.md and docs/api.md against `make run`: it reads the emulator directly (GetShardIterator
TRIM_HORIZON + GetRecords on every shard), with the standard library only. The emulator does not
check signatures, so a dummy SigV4 header is enough; never point this at real AWS.
"""
import base64
import json
import sys
import urllib.request

STREAM = sys.argv[1]
ENDPOINT = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:4568"


def call(operation, body):
    request = urllib.request.Request(
        ENDPOINT,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Kinesis_20131202.{operation}",
            "X-Amz-Date": "20260101T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, "
            "SignedHeaders=host, Signature=00",
        },
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


for shard in call("ListShards", {"StreamName": STREAM})["Shards"]:
    iterator = call(
        "GetShardIterator",
        {"StreamName": STREAM, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"},
    )["ShardIterator"]
    while iterator:
        page = call("GetRecords", {"ShardIterator": iterator})
        for record in page["Records"]:
            data = base64.b64decode(record["Data"])
            try:
                shown = data.decode("utf-8")
            except UnicodeDecodeError:
                shown = "base64:" + base64.b64encode(data).decode()
            print(f"{shard['ShardId']}  key={record['PartitionKey']!r:<14} data={shown}")
        if not page["Records"]:
            break
        iterator = page.get("NextShardIterator")
