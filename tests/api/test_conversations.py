"""Conversations and their items over real HTTP: validation, normalisation of the item shapes Jan
clients send, updates, paging, ownership and deletion (strict contract mode throughout)."""

from __future__ import annotations

import asyncio

import pytest

from tests.api.test_builtin_auth import rows
from tests.api.test_error_surface import error_of

CONVERSATION_KEYS = {
    "id",
    "object",
    "created_at",
    "updated_at",
    "metadata",
    "title",
    "project_id",
    "referrer",
    "is_archived",
    "archived_at",
}
PAGE_KEYS = {"object", "data", "first_id", "last_id", "has_more"}


def user_text(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def without_volatile(item: dict) -> dict:
    return {key: value for key, value in item.items() if key not in ("id", "created_at")}


# ---------------------------------------------------------------- create


async def test_create_with_title_metadata_referrer_and_project(me):
    project = await me.project("Travel")
    conversation = await me.conversation(
        title="Trip to Lyon",
        metadata={"topic": "travel"},
        referrer="jan-web",
        project_id=project["id"],
    )
    assert set(conversation) == CONVERSATION_KEYS
    assert conversation["id"].startswith("conv_") and conversation["object"] == "conversation"
    assert (conversation["title"], conversation["metadata"], conversation["referrer"], conversation["project_id"]) == (
        "Trip to Lyon",
        {"topic": "travel"},
        "jan-web",
        project["id"],
    )
    assert conversation["is_archived"] is False and conversation["archived_at"] is None
    assert conversation["created_at"] == conversation["updated_at"] > 0
    assert await me.call("GET", f"/v1/conversations/{conversation['id']}") == conversation


async def test_create_without_a_body_gives_an_empty_conversation(me):
    response = await me.client.post("/v1/conversations", headers=me.headers)
    assert response.status == 200
    conversation = await response.json()
    assert (conversation["title"], conversation["metadata"], conversation["referrer"], conversation["project_id"]) == (
        None,
        {},
        None,
        None,
    )
    assert (await me.items(conversation["id"]))["data"] == []


@pytest.mark.parametrize("title", ["", "   "])
async def test_blank_title_is_no_title(me, title):
    assert (await me.conversation(title=title))["title"] is None
    conversation = await me.conversation(title="Named")
    updated = await me.call("POST", f"/v1/conversations/{conversation['id']}", json={"title": title})
    assert updated["title"] is None


async def test_metadata_at_its_limits_is_accepted(me):
    metadata = {f"k{n}": "v" * 512 for n in range(15)} | {"k" * 64: ""}
    assert (await me.conversation(metadata=metadata))["metadata"] == metadata


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{n}": "v" for n in range(17)},
        {"k" * 65: "v"},
        {"topic": "v" * 513},
        {"topic": "a\x00b"},
        {"a\x00b": "v"},
        {"topic": 5},
    ],
)
async def test_metadata_beyond_its_limits_is_refused(me, metadata):
    error = await me.error("POST", "/v1/conversations", 400, json={"metadata": metadata})
    assert error["param"].startswith("metadata") and error["type"] == "invalid_request_error"
    conversation = await me.conversation()
    error = await me.error("POST", f"/v1/conversations/{conversation['id']}", 400, json={"metadata": metadata})
    assert error["param"].startswith("metadata")


async def test_title_length_and_characters(me):
    assert (await me.conversation(title="t" * 256))["title"] == "t" * 256
    for title in ["t" * 257, "tab\there", "nul\x00"]:
        error = await me.error("POST", "/v1/conversations", 400, json={"title": title})
        assert error["param"] == "title"


