"""How `emberlog-api serve` runs the HTTP server once the database is ready: uvicorn in
this process (WORKERS=1, or --reload), or our supervisor and its balanced workers
(WORKERS > 1: app/processes/supervisor.py). The workers import the app by name and read
their settings from the environment."""

from __future__ import annotations

import os
from typing import Any

from ..settings import Settings

ASGI_APP = "app.asgi:app"  # imported by uvicorn in each worker process


def serve(settings: Settings, reload: bool) -> int:
    """Serve until stopped; the exit status."""
    import uvicorn  # not at import: every other command starts without it

    from .supervisor import Supervisor

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,  # our own JSON line per request replaces it
        "server_header": False,
        "proxy_headers": False,  # the app decides whom to believe (TRUSTED_PROXIES)
        "log_config": None,
        "log_level": settings.log_level.lower(),
    }
    if settings.workers > 1 and not reload:  # workers sharing connections evenly
        return Supervisor(uvicorn.Config(ASGI_APP, **options), settings.workers).run()
    # One process serves: its request pool is all of POOL_MAX_SIZE (the reloader's server
    # reads its settings from the environment), not a worker's part of it.
    os.environ["WORKERS"] = "1"
    uvicorn.run(ASGI_APP, reload=reload, **options)
    return 0
