"""The Python peer of the benchmark: newslaunch's KinesisWriter (the class the service replaces)
behind FastAPI, with the service's route, so both are measured doing the same work.

    uvicorn python_peer:app --app-dir bench --workers 2 --loop uvloop --http httptools --port 9300

Tuned as a Python team would run it in production (issue #14: an untuned peer flatters us):
uvicorn[standard]'s httptools parser and uvloop, two workers (one per core), and each worker's
thread pool sized to its boto3 connection pool (PEER_POOL, default 64: at least the benchmark's
concurrency), so a blocking boto3 call never waits for a thread or a connection.

POST /streams/{stream}/records?record_per_entry=true|false&partition_key=...
  application/json          -> the parsed JSON value (a str is sent raw, anything else json.dumps'd)
  application/octet-stream  -> the body bytes
  text/plain                -> the body as str
Answers the boto3 response (ResponseMetadata dropped). Kinesis errors become 502 with the AWS code:
the peer is a yardstick, not a second implementation of docs/api.md.

boto3 reads AWS_ENDPOINT_URL_KINESIS and AWS_DEFAULT_REGION (not AWS_REGION) from the environment.
"""

import json
import os
import threading

import anyio.to_thread
from botocore.config import Config
from botocore.exceptions import ClientError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from newslaunch.kinesis_writer import KinesisWriter

POOL = int(os.environ.get("PEER_POOL", "64"))

app = FastAPI()


@app.on_event("startup")
async def size_thread_pool() -> None:
    # Starlette runs blocking calls on anyio's default limiter (40 threads): match the pool.
    anyio.to_thread.current_default_thread_limiter().total_tokens = POOL

# One writer (one boto3 client, thread-safe) per stream and process: building a client costs
# milliseconds, which would otherwise dominate every request.
_writers: dict[str, KinesisWriter] = {}
_lock = threading.Lock()


def writer(stream: str) -> KinesisWriter:
    w = _writers.get(stream)
    if w is None:
        with _lock:
            w = _writers.get(stream)
            if w is None:
                w = KinesisWriter(stream_name=stream)
                # The class builds its client with botocore's defaults (10 pooled connections):
                # rebuild it from the same session with a pool as large as the thread pool.
                w.client = w.session.client(
                    "kinesis", region_name=w.region_name,
                    config=Config(max_pool_connections=POOL),
                )
                _writers[stream] = w
    return w


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


# The body is read asynchronously (its content type decides how to decode it), then the blocking
# boto3 call runs in the thread pool, as FastAPI does for a plain `def` route.
@app.post("/streams/{stream}/records")
async def records(stream: str, request: Request,
                  record_per_entry: str = "false", partition_key: str | None = None):
    body = await request.body()
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if ctype == "application/octet-stream":
        data = body
    elif ctype == "text/plain":
        data = body.decode("utf-8")
    else:
        data = json.loads(body)
    try:
        resp = await run_in_threadpool(
            writer(stream).send_to_stream, data, partition_key, record_per_entry == "true"
        )
    except ClientError as e:
        return JSONResponse({"code": e.response["Error"]["Code"]}, status_code=502)
    resp.pop("ResponseMetadata", None)
    status = 207 if resp.get("FailedRecordCount") else 200
    return JSONResponse(resp, status_code=status)
