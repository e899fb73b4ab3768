"""Hostile input: every one is a clear 4xx in the OpenAI envelope (never a 500), and nothing is stored.

What a hostile client sends, operation by operation of openapi.yaml (enumerated from the generated
operation table, so that a new operation is covered, or fails here asking to be described):

(a) a body over MAX_REQUEST_BODY_BYTES (with and without Content-Length, compressed too): 413;
(b) deeply nested JSON, in the body and inside a string the service parses: 400, and the service
    keeps working (a provider answering it: 502);
(c) arrays over the contract's maxItems (200 000 chat messages among them): 400 naming the array;
(d) NUL characters in every string (and free-form key) of every body, raw NUL bytes, invalid UTF-8,
    lone surrogates, numbers no float holds (1e400): 400 naming the field or the body; a provider's
    answer holding NUL is answered and stored;
(e) SQL metacharacters in every string, every id path parameter and every query parameter: stored
    and read back verbatim, or 400/404; LIKE wildcards match only themselves; the tables still exist;
(f) path traversal, encoded slashes and very long ids in every path parameter: 400/404;
(g) header injection in X-Request-Id: 400 (ours, or the HTTP parser's), never echoed back;
(h) after each refused request, the database is exactly as before (every content table, row by row).
Also the identity headers a gateway asserts, which are stored too.

The app runs in strict contract mode (tests/conftest.py): a response openapi.yaml does not allow is a 500.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import re
import secrets
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from llm_api.app import create_app
from llm_api.schemas.operations import OPERATIONS
from tests.conftest import test_settings
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.sql import query, query_dicts

ENVELOPE_KEYS = {"message", "type", "param", "code"}
ADMIN_KEY = "hostile-admin-key-0123456789abcdefghijklmnopqrstuvwxyz"
GATEWAY_SECRET = "hostile-gateway-secret-0123456789abcdefghijklmnopqrstuvwxyz"
ANTHROPIC_KEY = "sk-ant-test"
SMALL_LIMIT = 4096  # MAX_REQUEST_BODY_BYTES of the (a) tests
VLLM_MODEL = "vllm/jan-v1-4b"
PREFIXES = ("", "/llm")
WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Tables that hold what callers send; a refused request must leave each exactly as it was.
CONTENT_TABLES = (
    "users",
    "api_keys",
    "refresh_tokens",
    "projects",
    "conversations",
    "conversation_items",
    "user_settings",
    "providers",
)
ALL_TABLES = CONTENT_TABLES + ("service_state", "signing_keys", "rate_limits")
# Columns that record that a request was made at all (authentication touches them), not what it asked.
VOLATILE_COLUMNS = {"last_seen_at", "last_used_at"}

BODY_OPERATIONS = [op for op in OPERATIONS.values() if op.body_model is not None and not op.planned]
PATH_OPERATIONS = [op for op in OPERATIONS.values() if op.path_params and not op.planned]
QUERY_OPERATIONS = [op for op in OPERATIONS.values() if op.query_params and not op.planned]
BODY_IDS = [op.operation_id for op in BODY_OPERATIONS]


# --- the database ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dsn(make_database) -> str:
    """One database for this module: whole-table snapshots see only what these tests did."""
    return make_database()


def snapshot(dsn: str) -> dict[str, list[dict]]:
    """Every row of every content table, without the columns that only say a credential was used."""
    tables = {}
    for table in CONTENT_TABLES:
        rows = query_dicts(dsn, f"SELECT * FROM llm_api.{table}")
        cleaned = [
            {k: (bytes(v) if isinstance(v, memoryview) else v) for k, v in row.items() if k not in VOLATILE_COLUMNS}
            for row in rows
        ]
        tables[table] = sorted(cleaned, key=repr)
    return tables


def assert_unchanged(before: dict, after: dict, label: str) -> None:
    for table in CONTENT_TABLES:
        assert after[table] == before[table], f"{label}: llm_api.{table} changed"


def tables_exist(dsn: str) -> list[str]:
    return [table for table in ALL_TABLES if query(dsn, "SELECT to_regclass(%s)", f"llm_api.{table}")[0][0] is not None]


# --- answers ----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers keep their last value
    header_names: list[str]
    raw_head: bytes
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body[:500]!r})"


def envelope(answer: Answer, *statuses: int) -> dict:
    """The error of an OpenAI envelope answered with one of ``statuses``."""
    assert answer.status in statuses, answer
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == ENVELOPE_KEYS, answer
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], answer
    return body["error"]


async def ask(
    client,
    method: str,
    path: str,
    *,
    headers: dict | None = None,
    json_body: Any = None,
    data: bytes | None = None,
    params: Any = None,
) -> Answer:
    """One request through the aiohttp test client (which normalises the URL)."""
    kwargs: dict[str, Any] = {"headers": headers or {}, "params": params}
    if json_body is not None:
        kwargs["json"] = json_body
    if data is not None:
        kwargs["data"] = data
    response = await client.request(method, path, **kwargs)
    body = await response.read()
    return Answer(
        response.status,
        {k.lower(): v for k, v in response.headers.items()},
        [k.lower() for k in response.headers.keys()],
        b"",
        body,
    )


async def raw_http(
    port: int, method: str, target: bytes, headers: list[bytes] = (), body: bytes | None = None, *, chunked: bool = False
) -> Answer:
    """One request written byte for byte on a socket: nothing normalised, nothing refused on our side."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
        payload = b""
        if body is not None and chunked:
            lines.append(b"Transfer-Encoding: chunked")
            for start in range(0, len(body), 1024):
                piece = body[start : start + 1024]
                payload += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            payload += b"0\r\n\r\n"
        elif body is not None:
            lines.append(f"Content-Length: {len(body)}".encode())
            payload = body
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        writer.write(payload)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()
    head, _, content = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    headers_seen: dict[str, str] = {}
    names = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        names.append(name.decode("latin-1").strip().lower())
        headers_seen[names[-1]] = value.decode("latin-1").strip()
    if headers_seen.get("transfer-encoding") == "chunked":
        content = _dechunked(content)
    return Answer(int(status_line.split(b" ", 2)[1]), headers_seen, names, head, content)


