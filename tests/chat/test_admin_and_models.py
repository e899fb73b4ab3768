"""Providers and the models they serve, over real HTTP against fake upstreams.

Providers come from three sources: the PROVIDERS_CONFIG_FILE (``${VAR:-default}`` expanded from the
environment the settings were read from; a bad file is a one-line configuration error), environment shortcuts (VLLM_BASE_URL,
OPENAI_API_KEY...), and the admin API, which lists all of them, creates, changes and deletes its own, and
may only (de)activate or annotate the configured ones. API keys are sealed at rest, never shown (only their
last four characters) and sent upstream as a bearer token. The model endpoints show what the active
providers serve: a model is found by public id, provider's own id or alias, providers serving the same model
are tried in file order, and nothing configured is an empty list and a 404 that says how to add a provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from llm_api.app_keys import SETTINGS
from llm_api.config import Settings
from llm_api.providers import sources
from tests.api.callers import Caller
from tests.chat.conftest import sdk
from tests.conftest import free_port
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import OPENAI, FakeOpenAIUpstream
from tests.sql import query, query_dicts

ADMIN_KEY = "admin-key-0123456789abcdefghijklmnopqrstuv"
LAB_KEY = "sk-lab-secret-key-7f3a9d"
PROVIDER_KEYS = {
    "id",
    "object",
    "name",
    "vendor",
    "base_url",
    "has_api_key",
    "api_key_hint",
    "source",
    "active",
    "models",
    "aliases",
    "metadata",
    "last_synced_at",
    "created_at",
    "updated_at",
}
HELLO = [{"role": "user", "content": "Dis bonjour"}]


@dataclass
class Site:
    server: TestServer
    admin: Caller  # the bootstrap administrator (ADMIN_API_KEY)
    guest: Caller

    @property
    def dsn(self) -> str:
        return self.server.app[SETTINGS].db_dsn


@pytest.fixture
async def start(serve):
    """``await start(**ENV)``: the app with ADMIN_API_KEY and these settings, and an admin and a guest."""
    sessions: list[aiohttp.ClientSession] = []

    async def started(**env) -> Site:
        server = await serve(ADMIN_API_KEY=ADMIN_KEY, UPSTREAM_RETRIES="0", **env)
        session = aiohttp.ClientSession(base_url=str(server.make_url("/")))
        sessions.append(session)
        response = await session.post("/auth/guest-login")
        assert response.status == 201, await response.text()
        return Site(server, Caller(session, {"access_token": ADMIN_KEY, "user_id": None}), Caller(session, await response.json()))

    yield started
    for session in sessions:
        await session.close()


@pytest.fixture
async def lab() -> FakeOpenAIUpstream:
    """A second vLLM, which wants an API key."""
    async with running(FakeOpenAIUpstream(models=("jan-v1-4b", "qwen3-8b"), api_key=LAB_KEY)) as fake:
        yield fake


@pytest.fixture
async def openai_fakes() -> list[FakeOpenAIUpstream]:
    """Two OpenAI-like upstreams serving the same model."""
    async with (
        running(FakeOpenAIUpstream(models=("gpt-4o-mini",), flavour=OPENAI)) as first,
        running(FakeOpenAIUpstream(models=("gpt-4o-mini",), flavour=OPENAI)) as second,
    ):
        yield [first, second]


def providers_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


async def create(site: Site, status: int = 201, **provider) -> dict:
    return await site.admin.call("POST", "/v1/admin/providers", json=provider, status=status)


async def model_ids(caller: Caller) -> list[str]:
    listing = await caller.call("GET", "/v1/models")
    assert listing["object"] == "list"
    return [model["id"] for model in listing["data"]]


async def chat(caller: Caller, model: str, status: int = 200) -> dict:
    body = {"model": model, "messages": HELLO}
    if status == 200:
        return await caller.call("POST", "/v1/chat/completions", json=body)
    return await caller.error("POST", "/v1/chat/completions", status, json=body)


def chat_calls(fake: FakeOpenAIUpstream) -> list[dict]:
    return [request for request in fake.requests if request["path"] == "/v1/chat/completions"]


# ---------------------------------------------------------------- the admin API


async def test_a_provider_created_without_models_lists_them_from_the_provider(start, lab):
    site = await start()
    provider = await create(site, name="lab", vendor="vllm", base_url=f"{lab.base_url}/v1", api_key=LAB_KEY)
    assert set(provider) == PROVIDER_KEYS
    assert provider["id"].startswith("prov_") and provider["object"] == "provider"
    assert (provider["name"], provider["vendor"], provider["base_url"], provider["source"], provider["active"]) == (
        "lab",
        "vllm",
        f"{lab.base_url}/v1",
        "api",
        True,
    )
    assert provider["models"] == ["jan-v1-4b", "qwen3-8b"]
    assert provider["last_synced_at"] >= provider["created_at"] > 0
    assert [(r["method"], r["path"]) for r in lab.requests] == [("GET", "/v1/models")]
    assert await model_ids(site.guest) == ["vllm/jan-v1-4b", "vllm/qwen3-8b"]
    assert (await chat(site.guest, "vllm/qwen3-8b"))["model"] == "vllm/qwen3-8b"
    assert chat_calls(lab)[-1]["json"]["model"] == "qwen3-8b"


async def test_a_provider_created_with_models_serves_those_without_asking(start, lab):
    site = await start()
    provider = await create(
        site,
        name="lab",
        vendor="vllm",
        base_url=f"{lab.base_url}/v1",
        models=["qwen3-8b"],
        aliases={"small": "qwen3-8b"},
        metadata={"team": "research"},
    )
    assert (provider["models"], provider["aliases"], provider["metadata"], provider["last_synced_at"]) == (
        ["qwen3-8b"],
        {"small": "qwen3-8b"},
        {"team": "research"},
        None,
    )
    assert (provider["has_api_key"], provider["api_key_hint"]) == (False, None)
    assert lab.requests == []
    assert await model_ids(site.guest) == ["vllm/qwen3-8b"]


async def test_an_unreachable_provider_without_models_is_refused_and_not_created(start):
    site = await start()
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    error = await site.admin.error(
        "POST", "/v1/admin/providers", 502, json={"name": "gone", "vendor": "vllm", "base_url": base_url}
    )
    assert error["code"] == "model_listing_failed"
    assert "gone" in error["message"] and "models explicitly" in error["message"]
    assert (await site.admin.call("GET", "/v1/admin/providers"))["data"] == []
    assert query(site.dsn, "SELECT count(*) FROM llm_api.providers") == [(0,)]


async def test_a_duplicate_name_is_a_conflict(start, lab):
    site = await start()
    first = await create(site, name="lab", vendor="vllm", base_url=f"{lab.base_url}/v1", models=["jan-v1-4b"])
    error = await site.admin.error(
        "POST",
        "/v1/admin/providers",
        409,
        json={"name": "lab", "vendor": "ollama", "base_url": "http://127.0.0.1:9/v1", "models": ["x"]},
    )
    assert (error["code"], error["param"]) == ("duplicate_name", "name")
    assert [row["id"] for row in (await site.admin.call("GET", "/v1/admin/providers"))["data"]] == [first["id"]]


@pytest.mark.parametrize("base_url", ["https://\u011a\u0116h\u00a2/v1", "http://[::1/v1", "lab.example/v1"])
async def test_a_base_url_that_is_no_uri_is_refused_on_create_and_update(start, lab, base_url):
    # `format: uri` is RFC 3986: non-ASCII must be percent-encoded. The pattern alone let these through
    # (found by schemathesis): stored, or a 500 in strict contract mode.
    site = await start()
    error = await site.admin.error(
        "POST", "/v1/admin/providers", 400, json={"name": "bad", "vendor": "vllm", "base_url": base_url, "models": ["x"]}
    )
    assert (error["code"], error["param"]) == ("invalid_value", "base_url"), error
    made = await create(site, name="lab", vendor="vllm", base_url=f"{lab.base_url}/v1", models=["jan-v1-4b"])
    error = await site.admin.error("PATCH", f"/v1/admin/providers/{made['id']}", 400, json={"base_url": base_url})
    assert (error["code"], error["param"]) == ("invalid_value", "base_url"), error
    assert [row["base_url"] for row in (await site.admin.call("GET", "/v1/admin/providers"))["data"]] == [f"{lab.base_url}/v1"]
    assert lab.requests == []


async def test_list_get_and_delete(start, vllm, lab):
    site = await start(VLLM_BASE_URL=f"{vllm.base_url}/v1")
    made = await create(site, name="lab", vendor="vllm", base_url=f"{lab.base_url}/v1", models=["qwen3-8b"])
    listed = (await site.admin.call("GET", "/v1/admin/providers"))["data"]
    assert [(row["name"], row["source"]) for row in listed] == [("vllm", "environment"), ("lab", "api")]
    assert listed[1] == made
    assert await site.admin.call("GET", f"/v1/admin/providers/{made['id']}") == made

    deleted = await site.admin.call("DELETE", f"/v1/admin/providers/{made['id']}")
    assert deleted == {"id": made["id"], "object": "provider.deleted", "deleted": True}
    for method in ("GET", "DELETE"):
        error = await site.admin.error(method, f"/v1/admin/providers/{made['id']}", 404)
        assert (error["code"], error["param"]) == ("provider_not_found", "provider_id")
    assert [row["name"] for row in (await site.admin.call("GET", "/v1/admin/providers"))["data"]] == ["vllm"]
    assert await model_ids(site.guest) == ["vllm/jan-v1-4b"]  # qwen3-8b was only routed through "lab"


async def test_a_deactivated_provider_serves_nothing_until_reactivated(start, vllm, lab):
    site = await start(VLLM_BASE_URL=f"{vllm.base_url}/v1")
    made = await create(site, name="lab", vendor="openai_compatible", base_url=f"{lab.base_url}/v1", api_key=LAB_KEY)
    assert await model_ids(site.guest) == ["vllm/jan-v1-4b", "openai_compatible/jan-v1-4b", "openai_compatible/qwen3-8b"]

    off = await site.admin.call("PATCH", f"/v1/admin/providers/{made['id']}", json={"active": False})
    assert off["active"] is False and off["models"] == ["jan-v1-4b", "qwen3-8b"]
    assert await model_ids(site.guest) == ["vllm/jan-v1-4b"]
    error = await chat(site.guest, "openai_compatible/qwen3-8b", status=404)
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert chat_calls(lab) == []
    # A provider's own id now only leads to the provider still active.
    assert (await chat(site.guest, "jan-v1-4b"))["model"] == "vllm/jan-v1-4b"

    await site.admin.call("PATCH", f"/v1/admin/providers/{made['id']}", json={"active": True})
    assert (await chat(site.guest, "openai_compatible/qwen3-8b"))["model"] == "openai_compatible/qwen3-8b"


async def test_an_api_provider_can_be_renamed_and_repointed(start, vllm, lab):
    site = await start()
    made = await create(site, name="lab", vendor="vllm", base_url=f"{vllm.base_url}/v1", models=["jan-v1-4b"])
    changed = await site.admin.call(
        "PATCH",
        f"/v1/admin/providers/{made['id']}",
        json={
            "name": "lab-2",
            "base_url": f"{lab.base_url}/v1",
            "api_key": LAB_KEY,
            "models": None,
        },
    )
    assert (changed["name"], changed["base_url"], changed["models"], changed["api_key_hint"]) == (
        "lab-2",
        f"{lab.base_url}/v1",
        ["jan-v1-4b", "qwen3-8b"],
        LAB_KEY[-4:],
    )
    await chat(site.guest, "vllm/qwen3-8b")
    assert len(chat_calls(lab)) == 1 and chat_calls(vllm) == []


# ---------------------------------------------------------------- API keys


async def test_an_api_key_is_sealed_never_shown_and_sent_as_a_bearer_token(start, lab):
    site = await start()
    made = await create(site, name="lab", vendor="vllm", base_url=f"{lab.base_url}/v1", api_key=LAB_KEY, models=["jan-v1-4b"])
    assert (made["has_api_key"], made["api_key_hint"]) == (True, LAB_KEY[-4:])
    for path in ("/v1/admin/providers", f"/v1/admin/providers/{made['id']}", "/v1/models/providers", "/v1/models"):
        response = await site.admin.client.get(path, headers=site.admin.headers)
        assert response.status == 200
        assert LAB_KEY not in await response.text()

    row = query_dicts(site.dsn, "SELECT api_key_sealed, api_key_hint FROM llm_api.providers WHERE id = %s", made["id"])[0]
    sealed = bytes(row["api_key_sealed"])
    assert LAB_KEY.encode() not in sealed and len(sealed) > len(LAB_KEY)
    assert row["api_key_hint"] == LAB_KEY[-4:]
    assert LAB_KEY not in query(site.dsn, "SELECT row_to_json(p)::text FROM llm_api.providers p")[0][0]

    await chat(site.guest, "vllm/jan-v1-4b")
    assert chat_calls(lab)[-1]["headers"]["authorization"] == f"Bearer {LAB_KEY}"


async def test_api_key_null_removes_the_key(start, lab):
    site = await start()
    made = await create(site, name="lab", vendor="vllm", base_url=f"{lab.base_url}/v1", api_key=LAB_KEY, models=["jan-v1-4b"])
    changed = await site.admin.call("PATCH", f"/v1/admin/providers/{made['id']}", json={"api_key": None})
    assert (changed["has_api_key"], changed["api_key_hint"]) == (False, None)
    assert query(site.dsn, "SELECT api_key_sealed, api_key_hint FROM llm_api.providers") == [(None, None)]
    error = await chat(site.guest, "vllm/jan-v1-4b", status=502)  # the lab wants a key
    assert error["code"] == "upstream_auth_failed"
    assert "authorization" not in chat_calls(lab)[-1]["headers"]


# ---------------------------------------------------------------- providers from the configuration


async def test_providers_from_the_file_with_variables_expanded_from_the_settings(start, tmp_path, vllm, lab):
    path = providers_file(
        tmp_path,
        """