async def test_unknown_or_foreign_project_is_404(me, someone_else):
    error = await me.error("POST", "/v1/conversations", 404, json={"project_id": "proj_doesnotexist"})
    assert error["param"] == "project_id" and error["code"] == "project_not_found"
    theirs = await someone_else.project("Private")
    error = await me.error("POST", "/v1/conversations", 404, json={"project_id": theirs["id"]})
    assert error["param"] == "project_id"
    mine = await me.conversation()
    error = await me.error("POST", f"/v1/conversations/{mine['id']}", 404, json={"project_id": theirs["id"]})
    assert error["param"] == "project_id"
    assert (await me.call("GET", f"/v1/conversations/{mine['id']}"))["project_id"] is None
    assert (await me.call("GET", "/v1/conversations"))["total"] == 1  # the refused create stored nothing


async def test_create_takes_at_most_20_items(me):
    error = await me.error("POST", "/v1/conversations", 400, json={"items": [user_text(f"m{n}") for n in range(21)]})
    assert error["param"] == "items"
    assert (await me.call("GET", "/v1/conversations"))["total"] == 0
    conversation = await me.conversation(items=[user_text(f"m{n}") for n in range(20)])
    page = await me.items(conversation["id"], order="asc", limit=100)
    assert [item["content"][0]["text"] for item in page["data"]] == [f"m{n}" for n in range(20)]


async def test_unknown_body_field_is_refused(me):
    error = await me.error("POST", "/v1/conversations", 400, json={"titel": "typo"})
    assert (error["param"], error["code"]) == ("titel", "unknown_parameter")


# ---------------------------------------------------------------- item shapes


async def test_jan_variants_are_stored_in_openai_shapes(me):
    conversation = await me.conversation()
    created = await me.add(
        conversation["id"],
        [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "input_text": "x"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "text", "text": {"text": "y", "annotations": []}}]},
            {"type": "message", "role": "assistant", "content": [{"type": "text", "text": {"text": "no annotations key"}}]},
            {"type": "message", "role": "user", "content": [{"type": "image", "image": {"url": "jan_01hq2w3e4r5t"}}]},
            {"role": "user", "content": "plain user"},
            {"role": "assistant", "content": "plain assistant"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "output_text": {"text": "nested", "annotations": []}}],
            },
            {"type": "message", "role": "system", "content": [{"type": "text", "text": "flat system"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "flat assistant"}]},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "image_url": "https://example.org/a.png", "detail": "low"}],
            },
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        ],
    )
    expected = [
        ("user", [{"type": "input_text", "text": "x"}]),
        ("assistant", [{"type": "output_text", "text": "y", "annotations": [], "logprobs": []}]),
        ("assistant", [{"type": "output_text", "text": "no annotations key", "annotations": [], "logprobs": []}]),
        ("user", [{"type": "input_image", "image_url": "jan_01hq2w3e4r5t", "file_id": None, "detail": "auto"}]),
        ("user", [{"type": "input_text", "text": "plain user"}]),
        ("assistant", [{"type": "output_text", "text": "plain assistant", "annotations": [], "logprobs": []}]),
        ("assistant", [{"type": "output_text", "text": "nested", "annotations": [], "logprobs": []}]),
        ("system", [{"type": "input_text", "text": "flat system"}]),
        ("assistant", [{"type": "output_text", "text": "flat assistant", "annotations": [], "logprobs": []}]),
        ("user", [{"type": "input_image", "image_url": "https://example.org/a.png", "file_id": None, "detail": "low"}]),
        ("assistant", [{"type": "refusal", "refusal": "No."}]),
    ]
    expected_items = [{"type": "message", "status": "completed", "role": role, "content": content} for role, content in expected]
    assert [without_volatile(item) for item in created] == expected_items
    listed = await me.items(conversation["id"], order="asc")
    assert listed["data"] == created
    for item in created:
        assert await me.call("GET", f"/v1/conversations/{conversation['id']}/items/{item['id']}") == item


