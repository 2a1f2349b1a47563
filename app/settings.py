"""Configuration, read from environment variables by a function (nothing at import time)."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .clients import Network, parse_networks


class SettingsError(ValueError):
    """A configuration variable holds a value the API cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the app and the CLI need to know; tests build their own."""

    database_url: str | None = None
    # The owner's login, for migrate and MIGRATE_ON_START (default DATABASE_URL): the
    # app's own pools log in as DATABASE_URL, which must be the authenticator.
    migrate_database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    data_dir: Path = Path(".data")
    api_schema: str = "api"
    authenticator_role: str = "emberlog_authenticator"
    anon_role: str = "emberlog_anon"
    ingest_role: str = "emberlog_ingest"
    anonymous_reads: bool = True
    cancel_on_disconnect: bool = True
    trusted_ingest_networks: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    reload_channel: str = "emberlog_reload"
    naive_timezone: str = "UTC"
    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 1024 * 1024
    pool_min_size: int = 2
    pool_max_size: int = 10
    pool_timeout: float = 5.0
    health_timeout: float = 2.0
    log_level: str = "INFO"
    log_format: str = "json"  # json | console
    access_log: str = "errors"  # all | errors (status >= 400, or slow) | off
    access_log_slow_ms: float = 1000.0
    audio_base_url: str | None = None
    stream_mode: str = "auto"
    stream_poll_interval: float = 1.0
    stream_batch: int = 500
    sse_heartbeat: float = 15.0
    sse_retry_ms: int = 2000
    sse_client_buffer: int = 1000
    api_key_cache_seconds: float = 10.0
    api_key_touch_seconds: float = 30.0
    jwt_secret: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_jwks_file: Path | None = None
    jwt_audience: str | None = None
    jwt_role_claim: str = "role"
    jwt_leeway: float = 30.0
    jwt_cookie: str = "emberlog_token"
    migrate_on_start: bool = True
    metrics_port: int = 0  # 0: /metrics on the main port; else on its own port only
    listen_database_url: str | None = None  # the LISTEN connection's (default DATABASE_URL)
    read_database_url: str | None = None  # GET routes' (a replica); default DATABASE_URL
    prepared_statements: bool = True  # false behind a pooler in transaction mode
    enable_tracing: bool = False  # OpenTelemetry over OTLP (the tracing extra)
    rate_limit_per_address: float = 50.0
    rate_limit_burst: int = 100
    rate_limit_per_key: float = 100.0
    rate_limit_key_burst: int = 200
    max_header_bytes: int = 16384
    max_headers: int = 100
    # Work limits: one client, or one slow route, must not take the pool from the rest.
    concurrency_per_address: int = 8  # requests in flight per client address; 0 = off
    route_pool_share: float = 0.5  # of POOL_MAX_SIZE one route's calls may hold at once
    max_streams_per_address: int = 20  # open streams per client address; 0 = off
    # Events a resuming client may replay (beyond, a reset): several rings' worth, so a
    # client dropped for falling a ring (SSE_CLIENT_BUFFER) behind still resumes exactly.
    sse_replay_limit: int = 5000
    public_url: str | None = None  # absolute links (Location, _url); default relative

    @property
    def owner_url(self) -> str | None:
        """The login that migrates and administers: MIGRATE_DATABASE_URL, else DATABASE_URL."""
        return self.migrate_database_url or self.database_url

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is given and the embedded PostgreSQL is used."""
        return not self.database_url


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    """Requests a second; 0 turns the limit off (a negative or infinite rate is a typo)."""
    value = _float(env, name, default)
    if not 0 <= value < float("inf"):
        raise SettingsError(f"{name} must be 0 (off) or a positive number, got {value}")
    return value


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    """A fraction above 0, at most 1."""
    value = _float(env, name, default)
    if not 0 < value <= 1:
        raise SettingsError(f"{name} must be above 0 and at most 1, got {value}")
    return value


def _public_url(env: Mapping[str, str], name: str) -> str | None:
    """An absolute http(s) URL without a trailing slash, or None (links stay relative)."""
    raw = (env.get(name) or "").strip().rstrip("/")
    if not raw:
        return None
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", raw):
        raise SettingsError(f"{name} must be an absolute http(s) URL, got {raw!r}")
    return raw


