"""Exceptions raised by fathom. Every one derives from :class:`Error`.

The compiled core raises these by name (``fathom._core`` maps each C++ ``Status`` code to a class
here), and the HTTP client maps the server's status codes to the same classes, so code written
against the embedded database handles a remote one the same way.
"""
from __future__ import annotations


class Error(Exception):
    """Base class of every fathom error; the message is the library's own."""


class InvalidArgumentError(Error, ValueError):
    """Bad input: wrong shape or dimension, NaN, malformed filter or payload, bad name."""


class NotFoundError(Error, KeyError):
    """No such collection, point, snapshot or file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(Error):
    """The collection (or snapshot target) already exists."""


class CorruptionError(Error):
    """A file failed its checksum or format checks."""


class StorageError(Error, OSError):
    """An I/O error from the storage layer."""


class NotSupportedError(Error):
    """The operation is not supported by this index or collection."""


class FailedPreconditionError(Error):
    """The object is not in a state that allows the operation (e.g. the database is closed)."""


class ResourceExhaustedError(Error):
    """A limit was exceeded (request size, request time, memory)."""


class UnavailableError(Error, ConnectionError):
    """The HTTP client could not reach the server (refused, reset, timed out)."""


class AuthError(Error, PermissionError):
    """The server refused the API key (HTTP 401) or the key may not write (HTTP 403)."""


__all__ = [
    "Error", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError", "CorruptionError",
    "StorageError", "NotSupportedError", "FailedPreconditionError", "ResourceExhaustedError",
    "AuthError", "UnavailableError",
]
