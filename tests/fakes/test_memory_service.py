"""The fake memory-tools service, exercised over real HTTP the way llm-api's memory client calls it."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.fakes.loopback import running
from tests.fakes.memory_service import FakeMemory

USER, PROJECT, CONVERSATION = "user-1", "project-1", "conv-1"
LOAD_BODY = {"user_id": USER, "query": "what do I like?"}
OBSERVE_BODY = {
    "user_id": USER,
    "conversation_id": CONVERSATION,
    "messages": [
        {"role": "user", "content": "I like tea", "created_at": "2025-01-02T03:04:05Z"},
        {"role": "assistant", "content": "Noted.", "created_at": "2025-01-02T03:04:06.5Z"},
    ],
}
GO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,5}[1-9])?Z")  # microseconds, zeros trimmed
USER_FIELDS = ["id", "user_id", "scope", "key", "text", "score", "created_at", "updated_at", "similarity"]
FACT_FIELDS = [
    "id",
    "project_id",
    "kind",
    "title",
    "text",
    "confidence",
    "source_conversation_id",
    "created_at",
    "updated_at",
    "similarity",
]
EVENT_FIELDS = ["id", "user_id", "conversation_id", "time", "text", "kind", "created_at", "similarity"]


@pytest.fixture
async def mem():
    async with running(FakeMemory()) as fake:
        yield fake


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http, mem, path, body=None, *, data=None, method="POST", **kwargs):
    """One request; (status, headers, raw body)."""
    async with http.request(method, f"{mem.base_url}{path}", json=body, data=data, **kwargs) as resp:
        return resp.status, resp.headers, await resp.read()


async def load(http, mem, **overrides):
    """POST /v1/memory/load, expecting a 200; the parsed answer."""
    status, _, raw = await call(http, mem, "/v1/memory/load", {**LOAD_BODY, **overrides})
    assert status == 200, raw
    return json.loads(raw)


def texts(items):
    return [item["text"] for item in items]


# -- load --------------------------------------------------------------------------------------------------------


async def test_an_empty_store_answers_three_empty_lists(mem, http):
    status, headers, raw = await call(http, mem, "/v1/memory/load", {**LOAD_BODY, "project_id": PROJECT})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert raw == b'{"core_memory":[],"episodic_memory":[],"semantic_memory":[]}\n'


async def test_load_answers_items_shaped_as_memory_tools_sends_them(mem, http):
    mem.remember(
        core=[{"text": "likes tea", "key": "drink", "scope": "preference", "score": 4}],
        semantic=[("Stack", "Python 3.11")],
        episodic=[{"text": "asked about Lyon", "conversation_id": "c-9"}],
    )
    body = await load(http, mem, project_id=PROJECT, conversation_id=CONVERSATION)
    assert list(body) == ["core_memory", "episodic_memory", "semantic_memory"]

    (core,) = body["core_memory"]
    assert list(core) == USER_FIELDS
    assert (core["user_id"], core["scope"], core["key"], core["text"], core["score"], core["similarity"]) == (
        USER,
        "preference",
        "drink",
        "likes tea",
        4,
        0.9,
    )
    (fact,) = body["semantic_memory"]
    assert list(fact) == FACT_FIELDS
    assert (fact["project_id"], fact["kind"], fact["title"], fact["text"], fact["confidence"], fact["similarity"]) == (
        PROJECT,
        "context",
        "Stack",
        "Python 3.11",
        0.8,
        0.9,
    )
    (event,) = body["episodic_memory"]
    assert list(event) == EVENT_FIELDS[:2] + ["project_id"] + EVENT_FIELDS[2:]
    assert (event["user_id"], event["project_id"], event["conversation_id"], event["text"], event["kind"]) == (
        USER,
        PROJECT,
        "c-9",
        "asked about Lyon",
        "interaction",
    )

    for item in (core, fact, event):
        uuid.UUID(item["id"])
    for stamp in (
        core["created_at"],
        core["updated_at"],
        fact["created_at"],
        fact["updated_at"],
        event["time"],
        event["created_at"],
    ):
        assert GO_TIME.fullmatch(stamp), stamp


async def test_items_are_answered_for_the_requesting_user_and_events_omit_an_absent_project(mem, http):
    mem.remember(core=["likes tea"], episodic=["asked about Lyon"])
    body = await load(http, mem, user_id="someone-else")
    assert body["core_memory"][0]["user_id"] == "someone-else"
    assert list(body["episodic_memory"][0]) == EVENT_FIELDS  # no project_id key at all


async def test_project_facts_come_only_with_a_project_id(mem, http):
    mem.remember(semantic=[("Stack", "Python 3.11"), ("Deploy", "on Fridays")])
    assert (await load(http, mem))["semantic_memory"] == []
    assert (await load(http, mem, project_id=""))["semantic_memory"] == []
    assert texts((await load(http, mem, project_id=PROJECT))["semantic_memory"]) == ["Python 3.11", "on Fridays"]


async def test_min_similarity_filters_and_orders_best_first(mem, http):
    mem.remember(
        core=[
            {"text": "weak", "similarity": 0.55},
            {"text": "strong", "similarity": 0.95},
            {"text": "middling", "similarity": 0.7},
        ],
        semantic=[
            {"title": "a", "text": "fact weak", "similarity": 0.4},
            {"title": "b", "text": "fact strong", "similarity": 0.8},
        ],
        episodic=[{"text": "event weak", "similarity": 0.3}, {"text": "event strong", "similarity": 0.85}],
    )
    default = await load(http, mem, project_id=PROJECT)  # min_similarity absent: 0.5
    assert texts(default["core_memory"]) == ["strong", "middling", "weak"]
    assert [item["similarity"] for item in default["core_memory"]] == [0.95, 0.7, 0.55]
    assert texts(default["semantic_memory"]) == ["fact strong"]
    assert texts(default["episodic_memory"]) == ["event strong"]

    strict = await load(http, mem, project_id=PROJECT, options={"min_similarity": 0.75})
    assert texts(strict["core_memory"]) == ["strong"]
    assert (await load(http, mem, options={"min_similarity": 0}))["core_memory"] == default["core_memory"]


async def test_score_confidence_and_age_filter_as_memory_tools_does(mem, http):
    mem.remember(
        core=[{"text": "low score", "score": 1, "similarity": 0.99}, {"text": "kept", "score": 2}],
        semantic=[
            {"title": "t", "text": "unsure", "confidence": 0.6, "similarity": 0.99},
            {"title": "t", "text": "sure", "confidence": 0.7},
        ],
        episodic=[{"text": "old", "time": datetime.now(UTC) - timedelta(weeks=3), "similarity": 0.99}, "recent"],
    )
    body = await load(http, mem, project_id=PROJECT)
    assert texts(body["core_memory"]) == ["kept"]
    assert texts(body["semantic_memory"]) == ["sure"]
    assert texts(body["episodic_memory"]) == ["recent"]


async def test_max_items_truncate_with_20_by_default_and_no_limit_when_negative(mem, http):
    mem.remember(
        core=[f"core {i}" for i in range(25)],
        semantic=[("t", f"fact {i}") for i in range(25)],
        episodic=[f"event {i}" for i in range(25)],
    )
    default = await load(http, mem, project_id=PROJECT, options={"max_user_items": 0})
    assert [len(default[name]) for name in ("core_memory", "semantic_memory", "episodic_memory")] == [20, 20, 20]

    small = await load(
        http, mem, project_id=PROJECT, options={"max_user_items": 2, "max_project_items": 3, "max_episodic_items": 1}
    )
    assert [len(small[name]) for name in ("core_memory", "semantic_memory", "episodic_memory")] == [2, 3, 1]

    unlimited = await load(
        http, mem, project_id=PROJECT, options={"max_user_items": -1, "max_project_items": -1, "max_episodic_items": -1}
    )
    assert [len(unlimited[name]) for name in ("core_memory", "semantic_memory", "episodic_memory")] == [25, 25, 25]


async def test_a_list_that_comes_out_empty_falls_back_to_everything_of_its_kind(mem, http):
    old = datetime.now(UTC) - timedelta(weeks=3)
    mem.remember(
        core=[{"text": "score 3", "score": 3}, {"text": "score 5", "score": 5}, {"text": "also 3", "score": 3}],
        semantic=[{"title": "t", "text": "conf 0.75", "confidence": 0.75}, {"title": "t", "text": "conf 0.9", "confidence": 0.9}],
        episodic=[{"text": "older", "time": old - timedelta(days=1)}, {"text": "newer", "time": old}],
        similarity=0.3,
    )
    status, _, raw = await call(
        http, mem, "/v1/memory/load", {**LOAD_BODY, "project_id": PROJECT, "options": {"min_similarity": 0.6}}
    )
    assert status == 200
    body = json.loads(raw)
    # user memory by score, then most recent (the order given); similarity 1, written as Go writes it
    assert texts(body["core_memory"]) == ["score 5", "score 3", "also 3"]
    assert [item["similarity"] for item in body["core_memory"]] == [1, 1, 1]
    assert b'"similarity":1,' not in raw and b'"similarity":1}' in raw  # `1`, not `1.0`, and last in the item
    # project facts by confidence, their similarity the confidence
    assert texts(body["semantic_memory"]) == ["conf 0.9", "conf 0.75"]
    assert [item["similarity"] for item in body["semantic_memory"]] == [0.9, 0.75]
    # events most recent first (even those older than two weeks), similarity 0.8
    assert texts(body["episodic_memory"]) == ["newer", "older"]
    assert [item["similarity"] for item in body["episodic_memory"]] == [0.8, 0.8]

    limited = await load(http, mem, options={"min_similarity": 0.6, "max_user_items": 1, "max_episodic_items": 1})
    assert texts(limited["core_memory"]) == ["score 5"] and texts(limited["episodic_memory"]) == ["newer"]


async def test_min_similarity_filters_only_while_one_item_passes(mem, http):
    mem.remember(core=[{"text": "close", "similarity": 0.8}, {"text": "far", "similarity": 0.2}])
    assert texts((await load(http, mem, options={"min_similarity": 0.7}))["core_memory"]) == ["close"]
    fallback = (await load(http, mem, options={"min_similarity": 0.9}))["core_memory"]
    assert texts(fallback) == ["close", "far"] and {item["similarity"] for item in fallback} == {1}


async def test_an_item_that_passes_with_similarity_0_keeps_it(mem, http):
    # a negative min_similarity is kept as given (only 0 means 0.5), so an orthogonal item passes the filter
    # and must not be mistaken for the fallback's
    mem.remember(core=["core"], semantic=[("t", "fact")], episodic=["event"], similarity=0.0)
    body = await load(http, mem, project_id=PROJECT, options={"min_similarity": -0.5})
    assert [body[name][0]["similarity"] for name in ("core_memory", "semantic_memory", "episodic_memory")] == [0, 0, 0]


async def test_answers_are_written_as_go_json_encoder_writes_them(mem, http):
    mem.remember(core=["a<b & c>d"])
    status, _, raw = await call(http, mem, "/v1/memory/load", LOAD_BODY)
    assert status == 200 and raw.endswith(b"}\n") and b": " not in raw
    assert b'"text":"a\\u003cb \\u0026 c\\u003ed"' in raw
    assert json.loads(raw)["core_memory"][0]["text"] == "a<b & c>d"


async def test_load_decodes_request_bodies_as_go_does(mem, http):
    mem.remember(core=["likes tea"])
    bodies = [
        b'{"USER_ID": "u", "Query": "q"}',  # names match case-insensitively
        b'{"user_id": "u", "query": "q", "unknown": [1, {"x": 2}]}',  # unknown fields ignored
        b'{"user_id": "u", "query": "q", "options": null} trailing',  # null is absent; what follows is ignored
    ]
    for data in bodies:
        status, _, raw = await call(http, mem, "/v1/memory/load", data=data)
        assert status == 200, (data, raw)
        assert texts(json.loads(raw)["core_memory"]) == ["likes tea"]


# -- validation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/memory/load", {"query": "q"}, "user_id is required"),
        ("/v1/memory/load", {"user_id": None, "query": "q"}, "user_id is required"),
        ("/v1/memory/load", {"user_id": "u", "query": ""}, "query is required"),
        ("/v1/memory/load", {"user_id": "u", "query": "q", "options": {"max_user_items": 5.0}}, "invalid request body"),
        ("/v1/memory/load", {"user_id": "u", "query": "q", "options": {"min_similarity": "0.5"}}, "invalid request body"),
        ("/v1/memory/load", {"user_id": 7, "query": "q"}, "invalid request body"),
        ("/v1/memory/load", ["user_id", "query"], "invalid request body"),
        ("/v1/memory/observe", {**OBSERVE_BODY, "user_id": ""}, "user_id is required"),
        ("/v1/memory/observe", {**OBSERVE_BODY, "conversation_id": None}, "conversation_id is required"),
        ("/v1/memory/observe", {**OBSERVE_BODY, "messages": []}, "messages are required"),
        (
            "/v1/memory/observe",
            {**OBSERVE_BODY, "messages": [{"role": "user", "content": "x", "created_at": "2025-01-02"}]},
            "invalid request body",
        ),
        ("/v1/memory/observe", {**OBSERVE_BODY, "messages": "hello"}, "invalid request body"),
    ],
)
async def test_validation_errors_are_400_with_the_handlers_messages(mem, http, path, body, message):
    status, headers, raw = await call(http, mem, path, body, headers={"X-Request-ID": "req-42"})
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert json.loads(raw) == {"error": message, "request_id": "req-42"}
    assert mem.observed == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"not json",
        b"[",
        b'{"user_id": "u", "query": "q", "options": {"min_similarity": NaN}}',
    ],
)
async def test_undecodable_bodies_are_invalid_request_body(mem, http, data):
    status, _, raw = await call(http, mem, "/v1/memory/load", data=data)
    assert status == 400 and json.loads(raw)["error"] == "invalid request body"


async def test_other_methods_and_paths_answer_as_memory_tools_mux_does(mem, http):
    status, _, raw = await call(http, mem, "/v1/memory/load", method="GET")
    assert status == 405 and json.loads(raw)["error"] == "method not allowed"
    status, headers, raw = await call(http, mem, "/v1/memory/stats", LOAD_BODY)
    assert status == 404 and raw == b"404 page not found\n"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_healthz(mem, http):
    status, _, raw = await call(http, mem, "/healthz", method="GET")
    assert status == 200 and json.loads(raw) == {"service": "memory-tools", "status": "healthy"}


# -- observe -----------------------------------------------------------------------------------------------------


async def test_observe_is_recorded_and_answered(mem, http):
    status, _, raw = await call(http, mem, "/v1/memory/observe", {**OBSERVE_BODY, "project_id": PROJECT})
    assert status == 200
    assert json.loads(raw) == {"message": "Memory observation completed", "status": "success"}
    (observed,) = await mem.wait_observed(1)
    assert observed == {**OBSERVE_BODY, "project_id": PROJECT}
    assert observed["messages"][0]["role"] == "user"
    assert mem.requests[-1]["path"] == "/v1/memory/observe" and mem.requests[-1]["json"] == observed


async def test_wait_observed_waits_for_background_calls_and_times_out(mem, http):
    async def observe_later(conversation_id):
        await asyncio.sleep(0.1)
        await call(http, mem, "/v1/memory/observe", {**OBSERVE_BODY, "conversation_id": conversation_id})

    tasks = [asyncio.create_task(observe_later(f"c-{i}")) for i in range(2)]
    observed = await mem.wait_observed(2)
    assert sorted(body["conversation_id"] for body in observed) == ["c-0", "c-1"]
    await asyncio.gather(*tasks)

    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await mem.wait_observed(3, timeout=0.2)
    assert time.monotonic() - started < 1


# -- faults ------------------------------------------------------------------------------------------------------


async def test_fail_answers_memory_tools_own_bodies_once(mem, http):
    mem.remember(core=["likes tea"])
    mem.fail(500)
    mem.fail(504)
    assert mem.pending == 2
    status, _, raw = await call(http, mem, "/v1/memory/load", LOAD_BODY, headers={"X-Request-ID": "r-1"})
    assert status == 500 and json.loads(raw) == {"error": "failed to load memories", "request_id": "r-1"}
    status, headers, raw = await call(http, mem, "/v1/memory/load", LOAD_BODY)
    assert status == 504 and raw == b"Request timeout\n" and headers["Content-Type"].startswith("text/plain")
    assert mem.pending == 0
    assert texts((await load(http, mem))["core_memory"]) == ["likes tea"]


async def test_fail_with_a_given_body_and_headers(mem, http):
    mem.fail(503, {"error": "down"}, headers={"Retry-After": "2"})
    mem.fail(502, "bad gateway")
    status, headers, raw = await call(http, mem, "/v1/memory/load", LOAD_BODY)
    assert (status, json.loads(raw), headers["Retry-After"]) == (503, {"error": "down"}, "2")
    status, headers, raw = await call(http, mem, "/v1/memory/load", LOAD_BODY)
    assert (status, raw) == (502, b"bad gateway") and headers["Content-Type"].startswith("text/plain")


async def test_faults_are_queued_per_endpoint(mem, http):
    mem.fail(500, on="observe")
    assert (await load(http, mem))["core_memory"] == []  # load does not take observe's fault
    status, _, raw = await call(http, mem, "/v1/memory/observe", OBSERVE_BODY)
    assert status == 500 and json.loads(raw)["error"] == "failed to observe memories"
    assert len(mem.observed) == 1  # recorded on arrival, even though the fault answered it
    status, _, _ = await call(http, mem, "/v1/memory/observe", OBSERVE_BODY)
    assert status == 200 and mem.pending == 0
    with pytest.raises(ValueError):
        mem.fail(500, on="stats")


async def test_delay_waits_then_answers_normally(mem, http):
    mem.remember(core=["likes tea"])
    mem.delay(0.2)
    mem.delay(0.2, on="observe")
    started = time.monotonic()
    assert texts((await load(http, mem))["core_memory"]) == ["likes tea"]
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    status, _, _ = await call(http, mem, "/v1/memory/observe", OBSERVE_BODY)
    assert status == 200 and time.monotonic() - started >= 0.2
    started = time.monotonic()
    await load(http, mem)
    assert time.monotonic() - started < 0.2


async def test_validation_errors_do_not_consume_the_queue(mem, http):
    mem.fail(500)
    mem.fail(500, on="observe")
    assert (await call(http, mem, "/v1/memory/load", {"query": "q"}))[0] == 400
    assert (await call(http, mem, "/v1/memory/load", data=b"{"))[0] == 400
    assert (await call(http, mem, "/v1/memory/observe", {**OBSERVE_BODY, "messages": []}))[0] == 400
    assert mem.pending == 2
    assert (await call(http, mem, "/v1/memory/load", LOAD_BODY))[0] == 500
    assert (await call(http, mem, "/v1/memory/observe", OBSERVE_BODY))[0] == 500


# -- authentication and request ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Missing authorization header"),
        ("secret", "Invalid authorization header format"),
        ("Basic secret", "Invalid authorization header format"),
        ("Bearer wrong", "Invalid API key"),
    ],
)
async def test_api_key_refusals_are_net_http_401s(http, authorization, message):
    async with running(FakeMemory(api_key="secret")) as mem:
        mem.fail(500)
        headers = {"Authorization": authorization} if authorization else {}
        for path, body in (("/v1/memory/load", LOAD_BODY), ("/v1/memory/observe", OBSERVE_BODY)):
            status, answer_headers, raw = await call(http, mem, path, body, headers=headers)
            assert (status, raw) == (401, f"{message}\n".encode())
            assert answer_headers["Content-Type"] == "text/plain; charset=utf-8"
        assert mem.pending == 1 and mem.observed == []


async def test_the_api_key_opens_every_path_but_healthz_needs_none(http):
    async with running(FakeMemory(api_key="secret")) as mem:
        auth = {"Authorization": "Bearer secret"}
        assert (await call(http, mem, "/v1/memory/load", LOAD_BODY, headers=auth))[0] == 200
        assert (await call(http, mem, "/v1/memory/observe", OBSERVE_BODY, headers=auth))[0] == 200
        assert (await call(http, mem, "/healthz", method="GET"))[0] == 200
        assert mem.requests[0]["headers"]["authorization"] == "Bearer secret"


async def test_every_answer_carries_x_request_id(mem, http):
    _, headers, _ = await call(http, mem, "/v1/memory/load", LOAD_BODY, headers={"X-Request-ID": "mine"})
    assert headers["X-Request-ID"] == "mine"
    _, headers, raw = await call(http, mem, "/v1/memory/load", {"query": "q"})
    assert json.loads(raw)["request_id"] == headers["X-Request-ID"]
    uuid.UUID(headers["X-Request-ID"])
    _, headers, _ = await call(http, mem, "/nowhere", method="GET", headers={"X-Request-ID": "lost"})
    assert headers["X-Request-ID"] == "lost"
