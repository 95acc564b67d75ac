"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by scripts/schemathesis.sh).

Schemathesis has no serializer for NDJSON, so `application/x-ndjson` and `application/jsonl`
(openapi.yaml, from src/routes/records.rs) get one here: a list is sent one JSON value per line, a
string (what the schema's `type: string` generates) as its UTF-8 bytes. `text/plain` and
`application/octet-stream` are built in.

Most generated stream names are replaced by `example-stream`, which the script creates, so that
writes reach the emulator and succeed; the rest stay random and must answer 400
(invalid_stream_name) or 404 (stream_not_found) problem+json. The choice is a deterministic function
of the generated value, so Hypothesis sees the same test case each time it replays one.
"""

import json
import zlib

import schemathesis

STREAM = "example-stream"
NDJSON = ("application/x-ndjson", "application/jsonl")


@schemathesis.serializer(*NDJSON)
def ndjson(context, value):
    if isinstance(value, (list, tuple)):
        return "".join(json.dumps(item) + "\n" for item in value).encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        # Generated strings may hold lone surrogates: sent as such, they are invalid UTF-8 and
        # must be refused with 400 invalid_body.
        return value.encode("utf-8", "surrogatepass")
    return (json.dumps(value) + "\n").encode("utf-8")


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if path_parameters and "stream" in path_parameters:
        seed = zlib.crc32(repr(path_parameters["stream"]).encode("utf-8", "surrogatepass"))
        if seed % 5 != 0:  # ~80%
            path_parameters["stream"] = STREAM
    return path_parameters