async def test_annotations_are_kept_whole(me):
    """Annotations come back with every field they were given (url, title, indexes, file ids), in
    Jan's nested text and in OpenAI's output_text alike."""
    conversation = await me.conversation()
    url = {"type": "url_citation", "url": "https://example.org", "title": "Example", "start_index": 0, "end_index": 1}
    file = {"type": "file_citation", "file_id": "file_abc", "filename": "notes.pdf", "index": 3}
    created = await me.add(
        conversation["id"],
        [
            {"type": "message", "role": "assistant", "content": [{"type": "text", "text": {"text": "y", "annotations": [url]}}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "z", "annotations": [url, file]}],
            },
        ],
    )
    expected = [
        [{"type": "output_text", "text": "y", "annotations": [url], "logprobs": []}],
        [{"type": "output_text", "text": "z", "annotations": [url, file], "logprobs": []}],
    ]
    assert [item["content"] for item in created] == expected
    assert [item["content"] for item in (await me.items(conversation["id"], order="asc"))["data"]] == expected


async def test_function_call_items_round_trip(me):
    conversation = await me.conversation()
    call = {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": '{"city": "Lyon"}'}
    output = {"type": "function_call_output", "call_id": "call_abc", "output": '{"celsius": 21}', "status": "incomplete"}
    created = await me.add(conversation["id"], [call, output])
    assert [without_volatile(item) for item in created] == [{**call, "status": "completed"}, output]
    for item in created:
        assert item["id"].startswith("msg_")
        assert await me.call("GET", f"/v1/conversations/{conversation['id']}/items/{item['id']}") == item


@pytest.mark.parametrize(
    "content",
    [
        "t" * 100001,
        [{"type": "input_text", "text": "t" * 100001}],
        "nul\x00byte",
        [{"type": "input_text", "text": "nul\x00byte"}],
        "",
        [],
    ],
)
async def test_bad_text_is_refused(me, content):
    conversation = await me.conversation()
    error = await me.error(
        "POST", f"/v1/conversations/{conversation['id']}/items", 400, json={"items": [{"role": "user", "content": content}]}
    )
    assert error["param"].startswith("items[0]")
    assert (await me.items(conversation["id"]))["data"] == []


async def test_text_of_100000_characters_is_accepted(me):
    conversation = await me.conversation()
    [item] = await me.add(conversation["id"], [{"role": "user", "content": "t" * 100000}])
    assert item["content"] == [{"type": "input_text", "text": "t" * 100000}]


async def test_client_chosen_ids_are_kept_and_unique_per_conversation(me, database_dsn):
    conversation = await me.conversation()
    [first] = await me.add(conversation["id"], [{**user_text("first"), "id": "msg_mine1"}])
    assert first["id"] == "msg_mine1"
    assert (await me.call("GET", f"/v1/conversations/{conversation['id']}/items/msg_mine1"))["content"][0]["text"] == "first"

    # The same id again, alone or among new items: 409, and nothing of the request is kept.
    before = await me.items(conversation["id"], order="asc")
    touched = "SELECT updated_at FROM llm_api.conversations WHERE id = %s"
    touched_before = rows(database_dsn, touched, conversation["id"])
    for items in (
        [{**user_text("again"), "id": "msg_mine1"}],
        [user_text("new one"), {**user_text("again"), "id": "msg_mine1"}],
        [{**user_text("a"), "id": "msg_twice"}, {**user_text("b"), "id": "msg_twice"}],
    ):
        response = await me.client.post(
            f"/v1/conversations/{conversation['id']}/items", json={"items": items}, headers=me.headers
        )
        error = await error_of(response, 409)
        assert error["code"] == "duplicate_item_id" and error["param"] == "items"
        assert response.headers["x-should-retry"] == "false"
    assert await me.items(conversation["id"], order="asc") == before
    assert rows(database_dsn, touched, conversation["id"]) == touched_before  # not even touched

    # Duplicates inside a new conversation's initial items: no conversation is created.
    total = (await me.call("GET", "/v1/conversations"))["total"]
    await me.error(
        "POST",
        "/v1/conversations",
        409,
        json={"items": [{**user_text("a"), "id": "msg_twice"}, {**user_text("b"), "id": "msg_twice"}]},
    )
    assert (await me.call("GET", "/v1/conversations"))["total"] == total

    # Ids are unique per conversation only.
    other = await me.conversation()
    [copy] = await me.add(other["id"], [{**user_text("elsewhere"), "id": "msg_mine1"}])
    assert copy["id"] == "msg_mine1"


@pytest.mark.parametrize("item_id", ["msg_UPPER", "item_1", "msg_", "msg_a-b"])
async def test_malformed_client_ids_are_refused(me, item_id):
    conversation = await me.conversation()
    error = await me.error(
        "POST", f"/v1/conversations/{conversation['id']}/items", 400, json={"items": [{**user_text("x"), "id": item_id}]}
    )
    assert error["param"].startswith("items[0]")


# ---------------------------------------------------------------- update


async def test_update_title_metadata_and_project(me):
    project = await me.project("Work")
    conversation = await me.conversation(title="Old", metadata={"a": "1", "b": "2"}, referrer="jan-web")
    path = f"/v1/conversations/{conversation['id']}"

    updated = await me.call("POST", path, json={"title": "New", "metadata": {"c": "3"}})
    assert (updated["title"], updated["metadata"]) == ("New", {"c": "3"})  # replaced, not merged
    assert updated["referrer"] == "jan-web" and updated["created_at"] == conversation["created_at"]

    untouched = await me.call("POST", path, json={})
    assert (untouched["title"], untouched["metadata"], untouched["project_id"]) == ("New", {"c": "3"}, None)

    assert (await me.call("POST", path, json={"metadata": None}))["metadata"] == {}
    attached = await me.call("POST", path, json={"project_id": project["id"]})
    assert attached["project_id"] == project["id"] and attached["title"] == "New"
    assert (await me.call("POST", path, json={"title": "Kept"}))["project_id"] == project["id"]
    detached = await me.call("POST", path, json={"project_id": None})
    assert detached["project_id"] is None and detached["title"] == "Kept"
    assert await me.call("GET", path) == detached


async def test_update_archives_and_unarchives(me):
    conversation = await me.conversation()
    path = f"/v1/conversations/{conversation['id']}"
    archived = await me.call("POST", path, json={"is_archived": True})
    assert archived["is_archived"] is True and archived["archived_at"] >= conversation["created_at"]
    again = await me.call("POST", path, json={"archived": True, "title": "Still archived"})
    assert again["is_archived"] is True and again["archived_at"] == archived["archived_at"]  # the first time stays
    kept = await me.call("POST", path, json={"title": "No change to archiving"})
    assert kept["is_archived"] is True and kept["archived_at"] == archived["archived_at"]

    cleared = await me.call("POST", path, json={"archived": False})
    assert cleared["is_archived"] is False and cleared["archived_at"] is None
    assert (await me.call("POST", path, json={"is_archived": True}))["is_archived"] is True
    assert (await me.call("POST", path, json={"is_archived": False}))["archived_at"] is None
    # is_archived wins over its alias when both are sent.
    both = await me.call("POST", path, json={"is_archived": True, "archived": False})
    assert both["is_archived"] is True


async def test_update_moves_updated_at(me, database_dsn):
    conversation = await me.conversation(title="Before")
    path = f"/v1/conversations/{conversation['id']}"
    await asyncio.sleep(1.05)  # timestamps are whole seconds
    updated = await me.call("POST", path, json={"title": "After"})
    assert updated["updated_at"] > conversation["updated_at"]
    assert updated["created_at"] == conversation["created_at"]
    [(created_at, updated_at)] = rows(
        database_dsn, "SELECT created_at, updated_at FROM llm_api.conversations WHERE id = %s", conversation["id"]
    )
    assert updated_at > created_at


async def test_update_of_an_unknown_or_foreign_conversation_is_404(me, someone_else):
    theirs = await someone_else.conversation(title="Theirs")
    for conversation_id in [theirs["id"], "conv_doesnotexist"]:
        error = await me.error("POST", f"/v1/conversations/{conversation_id}", 404, json={"title": "Mine now"})
        assert (error["param"], error["code"]) == ("conversation_id", "conversation_not_found")
        await me.error("GET", f"/v1/conversations/{conversation_id}", 404)
        await me.error("DELETE", f"/v1/conversations/{conversation_id}", 404)
        await me.error("GET", f"/v1/conversations/{conversation_id}/items", 404)
        await me.error("POST", f"/v1/conversations/{conversation_id}/items", 404, json={"items": [user_text("x")]})
    assert (await someone_else.call("GET", f"/v1/conversations/{theirs['id']}")) == theirs
    assert (await someone_else.items(theirs["id"]))["data"] == []


async def test_malformed_conversation_id_is_400(me):
    error = await me.error("GET", "/v1/conversations/not-a-conversation", 400)
    assert error["param"] == "conversation_id"


# ---------------------------------------------------------------- list conversations


async def test_list_pages_through_every_conversation_once(me):
    created = [(await me.conversation(title=f"c{n}"))["id"] for n in range(7)]

    first = await me.call("GET", "/v1/conversations")
    assert set(first) == PAGE_KEYS | {"total"}
    assert [row["id"] for row in first["data"]] == list(reversed(created))  # newest first by default
    assert first["has_more"] is False and first["total"] == 7
    assert (first["first_id"], first["last_id"]) == (created[-1], created[0])

    for order, expected in [("asc", created), ("desc", list(reversed(created)))]:
        for limit in (1, 2, 3, 7, 100):
            assert await me.walk("/v1/conversations", limit=limit, order=order) == expected

    page = await me.call("GET", "/v1/conversations", params={"limit": 3, "order": "asc"})
    assert (page["has_more"], page["total"], page["first_id"], page["last_id"]) == (True, 7, created[0], created[2])
    last = await me.call("GET", "/v1/conversations", params={"limit": 3, "order": "asc", "after": created[5]})
    assert ([row["id"] for row in last["data"]], last["has_more"], last["total"]) == ([created[6]], False, 7)


async def test_list_filters_by_project_and_referrer(me):
    project = await me.project("Filtered")
    in_project = [(await me.conversation(project_id=project["id"]))["id"] for _ in range(3)]
    from_web = [(await me.conversation(referrer="jan-web"))["id"] for _ in range(2)]
    both = (await me.conversation(project_id=project["id"], referrer="jan-web"))["id"]
    await me.conversation()

    by_project = await me.call("GET", "/v1/conversations", params={"project_id": project["id"], "order": "asc"})
    assert [row["id"] for row in by_project["data"]] == [*in_project, both] and by_project["total"] == 4
    by_referrer = await me.call("GET", "/v1/conversations", params={"referrer": "jan-web", "order": "asc"})
    assert [row["id"] for row in by_referrer["data"]] == [*from_web, both] and by_referrer["total"] == 3
    combined = await me.call("GET", "/v1/conversations", params={"referrer": "jan-web", "project_id": project["id"]})
    assert [row["id"] for row in combined["data"]] == [both] and combined["total"] == 1
    assert await me.walk("/v1/conversations", project_id=project["id"], limit=1, order="asc") == [*in_project, both]
    nothing = await me.call("GET", "/v1/conversations", params={"referrer": "elsewhere"})
    assert (nothing["data"], nothing["total"], nothing["has_more"]) == ([], 0, False)
    assert (await me.call("GET", "/v1/conversations"))["total"] == 7


async def test_unknown_or_foreign_after_gives_an_empty_page(me, someone_else):
    await me.conversation()
    theirs = await someone_else.conversation()
    for after in ["conv_doesnotexist", theirs["id"]]:
        for order in ("asc", "desc"):
            page = await me.call("GET", "/v1/conversations", params={"after": after, "order": order})
            assert page == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False, "total": 1}


