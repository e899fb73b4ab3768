"""openapi.yaml serves client generation: openapi-python-client builds a typed client from it, and that
client works against the live server (strict contract mode).

The client is generated once per module, into a temporary directory, with the console script of
this virtualenv (its ``bin`` directory is put first on PATH so that the generator's post hooks find
ruff there)::

    openapi-python-client generate --path openapi.yaml --output-path <tmp>/llm_api_client --meta none

The generator must report no warning at all: a warning means part of the contract did not make it
into the client.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_api.app import create_app
from tests.conftest import test_settings
from tests.fakes.loopback import running
from tests.fakes.openai_upstream import FakeOpenAIUpstream

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "openapi.yaml"
PACKAGE = "llm_api_client"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"

WARNINGS = "Warning(s) encountered while generating"


class Generated:
    def __init__(self, output: str, package) -> None:
        self.output = output
        self.package = package

    def module(self, name: str):
        return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Generated:
    tmp = tmp_path_factory.mktemp("generated-client")
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(SPEC_PATH), "--output-path", str(tmp / PACKAGE), "--meta", "none"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert (tmp / PACKAGE / "__init__.py").is_file(), output
    sys.path.insert(0, str(tmp))
    try:
        yield Generated(output, importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(tmp))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def api_client(generated, live_server):
    with generated.package.Client(base_url=live_server.url, raise_on_unexpected_status=True, timeout=30) as client:
        yield client


def test_generation_reports_no_warning(generated):
    assert WARNINGS not in generated.output, generated.output
    assert "WARNING" not in generated.output, generated.output
    assert "not in PATH" not in generated.output  # the post hooks (ruff) ran


def test_every_operation_has_a_generated_function(generated):
    document = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    missing = []
    for item in document["paths"].values():
        for method in ("get", "put", "post", "delete", "patch"):
            if method in item:
                operation = item[method]
                module = f"api.{operation['tags'][0].lower()}.{_snake(operation['operationId'])}"
                try:
                    function = generated.module(module).sync_detailed
                except (ImportError, AttributeError):
                    missing.append(f"{operation['operationId']} ({module})")
                else:
                    assert callable(function)
    assert not missing, f"operations without a generated function: {missing}"


def test_get_health(generated, api_client):
    from_module = generated.module("api.health.get_health")
    health = from_module.sync(client=api_client)
    assert isinstance(health, generated.module("models").HealthStatus)
    assert health.status == "ok"
    assert health.to_dict() == {"status": "ok"}


def test_get_health_under_the_llm_prefix(generated, live_server):
    with generated.package.Client(base_url=f"{live_server.url}/llm", raise_on_unexpected_status=True) as client:
        assert generated.module("api.health.get_health_root").sync(client=client).status == "ok"


def test_get_version(generated, api_client):
    from llm_api.build_info import package_version

    response = generated.module("api.health.get_version").sync_detailed(client=api_client)
    assert response.status_code == 200
    version = response.parsed
    assert isinstance(version, generated.module("models").VersionInfo)
    assert version.version == package_version()
    assert isinstance(version.installation_id, str) and version.installation_id
    assert isinstance(version.started_at, int) and version.started_at > 1_700_000_000
    assert isinstance(version.schema_version, int) and version.schema_version >= 1
    assert version.commit is None or re.fullmatch(r"[0-9a-f]{40}", version.commit)
    assert version.build_time is None or isinstance(version.build_time, str)
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", response.headers["X-Request-Id"])


def test_get_readiness(generated, api_client):
    models = generated.module("models")
    readiness = generated.module("api.health.get_readiness").sync(client=api_client)
    assert isinstance(readiness, models.ReadinessStatus)
    assert readiness.status == "ready"
    checks = readiness.checks.to_dict()
    assert "database" in checks
    database = readiness.checks["database"]
    assert isinstance(database, models.ReadinessCheck)
    assert database.status == "ok"
    assert isinstance(database.duration_ms, float | int) and database.duration_ms >= 0


def test_an_error_answer_surfaces_as_error_response(generated, api_client):
    response = generated.module("api.auth.get_current_principal").sync_detailed(client=api_client)  # no credential
    assert response.status_code == 401
    error = response.parsed
    assert isinstance(error, generated.module("models").ErrorResponse)
    assert error.error.code == "missing_credentials"
    assert error.error.type_ == "authentication_error"
    assert error.error.param is None


def test_the_metrics_operation_returns_the_prometheus_text(generated, api_client):
    response = generated.module("api.meta.get_metrics").sync_detailed(client=api_client)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert isinstance(response.parsed, str)
    assert "# TYPE llm_api_http_requests_total counter" in response.parsed


def test_guest_login_then_an_authenticated_call(generated, api_client, live_server):
    login = generated.module("api.auth.guest_login").sync_detailed(client=api_client)
    assert login.status_code == 201
    tokens = login.parsed
    assert isinstance(tokens, generated.module("models").TokenResponse)
    assert tokens.token_type == "Bearer" and tokens.user_id == tokens.principal_id
    with generated.package.AuthenticatedClient(base_url=live_server.url, token=tokens.access_token) as client:
        me = generated.module("api.auth.get_current_principal").sync_detailed(client=client)
    assert me.status_code == 200
    assert isinstance(me.parsed, generated.module("models").Principal)
    assert (me.parsed.id, me.parsed.auth_method, me.parsed.is_guest) == (tokens.user_id, "jwt", True)
    assert me.headers["X-Principal-Id"] == tokens.user_id


async def test_a_smoke_flow_through_the_generated_client(generated, aiohttp_server, make_database):
    """What a user of the generated client does first, with its async functions and its own models:
    log in, make a project and a conversation in it, add an item, chat into the conversation (a fake
    vLLM answers), read the conversation back, change a setting, clean up."""
    models = generated.module("models")

    def api(name: str):
        return generated.module(f"api.{name}")

    async with running(FakeOpenAIUpstream(models=("jan-v1-4b",))) as vllm:
        server = await aiohttp_server(create_app(test_settings(make_database(), VLLM_BASE_URL=f"{vllm.base_url}/v1")))
        base = str(server.make_url("")).rstrip("/")
        async with generated.package.Client(base_url=base, raise_on_unexpected_status=True) as anonymous:
            tokens = await api("auth.guest_login").asyncio(client=anonymous)
        assert isinstance(tokens, models.TokenResponse)
        async with generated.package.AuthenticatedClient(
            base_url=base, token=tokens.access_token, raise_on_unexpected_status=True
        ) as client:
            served = await api("models.list_models").asyncio(client=client)
            assert [model.id for model in served.data] == ["vllm/jan-v1-4b"]

            project = await api("projects.create_project").asyncio(
                client=client, body=models.ProjectCreateRequest(name="Thesis", instruction="Answer briefly.")
            )
            assert isinstance(project, models.Project) and project.id.startswith("proj_")
            conversation = await api("conversations.create_conversation").asyncio(
                client=client, body=models.ConversationCreateRequest.from_dict({"title": "Smoke", "project_id": project.id})
            )
            assert isinstance(conversation, models.Conversation) and conversation.project_id == project.id
            added = await api("conversations.create_conversation_items").asyncio(
                conversation.id,
                client=client,
                body=models.ConversationItemsCreateRequest.from_dict(
                    {"items": [{"type": "message", "role": "user", "content": "My thesis is on tides."}]}
                ),
            )
            assert isinstance(added, models.ConversationItemList) and len(added.data) == 1

            vllm.reply("Tides come from the Moon.")
            completion = await api("chat.create_chat_completion").asyncio(
                client=client,
                body=models.CreateChatCompletionRequest.from_dict(
                    {
                        "model": "vllm/jan-v1-4b",
                        "conversation": conversation.id,
                        "messages": [{"role": "user", "content": "Where do tides come from?"}],
                    }
                ),
            )
            assert isinstance(completion, models.ChatCompletion)
            assert completion.choices[0].message.content == "Tides come from the Moon."
            sent = vllm.requests[-1]["json"]["messages"]
            assert sent[0] == {"role": "system", "content": "Answer briefly."}  # the project's instruction

            items = await api("conversations.list_conversation_items").asyncio(
                conversation.id, client=client, order=models.ListConversationItemsOrder.ASC
            )
            assert [(item.to_dict()["role"], item.to_dict()["content"][0]["text"]) for item in items.data] == [
                ("user", "My thesis is on tides."),
                ("user", "Where do tides come from?"),
                ("assistant", "Tides come from the Moon."),
            ]

            changed = await api("settings.update_user_settings").asyncio(
                client=client, body=models.UserSettingsUpdateRequest.from_dict({"memory_config": {"max_user_items": 5}})
            )
            assert isinstance(changed, models.UserSettings) and changed.memory_config.max_user_items == 5

            deleted = await api("conversations.delete_conversation").asyncio(conversation.id, client=client)
            assert isinstance(deleted, models.ConversationDeleted) and deleted.deleted is True
            gone = await api("conversations.get_conversation").asyncio_detailed(conversation.id, client=client)
            assert gone.status_code == 404 and isinstance(gone.parsed, models.ErrorResponse)
            assert gone.parsed.error.code == "conversation_not_found"
            await api("projects.delete_project").asyncio(project.id, client=client)


def test_the_document_operation_returns_the_contract_as_text(generated, live_server):
    module = generated.module("api.meta.get_open_api_document")
    with generated.package.Client(base_url=live_server.url) as client:
        response = module.sync_detailed(client=client)
    assert response.status_code == 200
    assert response.content == SPEC_PATH.read_bytes()
    assert response.parsed == SPEC_PATH.read_text(encoding="utf-8")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
