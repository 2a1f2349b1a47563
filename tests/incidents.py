"""Building incident payloads the way the ingest service sends them."""

from __future__ import annotations

import itertools
from typing import Any

_counter = itertools.count(1)

# The incident JSON's keys, in order; also the first columns of the api.incidents view.
INCIDENT_FIELDS = [
    "id",
    "dispatched_at",
    "special_call",
    "units",
    "channel",
    "incident_type",
    "address",
    "source_audio",
    "original_text",
    "transcript",
    "parsed",
    "created_at",
]


def payload(**overrides: Any) -> dict[str, Any]:
    """All ten keys, as Calypso always sends them; original_text equals transcript."""
    n = next(_counter)
    text = overrides.pop("text", f"Engine 1, Medic 2, structure fire at {n} Main Street")
    body = {
        "dispatched_at": "2026-11-22T05:04:15",
        "special_call": False,
        "units": ["E1", "M2"],
        "channel": "FIRE-DISP",
        "incident_type": "Structure Fire",
        "address": f"{n} Main Street",
        "source_audio": f"https://audio.example/calls/{n}.m4a",
        "original_text": text,
        "transcript": text,
        "parsed": {"confidence": 0.9, "n": n},
    }
    body.update(overrides)
    return body