STREAM_MODES = ("auto", "listen", "poll")
ACCESS_LOGS = ("all", "errors", "off")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "console")
TRACING_EXTRA = "ENABLE_TRACING=true needs the tracing extra: pip install 'emberlog-api[tracing]'"
MIN_SECRET_LENGTH = 32  # HS256 with a short secret can be brute-forced offline


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name) or None
    if value is not None and len(value) < MIN_SECRET_LENGTH:
        raise SettingsError(f"{name} must be at least {MIN_SECRET_LENGTH} characters")
    return value


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name) or None
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(f"{name}: no such file {raw!r}")
    return path


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    try:
        return parse_networks(env.get(name) or "")
    except ValueError as exc:
        raise SettingsError(f"{name} must be a comma-separated list of CIDRs ({exc})") from exc


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in raw.split(",") if o.strip())
    return origins or ("*",)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from environment variables (see README for each one)."""
    env = os.environ if env is None else env
    return _checked(
        Settings(
            database_url=env.get("DATABASE_URL") or None,
            migrate_database_url=env.get("MIGRATE_DATABASE_URL") or None,
            host=env.get("HOST") or "127.0.0.1",
            port=_int(env, "PORT", 8080),
            workers=_int(env, "WORKERS", 1, minimum=1),
            data_dir=Path(env.get("DATA_DIR") or ".data"),
            api_schema=env.get("API_SCHEMA") or "api",
            authenticator_role=env.get("AUTHENTICATOR_ROLE") or "emberlog_authenticator",
            anon_role=env.get("ANON_ROLE") or "emberlog_anon",
            ingest_role=env.get("INGEST_ROLE") or "emberlog_ingest",
            anonymous_reads=_bool(env, "ANONYMOUS_READS", True),
            cancel_on_disconnect=_bool(env, "CANCEL_ON_DISCONNECT", True),
            trusted_ingest_networks=_networks(env, "TRUSTED_INGEST_NETWORKS"),
            trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            reload_channel=env.get("RELOAD_CHANNEL") or "emberlog_reload",
            naive_timezone=env.get("NAIVE_TIMEZONE") or "UTC",
            cors_origins=_origins(env.get("CORS_ORIGINS", "*")),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024, minimum=1),
            pool_min_size=_int(env, "POOL_MIN_SIZE", 2, minimum=0),
            pool_max_size=_int(env, "POOL_MAX_SIZE", 10, minimum=1),
            pool_timeout=_float(env, "POOL_TIMEOUT", 5.0),
            health_timeout=_float(env, "HEALTH_TIMEOUT", 2.0),
            log_level=_choice(env, "LOG_LEVEL", "info", LOG_LEVELS).upper(),
            log_format=_choice(env, "LOG_FORMAT", "json", LOG_FORMATS),
            access_log=_choice(env, "ACCESS_LOG", "errors", ACCESS_LOGS),
            access_log_slow_ms=_float(env, "ACCESS_LOG_SLOW_MS", 1000.0),
            audio_base_url=env.get("AUDIO_BASE_URL") or None,
            stream_mode=_choice(env, "STREAM_MODE", "auto", STREAM_MODES),
            stream_poll_interval=_float(env, "STREAM_POLL_INTERVAL", 1.0),
            stream_batch=_int(env, "STREAM_BATCH", 500, minimum=1, maximum=1000),
            sse_heartbeat=_float(env, "SSE_HEARTBEAT", 15.0),
            sse_retry_ms=_int(env, "SSE_RETRY_MS", 2000),
            sse_client_buffer=_int(env, "SSE_CLIENT_BUFFER", 1000, minimum=1),
            api_key_cache_seconds=_float(env, "API_KEY_CACHE_SECONDS", 10.0),
            api_key_touch_seconds=_float(env, "API_KEY_TOUCH_SECONDS", 30.0),
            jwt_secret=_secret(env, "JWT_SECRET"),
            jwt_public_key_file=_path(env, "JWT_PUBLIC_KEY_FILE"),
            jwt_jwks_file=_path(env, "JWT_JWKS_FILE"),
            jwt_audience=env.get("JWT_AUDIENCE") or None,
            jwt_role_claim=env.get("JWT_ROLE_CLAIM") or "role",
            jwt_leeway=_float(env, "JWT_LEEWAY", 30.0),
            jwt_cookie=env.get("JWT_COOKIE") or "emberlog_token",
            rate_limit_per_address=_rate(env, "RATE_LIMIT_PER_ADDRESS", 50.0),
            rate_limit_burst=_int(env, "RATE_LIMIT_BURST", 100, minimum=1),
            rate_limit_per_key=_rate(env, "RATE_LIMIT_PER_KEY", 100.0),
            rate_limit_key_burst=_int(env, "RATE_LIMIT_KEY_BURST", 200, minimum=1),
            max_header_bytes=_int(env, "MAX_HEADER_BYTES", 16384, minimum=1024),
            max_headers=_int(env, "MAX_HEADERS", 100, minimum=10),
            concurrency_per_address=_int(env, "CONCURRENCY_PER_ADDRESS", 8),
            route_pool_share=_share(env, "ROUTE_POOL_SHARE", 0.5),
            max_streams_per_address=_int(env, "MAX_STREAMS_PER_ADDRESS", 20),
            sse_replay_limit=_int(env, "SSE_REPLAY_LIMIT", 5000, minimum=1),
            public_url=_public_url(env, "PUBLIC_URL"),
            migrate_on_start=_bool(env, "MIGRATE_ON_START", True),
            metrics_port=_int(env, "METRICS_PORT", 0, minimum=0, maximum=65535),
            listen_database_url=env.get("LISTEN_DATABASE_URL") or None,
            read_database_url=env.get("READ_DATABASE_URL") or None,
            prepared_statements=_bool(env, "PREPARED_STATEMENTS", True),
            enable_tracing=_bool(env, "ENABLE_TRACING", False),
        )
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
