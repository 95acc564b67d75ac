"""``KinesisWriter`` over HTTP: ``newslaunch.KinesisWriter``'s API, written through kinesis-writer.

The serialisation is the Python class's, done here, so the bytes that land in Kinesis are the bytes
the class would have put there: a ``str`` is sent as ``text/plain`` (stored raw), ``bytes`` as
``application/octet-stream`` (stored raw), anything else as ``json.dumps(data)`` in
``application/json`` (the service stores a non-string JSON value exactly as sent). In batch mode each
item follows the same rule inside one JSON array; ``bytes`` items switch the request to the service's
envelopes (``{"data_base64": ...}``), since a JSON array has no other way to carry raw bytes.

The limits (500 records, 1 MiB per record, 5 MiB per request, partition-key length) are the
service's: it refuses with 413/422 before any call to Kinesis, and the client raises
:class:`KinesisWriterError` with the service's ``code``, ``limit``, ``actual`` and ``index``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, Union
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from . import __version__
from .errors import (
    KinesisWriterClientError,
    KinesisWriterError,
    KinesisWriterHTTPError,
    StreamNotFoundError,
    ThrottledError,
    UnauthorizedError,
    UnavailableError,
)

__all__ = ["KinesisWriter", "KinesisWriterError", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
"""Used when neither ``base_url`` nor the ``KINESIS_WRITER_URL`` environment variable is given."""

Timeout = Union[float, Tuple[float, float]]

# Waits between retries of a whole request: full-jitter exponential without a Retry-After header,
# and never longer than _MAX_WAIT_S whatever the header says (a caller's thread is blocked).
_BASE_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 2.0
_MAX_WAIT_S = 10.0

# Indirection so tests can observe the waits without sleeping.
_sleep = time.sleep


class KinesisWriter:
    """Write records to a Kinesis stream through the kinesis-writer HTTP service.

    Drop-in for ``newslaunch.KinesisWriter``: same constructor position of ``stream_name``, same
    ``send_to_stream(data, partition_key=None, record_per_entry=False)``, same return value (the
    Kinesis response dict, as the service answers it) and ``KinesisWriterError`` for bad data and
    limits.

    Args:
        stream_name: the Kinesis stream. Falsy → ``KinesisWriterError("Stream_name parameter is
            required.")``, as the class raised; not a ``str`` → ``TypeError``.
        region_name, aws_access_key_id, aws_secret_access_key: accepted where the Python class had
            them (positionally too) so existing calls keep working, and **ignored** with a
            ``UserWarning``: the service holds the region and the AWS credentials.
        base_url: the service, e.g. ``https://kinesis-writer.internal``. Default: the
            ``KINESIS_WRITER_URL`` environment variable, else ``http://127.0.0.1:8080``.
        api_key: sent as ``Authorization: Bearer <key>``. Default: ``KINESIS_WRITER_API_KEY``.
        timeout: seconds, or ``(connect, read)`` as in ``requests``. Default 60 s (boto3's).
        max_attempts: attempts per call, counting the first, for the retries that cannot duplicate a
            record (503 ``overloaded``, a connection that could not be opened). 1 disables them.
        session: a ``requests.Session`` to use instead of the writer's own (the writer does not
            close a session it was given).
    """

    def __init__(
        self,
        stream_name: str,
        region_name: Optional[str] = None,
        aws_access_key_id: Optional[str] = None,
        aws_secret_access_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: Timeout = 60.0,
        max_attempts: int = 3,
        session: Optional[requests.Session] = None,
    ) -> None:
        if not stream_name:
            raise KinesisWriterError("Stream_name parameter is required.")
        if not isinstance(stream_name, str):
            raise TypeError(f"stream_name must be a str, not {type(stream_name).__name__}")
        if region_name or aws_access_key_id or aws_secret_access_key:
            warnings.warn(
                "kinesis_writer_client.KinesisWriter ignores region_name, aws_access_key_id and "
                "aws_secret_access_key: the kinesis-writer service holds the region and the AWS "
                "credentials. Pass base_url= (and api_key=) instead.",
                UserWarning,
                stacklevel=2,
            )
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

        self.stream_name = stream_name
        self.base_url = (base_url or os.environ.get("KINESIS_WRITER_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._url = f"{self.base_url}/streams/{quote(stream_name, safe='')}/records"
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        if self._owns_session:
            # The writer's own retries are the only ones: urllib3 must not resend a request itself.
            adapter = HTTPAdapter(max_retries=0)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        key = api_key if api_key is not None else os.environ.get("KINESIS_WRITER_API_KEY")
        self._headers = {"User-Agent": f"kinesis-writer-client/{__version__}"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    # -- public API -------------------------------------------------------------------------------

    def send_to_stream(
        self,
        data: Any,
        partition_key: Optional[str] = None,
        record_per_entry: bool = False,
        idempotency_key: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Send ``data`` as one record, or (``record_per_entry``) each item of a list as one record.

        ``idempotency_key`` (1-255 visible ASCII characters, e.g. ``str(uuid.uuid4())``) makes the
        write safe to repeat: the service processes the first request with it and answers a repeat
        of the same request with the first answer, writing nothing. Every retry the client makes on
        its own sends the same key; pass the same key again when *you* retry the same call (after
        ``client_timeout`` or ``connection_lost``). Another call under a used key raises
        ``KinesisWriterError`` (``idempotency_key_reused``).

        Returns the Kinesis response as the service answers it: ``{"ShardId", "SequenceNumber",
        "EncryptionType"}`` for one record; ``{"FailedRecordCount", "Records", "EncryptionType"}`` for
        a batch, also when some records failed (HTTP 207): check ``FailedRecordCount`` as with boto3.

        Raises:
            KinesisWriterError: batch data that is not a list (before any request), and every
                413/422 answer (limits, empty batch, invalid partition key).
            TypeError, ValueError, AttributeError, UnicodeEncodeError: data or partition key that
                cannot be serialised, before any request (see docs/python-client.md in the repository).
            KinesisWriterHTTPError and its subclasses: the service's other error answers.
            ValueError: an ``idempotency_key`` the service would refuse, before any request.
        """
        if isinstance(record_per_entry, str):
            # The Python class tested truthiness, so record_per_entry="false" meant batch mode.
            raise TypeError(
                f"record_per_entry must be a bool, not the string {record_per_entry!r}"
            )
        if idempotency_key is not None and not _valid_idempotency_key(idempotency_key):
            raise ValueError(
                "idempotency_key must be 1-255 visible ASCII characters (no spaces), "
                f"not {idempotency_key!r}"
            )
        if record_per_entry:
            body, content_type, params = self._batch_request(data, partition_key)
        else:
            body, content_type, params = self._single_request(data, partition_key)
        return self._post(body, content_type, params, idempotency_key)

    def close(self) -> None:
        """Close the pooled connections (only those of a session the writer created)."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> "KinesisWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KinesisWriter(stream_name={self.stream_name!r}, base_url={self.base_url!r})"

    # -- serialisation: the Python class's rules --------------------------------------------------

    @staticmethod
    def _single_request(
        data: Any, partition_key: Optional[str]
    ) -> Tuple[bytes, str, Dict[str, str]]:
        params: Dict[str, str] = {}
        if partition_key is not None:
            # Same failure as the class for a non-str key (AttributeError: no attribute 'encode').
            partition_key.encode("utf-8")
            params["partition_key"] = partition_key
        if isinstance(data, str):
            return data.encode("utf-8"), "text/plain; charset=utf-8", params
        if isinstance(data, bytes):
            return bytes(data), "application/octet-stream", params
        return _dumps(data).encode("utf-8"), "application/json", params

    @staticmethod
    def _batch_request(
        data: Any, partition_key: Optional[str]
    ) -> Tuple[bytes, str, Dict[str, str]]:
        if not isinstance(data, list):
            raise KinesisWriterError("Data must be a list of values when using 'put_records' mode.")
        params: Dict[str, str] = {"record_per_entry": "true"}
        if partition_key is not None:
            # Same failure as the class for a non-str key (TypeError: object has no len()).
            len(partition_key)
            if not isinstance(partition_key, str):
                raise TypeError(f"partition_key must be a str, not {type(partition_key).__name__}")
            params["partition_key"] = partition_key
        # Serialise every item first, as the class did: a bad item sends nothing.
        envelope = any(isinstance(item, bytes) for item in data)
        parts: List[str] = []
        for item in data:
            if isinstance(item, bytes):
                parts.append('{"data_base64": "%s"}' % base64.b64encode(item).decode("ascii"))
                continue
            if isinstance(item, str):
                item.encode("utf-8")  # a lone surrogate fails here, as in the class
            # A JSON string element is stored unquoted; any other value exactly as sent.
            text = _dumps(item)
            parts.append('{"data": %s}' % text if envelope else text)
        if envelope:
            params["envelope"] = "true"
        return ("[" + ", ".join(parts) + "]").encode("utf-8"), "application/json", params

    # -- HTTP -------------------------------------------------------------------------------------

    def _post(
        self,
        body: bytes,
        content_type: str,
        params: Mapping[str, str],
        idempotency_key: Optional[str] = None,
    ) -> Dict[str, Any]:
        headers = dict(self._headers)
        headers["Content-Type"] = content_type
        if idempotency_key is not None:
            # Set once, before the loop: every try of this call carries the same key, so a retry
            # the service already processed is answered from its record, not written again.
            headers["Idempotency-Key"] = idempotency_key
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.post(
                    self._url, data=body, params=params, headers=headers, timeout=self.timeout
                )
            except requests.exceptions.ConnectionError as exc:
                if not _nothing_sent(exc):
                    raise KinesisWriterHTTPError(
                        f"the connection to {self.base_url} broke after the request was sent; "
                        "the record may or may not have been written",
                        code="connection_lost",
                    ) from exc
                if attempt < self.max_attempts:
                    _sleep(_backoff(attempt, None))
                    continue
                raise UnavailableError(
                    f"cannot connect to {self.base_url} ({attempt} attempts); nothing was sent",
                    code="service_unreachable",
                ) from exc
            except requests.exceptions.Timeout as exc:
                raise KinesisWriterHTTPError(
                    f"no answer from {self.base_url} within {self.timeout} s; "
                    "the record may or may not have been written",
                    code="client_timeout",
                ) from exc

            if response.status_code in (200, 207):
                result = response.json()
                if not isinstance(result, dict):
                    raise KinesisWriterHTTPError(
                        "the service answered with something other than a JSON object",
                        status=response.status_code,
                        code="invalid_answer",
                    )
                return result

            error = _error_from(response)
            if not (
                isinstance(error, UnavailableError)
                and error.code == "overloaded"
                and attempt < self.max_attempts
            ):
                raise error
            # 503 overloaded: the service refused before doing anything, so resending is safe.
            response.close()
            _sleep(_backoff(attempt, error.retry_after))


def _valid_idempotency_key(key: Any) -> bool:
    """The service's rule (docs/api.md#idempotent-retries): 1-255 characters in %x21-7E."""
    return (
        isinstance(key, str)
        and 1 <= len(key) <= 255
        and all("\x21" <= c <= "\x7e" for c in key)
    )


def _dumps(value: Any) -> str:
    # json.dumps with the class's defaults, except NaN/Infinity: the service refuses them (they are
    # not JSON), so they fail here, before any request, rather than as a 400 from the service.
    return json.dumps(value, allow_nan=False)


def _nothing_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection could not be opened (refused, connect timeout): no byte was sent."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen = set()
    cause: Optional[BaseException] = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, NewConnectionError):
            return True
        reason = getattr(cause, "reason", None)
        if isinstance(reason, BaseException):
            if isinstance(reason, NewConnectionError):
                return True
        nxt = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None
        cause = nxt or cause.__cause__ or cause.__context__
    return False


