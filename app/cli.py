"""``emberlog-api``: serve, migrate, routes, keys, prune-events, settings, mqtt-bridge, worker,
verify-webhook, psql.

Every command an operator runs, a few lines each, sharing ``database()`` (which login
each needs: app/database/logins.py); serve's start-up checks and line are app/startup.py,
how it runs the server app/processes/serving.py.
One job, the command table: each command's body and its arguments side by side, which is
why it runs a little over ~200 lines. What a command does beyond wiring lives with its
subject (verify-webhook in app/worker/verify.py, the background commands' loops in
app/bridge/ and app/worker/).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace

import psycopg

from . import settings_docs
from .database import connections as db
from .database import deploy, routes
from .database.embedded import EmbeddedPostgres
from .database.logins import database
from .environment import from_env
from .observability import logs
from .processes import serving
from .settings import Settings, SettingsError
from .startup import check_logins, log_start, migrating
from .worker.verify import add_arguments as verify_arguments

log = logging.getLogger("emberlog.cli")


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as logins:
        applied, files = deploy.migrate(logins.owner, settings.reload_channel)
    print(f"migrations applied: {', '.join(applied) or 'none pending'}; sql files applied: {files}")
    return 0


def cmd_routes(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as logins, psycopg.connect(logins.owner) as conn:
        table = routes.load_sync(conn, settings.api_schema)
    for route in table.routes:
        summary = route.description.splitlines()[0] if route.description else ""
        kind = "SSE" if route.is_stream else route.method
        target = f"{route.schema}.{route.function}"
        print(f"{kind:<7}{route.template:<36}{target}  {summary}")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as logins:
        db.check_settings(logins.owner, settings)
        applied = None
        if migrating(settings):
            applied = deploy.migrate(logins.owner, settings.reload_channel)[0]
        login = check_logins(settings, logins.app)  # after migrating: it creates the roles
        log_start(logins, settings, applied, login)
        # The workers read their settings from the environment.
        os.environ["DATABASE_URL"] = logins.app
        os.environ["MIGRATE_DATABASE_URL"] = logins.owner
        status = serving.serve(settings, args.reload)  # the database stays up meanwhile
    return status


def cmd_prune_events(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as logins, psycopg.connect(logins.owner, autocommit=True) as conn:
        (deleted,) = conn.execute(
            "select internal.prune_events(%s::interval)", (args.older_than,)
        ).fetchone()  # type: ignore[misc]
    print(f"events deleted: {deleted}")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """keys create | revoke | list: API keys, issued and revoked in SQL."""
    with database(settings) as logins, psycopg.connect(logins.owner, autocommit=True) as conn:
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


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    """Every setting's variable and the value in force (secrets hidden)."""
    if args.markdown:
        print(settings_docs.markdown(), end="")
        return 0
    for line in settings_docs.in_force(settings):
        print(line)
    return 0


def background(settings: Settings, run: Callable[[Settings], int]) -> int:
    """A background command (mqtt-bridge, worker) logs in as the app does (DATABASE_URL,
    else the embedded server's authenticator, as `make run` serves it), never as a
    superuser (as serve)."""
    with database(settings) as logins:
        db.check_login(logins.app, settings)
        return run(replace(settings, database_url=logins.app))


def cmd_mqtt_bridge(settings: Settings, args: argparse.Namespace) -> int:
    from .bridge import runner

    return background(settings, runner.run)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """The alert worker runs its transactions as WORKER_ROLE."""
    from .worker import runner, verify

    verify.check_notifier_secret(settings)
    return background(settings, runner.run)


def cmd_verify_webhook(settings: Settings, args: argparse.Namespace) -> int:
    from .worker import verify

    return verify.command(args)


def cmd_psql(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as logins:
        psql = EmbeddedPostgres.bin_path("psql")
        program = str(psql) if psql.exists() else "psql"
        return os.spawnvp(os.P_WAIT, program, [program, logins.owner, *args.psql_args])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="emberlog-api",
        description=__doc__,
        epilog=settings_docs.help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    shown = sub.add_parser("settings", help="the settings in force (secrets hidden), or --markdown")
    shown.add_argument(
        "--markdown", action="store_true", help="print docs/configuration.md (every setting)"
    )
    shown.set_defaults(func=cmd_settings)
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
    bridge = sub.add_parser(
        "mqtt-bridge", help="Trunk Recorder's MQTT status plugin into the database (MQTT_*)"
    )
    bridge.set_defaults(func=cmd_mqtt_bridge)
    sub.add_parser(
        "worker", help="send the alert webhooks the database queued (WORKER_*, WEBHOOK_*)"
    ).set_defaults(func=cmd_worker)
    check = sub.add_parser(
        "verify-webhook", help="check a captured webhook's signature (Standard Webhooks)"
    )
    verify_arguments(check)
    check.set_defaults(func=cmd_verify_webhook)
    psql = sub.add_parser("psql", help="open psql on the database in use")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER)
    psql.set_defaults(func=cmd_psql)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line; after `psql`, every argument is psql's own (argparse would take
    `-c` for one of ours)."""
    if argv[:1] == ["psql"]:
        args = parser().parse_args(["psql"])
        args.psql_args = argv[1:]
        return args
    return parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        settings = from_env()
    except SettingsError as exc:
        print(f"emberlog-api: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    for deprecation in settings.deprecations:
        log.warning(deprecation)
    try:
        return args.func(settings, args)
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:  # a setting to change, found once the database answered
        print(f"emberlog-api: {exc}", file=sys.stderr)
        return 2
    except (deploy.DeployError, psycopg.Error) as exc:
        print(f"emberlog-api: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