providers:
  - name: lab
    vendor: vllm
    base_url: ${LAB_URL}/v1
    api_key: ${LAB_API_KEY:-}
    models: [qwen3-8b]
    aliases: {small: qwen3-8b}
    metadata: {reasoning: "true"}
  - name: local
    vendor: openai_compatible
    base_url: ${LOCAL_URL:-http://127.0.0.1:9/v1}
    api_key: ${LOCAL_API_KEY:-sk-local-default-1234}
""",
    )
    site = await start(PROVIDERS_CONFIG_FILE=path, LAB_URL=lab.base_url, LAB_API_KEY=LAB_KEY, LOCAL_URL=f"{vllm.base_url}/v1")
    listed = (await site.admin.call("GET", "/v1/admin/providers"))["data"]
    assert [(p["name"], p["source"], p["base_url"], p["api_key_hint"], p["models"], p["aliases"]) for p in listed] == [
        ("lab", "config_file", f"{lab.base_url}/v1", LAB_KEY[-4:], ["qwen3-8b"], {"small": "qwen3-8b"}),
        ("local", "config_file", f"{vllm.base_url}/v1", "1234", ["jan-v1-4b"], {}),
    ]
    assert listed[0]["metadata"] == {"reasoning": "true"}
    assert await model_ids(site.guest) == ["vllm/qwen3-8b", "openai_compatible/jan-v1-4b"]
    await chat(site.guest, "small")
    assert chat_calls(lab)[-1]["headers"]["authorization"] == f"Bearer {LAB_KEY}"
    await chat(site.guest, "jan-v1-4b")
    assert chat_calls(vllm)[-1]["headers"]["authorization"] == "Bearer sk-local-default-1234"


async def test_an_unset_variable_with_an_empty_default_means_no_key(start, tmp_path, vllm):
    path = providers_file(
        tmp_path,
        f"""
providers:
  - {{name: local, vendor: vllm, base_url: "{vllm.base_url}/v1", api_key: "${{NO_SUCH_KEY:-}}"}}
""",
    )
    site = await start(PROVIDERS_CONFIG_FILE=path)
    (provider,) = (await site.admin.call("GET", "/v1/admin/providers"))["data"]
    assert (provider["has_api_key"], provider["api_key_hint"], provider["models"]) == (False, None, ["jan-v1-4b"])
    await chat(site.guest, "jan-v1-4b")
    assert "authorization" not in chat_calls(vllm)[-1]["headers"]


async def test_providers_from_environment_shortcuts(start, vllm, openai_fakes):
    openai_upstream = openai_fakes[0]
    site = await start(
        VLLM_BASE_URL=f"{vllm.base_url}/v1",
        OPENAI_API_KEY="sk-openai-test-5678",
        OPENAI_BASE_URL=f"{openai_upstream.base_url}/v1",
    )
    listed = (await site.admin.call("GET", "/v1/admin/providers"))["data"]
    assert [
        (p["name"], p["vendor"], p["source"], p["base_url"], p["has_api_key"], p["api_key_hint"], p["models"]) for p in listed
    ] == [
        ("openai", "openai", "environment", f"{openai_upstream.base_url}/v1", True, "5678", ["gpt-4o-mini"]),
        ("vllm", "vllm", "environment", f"{vllm.base_url}/v1", False, None, ["jan-v1-4b"]),
    ]
    assert await model_ids(site.guest) == ["openai/gpt-4o-mini", "vllm/jan-v1-4b"]
    await chat(site.guest, "openai/gpt-4o-mini")
    assert chat_calls(openai_upstream)[-1]["headers"]["authorization"] == "Bearer sk-openai-test-5678"


@pytest.fixture
async def configured(start, tmp_path, vllm, lab) -> Site:
    """A provider from the file ("lab") and one from the environment ("vllm")."""
    path = providers_file(
        tmp_path,
        f"""
providers:
  - {{name: lab, vendor: vllm, base_url: "{lab.base_url}/v1", api_key: {LAB_KEY}, models: [qwen3-8b]}}
""",
    )
    return await start(PROVIDERS_CONFIG_FILE=path, VLLM_BASE_URL=f"{vllm.base_url}/v1")


@pytest.mark.parametrize("name", ["lab", "vllm"], ids=["config_file", "environment"])
@pytest.mark.parametrize(
    "change",
    [
        {"base_url": "http://127.0.0.1:9/v1"},
        {"api_key": "sk-other-key"},
        {"api_key": None},
        {"models": ["other"]},
        {"name": "renamed"},
        {"aliases": {"small": "qwen3-8b"}},
    ],
    ids=lambda change: next(iter(change)),
)
async def test_a_configured_providers_connection_belongs_to_its_source(configured, name, change):
    provider = await provider_named(configured, name)
    error = await configured.admin.error("PATCH", f"/v1/admin/providers/{provider['id']}", 409, json={"active": False, **change})
    assert (error["code"], error["param"]) == ("provider_managed_by_config", next(iter(change)))
    assert await configured.admin.call("GET", f"/v1/admin/providers/{provider['id']}") == provider


@pytest.mark.parametrize("name", ["lab", "vllm"], ids=["config_file", "environment"])
async def test_a_configured_provider_can_be_deactivated_and_annotated_but_not_deleted(configured, name):
    provider = await provider_named(configured, name)
    changed = await configured.admin.call(
        "PATCH", f"/v1/admin/providers/{provider['id']}", json={"active": False, "metadata": {"note": "maintenance"}}
    )
    assert (changed["active"], changed["metadata"], changed["base_url"]) == (False, {"note": "maintenance"}, provider["base_url"])
    assert not [model for model in await model_ids(configured.guest) if model in provider_models(provider)]
    error = await configured.admin.error("DELETE", f"/v1/admin/providers/{provider['id']}", 409)
    assert error["code"] == "provider_managed_by_config"
    assert (await configured.admin.call("GET", f"/v1/admin/providers/{provider['id']}"))["active"] is False


async def provider_named(site: Site, name: str) -> dict:
    return next(p for p in (await site.admin.call("GET", "/v1/admin/providers"))["data"] if p["name"] == name)


def provider_models(provider: dict) -> list[str]:
    return [f"{provider['vendor']}/{model}" for model in provider["models"]]


def configuration_error(tmp_path: Path, text: str | None, **env: str) -> str:
    path = tmp_path / "providers.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    settings = Settings.from_env({"PROVIDERS_CONFIG_FILE": str(path), **env})  # the settings only name the file
    with pytest.raises(sources.ProviderConfigError) as raised:
        sources.configured(settings)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"PROVIDERS_CONFIG_FILE {path}: ")
    return message.removeprefix(f"PROVIDERS_CONFIG_FILE {path}: ")


@pytest.mark.parametrize(
    "entry,problem",
    [
        ('{name: second, vendor: nope, base_url: "http://127.0.0.1:9/v1"}', "vendor"),
        ("{name: second, vendor: vllm}", "base_url"),
        ('{name: Second Provider, vendor: vllm, base_url: "http://127.0.0.1:9/v1"}', "name"),
        ('{name: second, vendor: vllm, base_url: "${SECOND_URL}"}', "base_url"),  # unset: empty
        ('{name: second, vendor: vllm, base_url: "http://127.0.0.1:9/v1", models: "jan-v1-4b"}', "models"),
        ('{name: second, vendor: vllm, base_url: "http://127.0.0.1:9/v1", colour: blue}', "colour"),
    ],
)
def test_a_bad_entry_is_a_one_line_configuration_error_naming_it(tmp_path, entry, problem):
    message = configuration_error(
        tmp_path,
        f"""
providers:
  - {{name: first, vendor: vllm, base_url: "http://127.0.0.1:9/v1"}}
  - {entry}
""",
    )
    assert message.startswith("providers[1]: ")
    assert problem in message


def test_a_bad_key_from_a_variable_is_named_but_not_shown(tmp_path):
    message = configuration_error(
        tmp_path,
        """
providers:
  - {name: lab, vendor: vllm, base_url: "http://127.0.0.1:9/v1", api_key: "${LAB_API_KEY}"}
""",
        LAB_API_KEY="sk-pasted with a space",
    )
    assert message.startswith("providers[0]: ") and "api_key" in message
    assert "sk-pasted" not in message


@pytest.mark.parametrize(
    "text,problem",
    [
        (None, "No such file"),
        ("providers: [unclosed\n", "while parsing"),
        ("models: []\n", "expected a top-level 'providers:' list"),
        (
            "providers:\n  - {name: twin, vendor: vllm, base_url: 'http://a/v1'}\n  - {name: twin, vendor: vllm, base_url: 'http://b/v1'}\n",
            "two providers share a name",
        ),
    ],
)
def test_an_unusable_file_is_a_one_line_configuration_error(tmp_path, text, problem):
    assert problem in configuration_error(tmp_path, text)


def test_the_file_sees_the_environment_of_the_settings(tmp_path):
    path = providers_file(
        tmp_path,
        """
providers:
  - {name: lab, vendor: vllm, base_url: "${LAB_URL:-http://127.0.0.1:8001}/v1", models: [jan-v1-4b], aliases: {fast: jan-v1-4b}}
""",
    )
    (spec,) = sources.configured(Settings.from_env({"PROVIDERS_CONFIG_FILE": path, "LAB_URL": "http://10.0.0.7:8000"}))
    assert (spec.name, spec.base_url, spec.models, spec.aliases, spec.source) == (
        "lab",
        "http://10.0.0.7:8000/v1",
        ("jan-v1-4b",),
        {"fast": "jan-v1-4b"},
        "config_file",
    )
    (default,) = sources.configured(Settings.from_env({"PROVIDERS_CONFIG_FILE": path}))
    assert default.base_url == "http://127.0.0.1:8001/v1"


# ---------------------------------------------------------------- the models endpoints


async def test_with_no_provider_the_list_is_empty_and_a_chat_says_how_to_add_one(start):
    site = await start()
    assert await site.guest.call("GET", "/v1/models") == {"object": "list", "data": []}
    assert await site.guest.call("GET", "/v1/models/providers") == {"object": "list", "data": []}
    error = await chat(site.guest, "vllm/jan-v1-4b", status=404)
    assert (error["code"], error["param"], error["type"]) == ("model_not_found", "model", "invalid_request_error")
    assert "POST /v1/admin/providers" in error["message"] and "PROVIDERS_CONFIG_FILE" in error["message"]


@pytest.fixture
async def two_openais(start, tmp_path, openai_fakes, lab) -> Site:
    """zeta and alpha (in that order in the file) both serve gpt-4o-mini; lab serves two vLLM models."""
    zeta, alpha = openai_fakes
    path = providers_file(
        tmp_path,
        f"""
providers:
  - name: zeta
    vendor: openai
    base_url: {zeta.base_url}/v1
    api_key: sk-zeta-0001
    models: [gpt-4o-mini]
    aliases: {{mini: gpt-4o-mini}}
  - name: alpha
    vendor: openai
    base_url: {alpha.base_url}/v1
    api_key: sk-alpha-0002
    models: [gpt-4o-mini]
    aliases: {{small: gpt-4o-mini}}
    metadata: {{vision: "false"}}
  - name: lab
    vendor: vllm
    base_url: {lab.base_url}/v1
    api_key: {LAB_KEY}
    aliases: {{fast: jan-v1-4b}}
""",
    )
    return await start(PROVIDERS_CONFIG_FILE=path)


@pytest.mark.parametrize(
    "model,upstream",
    [
        ("vllm/jan-v1-4b", "jan-v1-4b"),
        ("jan-v1-4b", "jan-v1-4b"),
        ("fast", "jan-v1-4b"),
        ("qwen3-8b", "qwen3-8b"),
    ],
)
async def test_a_model_is_found_by_public_id_own_id_or_alias(two_openais, lab, model, upstream):
    answer = await chat(two_openais.guest, model)
    assert answer["model"] == f"vllm/{upstream}"
    assert chat_calls(lab)[-1]["json"]["model"] == upstream


@pytest.mark.parametrize("model", ["vllm/nope", "nope", "openai/jan-v1-4b", "Fast"])
async def test_an_unknown_model_is_not_found(two_openais, lab, model):
    error = await chat(two_openais.guest, model, status=404)
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert f"'{model}'" in error["message"] and "GET /v1/models" in error["message"]
    assert chat_calls(lab) == []


async def test_providers_serving_the_same_model_are_tried_in_file_order(two_openais, openai_fakes):
    zeta, alpha = openai_fakes
    for model in ("openai/gpt-4o-mini", "gpt-4o-mini", "mini"):
        assert (await chat(two_openais.guest, model))["model"] == "openai/gpt-4o-mini"
    assert (len(chat_calls(zeta)), len(chat_calls(alpha))) == (3, 0)
    # An alias leads only to the providers that declare it.
    await chat(two_openais.guest, "small")
    assert (len(chat_calls(zeta)), len(chat_calls(alpha))) == (3, 1)
    zeta.refuse_connections()
    assert (await chat(two_openais.guest, "openai/gpt-4o-mini"))["model"] == "openai/gpt-4o-mini"
    assert (len(chat_calls(zeta)), len(chat_calls(alpha))) == (3, 2)
    assert chat_calls(alpha)[-1]["headers"]["authorization"] == "Bearer sk-alpha-0002"


@pytest.mark.parametrize("path", ["/v1/models/catalogs/openai/gpt-4o-mini", "/v1/models/catalogs/openai%2Fgpt-4o-mini"])
async def test_the_catalog_entry_of_a_model(two_openais, path):
    ids = {p["name"]: p["id"] for p in (await two_openais.admin.call("GET", "/v1/admin/providers"))["data"]}
    response = await two_openais.guest.client.get(aiohttp.client.URL(path, encoded=True), headers=two_openais.guest.headers)
    assert response.status == 200, await response.text()
    entry = await response.json()
    assert entry["created"] > 0 and "temperature" in entry["supported_parameters"]
    assert "top_k" not in entry["supported_parameters"]  # OpenAI has no top_k
    assert {key: value for key, value in entry.items() if key not in ("created", "supported_parameters")} == {
        "id": "openai/gpt-4o-mini",
        "object": "model.catalog",
        "display_name": "gpt-4o-mini",
        "owned_by": "zeta",
        "context_length": None,
        "max_completion_tokens": None,
        "capabilities": {"vision": True, "tools": True, "reasoning": False, "audio": False},
        "aliases": ["mini", "small"],
        "providers": [
            {"id": ids["zeta"], "name": "zeta", "vendor": "openai", "upstream_model_id": "gpt-4o-mini"},
            {"id": ids["alpha"], "name": "alpha", "vendor": "openai", "upstream_model_id": "gpt-4o-mini"},
        ],
    }


async def test_the_catalog_of_an_unknown_model_is_not_found(two_openais):
    error = await two_openais.guest.error("GET", "/v1/models/catalogs/openai/gpt-5", 404)
    assert (error["code"], error["param"]) == ("model_not_found", "model_public_id")


async def test_the_sdk_retrieves_a_model_by_public_id_alias_or_own_id(two_openais):
    token = two_openais.guest.headers["Authorization"].removeprefix("Bearer ")
    async with sdk(two_openais.server, token) as client:
        for name in ("openai/gpt-4o-mini", "mini", "gpt-4o-mini"):
            model = await client.models.retrieve(name)
            assert (model.id, model.object, model.owned_by) == ("openai/gpt-4o-mini", "model", "zeta")
            assert model.model_extra["display_name"] == "gpt-4o-mini"
        assert [model.id async for model in client.models.list()] == ["openai/gpt-4o-mini", "vllm/jan-v1-4b", "vllm/qwen3-8b"]
        with pytest.raises(openai.NotFoundError) as raised:
            await client.models.retrieve("openai/gpt-5")
        assert raised.value.code == "model_not_found"


async def test_models_with_provider_data_list_one_entry_per_provider(two_openais):
    ids = {p["name"]: p["id"] for p in (await two_openais.admin.call("GET", "/v1/admin/providers"))["data"]}
    plain = (await two_openais.guest.call("GET", "/v1/models"))["data"]
    assert [(m["id"], m["owned_by"], m["display_name"]) for m in plain] == [
        ("openai/gpt-4o-mini", "zeta", "gpt-4o-mini"),
        ("vllm/jan-v1-4b", "lab", "jan-v1-4b"),
        ("vllm/qwen3-8b", "lab", "qwen3-8b"),
    ]
    assert not [m for m in plain if {"provider_id", "provider_vendor", "provider_name"} & set(m)]

    response = await two_openais.guest.client.get("/v1/models", headers={**two_openais.guest.headers, "X-Provider-Data": "true"})
    assert response.status == 200
    detailed = (await response.json())["data"]
    assert [(m["id"], m["owned_by"], m["provider_id"], m["provider_vendor"], m["provider_name"]) for m in detailed] == [
        ("openai/gpt-4o-mini", "zeta", ids["zeta"], "openai", "zeta"),
        ("openai/gpt-4o-mini", "alpha", ids["alpha"], "openai", "alpha"),
        ("vllm/jan-v1-4b", "lab", ids["lab"], "vllm", "lab"),
        ("vllm/qwen3-8b", "lab", ids["lab"], "vllm", "lab"),
    ]


async def test_model_providers_show_base_urls_to_admins_only_and_secrets_never(two_openais, openai_fakes, lab):
    zeta, alpha = openai_fakes
    as_guest = (await two_openais.guest.call("GET", "/v1/models/providers"))["data"]
    assert [(p["name"], p["vendor"], p["active"], p["models"]) for p in as_guest] == [
        ("zeta", "openai", True, ["openai/gpt-4o-mini"]),
        ("alpha", "openai", True, ["openai/gpt-4o-mini"]),
        ("lab", "vllm", True, ["vllm/jan-v1-4b", "vllm/qwen3-8b"]),
    ]
    assert all(set(p) == {"id", "object", "name", "vendor", "active", "models"} for p in as_guest)
    as_admin = (await two_openais.admin.call("GET", "/v1/models/providers"))["data"]
    assert [p["base_url"] for p in as_admin] == [f"{zeta.base_url}/v1", f"{alpha.base_url}/v1", f"{lab.base_url}/v1"]
    for caller in (two_openais.guest, two_openais.admin):
        text = await (await caller.client.get("/v1/models/providers", headers=caller.headers)).text()
        assert not [secret for secret in ("sk-zeta-0001", "sk-alpha-0002", LAB_KEY) if secret in text]


# ---------------------------------------------------------------- only for admins


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/v1/admin/providers", None),
        ("POST", "/v1/admin/providers", {"name": "x", "vendor": "vllm", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}),
        ("GET", "/v1/admin/providers/{id}", None),
        ("PATCH", "/v1/admin/providers/{id}", {"active": False}),
        ("DELETE", "/v1/admin/providers/{id}", None),
    ],
)
async def test_the_admin_api_is_forbidden_to_others(start, lab, method, path, body):
    site = await start()
    made = await create(site, name="lab", vendor="vllm", base_url=f"{lab.base_url}/v1", models=["jan-v1-4b"])
    error = await site.guest.error(method, path.format(id=made["id"]), 403, json=body)
    assert (error["type"], error["code"]) == ("permission_error", "admin_required")
    assert await site.admin.call("GET", f"/v1/admin/providers/{made['id']}") == made
    assert len((await site.admin.call("GET", "/v1/admin/providers"))["data"]) == 1
