"""Deploying the database: yoyo migrations, then the api schema re-created from sql/.

The second step runs in one transaction under an advisory lock and ends with a
NOTIFY on the reload channel, so running app processes reload their route table.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = ROOT / "migrations"
SQL_DIR = ROOT / "sql"
DEPLOY_LOCK_KEY = 0x656D6265  # "embe": one advisory lock for every deploy of this schema


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


def apply_sql(database_url: str, reload_channel: str, sql_dir: Path = SQL_DIR) -> int:
    """Re-create the api schema from sql/ in one locked transaction, then NOTIFY."""
    files = sql_files(sql_dir)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("select pg_catalog.pg_advisory_xact_lock(%s)", (DEPLOY_LOCK_KEY,))
        for path in files:
            log.debug("applying %s", path)
            try:
                conn.execute(path.read_text(encoding="utf-8").encode())
            except psycopg.Error as exc:
                raise DeployError(f"{path.relative_to(sql_dir.parent)}: {exc}") from exc
        # Delivered at commit, to every process listening on the channel.
        conn.execute(sql.SQL("notify {}").format(sql.Identifier(reload_channel)))
    return len(files)


def migrate(database_url: str, reload_channel: str) -> tuple[list[str], int]:
    """Both steps of a deploy; returns (migrations applied, sql files applied)."""
    applied = apply_migrations(database_url)
    count = apply_sql(database_url, reload_channel)
    log.info("migrations applied: %s; sql files applied: %d", applied or "none pending", count)
    return applied, count


class DeployError(RuntimeError):
    """A file under sql/ failed to apply; nothing of the deploy was committed."""