def _dechunked(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


# --- the world: a guest with one of everything, an administrator, a fake provider -------------------------


@dataclass
class World:
    client: Any
    dsn: str
    vllm: FakeOpenAIUpstream
    tokens: dict
    user: dict[str, str]  # Authorization header of the guest
    admin: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)  # path parameter -> an existing object's id

    @property
    def port(self) -> int:
        return self.client.server.port

    def credentials(self, op) -> dict[str, str]:
        if not op.secured:
            return {}
        return self.admin if op.admin_only else self.user

    def credential_lines(self, op) -> list[bytes]:
        return [f"{name}: {value}".encode() for name, value in self.credentials(op).items()]

    def path(self, op, prefix: str = "", **override: str) -> str:
        path = op.path
        for name in op.path_params:
            path = path.replace("{" + name + "}", override.get(name, self.ids[name]))
        return prefix + path


async def make_world(aiohttp_client, dsn: str, vllm: FakeOpenAIUpstream, **env) -> World:
    settings = test_settings(dsn, ADMIN_API_KEY=ADMIN_KEY, VLLM_BASE_URL=f"{vllm.base_url}/v1", UPSTREAM_RETRIES=0, **env)
    client = await aiohttp_client(create_app(settings))
    tokens = (await ask(client, "POST", "/auth/guest-login")).json()
    world = World(
        client, dsn, vllm, tokens, {"Authorization": f"Bearer {tokens['access_token']}"}, {"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    project = await expect(world, "POST", "/v1/projects", 201, {"name": f"project {secrets.token_hex(4)}"})
    conversation = await expect(
        world,
        "POST",
        "/v1/conversations",
        200,
        {"title": "world", "project_id": project["id"], "items": [{"type": "message", "role": "user", "content": "hello"}]},
    )
    items = await expect(world, "GET", f"/v1/conversations/{conversation['id']}/items", 200)
    key = await expect(world, "POST", "/auth/api-keys", 201, {"name": "world key"})
    provider = await expect(
        world,
        "POST",
        "/v1/admin/providers",
        201,
        {
            "name": f"target-{secrets.token_hex(4)}",
            "vendor": "openai_compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "models": ["target-model"],
        },
        headers=world.admin,
    )
    world.ids.update(
        conversation_id=conversation["id"],
        item_id=items["data"][0]["id"],
        project_id=project["id"],
        key_id=key["id"],
        provider_id=provider["id"],
        model_id="jan-v1-4b",
        model_public_id=VLLM_MODEL,
    )
    missing = {name for op in OPERATIONS.values() for name in op.path_params} - set(world.ids)
    assert not missing, f"this test does not know how to fill the path parameters {missing}: extend make_world"
    return world


async def expect(world: World, method: str, path: str, status: int, json_body: Any = None, *, headers=None) -> Any:
    answer = await ask(world.client, method, path, headers=headers or world.user, json_body=json_body)
    assert answer.status == status, (method, path, answer)
    return answer.json() if answer.body else None


@pytest.fixture
async def vllm():
    async with running(FakeOpenAIUpstream(models=("jan-v1-4b",))) as fake:
        yield fake


@pytest.fixture
async def world(aiohttp_client, dsn, vllm) -> World:
    return await make_world(aiohttp_client, dsn, vllm)


@pytest.fixture
async def small_world(aiohttp_client, dsn, vllm) -> World:
    """The same, with MAX_REQUEST_BODY_BYTES set small."""
    return await make_world(aiohttp_client, dsn, vllm, MAX_REQUEST_BODY_BYTES=SMALL_LIMIT)


# --- a well-formed body for every operation that takes one ---------------------------------------------------
# Every string a caller can have stored is in it. A new body-taking operation fails
# test_every_body_operation_has_a_baseline until it is described here.


def _items() -> list[dict]:
    return [
        {"type": "message", "role": "user", "content": "plain text"},
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "answer text",
                    "annotations": [{"type": "url_citation", "url": "https://example.com/a", "title": "cited title"}],
                }
            ],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "part text"}]},
        {"type": "function_call", "call_id": "call_abc", "name": "lookup", "arguments": '{"q": "query"}'},
        {"type": "function_call_output", "call_id": "call_abc", "output": "tool output"},
    ]


def baseline(op_id: str, world: World) -> dict:
    bodies: dict[str, dict] = {
        "refreshToken": {"refresh_token": "rt_unknown_token"},
        "logout": {"refresh_token": "rt_unknown_token"},
        "createApiKey": {"name": "key name"},
        "createChatCompletion": {
            "model": VLLM_MODEL,
            "conversation": world.ids["conversation_id"],
            "metadata": {"meta_key": "meta value"},
            "user": "end user",
            "stop": ["STOP"],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "lookup",
                        "description": "looks up",
                        "parameters": {"type": "object", "title": "lookup args"},
                    },
                }
            ],
            "messages": [
                {"role": "system", "content": "system text"},
                {"role": "user", "content": "earlier question", "name": "alice"},
                {
                    "role": "assistant",
                    "content": "earlier answer",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "tool result"},
                {"role": "user", "content": [{"type": "text", "text": "last question"}]},
            ],
        },
        "createConversation": {
            "title": "conversation title",
            "metadata": {"meta_key": "meta value"},
            "referrer": "jan-web",
            "items": _items(),
        },
        "updateConversation": {"title": "new title", "metadata": {"meta_key": "meta value"}},
        "createConversationItems": {"items": _items()},
        "createProject": {"name": f"project name {secrets.token_hex(3)}", "instruction": "project instruction"},
        "updateProject": {"name": f"renamed project {secrets.token_hex(3)}", "instruction": "new instruction"},
        "createProvider": {
            "name": f"prov-{secrets.token_hex(3)}",
            "vendor": "openai_compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": "provider-secret-key",
            "models": ["model-one"],
            "aliases": {"alias-one": "model-one"},
            "metadata": {"meta_key": "meta value"},
        },
        "updateProvider": {
            "api_key": "provider-secret-key",
            "models": ["model-two"],
            "aliases": {"alias-two": "model-two"},
            "metadata": {"meta_key": "meta value"},
        },
        "updateUserSettings": {
            "profile_settings": {
                "custom_instructions": "custom instructions",
                "nick_name": "nick",
                "occupation": "occupation",
                "more_about_you": "about me",
            },
            "preferences": {"pref_key": "pref value", "pref_list": ["listed value"]},
        },
    }
    return bodies[op_id]


