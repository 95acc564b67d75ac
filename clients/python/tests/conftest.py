"""Harness: the Kinesis emulator and the kinesis-writer service, once per session, on loopback.

- the emulator: tools/kinesis-local (kinesis-mock's JavaScript build), installed with ``npm ci`` if
  missing, on free ports, SIGKILLed at the end (it may ignore SIGTERM);
- the service: ``target/debug/kinesis-writer`` (built with cargo if missing, or
  ``$KINESIS_WRITER_BIN``), ``APP_ENVIRONMENT=local``, pointed at the emulator, SIGTERMed at the end;
- the oracle's environment: boto3 (and so ``newslaunch.KinesisWriter``) reaches the same emulator
  through ``AWS_ENDPOINT_URL_KINESIS`` with dummy credentials.

Every test gets fresh streams (1 shard each) created with boto3, and reads back what landed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import boto3
import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]
EMULATOR_DIR = ROOT / "tools" / "kinesis-local"
EMULATOR_MAIN = EMULATOR_DIR / "node_modules" / "kinesis-local" / "main.js"

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready within {limit} s:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kw-pyclient-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
    # boto3's Session reads AWS_DEFAULT_REGION, not AWS_REGION (seed BEHAVIOUR.md §2).
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def emulator(workdir: Path) -> Iterator[str]:
    if not EMULATOR_MAIN.exists():
        subprocess.run(
            ["npm", "ci", "--prefix", str(EMULATOR_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
            check=True,
        )
    port, tls_port = free_port(), free_port()
    log = workdir / "emulator.log"
    env = dict(
        os.environ,
        KINESIS_MOCK_CERT_PATH=str(EMULATOR_DIR / "node_modules" / "kinesis-local" / "server.json"),
        KINESIS_MOCK_PLAIN_PORT=str(port),
        KINESIS_MOCK_TLS_PORT=str(tls_port),
        CREATE_STREAM_DURATION="0ms",
        DELETE_STREAM_DURATION="0ms",
        # kinesis-mock allows 50 open shards per account by default; two fresh streams per test are
        # deleted afterwards, but a failed deletion must not turn into LimitExceeded later on.
        SHARD_LIMIT="100000",
        LOG_LEVEL="WARN",
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(["node", str(EMULATOR_MAIN)], env=env, stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "kinesis",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        _wait("the emulator", lambda: bool(client.list_streams(Limit=1) is not None), proc, log, 60)
        yield endpoint
    finally:
        proc.kill()  # SIGKILL: kinesis-mock can ignore SIGTERM, and it keeps nothing we need
        proc.wait()


@pytest.fixture(scope="session")
def aws_env(emulator: str) -> Iterator[None]:
    """The test process's environment for boto3 and so for the oracle, newslaunch.KinesisWriter."""
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(AWS_TEST_ENV)
    os.environ["AWS_ENDPOINT_URL_KINESIS"] = emulator
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def kinesis(aws_env: None, emulator: str) -> Any:
    return boto3.client("kinesis", endpoint_url=emulator, region_name="us-east-1")


def _service_binary() -> Path:
    given = os.environ.get("KINESIS_WRITER_BIN")
    if given:
        return Path(given)
    binary = ROOT / "target" / "debug" / "kinesis-writer"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--locked", "--bin", "kinesis-writer"], cwd=ROOT, check=True)
    return binary


def start_service(emulator: str, log: Path, **settings: str) -> Iterator[str]:
    """Runs the service (APP_ENVIRONMENT=local, pointed at the emulator) until the generator closes."""
    binary = _service_binary()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "AWS_", "RUST_LOG"))}
    env.update(AWS_TEST_ENV)
    env.update(
        APP_ENVIRONMENT="local",
        APP_SERVER__HOST="127.0.0.1",
        APP_SERVER__PORT=str(port),
        APP_KINESIS__ENDPOINT_URL=emulator,
        APP_TELEMETRY__FORMAT="json",
        APP_TELEMETRY__FILTER="info",
    )
    env.update(settings)
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait(
            "the service",
            lambda: requests.get(f"{base_url}/health/ready", timeout=2).status_code == 200,
            proc,
            log,
            60,
        )
        yield base_url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def service(emulator: str, workdir: Path) -> Iterator[str]:
    yield from start_service(emulator, workdir / "service.log")


@pytest.fixture(scope="session")
def service_big_records(emulator: str, workdir: Path) -> Iterator[str]:
    """A second instance whose record-size limit (2 MiB) is above the emulator stream's (1 MiB), so
    Kinesis itself fails one entry of a PutRecords: the only way to see a real 207."""
    yield from start_service(
        emulator, workdir / "service-big.log", APP_LIMITS__MAX_RECORD_SIZE_BYTES=str(2 * 1024 * 1024)
    )


API_KEY = "py-client-key"
OTHER_KEY = "py-client-key-for-another-stream"


@pytest.fixture(scope="session")
def service_guarded(emulator: str, workdir: Path) -> Iterator[str]:
    """A third instance: API keys required."""
    import hashlib
    import json

    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    keys = [
        {"id": "all", "sha256": digest(API_KEY), "streams": ["*"]},
        {"id": "other", "sha256": digest(OTHER_KEY), "streams": ["some-other-stream"]},
    ]
    yield from start_service(
        emulator,
        workdir / "service-guarded.log",
        APP_AUTH__REQUIRED="true",
        APP_AUTH__KEYS=json.dumps(keys),
    )


@pytest.fixture(scope="session")
def service_one_slot(emulator: str, workdir: Path) -> Iterator[str]:
    """A fourth instance that takes one request at a time: a second one in flight is shed with
    503 overloaded, the one 503 the client retries."""
    yield from start_service(
        emulator, workdir / "service-one-slot.log", APP_SERVER__MAX_CONCURRENT_REQUESTS="1"
    )


class Streams:
    """Creates 1-shard streams on the emulator and reads them back."""

    def __init__(self, kinesis: Any) -> None:
        self.kinesis = kinesis
        self.created: List[str] = []

    def create(self, prefix: str = "py", name: Optional[str] = None) -> str:
        name = name or f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.kinesis.create_stream(StreamName=name, ShardCount=1)
        deadline = time.monotonic() + 30
        while True:
            status = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            if status == "ACTIVE":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"stream {name} still {status}")
            time.sleep(0.05)
        self.created.append(name)
        return name

    def read(self, name: str) -> List[Tuple[str, bytes]]:
        """Every record of the stream, in order: (partition key, data bytes)."""
        out: List[Tuple[str, bytes]] = []
        for shard in self.kinesis.list_shards(StreamName=name)["Shards"]:
            iterator: Optional[str] = self.kinesis.get_shard_iterator(
                StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page: Dict[str, Any] = self.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                out.extend((r["PartitionKey"], bytes(r["Data"])) for r in page["Records"])
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        return out

    def cleanup(self) -> None:
        for name in self.created:
            try:
                self.kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
            except Exception:
                pass


@pytest.fixture
def streams(kinesis: Any) -> Iterator[Streams]:
    s = Streams(kinesis)
    yield s
    s.cleanup()
