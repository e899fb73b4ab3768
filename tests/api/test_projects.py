"""Projects over real HTTP: validation, unique active names per user, paging, updates, soft deletion."""

from __future__ import annotations

import pytest

from tests.api.test_builtin_auth import rows

PROJECT_KEYS = {"id", "object", "name", "instruction", "is_favorite", "is_archived", "archived_at", "created_at", "updated_at"}


async def test_create_answers_201_with_the_project(me):
    project = await me.call("POST", "/v1/projects", json={"name": "Thesis", "instruction": "Be a patient reviewer."}, status=201)
    assert set(project) == PROJECT_KEYS
    assert project["id"].startswith("proj_") and project["object"] == "project"
    assert (project["name"], project["instruction"], project["is_favorite"]) == ("Thesis", "Be a patient reviewer.", False)
    assert project["is_archived"] is False and project["archived_at"] is None
    assert project["created_at"] == project["updated_at"] > 0
    assert await me.call("GET", f"/v1/projects/{project['id']}") == project

    bare = await me.call("POST", "/v1/projects", json={"name": "Bare", "is_favorite": True}, status=201)
    assert (bare["instruction"], bare["is_favorite"]) == (None, True)


@pytest.mark.parametrize(
    "name,stored",
    [
        ("  Spaced  ", "Spaced"),
        ("x", "x"),
        ("n" * 120, "n" * 120),
        ("  " + "n" * 116 + "  ", "n" * 116),
        ("Inner  spaces kept", "Inner  spaces kept"),
        ("Ünïcödé ✓", "Ünïcödé ✓"),
    ],
)
async def test_names_are_trimmed_of_surrounding_spaces(me, name, stored):
    project = await me.call("POST", "/v1/projects", json={"name": name}, status=201)
    assert project["name"] == stored


@pytest.mark.parametrize(
    "body,param",
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "n" * 121}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": "line\nbreak"}, "name"),
        ({"name": "nul\x00"}, "name"),
        ({"name": "del\x7f"}, "name"),
        ({"name": "ok", "instruction": "i" * 32769}, "instruction"),
        ({"name": "ok", "instruction": "bell\x07"}, "instruction"),
        ({"name": "ok", "instruction": "nul\x00"}, "instruction"),
        ({"name": "ok", "instruction": "escape\x1b[0m"}, "instruction"),
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)
async def test_invalid_input_is_refused_naming_the_field(me, body, param):
    error = await me.error("POST", "/v1/projects", 400, json=body)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert (await me.call("GET", "/v1/projects"))["total"] == 0


async def test_instruction_limits(me):
    long = "i" * 32768
    assert (await me.call("POST", "/v1/projects", json={"name": "Long", "instruction": long}, status=201))["instruction"] == long
    text = "Line one\nLine two\r\n\tindented"
    assert (await me.call("POST", "/v1/projects", json={"name": "Lines", "instruction": text}, status=201))["instruction"] == text
    assert (await me.call("POST", "/v1/projects", json={"name": "Empty", "instruction": ""}, status=201))["instruction"] == ""


async def test_duplicate_active_names_conflict_per_user(me, someone_else):
    await me.call("POST", "/v1/projects", json={"name": "Thesis"}, status=201)
    for name in ["Thesis", "  Thesis "]:
        response = await me.client.post("/v1/projects", json={"name": name}, headers=me.headers)
        assert response.status == 409, await response.text()
        assert response.headers["x-should-retry"] == "false"
        error = (await response.json())["error"]
        assert (error["param"], error["code"], error["type"]) == ("name", "duplicate_name", "invalid_request_error")
    assert (await me.call("GET", "/v1/projects"))["total"] == 1
    # Names are per user, and case matters.
    assert (await someone_else.call("POST", "/v1/projects", json={"name": "Thesis"}, status=201))["name"] == "Thesis"
    assert (await me.call("POST", "/v1/projects", json={"name": "thesis"}, status=201))["name"] == "thesis"


