"""/metrics: Prometheus text over real HTTP, the app on a real port in front of fake vLLMs, real PostgreSQL.

Every family moves after a few requests (requests by route and status, their durations, tokens in and out
by model and provider, failed provider calls by reason, streams being relayed, time to first token); route
labels are the contract's path templates; the active-streams gauge comes back down however a stream ends;
and with several worker processes a scrape adds up all of theirs (real processes, no patching).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from llm_api.app import create_app
from llm_api.app_keys import METRICS
from llm_api.observability.metrics import Metrics, mark_worker_dead
from tests.chat.conftest import guest_token
from tests.chat.faults_support import MESSAGES, VLLM_MODEL, chat, serve_pair, stream_of, two_vllms
from tests.conftest import test_settings
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PUBLIC_ID = "vllm/jan-v1-4b"
CHAT = "/v1/chat/completions"
Samples = dict[tuple[str, frozenset], float]


@pytest.fixture
def serve(aiohttp_server, make_database) -> Callable:
    """``await serve(**ENV)``: the app on a real port, on a fresh database, with these settings."""

    async def start(**env) -> TestServer:
        return await aiohttp_server(create_app(test_settings(make_database(), **env)))

    return start


@pytest.fixture
async def vllm() -> FakeOpenAIUpstream:
    async with running(FakeOpenAIUpstream(models=(VLLM_MODEL,))) as fake:
        yield fake


async def serve_vllm(serve, vllm: FakeOpenAIUpstream, **env) -> tuple[TestServer, str]:
    server = await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0, **env)
    return server, await guest_token(server)


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets of every sample named ``name``."""
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


async def scrape(server: TestServer, path: str = "/metrics") -> Samples:
    async with aiohttp.ClientSession() as session, session.get(server.make_url(path)) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == CONTENT_TYPE
        return parse(await response.text())


async def eventually(server: TestServer, check: Callable[[Samples], bool]) -> Samples:
    """A scrape where ``check`` holds (a stream's own request is counted just after its last byte went out)."""
    for _ in range(100):
        samples = await scrape(server)
        if check(samples):
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"never true: {samples}")


def active_streams(samples: Samples) -> float:
    return value(samples, "llm_api_active_streams")


async def open_stream(server: TestServer, token: str, session: aiohttp.ClientSession) -> aiohttp.ClientResponse:
    """A streamed chat, read up to its first chunk of content."""
    response = await session.post(
        server.make_url(CHAT),
        headers={"Authorization": f"Bearer {token}"},
        json={"model": VLLM_MODEL, "messages": MESSAGES, "stream": True},
    )
    assert response.status == 200, await response.text()
    async for line in response.content:
        if line.startswith(b"data: ") and json.loads(line[len(b"data: ") :])["choices"][0]["delta"].get("content"):
            return response
    raise AssertionError("the stream ended before its first content")


# ---------------------------------------------------------------- every family


