"""Emberlog API: a thin, generic HTTP layer over the behaviour PostgreSQL holds."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("emberlog-api")
except PackageNotFoundError:  # a checkout or the container image: read pyproject.toml
    _PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        __version__ = tomllib.loads(_PYPROJECT.read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):  # pragma: no cover
        __version__ = "0.0.0"