async def test_get_unknown_foreign_or_malformed(me, someone_else):
    theirs = await someone_else.call("POST", "/v1/projects", json={"name": "Theirs"}, status=201)
    for project_id in [theirs["id"], "proj_doesnotexist"]:
        for method, body in [("GET", None), ("PATCH", {"name": "Mine"}), ("DELETE", None)]:
            error = await me.error(method, f"/v1/projects/{project_id}", 404, json=body)
            assert (error["param"], error["code"]) == ("project_id", "project_not_found")
    assert await someone_else.call("GET", f"/v1/projects/{theirs['id']}") == theirs
    error = await me.error("GET", "/v1/projects/conv_abc", 400)
    assert error["param"] == "project_id"


async def test_list_pages_and_counts(me, someone_else):
    created = [(await me.call("POST", "/v1/projects", json={"name": f"p{n}"}, status=201))["id"] for n in range(5)]
    await someone_else.call("POST", "/v1/projects", json={"name": "not mine"}, status=201)

    page = await me.call("GET", "/v1/projects")
    assert set(page) == {"object", "data", "first_id", "last_id", "has_more", "total"}
    assert [row["id"] for row in page["data"]] == list(reversed(created))  # newest first by default
    assert (page["has_more"], page["total"], page["first_id"], page["last_id"]) == (False, 5, created[-1], created[0])
    for order, expected in [("asc", created), ("desc", list(reversed(created)))]:
        for limit in (1, 2, 5):
            assert await me.walk("/v1/projects", limit=limit, order=order) == expected
    first = await me.call("GET", "/v1/projects", params={"limit": 2, "order": "asc"})
    assert (first["has_more"], first["total"], first["last_id"]) == (True, 5, created[1])

    # Stable while projects are added between pages.
    seen, after = [], None
    while True:
        page = await me.call("GET", "/v1/projects", params={"limit": 2, "order": "desc", **({"after": after} if after else {})})
        seen += [row["id"] for row in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
        await me.call("POST", "/v1/projects", json={"name": f"added after {after}"}, status=201)
    assert seen == list(reversed(created))

    for after in ["proj_doesnotexist", (await someone_else.call("GET", "/v1/projects"))["first_id"]]:
        empty = await me.call("GET", "/v1/projects", params={"after": after})
        assert (empty["data"], empty["first_id"], empty["last_id"], empty["has_more"]) == ([], "", "", False)
        assert empty["total"] == 7
    for params, param in [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "conv_abc"}, "after"),
        ({"page": "2"}, "page"),
    ]:
        assert (await me.error("GET", "/v1/projects", 400, params=params))["param"] == param


async def test_patch_updates_only_what_is_sent(me):
    project = await me.call("POST", "/v1/projects", json={"name": "Draft", "instruction": "Old"}, status=201)
    path = f"/v1/projects/{project['id']}"

    renamed = await me.call("PATCH", path, json={"name": "  Final  "})
    assert (renamed["name"], renamed["instruction"], renamed["is_favorite"]) == ("Final", "Old", False)
    assert renamed["created_at"] == project["created_at"] and renamed["updated_at"] >= project["updated_at"]
    assert (await me.call("PATCH", path, json={"instruction": "New"}))["instruction"] == "New"
    assert (await me.call("PATCH", path, json={}))["instruction"] == "New"
    cleared = await me.call("PATCH", path, json={"instruction": None})
    assert cleared["instruction"] is None and cleared["name"] == "Final"

    assert (await me.call("PATCH", path, json={"is_favorite": True}))["is_favorite"] is True
    assert (await me.call("PATCH", path, json={"name": "Final"}))["is_favorite"] is True  # absent keeps
    assert (await me.call("PATCH", path, json={"favorite": False}))["is_favorite"] is False
    assert (await me.call("PATCH", path, json={"favorite": True}))["is_favorite"] is True
    assert (await me.call("PATCH", path, json={"is_favorite": False, "favorite": True}))["is_favorite"] is False

    archived = await me.call("PATCH", path, json={"is_archived": True})
    assert archived["is_archived"] is True and archived["archived_at"] >= project["created_at"]
    again = await me.call("PATCH", path, json={"archived": True})
    assert again["archived_at"] == archived["archived_at"]
    assert (await me.call("PATCH", path, json={"instruction": "x"}))["archived_at"] == archived["archived_at"]
    unarchived = await me.call("PATCH", path, json={"archived": False})
    assert unarchived["is_archived"] is False and unarchived["archived_at"] is None
    assert (await me.call("PATCH", path, json={"is_archived": True, "archived": False}))["is_archived"] is True
    assert await me.call("GET", path) == await me.call("PATCH", path, json={})

    for body, param in [
        ({"name": "  "}, "name"),
        ({"name": "n" * 121}, "name"),
        ({"instruction": "\x00"}, "instruction"),
        ({"is_favorite": "yes"}, "is_favorite"),
        ({"pinned": True}, "pinned"),
    ]:
        assert (await me.error("PATCH", path, 400, json=body))["param"] == param


