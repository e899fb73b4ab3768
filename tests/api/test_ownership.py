"""One user can never see or change another user's data.

User A (a guest) owns a project, a conversation filed in it with items, and an API key. User B
(another guest, with a conversation, an item, a project and an API key of its own) then tries
every implemented operation of openapi.yaml whose path takes a conversation, item, project or API
key id, with A's ids in every combination, through both route prefixes and both of its credentials.
Each answer must be exactly the one a random well-formed id that exists nowhere gets: 404 with the
error envelope, the same type, code and param, and the same message once the id is masked. The
list of operations is read from the contract when the test runs, and the test fails when one of
them was not exercised.

Lists, filters and cursors never show B anything of A's; B cannot file a conversation in A's
project; and afterwards A's objects are unchanged, both as the API shows them (full JSON,
``updated_at`` included) and as the database stores them (microsecond timestamps), and still work
for A.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from llm_api.contract.spec import spec_bytes
from tests.api.test_error_surface import ENVELOPE_KEYS
from tests.sql import query, query_dicts

# Path parameters that name a user's object, and the prefix of their ids.
ID_PARAMS = {"conversation_id": "conv", "item_id": "msg", "project_id": "proj", "key_id": "key"}
METHODS = ("get", "put", "post", "patch", "delete")
PREFIXES = ("", "/llm")  # every route is also served under /llm
# What the contract has today; the derived list must contain at least these (it may grow).
KNOWN_ID_OPERATIONS = {
    "getConversation",
    "updateConversation",
    "deleteConversation",
    "listConversationItems",
    "createConversationItems",
    "getConversationItem",
    "deleteConversationItem",
    "getProject",
    "updateProject",
    "deleteProject",
    "deleteApiKey",
}
SETTINGS_PATH = "/v1/users/me/settings"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


# --- the contract -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecOperation:
    operation_id: str
    method: str
    path: str
    path_params: tuple[str, ...]
    planned: bool
    body_example: Any  # the JSON request example, or None when the operation takes no body


def load_spec() -> dict:
    return yaml.safe_load(spec_bytes())


def _resolved(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        node = _pointer(spec, node["$ref"])
    return node


def _pointer(spec: dict, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def spec_operations(spec: dict) -> list[SpecOperation]:
    operations = []
    for path, item in spec["paths"].items():
        shared = [_resolved(spec, p) for p in item.get("parameters", [])]
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            params = shared + [_resolved(spec, p) for p in op.get("parameters", [])]
            path_params = tuple(p["name"] for p in params if p["in"] == "path")
            assert set(path_params) == set(re.findall(r"{([^}]+)}", path)), f"{method} {path}: path parameters"
            operations.append(
                SpecOperation(
                    op["operationId"], method.upper(), path, path_params, bool(op.get("x-planned")), _body_example(spec, op)
                )
            )
    return operations


def _body_example(spec: dict, op: dict) -> Any:
    """The operation's JSON request example (the first of ``examples``), or None when it takes no body."""
    if "requestBody" not in op:
        return None
    content = _resolved(spec, op["requestBody"])["content"]["application/json"]
    if "example" in content:
        return content["example"]
    examples = list(content.get("examples", {}).values())
    assert examples, f"{op['operationId']} takes a body but openapi.yaml gives no request example to send"
    return _resolved(spec, examples[0])["value"]


def id_operations(spec: dict) -> list[SpecOperation]:
    """Every served operation whose path takes the id of a user's object."""
    found = []
    for op in spec_operations(spec):
        if op.planned or not set(op.path_params) & set(ID_PARAMS):
            continue
        unknown = set(op.path_params) - set(ID_PARAMS)
        assert not unknown, f"{op.operation_id}: this test does not know how to fill {unknown}; extend ID_PARAMS"
        found.append(op)
    return found


def test_the_derived_operations_cover_every_user_id_in_the_contract():
    """A guard on the derivation itself: every path parameter whose ids are a user's is known here."""
    spec = load_spec()
    derived = {op.operation_id for op in id_operations(spec)}
    assert derived, "no id-bearing operation derived from openapi.yaml"
    assert KNOWN_ID_OPERATIONS <= derived, KNOWN_ID_OPERATIONS - derived
    for op in spec_operations(spec):
        if op.planned:
            continue
        path_item = spec["paths"][op.path]
        for param in [_resolved(spec, p) for p in path_item.get("parameters", [])]:
            pattern = param.get("schema", {}).get("pattern", "")
            if param["in"] == "path" and re.match(r"\^(conv|msg|proj|key)_", pattern):
                assert param["name"] in ID_PARAMS, f"{op.operation_id}: {param['name']} names a user's object"


