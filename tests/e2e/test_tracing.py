"""ENABLE_TRACING=true: a real server exports its spans over OTLP/HTTP to a collector of
the test's own; off, OpenTelemetry is not even imported."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.e2e.conftest import ROOT
from tests.incidents import payload
from tests.waiting import wait_until

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # the caller's W3C traceparent
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


class Collector(ThreadingHTTPServer):
    """Receives OTLP/HTTP protobuf exports on /v1/traces; keeps every span."""

    def __init__(self) -> None:
        self.spans: list = []
        self.services: set[str] = set()
        super().__init__(("127.0.0.1", 0), Receiver)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Receiver(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    self.server.services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                self.server.spans.extend(scope_spans.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def attributes(span) -> dict:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def named(collector: Collector, name: str):
    return next((s for s in collector.spans if s.name == name), None)


async def test_requests_and_their_sql_calls_are_exported_as_spans(serve, collector):
    server = serve(
        ENABLE_TRACING="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        headers = {**server.ingest, "traceparent": TRACEPARENT}
        created = await http.post("/api/v1/incidents", json=payload(), headers=headers)
        assert created.status_code == 201, created.text
        item = await http.get(f"/api/v1/incidents/{created.json()['id']}")
        assert item.status_code == 200
        assert (await http.get("/api/v1/incidents/999999999")).status_code == 404

    expected = ("POST /api/v1/incidents", "call api.create_incident")
    expected += ("GET /api/v1/incidents/{id}", "call api.get_incident") * 2
    wait_until(
        lambda: sorted(s.name for s in collector.spans if s.name in expected) == sorted(expected)
    )
    post = named(collector, "POST /api/v1/incidents")
    create = named(collector, "call api.create_incident")
    assert post.trace_id.hex() == CALLER_TRACE  # the caller's trace goes on
    assert post.parent_span_id.hex() == "00f067aa0ba902b7"
    assert create.trace_id == post.trace_id and create.parent_span_id == post.span_id
    assert attributes(post)["http.response.status_code"] == 201
    assert attributes(post)["http.route"] == "/api/v1/incidents"
    assert attributes(create)["db.system.name"] == "postgresql"
    gets = [s for s in collector.spans if s.name == "GET /api/v1/incidents/{id}"]
    calls = [s for s in collector.spans if s.name == "call api.get_incident"]
    assert len(gets) == len(calls) == 2
    assert {c.parent_span_id for c in calls} == {g.span_id for g in gets}
    assert sorted(attributes(g)["http.response.status_code"] for g in gets) == [200, 404]
    assert collector.services == {"emberlog-api"}


def test_tracing_off_imports_nothing_of_opentelemetry():
    code = (
        "import sys; from app.app import create_app; from app.settings import Settings;"
        " create_app(Settings(database_url='postgresql://nowhere/x'));"
        " assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
