"""Bounds a route declares on its arguments (``@param name {json schema}``), checked in
Python before a connection is taken: a value over a bound costs no database work.

The annotation is the function's own contract, published in /openapi.json; these
keywords of it are enforced here as well: ``maxLength`` / ``minLength`` (strings, in
characters), ``maximum`` / ``minimum`` (numbers, also given as query strings),
``maxItems`` / ``minItems`` (arrays; ``items`` applies to each element), and
``x-max-terms``, the most whitespace-separated words a string may hold (a full-text
query of thousands of terms runs as long as a statement timeout allows). Anything else
is documentation, and a value PostgreSQL cannot cast is still PostgreSQL's to refuse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import ApiError

# The whitespace that separates terms, spelled out so that the pattern /openapi.json
# publishes for x-max-terms (ECMA-262) counts exactly as this module does.
SPACE = "[ \\t\\n\\r\\f\\v]"
TERMS = re.compile(f"[^{SPACE[1:-1]}]+")


def terms_pattern(most: int) -> str:
    """A JSON Schema pattern for "at most `most` terms, no NUL" (for /openapi.json)."""
    word = f"[^{SPACE[1:-1]}\\u0000]+"
    return f"^{SPACE}*({word}({SPACE}+{word}){{0,{max(most - 1, 0)}}})?{SPACE}*$"


def check(name: str, value: Any, schema: Mapping[str, Any]) -> None:
    """Raise a 400 naming the argument when value breaks a bound of schema."""
    if isinstance(value, list):
        _check_items(name, value, schema)
    elif isinstance(value, str):
        _check_text(name, value, schema)
        _check_number(name, _number(value), schema)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(name, value, schema)


def _check_items(name: str, values: list[Any], schema: Mapping[str, Any]) -> None:
    _limit(name, len(values), schema.get("minItems"), schema.get("maxItems"), "items")
    items = schema.get("items")
    if isinstance(items, Mapping):
        for value in values:
            check(name, value, items)


def _check_text(name: str, value: str, schema: Mapping[str, Any]) -> None:
    _limit(name, len(value), schema.get("minLength"), schema.get("maxLength"), "characters")
    _limit(name, len(TERMS.findall(value)), None, schema.get("x-max-terms"), "terms")


def _check_number(name: str, value: float | None, schema: Mapping[str, Any]) -> None:
    if value is not None:
        _limit(name, value, schema.get("minimum"), schema.get("maximum"), "")


def _number(text: str) -> float | None:
    """A query string's number, or None (not a number: PostgreSQL's cast will say)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _limit(name: str, size: float, least: Any, most: Any, unit: str) -> None:
    what = f"{name} has {size:g} {unit}" if unit else f"{name} is {size:g}"
    if _is_number(most) and size > most:
        bound = {"maximum": most}
        raise _out_of_bounds(name, f"{what}; at most {most:g} {unit}".rstrip(), bound)
    if _is_number(least) and size < least:
        bound = {"minimum": least}
        raise _out_of_bounds(name, f"{what}; at least {least:g} {unit}".rstrip(), bound)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _out_of_bounds(name: str, message: str, bound: dict[str, Any]) -> ApiError:
    return ApiError(400, message, "invalid_parameter", {"parameter": name, **bound})
