"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by scripts/schemathesis.sh).

Serializers. Schemathesis has none for NDJSON, so `application/x-ndjson` and `application/jsonl`
(openapi.yaml, from src/routes/records.rs) get one here: a list is sent one JSON value per line, a
string (what the schema's `type: string` generates) as its UTF-8 bytes. `text/plain` and
`application/octet-stream` are built in.

Steering. openapi.yaml states what each parameter accepts on its own; what the service accepts
also depends on how the parameters combine (src/routes/records.rs, `WriteQuery::request`), which
OpenAPI 3.1 cannot state: NDJSON is always a batch, `sequence_number_for_ordering` is single mode
only, `partition_key_pointer` excludes `partition_key` and needs a JSON body whose records have a
key there, `envelope=true` needs JSON records of the form {"data": ...}. Left alone, most
generated requests break one of these rules and stop at validation. So `map_case` repairs most
positive cases (about 4 in 5) into a request the service accepts, writing to `example-stream`
(which the script creates); the rest, and every negative case, are sent as generated (mostly
refused with a 4xx problem+json). Whatever the request, the checks scripts/schemathesis.sh runs
hold: no 5xx, and an answer the document describes. The choice is a deterministic function of the generated case, so
Hypothesis sees the same test case each time it replays one.
"""

import json
import zlib

import schemathesis

STREAM = "example-stream"
NDJSON = ("application/x-ndjson", "application/jsonl")
# The largest explicit hash key (src/domain/explicit_hash_key.rs); the schema's pattern allows up
# to 39 digits, so some generated keys are larger.
MAX_HASH_KEY = 2**128 - 1
# A sequence number the emulator parses, for `sequence_number_for_ordering`: it refuses random
# decimals (422 kinesis_rejected, "SequenceNumber could not be parsed").
SEQUENCE_NUMBER = "49590338271490256608559692538361571095921575989136588898"


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


def choice(*parts):
    """A number in 0..99 that depends only on `parts`."""
    text = repr(parts).encode("utf-8", "surrogatepass")
    return zlib.crc32(text) % 100


def flag(query, name):
    """The boolean query parameter `name` (schemathesis may hold it as bool or as text)."""
    value = query.get(name)
    return value if value is None or isinstance(value, bool) else value == "true"


def pointer_tokens(pointer):
    """RFC 6901 tokens of `pointer`, or None when it is not one."""
    if pointer == "":
        return []
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return None
    tokens = []
    for raw in pointer[1:].split("/"):
        if "~" in raw.replace("~0", "").replace("~1", ""):
            return None
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def has_key(record, tokens):
    """Whether the value at `tokens` in `record` can be a partition key (src/domain/pointer.rs)."""
    for token in tokens:
        if isinstance(record, dict) and token in record:
            record = record[token]
        elif isinstance(record, list) and token.isdigit() and (token == "0" or token[0] != "0"):
            if int(token) >= len(record):
                return False
            record = record[int(token)]
        else:
            return False
    if isinstance(record, bool) or isinstance(record, (int, float)):
        return True
    return isinstance(record, str) and 0 < len(record.encode("utf-16-le")) // 2 <= 256


def ndjson_records(body):
    """The records an NDJSON body holds: its lines when they all parse, else the text as one."""
    if isinstance(body, (list, tuple)):
        return list(body)
    text = body if isinstance(body, str) else ""
    try:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        records = []
    return records or [text]


def is_write(case):
    return case.path == "/streams/{stream}/records" and case.method.upper() == "POST"


def is_positive(case):
    meta = case.meta
    return meta is None or str(meta.generation.mode) == "positive"


@schemathesis.hook
def map_case(context, case):
    if is_write(case) and is_positive(case):
        if choice(case.path_parameters, case.query, case.body, case.media_type) < 80:
            steer(case)
    return case


@schemathesis.hook
def before_add_examples(context, examples):
    # The examples phase puts every parameter's example in one request (batch mode with
    # sequence_number_for_ordering, partition_key with partition_key_pointer): steer them all.
    for case in examples:
        if is_write(case) and is_positive(case):
            steer(case)


def steer(case):
    """Makes `case` a write the service accepts (see the module's docstring)."""
    steer_body(case)
    # A generated Idempotency-Key repeats across different requests (hypothesis likes "0"),
    # which makes most keyed writes 422 idempotency_key_reused: derive it from the request, so the
    # same request replays and another one is processed (docs/api.md#idempotent-retries).
    headers = dict(case.headers or {})
    if "Idempotency-Key" in headers:
        text = repr((case.path_parameters, case.query, case.body, case.media_type))
        headers["Idempotency-Key"] = "fuzz-%08x" % zlib.crc32(text.encode("utf-8", "surrogatepass"))
        case.headers = headers


def steer_body(case):
    """The stream, query and body part of `steer`."""
    case.path_parameters = {**(case.path_parameters or {}), "stream": STREAM}
    query = dict(case.query or {})
    media = (case.media_type or "application/json").lower()
    json_body = media == "application/json" or media in NDJSON

    # Which mode the body and record_per_entry make (src/routes/records.rs, body_kind and
    # WriteQuery::request).
    if media in NDJSON:
        if flag(query, "record_per_entry") is False:
            del query["record_per_entry"]
        batch = True
    elif media == "application/json":
        batch = flag(query, "record_per_entry") is True
    else:
        query.pop("record_per_entry", None)
        query.pop("envelope", None)
        query.pop("partition_key_pointer", None)
        batch = False
    if batch:
        query.pop("sequence_number_for_ordering", None)
    elif "sequence_number_for_ordering" in query:
        query["sequence_number_for_ordering"] = SEQUENCE_NUMBER

    hash_key = str(query.get("explicit_hash_key", "0"))
    if not hash_key.isdigit() or int(hash_key) > MAX_HASH_KEY:
        del query["explicit_hash_key"]
    key = query.get("partition_key")
    if key is not None and len(key.encode("utf-16-le", "surrogatepass")) // 2 > 256:
        del query["partition_key"]

    if not json_body:
        case.query = query
        return

    # The records, as the service will see them.
    if media in NDJSON:
        records = ndjson_records(case.body)
    elif batch:
        records = case.body if isinstance(case.body, list) and case.body else [case.body]
    else:
        records = [case.body]

    envelope = flag(query, "envelope") is True
    pointer = query.get("partition_key_pointer")
    if pointer is not None:
        query.pop("partition_key", None)
    if envelope and all(isinstance(r, dict) and ("data" in r or "data_base64" in r) for r in records):
        # Already envelopes (the schema's example): sent as they are, keyed by their own keys.
        query.pop("partition_key_pointer", None)
    else:
        if pointer is not None:
            tokens = pointer_tokens(pointer)
            if tokens is None or not all(has_key(r, tokens) for r in records):
                query["partition_key_pointer"] = "/id"
                records = [{"id": f"record-{i}", "value": r} for i, r in enumerate(records)]
        if envelope:
            records = [{"data": r} for r in records]

    case.query = query
    if media in NDJSON:
        # Kept a string, as the schema says, so the case stays a positive one.
        case.body = "".join(json.dumps(r) + "\n" for r in records)
    elif batch:
        case.body = records
    else:
        case.body = records[0]
