"""Optional OpenTelemetry tracing (ENABLE_TRACING=true, the `tracing` extra): a server
span per request, continuing the caller's trace (W3C traceparent), with the SQL call
as its child span. Exported over OTLP/HTTP, configured by the standard variables the
SDK reads itself (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, OTEL_SERVICE_NAME,
OTEL_TRACES_SAMPLER, ...).

Off (the default), nothing here runs and nothing of OpenTelemetry is imported: no
middleware, no wrapper around calls.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from typing import Any, TypeVar

from falcon.asgi import Request, Response

from .. import __version__
from ..database.route_table import Route
from ..http.middleware import EXEMPT_PATHS
from ..settings import TRACING_EXTRA, SettingsError

T = TypeVar("T")
SERVICE = "emberlog-api"


class Tracing:
    """The process's tracer provider, the request middleware and the call wrapper."""

    def __init__(self) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:  # settings check this first; a safety net
            raise SettingsError(TRACING_EXTRA) from exc
        # OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) wins over our default name.
        named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""
        )
        attributes = {"service.version": __version__}
        if not named:
            attributes["service.name"] = SERVICE
        self.provider = TracerProvider(resource=Resource.create(attributes))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer(SERVICE, __version__)
        self.trace = trace

    def middleware(self) -> RequestSpans:
        return RequestSpans(self)

    async def call(self, route: Route, work: Awaitable[T]) -> T:
        """Await a route's SQL call inside a child span of the request's."""
        name = f"{route.schema}.{route.function}"
        attributes = {
            "db.system.name": "postgresql",
            "db.operation.name": "call",
            "db.stored_procedure.name": name,
        }
        with self.tracer.start_as_current_span(
            f"call {name}", kind=self.trace.SpanKind.CLIENT, attributes=attributes
        ):
            return await work

    def shutdown(self) -> None:
        """Export what is still buffered, then stop."""
        self.provider.shutdown()


class RequestSpans:
    """Falcon middleware: one server span per request, current while it is handled
    (a stream's span ends when its response starts). Not for probes and scrapes."""

    def __init__(self, tracing: Tracing) -> None:
        from opentelemetry import context, propagate

        self.tracing = tracing
        self.context = context
        self.propagate = propagate

    async def process_request(self, req: Request, resp: Response) -> None:
        if req.path in EXEMPT_PATHS:
            return  # probes and scrapes: every few seconds, nothing to learn
        parent = self.propagate.extract(req.headers)
        span = self.tracing.tracer.start_span(
            req.method,
            context=parent,
            kind=self.tracing.trace.SpanKind.SERVER,
            attributes={"http.request.method": req.method, "url.path": req.path},
        )
        req.context.span = span
        req.context.span_token = self.context.attach(self.tracing.trace.set_span_in_context(span))

    async def process_response(
        self, req: Request, resp: Response, resource: Any, req_succeeded: bool
    ) -> None:
        span = req.context.get("span")
        if span is None:
            return
        route = req.context.get("route") or req.uri_template
        if route:
            span.update_name(f"{req.method} {route}")
            span.set_attribute("http.route", route)
        status = resp.status_code
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self.tracing.trace.Status(self.tracing.trace.StatusCode.ERROR))
        span.end()
        self.context.detach(req.context.span_token)
