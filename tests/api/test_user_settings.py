"""GET|PATCH /v1/users/me/settings: the seed's defaults, and changes merged field by field."""

from __future__ import annotations

import asyncio

import pytest

from llm_api.app import create_app
from tests.conftest import test_settings
from tests.sql import query

SEED_DEFAULTS = {
    "memory_config": {
        "enabled": True,
        "observe_enabled": True,
        "inject_user_core": True,
        "inject_semantic": True,
        "inject_episodic": False,
        "max_user_items": 3,
        "max_project_items": 5,
        "max_episodic_items": 3,
        "min_similarity": 0.75,
    },
    "profile_settings": {
        "base_style": "Friendly",
        "custom_instructions": "",
        "nick_name": "",
        "occupation": "",
        "more_about_you": "",
    },
    "advanced_settings": {"web_search": False, "code_enabled": False},
    "enable_trace": False,
    "enable_tools": True,
    "preferences": {},
}


async def guest(client) -> dict:
    tokens = await (await client.post("/auth/guest-login")).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def settings_of(client, auth) -> dict:
    response = await client.get("/v1/users/me/settings", headers=auth)
    assert response.status == 200
    return await response.json()


async def patch(client, auth, body, status=200) -> dict:
    response = await client.patch("/v1/users/me/settings", json=body, headers=auth)
    assert response.status == status, await response.text()
    return await response.json()


def without_times(settings: dict) -> dict:
    return {key: value for key, value in settings.items() if key not in ("object", "created_at", "updated_at")}


async def test_first_read_is_exactly_the_seed_defaults(client):
    settings = await settings_of(client, await guest(client))
    assert settings["object"] == "user.settings"
    assert without_times(settings) == SEED_DEFAULTS
    assert settings["created_at"] is None and settings["updated_at"] is None


async def test_a_patch_changes_only_the_fields_sent(client):
    auth = await guest(client)
    changed = await patch(client, auth, {"memory_config": {"max_user_items": 5}})
    expected = {**SEED_DEFAULTS, "memory_config": {**SEED_DEFAULTS["memory_config"], "max_user_items": 5}}
    assert without_times(changed) == expected
    assert without_times(await settings_of(client, auth)) == expected
    assert changed["created_at"] is not None and changed["updated_at"] >= changed["created_at"]

    again = await patch(client, auth, {"profile_settings": {"occupation": "chemist"}, "enable_trace": True})
    assert again["memory_config"]["max_user_items"] == 5  # kept from the first change
    assert again["profile_settings"] == {**SEED_DEFAULTS["profile_settings"], "occupation": "chemist"}
    assert again["enable_trace"] is True


async def test_nickname_is_an_alias_of_nick_name(client):
    auth = await guest(client)
    assert (await patch(client, auth, {"profile_settings": {"nickname": "Sam"}}))["profile_settings"]["nick_name"] == "Sam"
    both = await patch(client, auth, {"profile_settings": {"nickname": "Alias", "nick_name": "Real"}})
    assert both["profile_settings"]["nick_name"] == "Real"
    assert "nickname" not in both["profile_settings"]


async def test_preferences_merge_one_level_deep(client):
    auth = await guest(client)
    await patch(client, auth, {"preferences": {"selected_model": "jan-v1-4b", "theme": "dark"}})
    merged = await patch(client, auth, {"preferences": {"theme": "light", "shortcuts": ["a", "b"]}})
    assert merged["preferences"] == {"selected_model": "jan-v1-4b", "theme": "light", "shortcuts": ["a", "b"]}


