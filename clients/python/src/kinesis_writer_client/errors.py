"""Exceptions raised by :class:`kinesis_writer_client.KinesisWriter`.

Hierarchy (everything this package raises on purpose derives from :class:`KinesisWriterClientError`)::

    KinesisWriterClientError
    ├── KinesisWriterError          413 / 422 answers, and the local checks the Python class made
    └── KinesisWriterHTTPError      any other error answer, or no usable answer at all
        ├── UnauthorizedError       401, 403
        ├── StreamNotFoundError     404 stream_not_found
        ├── ThrottledError          429 (retry_after)
        └── UnavailableError        503 (retry_after), or the service could not be reached

``KinesisWriterError`` keeps the name (and the "bad data / over a limit" meaning) of
``newslaunch.KinesisWriterError``, so ``except KinesisWriterError`` keeps catching what it caught.
It is deliberately *not* a ``KinesisWriterHTTPError``: it is also raised before any HTTP request
(empty stream name, batch data that is not a list), exactly where the Python class raised it.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

__all__ = [
    "KinesisWriterClientError",
    "KinesisWriterError",
    "KinesisWriterHTTPError",
    "UnauthorizedError",
    "StreamNotFoundError",
    "ThrottledError",
    "UnavailableError",
]


class KinesisWriterClientError(Exception):
    """Base of every exception this client raises on purpose.

    ``status`` is the HTTP status (``None`` when there was no answer, or for a local check),
    ``code`` the service's stable snake_case problem code (or a client-side code such as
    ``service_unreachable``), ``detail`` the human-readable explanation, ``request_id`` the
    service's ``x-request-id`` and ``problem`` the whole problem+json body as received.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        detail: Optional[str] = None,
        request_id: Optional[str] = None,
        problem: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail if detail is not None else message
        self.request_id = request_id
        self.problem: Dict[str, Any] = dict(problem or {})

    @property
    def error_class(self) -> Optional[str]:
        """The service's ``error_class`` (``KinesisWriterError``, ``UpstreamError``, ...), if any."""
        value = self.problem.get("error_class")
        return value if isinstance(value, str) else None


class KinesisWriterError(KinesisWriterClientError):
    """Bad data or a Kinesis limit: the class the Python ``KinesisWriter`` raised.

    Raised for every ``413`` and ``422`` answer (``code`` is e.g. ``record_too_large``,
    ``too_many_records``, ``batch_too_large``, ``invalid_partition_key``, ``empty_batch``), with the
    service's ``limit``, ``actual`` and ``index`` where they apply, and locally (``status`` is
    ``None``) for an empty stream name and for batch data that is not a list, with the Python
    class's exact messages.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        detail: Optional[str] = None,
        request_id: Optional[str] = None,
        problem: Optional[Mapping[str, Any]] = None,
        limit: Optional[int] = None,
        actual: Optional[int] = None,
        index: Optional[int] = None,
    ) -> None:
        super().__init__(
            message, status=status, code=code, detail=detail, request_id=request_id, problem=problem
        )
        self.limit = limit
        self.actual = actual
        self.index = index


class KinesisWriterHTTPError(KinesisWriterClientError):
    """The service answered with an error (other than 413/422), or gave no usable answer.

    ``retry_after`` is the ``Retry-After`` header in seconds, when the service sent one.
    ``status`` is ``None`` when no answer arrived: ``code`` is then ``connection_lost`` or
    ``client_timeout`` (the request had been sent, so the record **may have been written**), or,
    on :class:`UnavailableError`, ``service_unreachable`` (nothing was sent).
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        detail: Optional[str] = None,
        request_id: Optional[str] = None,
        problem: Optional[Mapping[str, Any]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(
            message, status=status, code=code, detail=detail, request_id=request_id, problem=problem
        )
        self.retry_after = retry_after


class UnauthorizedError(KinesisWriterHTTPError):
    """401 ``unauthorized`` (no or unknown API key) or 403 ``forbidden`` (key not allowed on the stream)."""


class StreamNotFoundError(KinesisWriterHTTPError):
    """404 ``stream_not_found``: Kinesis has no such stream, or the service does not allow it."""


class ThrottledError(KinesisWriterHTTPError):
    """429 ``throttled``: Kinesis throttled the write after the service's own retries.

    Nothing was written. Not retried by the client; wait ``retry_after`` seconds before trying again.
    """


class UnavailableError(KinesisWriterHTTPError):
    """503 (``overloaded``, ``upstream_unavailable``, ...) or the service could not be reached.

    Nothing was written. The client already retried the cases it may retry (``overloaded`` and a
    connection that could not be opened); this is raised once those attempts are used up, or at
    once for other 503 codes.
    """