async def test_metrics_after_a_few_requests_show_every_family(serve, tmp_path):
    async with two_vllms() as (first, second):
        server, token = await serve_pair(serve, tmp_path, first, second, UPSTREAM_RETRIES=0)
        async with aiohttp.ClientSession() as http:
            assert (await http.get(server.make_url("/v1/healthz"))).status == 200
            assert (await http.get(server.make_url("/v1/conversations/conv_abc"))).status == 401  # no credential
            assert (await http.get(server.make_url("/v1/nowhere"))).status == 404

        first.fail(503)  # passed over: the second provider answers
        second.reply("Salut", usage=(12, 3))
        assert (await chat(server, token, VLLM_MODEL)).status == 200

        first.reply("Salut tout le monde", usage=(30, 5))
        assert stream_of(await chat(server, token, VLLM_MODEL, stream=True)).text == "Salut tout le monde"

        first.refuse_connections()  # down: passed over; the second one's 500 is the answer
        second.fail(500)
        assert (await chat(server, token, VLLM_MODEL)).status == 502
        first.accept_connections()

        first.stall(after_chunks=2, seconds=2)  # a stream still being relayed while scraped
        async with aiohttp.ClientSession() as http:
            response = await open_stream(server, token, http)
            assert active_streams(await scrape(server)) == 1
            await response.read()
        samples = await eventually(
            server,
            lambda samples: (
                active_streams(samples) == 0
                and value(samples, "llm_api_http_requests_total", method="POST", route=CHAT, status="200") == 3
            ),
        )

    requests = "llm_api_http_requests_total"
    assert value(samples, requests, method="GET", route="/v1/healthz", status="200") == 1
    assert value(samples, requests, method="GET", route="/v1/conversations/{conversation_id}", status="401") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert value(samples, requests, method="POST", route="/auth/guest-login", status="201") == 1
    assert value(samples, requests, method="POST", route=CHAT, status="502") == 1
    assert value(samples, requests, method="GET", route="/metrics", status="200") >= 1

    durations = "llm_api_http_request_duration_seconds"
    assert value(samples, f"{durations}_count", method="POST", route=CHAT) == 4
    assert value(samples, f"{durations}_sum", method="POST", route=CHAT) > 0
    assert value(samples, f"{durations}_bucket", method="POST", route=CHAT, le="+Inf") == 4
    assert value(samples, f"{durations}_count", method="GET", route="/v1/healthz") == 1

    tokens = "llm_api_tokens_total"
    assert value(samples, tokens, model=PUBLIC_ID, provider="vllm-b", direction="in") == 12  # the plain answer
    assert value(samples, tokens, model=PUBLIC_ID, provider="vllm-b", direction="out") == 3
    # the two streams: the fake's default usage (21, 4) for the stalled one
    assert value(samples, tokens, model=PUBLIC_ID, provider="vllm-a", direction="in") == 30 + 21
    assert value(samples, tokens, model=PUBLIC_ID, provider="vllm-a", direction="out") == 5 + 4

    errors = "llm_api_upstream_errors_total"
    assert value(samples, errors, provider="vllm-a", reason="status_5xx") == 1  # the 503 failover recovered from
    assert value(samples, errors, provider="vllm-a", reason="connect") == 1
    assert value(samples, errors, provider="vllm-b", reason="status_5xx") == 1
    assert sum(value for (name, _), value in samples.items() if name == errors) == 3

    assert active_streams(samples) == 0

    first_token = "llm_api_time_to_first_token_seconds"
    assert value(samples, f"{first_token}_count", model=PUBLIC_ID, provider="vllm-a") == 2
    assert value(samples, f"{first_token}_sum", model=PUBLIC_ID, provider="vllm-a") > 0
    assert labelled(samples, f"{first_token}_count") == [{"model": PUBLIC_ID, "provider": "vllm-a"}]


async def test_metrics_are_public_and_served_under_the_llm_prefix(serve, vllm):
    server, _ = await serve_vllm(serve, vllm)
    for path in ("/metrics", "/llm/metrics"):  # scrape() sends no credential
        samples = await scrape(server, path)
        assert value(samples, "llm_api_http_requests_total", method="POST", route="/auth/guest-login", status="201") == 1
    samples = await scrape(server)
    assert value(samples, "llm_api_http_requests_total", method="GET", route="/metrics", status="200") == 2


async def test_a_bad_query_parameter_is_a_400_envelope(serve, vllm):
    server, _ = await serve_vllm(serve, vllm)
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/metrics?format=json")) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "unknown_parameter"
    samples = await scrape(server)
    assert value(samples, "llm_api_http_requests_total", method="GET", route="/metrics", status="400") == 1


# ---------------------------------------------------------------- route labels