@pytest.mark.parametrize(
    "body,param",
    [
        ({"memory_config": {"max_user_items": 21}}, "memory_config.max_user_items"),
        ({"memory_config": {"max_project_items": -1}}, "memory_config.max_project_items"),
        ({"memory_config": {"max_episodic_items": 21}}, "memory_config.max_episodic_items"),
        ({"memory_config": {"min_similarity": 1.5}}, "memory_config.min_similarity"),
        ({"profile_settings": {"base_style": "Sarcastic"}}, "profile_settings.base_style"),
        ({"profile_settings": {"base_style": "friendly"}}, "profile_settings.base_style"),
        ({"advanced_settings": {"web_search": "yes"}}, "advanced_settings.web_search"),
        ({"memory_config": {"max_user_items": 5, "unknown": 1}}, "memory_config.unknown"),
    ],
)
async def test_invalid_changes_are_400_naming_the_field_and_write_nothing(client, body, param):
    auth = await guest(client)
    await patch(client, auth, {"profile_settings": {"occupation": "before"}})
    before = await settings_of(client, auth)
    error = (await patch(client, auth, {**body, "enable_tools": False}, status=400))["error"]
    assert error["param"] == param
    assert await settings_of(client, auth) == before  # nothing of the request was written


@pytest.mark.parametrize("value", [0, 20])
async def test_range_bounds_are_inclusive(client, value):
    auth = await guest(client)
    assert (await patch(client, auth, {"memory_config": {"max_user_items": value}}))["memory_config"]["max_user_items"] == value


async def test_concurrent_patches_all_land(client):
    auth = await guest(client)
    fields = ["enabled", "observe_enabled", "inject_user_core", "inject_semantic", "inject_episodic"]
    await asyncio.gather(*(patch(client, auth, {"memory_config": {field: field != "inject_episodic"}}) for field in fields))
    await asyncio.gather(*(patch(client, auth, {"preferences": {f"k{i}": i}}) for i in range(10)))
    settings = await settings_of(client, auth)
    assert settings["memory_config"]["inject_episodic"] is False and settings["memory_config"]["enabled"] is True
    assert settings["preferences"] == {f"k{i}": i for i in range(10)}


async def test_settings_belong_to_their_user(client):
    alice, bob = await guest(client), await guest(client)
    await patch(client, alice, {"profile_settings": {"nick_name": "Alice"}})
    assert without_times(await settings_of(client, bob)) == SEED_DEFAULTS


# ---------------------------------------------------------------- several workers


async def eventually_sees(client, auth, occupation: str) -> None:
    """The other instance serves the change (within moments: it hears of it through PostgreSQL)."""
    for _ in range(100):
        if (await settings_of(client, auth))["profile_settings"]["occupation"] == occupation:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never saw occupation {occupation!r}")


@pytest.fixture
async def two_instances(aiohttp_client, make_database):
    settings = test_settings(make_database())
    return await aiohttp_client(create_app(settings)), await aiohttp_client(create_app(settings)), settings.db_dsn


async def listening(dsn: str) -> int:
    """How many connections listen for changes on this database (each instance keeps one)."""
    return query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%%'")[0][0]


async def test_a_change_made_through_one_instance_reaches_the_others_cache(two_instances):
    one, two, _ = two_instances
    auth = await guest(one)
    assert (await settings_of(two, auth))["profile_settings"]["occupation"] == ""  # now cached by two
    await patch(one, auth, {"profile_settings": {"occupation": "chemist"}})
    await eventually_sees(two, auth, "chemist")
    await patch(two, auth, {"profile_settings": {"occupation": "baker"}})
    assert (await settings_of(two, auth))["profile_settings"]["occupation"] == "baker"  # at once where it was made
    await eventually_sees(one, auth, "baker")


async def test_an_instance_that_lost_its_listening_connection_serves_nothing_stale(two_instances):
    one, two, dsn = two_instances
    auth = await guest(one)
    for _ in range(100):
        if await listening(dsn) == 2:
            break
        await asyncio.sleep(0.02)
    await settings_of(two, auth)  # cached by two
    # Cut every listening connection: a change made now could not be announced to anyone...
    query(
        dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
    )
    await patch(one, auth, {"profile_settings": {"occupation": "chemist"}})
    # ... so instance two must not serve what it cached before: it reads again until it listens again.
    await eventually_sees(two, auth, "chemist")
    for _ in range(150):
        if await listening(dsn) == 2:
            break
        await asyncio.sleep(0.02)
    assert await listening(dsn) == 2  # both listen again