# Maps whose keys are the caller's own (the rest of a body's keys are the contract's field names).
FREE_FORM_MAPS = {"metadata", "preferences", "aliases"}


def string_leaves(body: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(path, kind) of every string of a body: kind "value" for a string value, "key" for a free-form key."""
    found: list[tuple[tuple, str]] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if path and path[-1] in FREE_FORM_MAPS:
                found.append(((*path, key), "key"))
            found += string_leaves(value, (*path, key))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found += string_leaves(value, (*path, index))
    elif isinstance(body, str):
        found.append((path, "value"))
    return found


def mutated(body: Any, path: tuple, kind: str, change) -> tuple[Any, str]:
    """A copy of ``body`` with the string at ``path`` (a value, or a free-form key) changed; and the new string."""
    body = copy.deepcopy(body)
    parent = body
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if kind == "key":
        new = change(last)
        parent[new] = parent.pop(last)
    else:
        new = change(parent[last])
        parent[last] = new
    return body, new


def param_of(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def test_every_body_operation_has_a_baseline():
    """The enumeration itself: every body-taking operation of the contract is described above."""
    world = World(None, "", None, {}, {}, {}, {name: "x" for name in ("conversation_id",)})
    undescribed = []
    for op in BODY_OPERATIONS:
        try:
            baseline(op.operation_id, world)
        except KeyError:
            undescribed.append(op.operation_id)
    assert not undescribed, f"describe a well-formed body for {undescribed} in baseline()"
    assert {"createConversation", "createChatCompletion", "updateUserSettings", "createProvider"} <= set(BODY_IDS)


# ============================================================================================================
# (a) bodies over the limit
# ============================================================================================================


def oversized_body(limit: int) -> bytes:
    return json.dumps({"padding": "x" * (limit + 1)}).encode()


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=BODY_IDS)
async def test_a_body_over_the_limit_is_413(small_world, op):
    world = small_world
    before = snapshot(world.dsn)
    for prefix in PREFIXES:
        for chunked in (False, True):  # with Content-Length, and without (the limit counts what arrives)
            answer = await raw_http(
                world.port,
                op.method,
                world.path(op, prefix).encode(),
                [*world.credential_lines(op), b"Content-Type: application/json"],
                oversized_body(SMALL_LIMIT),
                chunked=chunked,
            )
            error = envelope(answer, 413)
            assert str(SMALL_LIMIT) in error["message"], (prefix, chunked, error)
            assert error["type"] == "invalid_request_error", (prefix, chunked, error)
    assert_unchanged(before, snapshot(world.dsn), f"{op.operation_id} 413")
    # The request was refused, not the service: the next one is served.
    assert (await ask(world.client, "GET", "/v1/conversations", headers=world.user)).status == 200


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=BODY_IDS)
async def test_a_body_exactly_at_the_limit_is_read(small_world, op):
    """The limit is the limit: a body of exactly MAX_REQUEST_BODY_BYTES is read (whatever it then gets)."""
    world = small_world
    body = json.dumps(baseline(op.operation_id, world)).encode()
    body = body[:-1] + b" " * (SMALL_LIMIT - len(body)) + b"}"
    assert len(body) == SMALL_LIMIT
    answer = await raw_http(
        world.port, op.method, world.path(op).encode(), [*world.credential_lines(op), b"Content-Type: application/json"], body
    )
    assert answer.status != 413 and answer.status < 500, answer


@pytest.mark.parametrize("encoding,compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
async def test_a_compressed_body_is_limited_by_what_it_inflates_to(small_world, encoding, compress):
    """A few kilobytes that inflate to megabytes (a zip bomb) are refused, not inflated into memory."""
    world = small_world
    op = OPERATIONS["createConversation"]
    inflated = json.dumps({"title": "bomb", "metadata": {"k": " " * 500}}).encode()
    inflated = inflated[:-1] + b" " * 3_000_000 + b"}"
    packed = compress(inflated)
    assert len(packed) < SMALL_LIMIT
    before = snapshot(world.dsn)
    answer = await raw_http(
        world.port,
        "POST",
        world.path(op).encode(),
        [*world.credential_lines(op), b"Content-Type: application/json", f"Content-Encoding: {encoding}".encode()],
        packed,
    )
    envelope(answer, 413)
    assert_unchanged(before, snapshot(world.dsn), encoding)


# ============================================================================================================
# (b) deeply nested JSON
# ============================================================================================================

DEPTH = 100_000
NESTINGS = {
    "open-arrays": b"[" * DEPTH,
    "open-objects": b'{"a":' * DEPTH,
    "closed-arrays": b"[" * DEPTH + b"]" * DEPTH,
    "closed-objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "arrays-around-nan": b"[" * DEPTH + b"NaN" + b"]" * DEPTH,  # the non-finite check parses the body itself
    "in-a-field": b'{"title": "t", "metadata": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
    "in-a-field-with-nan": b'{"title": "t", "metadata": {"k": ' + b"[" * DEPTH + b"Infinity" + b"]" * DEPTH + b"}}",
}


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=BODY_IDS)
async def test_deeply_nested_json_is_400(world, op):
    before = snapshot(world.dsn)
    for nesting, data in NESTINGS.items():
        answer = await ask(
            world.client,
            op.method,
            world.path(op),
            data=data,
            headers={**world.credentials(op), "Content-Type": "application/json"},
        )
        error = envelope(answer, 400)
        assert error["param"] in ("body", "metadata"), (nesting, error)
        assert error["code"] in ("invalid_json", "invalid_value"), (nesting, error)
    assert_unchanged(before, snapshot(world.dsn), f"{op.operation_id} nesting")
    # Served fine afterwards.
    again = await ask(world.client, "POST", "/v1/conversations", headers=world.user, json_body={"title": "after"})
    assert again.status == 200, again


async def test_deep_nesting_inside_tool_call_arguments_is_400(aiohttp_client, dsn, vllm):
    """Arguments are a JSON string the Anthropic adapter parses: deeply nested, they are a 400, not a crash."""
    claude = FakeAnthropic(api_key=ANTHROPIC_KEY)
    await claude.start()
    try:
        world = await make_world(
            aiohttp_client, dsn, vllm, ANTHROPIC_API_KEY=ANTHROPIC_KEY, ANTHROPIC_BASE_URL=f"{claude.base_url}/v1"
        )
        models = (await ask(world.client, "GET", "/v1/models", headers=world.user)).json()["data"]
        [model] = [m["id"] for m in models if m["id"].startswith("anthropic/")][:1]
        calls_before = len(claude.requests)
        for arguments in ("[" * DEPTH, "[" * DEPTH + "]" * DEPTH, '{"a":' * DEPTH + "1" + "}" * DEPTH):
            body = {
                "model": model,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "out"},
                ],
            }
            error = envelope(await ask(world.client, "POST", "/v1/chat/completions", headers=world.user, json_body=body), 400)
            assert error["param"] == "messages" and error["code"] == "invalid_tool_arguments", error
        assert len([r for r in claude.requests[calls_before:] if r["path"].endswith("/messages")]) == 0
        # And Anthropic answering deeply nested JSON: a 502, or the stream's last event.
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        claude.garbage(b"[" * DEPTH)
        error = envelope(await ask(world.client, "POST", "/v1/chat/completions", headers=world.user, json_body=body), 502)
        assert error["code"] == "invalid_upstream_response", error
        claude.garbage(b"[" * DEPTH)
        answer = await ask(world.client, "POST", "/v1/chat/completions", headers=world.user, json_body={**body, "stream": True})
        assert answer.status in (200, 502), answer
        if answer.status == 200:
            events = [line[len(b"data: ") :] for line in answer.body.split(b"\n") if line.startswith(b"data: ")]
            assert events[-1] == b"[DONE]" and json.loads(events[-2])["error"]["code"] == "invalid_upstream_response", answer
        else:
            assert envelope(answer, 502)["code"] == "invalid_upstream_response"
    finally:
        await claude.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_provider_answering_deeply_nested_json_is_a_502(world, stream):
    """The same parser limit on what a provider sends: its answer, its stream events, its error bodies."""
    body = {"model": VLLM_MODEL, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    world.vllm.garbage(b"[" * DEPTH)
    answer = await ask(world.client, "POST", "/v1/chat/completions", headers=world.user, json_body=body)
    if stream:  # the stream had begun (the role chunk): the failure is its last event, then [DONE]
        assert answer.status == 200, answer
        events = [line[len(b"data: ") :] for line in answer.body.split(b"\n") if line.startswith(b"data: ")]
        assert events[-1] == b"[DONE]" and json.loads(events[-2])["error"]["code"] == "invalid_upstream_response", answer
    else:
        assert envelope(answer, 502)["code"] == "invalid_upstream_response"
    world.vllm.fail(400, b"[" * DEPTH)  # an error body nested too deep: reported as text
    error = envelope(await ask(world.client, "POST", "/v1/chat/completions", headers=world.user, json_body=body), 400)
    assert error["code"] == "upstream_invalid_request", error


# ============================================================================================================
# (c) huge arrays
# ============================================================================================================


def chat_messages(count: int) -> list[dict]:
    return [{"role": "user", "content": "m"}] * count


@pytest.mark.parametrize("count", [2049, 200_000])
async def test_a_chat_with_too_many_messages_is_400(world, count):
    """openapi.yaml caps `messages` at 2048 (maxItems): beyond, a 400 naming it, fast, nothing sent upstream."""
    assert "maxItems: 2048" in _schema_text("CreateChatCompletionRequest")
    before, calls = snapshot(world.dsn), len(world.vllm.requests)
    body = {"model": VLLM_MODEL, "conversation": world.ids["conversation_id"], "messages": chat_messages(count)}
    started = time.monotonic()
    error = envelope(await ask(world.client, "POST", "/v1/chat/completions", headers=world.user, json_body=body), 400)
    elapsed = time.monotonic() - started
    assert error["param"] == "messages" and error["code"] == "invalid_value", error
    assert "2048" in error["message"], error
    assert elapsed < 10, f"{count} messages took {elapsed:.1f}s to refuse"
    assert len(world.vllm.requests) == calls
    assert_unchanged(before, snapshot(world.dsn), f"{count} messages")


async def test_a_chat_at_the_message_limit_is_served(world):
    world.vllm.reply("fine")
    answer = await ask(
        world.client,
        "POST",
        "/v1/chat/completions",
        headers=world.user,
        json_body={"model": VLLM_MODEL, "messages": chat_messages(2048)},
    )
    assert answer.status == 200, answer
    assert len(world.vllm.requests[-1]["json"]["messages"]) == 2048


@pytest.mark.parametrize(
    "op_id,body,param",
    [
        ("createConversation", {"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        ("createConversationItems", {"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        (
            "createConversationItems",
            {"items": [{"role": "user", "content": [{"type": "input_text", "text": "x"}] * 101}]},
            "items[0].content",
        ),
        ("createConversation", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ("updateUserSettings", {"preferences": {f"k{i}": "v" for i in range(65)}}, "preferences"),
        ("updateUserSettings", {"preferences": {"k": ["v"] * 65}}, "preferences.k"),
        (
            "createChatCompletion",
            {"model": VLLM_MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 257}]},
            "messages[0].content",
        ),
        (
            "createChatCompletion",
            {
                "model": VLLM_MODEL,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}] * 129,
            },
            "tools",
        ),
        ("updateProvider", {"models": ["m"] * 1001}, "models"),
    ],
)
async def test_arrays_and_maps_over_their_limits_are_400(world, op_id, body, param):
    op = OPERATIONS[op_id]
    before = snapshot(world.dsn)
    error = envelope(await ask(world.client, op.method, world.path(op), headers=world.credentials(op), json_body=body), 400)
    assert error["param"] == param, error
    assert_unchanged(before, snapshot(world.dsn), op_id)


def _schema_text(name: str) -> str:
    from llm_api.contract.spec import spec_bytes

    text = spec_bytes().decode()
    start = text.index(f"\n    {name}:\n")
    end = re.search(r"\n    [A-Za-z]+:\n", text[start + 1 :])
    return text[start : start + 1 + end.start()] if end else text[start:]


# ============================================================================================================
# (d) NUL characters, invalid UTF-8, lone surrogates
# ============================================================================================================

# Strings a chat only forwards to the provider (never stored): the contract lets any text through there.
UPSTREAM_ONLY = {("createChatCompletion", "user"), ("createChatCompletion", "stop"), ("createChatCompletion", "tools")}


def upstream_only(op_id: str, path: tuple) -> bool:
    return (op_id, path[0]) in UPSTREAM_ONLY and (path[0] != "tools" or "parameters" in path)


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=BODY_IDS)
async def test_a_nul_character_in_any_string_is_400_naming_it(world, op):
    body = baseline(op.operation_id, world)
    leaves = string_leaves(body)
    assert leaves, op.operation_id
    wrong = []
    for path, kind in leaves:
        hostile, new = mutated(body, path, kind, lambda text: text[:2] + "\u0000" + text[2:])
        before, calls = snapshot(world.dsn), len(world.vllm.requests)
        answer = await ask(world.client, op.method, world.path(op), headers=world.credentials(op), json_body=hostile)
        if upstream_only(op.operation_id, path) and answer.status == 200:
            # Forwarded as sent (the provider may refuse it); only the last message was stored, without it.
            assert new in all_strings(world.vllm.requests[-1]["json"]), path
            continue
        error = envelope(answer, 400)
        expected = param_of(path if kind == "value" else (*path[:-1], new))
        # A discriminator or enum with a NUL names the object it selects; every other string names itself.
        if error["param"] != expected and not (
            path[-1] in ("type", "role", "vendor") and expected.startswith(error["param"] or "")
        ):
            wrong.append((expected, error))
        assert len(world.vllm.requests) == calls, f"a body with a NUL in {expected} reached the provider"
        assert_unchanged(before, snapshot(world.dsn), f"{op.operation_id} NUL in {expected}")
    assert not wrong, wrong


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=BODY_IDS)
async def test_raw_control_bytes_invalid_utf8_and_lone_surrogates_are_400(world, op):
    text = json.dumps(baseline(op.operation_id, world), ensure_ascii=False)
    # Somewhere inside the first string value of the body.
    inside = text.index('"', text.index(":") + 1) + 2
    cases = {
        "raw NUL byte": (b"\x00", "invalid_json"),
        "raw control byte": (b"\x01", "invalid_json"),
        "0xff": (b"\xff", "invalid_encoding"),
        "truncated sequence": (b"\xc3", "invalid_encoding"),
        "overlong NUL": (b"\xc0\x80", "invalid_encoding"),
        "encoded surrogate": (b"\xed\xa0\x80", "invalid_encoding"),
        "beyond U+10FFFF": (b"\xf4\x90\x80\x80", "invalid_encoding"),
        "escaped high surrogate": (b"\\ud800", "invalid_json"),
        "escaped low surrogate": (b"\\udc00", "invalid_json"),
        "surrogates reversed": (b"\\udc00\\ud800", "invalid_json"),
        "escaped NUL then lone surrogate": (b"\\u0000\\udfff", None),
    }
    before = snapshot(world.dsn)
    encoded = text.encode()
    cut = len(text[:inside].encode())
    for label, (insert, code) in cases.items():
        answer = await ask(
            world.client,
            op.method,
            world.path(op),
            data=encoded[:cut] + insert + encoded[cut:],
            headers={**world.credentials(op), "Content-Type": "application/json"},
        )
        error = envelope(answer, 400)
        if code is not None:
            assert error["code"] == code, (label, error)
            assert error["param"] == "body", (label, error)
    assert_unchanged(before, snapshot(world.dsn), f"{op.operation_id} encodings")


@pytest.mark.parametrize("number", ["1e400", "-1E+999", "1" + "0" * 400 + ".5", "1" + "0" * 5000])
@pytest.mark.parametrize(
    "op_id,template",
    [
        ("updateUserSettings", '{"preferences": {"k": %s}}'),
        (
            "createChatCompletion",
            '{"model": "vllm/jan-v1-4b", "messages": [{"role": "user", "content": "x"}], '
            '"tools": [{"type": "function", "function": {"name": "f", "parameters": {"default": %s}}}]}',
        ),
        ("createApiKey", '{"name": "n", "expires_in_days": %s}'),
    ],
    ids=["preferences", "tool-parameters", "integer-field"],
)
async def test_numbers_no_float_can_hold_are_400(world, op_id, template, number):
    """Free-form values (preferences are stored, tool schemas forwarded) get no model's number check:
    1e400 became Infinity, which jsonb refuses (a 500) and JSON cannot carry upstream."""
    op = OPERATIONS[op_id]
    before, calls = snapshot(world.dsn), len(world.vllm.requests)
    answer = await ask(
        world.client,
        op.method,
        world.path(op),
        data=(template % number).encode(),
        headers={**world.credentials(op), "Content-Type": "application/json"},
    )
    error = envelope(answer, 400)
    assert error["param"] in ("body", "expires_in_days"), error
    assert len(world.vllm.requests) == calls
    assert_unchanged(before, snapshot(world.dsn), f"{op_id} {number[:10]}")
    # Numbers a float holds are fine where numbers are free.
    if op_id == "updateUserSettings":
        settings = await expect(world, "PATCH", "/v1/users/me/settings", 200, {"preferences": {"k": 1e308, "tiny": 1e-400}})
        assert settings["preferences"]["k"] == 1e308


async def test_a_paired_surrogate_escape_is_text_and_stored_verbatim(world):
    """The other side of the lone-surrogate refusal: an escaped pair is one character, and is kept."""
    data = b'{"title": "smile \\ud83d\\ude00", "metadata": {"\\ud83d\\ude00": "\\ud83d\\ude00"}}'
    created = await ask(
        world.client, "POST", "/v1/conversations", data=data, headers={**world.user, "Content-Type": "application/json"}
    )
    assert created.status == 200, created
    fetched = await expect(world, "GET", f"/v1/conversations/{created.json()['id']}", 200)
    assert fetched["title"] == "smile \U0001f600" and fetched["metadata"] == {"\U0001f600": "\U0001f600"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_provider_answer_with_nul_is_answered_and_stored(world, stream):
    """PostgreSQL cannot store U+0000: a model that emits one must not turn the chat into a 500 (or a hung
    stream); the client gets the answer, and the stored item holds U+FFFD in its place."""
    conversation = await expect(world, "POST", "/v1/conversations", 200, {"title": "nul answer"})
    world.vllm.reply("before\u0000after")
    answer = await ask(
        world.client,
        "POST",
        "/v1/chat/completions",
        headers=world.user,
        json_body={
            "model": VLLM_MODEL,
            "conversation": conversation["id"],
            "stream": stream,
            "messages": [{"role": "user", "content": "say something odd"}],
        },
    )
    assert answer.status == 200, answer
    if stream:
        events = [line[len(b"data: ") :] for line in answer.body.split(b"\n") if line.startswith(b"data: ")]
        assert events[-1] == b"[DONE]", answer
        chunks = [json.loads(event) for event in events[:-1]]
        assert not [c for c in chunks if "error" in c], answer
        said = "".join(choice["delta"].get("content") or "" for c in chunks for choice in c.get("choices", []))
    else:
        said = answer.json()["choices"][0]["message"]["content"]
    assert said == "before\u0000after"
    items = await expect(world, "GET", f"/v1/conversations/{conversation['id']}/items?order=asc", 200)
    texts = [part.get("text") for item in items["data"] for part in item.get("content") or []]
    assert texts == ["say something odd", "before\ufffdafter"]


# ============================================================================================================
# (e) SQL metacharacters
# ============================================================================================================

SQL_PAYLOADS = [
    "' OR '1'='1",
    '"; DROP TABLE llm_api.conversations; --',
    "100% _of_ it \\ \\' \\\\ %_",
    "'); DELETE FROM llm_api.users WHERE ('1'='1",
    "$$ || pg_sleep(5) || $$ E'\\x41' /* */",
]
TIGHT_PAYLOADS = ["'OR'1'='1", "%", "_", "\\", "x';--", "%25_%5C"]  # no spaces: they pass the tighter patterns


def all_strings(value: Any) -> set[str]:
    """Every string in a JSON value, keys included."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(key)
            found |= all_strings(item)
    elif isinstance(value, list):
        for item in value:
            found |= all_strings(item)
    elif isinstance(value, str):
        found.add(value)
    return found


async def observed(world: World, op, answer: Answer, upstream_from: int) -> set[str]:
    """Every string the service now shows of what the operation stored (and what it sent upstream)."""
    seen: set[str] = all_strings(answer.json()) if answer.body else set()
    gets: list[str] = []
    op_id = op.operation_id
    if op_id == "createConversation":
        conv = answer.json()["id"]
        gets = [f"/v1/conversations/{conv}", f"/v1/conversations/{conv}/items?limit=100"]
    elif op_id in ("updateConversation", "createConversationItems", "createChatCompletion"):
        conv = world.ids["conversation_id"]
        gets = [f"/v1/conversations/{conv}", f"/v1/conversations/{conv}/items?limit=100"]
    elif op_id == "createProject":
        gets = [f"/v1/projects/{answer.json()['id']}"]
    elif op_id == "updateProject":
        gets = [f"/v1/projects/{world.ids['project_id']}"]
    elif op_id == "createApiKey":
        gets = ["/auth/api-keys"]
    elif op_id == "createProvider":
        gets = [f"/v1/admin/providers/{answer.json()['id']}"]
    elif op_id == "updateProvider":
        gets = [f"/v1/admin/providers/{world.ids['provider_id']}"]
    elif op_id == "updateUserSettings":
        gets = ["/v1/users/me/settings"]
    seen_gets: set[str] = set()
    for path in gets:
        got = await ask(
            world.client, "GET", path, headers=world.credentials(OPERATIONS["listProviders"]) if "/admin/" in path else world.user
        )
        assert got.status == 200, (path, got)
        seen_gets |= all_strings(got.json())
    for request in world.vllm.requests[upstream_from:]:
        seen_gets |= all_strings(request["json"])
    return seen | seen_gets


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=BODY_IDS)
async def test_sql_metacharacters_in_any_string_are_stored_verbatim_or_refused(world, op):
    body = baseline(op.operation_id, world)
    stored_somewhere = 0
    outcomes = []
    for payload in SQL_PAYLOADS + TIGHT_PAYLOADS:
        for path, kind in string_leaves(body):
            nonce = secrets.token_hex(3)
            hostile, value = mutated(body, path, kind, lambda text, nonce=nonce, payload=payload: f"{text[:40]}{nonce}{payload}")
            if op.operation_id in ("createProject", "updateProject"):
                hostile["name"] = hostile["name"] + secrets.token_hex(3) if path != ("name",) else hostile["name"]
            if op.operation_id == "createProvider" and path != ("name",):
                hostile["name"] = f"prov-{secrets.token_hex(4)}"
            upstream_from = len(world.vllm.requests)
            if op.operation_id == "createChatCompletion":
                world.vllm.reply("ok")
            answer = await ask(world.client, op.method, world.path(op), headers=world.credentials(op), json_body=hostile)
            label = (op.operation_id, param_of(path), kind, payload)
            assert answer.status < 500, (label, answer)
            if answer.status >= 400:
                error = envelope(answer, 400, 401, 404)
                outcomes.append((label, answer.status))
                # Refused: for what it is (a pattern, an unknown reference), naming the field; or, for a
                # refresh token, as a token that does not exist.
                if answer.status != 401:
                    named = param_of(path if kind == "value" else (*path[:-1], value))
                    assert error["param"] is not None and named.startswith(error["param"]), (label, error)
                continue
            stored_somewhere += 1
            if op.operation_id == "createApiKey":  # at most API_KEY_MAX_PER_USER active keys: revoke it again
                await expect(world, "DELETE", f"/auth/api-keys/{answer.json()['id']}", 204)
            if op.operation_id in ("refreshToken", "logout"):
                continue
            seen = await observed(world, op, answer, upstream_from)
            if path[-1] == "api_key":  # write-only: only its last four characters are shown
                assert answer.json()["api_key_hint"] == value[-4:], (label, answer)
            else:
                assert value in seen, (label, "not read back verbatim", answer)
    if op.operation_id not in ("refreshToken", "logout"):
        assert stored_somewhere, f"{op.operation_id}: nothing hostile was accepted at all: {outcomes}"
    assert tables_exist(world.dsn) == list(ALL_TABLES)
    assert (await ask(world.client, "GET", "/v1/conversations", headers=world.user)).status == 200


