"""Settings from the environment: each declared variable (app/settings.py) read and
parsed, older names still read (with a deprecation for the log), and the combinations no
single variable shows wrong refused."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .settings import TRACING_EXTRA, Declared, Settings, SettingsError, declared

# AUDIO_BASE_URL was a setting of its own; now one of DB_SETTINGS.
LEGACY_DB_SETTINGS = {"AUDIO_BASE_URL": "emberlog.audio_base_url"}


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from environment variables; an empty variable counts as unset."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    deprecations: list[str] = []
    for one in declared():
        variable, raw = _given(env, one, deprecations)
        if raw:
            try:
                values[one.name] = one.parser(raw)
            except ValueError as exc:
                raise SettingsError(f"{variable} {exc}, got {raw!r}") from None
    settings = Settings(**values, deprecations=tuple(deprecations))
    return _checked(_legacy_db_settings(env, settings))


def _given(env: Mapping[str, str], one: Declared, deprecations: list[str]) -> tuple[str, str]:
    """(the variable that holds the value, its text): the current name, else an old one."""
    raw = (env.get(one.variable) or "").strip()
    if raw:
        return one.variable, raw
    for alias in one.aliases:
        old = (env.get(alias) or "").strip()
        if old:
            deprecations.append(f"{alias} is deprecated: set {one.variable} instead")
            return alias, old
    return one.variable, ""


def _legacy_db_settings(env: Mapping[str, str], settings: Settings) -> Settings:
    """Old variables that became DB_SETTINGS entries (DB_SETTINGS wins where both say)."""
    moved: dict[str, str] = {}
    notes: list[str] = []
    for old, name in LEGACY_DB_SETTINGS.items():
        raw = (env.get(old) or "").strip()
        if raw:
            moved[name] = raw
            notes.append(f'{old} is deprecated: set DB_SETTINGS={{"{name}": ...}} instead')
    if not moved:
        return settings
    merged = {**moved, **dict(settings.db_settings)}
    return replace(
        settings,
        db_settings=tuple(sorted(merged.items())),
        deprecations=(*settings.deprecations, *notes),
    )


def _checked(settings: Settings) -> Settings:
    """Refuse combinations no single variable shows wrong."""
    if settings.metrics_port and settings.workers > 1:
        raise SettingsError(
            "METRICS_PORT needs WORKERS=1 (one process per pod or container; each worker "
            "would need a port of its own)"
        )
    if settings.metrics_port and settings.metrics_port == settings.port:
        raise SettingsError("METRICS_PORT must differ from PORT")
    if settings.enable_tracing and importlib.util.find_spec("opentelemetry.sdk") is None:
        raise SettingsError(TRACING_EXTRA)
    return settings
