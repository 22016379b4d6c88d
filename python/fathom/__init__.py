"""Fathom: a vector database for deep-learning features.

- :class:`Index`: a Faiss-style in-memory index (``add``, ``search`` -> ``(D, I)``, ``save``).
- :class:`Database`: the embedded, durable database (collections, payloads, filters).
- :class:`Client`: the same collection methods against a ``fathom serve`` server over HTTP.

Errors are :class:`fathom.Error` subclasses; bad input is also a ``ValueError``, unknown
collections and ids also a ``KeyError``. See docs/python.md.
"""
from __future__ import annotations

from . import _core, errors
from ._common import Hit, Point
from .client import Client, RemoteCollection
from .database import Collection, Database
from .errors import (AlreadyExistsError, AuthError, CorruptionError, Error, FailedPreconditionError,
                     InvalidArgumentError, NotFoundError, NotSupportedError,
                     ResourceExhaustedError, StorageError, UnavailableError)
from .index import Index

__version__ = "0.1.0"


def set_log_level(level: str) -> None:
    """The library's log level: "trace", "debug", "info", "warning" (the default when imported
    from Python), "error", "critical" or "off". Logs go to stdout."""
    _core.set_log_level(level)


set_log_level("warning")

__all__ = [
    "Index", "Database", "Collection", "Client", "RemoteCollection", "Hit", "Point", "errors",
    "Error", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError", "CorruptionError",
    "StorageError", "NotSupportedError", "FailedPreconditionError", "ResourceExhaustedError",
    "AuthError", "UnavailableError", "__version__", "set_log_level",
]
