"""The ASGI entry point uvicorn serves: ``app.asgi:app``."""

from .app import create_app

app = create_app()
