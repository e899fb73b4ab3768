"""Property-based contract tests: schemathesis fuzzes every implemented operation of openapi.yaml.

The cases go to the session's live server (a real port, strict contract mode, so openapi-core checks
each request and response as well), and every built-in schemathesis check runs on every response:
``case.call_and_validate`` without ``checks``/``excluded_checks`` runs every check the config
enables, and ``test_every_builtin_check_is_enabled`` proves that is all of them
(``max_response_time`` only exists with a configured limit; there is none).

Planned operations (``x-planned: true``) are left out: they answer 501 by design. Cases carry one
credential, a guest's access token (one scheme only: sending two trips the ``ignored_auth`` false
positive of ../shared/reference/deps.md §6), so secured operations are fuzzed past authentication.

Both servers of the spec are fuzzed: ``/`` and the ``/llm`` prefix mirror.

Budget: ``max_examples=MAX_EXAMPLES`` per operation and Hypothesis phase (schemathesis runs its
examples, coverage and fuzzing phases), no deadline (strict validation on a shared 2-core box), and
derandomized, so a failure found once is found again on the next run. Operations without parameters
or body yield few distinct cases; Hypothesis stops early when it has exhausted them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, is_check_class, load_all_checks

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
MAX_EXAMPLES = 50
PHASES = ("examples", "coverage", "fuzzing")
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def is_planned(ctx) -> bool:
    return ctx.operation.definition.raw.get("x-planned") is True


schema = schemathesis.openapi.from_path(SPEC_PATH).exclude(is_planned)


def implemented_operation_ids() -> set[str]:
    """The operationIds of openapi.yaml without ``x-planned: true``, read without schemathesis."""
    document = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return {
        item[method]["operationId"]
        for item in document["paths"].values()
        for method in METHODS
        if method in item and item[method].get("x-planned") is not True
    }


def selected_operations() -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_selection_is_exactly_the_implemented_operations():
    selected = [operation.definition.raw["operationId"] for operation in selected_operations()]
    assert selected, "schemathesis selected no operation: the fuzz tests below would test nothing"
    assert len(selected) == len(set(selected))
    assert set(selected) == implemented_operation_ids()
    # The filter does filter: whatever is planned (nothing, at the moment) is left out, and only that.
    everything = [result.ok() for result in schemathesis.openapi.from_path(SPEC_PATH).get_all_operations()]
    planned = [
        operation.definition.raw["operationId"] for operation in everything if operation.definition.raw.get("x-planned") is True
    ]
    assert len(everything) == len(selected) + len(planned)
    assert not set(planned) & set(selected)


def test_every_builtin_check_is_enabled():
    load_all_checks()
    names = [check.__name__ for check in CHECKS.get_all() if not is_check_class(check)]
    assert {"not_a_server_error", "response_schema_conformance", "negative_data_rejection"} <= set(names)
    for operation in selected_operations():
        for phase in PHASES:
            config = schema.config.checks_config_for(operation=operation, phase=phase)
            disabled = [name for name in names if not config.get_by_name(name=name).enabled]
            assert not disabled, f"{operation.label} ({phase}): checks disabled: {disabled}"


@pytest.fixture(scope="module")
def credentials(live_server) -> dict[str, str]:
    response = requests.post(f"{live_server.url}/auth/guest-login", timeout=10)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@schema.parametrize()
@FUZZ_SETTINGS
def test_implemented_operations_conform(case, live_server, credentials):
    case.call_and_validate(base_url=live_server.url, headers=credentials)


@schema.parametrize()
@FUZZ_SETTINGS
def test_implemented_operations_conform_under_the_llm_prefix(case, live_server, credentials):
    case.call_and_validate(base_url=f"{live_server.url}/llm", headers=credentials)


@pytest.mark.parametrize("prefix", ["", "/llm"], ids=["root", "llm-prefix"])
def test_the_fuzzed_server_is_the_live_one(live_server, prefix):
    # Guards the base URLs above: a wrong one would turn every case into a 404 that the
    # status-code checks would flag; this makes such a mistake obvious rather than puzzling.
    response = requests.get(f"{live_server.url}{prefix}/v1/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
