"""A wire-level fake OpenTelemetry collector: OTLP over HTTP (``POST /v1/traces``, protobuf).

collector = FakeOtlpCollector()
endpoint = await collector.start()     # what OTEL_EXPORTER_OTLP_ENDPOINT is set to
...
collector.span_names                   # every span received, by name
"""

from __future__ import annotations

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse


class FakeOtlpCollector:
    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def span_names(self) -> list[str]:
        return [
            span.name
            for export in self.exports
            for resource in export.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    @property
    def service_names(self) -> set[str]:
        return {
            attribute.value.string_value
            for export in self.exports
            for resource in export.resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }

    async def _traces(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415)
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        self.exports.append(export)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf")