async def test_like_wildcards_match_only_themselves(world):
    """`_` and `%` are literal everywhere a string is compared: referrer filters, project names, model ids."""
    refs = {}
    for referrer in ("a_c", "abc", "aXc", "a.c"):
        refs[referrer] = (await expect(world, "POST", "/v1/conversations", 200, {"referrer": referrer}))["id"]
    for referrer in ("a_c", "abc"):
        listed = await expect(world, "GET", f"/v1/conversations?referrer={referrer}&limit=100", 200)
        assert [c["id"] for c in listed["data"]] == [refs[referrer]], referrer
    assert (await ask(world.client, "GET", "/v1/conversations", headers=world.user, params={"referrer": "a%c"})).status == 400
    # Project names are unique per user: a wildcard name is a different name.
    base = f"wild{secrets.token_hex(3)}"
    await expect(world, "POST", "/v1/projects", 201, {"name": f"{base}abc"})
    for name in (f"{base}a_c", f"{base}a%", f"{base}%", f"{base}ABC"):
        await expect(world, "POST", "/v1/projects", 201, {"name": name})
    error = envelope(await ask(world.client, "POST", "/v1/projects", headers=world.user, json_body={"name": f"{base}a_c"}), 409)
    assert error["param"] == "name"
    # Model ids: only the model itself.
    for model_id in ("jan-v1-4%", "jan_v1_4b", "%", "_", "vllm%2Fjan-v1-4_"):
        error = envelope(
            await raw_http(
                world.port, "GET", f"/v1/models/{model_id}".encode(), world.credential_lines(OPERATIONS["retrieveModel"])
            ),
            404,
        )
        assert error["code"] == "model_not_found", (model_id, error)
    assert (await ask(world.client, "GET", "/v1/models/jan-v1-4b", headers=world.user)).status == 200


