"""Parsers of configuration values: each turns a variable's text into a value, or says
in a ValueError what the text should be. Each also names the kind of value it takes,
for --help and docs/configuration.md."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .http.clients import parse_networks


@dataclass(frozen=True)
class Parser:
    """What a variable takes (``kind``, for people) and how to read it."""

    kind: str
    read: Callable[[str], Any]

    def __call__(self, raw: str) -> Any:
        return self.read(raw)


text = Parser("text", lambda raw: raw)
path = Parser("path", Path)


def integer(minimum: int = 0, maximum: int | None = None) -> Parser:
    def read(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(f"must be {_range(minimum, maximum)}")
        return value

    return Parser(f"integer, {_range(minimum, maximum)}", read)


def _range(minimum: float, maximum: float | None) -> str:
    return f"{minimum} to {maximum}" if maximum is not None else f"at least {minimum}"


def number(minimum: float = 0.0) -> Parser:
    """A finite number, at least minimum (seconds, milliseconds)."""

    def read(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"must be a number of at least {minimum:g}")
        return value

    return Parser(f"number, at least {minimum:g}", read)


# 0 turns a limit off; a negative or infinite rate is a typo.
rate = Parser("requests a second; 0 = off", number().read)


def _share(raw: str) -> float:
    value = number()(raw)
    if not 0 < value <= 1:
        raise ValueError("must be above 0 and at most 1")
    return value


share = Parser("fraction, above 0, at most 1", _share)

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


def _boolean(raw: str) -> bool:
    value = raw.lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise ValueError("must be true or false")


boolean = Parser("true or false", _boolean)


def choice(*choices: str) -> Parser:
    def read(raw: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return Parser(f"one of {', '.join(choices)}", read)


def _networks(raw: str) -> tuple[Any, ...]:
    try:
        return parse_networks(raw)
    except ValueError as exc:
        raise ValueError(f"must be a comma-separated list of CIDRs ({exc})") from None


networks = Parser("comma-separated CIDRs", _networks)


def _existing_file(raw: str) -> Path:
    found = Path(raw)
    if not found.is_file():
        raise ValueError("names no file")
    return found


existing_file = Parser("path of a file", _existing_file)


def secret(min_length: int) -> Parser:
    """A secret long enough not to be brute-forced offline (HS256)."""

    def read(raw: str) -> str:
        if len(raw) < min_length:
            raise ValueError(f"must be at least {min_length} characters")
        return raw

    return Parser(f"secret, at least {min_length} characters", read)


origins = Parser(
    "comma-separated origins, or *",
    lambda raw: tuple(o.strip() for o in raw.split(",") if o.strip()) or ("*",),
)


def _public_url(raw: str) -> str:
    url = raw.rstrip("/")
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", url):
        raise ValueError("must be an absolute http(s) URL")
    return url


public_url = Parser("absolute http(s) URL", _public_url)

# A custom (dotted) setting name: a deployment's values for SQL to read, never one of
# PostgreSQL's own (role, search_path...), which would change what a request may do.
DB_SETTING = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def _db_settings(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        given = json.loads(raw)
    except ValueError:
        raise ValueError("must be a JSON object") from None
    if not isinstance(given, dict):
        raise ValueError("must be a JSON object")
    settings: dict[str, str] = {}
    for name, value in given.items():
        if not DB_SETTING.match(name):
            raise ValueError(f"may only set dotted custom settings (e.g. emberlog.x), not {name}")
        if isinstance(value, dict | list) or value is None:
            raise ValueError(f"{name} must be a string, number or boolean")
        settings[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return tuple(sorted(settings.items()))


db_settings = Parser('JSON object, e.g. {"emberlog.audio_base_url": "https://..."}', _db_settings)
