#!/usr/bin/env python3
"""Reads a stream the way a consumer of aggregated records does: GetRecords, then the reference
de-aggregator (aws-kinesis-agg). The example of docs/api.md, "Aggregation". It needs boto3 and the
pinned de-aggregator; from the repository root, once (the same venv the tests create):

    python3 -m venv tools/kpl-reference/.venv
    tools/kpl-reference/.venv/bin/pip install -r tools/kpl-reference/requirements.txt boto3

then, against `make run`:

    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
    AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:4568 \
      tools/kpl-reference/.venv/bin/python tools/kpl-reference/read_aggregated.py example-sharded
"""
import base64
import sys

import boto3
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

stream = sys.argv[1]
kinesis = boto3.client("kinesis")
for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    raw = kinesis.get_records(ShardIterator=iterator)["Records"]
    for user in iter_deaggregate_records(raw, data_format="Boto3"):
        k = user["kinesis"]
        # User records of an aggregate come back base64-encoded (Lambda's convention).
        data = base64.b64decode(k["data"]) if k.get("aggregated") else k["data"]
        print(shard["ShardId"], "seq …" + k["sequenceNumber"][-6:], "sub", k.get("subSequenceNumber"),
              "key", k["partitionKey"], "data", data.decode())
