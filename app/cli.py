"""``emberlog-api``: serve, migrate, routes, keys, prune-events, psql."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import psycopg

from . import __version__, db, deploy, logs, routes
from .embedded import EmbeddedPostgres
from .settings import Settings, SettingsError, from_env

log = logging.getLogger("emberlog.cli")


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The database URL in use: DATABASE_URL, or the embedded server (started if needed,
    and stopped on the way out if this command started it)."""
    if not settings.embedded:
        assert settings.database_url
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.data_dir / "postgres")
    url = server.start()
    try:
        yield url
    finally:
        server.stop_if_started_here()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as url:
        applied, files = deploy.migrate(url, settings.reload_channel)
    print(f"migrations applied: {', '.join(applied) or 'none pending'}; sql files applied: {files}")
    return 0


def cmd_routes(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as url, psycopg.connect(url) as conn:
        table = routes.load_sync(conn, settings.api_schema)
    for route in table.routes:
        summary = route.description.splitlines()[0] if route.description else ""
        kind = "SSE" if route.is_stream else route.method
        target = f"{route.schema}.{route.function}"
        print(f"{kind:<7}{route.template:<36}{target}  {summary}")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    with database(settings) as url:
        db.check_settings(url, settings)
        applied = deploy.migrate(url, settings.reload_channel)[0] if migrating(settings) else None
        log_start(url, settings, applied)
        os.environ["DATABASE_URL"] = url  # the workers read their settings from the environment
        uvicorn.run(
            "app.asgi:app",
            host=settings.host,
            port=settings.port,
            workers=None if args.reload else settings.workers,
            reload=args.reload,
            access_log=False,  # our own JSON line per request replaces it
            server_header=False,
            proxy_headers=False,  # the app decides whom to believe (TRUSTED_PROXIES)
            log_config=None,
            log_level=settings.log_level.lower(),
        )
    return 0


def migrating(settings: Settings) -> bool:
    """Whether serve migrates first: MIGRATE_ON_START, except that the embedded
    database (make run) is always brought up to date."""
    return settings.migrate_on_start or settings.embedded


def log_start(url: str, settings: Settings, applied: list[str] | None) -> None:
    """One line an operator reads first: what runs, against what, in what state."""
    with psycopg.connect(url) as conn:
        table = routes.load_sync(conn, settings.api_schema)
        server = conn.info.server_version
    try:
        pending: list[str] | str = deploy.pending_migrations(url)
    except Exception as exc:  # e.g. the authenticator may not read yoyo's tables
        pending = f"unknown ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})"
    log.info(
        "starting",
        extra={
            "version": __version__,
            "database": db.describe(url),
            "postgres": f"{server // 10000}.{server % 10000}",
            "migrations_applied": "skipped (MIGRATE_ON_START=false)"
            if applied is None
            else applied,
            "migrations_pending": pending,
            "routes": len(table),
            "listen": f"{settings.host}:{settings.port}",
            "workers": settings.workers,
            "metrics": f":{settings.metrics_port}" if settings.metrics_port else "/metrics",
        },
    )
    if pending and isinstance(pending, list):
        log.warning("migrations pending: %s (run emberlog-api migrate)", ", ".join(pending))


def cmd_prune_events(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as url, psycopg.connect(url, autocommit=True) as conn:
        (deleted,) = conn.execute(
            "select internal.prune_events(%s::interval)", (args.older_than,)
        ).fetchone()  # type: ignore[misc]
    print(f"events deleted: {deleted}")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """keys create | revoke | list: API keys, issued and revoked in SQL."""
    with database(settings) as url, psycopg.connect(url, autocommit=True) as conn:
        if args.action == "create":
            if not args.name or not args.role:
                raise SettingsError("keys create needs --name and --role")
            (key,) = conn.execute(
                "select auth.create_api_key(%s, %s, %s::timestamptz)",
                (args.name, args.role, args.expires_at),
            ).fetchone()  # type: ignore[misc]
            print(key)
            print(f"(shown once: store it now; it runs requests as {args.role})", file=sys.stderr)
        elif args.action == "revoke":
            if not args.name:
                raise SettingsError("keys revoke needs --name")
            (revoked,) = conn.execute(
                "select coalesce(auth.revoke_api_key(%s), false)", (args.name,)
            ).fetchone()  # type: ignore[misc]
            print(f"revoked: {args.name}" if revoked else f"no active key named {args.name}")
            return 0 if revoked else 1
        else:
            rows = conn.execute(
                "select name, role, key_prefix, created_at, expires_at, revoked_at, last_used_at"
                " from auth.api_keys order by name"
            ).fetchall()
            for row in rows:
                print("\t".join("-" if v is None else str(v) for v in row))
    return 0


def cmd_psql(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as url:
        psql = EmbeddedPostgres.bin_path("psql")
        program = str(psql) if psql.exists() else "psql"
        return os.spawnvp(os.P_WAIT, program, [program, url, *args.psql_args])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emberlog-api", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate, then serve HTTP with uvicorn")
    serve.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply migrations and re-create api from sql/").set_defaults(
        func=cmd_migrate
    )
    sub.add_parser("routes", help="list the routes the database declares").set_defaults(
        func=cmd_routes
    )
    prune = sub.add_parser("prune-events", help="delete stream events older than the retention")
    prune.add_argument(
        "--older-than",
        metavar="INTERVAL",
        help="e.g. '3 days' (default: the emberlog.event_retention setting, else 7 days)",
    )
    prune.set_defaults(func=cmd_prune_events)
    keys = sub.add_parser("keys", help="create, revoke or list API keys")
    keys.add_argument("action", choices=("create", "revoke", "list"))
    keys.add_argument("--name", help="the key's name (e.g. calypso)")
    keys.add_argument("--role", help="role its requests run as (e.g. emberlog_ingest)")
    keys.add_argument("--expires-at", help="ISO timestamp after which the key is refused")
    keys.set_defaults(func=cmd_keys)
    psql = sub.add_parser("psql", help="open psql on the database in use")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER)
    psql.set_defaults(func=cmd_psql)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = from_env()
    except SettingsError as exc:
        print(f"emberlog-api: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        return args.func(settings, args)
    except KeyboardInterrupt:
        return 130
    except (deploy.DeployError, psycopg.Error, SettingsError) as exc:
        print(f"emberlog-api: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