def id_payloads() -> list[str]:
    return SQL_PAYLOADS + TIGHT_PAYLOADS + ["conv_' OR '1'='1", "proj_x' OR 1=1 --", "msg_%", "key_%25", "prov_\\x"]


@pytest.mark.parametrize("op", PATH_OPERATIONS, ids=[op.operation_id for op in PATH_OPERATIONS])
async def test_sql_metacharacters_in_path_ids_are_400_or_404(world, op):
    before = snapshot(world.dsn)
    for name in op.path_params:
        for payload in id_payloads():
            encoded = _quote(payload)
            answer = await raw_http(
                world.port,
                op.method,
                world.path(op, **{name: encoded}).encode(),
                [*world.credential_lines(op), *_json_body_lines(op, world)[0]],
                _json_body_lines(op, world)[1],
            )
            error = envelope(answer, 400, 404)
            assert error["param"] in (name, None) or error["code"] == "unknown_url", (name, payload, error)
    assert_unchanged(before, snapshot(world.dsn), op.operation_id)
    assert tables_exist(world.dsn) == list(ALL_TABLES)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _json_body_lines(op, world: World) -> tuple[list[bytes], bytes | None]:
    if op.body_model is None:
        return [], None
    return [b"Content-Type: application/json"], json.dumps(baseline(op.operation_id, world)).encode()


