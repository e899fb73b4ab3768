"""Tracing of chat completions, with the app given an in-memory OpenTelemetry tracer provider.

Each request is a SERVER span named after its route template, continuing the caller's trace when it
sends ``traceparent``. Each chat completion is one ``chat.completion`` span under it, carrying the
GenAI attributes (the model asked for and the public id that answered, the provider, token usage,
finish reasons, whether it streamed, and for a stream the time to its first chunk); the call to the provider is an
HTTP CLIENT span under that, whose context reaches the provider in the ``traceparent`` header, as do
the calls to the memory and media services. A provider's failure marks the span as an error.
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
from tests.conftest import test_settings
from tests.fakes.loopback import running
from tests.fakes.media_api import FakeMediaApi
from tests.fakes.memory_service import FakeMemory
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.fakes.otlp_collector import FakeOtlpCollector

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
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "jan-v1-4b",
        "gen_ai.response.model": "vllm/jan-v1-4b",
        "gen_ai.system": "vllm",
        "llm_api.provider": "vllm",
        "llm_api.stream": False,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    outbound = client_span_under(exporter, span)
    assert (outbound.attributes["http.method"], outbound.attributes["http.url"], outbound.attributes["http.status_code"]) == (
        "POST",
        f"{vllm.base_url}/v1/chat/completions",
        200,
    )
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
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "vllm/jan-v1-4b",
        "gen_ai.response.model": "vllm/jan-v1-4b",
        "gen_ai.system": "vllm",
        "llm_api.provider": "vllm",
        "llm_api.stream": True,
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ("stop",),
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
        settings = test_settings(
            make_database(),
            VLLM_BASE_URL=f"{vllm.base_url}/v1",
            OTEL_ENABLED=True,
            OTEL_SERVICE_NAME="llm-api-test",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        )
        server = await aiohttp_server(create_app(settings))
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {await guest_token(server)}"}
            async with session.post(
                server.make_url("/v1/chat/completions"), headers=headers, json={"model": "jan-v1-4b", "messages": HELLO}
            ) as response:
                assert response.status == 200, await response.text()
        await server.close()  # shutting down flushes the batch
        assert "chat.completion" in collector.span_names
        assert "POST" in collector.span_names  # the call to the provider
        assert collector.service_names == {"llm-api-test"}
    finally:
        await collector.stop()


# ---------------------------------------------------------------- one trace per request, from the caller on


def spans_of_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.context.trace_id == trace_id]


def server_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER and span.name == name]
    return span


async def test_one_streamed_chat_is_one_trace_server_completion_client(traced, vllm, exporter):
    session, url, headers = traced
    body = {"model": "vllm/jan-v1-4b", "messages": HELLO, "stream": True}
    async with session.post(url, json=body, headers=headers) as response:
        assert (await response.text()).endswith("data: [DONE]\n\n")
    completion = await chat_span(exporter)
    server = server_span(exporter, "POST /v1/chat/completions")
    outbound = client_span_under(exporter, completion)
    assert completion.parent is not None and completion.parent.span_id == server.context.span_id
    assert {span.name for span in spans_of_trace(exporter, server.context.trace_id)} == {
        "POST /v1/chat/completions",
        "chat.completion",
        outbound.name,
    }
    assert server.parent is None  # the caller sent no traceparent: the trace starts here
    assert dict(server.attributes) | {"server.address": "-", "url.scheme": "-"} == {
        "http.request.method": "POST",
        "http.route": "/v1/chat/completions",
        "url.path": "/v1/chat/completions",
        "url.scheme": "-",
        "server.address": "-",
        "http.response.status_code": 200,
    }
    assert_traceparent_sent(vllm.requests[-1], outbound)


async def test_an_incoming_traceparent_continues_the_callers_trace(traced, vllm, exporter):
    session, url, headers = traced
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    caller = {**headers, "traceparent": f"00-{trace_id}-{parent_id}-01"}
    async with session.post(url, json={"model": "vllm/jan-v1-4b", "messages": HELLO}, headers=caller) as response:
        assert response.status == 200
    server = server_span(exporter, "POST /v1/chat/completions")
    assert f"{server.context.trace_id:032x}" == trace_id
    assert server.parent is not None and f"{server.parent.span_id:016x}" == parent_id and server.parent.is_remote
    # ... and the provider sees the same trace.
    assert vllm.requests[-1]["headers"]["traceparent"].split("-")[1] == trace_id


async def test_a_server_span_names_the_route_template_and_its_status(traced, exporter):
    session, url, headers = traced
    async with session.get(url.with_path("/v1/conversations/conv_doesnotexist0000"), headers=headers) as response:
        assert response.status == 404
    server = server_span(exporter, "GET /v1/conversations/{conversation_id}")
    assert server.attributes["http.response.status_code"] == 404
    assert server.status.status_code is StatusCode.UNSET  # a client's mistake is not the server failing


async def test_calls_to_the_memory_and_media_services_carry_the_trace(aiohttp_server, make_database, tmp_path, exporter):
    async with (
        running(FakeOpenAIUpstream(models=("jan-v2-30b",))) as vision,
        running(FakeMemory()) as memory,
        running(FakeMediaApi()) as media,
    ):
        media.add("jan_01hqr8v9k2x3f4g5h6j7k8m9n0")
        providers = tmp_path / "providers.yaml"
        providers.write_text(
            f"providers:\n  - {{name: jan, vendor: vllm, base_url: '{vision.base_url}/v1', "
            "models: [jan-v2-30b], metadata: {vision: 'true'}}\n"
        )
        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(exporter))
        settings = test_settings(
            make_database(),
            PROVIDERS_CONFIG_FILE=str(providers),
            MEMORY_BASE_URL=memory.base_url,
            MEDIA_RESOLVE_URL=f"{media.base_url}/v1/media/resolve",
        )
        server = await aiohttp_server(create_app(settings, tracer_provider=tracer))
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {await guest_token(server)}"}
            body = {
                "model": "jan-v2-30b",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "jan_01hqr8v9k2x3f4g5h6j7k8m9n0"}},
                        ],
                    }
                ],
            }
            async with session.post(server.make_url("/v1/chat/completions"), json=body, headers=headers) as response:
                assert response.status == 200, await response.text()
        server_trace = f"{server_span(exporter, 'POST /v1/chat/completions').context.trace_id:032x}"
        traced_calls = {
            "memory": memory.requests[-1]["headers"]["traceparent"],
            "media": media.requests[-1]["headers"]["traceparent"],
            "provider": vision.requests[-1]["headers"]["traceparent"],
        }
        assert {name: value.split("-")[1] for name, value in traced_calls.items()} == dict.fromkeys(traced_calls, server_trace)
        tracer.shutdown()