def _backoff(attempt: int, retry_after: Optional[float]) -> float:
    if retry_after is not None:
        return min(max(retry_after, 0.0), _MAX_WAIT_S)
    return random.uniform(0.0, min(_MAX_BACKOFF_S, _BASE_BACKOFF_S * 2 ** (attempt - 1)))


def _retry_after(response: requests.Response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _int_or_none(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_from(response: requests.Response) -> KinesisWriterClientError:
    status = response.status_code
    problem: Dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            problem = parsed
    except ValueError:
        pass
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
    request_id = problem.get("request_id") or response.headers.get("x-request-id")
    request_id = request_id if isinstance(request_id, str) else None
    message = detail or f"HTTP {status} {response.reason or ''}".strip()
    if code:
        message = f"{message} ({status} {code})"

    if status in (413, 422):
        return KinesisWriterError(
            message,
            status=status,
            code=code,
            detail=detail,
            request_id=request_id,
            problem=problem,
            limit=_int_or_none(problem.get("limit")),
            actual=_int_or_none(problem.get("actual")),
            index=_int_or_none(problem.get("index")),
        )
    cls: Type[KinesisWriterHTTPError] = KinesisWriterHTTPError
    if status in (401, 403):
        cls = UnauthorizedError
    elif status == 404 and code == "stream_not_found":
        cls = StreamNotFoundError
    elif status == 429:
        cls = ThrottledError
    elif status == 503:
        cls = UnavailableError
    return cls(
        message,
        status=status,
        code=code,
        detail=detail,
        request_id=request_id,
        problem=problem,
        retry_after=_retry_after(response),
    )
