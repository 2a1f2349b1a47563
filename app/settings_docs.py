"""The settings as people read them, made from their one declaration (app/settings.py):
the epilog of ``emberlog-api --help``, ``emberlog-api settings`` (the values in force,
secrets hidden), and docs/configuration.md, which
``emberlog-api settings --markdown > docs/configuration.md`` writes and a test keeps in
step with the code."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .database.connections import describe
from .settings import Declared, Settings, declared

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
SECRET_VARIABLES = frozenset({"JWT_SECRET", "MQTT_PASSWORD", "NOTIFIER_SECRET"})
HEADER = """# Configuration

Environment variables, read once at start-up; an empty variable counts as unset.
Generated from the declarations in `app/settings.py` by
`emberlog-api settings --markdown > docs/configuration.md` (a test fails when this
file and the code disagree): change a setting there, not here.
"""


def shown(value: Any) -> str:
    """A default as it would be written in the environment."""
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def in_force(settings: Settings) -> Iterator[str]:
    """VARIABLE=value for every setting: a secret only as "(set)", a database URL
    without its password."""
    for one in declared():
        value = getattr(settings, one.name)
        if one.variable in SECRET_VARIABLES and value:
            text = "(set)"
        elif one.variable.endswith("DATABASE_URL") and value:
            text = describe(value)
        else:
            text = shown(value)
        yield f"{one.variable}={text}"


def _row(one: Declared) -> str:
    aliases = f" (formerly `{'`, `'.join(one.aliases)}`)" if one.aliases else ""
    cells = (
        f"`{one.variable}`{aliases}",
        "unset" if shown(one.default) == "unset" else f"`{shown(one.default)}`",
        one.parser.kind,
        one.help.replace("|", "\\|"),
    )
    return "| " + " | ".join(cells) + " |"


def markdown() -> str:
    """docs/configuration.md: one table per group, in declaration order."""
    parts = [HEADER]
    for group, settings in itertools.groupby(declared(), key=lambda one: one.group):
        parts.append(f"\n## {group}\n\n| variable | default | takes | meaning |\n|---|---|---|---|")
        parts.extend(_row(one) for one in settings)
    return "\n".join(parts) + "\n"


def help_text() -> str:
    """The epilog of ``emberlog-api --help``: every variable, its default and meaning."""
    lines = ["environment variables (docs/configuration.md has the whole table):"]
    for group, settings in itertools.groupby(declared(), key=lambda one: one.group):
        lines.append(f"\n  {group}:")
        lines.extend(f"    {one.variable} ({shown(one.default)}): {one.help}" for one in settings)
    return "\n".join(lines)
