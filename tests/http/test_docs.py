"""GET /docs (app/http/docs.py): Swagger UI's page, script and files, served by the app itself
with their types, caching and the page's own CSP; nothing else reachable under it.
tests/e2e/test_docs.py renders it in a real Chromium."""

from __future__ import annotations

import dataclasses
import gzip
from importlib import metadata
from pathlib import Path

import pytest

from app.http import docs
from app.http.middleware import SECURITY_HEADERS
from tests.conftest import app_client

PACKAGE = metadata.distribution(docs.PACKAGE)
VERSION = PACKAGE.version
STATIC = Path(str(PACKAGE.locate_file("swagger_ui/static")))
ASSETS = f"/docs/assets/{VERSION}"
STRICT = SECURITY_HEADERS["Content-Security-Policy"]


async def test_the_page_loads_only_versioned_files_of_this_origin(client):
    result = await client.simulate_get("/docs")
    assert result.status_code == 200
    assert result.headers["content-type"] == "text/html; charset=utf-8"
    assert result.headers["cache-control"] == "no-cache"  # it names the assets' version
    html = result.text
    for name in ("swagger-ui.css", "index.css", "swagger-ui-bundle.js", "favicon-32x32.png"):
        assert f'"docs/assets/{VERSION}/{name}"' in html
    assert '<script defer src="docs/init.js"></script>' in html
    assert "http:" not in html and "https:" not in html and "//" not in html  # no CDN
    assert "<style" not in html and "style=" not in html  # nothing inline: no unsafe-inline
    assert html.count("<script") == html.count("<script defer src=")


async def test_docs_with_a_slash_redirects_where_the_relative_links_work(client):
    result = await client.simulate_get("/docs/")
    assert result.status_code == 301
    assert result.headers["location"] == "../docs"  # from /docs/: /docs


async def test_the_script_starts_swagger_ui_on_the_document_beside_docs(client):
    result = await client.simulate_get("/docs/init.js")
    assert result.status_code == 200
    assert result.headers["content-type"] == "text/javascript; charset=utf-8"
    assert result.headers["cache-control"] == "no-cache"
    script = result.text
    assert 'new URL("../openapi.json", document.currentScript.src)' in script
    assert "validatorUrl: null" in script  # the document is never sent elsewhere


@pytest.mark.parametrize("name", sorted(docs.ASSETS))
async def test_each_asset_has_its_type_and_is_cached_for_a_year(client, name):
    result = await client.simulate_get(f"{ASSETS}/{name}")
    assert result.status_code == 200
    assert result.headers["content-type"] == docs.ASSETS[name]
    assert result.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert result.headers["vary"] == "Accept-Encoding"
    assert result.headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in result.headers
    assert result.content == (STATIC / name).read_bytes()


async def test_scripts_and_styles_are_gzipped_for_clients_that_take_it(client):
    name = "swagger-ui-bundle.js"
    result = await client.simulate_get(f"{ASSETS}/{name}", headers={"Accept-Encoding": "gzip"})
    assert result.headers["content-encoding"] == "gzip"
    assert gzip.decompress(result.content) == (STATIC / name).read_bytes()
    assert len(result.content) < len((STATIC / name).read_bytes()) / 2
    png = await client.simulate_get(
        f"{ASSETS}/favicon-16x16.png", headers={"Accept-Encoding": "gzip"}
    )
    assert "content-encoding" not in png.headers  # already compressed
    refused = await client.simulate_get(
        f"{ASSETS}/{name}", headers={"Accept-Encoding": "gzip;q=0, identity"}
    )
    assert "content-encoding" not in refused.headers


@pytest.mark.parametrize(
    ("header", "takes"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("br, GZIP", True),
        ("gzip;q=0.5", True),
        ("gzip; q=0", False),
        ("gzip;q=0.000", False),
        ("gzip;q=nonsense", False),
        ("x-gzip, deflate", False),
        ("*", False),  # the plain file is always acceptable
    ],
)
def test_accept_encoding_is_read_as_http_means_it(header, takes):
    assert docs.accepts_gzip(header) is takes


async def test_only_the_page_gets_the_pages_policy(client):
    page = await client.simulate_get("/docs")
    policy = page.headers["content-security-policy"]
    assert policy == docs.CONTENT_SECURITY_POLICY
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy  # neither unsafe-inline nor unsafe-eval
    assert page.headers["x-frame-options"] == "DENY"
    for path in (
        "/docs/init.js",
        f"{ASSETS}/swagger-ui-bundle.js",
        f"{ASSETS}/nothing.js",
        "/openapi.json",
        "/healthz",
        "/api/v1/incidents",
        "/docsx",
    ):
        result = await client.simulate_get(path)
        assert result.headers["content-security-policy"] == STRICT, path


@pytest.mark.parametrize(
    "path",
    [
        f"{ASSETS}/swagger-ui.js",  # in the package, but not one the page loads
        f"{ASSETS}/swagger-ui-bundle.js.map",
        f"{ASSETS}/LICENSE",
        f"{ASSETS}/oauth2-redirect.html",
        "/docs/assets/0.0.1/swagger-ui-bundle.js",  # another version
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/swagger-ui-bundle.js",
        "/docs/index.html",
    ],
)
async def test_unknown_assets_are_404s(client, path):
    result = await client.simulate_get(path)
    assert result.status_code == 404
    assert result.json["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/../../app/settings.py",
        f"{ASSETS}/../../../app/settings.py",
        f"{ASSETS}/..%2F..%2F..%2Fapp%2Fsettings.py",
        f"{ASSETS}/%2e%2e%2f%2e%2e%2fcore.py",
        "/docs/assets/..%2F..%2Fswagger_ui/core.py",
        f"{ASSETS}/..",
        f"{ASSETS}/%2e%2e",
        "/docs/assets/../static/swagger-ui-bundle.js",
    ],
)
async def test_no_path_reaches_past_the_assets(client, path):
    result = await client.simulate_get(path)
    assert result.status_code == 404
    assert b"import" not in result.content and b"SwaggerUI" not in result.content


async def test_the_page_is_public_and_no_route_of_the_document(settings, db, client):
    doc = (await client.simulate_get("/openapi.json")).json
    assert not [path for path in doc["paths"] if path.startswith("/docs")]
    closed = dataclasses.replace(settings, anonymous_reads=False, jwt_secret="k" * 40)
    async with app_client(closed) as closed_client:
        assert (await closed_client.simulate_get("/docs")).status_code == 200
        assert (await closed_client.simulate_get(f"{ASSETS}/swagger-ui.css")).status_code == 200
        # What the page then shows: the document needs credentials, as it does today.
        assert (await closed_client.simulate_get("/openapi.json")).status_code == 401
