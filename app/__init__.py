"""Emberlog API: a thin, generic HTTP layer over the behaviour PostgreSQL holds."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emberlog-api")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"
