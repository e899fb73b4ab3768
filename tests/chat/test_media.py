"""Jan media ids in image parts, resolved through the (fake) media API before the provider is called.

The seed's example: ``jan-v2-30b`` with a bare ``jan_`` id. The provider, a fake vLLM declaring vision in
the providers file, must receive a URL it can fetch; the conversation keeps the id; each failure of the
media API has its own status.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.chat.conftest import guest_caller
from tests.chat.test_persistence import both_ways, chat_headers, items, stream
from tests.fakes.loopback import running
from tests.fakes.media_api import TINY_PNG, FakeMediaApi
from tests.fakes.openai_upstream import FakeOpenAIUpstream

SEED_ID = "jan_01hqr8v9k2x3f4g5h6j7k8m9n0"
TIMEOUT = 0.5  # MEDIA_RESOLVE_TIMEOUT in these tests


def seed_body(url: str = SEED_ID, **extra) -> dict:
    """The seed's image example."""
    return {
        "model": "jan-v2-30b",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
        **extra,
    }


@pytest.fixture
async def vision_vllm() -> FakeOpenAIUpstream:
    async with running(FakeOpenAIUpstream(models=("jan-v2-30b",))) as fake:
        yield fake


@pytest.fixture
async def media() -> FakeMediaApi:
    async with running(FakeMediaApi()) as fake:
        fake.add(SEED_ID)
        yield fake


@pytest.fixture
async def server(serve, vllm, vision_vllm, media, tmp_path):
    providers = tmp_path / "providers.yaml"
    providers.write_text(
        "providers:\n"
        f"  - {{name: jan, vendor: vllm, base_url: '{vision_vllm.base_url}/v1', models: [jan-v2-30b],\n"
        "     metadata: {vision: 'true'}}\n"
    )
    return await serve(
        PROVIDERS_CONFIG_FILE=str(providers),
        VLLM_BASE_URL=f"{vllm.base_url}/v1",
        UPSTREAM_RETRIES=0,
        MEDIA_RESOLVE_URL=f"{media.base_url}/v1/media/resolve",
        MEDIA_RESOLVE_TIMEOUT=TIMEOUT,
    )


def received_image_urls(provider: FakeOpenAIUpstream) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in provider.requests[-1]["json"]["messages"]
        for part in message["content"]
        if isinstance(message["content"], list) and part["type"] == "image_url"
    ]


def resolve_calls(media: FakeMediaApi) -> list[dict]:
    return [call for call in media.requests if call["path"] == "/v1/media/resolve"]


