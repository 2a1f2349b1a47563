"""The two logins a command of `emberlog-api` uses on one database, and the embedded
PostgreSQL a command starts when no DATABASE_URL is given (stopped again however the
command ends, SIGTERM included)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass

from ..settings import Settings
from . import connections as db
from .embedded import EmbeddedPostgres


@dataclass(frozen=True)
class Logins:
    """The two logins to one database: the owner's, which migrates and administers, and
    the app's (DATABASE_URL), which its request pools, read pool and listener use."""

    owner: str
    app: str


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Logins]:
    """The logins in use: MIGRATE_DATABASE_URL (else DATABASE_URL) and DATABASE_URL; or
    the embedded server's superuser and its authenticator (trust auth on its socket).
    The embedded server is started if needed, and stopped on the way out if this
    command started it."""
    if not settings.embedded:
        assert settings.database_url and settings.owner_url
        yield Logins(owner=settings.owner_url, app=settings.database_url)
        return
    server = EmbeddedPostgres(settings.data_dir / "postgres")
    owner = server.start()
    try:
        with stopped_by_sigterm():
            yield Logins(owner=owner, app=db.login_as(owner, settings.authenticator_role))
    finally:
        server.stop_if_started_here()


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the command as Ctrl-C does, through the `finally` blocks (so the
    embedded server this command started is stopped too). uvicorn catches SIGTERM for its
    graceful shutdown, then raises it again for the previous handler: this one."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