async def test_route_labels_are_the_contract_templates_never_raw_paths(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/conversations/conv_first", "/llm/v1/conversations/conv_second"):
            assert (await http.get(server.make_url(path), headers=headers)).status == 404
        assert (await http.get(server.make_url("/llm/v1/healthz"))).status == 200
        for path in ("/v1/unknown/conv_third", "/v1/unknown/conv_fourth", "/v1/healthz/x"):
            assert (await http.get(server.make_url(path))).status == 404
        assert (await http.delete(server.make_url("/v1/healthz"))).status == 405  # a route, not this method
        assert (await http.patch(server.make_url("/v1/healthz"))).status == 405
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/metrics")) as response:
        text = await response.text()
    samples = parse(text)
    requests = "llm_api_http_requests_total"
    assert value(samples, requests, method="GET", route="/v1/conversations/{conversation_id}", status="404") == 2
    assert value(samples, requests, method="GET", route="/v1/healthz", status="200") == 1  # /llm shares it
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 3
    assert value(samples, requests, method="DELETE", route="unmatched", status="405") == 1
    assert value(samples, requests, method="PATCH", route="unmatched", status="405") == 1
    for raw in ("conv_first", "conv_second", "conv_third", "/llm/", "/v1/unknown"):
        assert raw not in text
    routes = {labels["route"] for labels in labelled(samples, requests)}
    assert routes == {"/auth/guest-login", "/v1/conversations/{conversation_id}", "/v1/healthz", "unmatched"}


# ---------------------------------------------------------------- active streams


async def test_active_streams_go_back_down_when_a_stream_ends(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    vllm.stall(after_chunks=2, seconds=1)
    async with aiohttp.ClientSession() as http:
        response = await open_stream(server, token, http)
        assert active_streams(await scrape(server)) == 1
        assert (await response.read()).endswith(b"data: [DONE]\n\n")
    await eventually(server, lambda samples: active_streams(samples) == 0)


async def test_active_streams_go_back_down_when_the_client_leaves_midstream(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    vllm.stall(after_chunks=2, seconds=30)  # the role chunk and "Bonjour", then silence
    async with aiohttp.ClientSession() as http:
        response = await open_stream(server, token, http)
        assert active_streams(await scrape(server)) == 1
        response.close()  # drops the connection
    await asyncio.wait_for(vllm.disconnected.wait(), 2.0)  # the provider's connection follows
    samples = await eventually(
        server,
        lambda samples: (
            active_streams(samples) == 0
            and value(samples, "llm_api_http_requests_total", method="POST", route=CHAT, status="499") == 1
        ),
    )
    # What the provider had said is counted, a client leaving is not the provider failing.
    assert value(samples, "llm_api_time_to_first_token_seconds_count", model=PUBLIC_ID, provider="vllm") == 1
    assert not labelled(samples, "llm_api_upstream_errors_total")


@pytest.mark.parametrize(
    "fault,reason",
    [
        (lambda vllm: vllm.stream_error(after_chunks=2), "stream_broken"),  # an error event mid-answer
        (lambda vllm: vllm.cut(after_chunks=2), "stream_broken"),  # the connection dies mid-answer
        (lambda vllm: vllm.garbage(), "bad_response"),  # an event that is not JSON
    ],
)
async def test_active_streams_go_back_down_when_the_provider_fails_midstream(serve, vllm, fault, reason):
    server, token = await serve_vllm(serve, vllm)
    fault(vllm)
    stream = stream_of(await chat(server, token, VLLM_MODEL, stream=True))
    assert stream.error is not None
    samples = await eventually(
        server, lambda samples: value(samples, "llm_api_http_requests_total", method="POST", route=CHAT, status="200") == 1
    )
    assert active_streams(samples) == 0
    assert value(samples, "llm_api_upstream_errors_total", provider="vllm", reason=reason) == 1
    assert len(labelled(samples, "llm_api_upstream_errors_total")) == 1


async def test_a_stream_that_fails_before_its_first_chunk_was_never_active(serve, vllm):
    server, token = await serve_vllm(serve, vllm)
    vllm.fail(500)
    assert (await chat(server, token, VLLM_MODEL, stream=True)).status == 502
    samples = await scrape(server)
    assert active_streams(samples) == 0
    assert value(samples, "llm_api_upstream_errors_total", provider="vllm", reason="status_5xx") == 1
    assert not labelled(samples, "llm_api_time_to_first_token_seconds_count")
    assert value(samples, "llm_api_http_requests_total", method="POST", route=CHAT, status="502") == 1


# ---------------------------------------------------------------- upstream errors


@pytest.mark.parametrize(
    "fault,status,reason",
    [
        (lambda vllm: vllm.fail(500), 502, "status_5xx"),
        (lambda vllm: vllm.fail(503), 502, "status_5xx"),  # unavailable, nobody else to try
        (lambda vllm: vllm.fail(429), 429, "status_4xx"),
        (lambda vllm: vllm.fail(400), 400, "status_4xx"),
        (lambda vllm: vllm.garbage(), 502, "bad_response"),
        (lambda vllm: vllm.refuse_connections(), 502, "connect"),
        (lambda vllm: vllm.delay(3), 504, "timeout"),
    ],
)
async def test_failed_provider_calls_are_counted_by_reason(serve, vllm, fault, status, reason):
    server, token = await serve_vllm(serve, vllm, UPSTREAM_TIMEOUT="0.3")
    fault(vllm)
    assert (await chat(server, token, VLLM_MODEL)).status == status
    samples = await scrape(server)
    assert labelled(samples, "llm_api_upstream_errors_total") == [{"provider": "vllm", "reason": reason}]
    assert value(samples, "llm_api_upstream_errors_total", provider="vllm", reason=reason) == 1
    assert not labelled(samples, "llm_api_tokens_total")


async def test_every_round_of_retries_counts(serve, vllm):
    server = await serve(VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=2)
    token = await guest_token(server)
    for _ in range(3):
        vllm.fail(503)
    assert (await chat(server, token, VLLM_MODEL)).status == 502
    samples = await scrape(server)
    assert value(samples, "llm_api_upstream_errors_total", provider="vllm", reason="status_5xx") == 3


# ---------------------------------------------------------------- several worker processes

WORKER = """
import os
from pathlib import Path
from llm_api.observability.metrics import Metrics

metrics = Metrics(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
metrics.observe_request("GET", "/v1/healthz", 200, 0.02)
metrics.count_tokens("vllm/jan-v1-4b", "vllm", {"prompt_tokens": 10, "completion_tokens": 2})
metrics.first_token("vllm/jan-v1-4b", "vllm", 0.3)
streaming = metrics.relaying_stream()
streaming.__enter__()
print(os.getpid(), flush=True)
os._exit(0)  # the worker dies with its stream still open
"""

SCRAPE = """
import os, sys
from pathlib import Path
from llm_api.observability.metrics import Metrics

sys.stdout.write(Metrics(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])).exposition().decode())
"""


def run(code: str, directory: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_several_worker_processes_are_added_up_on_each_scrape(tmp_path):
    pids = [int(run(WORKER, tmp_path)) for _ in range(2)]
    assert pids[0] != pids[1]

    samples = parse(run(SCRAPE, tmp_path))
    assert value(samples, "llm_api_http_requests_total", method="GET", route="/v1/healthz", status="200") == 2
    assert value(samples, "llm_api_http_request_duration_seconds_count", method="GET", route="/v1/healthz") == 2
    assert value(samples, "llm_api_http_request_duration_seconds_bucket", method="GET", route="/v1/healthz", le="0.025") == 2
    assert value(samples, "llm_api_tokens_total", model=PUBLIC_ID, provider="vllm", direction="in") == 20
    assert value(samples, "llm_api_tokens_total", model=PUBLIC_ID, provider="vllm", direction="out") == 4
    assert value(samples, "llm_api_time_to_first_token_seconds_count", model=PUBLIC_ID, provider="vllm") == 2
    assert active_streams(samples) == 2  # one per worker, until the supervisor says they are gone
    assert not labelled(samples, "llm_api_active_streams")[0]  # summed: no pid label

    mark_worker_dead(tmp_path, pids[0])
    samples = parse(run(SCRAPE, tmp_path))
    assert active_streams(samples) == 1
    assert value(samples, "llm_api_http_requests_total", method="GET", route="/v1/healthz", status="200") == 2

    mark_worker_dead(tmp_path, pids[1])
    samples = parse(run(SCRAPE, tmp_path))
    assert active_streams(samples) == 0
    assert value(samples, "llm_api_tokens_total", model=PUBLIC_ID, provider="vllm", direction="in") == 20  # counters stay


def test_a_metrics_directory_needs_the_environment_variable_before_the_import(tmp_path):
    # This process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR: its samples would stay here.
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR must be in the environment"):
        Metrics(tmp_path)


def test_each_app_has_its_own_registry():
    settings = test_settings("dbname=unused")
    first, second = create_app(settings), create_app(settings)
    first[METRICS].observe_request("GET", "/v1/healthz", 200, 0.01)
    assert first[METRICS].registry is not second[METRICS].registry
    assert (
        value(
            parse(first[METRICS].exposition().decode()),
            "llm_api_http_requests_total",
            method="GET",
            route="/v1/healthz",
            status="200",
        )
        == 1
    )
    assert not labelled(parse(second[METRICS].exposition().decode()), "llm_api_http_requests_total")