@pytest.mark.parametrize("op", QUERY_OPERATIONS, ids=[op.operation_id for op in QUERY_OPERATIONS])
async def test_sql_metacharacters_in_query_parameters_are_refused_or_match_nothing(world, op):
    """Each query parameter: refused naming it, or accepted as a filter that matches nothing, or as an
    option that changes nothing (``include[]`` of an unknown name)."""
    before = snapshot(world.dsn)
    body_lines, body = _json_body_lines(op, world)
    plain = None
    if op.method == "GET":
        plain = await raw_http(world.port, "GET", world.path(op).encode(), world.credential_lines(op))
        assert plain.status == 200, plain
    for name in op.query_params:
        for payload in id_payloads():
            target = world.path(op) + f"?{_quote(name)}={_quote(payload)}"
            answer = await raw_http(world.port, op.method, target.encode(), [*world.credential_lines(op), *body_lines], body)
            if answer.status == 200 and plain is not None:
                assert answer.json().get("data") == [] or answer.json() == plain.json(), (name, payload, answer)
                continue
            if answer.status == 200:  # a POST with an option: it did what it does without it
                continue
            error = envelope(answer, 400, 404)
            assert error["param"].startswith(name), (name, payload, error)  # include[] is named include[][0]
    if op.method == "GET":
        assert_unchanged(before, snapshot(world.dsn), op.operation_id)
    assert tables_exist(world.dsn) == list(ALL_TABLES)


