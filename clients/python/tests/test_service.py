"""The client against the real service where the answer depends on the service's configuration:
API keys (401/403/200) and a real 503 overloaded (retried by the client)."""

from __future__ import annotations

import socket
import time
from typing import List
from urllib.parse import urlsplit

import pytest

from kinesis_writer_client import KinesisWriter, UnauthorizedError, UnavailableError
from kinesis_writer_client import kinesis_writer as module

from conftest import API_KEY, OTHER_KEY, Streams


def test_api_key_is_sent_as_a_bearer_token(streams: Streams, service_guarded: str) -> None:
    name = streams.create()
    with KinesisWriter(name, base_url=service_guarded, api_key=API_KEY) as writer:
        assert writer.send_to_stream("with a key")["ShardId"] == "shardId-000000000000"
    for key, status, code in ((None, 401, "unauthorized"), ("wrong", 401, "unauthorized"),
                              (OTHER_KEY, 403, "forbidden")):
        with KinesisWriter(name, base_url=service_guarded, api_key=key) as writer:
            with pytest.raises(UnauthorizedError) as error:
                writer.send_to_stream("refused")
        assert (error.value.status, error.value.code) == (status, code)
    assert [d for _, d in streams.read(name)] == [b"with a key"]


def test_url_and_key_from_the_environment(
    streams: Streams, service_guarded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one-line migration: only the import changes, the constructor call stays as it was.
    name = streams.create()
    monkeypatch.setenv("KINESIS_WRITER_URL", service_guarded)
    monkeypatch.setenv("KINESIS_WRITER_API_KEY", API_KEY)
    with KinesisWriter(name) as writer:
        writer.send_to_stream({"from": "env"})
    assert [d for _, d in streams.read(name)] == [b'{"from": "env"}']


def test_a_real_503_overloaded_is_retried_then_raised(
    streams: Streams, service_one_slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = streams.create()
    host, port = urlsplit(service_one_slot).hostname, urlsplit(service_one_slot).port
    waits: List[float] = []
    monkeypatch.setattr(module, "_sleep", waits.append)
    # Hold the service's only slot: a request whose body never comes.
    holder = socket.create_connection((str(host), int(port or 0)))
    try:
        holder.sendall(
            f"POST /streams/{name}/records HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
            "Content-Length: 10\r\n\r\n".encode()
        )
        time.sleep(0.3)
        with KinesisWriter(name, base_url=service_one_slot, max_attempts=3) as writer:
            with pytest.raises(UnavailableError) as error:
                writer.send_to_stream("shed")
        assert (error.value.status, error.value.code, error.value.retry_after) == (503, "overloaded", 1.0)
        assert waits == [1.0, 1.0], "three attempts, each wait honouring Retry-After: 1"
        # The slot frees up during the client's wait: the retry then goes through.
        waits.clear()
        monkeypatch.setattr(module, "_sleep", lambda s: (waits.append(s), holder.sendall(b"held-body!"), time.sleep(0.3)))
        with KinesisWriter(name, base_url=service_one_slot, max_attempts=3) as writer:
            assert writer.send_to_stream("after a retry")["ShardId"] == "shardId-000000000000"
        assert waits == [1.0]
    finally:
        holder.close()
    assert sorted(d for _, d in streams.read(name)) == [b"after a retry", b"held-body!"]