async def test_patch_to_a_duplicate_name_conflicts(me):
    await me.call("POST", "/v1/projects", json={"name": "Taken"}, status=201)
    other = await me.call("POST", "/v1/projects", json={"name": "Free"}, status=201)
    response = await me.client.patch(f"/v1/projects/{other['id']}", json={"name": " Taken "}, headers=me.headers)
    assert response.status == 409, await response.text()
    assert response.headers["x-should-retry"] == "false"
    assert (await response.json())["error"]["code"] == "duplicate_name"
    assert (await me.call("GET", f"/v1/projects/{other['id']}"))["name"] == "Free"
    assert (await me.call("PATCH", f"/v1/projects/{other['id']}", json={"name": "Free"}))["name"] == "Free"  # its own name


async def test_delete_is_soft_frees_the_name_and_detaches_conversations(me, database_dsn):
    project = await me.call("POST", "/v1/projects", json={"name": "Doomed"}, status=201)
    keeper = await me.call("POST", "/v1/projects", json={"name": "Keeper"}, status=201)
    path = f"/v1/projects/{project['id']}"
    inside = [await me.conversation(project_id=project["id"], title=f"c{n}") for n in range(2)]
    elsewhere = await me.conversation(project_id=keeper["id"])

    deleted = await me.call("DELETE", path)
    assert deleted == {"id": project["id"], "object": "project.deleted", "deleted": True}
    for method, body in [("GET", None), ("PATCH", {"name": "Back"}), ("DELETE", None)]:
        error = await me.error(method, path, 404, json=body)
        assert error["param"] == "project_id"

    listed = await me.call("GET", "/v1/projects")
    assert [row["id"] for row in listed["data"]] == [keeper["id"]] and listed["total"] == 1
    assert rows(database_dsn, "SELECT deleted_at IS NOT NULL FROM llm_api.projects WHERE id = %s", project["id"]) == [(True,)]

    for conversation in inside:
        current = await me.call("GET", f"/v1/conversations/{conversation['id']}")
        assert current["project_id"] is None and current["title"] == conversation["title"]
    assert (await me.call("GET", f"/v1/conversations/{elsewhere['id']}"))["project_id"] == keeper["id"]
    assert (await me.call("GET", "/v1/conversations", params={"project_id": project["id"]}))["total"] == 0

    # The deleted project cannot take conversations any more; its name is free again.
    await me.error("POST", "/v1/conversations", 404, json={"project_id": project["id"]})
    await me.error("POST", f"/v1/conversations/{inside[0]['id']}", 404, json={"project_id": project["id"]})
    reborn = await me.call("POST", "/v1/projects", json={"name": "Doomed"}, status=201)
    assert reborn["id"] != project["id"]
    await me.call("PATCH", f"/v1/projects/{keeper['id']}", json={"name": "Keeper"})
    assert (await me.call("GET", "/v1/projects"))["total"] == 2
