"""Tracing of chat completions, with the app given an in-memory OpenTelemetry tracer provider.

Each chat completion is one ``chat.completion`` span carrying the GenAI attributes (the model asked
for and the public id that answered, the provider, token usage, whether it streamed, and for a stream
the time to its first chunk); the call to the provider is an HTTP CLIENT span under it, whose context
reaches the provider in the ``traceparent`` header. A provider's failure marks the span as an error.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llm_api.app import create_app
from tests.chat.conftest import guest_token
from tests.fakes.otlp_collector import FakeOtlpCollector
from tests.conftest import test_settings

HELLO = [{"role": "user", "content": "Dis bonjour"}]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(aiohttp_server, make_database, vllm, exporter):
    """The app in front of the fake vLLM, recording its spans in ``exporter``; a guest's headers."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = test_settings(make_database(), VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0)
    server = await aiohttp_server(create_app(settings, tracer_provider=provider))
    exporter.clear()  # start-up's model listing is traced too; only the chat matters here
    async with aiohttp.ClientSession() as session:
        yield session, server.make_url("/v1/chat/completions"), {"Authorization": f"Bearer {await guest_token(server)}"}
    provider.shutdown()


async def chat_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The one ``chat.completion`` span, once it has ended (a stream's ends just after ``[DONE]`` is sent)."""
    for _ in range(100):
        spans = [span for span in exporter.get_finished_spans() if span.name == "chat.completion"]
        if spans:
            (span,) = spans
            return span
        await asyncio.sleep(0.02)
    raise AssertionError("no chat.completion span ended")


def client_span_under(exporter: InMemorySpanExporter, parent: ReadableSpan) -> ReadableSpan:
    (span,) = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert span.parent is not None and span.parent.span_id == parent.context.span_id
    assert span.context.trace_id == parent.context.trace_id
    return span


def assert_traceparent_sent(request: dict, client_span: ReadableSpan) -> None:
    version, trace_id, span_id, flags = request["headers"]["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", f"{client_span.context.trace_id:032x}", f"{client_span.context.span_id:016x}")
    assert int(flags, 16) & 0x01  # sampled


async def test_a_plain_chat_is_a_span_with_its_provider_call_under_it(traced, vllm, exporter):
    session, url, headers = traced
    vllm.reply("Salut", usage=(12, 3))
    async with session.post(url, json={"model": "jan-v1-4b", "messages": HELLO}, headers=headers) as response:
        assert response.status == 200, await response.text()
    span = await chat_span(exporter)
    assert span.kind is SpanKind.INTERNAL and span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "jan-v1-4b", "gen_ai.response.model": "vllm/jan-v1-4b",
        "gen_ai.system": "vllm", "llm_api.provider": "vllm", "llm_api.stream": False,
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
    }
    outbound = client_span_under(exporter, span)
    assert (outbound.attributes["http.method"], outbound.attributes["http.url"], outbound.attributes["http.status_code"]) == (
        "POST", f"{vllm.base_url}/v1/chat/completions", 200)
    assert_traceparent_sent(vllm.requests[-1], outbound)


async def test_a_streamed_chat_records_its_time_to_first_chunk_and_usage(traced, vllm, exporter):
    session, url, headers = traced
    vllm.reply("Salut tout le monde", usage=(30, 5))
    body = {"model": "vllm/jan-v1-4b", "messages": HELLO, "stream": True}  # usage not asked for by the client
    async with session.post(url, json=body, headers=headers) as response:
        assert response.status == 200
        assert (await response.text()).endswith("data: [DONE]\n\n")
    span = await chat_span(exporter)
    attributes = dict(span.attributes)
    first_chunk_ms = attributes.pop("llm_api.time_to_first_chunk_ms")
    assert isinstance(first_chunk_ms, int) and first_chunk_ms >= 0
    assert attributes == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "vllm/jan-v1-4b", "gen_ai.response.model": "vllm/jan-v1-4b",
        "gen_ai.system": "vllm", "llm_api.provider": "vllm", "llm_api.stream": True,
        "gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 5,
    }
    outbound = client_span_under(exporter, span)
    assert outbound.attributes["http.method"] == "POST"
    assert_traceparent_sent(vllm.requests[-1], outbound)


async def test_a_failing_provider_marks_the_span_as_an_error(traced, vllm, exporter):
    session, url, headers = traced
    vllm.fail(500)
    async with session.post(url, json={"model": "jan-v1-4b", "messages": HELLO}, headers=headers) as response:
        assert response.status == 502
    span = await chat_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    assert span.attributes["gen_ai.request.model"] == "jan-v1-4b" and "gen_ai.response.model" not in span.attributes
    assert client_span_under(exporter, span).attributes["http.status_code"] == 500


async def test_spans_are_exported_over_otlp_when_enabled(aiohttp_server, make_database, vllm):
    """OTEL_ENABLED with OTEL_EXPORTER_OTLP_ENDPOINT: the spans reach a collector (flushed at shutdown)."""
    collector = FakeOtlpCollector()
    endpoint = await collector.start()
    try:
        settings = test_settings(make_database(), VLLM_BASE_URL=f"{vllm.base_url}/v1", OTEL_ENABLED=True,
                                 OTEL_SERVICE_NAME="llm-api-test", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        server = await aiohttp_server(create_app(settings))
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {await guest_token(server)}"}
            async with session.post(server.make_url("/v1/chat/completions"), headers=headers,
                                    json={"model": "jan-v1-4b", "messages": HELLO}) as response:
                assert response.status == 200, await response.text()
        await server.close()  # shutting down flushes the batch
        assert "chat.completion" in collector.span_names
        assert "POST" in collector.span_names  # the call to the provider
        assert collector.service_names == {"llm-api-test"}
    finally:
        await collector.stop()
