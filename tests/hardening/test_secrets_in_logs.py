"""No secret ever reaches the logs: a real ``llm-api serve`` is driven through every credential path
(guest login, refresh, API keys, the admin key, a gateway-asserted identity, a provider key, chats,
failed attempts with wrong and near-miss credentials), then everything the process printed is searched
for each secret and for what the user said.

One process per log level: at ``info`` (the default) and at ``debug`` (which also lets libraries'
debug lines through). The output must also be JSON, one object per line, request lines with their id.
"""

from __future__ import annotations

import base64
import json
import secrets
import time

import aiohttp
import pytest

from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.served import serving

MODEL = "vllm/jan-v1-4b"


class Client:
    """Requests to the service; every one carries an X-Request-Id of ours, kept to find its log line."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.request_ids: list[str] = []

    async def call(
        self,
        method: str,
        path: str,
        status: int | tuple[int, ...],
        *,
        headers: dict | None = None,
        json_body=None,
        raw: bool = False,
    ):
        request_id = f"req-{len(self.request_ids)}-{secrets.token_hex(4)}"
        self.request_ids.append(request_id)
        async with self.session.request(
            method, self.base + path, json=json_body, headers={**(headers or {}), "X-Request-Id": request_id}
        ) as response:
            body = await response.read()
            expected = (status,) if isinstance(status, int) else status
            assert response.status in expected, (method, path, response.status, body[:500])
            if raw:
                return body
            return json.loads(body) if body else None


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def near_miss(secret: str) -> str:
    """The secret with its last character changed: what a guesser (or a typo) sends."""
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


def forged_jwt() -> str:
    """A well-formed RS256 JWT signed by no key the service knows."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return ".".join(
        [
            part({"alg": "RS256", "typ": "JWT", "kid": "forged"}),
            part({"sub": "forged-subject-" + secrets.token_hex(8), "iss": "llm-api", "exp": int(time.time()) + 600}),
            base64.urlsafe_b64encode(secrets.token_bytes(256)).rstrip(b"=").decode(),
        ]
    )


def fragments(secret: str) -> list[str]:
    """The secret, and the parts of it that would betray it on their own (a JWT's signature or claims,
    the random part of an ``sk_``/``rt_`` key)."""
    found = [secret]
    if secret.count(".") == 2:  # a JWT
        found += [segment for segment in secret.split(".")[1:] if len(segment) >= 16]
    if secret.startswith(("sk_", "rt_")):
        found.append(secret[-24:])
    return found