async def test_conversations_of_others_are_never_listed(me, someone_else):
    mine = (await me.conversation())["id"]
    await someone_else.conversation()
    page = await me.call("GET", "/v1/conversations")
    assert [row["id"] for row in page["data"]] == [mine] and page["total"] == 1


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_paging_is_stable_while_conversations_are_created(me, order):
    existing = [(await me.conversation())["id"] for _ in range(6)]
    seen: list[str] = []
    added: list[str] = []
    after = None
    while True:
        params = {"limit": 2, "order": order, **({"after": after} if after else {})}
        page = await me.call("GET", "/v1/conversations", params=params)
        seen += [row["id"] for row in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
        added.append((await me.conversation())["id"])  # a new conversation between pages
    assert len(seen) == len(set(seen))
    if order == "asc":
        assert seen == existing + added  # new ones come after the old, in order
    else:
        assert seen == list(reversed(existing))  # new ones are newer than the first page


@pytest.mark.parametrize(
    "params,param",
    [
        ({"limt": "5"}, "limt"),
        ({"cursor": "conv_abc"}, "cursor"),
        ({"offset": "0"}, "offset"),
    ],
)
async def test_unknown_query_parameter_is_refused(me, params, param):
    error = await me.error("GET", "/v1/conversations", 400, params=params)
    assert (error["param"], error["code"]) == (param, "unknown_parameter")


@pytest.mark.parametrize(
    "params,param",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "newest"}, "order"),
        ({"after": "proj_abc"}, "after"),
        ({"project_id": "conv_abc"}, "project_id"),
        ({"referrer": "has space"}, "referrer"),
    ],
)
async def test_bad_list_parameters_are_refused(me, params, param):
    error = await me.error("GET", "/v1/conversations", 400, params=params)
    assert error["param"] == param


