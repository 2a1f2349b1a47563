"""JSON Schema for the values a route takes: a PostgreSQL type's schema, a DBA's
@param/@body schema with PostgreSQL's limits added, and the JsonValue component.

PostgreSQL sets a few limits JSON Schema must spell out: no text (and no JSON string
or key) may hold U+0000, so every plain string says so with a pattern and any JSON is
a JsonValue; a timestamp's offset is at most 15:59 either way.
"""

from __future__ import annotations

from typing import Any

from ..database.route_table import Argument, Route
from .bounds import terms_pattern

NO_NUL = "^[^\\u0000]*$"
JSON_VALUE = {"$ref": "#/components/schemas/JsonValue"}
# PostgreSQL takes UTC offsets up to 15:59 either way; RFC 3339 allows up to 23:59.
PG_OFFSET = "([Zz]|[+-](0[0-9]|1[0-5]):[0-5][0-9])$"
INTEGERS = {
    "smallint": (-(2**15), 2**15 - 1, "int32"),
    "integer": (-(2**31), 2**31 - 1, "int32"),
    "bigint": (-(2**63), 2**63 - 1, "int64"),
}
NUMBERS = frozenset({"numeric", "real", "double precision"})
FORMATS = {
    "date": "date",
    "uuid": "uuid",
}
TIMESTAMP = {"type": "string", "format": "date-time", "pattern": PG_OFFSET}
TIMESTAMPS = frozenset({"timestamp with time zone", "timestamp without time zone"})


def type_schema(pg_type: str) -> dict[str, Any]:
    """JSON Schema for a value of a PostgreSQL type, as it arrives in a request."""
    if pg_type.endswith("[]"):
        return {"type": "array", "items": type_schema(pg_type[:-2])}
    if pg_type in INTEGERS:
        low, high, fmt = INTEGERS[pg_type]
        return {"type": "integer", "format": fmt, "minimum": low, "maximum": high}
    if pg_type in NUMBERS:
        return {"type": "number"}
    if pg_type == "boolean":
        return {"type": "boolean"}
    if pg_type in ("json", "jsonb"):
        return dict(JSON_VALUE)
    if pg_type in TIMESTAMPS:
        return dict(TIMESTAMP)
    if pg_type in FORMATS:
        return {"type": "string", "format": FORMATS[pg_type]}
    return {"type": "string", "pattern": NO_NUL}


SCHEMA_KEYWORDS = frozenset({"items", "additionalProperties", "not", "propertyNames", "contains"})
SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs"})


def _subschemas(keyword: str, value: Any) -> Any:
    """A keyword's value, with _no_nul applied where it holds schemas."""
    if keyword in SCHEMA_KEYWORDS and isinstance(value, dict):
        return no_nul(value)
    if keyword in SCHEMA_LISTS and isinstance(value, list):
        return [no_nul(v) for v in value]
    if keyword in SCHEMA_MAPS and isinstance(value, dict):
        return {name: no_nul(v) for name, v in value.items()}
    return value


def no_nul(schema: Any) -> Any:
    """A DBA's schema with PostgreSQL's limits added (recursively): no NUL in a plain
    string, date-time offsets PostgreSQL takes, and any further keys of an object (or
    an empty schema) a JsonValue."""
    if not isinstance(schema, dict):
        return schema
    if not schema:
        return dict(JSON_VALUE)
    out = {k: _subschemas(k, v) for k, v in schema.items()}
    kinds = out.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "string" in kinds and "pattern" not in out:
        if isinstance(out.get("x-max-terms"), int):
            out["pattern"] = terms_pattern(out["x-max-terms"])
        elif out.get("format") == "date-time":
            out["pattern"] = PG_OFFSET
        elif "format" not in out:
            out["pattern"] = NO_NUL
    if "object" in kinds:
        out.setdefault("propertyNames", {"pattern": NO_NUL})
        out.setdefault("additionalProperties", dict(JSON_VALUE))
    return out


def argument_schema(route: Route, arg: Argument) -> dict[str, Any]:
    return no_nul({**type_schema(arg.type), **route.schemas.get(arg.name, {})})


def json_value() -> dict[str, Any]:
    return {
        "description": "Any JSON value; no string or key may hold U+0000 (jsonb cannot)",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": JSON_VALUE},
            {
                "type": "object",
                "propertyNames": {"pattern": NO_NUL},
                "additionalProperties": JSON_VALUE,
            },
        ],
    }