async def fetch(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.content_type, await response.read()


# ---------------------------------------------------------------- resolved


@both_ways
async def test_the_seed_image_example_reaches_the_provider_with_a_url_it_can_fetch(vision_vllm, media, me, streamed):
    if streamed:
        _, events = await stream(me, seed_body())
        assert events[-1] == "[DONE]"
    else:
        completion = await me.call("POST", "/v1/chat/completions", json=seed_body())
        assert completion["model"] == "vllm/jan-v2-30b"  # its public id
    [url] = received_image_urls(vision_vllm)
    assert url.startswith(f"{media.base_url}/media/{SEED_ID}?X-Amz-Signature=")
    assert await fetch(url) == (200, "image/png", TINY_PNG)
    # The text part travels untouched, next to the image.
    assert vision_vllm.requests[-1]["json"]["messages"][0]["content"][0] == {"type": "text", "text": "What is this?"}


async def test_the_callers_credentials_are_forwarded_to_the_media_api(media, me):
    await me.call("POST", "/v1/chat/completions", json=seed_body())
    [call] = resolve_calls(media)
    assert call["headers"]["authorization"] == me.headers["Authorization"]
    assert call["headers"]["x-principal-id"] == me.user_id
    assert call["json"] == {
        "payload": {
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;{SEED_ID}"}}]}]
        }
    }


@pytest.mark.parametrize("form", ["{id}", "data:image/png;{id}", "data:image/jpeg;base64,{id}", "data:image/webp;{id}"])
async def test_each_form_of_a_media_id_is_resolved(vision_vllm, media, me, form):
    await me.call("POST", "/v1/chat/completions", json=seed_body(form.format(id=SEED_ID)))
    [url] = received_image_urls(vision_vllm)
    assert url.startswith(f"{media.base_url}/media/{SEED_ID}?")


async def test_each_distinct_id_is_resolved_once(vision_vllm, media, me):
    other = media.add()
    image = lambda media_id: {"type": "image_url", "image_url": {"url": media_id}}  # noqa: E731
    body = {
        "model": "jan-v2-30b",
        "messages": [
            {"role": "user", "content": [image(SEED_ID), image(other)]},
            {"role": "assistant", "content": "Two cats."},
            {"role": "user", "content": [{"type": "text", "text": "And this one?"}, image(SEED_ID)]},
        ],
    }
    await me.call("POST", "/v1/chat/completions", json=body)
    assert len(resolve_calls(media)) == 2
    first, second, third = received_image_urls(vision_vllm)
    assert first == third and f"/media/{SEED_ID}?" in first
    assert f"/media/{other}?" in second


async def test_ordinary_image_urls_go_through_untouched(vision_vllm, media, me):
    url = "https://example.com/cat.png?size=large&jan_01hq=1"
    await me.call("POST", "/v1/chat/completions", json=seed_body(url))
    assert received_image_urls(vision_vllm) == [url]
    assert resolve_calls(media) == []


@both_ways
async def test_the_conversation_keeps_the_id_not_the_resolved_url(vision_vllm, media, me, streamed):
    conversation = await me.conversation()
    await chat_headers(me, seed_body(conversation=conversation["id"]), streamed=streamed)
    [question, answer] = await items(me, conversation["id"])
    assert question["content"] == [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": SEED_ID, "file_id": None, "detail": "auto"},
    ]
    assert answer["role"] == "assistant"
    assert "X-Amz-Signature" not in str(question)


# ---------------------------------------------------------------- refused


async def test_an_unknown_media_id_is_a_400_naming_it(vision_vllm, media, me):
    error = await me.error("POST", "/v1/chat/completions", 400, json=seed_body("jan_01hqunknown0000000000000000"))
    assert error["code"] == "media_not_found" and error["param"] == "messages"
    assert "jan_01hqunknown0000000000000000" in error["message"]
    assert vision_vllm.requests == [] or all(call["path"] != "/v1/chat/completions" for call in vision_vllm.requests)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("down", 502, "media_service_unavailable"),
        ("500", 502, "media_service_error"),
        ("kong 502", 502, "media_service_error"),
        ("slow", 504, "media_service_timeout"),
    ],
)
async def test_a_failing_media_api_is_a_clear_5xx(vision_vllm, media, me, fault, status, code):
    if fault == "down":
        await media.stop()
    elif fault == "500":
        media.fail(500)
    elif fault == "kong 502":
        media.fail(502)
    else:
        media.delay(TIMEOUT * 10)
    error = await me.error("POST", "/v1/chat/completions", status, json=seed_body())
    assert error["code"] == code
    assert "media" in error["message"]
    assert all(call["path"] != "/v1/chat/completions" for call in vision_vllm.requests)


@both_ways
async def test_a_model_that_cannot_take_images_is_a_400(vllm, media, me, streamed):
    body = {**seed_body(stream=streamed), "model": "vllm/jan-v1-4b"}
    error = await me.error("POST", "/v1/chat/completions", 400, json=body)
    assert (error["code"], error["param"]) == ("image_input_unsupported", "messages")
    assert "vllm/jan-v1-4b" in error["message"]
    assert resolve_calls(media) == []  # refused before anything was resolved
    assert all(call["path"] != "/v1/chat/completions" for call in vllm.requests)


async def test_without_a_media_api_configured_a_media_id_is_refused_clearly(serve, vision_vllm, tmp_path):
    providers = tmp_path / "providers.yaml"
    providers.write_text(
        f"providers:\n  - {{name: jan, vendor: vllm, base_url: '{vision_vllm.base_url}/v1', "
        "models: [jan-v2-30b], metadata: {vision: 'true'}}\n"
    )
    server = await serve(PROVIDERS_CONFIG_FILE=str(providers))
    async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as http:
        caller = await guest_caller(http)
        error = await caller.error("POST", "/v1/chat/completions", 502, json=seed_body())
    assert error["code"] == "media_resolution_unavailable"
    assert "MEDIA_RESOLVE_URL" in error["message"]
