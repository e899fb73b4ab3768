"""The fake media-api (resolve, and the object store behind its presigned URLs), exercised over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import pytest

from tests.fakes.loopback import running
from tests.fakes.media_api import (
    GENERIC_ERROR,
    INVALID_BODY,
    KONG_BODIES,
    NOT_FOUND,
    TINY_PNG,
    FakeMediaApi,
    new_media_id,
)

AUTH = {"Authorization": "Bearer user-token"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def media():
    async with running(FakeMediaApi()) as fake:
        yield fake


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def image_payload(url: str) -> dict:
    """The payload llm-api sends for one image part."""
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}


def url_of(answer: dict) -> str:
    return answer["payload"]["messages"][0]["content"][0]["image_url"]["url"]


async def resolve(http, media, body=None, *, data=None, headers=AUTH, method="POST", path="/v1/media/resolve"):
    """One call to the resolve endpoint; (status, headers, raw body)."""
    async with http.request(method, f"{media.base_url}{path}", json=body, data=data, headers=headers) as resp:
        return resp.status, resp.headers, await resp.read()


async def download(http, url: str, **kwargs):
    async with http.get(url, **kwargs) as resp:
        return resp.status, resp.headers, await resp.read()


def assert_presigned(media, url: str, media_id: str) -> None:
    assert re.fullmatch(
        rf"{re.escape(media.base_url)}/media/{media_id}\?X-Amz-Signature=[0-9a-f]{{64}}"
        rf"&X-Amz-Expires={media.presign_ttl}",
        url,
    ), url


def assert_s3_error(status, headers, raw, want_status, code) -> None:
    assert status == want_status and headers["Content-Type"] == "application/xml"
    text = raw.decode()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<Error>')
    assert f"<Code>{code}</Code>" in text and re.search(r"<RequestId>[0-9A-F]{16}</RequestId>", text)


# -- resolve -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", ["data:image/png;{id}", "data:image/png;base64,{id}"])
async def test_a_placeholder_becomes_a_presigned_url_serving_the_png(media, http, placeholder):
    image = media.add()
    status, headers, raw = await resolve(http, media, {"payload": image_payload(placeholder.format(id=image))})
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    url = url_of(json.loads(raw))
    assert_presigned(media, url, image)

    status, headers, content = await download(http, url)  # no Authorization: the signature is enough
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert content == TINY_PNG and content.startswith(PNG_MAGIC)


async def test_the_answer_is_gin_json_with_the_url_ampersand_escaped(media, http):
    image = media.add()
    status, _, raw = await resolve(
        http, media, data=json.dumps({"payload": {"url": f"data:image/png;{image}", "note": "a < b"}}, indent=2)
    )
    assert status == 200
    assert raw.startswith(b'{"payload":{"url":"http://127.0.0.1:') and b"\n" not in raw and b": " not in raw
    assert b"&" not in raw and b"\\u0026X-Amz-Expires=300" in raw and b'"note":"a \\u003c b"' in raw
    assert "&X-Amz-Expires=300" in json.loads(raw)["payload"]["url"]


async def test_every_placeholder_anywhere_in_the_payload_is_replaced(media, http):
    first, second = media.add(), media.add()
    payload = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;{first}"}},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{second}"}},  # the type is ignored
                    {"type": "text", "text": f"see data:image/webp;{first} above"},
                ],
            }
        ],
        f"data:image/png;{second}": [1, 2.50, True, None],  # keys too
    }
    status, _, raw = await resolve(http, media, {"payload": payload})
    assert status == 200
    answer = json.loads(raw)["payload"]
    parts = answer["messages"][0]["content"]
    url_first, url_second = parts[0]["image_url"]["url"], parts[1]["image_url"]["url"]
    assert_presigned(media, url_first, first)
    assert_presigned(media, url_second, second)
    assert parts[2]["text"] == f"see {url_first} above"  # one id, one URL within a call
    assert answer[url_second] == [1, 2.50, True, None]
    for url in (url_first, url_second):
        assert (await download(http, url))[0] == 200

    _, _, again = await resolve(http, media, {"payload": image_payload(f"data:image/png;{first}")})
    assert url_of(json.loads(again)) != url_first  # each call signs anew


async def test_a_payload_without_placeholders_comes_back_as_it_was(media, http):
    # inline base64 is no placeholder; numbers and escapes are left as sent, only whitespace goes
    sent = (
        '{ "payload" : {"messages": [{"role": "user", "content": "data:image/png;base64,iVBORw0KGgo="}],\n'
        '  "n": [1e3, 2.50, -0], "s": "\u00e9 \\u00e9 \\n"} }'
    )
    status, _, raw = await resolve(http, media, data=sent.encode())
    assert status == 200
    assert raw.decode() == (
        '{"payload":{"messages":[{"role":"user","content":"data:image/png;base64,iVBORw0KGgo="}],'
        '"n":[1e3,2.50,-0],"s":"\u00e9 \\u00e9 \\n"}}'
    )


@pytest.mark.parametrize("payload", ["null", "42", '"text"', "[]", "{}"])
async def test_any_json_payload_round_trips(media, http, payload):
    status, _, raw = await resolve(http, media, data=f'{{"payload": {payload}}}')
    assert status == 200 and raw == f'{{"payload":{payload}}}'.encode()


async def test_the_body_is_bound_as_gin_binds_it(media, http):
    image = media.add()
    bodies = [
        f'{{"PayLoad": "data:image/png;{image}"}}',  # names match case-insensitively
        f'{{"payload": "data:image/png;jan_unknown", "payload": "data:image/png;{image}"}}',  # the last one wins
        f'{{"other": 1, "payload": "data:image/png;{image}"}} trailing',  # what follows is ignored
    ]
    for data in bodies:
        status, _, raw = await resolve(http, media, data=data)
        assert status == 200, (data, raw)
        assert_presigned(media, json.loads(raw)["payload"], image)


async def test_an_unknown_id_is_media_apis_404(media, http):
    known = media.add()
    for url in ("data:image/png;jan_01hqnotthere", f"data:image/png;{known} and data:image/png;jan_missing"):
        status, headers, raw = await resolve(http, media, {"payload": image_payload(url)})
        assert status == 404 and headers["Content-Type"] == "application/json; charset=utf-8"
        assert (
            json.loads(raw)
            == NOT_FOUND
            == {
                "code": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                "error": "media object not found",
                "message": "media object not found",
            }
        )


@pytest.mark.parametrize(
    "data",
    [
        "",
        "   ",
        "not json",
        '{"payload": NaN}',
        '["payload"]',
        "null",
        "{}",
        '{"other": 1}',
        '{"payload": 1,}',
        '{"payload" 1}',
        '{"payload": ',
    ],
)
async def test_an_unbindable_body_is_400(media, http, data):
    status, headers, raw = await resolve(http, media, data=data)
    assert status == 400 and headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(raw) == INVALID_BODY


# -- authentication and routes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer    ", "Basic dXNlcjpwdw==", "user-token"])
async def test_without_a_bearer_token_resolve_is_401(media, http, authorization):
    media.fail(500)
    headers = {} if authorization is None else {"Authorization": authorization}
    # checked before the body is read: an invalid body without a token is a 401 too
    for body in ({"payload": None}, "not json"):
        status, _, raw = await resolve(http, media, data=json.dumps(body) if isinstance(body, dict) else body, headers=headers)
        assert status == 401 and json.loads(raw) == {"error": "missing bearer token"}
    assert media.pending == 1


async def test_any_bearer_token_passes_unless_one_is_configured(http):
    async with running(FakeMediaApi()) as media:
        for authorization in ("Bearer anything", "bearer  spaced-out  ", "BEARER x"):
            status, _, _ = await resolve(http, media, {"payload": None}, headers={"Authorization": authorization})
            assert status == 200, authorization
    async with running(FakeMediaApi(token="the-one")) as media:
        status, _, raw = await resolve(http, media, {"payload": None}, headers={"Authorization": "Bearer other"})
        assert status == 401 and json.loads(raw) == {"error": "invalid token"}
        status, _, raw = await resolve(http, media, {"payload": None}, headers={"Authorization": "Bearer the-one "})
        assert status == 200 and raw == b'{"payload":null}'


async def test_other_paths_and_methods_are_gins_404_behind_the_token_check(media, http):
    status, _, raw = await resolve(http, media, path="/v1/media/upload", headers={})
    assert status == 401 and json.loads(raw) == {"error": "missing bearer token"}
    for method, path in (("POST", "/v1/media/upload"), ("GET", "/v1/media/resolve")):
        status, headers, raw = await resolve(http, media, method=method, path=path)
        assert (status, raw) == (404, b"404 page not found") and headers["Content-Type"] == "text/plain"

    status, _, raw = await resolve(http, media, method="GET", path="/healthz", headers={})
    assert status == 200 and json.loads(raw) == {"status": "healthy"}


async def test_requests_are_recorded_with_lower_cased_header_names(media, http):
    await resolve(http, media, {"payload": None}, headers={**AUTH, "X-Principal-Id": "user-7"})
    recorded = media.requests[-1]
    assert (recorded["method"], recorded["path"], recorded["json"]) == ("POST", "/v1/media/resolve", {"payload": None})
    assert recorded["headers"]["authorization"] == "Bearer user-token"
    assert recorded["headers"]["x-principal-id"] == "user-7"


# -- faults ------------------------------------------------------------------------------------------------------


async def test_fail_answers_media_apis_and_kongs_own_bodies_once_each(media, http):
    image = media.add()
    body = {"payload": image_payload(f"data:image/png;{image}")}
    for status in (500, 502, 504, 404, 429):
        media.fail(status)
    assert media.pending == 5
    answers = [await resolve(http, media, body) for _ in range(5)]
    assert [(status, json.loads(raw)) for status, _, raw in answers] == [
        (500, GENERIC_ERROR),
        (502, KONG_BODIES[502]),
        (504, KONG_BODIES[504]),
        (404, NOT_FOUND),
        (429, KONG_BODIES[429]),
    ]
    assert answers[0][1]["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(answers[0][2])["error"] == "failed to resolve media payload"
    assert answers[4][1]["Retry-After"] == "1"
    assert media.pending == 0
    status, _, raw = await resolve(http, media, body)
    assert status == 200 and url_of(json.loads(raw)).startswith(f"{media.base_url}/media/{image}?")


async def test_fail_with_a_given_body_and_headers(media, http):
    media.fail(503, {"message": "maintenance"}, headers={"Retry-After": "30"})
    media.fail(502, "<html>bad gateway</html>")
    media.fail(500, b"\x00raw")
    status, headers, raw = await resolve(http, media, {"payload": None})
    assert (status, json.loads(raw), headers["Retry-After"]) == (503, {"message": "maintenance"}, "30")
    status, headers, raw = await resolve(http, media, {"payload": None})
    assert (status, raw) == (502, b"<html>bad gateway</html>") and headers["Content-Type"].startswith("text/plain")
    assert (await resolve(http, media, {"payload": None}))[::2] == (500, b"\x00raw")


async def test_delay_waits_then_answers_normally(media, http):
    image = media.add()
    media.delay(0.2)
    started = time.monotonic()
    status, _, raw = await resolve(http, media, {"payload": image_payload(f"data:image/png;{image}")})
    assert status == 200 and time.monotonic() - started >= 0.2
    assert (await download(http, url_of(json.loads(raw))))[0] == 200
    started = time.monotonic()
    assert (await resolve(http, media, {"payload": None}))[0] == 200
    assert time.monotonic() - started < 0.2


async def test_a_delayed_call_its_client_gave_up_on_took_its_entry(media, http):
    media.delay(5)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(resolve(http, media, {"payload": None}), 0.2)
    assert media.pending == 0
    started = time.monotonic()
    assert (await resolve(http, media, {"payload": None}))[0] == 200
    assert time.monotonic() - started < 1


async def test_auth_and_validation_errors_do_not_consume_the_queue(media, http):
    media.fail(500)
    assert (await resolve(http, media, {"payload": None}, headers={}))[0] == 401
    assert (await resolve(http, media, data="{}"))[0] == 400
    assert media.pending == 1
    assert (await resolve(http, media, {"payload": None}))[0] == 500


# -- the object store --------------------------------------------------------------------------------------------


async def test_a_signature_for_another_id_or_never_issued_does_not_match(media, http):
    first, second = media.add(), media.add()
    url = media.presign(first)
    assert (await download(http, url))[0] == 200
    foreign = url.replace(f"/media/{first}?", f"/media/{second}?")
    assert_s3_error(*await download(http, foreign), 403, "SignatureDoesNotMatch")
    forged = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, url)
    assert_s3_error(*await download(http, forged), 403, "SignatureDoesNotMatch")
    assert_s3_error(*await download(http, f"{media.base_url}/media/{first}"), 403, "AccessDenied")


async def test_an_expired_presigned_url_is_access_denied(http):
    async with running(FakeMediaApi(presign_ttl=0)) as media:
        image = media.add()
        status, _, raw = await resolve(http, media, {"payload": f"data:image/png;{image}"})
        url = json.loads(raw)["payload"]
        assert status == 200 and url.endswith("&X-Amz-Expires=0")
        await asyncio.sleep(0.01)
        status, headers, raw = await download(http, url)
        assert_s3_error(status, headers, raw, 403, "AccessDenied")
        assert b"<Message>Request has expired</Message>" in raw


async def test_added_media_serve_their_own_bytes_and_ids_are_checked(media, http):
    image = media.add("jan_custom1", content=b"GIF89a...", mime_type="image/gif")
    assert image == "jan_custom1"
    status, headers, content = await download(http, media.presign(image))
    assert (status, headers["Content-Type"], content) == (200, "image/gif", b"GIF89a...")

    assert re.fullmatch(r"jan_[0-9a-hjkmnp-tv-z]{26}", media.add()) and new_media_id() != new_media_id()
    with pytest.raises(ValueError):
        media.add("jan_with-dash")
    status, headers, raw = await download(http, media.presign("jan_neveradded"))
    assert_s3_error(status, headers, raw, 404, "NoSuchKey")