# ============================================================================================================
# (f) path traversal
# ============================================================================================================

TRAVERSALS = [
    "../",
    "..",
    ".",
    "..%2F",
    "%2e%2e",
    "%2E%2E%2F",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "..%5C..%5Cwindows",
    "%252e%252e%252f",
    "..%252f",
    "....//",
    "..;/",
    "%c0%ae%c0%ae%c0%af",
    "%00",
    "conv_a%00",
    "%2F",
    "%2F%2F",
    "a%2Fb",
    "%5C",
    "conv_abc%2F..%2F..%2F..%2Fauth%2Fapi-keys",
    "../../../../etc/passwd",
    "x" * 5000,
    "conv_" + "a" * 100_000,
]


@pytest.mark.parametrize("op", PATH_OPERATIONS, ids=[op.operation_id for op in PATH_OPERATIONS])
async def test_path_traversal_in_ids_is_400_or_404(world, op):
    before = snapshot(world.dsn)
    body_lines, body = _json_body_lines(op, world)
    for name in op.path_params:
        for prefix in PREFIXES:
            for payload in TRAVERSALS:
                target = world.path(op, prefix, **{name: payload})
                answer = await raw_http(world.port, op.method, target.encode(), [*world.credential_lines(op), *body_lines], body)
                error = envelope(answer, 400, 404)
                assert error["param"] in (name, None), (name, payload[:80], error)
                if error["param"] is None:
                    assert error["code"] == "unknown_url", (name, payload[:80], error)
                assert len(answer.raw_head) < 4096, "a long id echoed in a header"
    assert_unchanged(before, snapshot(world.dsn), op.operation_id)


