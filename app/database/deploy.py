"""Deploying the database: yoyo migrations, then every function, view and trigger
re-created from sql/.

The second step runs in one transaction under an advisory lock and ends with a
NOTIFY on the reload channel, so running app processes reload their route table.
Requests go on meanwhile: they wait for the deploy's locks (never longer than
LOCK_TIMEOUT at a time) and then see the new definitions. When a lock is not free
in time (a long transaction reads api, a writer holds data.incidents), the deploy
gives up whole, so it never leaves requests queued behind it, and tries again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]  # the project: app/database/deploy.py
MIGRATIONS_DIR = ROOT / "migrations"
SQL_DIR = ROOT / "sql"
DEPLOY_LOCK_KEY = 0x656D6265  # "embe": one advisory lock for every deploy of this schema
# The longest one of the deploy's lock requests may wait (requests queue behind it
# meanwhile: keep it well under the web roles' statement_timeout), and how many times
# a deploy that could not take its locks in time is tried again.
LOCK_TIMEOUT = 1.0
LOCK_ATTEMPTS = 10


def yoyo_url(database_url: str) -> str:
    """yoyo needs the postgresql+psycopg scheme to use psycopg 3."""
    scheme, sep, rest = database_url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must be a URL such as postgresql://user@host/db")
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else database_url


def apply_migrations(database_url: str, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending yoyo migrations; return the ids applied."""
    backend = get_backend(yoyo_url(database_url))
    migrations = read_migrations(str(migrations_dir))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def pending_migrations(database_url: str, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
    """The ids of migrations not applied yet (read only)."""
    backend = get_backend(yoyo_url(database_url))
    return [m.id for m in backend.to_apply(read_migrations(str(migrations_dir)))]


def sql_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The repeatable definitions, in the order they are applied (sorted path order)."""
    return sorted(p for p in sql_dir.rglob("*.sql") if p.is_file())


def apply_sql(
    database_url: str,
    reload_channel: str,
    sql_dir: Path = SQL_DIR,
    *,
    lock_timeout: float = LOCK_TIMEOUT,
    attempts: int = LOCK_ATTEMPTS,
) -> int:
    """Re-create every definition of sql/ in one locked transaction, then NOTIFY.

    A lock not taken within lock_timeout seconds undoes the attempt; it is tried again
    (attempts in all, with growing pauses), then a DeployError."""
    scripts = [
        (str(path.relative_to(sql_dir.parent)), path.read_text(encoding="utf-8").encode())
        for path in sql_files(sql_dir)
    ]
    attempts = max(1, attempts)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for attempt in range(1, attempts + 1):
            try:
                _apply(conn, scripts, reload_channel, lock_timeout)
                return len(scripts)
            except _LockTimeout as timeout:
                where = timeout.name
                if attempt == attempts:
                    raise DeployError(
                        f"{where}: a lock was not free within {lock_timeout:g} s, {attempts}"
                        " times; nothing was changed. A long transaction holds it (see"
                        " pg_stat_activity, pg_blocking_pids)"
                    ) from timeout.__cause__
                log.warning(
                    "deploy: %s waited %g s for a lock; trying again (%d of %d)",
                    where,
                    lock_timeout,
                    attempt + 1,
                    attempts,
                )
                time.sleep(min(0.05 * 2**attempt, 2.0))
    raise AssertionError("unreachable")  # pragma: no cover


def _apply(
    conn: psycopg.Connection, scripts: list[tuple[str, bytes]], channel: str, lock_timeout: float
) -> None:
    """One attempt: all of sql/ in one transaction, committed only when every file applied."""
    with conn.transaction():
        # Waiting for another deploy holds up no request: no timeout for that lock.
        conn.execute("select pg_catalog.set_config('lock_timeout', '0', true)")
        conn.execute("select pg_catalog.pg_advisory_xact_lock(%s)", (DEPLOY_LOCK_KEY,))
        conn.execute(
            "select pg_catalog.set_config('lock_timeout', %s, true)",
            (f"{max(1, round(lock_timeout * 1000))}ms",),
        )
        for name, script in scripts:
            log.debug("applying %s", name)
            try:
                conn.execute(script)
            except psycopg.errors.LockNotAvailable as exc:
                raise _LockTimeout(name) from exc
            except psycopg.Error as exc:
                raise DeployError(f"{name}: {exc}") from exc
        # Delivered at commit, to every process listening on the channel.
        conn.execute(sql.SQL("notify {}").format(sql.Identifier(channel)))


def migrate(database_url: str, reload_channel: str) -> tuple[list[str], int]:
    """Both steps of a deploy; returns (migrations applied, sql files applied)."""
    applied = apply_migrations(database_url)
    count = apply_sql(database_url, reload_channel)
    log.info("migrations applied: %s; sql files applied: %d", applied or "none pending", count)
    return applied, count


class DeployError(RuntimeError):
    """A file under sql/ failed to apply; nothing of the deploy was committed."""


class _LockTimeout(Exception):
    """One attempt of apply_sql waited too long for a lock (and was rolled back)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