# ---------------------------------------------------------------- items


async def test_items_list_order_limits_and_paging(me):
    conversation = await me.conversation()
    path = f"/v1/conversations/{conversation['id']}/items"
    added = [item["id"] for item in await me.add(conversation["id"], [user_text(f"m{n}") for n in range(20)])]
    added += [item["id"] for item in await me.add(conversation["id"], [user_text(f"m{n}") for n in range(20, 25)])]

    default = await me.items(conversation["id"])
    assert set(default) == PAGE_KEYS  # no total on items
    assert [item["id"] for item in default["data"]] == list(reversed(added))[:20]  # newest first, 20 by default
    assert default["has_more"] is True and default["last_id"] == added[5]

    for order, expected in [("asc", added), ("desc", list(reversed(added)))]:
        for limit in (1, 4, 25, 100):
            assert await me.walk(path, limit=limit, order=order) == expected
    one = await me.items(conversation["id"], limit=1, order="asc", after=added[23])
    assert ([item["id"] for item in one["data"]], one["has_more"]) == ([added[24]], False)
    end = await me.items(conversation["id"], order="asc", after=added[24])
    assert end == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}

    for limit in ("0", "101", "-1"):
        error = await me.error("GET", path, 400, params={"limit": limit})
        assert error["param"] == "limit"
    error = await me.error("GET", path, 400, params={"lmit": "5"})
    assert (error["param"], error["code"]) == ("lmit", "unknown_parameter")