# ============================================================================================================
# (g) X-Request-Id header injection
# ============================================================================================================

REQUEST_IDS = {
    "crlf-injected-header": b"abc\r\nX-Injected: 1",  # on the wire: two headers, the id "abc" and another
    "bare-cr": b"abc\rX-Injected: 1",
    "bare-lf": b"abc\nX-Injected: 1",
    "obs-fold": b"abc\r\n X-Injected: 1",
    "encoded-crlf": b"abc%0d%0aX-Injected:%201",
    "nul": b"a\x00b",
    "tab": b"a\tb",
    "space": b"a b",
    "non-ascii": "r\u00e9q-\u65e5\u672c".encode(),
    "invalid-utf8": b"\xff\xfe",
    "html": b"<script>alert(1)</script>",
    "json-breaking": b'a","level":"error',
    "129-characters": b"a" * 129,
    "very-long": b"a" * 200_000,
}


@pytest.mark.parametrize("case", list(REQUEST_IDS), ids=list(REQUEST_IDS))
async def test_a_hostile_request_id_is_refused_and_never_echoed(world, case):
    for op_id in ("getHealth", "createConversation"):  # a request with a body is refused before it is read
        await _check_request_id(world, OPERATIONS[op_id], case, REQUEST_IDS[case])


async def _check_request_id(world: World, op, case: str, value: bytes) -> None:
    before = snapshot(world.dsn)
    body_lines, body = (
        ([b"Content-Type: application/json"], json.dumps({"title": "rid"}).encode()) if op.body_model else ([], None)
    )
    answer = await raw_http(
        world.port, op.method, op.path.encode(), [*world.credential_lines(op), *body_lines, b"X-Request-Id: " + value], body
    )
    assert "x-injected" not in answer.header_names, answer.raw_head
    if case == "crlf-injected-header":
        # No injection: the line break ended the header; "abc" is a fine id, echoed as such.
        assert answer.headers["x-request-id"] == "abc"
        assert answer.status in (200, 201), answer
        return
    assert answer.status == 400, answer
    if answer.headers.get("content-type", "").startswith("application/json"):
        error = envelope(answer, 400)
        assert (error["code"], error["param"]) == ("invalid_request_id", "X-Request-Id"), error
    # else: aiohttp's HTTP parser refused the header before any handler ran (a text/plain 400).
    echoed = answer.headers.get("x-request-id")
    if echoed is not None:
        assert WELL_FORMED_REQUEST_ID.fullmatch(echoed) and echoed.encode() != value, echoed
    assert value not in answer.raw_head and value not in answer.body, answer  # the parser's message escapes it
    assert_unchanged(before, snapshot(world.dsn), f"X-Request-Id {case}")


async def test_a_well_formed_request_id_is_echoed(world):
    answer = await ask(world.client, "GET", "/v1/healthz", headers={"X-Request-Id": "req-1.a_b:c"})
    assert answer.status == 200 and answer.headers["x-request-id"] == "req-1.a_b:c"


# ============================================================================================================
# Stored headers: the identity a gateway asserts
# ============================================================================================================


async def test_gateway_identity_headers_are_stored_verbatim_or_refused(aiohttp_client, dsn, vllm):
    world = await make_world(aiohttp_client, dsn, vllm, GATEWAY_SHARED_SECRET=GATEWAY_SECRET)
    for payload in SQL_PAYLOADS + TIGHT_PAYLOADS:
        subject = f"sub-{secrets.token_hex(3)}-{payload}"
        headers = {
            "X-Gateway-Secret": GATEWAY_SECRET,
            "X-User-Subject": subject,
            "X-User-Issuer": f"iss {payload}",
            "X-User-Email": payload,
            "X-User-Username": payload,
        }
        answer = await ask(world.client, "GET", "/auth/me", headers=headers)
        assert answer.status == 200, answer
        me = answer.json()
        assert (me["subject"], me["issuer"], me["email"], me["username"]) == (subject, f"iss {payload}", payload, payload)
    # Users are keyed by (issuer, subject): a key too long for PostgreSQL's index is refused, not a 503.
    for subject, issuer in ((secrets.token_hex(2000), None), ("sub", secrets.token_hex(2000)), ("\u00e9" * 600, None)):
        before = snapshot(world.dsn)
        headers = {"X-Gateway-Secret": GATEWAY_SECRET, "X-User-Subject": subject, **({"X-User-Issuer": issuer} if issuer else {})}
        error = envelope(await ask(world.client, "GET", "/auth/me", headers=headers), 401)
        assert error["code"] == "invalid_gateway_identity", error
        assert_unchanged(before, snapshot(world.dsn), "long gateway identity")
    ok = await ask(world.client, "GET", "/auth/me", headers={"X-Gateway-Secret": GATEWAY_SECRET, "X-User-Subject": "s" * 1024})
    assert ok.status == 200, ok
    assert tables_exist(world.dsn) == list(ALL_TABLES)
