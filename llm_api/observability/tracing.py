"""Tracing: the tracer provider, and the trace config that makes every outbound HTTP call a span.

Nothing is patched globally: the provider is the application's, and outbound calls are traced
through the ``trace_configs`` of the application's one HTTP session.
"""

from __future__ import annotations

import logging

import aiohttp
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from llm_api.config import Settings

log = logging.getLogger(__name__)


def tracer_provider_for(settings: Settings) -> trace.TracerProvider:
    """The SDK provider when OTEL_ENABLED, else one that records nothing (and costs next to nothing)."""
    if not settings.otel_enabled:
        return trace.NoOpTracerProvider()
    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    _add_exporter(provider, settings)
    return provider


def tracing_enabled(provider: trace.TracerProvider) -> bool:
    return not isinstance(provider, trace.NoOpTracerProvider)


def client_trace_configs(provider: trace.TracerProvider) -> list[aiohttp.TraceConfig]:
    if not tracing_enabled(provider):
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config  # tracing on only: memory

    return [create_trace_config(tracer_provider=provider)]


def _add_exporter(provider: TracerProvider, settings: Settings) -> None:
    """Spans go to OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over HTTP, ``/v1/traces`` under it), in batches."""
    if not settings.otel_exporter_otlp_endpoint:
        log.warning("OTEL_ENABLED is set without OTEL_EXPORTER_OTLP_ENDPOINT: spans are recorded but not exported")
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # protobuf: tracing on only

    endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))


def shut_down(provider: trace.TracerProvider) -> None:
    """Export what is still batched; a no-op for the provider that records nothing."""
    if isinstance(provider, TracerProvider):
        provider.shutdown()
