"""GET /docs: the API's interactive reference, Swagger UI rendering /openapi.json in the
browser. The page, its set-up script and swagger-ui's files are all served from here
(swagger-ui's from the installed swagger-ui-py package): no CDN, it works offline, and
the page's Content-Security-Policy (CONTENT_SECURITY_POLICY, which
middleware.Edge sets on PATH alone) admits this origin only, nothing inline.

    /docs                          the page; no-cache, as it names the assets' version
    /docs/init.js                  the set-up script: a file, so no 'unsafe-inline'
    /docs/assets/{version}/{name}  swagger-ui's files, cached for a year: another
                                   package version is another URL

The page is public, as its files are: it holds nothing of the API's. The document it
loads is not, when ANONYMOUS_READS=false: /openapi.json then answers 401, which the page
shows, unless the browser holds the JWT cookie. /docs is not in /openapi.json, which
describes the routes the database declares.
"""

from __future__ import annotations

import asyncio
import gzip
from importlib import metadata
from pathlib import Path

import falcon
import falcon.asgi

from .errors import ApiError

PATH = "/docs"
PACKAGE = "swagger-ui-py"  # its swagger_ui/static is swagger-ui's dist
# The package's files the page loads, each with its type (X-Content-Type-Options: nosniff
# makes a browser refuse a script or style sheet served as anything else). Only these are
# served: a name is looked up here, never joined to a path.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
COMPRESSED = (".css", ".js")  # the bundle is 1.5 MB, 0.4 MB gzipped; PNGs are already
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # swagger-ui.css draws its icons as data: URLs
        "connect-src 'self'",  # /openapi.json, and "Try it out"
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
FOR_A_YEAR = "public, max-age=31536000, immutable"
ALWAYS_ASK = "no-cache"
JAVASCRIPT = "text/javascript; charset=utf-8"

# Relative links: /docs's base is the app's root, wherever a proxy mounts it.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Emberlog API reference</title>
<link rel="stylesheet" href="docs/assets/{version}/swagger-ui.css">
<link rel="stylesheet" href="docs/assets/{version}/index.css">
<link rel="icon" type="image/png" sizes="32x32" href="docs/assets/{version}/favicon-32x32.png">
<link rel="icon" type="image/png" sizes="16x16" href="docs/assets/{version}/favicon-16x16.png">
<script defer src="docs/assets/{version}/swagger-ui-bundle.js"></script>
<script defer src="docs/init.js"></script>
</head>
<body>
<div id="swagger-ui"></div>
</body>
</html>
"""

INIT = """\
// GET /docs's set-up (app/http/docs.py): a file, so the page's CSP needs no 'unsafe-inline'.
"use strict";
window.ui = SwaggerUIBundle({
  // /openapi.json beside /docs, wherever the app is mounted
  url: new URL("../openapi.json", document.currentScript.src).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null, // never send the document to another host to validate
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""


def add_routes(app: falcon.asgi.App) -> None:
    """/docs and its files, from the installed swagger-ui-py (its version names the
    assets' URLs, so a new one is never served from a browser's cache of the old)."""
    package = metadata.distribution(PACKAGE)
    directory = Path(str(package.locate_file("swagger_ui/static")))
    app.add_route(PATH, Page(package.version))
    app.add_route(f"{PATH}/init.js", Script())
    app.add_route(f"{PATH}/assets/{{version}}/{{name}}", Assets(directory, package.version))


class Page:
    """GET /docs: the HTML, naming this version's assets."""

    def __init__(self, version: str) -> None:
        self.html = PAGE.format(version=version).encode()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.scope.get("path", "").endswith("/"):  # /docs/: its relative links would miss
            resp.status = falcon.HTTP_301
            resp.location = f"..{PATH}"
            return
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = [ALWAYS_ASK]
        resp.data = self.html


class Script:
    """GET /docs/init.js: starts Swagger UI on /openapi.json."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = JAVASCRIPT
        resp.cache_control = [ALWAYS_ASK]
        resp.data = INIT.encode()


class Assets:
    """GET /docs/assets/{version}/{name}: one of ASSETS at the installed version, gzipped
    when the client takes it; any other version or name is a 404. Each file is read (and
    compressed) once, off the event loop, then kept: 2 MB in all."""

    def __init__(self, directory: Path, version: str) -> None:
        self.directory = directory
        self.version = version
        self.loaded: dict[tuple[str, bool], bytes] = {}

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, version: str, name: str
    ) -> None:
        content_type = ASSETS.get(name)
        if content_type is None or version != self.version:
            raise ApiError(404, f"no documentation asset {version}/{name}")
        gzipped = name.endswith(COMPRESSED) and accepts_gzip(req.get_header("Accept-Encoding"))
        resp.data = await self.load(name, gzipped)
        resp.content_type = content_type
        resp.cache_control = [FOR_A_YEAR]
        resp.vary = ["Accept-Encoding"]
        if gzipped:
            resp.set_header("Content-Encoding", "gzip")

    async def load(self, name: str, gzipped: bool) -> bytes:
        key = (name, gzipped)
        if key not in self.loaded:
            self.loaded[key] = await asyncio.to_thread(self.read, name, gzipped)
        return self.loaded[key]

    def read(self, name: str, gzipped: bool) -> bytes:
        data = (self.directory / name).read_bytes()
        return gzip.compress(data, mtime=0) if gzipped else data


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header lists gzip with a weight above 0 ("gzip;q=0"
    refuses it). Anything unparseable is a no: the plain file always works."""
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        params = params.strip().lower()
        if not params:
            return True
        try:
            return float(params.removeprefix("q=")) > 0
        except ValueError:
            return False
    return False