# --- the users and their objects ----------------------------------------------------------------------


@dataclass
class User:
    id: str
    jwt: dict
    key_id: str = ""
    apikey: dict = field(default_factory=dict)
    project_id: str = ""
    conversation_id: str = ""
    item_ids: list[str] = field(default_factory=list)

    def credentials(self) -> list[tuple[str, dict]]:
        return [("jwt", self.jwt), ("apikey", self.apikey)]

    def own(self, param: str) -> str:
        return {
            "conversation_id": self.conversation_id,
            "item_id": self.item_ids[0],
            "project_id": self.project_id,
            "key_id": self.key_id,
        }[param]


def missing_id(param: str) -> str:
    """A well-formed id that exists nowhere."""
    return f"{ID_PARAMS[param]}_{''.join(secrets.choice(_ALPHABET) for _ in range(16))}"


async def expect(response, status: int) -> Any:
    assert response.status == status, f"{response.method} {response.url}: {response.status} {await response.text()}"
    return await response.json() if response.content_type == "application/json" else None


async def make_user(client, marker: str, *, project_name: str) -> User:
    tokens = await expect(await client.post("/auth/guest-login"), 201)
    user = User(id=tokens["user_id"], jwt={"Authorization": f"Bearer {tokens['access_token']}"})
    key = await expect(await client.post("/auth/api-keys", json={"name": f"key {marker}"}, headers=user.jwt), 201)
    user.key_id, user.apikey = key["id"], {"Authorization": f"Bearer {key['key']}"}
    project = await expect(
        await client.post("/v1/projects", json={"name": project_name, "instruction": f"instruction {marker}"}, headers=user.jwt),
        201,
    )
    user.project_id = project["id"]
    conversation = await expect(
        await client.post(
            "/v1/conversations",
            headers=user.jwt,
            json={
                "title": f"title {marker}",
                "metadata": {"owner": marker},
                "project_id": user.project_id,
                "referrer": f"ref-{marker}",
                "items": [
                    {"type": "message", "role": "user", "content": f"question {marker}"},
                    {"type": "message", "role": "assistant", "content": f"answer {marker}"},
                ],
            },
        ),
        200,
    )
    user.conversation_id = conversation["id"]
    added = await expect(
        await client.post(
            f"/v1/conversations/{user.conversation_id}/items",
            headers=user.jwt,
            json={
                "items": [
                    {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": f'{{"q": "{marker}"}}'},
                    {"type": "function_call_output", "call_id": "call_1", "output": f"output {marker}"},
                ],
            },
        ),
        200,
    )
    listed = await expect(
        await client.get(f"/v1/conversations/{user.conversation_id}/items?order=asc&limit=100", headers=user.jwt), 200
    )
    user.item_ids = [item["id"] for item in listed["data"]]
    assert len(user.item_ids) == 4 and user.item_ids[2:] == [item["id"] for item in added["data"]]
    return user


@dataclass
class World:
    a: User
    b: User
    marker: str  # a string that appears in A's objects only


@pytest.fixture
async def world(client) -> World:
    marker = f"secret-of-a-{secrets.token_hex(6)}"
    a = await make_user(client, marker, project_name="Thesis")
    # The same project name as A's: names are unique per user, so this is no conflict (and no oracle).
    b = await make_user(client, f"b-{secrets.token_hex(6)}", project_name="Thesis")
    return World(a, b, marker)


# --- what A has, and checking it did not change ---------------------------------------------------------


async def api_snapshot(client, user: User) -> dict:
    """Everything of the user's objects the API shows, as the user sees it (JWT: no last_used_at touch)."""

    def get(path: str):
        return client.get(path, headers=user.jwt)

    conv = f"/v1/conversations/{user.conversation_id}"
    return {
        "conversation": await expect(await get(conv), 200),
        "items": await expect(await get(f"{conv}/items?order=asc&limit=100"), 200),
        "each_item": [await expect(await get(f"{conv}/items/{item}"), 200) for item in user.item_ids],
        "project": await expect(await get(f"/v1/projects/{user.project_id}"), 200),
        "conversations": await expect(await get("/v1/conversations?limit=100"), 200),
        "projects": await expect(await get("/v1/projects?limit=100"), 200),
        "in_project": await expect(await get(f"/v1/conversations?project_id={user.project_id}"), 200),
        "api_keys": await expect(await get("/auth/api-keys"), 200),
    }


def db_snapshot(dsn: str, user_id: str) -> dict:
    """The user's rows as stored, timestamps to the microsecond."""
    queries = {
        "projects": "SELECT * FROM llm_api.projects WHERE user_id = %s ORDER BY seq",
        "conversations": "SELECT * FROM llm_api.conversations WHERE user_id = %s ORDER BY seq",
        "items": """SELECT i.* FROM llm_api.conversation_items i JOIN llm_api.conversations c ON c.id = i.conversation_id
                    WHERE c.user_id = %s ORDER BY i.seq""",
        "api_keys": "SELECT * FROM llm_api.api_keys WHERE user_id = %s ORDER BY id",
    }
    return {
        name: [
            {column: bytes(value) if isinstance(value, memoryview) else value for column, value in row.items()}
            for row in query_dicts(dsn, sql, user_id)
        ]
        for name, sql in queries.items()
    }


def without_key_use(snapshot: dict) -> dict:
    """A snapshot without ``api_keys.last_used_at``: the rows of a user whose key is in use."""
    return {**snapshot, "api_keys": [{**key, "last_used_at": None} for key in snapshot["api_keys"]]}


def db_count(dsn: str, sql: str, *params) -> int:
    return query(dsn, sql, *params)[0][0]


async def assert_still_works_for(client, user: User) -> None:
    conv = f"/v1/conversations/{user.conversation_id}"
    for headers in (user.jwt, user.apikey):  # the API key still authenticates A, as A
        listed = await expect(await client.get("/v1/conversations?limit=100", headers=headers), 200)
        assert user.conversation_id in [c["id"] for c in listed["data"]]
        items = await expect(await client.get(f"{conv}/items?order=asc&limit=100", headers=headers), 200)
        assert [item["id"] for item in items["data"]] == user.item_ids
    keys = await expect(await client.get("/auth/api-keys", headers=user.jwt), 200)
    [key] = [key for key in keys["data"] if key["id"] == user.key_id]
    assert key["status"] == "active" and key["revoked_at"] is None
    renamed = await expect(await client.post(conv, json={"title": "still mine"}, headers=user.jwt), 200)
    assert renamed["title"] == "still mine" and renamed["project_id"] == user.project_id
    favorite = await expect(
        await client.patch(f"/v1/projects/{user.project_id}", json={"is_favorite": True}, headers=user.jwt), 200
    )
    assert favorite["is_favorite"] is True
    await expect(await client.delete(f"{conv}/items/{user.item_ids[-1]}", headers=user.jwt), 200)
    await expect(await client.get(f"{conv}/items/{user.item_ids[-1]}", headers=user.jwt), 404)


# --- cross-user attempts ------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Every cross-user attempt and its status."""

    attempts: list[tuple[str, int]] = field(default_factory=list)

    def record(self, label: str, status: int) -> None:
        self.attempts.append((label, status))

    def assert_all_404(self, expected_count: int) -> None:
        assert len(self.attempts) == expected_count, (len(self.attempts), expected_count)
        wrong = [(label, status) for label, status in self.attempts if status != 404]
        assert not wrong, wrong


async def answer(client, method: str, path: str, headers: dict, body: Any) -> tuple[int, dict | None]:
    kwargs = {"json": body} if body is not None else {}
    response = await client.request(method, path, headers=headers, **kwargs)
    if response.status == 204:
        return response.status, None
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


def masked(error: dict, ids: dict[str, str]) -> dict:
    """The error with each id in its message replaced by the parameter's name."""
    message = error["message"]
    for param, value in ids.items():
        message = message.replace(value, f"<{param}>")
    return {**error, "message": message}


async def compare_with_missing(
    client,
    ledger: Ledger,
    label: str,
    method: str,
    path_template: str,
    attempt_ids: dict[str, str],
    foreign: set[str],
    headers: dict,
    body: Any,
) -> dict:
    """Make the call with A's ids, then with missing ids in their place; both must be the same 404."""
    missing_ids = {param: (missing_id(param) if param in foreign else value) for param, value in attempt_ids.items()}
    status, got = await answer(client, method, path_template.format(**attempt_ids), headers, body)
    ledger.record(label, status)
    base_status, baseline = await answer(client, method, path_template.format(**missing_ids), headers, body)
    assert base_status == 404, (label, "baseline", base_status, baseline)
    assert status == 404, (label, status, got)
    assert set(got) == {"error"} and set(got["error"]) == ENVELOPE_KEYS, (label, got)
    foreign_ids = {param: value for param, value in attempt_ids.items() if param in foreign}
    foreign_missing = {param: value for param, value in missing_ids.items() if param in foreign}
    assert masked(got["error"], foreign_ids) == masked(baseline["error"], foreign_missing), (label, got, baseline)
    assert got["error"]["code"] and got["error"]["param"] in ID_PARAMS, (label, got)
    return got["error"]


def assignments(op: SpecOperation) -> list[frozenset[str]]:
    """Which of the operation's path parameters get A's id (the others get B's own): every non-empty subset."""
    params = op.path_params
    subsets = []
    for mask in range(1, 2 ** len(params)):
        subsets.append(frozenset(p for i, p in enumerate(params) if mask >> i & 1))
    return subsets


async def test_every_id_route_answers_another_user_exactly_as_a_missing_id(client, database_dsn, world):
    a, b = world.a, world.b
    operations = id_operations(load_spec())
    assert operations and KNOWN_ID_OPERATIONS <= {op.operation_id for op in operations}
    api_before, db_before = await api_snapshot(client, a), db_snapshot(database_dsn, a.id)
    b_db_before = db_snapshot(database_dsn, b.id)

    ledger, exercised, expected = Ledger(), Counter(), 0
    for op in operations:
        for foreign in assignments(op):
            ids = {param: (a.own(param) if param in foreign else b.own(param)) for param in op.path_params}
            for prefix in PREFIXES:
                for auth, headers in b.credentials():
                    expected += 1
                    label = f"{op.operation_id} {op.method} {prefix}{op.path} A's {sorted(foreign)} as B ({auth})"
                    await compare_with_missing(
                        client, ledger, label, op.method, prefix + op.path, ids, set(foreign), headers, op.body_example
                    )
                    exercised[(op.operation_id, foreign)] += 1

    # Every id-bearing operation of the contract, with every combination of A's ids, was tried.
    assert {op_id for op_id, _ in exercised} == {op.operation_id for op in operations}
    assert all(count == len(PREFIXES) * 2 for count in exercised.values())
    # B's own conversation with A's item id, explicitly.
    for op_id in ("getConversationItem", "deleteConversationItem"):
        assert exercised[(op_id, frozenset({"item_id"}))] == 4
    ledger.assert_all_404(expected)
    assert expected == sum(len(assignments(op)) for op in operations) * len(PREFIXES) * 2 >= 60

    # Nothing of A's changed, not even a timestamp.
    assert await api_snapshot(client, a) == api_before
    assert db_snapshot(database_dsn, a.id) == db_before
    # B's key did authenticate B (last_used_at), but nothing of B's changed either: every attempt was refused.
    assert without_key_use(db_snapshot(database_dsn, b.id)) == without_key_use(b_db_before)
    await assert_still_works_for(client, a)


async def test_another_users_project_cannot_hold_a_new_conversation(client, database_dsn, world):
    a, b = world.a, world.b
    ledger = Ledger()
    conversations_before = db_count(database_dsn, "SELECT count(*) FROM llm_api.conversations")
    items_before = db_count(database_dsn, "SELECT count(*) FROM llm_api.conversation_items")
    b_list_before = await expect(await client.get("/v1/conversations", headers=b.jwt), 200)
    a_before = await api_snapshot(client, a)
    body = {
        "title": "filed in A's project",
        "project_id": "{project_id}",
        "items": [{"type": "message", "role": "user", "content": "hello"}],
    }
    for prefix in PREFIXES:
        for auth, headers in b.credentials():
            for variant in (body, {"project_id": "{project_id}"}):
                # The path is fixed here and the id travels in the body: fill the body for each call.
                attempt = {**variant, "project_id": a.project_id}
                missing = {**variant, "project_id": missing_id("project_id")}
                status, got = await answer(client, "POST", f"{prefix}/v1/conversations", headers, attempt)
                ledger.record(f"createConversation project_id=A's {prefix} ({auth})", status)
                base_status, baseline = await answer(client, "POST", f"{prefix}/v1/conversations", headers, missing)
                assert (status, base_status) == (404, 404), (got, baseline)
                assert masked(got["error"], {"p": a.project_id}) == masked(baseline["error"], {"p": missing["project_id"]})
                assert got["error"]["param"] == "project_id"
    ledger.assert_all_404(len(PREFIXES) * 2 * 2)

    assert db_count(database_dsn, "SELECT count(*) FROM llm_api.conversations") == conversations_before
    assert db_count(database_dsn, "SELECT count(*) FROM llm_api.conversation_items") == items_before
    assert db_count(database_dsn, "SELECT count(*) FROM llm_api.conversations WHERE project_id = %s", a.project_id) == 1
    assert await expect(await client.get("/v1/conversations", headers=b.jwt), 200) == b_list_before
    assert await api_snapshot(client, a) == a_before


async def test_another_users_project_cannot_be_set_on_an_own_conversation(client, database_dsn, world):
    a, b = world.a, world.b
    ledger = Ledger()
    conv = f"/v1/conversations/{b.conversation_id}"
    b_before = await expect(await client.get(conv, headers=b.jwt), 200)
    b_rows_before, a_rows_before = db_snapshot(database_dsn, b.id), db_snapshot(database_dsn, a.id)
    variants = [{}, {"title": "moved", "metadata": {"moved": "yes"}, "is_archived": True}]
    for prefix in PREFIXES:
        for auth, headers in b.credentials():
            for extra in variants:
                status, got = await answer(client, "POST", prefix + conv, headers, {**extra, "project_id": a.project_id})
                ledger.record(f"updateConversation project_id=A's +{sorted(extra)} {prefix} ({auth})", status)
                missing = missing_id("project_id")
                base_status, baseline = await answer(client, "POST", prefix + conv, headers, {**extra, "project_id": missing})
                assert (status, base_status) == (404, 404), (got, baseline)
                assert masked(got["error"], {"p": a.project_id}) == masked(baseline["error"], {"p": missing})
                assert got["error"]["param"] == "project_id"
    ledger.assert_all_404(len(PREFIXES) * 2 * len(variants))

    # Nothing changed: not the project, not the title sent alongside, not updated_at.
    assert await expect(await client.get(conv, headers=b.jwt), 200) == b_before
    assert without_key_use(db_snapshot(database_dsn, b.id)) == without_key_use(b_rows_before)
    assert db_snapshot(database_dsn, a.id) == a_rows_before


async def all_pages(client, path: str, headers: dict, order: str) -> tuple[list[dict], list[str]]:
    """Every element of a paged list, following `after`; and the raw text of each page."""
    data, texts, after = [], [], None
    while True:
        query = f"?order={order}&limit=2" + (f"&after={after}" if after else "")
        response = await client.get(path + query, headers=headers)
        texts.append(await response.text())
        page = await expect(response, 200)
        data += page["data"]
        if not page["has_more"]:
            return data, texts
        after = page["last_id"]


async def test_lists_filters_and_cursors_never_show_another_users_objects(client, world):
    a, b = world.a, world.b
    # B gets a second conversation, outside any project, so that lists have pages.
    await expect(await client.post("/v1/conversations", json={"title": "second"}, headers=b.jwt), 200)
    a_ids = {a.conversation_id, a.project_id, a.key_id, *a.item_ids}
    for prefix in PREFIXES:
        for auth, headers in b.credentials():
            seen: list[str] = []
            for order in ("asc", "desc"):
                conversations, texts = await all_pages(client, f"{prefix}/v1/conversations", headers, order)
                assert {c["id"] for c in conversations} >= {b.conversation_id} and len(conversations) == 2
                projects, more = await all_pages(client, f"{prefix}/v1/projects", headers, order)
                assert [p["id"] for p in projects] == [b.project_id]
                items, most = await all_pages(client, f"{prefix}/v1/conversations/{b.conversation_id}/items", headers, order)
                assert sorted(i["id"] for i in items) == sorted(b.item_ids)
                seen += [obj["id"] for obj in conversations + projects + items]
                texts += more + most
            keys = await expect(await client.get(f"{prefix}/auth/api-keys", headers=headers), 200)
            assert [k["id"] for k in keys["data"]] == [b.key_id]
            seen += [k["id"] for k in keys["data"]]
            texts.append(await (await client.get(f"{prefix}/auth/api-keys", headers=headers)).text())
            assert not a_ids & set(seen), (auth, prefix)
            for text in texts:
                assert world.marker not in text and not any(a_id in text for a_id in a_ids), (auth, prefix, text)

            # A's project as a filter: an empty list, as for a project that does not exist.
            filtered = await expect(
                await client.get(f"{prefix}/v1/conversations?project_id={a.project_id}", headers=headers), 200
            )
            nowhere = await expect(
                await client.get(f"{prefix}/v1/conversations?project_id={missing_id('project_id')}", headers=headers), 200
            )
            empty = {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False, "total": 0}
            assert filtered == nowhere == empty
            by_referrer = await expect(
                await client.get(f"{prefix}/v1/conversations?referrer=ref-{world.marker}", headers=headers), 200
            )
            assert by_referrer == empty

            # A's ids as cursors: an empty page, exactly as an id that exists nowhere.
            cursors = [
                ("/v1/conversations", a.conversation_id, "conversation_id"),
                ("/v1/projects", a.project_id, "project_id"),
                (f"/v1/conversations/{b.conversation_id}/items", a.item_ids[1], "item_id"),
            ]
            for path, foreign, kind in cursors:
                fresh = missing_id(kind)
                for order in ("asc", "desc"):
                    page = await expect(await client.get(f"{prefix}{path}?order={order}&after={foreign}", headers=headers), 200)
                    baseline = await expect(await client.get(f"{prefix}{path}?order={order}&after={fresh}", headers=headers), 200)
                    assert page == baseline and page["data"] == [] and page["has_more"] is False, (path, order, page)


async def test_an_item_id_of_another_users_conversation_is_free_in_ones_own(client, database_dsn, world):
    """Item ids are unique per conversation: reusing one of A's is no conflict (no existence oracle)."""
    a, b = world.a, world.b
    a_before = db_snapshot(database_dsn, a.id)
    path = f"/v1/conversations/{b.conversation_id}/items"
    for item_id in (a.item_ids[0], missing_id("item_id")):
        added = await expect(
            await client.post(
                path, headers=b.jwt, json={"items": [{"type": "message", "id": item_id, "role": "user", "content": "mine"}]}
            ),
            200,
        )
        assert [item["id"] for item in added["data"]] == [item_id]
        got = await expect(await client.get(f"{path}/{item_id}", headers=b.jwt), 200)
        assert got["content"] == [{"type": "input_text", "text": "mine"}]
    assert db_snapshot(database_dsn, a.id) == a_before
    original = await expect(await client.get(f"/v1/conversations/{a.conversation_id}/items/{a.item_ids[0]}", headers=a.jwt), 200)
    assert original["content"] == [{"type": "input_text", "text": f"question {world.marker}"}]


async def test_settings_are_the_callers_own(client, world):
    """The settings routes take no id; when they are served, each user sees and changes only their own."""
    a, b = world.a, world.b
    spec = load_spec()
    settings_ops = {op.method: op for op in spec_operations(spec) if op.path == SETTINGS_PATH}
    assert set(settings_ops) == {"GET", "PATCH"}, settings_ops
    planned = {op.planned for op in settings_ops.values()}
    assert len(planned) == 1, "getUserSettings and updateUserSettings must be served (or planned) together"
    if planned == {True}:
        # Out of scope while planned: still nothing of anyone's is served.
        for method, op in settings_ops.items():
            for user in (a, b):
                status, got = await answer(client, method, SETTINGS_PATH, user.jwt, op.body_example)
                assert status == 501 and got["error"]["code"] == "not_implemented", got
        return

    b_default = await expect(await client.get(SETTINGS_PATH, headers=b.jwt), 200)
    a_default = await expect(await client.get(SETTINGS_PATH, headers=a.jwt), 200)
    assert a_default == b_default and b_default["created_at"] is None
    a_changed = await expect(await client.patch(SETTINGS_PATH, json=settings_ops["PATCH"].body_example, headers=a.jwt), 200)
    assert a_changed != a_default and a_changed["created_at"] is not None
    for prefix in PREFIXES:
        for _, headers in b.credentials():
            assert await expect(await client.get(prefix + SETTINGS_PATH, headers=headers), 200) == b_default
    b_changed = await expect(
        await client.patch(
            SETTINGS_PATH,
            headers=b.apikey,
            json={"profile_settings": {"nick_name": "Bee", "more_about_you": "not A"}, "enable_trace": True},
        ),
        200,
    )
    assert b_changed["profile_settings"]["nick_name"] == "Bee"
    for _, headers in a.credentials():
        assert await expect(await client.get(SETTINGS_PATH, headers=headers), 200) == a_changed