async def test_items_after_from_another_conversation_gives_an_empty_page(me):
    one, two = await me.conversation(), await me.conversation()
    [item] = await me.add(one["id"], [user_text("in one")])
    await me.add(two["id"], [user_text("in two")])
    for order in ("asc", "desc"):
        page = await me.items(two["id"], after=item["id"], order=order)
        assert page["data"] == [] and page["has_more"] is False
    await me.error("GET", f"/v1/conversations/{two['id']}/items/{item['id']}", 404)
    await me.error("DELETE", f"/v1/conversations/{two['id']}/items/{item['id']}", 404)
    assert (await me.items(one["id"]))["data"] == [item]


async def test_include_is_accepted(me):
    conversation = await me.conversation()
    [item] = await me.add(conversation["id"], [user_text("hello")])
    include = [("include[]", "message.output_text.logprobs"), ("include[]", "reasoning.encrypted_content")]
    base = f"/v1/conversations/{conversation['id']}/items"
    assert (await me.call("GET", base, params=include))["data"] == [item]
    assert await me.call("GET", f"{base}/{item['id']}", params=include) == item
    created = await me.call("POST", base, params=include, json={"items": [user_text("more")]})
    assert created["data"][0]["content"][0]["text"] == "more"
    error = await me.error("GET", base, 400, params={"include[]": "Not Valid!"})
    assert error["param"].startswith("include")


