"""Side by side: the same inputs through newslaunch.KinesisWriter (the oracle, boto3 straight to the
emulator) and through kinesis_writer_client.KinesisWriter (HTTP, the service, the same emulator).

Each test writes to two fresh streams, one per writer, then compares what landed byte for byte,
the shape of the partition keys, the response's keys and the exceptions. Where the service
deliberately differs from the class (docs/api.md, "Differences from the Python class"), the test asserts the documented difference.
"""

from __future__ import annotations

import datetime
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import newslaunch
import pytest
from botocore.exceptions import ClientError, ParamValidationError

import kinesis_writer_client
from kinesis_writer_client import KinesisWriter, KinesisWriterError, StreamNotFoundError

from conftest import UUID4, Streams

MiB = 1024 * 1024


class Pair:
    def __init__(self, streams: Streams, base_url: str) -> None:
        self.streams = streams
        self.oracle_stream = streams.create("oracle")
        self.client_stream = streams.create("client")
        self.oracle = newslaunch.KinesisWriter(self.oracle_stream)
        self.client = KinesisWriter(self.client_stream, base_url=base_url)

    def send(self, data: Any, **kwargs: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        return (
            self.oracle.send_to_stream(data, **kwargs),
            self.client.send_to_stream(data, **kwargs),
        )

    def landed(self) -> Tuple[List[Tuple[str, bytes]], List[Tuple[str, bytes]]]:
        return self.streams.read(self.oracle_stream), self.streams.read(self.client_stream)


@pytest.fixture
def pair(streams: Streams, service: str) -> Any:
    p = Pair(streams, service)
    yield p
    p.client.close()


def same_response_shape(oracle: Dict[str, Any], client: Dict[str, Any]) -> None:
    """The client returns the Kinesis response without boto3's ResponseMetadata (documented)."""
    assert "ResponseMetadata" in oracle and "ResponseMetadata" not in client
    assert set(client) == set(oracle) - {"ResponseMetadata"}
    if "Records" in oracle:
        assert client["FailedRecordCount"] == oracle["FailedRecordCount"] == 0
        assert [set(r) for r in client["Records"]] == [set(r) for r in oracle["Records"]]
        assert len(client["Records"]) == len(oracle["Records"])
    else:
        assert client["ShardId"] == oracle["ShardId"] == "shardId-000000000000"
        assert isinstance(client["SequenceNumber"], str) and client["SequenceNumber"].isdigit()


def same_keys(oracle: List[Tuple[str, bytes]], client: List[Tuple[str, bytes]], key: Optional[str]) -> None:
    if key is not None:
        assert [k for k, _ in client] == [k for k, _ in oracle] == [key] * len(oracle)
    else:
        for keys in ([k for k, _ in oracle], [k for k, _ in client]):
            assert all(UUID4.match(k) for k in keys), keys
            assert len(set(keys)) == len(keys), "a fresh UUID v4 per record"


def assert_parity(pair: Pair, data: Any, **kwargs: Any) -> List[bytes]:
    oracle_answer, client_answer = pair.send(data, **kwargs)
    same_response_shape(oracle_answer, client_answer)
    oracle, client = pair.landed()
    assert [d for _, d in client] == [d for _, d in oracle]
    same_keys(oracle, client, kwargs.get("partition_key"))
    return [d for _, d in client]


# --- the seed README's examples -------------------------------------------------------------------


def test_readme_one_record(pair: Pair) -> None:
    data = {"webUrl": "https://example.co.uk", "content": "Example content..."}
    landed = assert_parity(pair, data)
    assert landed == [b'{"webUrl": "https://example.co.uk", "content": "Example content..."}']


def test_readme_list_one_record_per_entry_with_one_key(pair: Pair) -> None:
    data = [
        {"webUrl": "https://example.co.uk", "content": "Example content..."},
        {"webUrl": "https://example.co.uk", "content": "More example content..."},
    ]
    landed = assert_parity(pair, data, record_per_entry=True, partition_key="example.co.uk")
    assert landed == [
        b'{"webUrl": "https://example.co.uk", "content": "Example content..."}',
        b'{"webUrl": "https://example.co.uk", "content": "More example content..."}',
    ]


def test_readme_send_with_retries_example(pair: Pair) -> None:
    # The README's send_with_retries helper, as written (ClientError is what the class raised; the
    # client raises its own errors, but on success both paths return the response).
    def send_with_retries(kinesis_writer: Any, data: Any, max_retries: int = 3) -> Any:
        for _ in range(max_retries):
            try:
                return kinesis_writer.send_to_stream(data)
            except ClientError:
                break
        return None

    data = {"data": "example"}
    oracle_answer = send_with_retries(pair.oracle, data)
    client_answer = send_with_retries(pair.client, data)
    same_response_shape(oracle_answer, client_answer)
    oracle, client = pair.landed()
    assert [d for _, d in client] == [d for _, d in oracle] == [b'{"data": "example"}']


def test_readme_failed_record_handling_example(pair: Pair) -> None:
    data = [{"data": "example"}, {"data2": "example2"}]
    oracle_answer, client_answer = pair.send(data, record_per_entry=True)
    same_response_shape(oracle_answer, client_answer)
    for response in (oracle_answer, client_answer):
        assert response["FailedRecordCount"] == 0  # the README's `if response['FailedRecordCount'] > 0`
    oracle, client = pair.landed()
    assert [d for _, d in client] == [d for _, d in oracle] == [b'{"data": "example"}', b'{"data2": "example2"}']
    same_keys(oracle, client, None)


# --- serialisation: BEHAVIOUR.md §4 --------------------------------------------------------------

SINGLE_CASES: List[Tuple[str, Any, bytes]] = [
    ("str raw, non-ASCII", "hello wörld", "hello wörld".encode()),
    ("str that looks like JSON", '{"a": 1}', b'{"a": 1}'),
    ("str with escapes", 'q"\\/\n\t\x7f', 'q"\\/\n\t\x7f'.encode()),
    ("empty str", "", b""),
    ("bytes raw", b"\x00\xffraw\n", b"\x00\xffraw\n"),
    ("empty bytes", b"", b""),
    ("dict", {"key": "value", "n": 1, "f": 1.5, "z": None, "b": True},
     b'{"key": "value", "n": 1, "f": 1.5, "z": null, "b": true}'),
    ("dict ensure_ascii", {"city": "Zürich", "emoji": "😀"},
     b'{"city": "Z\\u00fcrich", "emoji": "\\ud83d\\ude00"}'),
    ("dict non-str keys", {1: "a", 2.5: "b", None: "c", False: "d"},
     b'{"1": "a", "2.5": "b", "null": "c", "false": "d"}'),
    ("int", 42, b"42"),
    ("big int", 2**70, b"1180591620717411303424"),
    ("float", 0.1, b"0.1"),
    ("float exponent", 1e16, b"1e+16"),
    ("None", None, b"null"),
    ("True", True, b"true"),
    ("False", False, b"false"),
    ("list is one record", [1, "a", None, {"k": "v"}], b'[1, "a", null, {"k": "v"}]'),
    ("str inside a list is JSON", ["abc"], b'["abc"]'),
    ("tuple", (1, 2), b"[1, 2]"),
    ("empty list", [], b"[]"),
]


@pytest.mark.parametrize("data, expected", [c[1:] for c in SINGLE_CASES], ids=[c[0] for c in SINGLE_CASES])
def test_single_mode_lands_the_same_bytes(pair: Pair, data: Any, expected: bytes) -> None:
    assert assert_parity(pair, data) == [expected]


def test_single_mode_with_a_partition_key(pair: Pair) -> None:
    for key in ("example.co.uk", "ключ-😀"):
        pair.send({"k": key}, partition_key=key)
    oracle, client = pair.landed()
    assert client == oracle
    assert [k for k, _ in client] == ["example.co.uk", "ключ-😀"]


def test_single_mode_uuid_key_per_call(pair: Pair) -> None:
    for i in range(3):
        pair.send(f"record {i}")
    oracle, client = pair.landed()
    same_keys(oracle, client, None)
    assert [d for _, d in client] == [d for _, d in oracle] == [b"record 0", b"record 1", b"record 2"]


def test_single_list_of_1000_items_is_one_record(pair: Pair) -> None:
    landed = assert_parity(pair, list(range(1000)))
    assert landed == [("[" + ", ".join(str(i) for i in range(1000)) + "]").encode()]


BATCH_MIXED = [b"\x01raw", "text", {"k": "v"}, 7, None, [1, 2], True, "hé 😀", 0.5, b""]
BATCH_MIXED_BYTES = [b"\x01raw", b"text", b'{"k": "v"}', b"7", b"null", b"[1, 2]", b"true",
                     "hé 😀".encode(), b"0.5", b""]


@pytest.mark.parametrize("key", [None, "same-key"])
def test_batch_mixed_types_with_bytes(pair: Pair, key: Optional[str]) -> None:
    # bytes items go as envelopes (data_base64): the bytes still land raw, as from the class.
    assert assert_parity(pair, BATCH_MIXED, record_per_entry=True, partition_key=key) == BATCH_MIXED_BYTES


@pytest.mark.parametrize("key", [None, "same-key"])
def test_batch_without_bytes(pair: Pair, key: Optional[str]) -> None:
    data = BATCH_MIXED[1:-1]
    assert assert_parity(pair, data, record_per_entry=True, partition_key=key) == BATCH_MIXED_BYTES[1:-1]


def test_batch_list_subclass_and_truthy_flag(pair: Pair) -> None:
    class Items(list):  # type: ignore[type-arg]
        pass

    landed = assert_parity(pair, Items([{"a": 1}, "b"]), record_per_entry=1)
    assert landed == [b'{"a": 1}', b"b"]


def test_batch_uuid_v4_key_per_record(pair: Pair) -> None:
    oracle_answer, client_answer = pair.send([{"n": i} for i in range(5)], record_per_entry=True)
    oracle, client = pair.landed()
    same_keys(oracle, client, None)
    assert len(client) == 5


# --- limits: the class's KinesisWriterError, the service's codes ---------------------------------


def test_500_records_pass(pair: Pair) -> None:
    data = [{"n": i} for i in range(500)]
    oracle_answer, client_answer = pair.send(data, record_per_entry=True, partition_key="k")
    assert len(oracle_answer["Records"]) == len(client_answer["Records"]) == 500
    oracle, client = pair.landed()
    assert client == oracle
    assert len(client) == 500


def expect_both_raise(
    pair: Pair, data: Any, **kwargs: Any
) -> Tuple[KinesisWriterError, newslaunch.KinesisWriterError]:
    with pytest.raises(newslaunch.KinesisWriterError) as oracle_error:
        pair.oracle.send_to_stream(data, **kwargs)
    with pytest.raises(KinesisWriterError) as client_error:
        pair.client.send_to_stream(data, **kwargs)
    return client_error.value, oracle_error.value


def test_501_records_refused(pair: Pair) -> None:
    client, oracle = expect_both_raise(pair, [{"n": i} for i in range(501)], record_per_entry=True)
    assert str(oracle) == "The number of records exceeds the 500 record limit for put_records."
    assert (client.status, client.code, client.limit, client.actual) == (422, "too_many_records", 500, 501)
    assert client.error_class == "KinesisWriterError"
    assert pair.landed() == ([], [])


@pytest.mark.parametrize("data", [("a", "b"), {"a": 1}, "abc", None, (x for x in [1])], ids=["tuple", "dict", "str", "None", "generator"])
def test_batch_data_must_be_a_list(pair: Pair, data: Any) -> None:
    client, oracle = expect_both_raise(pair, data, record_per_entry=True)
    assert str(client) == str(oracle) == "Data must be a list of values when using 'put_records' mode."
    assert client.status is None  # refused locally, before any request, like the class


def test_single_record_exactly_1_mib_passes_one_byte_more_is_refused(pair: Pair) -> None:
    exact = "x" * (MiB - 1)  # + the 1-byte key "k"
    oracle_answer, client_answer = pair.send(exact, partition_key="k")
    same_response_shape(oracle_answer, client_answer)
    client, oracle = expect_both_raise(pair, exact + "x", partition_key="k")
    assert str(oracle) == "The size of the data exceeds the 1MiB limit for a single put_record call."
    assert (client.status, client.code, client.limit, client.actual, client.index) == (
        422, "record_too_large", MiB, MiB + 1, 0)
    oracle_landed, client_landed = pair.landed()
    assert client_landed == oracle_landed
    assert [len(d) for _, d in client_landed] == [MiB - 1]


def test_single_record_key_counted_in_utf8_bytes(pair: Pair) -> None:
    # 128 × "é" is 256 bytes: both count the key in bytes in single mode.
    client, _ = expect_both_raise(pair, b"x" * (MiB - 255), partition_key="é" * 128)
    assert (client.code, client.actual) == ("record_too_large", MiB + 1)


def test_batch_over_5_mib_refused(pair: Pair) -> None:
    data = ["x" * 900_000] * 6
    client, oracle = expect_both_raise(pair, data, record_per_entry=True, partition_key="k")
    assert str(oracle) == "The total size of records exceeds the 5MiB limit for a single put_records."
    assert (client.status, client.code, client.limit, client.actual) == (422, "batch_too_large", 5 * MiB, 6 * 900_001)
    assert pair.landed() == ([], [])


def test_207_partial_failure_returns_the_dict_like_boto3(streams: Streams, service_big_records: str) -> None:
    # kinesis-mock fails only the >1 MiB entry of a PutRecords (docs/testing.md, "The emulator"); the class sends it
    # (no per-record check in batch mode), the service does too when its limit is set above 1 MiB.
    pair = Pair(streams, service_big_records)
    data = ["small", "x" * (MiB + 100), {"after": True}]
    oracle_answer, client_answer = pair.send(data, record_per_entry=True, partition_key="k")
    pair.client.close()
    for answer in (oracle_answer, client_answer):
        assert answer["FailedRecordCount"] == 1
        assert [set(r) for r in answer["Records"]] == [
            {"ShardId", "SequenceNumber"}, {"ErrorCode", "ErrorMessage"}, {"ShardId", "SequenceNumber"}]
        assert answer["Records"][1]["ErrorCode"] == "InvalidArgumentException"
    oracle, client = pair.landed()
    assert client == oracle == [("k", b"small"), ("k", b'{"after": true}')]


# --- deliberate differences (docs/api.md and docs/python-client.md) ------------------


def capture_put_records(writer: Any) -> List[Dict[str, Any]]:
    """Make the oracle's boto3 call a recorder: proves the class's local checks passed."""
    calls: List[Dict[str, Any]] = []
    writer.client.put_records = lambda **kw: calls.append(kw) or {"FailedRecordCount": 0, "Records": []}
    return calls


def test_fix_record_size_checked_in_batch_mode(pair: Pair) -> None:
    data = ["small", "x" * (MiB + 100)]
    calls = capture_put_records(pair.oracle)
    pair.oracle.send_to_stream(data, record_per_entry=True, partition_key="k")
    assert len(calls) == 1, "the class has no per-record check in batch mode: it sends"
    with pytest.raises(KinesisWriterError) as error:
        pair.client.send_to_stream(data, record_per_entry=True, partition_key="k")
    e = error.value
    assert (e.code, e.limit, e.actual, e.index) == ("record_too_large", MiB, MiB + 101, 1)
    assert pair.streams.read(pair.client_stream) == []


def test_fix_batch_keys_counted_in_bytes(pair: Pair) -> None:
    key = "é" * 128  # 128 characters, 256 UTF-8 bytes
    sizes = [873_685] * 5 + [873_687]  # Σ data + 6 × 128 = 5 MiB exactly (the class's count)
    data = [b"x" * n for n in sizes]
    calls = capture_put_records(pair.oracle)
    pair.oracle.send_to_stream(data, record_per_entry=True, partition_key=key)
    assert len(calls) == 1, "the class counts the key in characters in batch mode: it passes"
    with pytest.raises(KinesisWriterError) as error:
        pair.client.send_to_stream(data, record_per_entry=True, partition_key=key)
    assert (error.value.code, error.value.actual) == ("batch_too_large", 5 * MiB + 6 * 128)


def test_fix_string_flag_is_refused(pair: Pair) -> None:
    calls = capture_put_records(pair.oracle)
    pair.oracle.send_to_stream(["a"], record_per_entry="false")
    assert len(calls) == 1, 'the class treats "false" as batch mode'
    with pytest.raises(TypeError, match="record_per_entry"):
        pair.client.send_to_stream(["a"], record_per_entry="false")  # type: ignore[arg-type]


def test_fix_nan_is_refused_before_sending(pair: Pair) -> None:
    pair.oracle.send_to_stream({"x": float("nan")})
    with pytest.raises(ValueError, match="JSON compliant"):
        pair.client.send_to_stream({"x": float("nan")})
    oracle, client = pair.landed()
    assert [d for _, d in oracle] == [b'{"x": NaN}'] and client == []


def test_fix_empty_batch_is_a_kinesis_writer_error(pair: Pair) -> None:
    with pytest.raises(ParamValidationError):
        pair.oracle.send_to_stream([], record_per_entry=True)
    with pytest.raises(KinesisWriterError) as error:
        pair.client.send_to_stream([], record_per_entry=True)
    assert error.value.code == "empty_batch"


@pytest.mark.parametrize("record_per_entry", [False, True])
def test_fix_partition_keys_checked_by_the_service(pair: Pair, record_per_entry: bool) -> None:
    data: Any = ["x"] if record_per_entry else "x"
    with pytest.raises(ParamValidationError):
        pair.oracle.send_to_stream(data, partition_key="", record_per_entry=record_per_entry)
    with pytest.raises(ClientError) as oracle_error:
        pair.oracle.send_to_stream(data, partition_key="k" * 257, record_per_entry=record_per_entry)
    assert oracle_error.value.response["Error"]["Code"] == "InvalidArgumentException"
    for key, actual in (("", 0), ("k" * 257, 257)):
        with pytest.raises(KinesisWriterError) as error:
            pair.client.send_to_stream(data, partition_key=key, record_per_entry=record_per_entry)
        assert (error.value.code, error.value.limit, error.value.actual) == ("invalid_partition_key", 256, actual)
    assert pair.landed() == ([], [])


def test_missing_stream_is_a_typed_error(service: str, aws_env: None) -> None:
    with pytest.raises(ClientError) as oracle_error:
        newslaunch.KinesisWriter("no-such-stream-py").send_to_stream({"a": 1})
    assert oracle_error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with KinesisWriter("no-such-stream-py", base_url=service) as writer:
        with pytest.raises(StreamNotFoundError) as error:
            writer.send_to_stream({"a": 1})
    assert (error.value.status, error.value.code) == (404, "stream_not_found")
    assert isinstance(error.value, kinesis_writer_client.KinesisWriterHTTPError)
    assert not isinstance(error.value, KinesisWriterError)


# --- the same exceptions, before anything is sent -------------------------------------------------

SAME_ERRORS: List[Tuple[str, Any, Dict[str, Any], type]] = [
    ("set", {1, 2}, {}, TypeError),
    ("datetime", datetime.datetime(2026, 1, 1), {}, TypeError),
    ("bytearray", bytearray(b"x"), {}, TypeError),
    ("bytes nested in a dict", {"b": b"x"}, {}, TypeError),
    ("tuple key", {(1, 2): "x"}, {}, TypeError),
    ("lone surrogate", "\ud800", {}, UnicodeEncodeError),
    ("int key, single", "x", {"partition_key": 123}, AttributeError),
    ("int key, batch", ["x"], {"partition_key": 123, "record_per_entry": True}, TypeError),
    ("bad item in a batch", [{"ok": 1}, {1, 2}], {"record_per_entry": True}, TypeError),
    ("lone surrogate in a batch", ["ok", "\ud800"], {"record_per_entry": True}, UnicodeEncodeError),
]


@pytest.mark.parametrize("data, kwargs, exc", [c[1:] for c in SAME_ERRORS], ids=[c[0] for c in SAME_ERRORS])
def test_same_exception_types_and_nothing_sent(pair: Pair, data: Any, kwargs: Dict[str, Any], exc: type) -> None:
    with pytest.raises(exc):
        pair.oracle.send_to_stream(data, **kwargs)
    with pytest.raises(exc):
        pair.client.send_to_stream(data, **kwargs)
    assert pair.landed() == ([], [])


@pytest.mark.parametrize("name", ["", None])
def test_stream_name_required(name: Any, aws_env: None) -> None:
    with pytest.raises(newslaunch.KinesisWriterError) as oracle_error:
        newslaunch.KinesisWriter(name)
    with pytest.raises(KinesisWriterError) as client_error:
        KinesisWriter(name)
    assert str(client_error.value) == str(oracle_error.value) == "Stream_name parameter is required."


def test_seed_constructor_arguments_are_accepted_and_ignored(pair: Pair, service: str) -> None:
    with pytest.warns(UserWarning, match="ignores region_name"):
        writer = KinesisWriter(pair.client_stream, "eu-west-1", "AKIA...", "secret", base_url=service)
    with writer:
        answer = writer.send_to_stream("via positional seed arguments")
    assert answer["ShardId"] == "shardId-000000000000"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KinesisWriter(pair.client_stream, base_url=service).close()
