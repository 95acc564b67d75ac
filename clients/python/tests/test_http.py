"""The client's HTTP behaviour against a scripted fake service on loopback (no emulator needed):
what goes on the wire, how each answer maps to a return value or an exception, and the retry rules
(whole requests are resent only on 503 overloaded and when a connection could not be opened)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

import kinesis_writer_client
from kinesis_writer_client import (
    KinesisWriter,
    KinesisWriterClientError,
    KinesisWriterError,
    KinesisWriterHTTPError,
    StreamNotFoundError,
    ThrottledError,
    UnauthorizedError,
    UnavailableError,
)
from kinesis_writer_client import kinesis_writer as module

from conftest import free_port

# (status, headers, body); body None → close the connection without answering.
Answer = Tuple[int, Dict[str, str], Optional[bytes]]

OK_SINGLE: Answer = (200, {"Content-Type": "application/json"},
                     b'{"ShardId":"shardId-000000000000","SequenceNumber":"1","EncryptionType":"NONE"}')


def problem(status: int, code: str, **extra: Any) -> Answer:
    body = {"type": f"urn:kinesis-writer:problem:{code}", "title": code, "status": status,
            "detail": f"detail of {code}", "code": code, "request_id": "req-1", **extra}
    headers = {"Content-Type": "application/problem+json"}
    if status in (429, 503):
        headers["Retry-After"] = "1"
    return status, headers, json.dumps(body).encode()


class Fake:
    def __init__(self, port: int = 0) -> None:
        self.answers: List[Answer] = []
        self.requests: List[Dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                url = urlsplit(self.path)
                fake.requests.append({
                    "path": url.path, "query": parse_qs(url.query, keep_blank_values=True),
                    "headers": dict(self.headers), "body": body, "client_port": self.client_address[1],
                })
                status, headers, payload = fake.answers.pop(0) if fake.answers else OK_SINGLE
                if payload is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[Fake]:
    f = Fake()
    yield f
    f.stop()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    waits: List[float] = []
    monkeypatch.setattr(module, "_sleep", waits.append)
    return waits


@pytest.fixture
def writer(fake: Fake) -> Iterator[KinesisWriter]:
    with KinesisWriter("my-stream", base_url=fake.url, api_key="secret-key", timeout=5) as w:
        yield w


# --- the wire -------------------------------------------------------------------------------------


def test_str_is_text_plain_bytes_are_octet_stream_others_json(writer: KinesisWriter, fake: Fake) -> None:
    writer.send_to_stream("hé")
    writer.send_to_stream(b"\x00\xff")
    writer.send_to_stream({"city": "Zürich"}, partition_key="ключ")
    text, binary, js = fake.requests
    assert text["path"] == "/streams/my-stream/records"
    assert (text["headers"]["Content-Type"], text["body"]) == ("text/plain; charset=utf-8", "hé".encode())
    assert (binary["headers"]["Content-Type"], binary["body"]) == ("application/octet-stream", b"\x00\xff")
    assert (js["headers"]["Content-Type"], js["body"]) == ("application/json", b'{"city": "Z\\u00fcrich"}')
    assert text["query"] == {} and js["query"] == {"partition_key": ["ключ"]}
    assert all(r["headers"]["Authorization"] == "Bearer secret-key" for r in fake.requests)


def test_batch_is_a_json_array_and_bytes_switch_to_envelopes(writer: KinesisWriter, fake: Fake) -> None:
    fake.answers = [(200, {}, b'{"FailedRecordCount":0,"Records":[]}')] * 2
    writer.send_to_stream(["s", {"a": 1}, 2], record_per_entry=True, partition_key="k")
    writer.send_to_stream([b"\x00", "s", {"a": 1}], record_per_entry=True)
    plain, enveloped = fake.requests
    assert plain["query"] == {"record_per_entry": ["true"], "partition_key": ["k"]}
    assert plain["body"] == b'["s", {"a": 1}, 2]'
    assert enveloped["query"] == {"record_per_entry": ["true"], "envelope": ["true"]}
    assert json.loads(enveloped["body"]) == [
        {"data_base64": base64.b64encode(b"\x00").decode()}, {"data": "s"}, {"data": {"a": 1}}]


def test_stream_name_is_one_path_segment(fake: Fake) -> None:
    with KinesisWriter("a/b c", base_url=fake.url + "/") as w:
        w.send_to_stream("x")
    assert fake.requests[0]["path"] == "/streams/a%2Fb%20c/records"


def test_connections_are_pooled(writer: KinesisWriter, fake: Fake) -> None:
    for i in range(5):
        writer.send_to_stream(f"r{i}")
    assert len({r["client_port"] for r in fake.requests}) == 1


def test_local_refusals_send_nothing(writer: KinesisWriter, fake: Fake) -> None:
    with pytest.raises(KinesisWriterError, match="must be a list"):
        writer.send_to_stream("x", record_per_entry=True)
    with pytest.raises(TypeError):
        writer.send_to_stream({1, 2})
    assert fake.requests == []


# --- answers --------------------------------------------------------------------------------------


def test_207_returns_the_dict(writer: KinesisWriter, fake: Fake, sleeps: List[float]) -> None:
    body = {"FailedRecordCount": 1, "Records": [
        {"ShardId": "shardId-000000000000", "SequenceNumber": "1"},
        {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}]}
    fake.answers = [(207, {"Content-Type": "application/json", "Retry-After": "1"}, json.dumps(body).encode())]
    assert writer.send_to_stream(["a", "b"], record_per_entry=True) == body
    assert len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize("status, code", [(422, "record_too_large"), (413, "payload_too_large")])
def test_413_and_422_are_kinesis_writer_errors(writer: KinesisWriter, fake: Fake, status: int, code: str) -> None:
    fake.answers = [problem(status, code, error_class="KinesisWriterError", limit=10, actual=11, index=3)]
    with pytest.raises(KinesisWriterError) as error:
        writer.send_to_stream("x")
    e = error.value
    assert (e.status, e.code, e.limit, e.actual, e.index, e.detail, e.request_id) == (
        status, code, 10, 11, 3, f"detail of {code}", "req-1")
    assert e.error_class == "KinesisWriterError"
    assert isinstance(e, KinesisWriterClientError) and not isinstance(e, KinesisWriterHTTPError)


@pytest.mark.parametrize("answer, cls", [
    (problem(401, "unauthorized"), UnauthorizedError),
    (problem(403, "forbidden"), UnauthorizedError),
    (problem(404, "stream_not_found"), StreamNotFoundError),
    (problem(429, "throttled"), ThrottledError),
    (problem(503, "upstream_unavailable"), UnavailableError),
    (problem(400, "invalid_stream_name"), KinesisWriterHTTPError),
    (problem(404, "not_found"), KinesisWriterHTTPError),
    (problem(500, "internal_error"), KinesisWriterHTTPError),
    (problem(502, "upstream_error"), KinesisWriterHTTPError),
    (problem(504, "upstream_timeout"), KinesisWriterHTTPError),
    ((502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"), KinesisWriterHTTPError),
], ids=lambda v: getattr(v, "__name__", None) or str(v[0]))
def test_other_errors_are_typed_and_never_retried(
    writer: KinesisWriter, fake: Fake, sleeps: List[float], answer: Answer, cls: type
) -> None:
    fake.answers = [answer, OK_SINGLE]
    with pytest.raises(KinesisWriterHTTPError) as error:
        writer.send_to_stream("x")
    assert type(error.value) is cls
    assert error.value.status == answer[0]
    assert len(fake.requests) == 1 and sleeps == []
    if answer[0] in (429, 503):
        assert error.value.retry_after == 1.0


def test_503_overloaded_is_retried_honouring_retry_after(writer: KinesisWriter, fake: Fake, sleeps: List[float]) -> None:
    fake.answers = [problem(503, "overloaded"), OK_SINGLE]
    assert writer.send_to_stream("x")["SequenceNumber"] == "1"
    assert len(fake.requests) == 2 and sleeps == [1.0]
    assert fake.requests[0]["body"] == fake.requests[1]["body"] == b"x"


def test_one_idempotency_key_for_all_of_the_clients_own_retries(
    writer: KinesisWriter, fake: Fake, sleeps: List[float]
) -> None:
    fake.answers = [problem(503, "overloaded"), problem(503, "overloaded"), OK_SINGLE]
    assert writer.send_to_stream("x", idempotency_key="order-42")["SequenceNumber"] == "1"
    assert len(fake.requests) == 3
    assert [r["headers"].get("Idempotency-Key") for r in fake.requests] == ["order-42"] * 3


def test_no_idempotency_key_header_unless_asked(writer: KinesisWriter, fake: Fake) -> None:
    writer.send_to_stream("x")
    assert "Idempotency-Key" not in fake.requests[0]["headers"]


@pytest.mark.parametrize("key", ["", "a b", "k" * 256, "clé", 42])
def test_an_idempotency_key_the_service_would_refuse_fails_before_any_request(
    writer: KinesisWriter, fake: Fake, key: Any
) -> None:
    with pytest.raises(ValueError):
        writer.send_to_stream("x", idempotency_key=key)
    assert fake.requests == []


def test_503_overloaded_gives_up_after_max_attempts(fake: Fake, sleeps: List[float]) -> None:
    fake.answers = [problem(503, "overloaded")] * 5
    with KinesisWriter("s", base_url=fake.url, max_attempts=3) as w:
        with pytest.raises(UnavailableError) as error:
            w.send_to_stream("x")
    assert error.value.code == "overloaded"
    assert len(fake.requests) == 3 and sleeps == [1.0, 1.0]


def test_max_attempts_1_disables_retries(fake: Fake, sleeps: List[float]) -> None:
    fake.answers = [problem(503, "overloaded"), OK_SINGLE]
    with KinesisWriter("s", base_url=fake.url, max_attempts=1) as w:
        with pytest.raises(UnavailableError):
            w.send_to_stream("x")
    assert len(fake.requests) == 1 and sleeps == []


def test_connection_refused_is_retried_then_unavailable(sleeps: List[float]) -> None:
    port = free_port()  # nothing listens there
    with KinesisWriter("s", base_url=f"http://127.0.0.1:{port}", max_attempts=3) as w:
        with pytest.raises(UnavailableError) as error:
            w.send_to_stream("x")
    assert error.value.code == "service_unreachable" and error.value.status is None
    assert len(sleeps) == 2 and all(0 <= s <= 2.0 for s in sleeps)


def test_connection_refused_then_the_service_comes_up(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    started: List[Fake] = []

    def come_up(_: float) -> None:
        # The first attempt was refused (nothing sent); the service starts during the wait.
        started.append(Fake(port))

    monkeypatch.setattr(module, "_sleep", come_up)
    try:
        with KinesisWriter("s", base_url=f"http://127.0.0.1:{port}", max_attempts=2) as w:
            assert w.send_to_stream("x")["ShardId"] == "shardId-000000000000"
        assert len(started) == 1 and len(started[0].requests) == 1
    finally:
        for f in started:
            f.stop()


def test_connection_lost_after_sending_is_not_retried(writer: KinesisWriter, fake: Fake, sleeps: List[float]) -> None:
    fake.answers = [(200, {}, None), OK_SINGLE]
    with pytest.raises(KinesisWriterHTTPError) as error:
        writer.send_to_stream("x")
    assert type(error.value) is KinesisWriterHTTPError
    assert error.value.code == "connection_lost" and "may or may not" in str(error.value)
    assert len(fake.requests) == 1 and sleeps == []


def test_read_timeout_is_not_retried(fake: Fake, sleeps: List[float]) -> None:
    gate = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            fake.requests.append({})
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            gate.wait(5)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with KinesisWriter("s", base_url=f"http://127.0.0.1:{server.server_address[1]}", timeout=0.3) as w:
            with pytest.raises(KinesisWriterHTTPError) as error:
                w.send_to_stream("x")
        assert error.value.code == "client_timeout"
        assert len(fake.requests) == 1 and sleeps == []
    finally:
        gate.set()
        server.shutdown()
        server.server_close()


# --- packaging ------------------------------------------------------------------------------------


def test_newslaunch_style_import_path() -> None:
    from kinesis_writer_client.kinesis_writer import KinesisWriter as Deep, KinesisWriterError as DeepError

    assert Deep is KinesisWriter and DeepError is KinesisWriterError
    assert kinesis_writer_client.__version__


def test_package_is_typed_and_passes_mypy_strict() -> None:
    assert (Path(kinesis_writer_client.__file__).parent / "py.typed").exists()
    sources = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(sources / "kinesis_writer_client")],
        capture_output=True, text=True, cwd=sources,
    )
    assert result.returncode == 0, result.stdout + result.stderr
