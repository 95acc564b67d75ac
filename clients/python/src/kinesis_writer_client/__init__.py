"""A drop-in for ``newslaunch.KinesisWriter`` that writes through the kinesis-writer HTTP service.

    - from newslaunch import KinesisWriter
    + from kinesis_writer_client import KinesisWriter

``kinesis_writer_client.kinesis_writer`` mirrors ``newslaunch.kinesis_writer`` for the longer import.
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    KinesisWriterClientError,
    KinesisWriterError,
    KinesisWriterHTTPError,
    StreamNotFoundError,
    ThrottledError,
    UnauthorizedError,
    UnavailableError,
)
from .kinesis_writer import DEFAULT_BASE_URL, KinesisWriter  # noqa: E402

__all__ = [
    "DEFAULT_BASE_URL",
    "KinesisWriter",
    "KinesisWriterClientError",
    "KinesisWriterError",
    "KinesisWriterHTTPError",
    "StreamNotFoundError",
    "ThrottledError",
    "UnauthorizedError",
    "UnavailableError",
    "__version__",
]