async def test_adding_items_bumps_updated_at(me):
    conversation = await me.conversation()
    await asyncio.sleep(1.05)  # timestamps are whole seconds
    await me.add(conversation["id"], [user_text("later")])
    current = await me.call("GET", f"/v1/conversations/{conversation['id']}")
    assert current["updated_at"] > conversation["updated_at"]
    assert current["created_at"] == conversation["created_at"]


async def test_deleting_an_item_answers_the_conversation(me):
    conversation = await me.conversation(title="Keep me", metadata={"k": "v"})
    kept, gone = await me.add(conversation["id"], [user_text("kept"), user_text("gone")])
    answer = await me.call("DELETE", f"/v1/conversations/{conversation['id']}/items/{gone['id']}")
    assert set(answer) == CONVERSATION_KEYS and answer["object"] == "conversation"
    assert (answer["id"], answer["title"], answer["metadata"]) == (conversation["id"], "Keep me", {"k": "v"})
    assert answer["updated_at"] >= conversation["updated_at"]
    error = await me.error("GET", f"/v1/conversations/{conversation['id']}/items/{gone['id']}", 404)
    assert (error["param"], error["code"]) == ("item_id", "item_not_found")
    await me.error("DELETE", f"/v1/conversations/{conversation['id']}/items/{gone['id']}", 404)
    assert (await me.items(conversation["id"]))["data"] == [kept]


async def test_deleting_a_conversation_removes_its_items_everywhere(me, someone_else, database_dsn):
    conversation = await me.conversation(items=[user_text("one"), user_text("two")])
    survivor = await me.conversation(items=[user_text("stays")])
    items = (await me.items(conversation["id"], order="asc"))["data"]
    assert len(items) == 2
    count = "SELECT count(*) FROM llm_api.conversation_items WHERE conversation_id = %s"
    assert rows(database_dsn, count, conversation["id"]) == [(2,)]

    # Someone else cannot delete it.
    await someone_else.error("DELETE", f"/v1/conversations/{conversation['id']}", 404)
    assert rows(database_dsn, count, conversation["id"]) == [(2,)]

    deleted = await me.call("DELETE", f"/v1/conversations/{conversation['id']}")
    assert deleted == {"id": conversation["id"], "object": "conversation.deleted", "deleted": True}
    path = f"/v1/conversations/{conversation['id']}"
    await me.error("GET", path, 404)
    await me.error("GET", f"{path}/items", 404)
    for item in items:
        await me.error("GET", f"{path}/items/{item['id']}", 404)
        await me.error("DELETE", f"{path}/items/{item['id']}", 404)
    await me.error("POST", f"{path}/items", 404, json={"items": [user_text("late")]})
    await me.error("DELETE", path, 404)
    assert rows(database_dsn, count, conversation["id"]) == [(0,)]
    assert rows(database_dsn, "SELECT count(*) FROM llm_api.conversations WHERE id = %s", conversation["id"]) == [(0,)]
    listed = await me.call("GET", "/v1/conversations")
    assert [row["id"] for row in listed["data"]] == [survivor["id"]] and listed["total"] == 1
    assert rows(database_dsn, count, survivor["id"]) == [(1,)]