@pytest.fixture
async def vllm():
    async with running(FakeOpenAIUpstream(models=("jan-v1-4b",), api_key="vllm-provider-key-" + secrets.token_hex(16))) as fake:
        yield fake


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_no_secret_and_nothing_said_reaches_the_logs(make_database, vllm, level):
    secrets_of_the_run = {
        "LLM_API_SECRET_KEY": "master-secret-" + secrets.token_urlsafe(32),
        "ADMIN_API_KEY": "admin-key-" + secrets.token_urlsafe(32),
        "GATEWAY_SHARED_SECRET": "gateway-secret-" + secrets.token_urlsafe(32),
        "VLLM_API_KEY": vllm.api_key,
    }
    said = f"my bank password is hunter2-{secrets.token_hex(6)}"  # what the user tells the model
    answered = f"I will not repeat hunter2-{secrets.token_hex(6)}"  # and what the model answers
    admin_provider_key = "admin-provider-key-" + secrets.token_urlsafe(24)
    wrong_provider_key = "wrong-provider-key-" + secrets.token_urlsafe(24)
    secret = dict(secrets_of_the_run)  # name -> value: everything that must not be printed

    async with serving(
        make_database(),
        LOG_FORMAT="json",
        LOG_LEVEL=level,
        VLLM_BASE_URL=f"{vllm.base_url}/v1",
        UPSTREAM_RETRIES="0",
        **secrets_of_the_run,
    ) as service:
        async with aiohttp.ClientSession() as session:
            c = Client(session, service.base)
            admin = bearer(secrets_of_the_run["ADMIN_API_KEY"])

            # Guest login, refresh (the refresh token rotates), and the new tokens in use.
            login = await c.call("POST", "/auth/guest-login", 201)
            secret.update(access_token=login["access_token"], refresh_token=login["refresh_token"])
            refreshed = await c.call("POST", "/auth/refresh-token", 200, json_body={"refresh_token": login["refresh_token"]})
            secret.update(access_token_2=refreshed["access_token"], refresh_token_2=refreshed["refresh_token"])
            user = bearer(refreshed["access_token"])
            await c.call("GET", "/auth/me", 200, headers=user)

            # An API key: created, then used both ways.
            key = await c.call("POST", "/auth/api-keys", 201, headers=user, json_body={"name": "laptop"})
            secret["api_key"] = key["key"]
            await c.call("GET", "/v1/models", 200, headers={"X-API-Key": key["key"]})
            await c.call("GET", "/auth/me", 200, headers=bearer(key["key"]))

            # The administrator: with the bootstrap key; a provider with a key of its own, and one with a bad key.
            await c.call("GET", "/v1/admin/providers", 200, headers=admin)
            created = await c.call(
                "POST",
                "/v1/admin/providers",
                201,
                headers=admin,
                json_body={
                    "name": "second-vllm",
                    "vendor": "vllm",
                    "base_url": f"{vllm.base_url}/v1",
                    "api_key": admin_provider_key,
                    "models": ["other-model"],
                },
            )
            secret["admin_provider_key"] = admin_provider_key
            await c.call(
                "PATCH", f"/v1/admin/providers/{created['id']}", 200, headers=admin, json_body={"api_key": wrong_provider_key}
            )
            secret["wrong_provider_key"] = wrong_provider_key

            # A gateway-asserted identity.
            gateway = {
                "X-Gateway-Secret": secrets_of_the_run["GATEWAY_SHARED_SECRET"],
                "X-User-Subject": "kong-user-1",
                "X-User-Email": "kong@example.com",
                "X-User-Roles": "member",
            }
            await c.call("GET", "/auth/me", 200, headers=gateway)

            # Chats that are kept in a conversation, plain and streamed, through the provider that needs its key.
            conversation = await c.call("POST", "/v1/conversations", 200, headers=user, json_body={"title": "private"})
            vllm.reply(answered)
            chat = {"model": MODEL, "conversation": conversation["id"], "messages": [{"role": "user", "content": said}]}
            await c.call("POST", "/v1/chat/completions", 200, headers=user, json_body=chat)
            vllm.reply(answered)
            await c.call(
                "POST",
                "/v1/chat/completions",
                200,
                headers={"X-API-Key": key["key"]},
                raw=True,
                json_body={**chat, "stream": True},
            )
            assert vllm.requests[-1]["headers"]["authorization"] == f"Bearer {vllm.api_key}"
            await c.call("GET", f"/v1/conversations/{conversation['id']}/items", 200, headers=user)
            # The provider with the wrong key refuses it: a 502 that names no key.
            await c.call(
                "POST",
                "/v1/chat/completions",
                502,
                headers=user,
                json_body={"model": "vllm/other-model", "messages": [{"role": "user", "content": said}]},
            )
            # A provider whose refusal repeats the key it was sent (as LiteLLM's proxy does): the key is
            # in neither the log nor the answer to the client.
            vllm.fail(
                401,
                {
                    "error": {
                        "message": f"Authentication Error, Invalid proxy server token passed. Received API Key = {vllm.api_key}",
                        "type": "auth_error",
                        "code": "401",
                    }
                },
            )
            echoed = await c.call("POST", "/v1/chat/completions", 502, headers=user, json_body=chat)
            assert vllm.api_key not in json.dumps(echoed), echoed
            # A provider failing with a 500 and one answering garbage: logged as errors, without what was said.
            vllm.fail(500)
            await c.call("POST", "/v1/chat/completions", 502, headers=user, json_body=chat)
            vllm.garbage(b"{not json " + said.encode())
            await c.call("POST", "/v1/chat/completions", 502, headers=user, json_body=chat)

            # Failed attempts, with wrong, near-miss and malformed credentials everywhere a credential goes.
            attempts = {
                "wrong_api_key": "sk_" + secrets.token_urlsafe(32),
                "near_miss_api_key": near_miss(key["key"]),
                "near_miss_admin_key": near_miss(secrets_of_the_run["ADMIN_API_KEY"]),
                "near_miss_gateway_secret": near_miss(secrets_of_the_run["GATEWAY_SHARED_SECRET"]),
                "forged_token": forged_jwt(),
                "tampered_token": near_miss(refreshed["access_token"]),
                "wrong_refresh_token": "rt_" + secrets.token_urlsafe(32),
                "garbage_credential": "not-a-token-" + secrets.token_urlsafe(24),
            }
            secret.update(attempts)
            await c.call("GET", "/v1/models", 401, headers={"X-API-Key": attempts["wrong_api_key"]})
            await c.call("GET", "/v1/models", 401, headers=bearer(attempts["wrong_api_key"]))
            await c.call("GET", "/v1/models", 401, headers={"X-API-Key": attempts["near_miss_api_key"]})
            await c.call("GET", "/v1/admin/providers", 401, headers=bearer(attempts["near_miss_admin_key"]))
            await c.call("GET", "/v1/admin/providers", 403, headers=user)  # a real user, not an administrator
            await c.call("GET", "/auth/me", 401, headers={**gateway, "X-Gateway-Secret": attempts["near_miss_gateway_secret"]})
            await c.call("GET", "/auth/me", 401, headers=bearer(attempts["forged_token"]))
            await c.call("GET", "/auth/me", 401, headers=bearer(attempts["tampered_token"]))
            await c.call("GET", "/auth/me", 401, headers=bearer(attempts["garbage_credential"]))
            await c.call("GET", "/auth/me", 401, headers={"Authorization": f"Basic {attempts['garbage_credential']}"})
            await c.call("POST", "/auth/refresh-token", 401, json_body={"refresh_token": attempts["wrong_refresh_token"]})
            # A credential where none belongs: in a query string, and in a body field that is refused.
            await c.call("GET", f"/v1/models?api_key={key['key']}", 400, headers=user)
            await c.call(
                "POST", "/auth/refresh-token", 400, json_body={"refresh_token": login["refresh_token"], "api_key": key["key"]}
            )
            # A spent refresh token replayed (which revokes the login), then logout with the live one.
            await c.call("POST", "/auth/refresh-token", 401, json_body={"refresh_token": login["refresh_token"]})
            await c.call("POST", "/auth/logout", (200, 401), json_body={"refresh_token": refreshed["refresh_token"]})
            # The key revoked, then refused.
            await c.call("DELETE", f"/auth/api-keys/{key['id']}", 204, headers=bearer(login["access_token"]))
            await c.call("GET", "/v1/models", 401, headers={"X-API-Key": key["key"]})

    output = service.output
    assert output.strip(), "the service printed nothing"
    assert service.process.returncode == 0, output[-2000:]

    # Nothing secret, and nothing said, in any form.
    leaks = {name: fragment for name, value in secret.items() for fragment in fragments(value) if fragment in output}
    assert not leaks, f"at LOG_LEVEL={level}, the logs hold {sorted(leaks)}"
    for text in (said, answered, "hunter2"):
        assert text not in output, f"at LOG_LEVEL={level}, the logs hold what was said: {text!r}"
    for value in secret.values():  # as JSON would escape it, too
        assert json.dumps(value)[1:-1] not in output

    # JSON lines, each with the fields every line has; every request's line with its id.
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # fails on any line that is not JSON
    assert all(isinstance(line, dict) and {"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "llm_api.access"]
    assert sorted(line["request_id"] for line in access if line["request_id"] in c.request_ids) == sorted(c.request_ids)
    assert all(line.get("request_id") for line in access)
    # Lines written while a request was served carry its id (the provider's failures, for one).
    failures = [line for line in lines if line["logger"] != "llm_api.access" and line["level"] in ("warning", "error")]
    assert failures, "the provider failures above were not logged at all"
    assert all(line.get("request_id") in c.request_ids for line in failures), failures
    # The level took effect: debug lines (asyncio's, at least) only at debug.
    assert ("debug" in {line["level"] for line in lines}) == (level == "debug")
