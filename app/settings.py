"""Configuration: every setting declared once, below, as a field of Settings with its
environment variable, parser, default, group and help. That one declaration drives
``from_env`` (app/environment.py: reading the variables; nothing is read at import
time), ``emberlog-api --help`` and the generated
docs/configuration.md (``emberlog-api settings --markdown``; a test fails when the file
drifts). Longer than this project's ~200-line rule on purpose: it is the one table of
settings, and splitting it would bring back the copies it replaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import parse
from .http.clients import Network
from .parse import Parser


class SettingsError(ValueError):
    """A configuration variable holds a value the API cannot use."""


def setting(
    default: Any,
    variable: str,
    parser: Parser,
    group: str,
    help: str,
    *,
    aliases: tuple[str, ...] = (),
) -> Any:
    """One setting: a dataclass field carrying its variable, parser, group and help.
    aliases are older variable names, still read (with a deprecation line in the log)."""
    meta = {"variable": variable, "parser": parser, "group": group, "help": help}
    return field(default=default, metadata={**meta, "aliases": aliases})


DATABASE = "Database"
HTTP = "HTTP"
SECURITY = "Credentials and trust"
LIMITS = "Limits"
STREAMS = "Streams"
OPERATIONS = "Logs, metrics, tracing"
BRIDGE = "MQTT bridge (emberlog-api mqtt-bridge)"
WORKER = "Alert worker (emberlog-api worker)"


@dataclass(frozen=True)
class Settings:
    """Everything the app and the CLI need to know; tests build their own."""

    # --- database -------------------------------------------------------------------
    database_url: str | None = setting(
        None, "DATABASE_URL", parse.text, DATABASE,
        "The app's login (postgresql:// URL): the authenticator, never a superuser (serve"
        " refuses one). Unset: the embedded PostgreSQL in DATA_DIR.",
    )  # fmt: skip
    migrate_database_url: str | None = setting(
        None, "MIGRATE_DATABASE_URL", parse.text, DATABASE,
        "The owner's login, for migrate, MIGRATE_ON_START, keys, prune-events and psql."
        " Unset: DATABASE_URL (the embedded server's superuser when that is unset).",
    )  # fmt: skip
    listen_database_url: str | None = setting(
        None, "LISTEN_DATABASE_URL", parse.text, DATABASE,
        "The LISTEN connection's URL (default DATABASE_URL): straight to PostgreSQL when"
        " DATABASE_URL goes through PgBouncer.",
    )  # fmt: skip
    read_database_url: str | None = setting(
        None, "READ_DATABASE_URL", parse.text, DATABASE,
        "GET routes' pool (default DATABASE_URL): a read replica. Writes, key lookups and"
        " streams stay on DATABASE_URL.",
    )  # fmt: skip
    data_dir: Path = setting(
        Path(".data"), "DATA_DIR", parse.path, DATABASE,
        "Where the embedded PostgreSQL keeps its data.",
    )  # fmt: skip
    pool_min_size: int = setting(
        2, "POOL_MIN_SIZE", parse.integer(0), DATABASE,
        "Connections the request pools keep open, split between the WORKERS (rounded up).",
    )  # fmt: skip
    pool_max_size: int = setting(
        10, "POOL_MAX_SIZE", parse.integer(1), DATABASE,
        "Most connections the request pools open: the server's, split evenly between its"
        " WORKERS (each at least 1).",
    )  # fmt: skip
    pool_timeout: float = setting(
        5.0, "POOL_TIMEOUT", parse.number(), DATABASE,
        "Seconds a request waits for a pooled connection before a 504.",
    )  # fmt: skip
    prepared_statements: bool = setting(
        True, "PREPARED_STATEMENTS", parse.boolean, DATABASE,
        "false behind a pooler in transaction mode (PgBouncer): statements go inline,"
        " nothing is prepared.",
    )  # fmt: skip
    db_settings: tuple[tuple[str, str], ...] = setting(
        (), "DB_SETTINGS", parse.db_settings, DATABASE,
        "Deployment values for SQL to read with current_setting(), set on each connection:"
        ' a JSON object of dotted names, e.g. {"emberlog.audio_base_url":'
        ' "https://audio.example/rec"}. Behind a transaction pooler, set them on the role'
        " or database instead (ALTER ROLE emberlog_authenticator SET ...).",
    )  # fmt: skip
    naive_timezone: str = setting(
        "UTC", "NAIVE_TIMEZONE", parse.text, DATABASE,
        "Zone a timestamp without an offset is read in; checked against PostgreSQL at start.",
    )  # fmt: skip
    api_schema: str = setting(
        "api", "API_SCHEMA", parse.text, DATABASE,
        "Schema whose functions declare routes.",
    )  # fmt: skip
    reload_channel: str = setting(
        "emberlog_reload", "RELOAD_CHANNEL", parse.text, DATABASE,
        "NOTIFY channel that makes running servers reload their routes.",
    )  # fmt: skip
    migrate_on_start: bool = setting(
        True, "MIGRATE_ON_START", parse.boolean, DATABASE,
        "serve migrates first; false where a separate step migrates (the Kubernetes Job)."
        " The embedded database is always migrated.",
    )  # fmt: skip

    # --- HTTP -----------------------------------------------------------------------
    host: str = setting("127.0.0.1", "HOST", parse.text, HTTP, "Where uvicorn listens.")
    port: int = setting(8080, "PORT", parse.integer(0, 65535), HTTP, "Port uvicorn listens on.")
    workers: int = setting(
        1, "WORKERS", parse.integer(1), HTTP,
        "Worker processes (uvicorn servers); more than 1 share the connections evenly.",
    )  # fmt: skip
    public_url: str | None = setting(
        None, "PUBLIC_URL", parse.public_url, HTTP,
        "Absolute base of links (Location, links.self._url). Unset: links are relative paths"
        " (the Host header is never used).",
    )  # fmt: skip
    cors_origins: tuple[str, ...] = setting(
        ("*",), "CORS_ORIGINS", parse.origins, HTTP,
        "Origins allowed to call the API from a browser. * lets any site read, never write"
        " without credentials.",
    )  # fmt: skip
    cancel_on_disconnect: bool = setting(
        True, "CANCEL_ON_DISCONNECT", parse.boolean, HTTP,
        "Cancel a request's running query (and roll back) when its client disconnects.",
    )  # fmt: skip

    # --- credentials and trust --------------------------------------------------------
    authenticator_role: str = setting(
        "emberlog_authenticator", "AUTHENTICATOR_ROLE", parse.text, SECURITY,
        "The role the app logs in as; every request switches from it to the caller's role.",
    )  # fmt: skip
    anon_role: str = setting(
        "emberlog_anon", "ANON_ROLE", parse.text, SECURITY,
        "The role of requests without credentials.",
    )  # fmt: skip
    anonymous_reads: bool = setting(
        True, "ANONYMOUS_READS", parse.boolean, SECURITY,
        "false: requests without credentials get 401 on every API route (and on /metrics"
        " and /openapi.json).",
    )  # fmt: skip
    trusted_networks: tuple[Network, ...] = setting(
        (), "TRUSTED_NETWORKS", parse.networks, SECURITY,
        "CIDRs whose writes without credentials run as TRUSTED_NETWORK_ROLE (the"
        " internal-only model). Unset: off.",
        aliases=("TRUSTED_INGEST_NETWORKS",),
    )  # fmt: skip
    trusted_network_role: str = setting(
        "emberlog_ingest", "TRUSTED_NETWORK_ROLE", parse.text, SECURITY,
        "The role of those writes.",
        aliases=("INGEST_ROLE",),
    )  # fmt: skip
    trusted_proxies: tuple[Network, ...] = setting(
        (), "TRUSTED_PROXIES", parse.networks, SECURITY,
        "CIDRs of proxies whose X-Forwarded-For is believed (read from the right).",
    )  # fmt: skip
    api_key_cache_seconds: float = setting(
        10.0, "API_KEY_CACHE_SECONDS", parse.number(), SECURITY,
        "How long a process trusts a key lookup (a revoked key is refused within this).",
    )  # fmt: skip
    api_key_touch_seconds: float = setting(
        30.0, "API_KEY_TOUCH_SECONDS", parse.number(0.01), SECURITY,
        "How often a process records its keys' last use (auth.api_keys.last_used_at).",
    )  # fmt: skip
    jwt_secret: str | None = setting(
        None, "JWT_SECRET", parse.secret(32), SECURITY,
        "HS256 secret for Authorization: Bearer tokens.",
    )  # fmt: skip
    jwt_public_key_file: Path | None = setting(
        None, "JWT_PUBLIC_KEY_FILE", parse.existing_file, SECURITY,
        "PEM public key: RS256 (RSA) or ES256 (EC) tokens without a kid.",
    )  # fmt: skip
    jwt_jwks_file: Path | None = setting(
        None, "JWT_JWKS_FILE", parse.existing_file, SECURITY,
        "JSON Web Key Set: a token naming a kid is verified with that key only.",
    )  # fmt: skip
    jwt_audience: str | None = setting(
        None, "JWT_AUDIENCE", parse.text, SECURITY,
        "When set, a token's aud must contain it.",
    )  # fmt: skip
    jwt_role_claim: str = setting(
        "role", "JWT_ROLE_CLAIM", parse.text, SECURITY,
        "Claim (dotted path, e.g. app.role) naming the role.",
    )  # fmt: skip
    jwt_default_role: str | None = setting(
        None, "JWT_DEFAULT_ROLE", parse.text, SECURITY,
        "The role of a verified token without the role claim (e.g. emberlog_user, for an"
        " identity provider's tokens, which name none). Unset: ANON_ROLE.",
    )  # fmt: skip
    jwt_leeway: float = setting(
        30.0, "JWT_LEEWAY", parse.number(), SECURITY,
        "Seconds of clock skew allowed on exp, nbf, iat.",
    )  # fmt: skip
    jwt_cookie: str = setting(
        "emberlog_token", "JWT_COOKIE", parse.text, SECURITY,
        "Cookie whose token authenticates GET/HEAD requests (for EventSource).",
    )  # fmt: skip

    # --- limits -------------------------------------------------------------------------
    rate_limit_per_address: float = setting(
        50.0, "RATE_LIMIT_PER_ADDRESS", parse.rate, LIMITS,
        "Requests a second per client address, per worker (token bucket refill).",
    )  # fmt: skip
    rate_limit_burst: int = setting(
        100, "RATE_LIMIT_BURST", parse.integer(1), LIMITS,
        "Bucket size of the address limit: requests an address may send at once.",
    )  # fmt: skip
    rate_limit_per_key: float = setting(
        100.0, "RATE_LIMIT_PER_KEY", parse.rate, LIMITS,
        "Requests a second per credential (API key, or token sub), per worker.",
    )  # fmt: skip
    rate_limit_key_burst: int = setting(
        200, "RATE_LIMIT_KEY_BURST", parse.integer(1), LIMITS,
        "Bucket size of the credential limit.",
    )  # fmt: skip
    concurrency_per_address: int = setting(
        8, "CONCURRENCY_PER_ADDRESS", parse.integer(0), LIMITS,
        "Requests in flight per client address without credentials, per worker; one more"
        " is a 429. 0 = off.",
    )  # fmt: skip
    route_pool_share: float = setting(
        0.5, "ROUTE_POOL_SHARE", parse.share, LIMITS,
        "Share of a worker's pool one route's calls may hold at once; the next waits up to"
        " POOL_TIMEOUT, then a 503.",
    )  # fmt: skip
    max_streams_per_address: int = setting(
        20, "MAX_STREAMS_PER_ADDRESS", parse.integer(0), LIMITS,
        "Open streams per client address, per worker; one more is a 429. 0 = off.",
    )  # fmt: skip
    max_body_bytes: int = setting(
        1024 * 1024, "MAX_BODY_BYTES", parse.integer(1), LIMITS,
        "Larger request bodies get 413.",
    )  # fmt: skip
    max_header_bytes: int = setting(
        16384, "MAX_HEADER_BYTES", parse.integer(1024), LIMITS,
        "Request headers larger than this in total (names and values) get 431.",
    )  # fmt: skip
    max_headers: int = setting(
        100, "MAX_HEADERS", parse.integer(10), LIMITS,
        "Requests with more header lines get 431.",
    )  # fmt: skip
    health_timeout: float = setting(
        2.0, "HEALTH_TIMEOUT", parse.number(), LIMITS,
        "Seconds the database check of /readyz and /health may take.",
    )  # fmt: skip

    # --- streams ------------------------------------------------------------------------
    stream_mode: str = setting(
        "auto", "STREAM_MODE", parse.choice("auto", "listen", "poll"), STREAMS,
        "auto: LISTEN after probing that notifications arrive, else poll; listen; poll"
        " (behind a transaction-mode pooler).",
    )  # fmt: skip
    stream_poll_interval: float = setting(
        1.0, "STREAM_POLL_INTERVAL", parse.number(0.01), STREAMS,
        "Seconds between reads of the event log when polling.",
    )  # fmt: skip
    stream_batch: int = setting(
        500, "STREAM_BATCH", parse.integer(1, 1000), STREAMS,
        "Events read from the log per query.",
    )  # fmt: skip
    sse_heartbeat: float = setting(
        15.0, "SSE_HEARTBEAT", parse.number(0.01), STREAMS,
        "Seconds a stream may stay silent before a ': ping' comment.",
    )  # fmt: skip
    sse_retry_ms: int = setting(
        2000, "SSE_RETRY_MS", parse.integer(0), STREAMS,
        "The retry: hint sent on connect (EventSource's reconnect delay).",
    )  # fmt: skip
    sse_client_buffer: int = setting(
        1000, "SSE_CLIENT_BUFFER", parse.integer(1), STREAMS,
        "Events a stream client may fall behind before it is closed (it resumes).",
    )  # fmt: skip
    sse_replay_limit: int = setting(
        5000, "SSE_REPLAY_LIMIT", parse.integer(1), STREAMS,
        "Events a resuming client may replay from the log; further behind, it gets a reset."
        " Several SSE_CLIENT_BUFFERs, so a client dropped as slow still resumes exactly.",
    )  # fmt: skip

    # --- logs, metrics, tracing ---------------------------------------------------------
    log_level: str = setting(
        "INFO", "LOG_LEVEL", parse.choice("debug", "info", "warning", "error", "critical"),
        OPERATIONS, "For our loggers and the libraries' (uvicorn, psycopg, psycopg_pool).",
    )  # fmt: skip
    log_format: str = setting(
        "json", "LOG_FORMAT", parse.choice("json", "console"), OPERATIONS,
        "json: one JSON object per line; console: one readable line.",
    )  # fmt: skip
    access_log: str = setting(
        "errors", "ACCESS_LOG", parse.choice("all", "errors", "off"), OPERATIONS,
        "One line per request: all, errors (status >= 400 or slow), off.",
    )  # fmt: skip
    access_log_slow_ms: float = setting(
        1000.0, "ACCESS_LOG_SLOW_MS", parse.number(), OPERATIONS,
        "With errors: also log requests slower than this.",
    )  # fmt: skip
    metrics_port: int = setting(
        0, "METRICS_PORT", parse.integer(0, 65535), OPERATIONS,
        "0: GET /metrics on the main port; a port: metrics only there (needs WORKERS=1).",
    )  # fmt: skip
    enable_tracing: bool = setting(
        False, "ENABLE_TRACING", parse.boolean, OPERATIONS,
        "OpenTelemetry spans over OTLP/HTTP, set up by the standard OTEL_* variables (the"
        " tracing extra).",
    )  # fmt: skip

    # --- the MQTT bridge (Trunk Recorder's status plugin -> api.ingest_trunk_recorder) -
    mqtt_host: str = setting(
        "localhost", "MQTT_HOST", parse.text, BRIDGE,
        "The MQTT broker Trunk Recorder's status plugin publishes to.",
    )  # fmt: skip
    mqtt_port: int = setting(
        1883, "MQTT_PORT", parse.integer(1, 65535), BRIDGE,
        "The broker's port (8883 is usual with MQTT_TLS).",
    )  # fmt: skip
    mqtt_username: str | None = setting(
        None, "MQTT_USERNAME", parse.text, BRIDGE, "The broker login, if it needs one.",
    )  # fmt: skip
    mqtt_password: str | None = setting(
        None, "MQTT_PASSWORD", parse.text, BRIDGE, "The broker login's password.",
    )  # fmt: skip
    mqtt_tls: bool = setting(
        False, "MQTT_TLS", parse.boolean, BRIDGE,
        "TLS to the broker, its certificate verified (against MQTT_TLS_CA_FILE, else the"
        " system's CAs).",
    )  # fmt: skip
    mqtt_tls_ca_file: Path | None = setting(
        None, "MQTT_TLS_CA_FILE", parse.existing_file, BRIDGE,
        "CA certificate(s) (PEM) the broker's certificate is verified against.",
    )  # fmt: skip
    mqtt_topic_prefix: str = setting(
        "emberlog/trunkrecorder", "MQTT_TOPIC_PREFIX", parse.text, BRIDGE,
        "The plugin's topic: the bridge reads <prefix>/rates, /recorders, /calls_active.",
    )  # fmt: skip
    mqtt_client_id: str = setting(
        "emberlog-api-bridge", "MQTT_CLIENT_ID", parse.text, BRIDGE,
        "The bridge's MQTT client id: the broker keeps its session (QoS 1 messages published"
        " while it restarts) under this name. One bridge per id.",
    )  # fmt: skip
    bridge_port: int = setting(
        9108, "BRIDGE_PORT", parse.integer(0, 65535), BRIDGE,
        "The bridge's /healthz, /readyz and /metrics (0: none).",
    )  # fmt: skip
    bridge_batch_size: int = setting(
        500, "BRIDGE_BATCH_SIZE", parse.integer(1, 1000), BRIDGE,
        "At most this many messages applied per transaction (those already received).",
    )  # fmt: skip
    bridge_connections: int = setting(
        2, "BRIDGE_CONNECTIONS", parse.integer(1, 16), BRIDGE,
        "Database connections applying a batch side by side, split by Trunk Recorder"
        " instance (one instance's messages always on one connection, in order).",
    )  # fmt: skip
    bridge_max_message_bytes: int = setting(
        1048576, "BRIDGE_MAX_MESSAGE_BYTES", parse.integer(1024), BRIDGE,
        "A larger message is dropped (logged, counted invalid) unread.",
    )  # fmt: skip
    bridge_role: str = setting(
        "emberlog_ingest", "BRIDGE_ROLE", parse.text, BRIDGE,
        "The role the bridge's transactions run as (it logs in as DATABASE_URL).",
    )  # fmt: skip
    bridge_drain_seconds: float = setting(
        10.0, "BRIDGE_DRAIN_SECONDS", parse.number(), BRIDGE,
        "On SIGTERM: how long to go on applying what was received before disconnecting"
        " (what is left unacknowledged the broker delivers again).",
    )  # fmt: skip

    # --- the alert worker (api.claim_alert_deliveries -> webhooks -> finish) -------------
    worker_role: str = setting(
        "emberlog_worker", "WORKER_ROLE", parse.text, WORKER,
        "The role the worker's transactions run as (it logs in as DATABASE_URL).",
    )  # fmt: skip
    worker_id: str | None = setting(
        None, "WORKER_ID", parse.text, WORKER,
        "The worker's name in claims (data.alert_deliveries.claimed_by). Unset:"
        " <hostname>-<pid>.",
    )  # fmt: skip
    worker_port: int = setting(
        9109, "WORKER_PORT", parse.integer(0, 65535), WORKER,
        "The worker's /healthz, /readyz and /metrics (0: none).",
    )  # fmt: skip
    worker_concurrency: int = setting(
        16, "WORKER_CONCURRENCY", parse.integer(1, 1000), WORKER,
        "Webhooks in flight at once, each on its own (a slow receiver holds one slot).",
    )  # fmt: skip
    worker_batch_size: int = setting(
        50, "WORKER_BATCH_SIZE", parse.integer(1, 1000), WORKER,
        "At most this many deliveries claimed per query (never more than free slots).",
    )  # fmt: skip
    worker_poll_seconds: float = setting(
        5.0, "WORKER_POLL_SECONDS", parse.number(0.05), WORKER,
        "Seconds between claims when no NOTIFY wakes the worker (retries coming due, a"
        " lost LISTEN connection); also how often the queue gauges are refreshed.",
    )  # fmt: skip
    worker_drain_seconds: float = setting(
        15.0, "WORKER_DRAIN_SECONDS", parse.number(), WORKER,
        "On SIGTERM: how long in-flight webhooks may go on (their results recorded)"
        " before the worker exits; what is left is claimed again after its lease.",
    )  # fmt: skip
    webhook_timeout_seconds: float = setting(
        10.0, "WEBHOOK_TIMEOUT_SECONDS", parse.number(0.1), WORKER,
        "The whole webhook request (connect, send, answer). A claim's lease is this plus"
        " 10 s, so an attempt always ends before another worker may take it over.",
    )  # fmt: skip
    webhook_user_in_flight: int = setting(
        8, "WEBHOOK_USER_IN_FLIGHT", parse.integer(1, 1000), WORKER,
        "At most this many of one user's webhooks in flight at once, over all workers: one"
        " user's many or slow receivers cannot hold everyone else's alerts back.",
    )  # fmt: skip
    webhook_max_attempts: int = setting(
        8, "WEBHOOK_MAX_ATTEMPTS", parse.integer(1, 100), WORKER,
        "Attempts before a delivery is dead.",
    )  # fmt: skip
    webhook_backoff_seconds: float = setting(
        5.0, "WEBHOOK_BACKOFF_SECONDS", parse.number(), WORKER,
        "Delay after the first failed attempt, doubled after each further one (jittered).",
    )  # fmt: skip
    webhook_max_backoff_seconds: float = setting(
        3600.0, "WEBHOOK_MAX_BACKOFF_SECONDS", parse.number(), WORKER,
        "The longest delay between attempts.",
    )  # fmt: skip
    webhook_allowed_networks: tuple[Network, ...] = setting(
        (), "WEBHOOK_ALLOWED_NETWORKS", parse.networks, WORKER,
        "CIDRs webhooks may reach although not public (private, loopback, link-local...):"
        " every other such address is refused (the delivery is dead), checked when"
        " connecting, after DNS.",
    )  # fmt: skip
    notifier_base_url: str | None = setting(
        None, "NOTIFIER_BASE_URL", parse.public_url, WORKER,
        "Upstream's notifier: every incident is also POSTed to"
        " <base>/api/v1/events/new_incident (the worker records it in the database at"
        " start). Unset: left as the database has it (a DBA removes it with select"
        " api.set_alert_notifier(null)), so one worker's missing setting cannot turn it off.",
    )  # fmt: skip
    notifier_secret: str | None = setting(
        None, "NOTIFIER_SECRET", parse.text, WORKER,
        "Signs the notifier's webhooks (Standard Webhooks, whsec_<base64>). Unset: unsigned.",
    )  # fmt: skip

    # Not a variable: what from_env read under an old name, for the log.
    deprecations: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.log_level != self.log_level.upper():  # parsed lowercase, used as a level
            object.__setattr__(self, "log_level", self.log_level.upper())

    @property
    def owner_url(self) -> str | None:
        """The login that migrates and administers: MIGRATE_DATABASE_URL, else DATABASE_URL."""
        return self.migrate_database_url or self.database_url

    @property
    def worker_pool_max_size(self) -> int:
        """One worker's part of POOL_MAX_SIZE. Split, not multiplied by WORKERS: the
        database meets the same number of connections however many workers share them,
        and a few per core of it run faster than many (issue 18: with two workers of
        ten each on two cores, PostgreSQL's backends starved one worker of CPU)."""
        return max(1, self.pool_max_size // self.workers)

    @property
    def worker_pool_min_size(self) -> int:
        """One worker's part of POOL_MIN_SIZE (rounded up), never above its most."""
        return min(-(-self.pool_min_size // self.workers), self.worker_pool_max_size)

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is given and the embedded PostgreSQL is used."""
        return not self.database_url


@dataclass(frozen=True)
class Declared:
    """One setting as declared: what --help and the docs show."""

    name: str
    variable: str
    parser: Parser
    group: str
    help: str
    default: Any
    aliases: tuple[str, ...]


def declared() -> Iterator[Declared]:
    """Every setting, in declaration order."""
    for f in fields(Settings):
        meta = f.metadata
        if "variable" in meta:
            yield Declared(
                f.name,
                meta["variable"],
                meta["parser"],
                meta["group"],
                meta["help"],
                f.default,
                meta["aliases"],
            )


TRACING_EXTRA = "ENABLE_TRACING=true needs the tracing extra: pip install 'emberlog-api[tracing]'"
