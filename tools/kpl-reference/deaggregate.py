#!/usr/bin/env python3
"""De-aggregates Kinesis records with the reference package (aws-kinesis-agg), for the tests.

stdin:  a JSON list of records as read back from a stream:
        [{"data": "<base64>", "partition_key": "...", "sequence_number": "..."}, ...]
stdout: a JSON list of the user records, in order:
        [{"data": "<base64>", "partition_key": "...", "explicit_hash_key": "..." | null,
          "sequence_number": "...", "sub_sequence_number": N | null, "aggregated": bool}, ...]
A record that is not an aggregate comes out unchanged (as the package does it).
"""
import json
import sys

from aws_kinesis_agg.deaggregator import iter_deaggregate_records

records = [
    {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "approximateArrivalTimestamp": 0,
            "data": r["data"],
            "partitionKey": r["partition_key"],
            "sequenceNumber": r["sequence_number"],
        }
    }
    for r in json.load(sys.stdin)
]
out = []
for user in iter_deaggregate_records(records):
    k = user["kinesis"]
    data = k["data"]
    out.append(
        {
            "data": data.decode() if isinstance(data, bytes) else data,
            "partition_key": k["partitionKey"],
            "explicit_hash_key": k.get("explicitHashKey"),
            "sequence_number": k.get("sequenceNumber"),
            "sub_sequence_number": k.get("subSequenceNumber"),
            "aggregated": bool(k.get("aggregated")),
        }
    )
json.dump(out, sys.stdout)
