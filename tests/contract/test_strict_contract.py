"""Strict mode really catches drift: openapi-core refuses what the spec does not allow."""

from __future__ import annotations

import json

import pytest
from multidict import CIMultiDict, MultiDict

from llm_api.contract.spec import spec_bytes
from llm_api.contract.strict import StrictContract, canonical_path, contract_request, contract_response
from llm_api.errors import ContractDrift
from llm_api.schemas.operations import OPERATIONS


@pytest.fixture(scope="module")
def strict() -> StrictContract:
    return StrictContract(spec_bytes())


def request(operation_id: str, match_info=None, *, body: dict | None = None, headers=None, query=()):
    return contract_request(
        OPERATIONS[operation_id],
        match_info or {},
        query=MultiDict(query),
        headers=CIMultiDict(headers or {}),
        cookies={},
        body=json.dumps(body).encode() if body is not None else None,
        content_type="application/json",
    )


def response(status: int, body, content_type="application/json", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return contract_response(data, status, content_type, CIMultiDict(headers or {}))


ENVELOPE = {"error": {"message": "m", "type": "server_error", "param": None, "code": "internal_error"}}


def test_a_documented_response_passes(strict):
    strict.check_response(request("getHealth"), response(200, {"status": "ok"}))
    strict.check_response(
        request("getMetrics"), response(200, b"llm_api_active_streams 0.0\n", "text/plain; version=0.0.4; charset=utf-8")
    )
    strict.check_response(request("getMetrics"), response(500, ENVELOPE))


@pytest.mark.parametrize(
    "status,body,fragment",
    [
        (200, {"status": "fine"}, "status"),  # value outside the schema
        (200, {"status": "ok", "uptime": 3}, "uptime"),  # field the schema forbids
        (418, {"status": "ok"}, "418"),  # status not documented at all
        (500, {"error": {"message": "m", "type": "t"}}, "param"),  # an envelope missing keys
    ],
)
def test_an_undocumented_response_is_drift(strict, status, body, fragment):
    with pytest.raises(ContractDrift) as caught:
        strict.check_response(request("getHealth"), response(status, body))
    assert fragment in caught.value.message
    assert caught.value.status == 500 and caught.value.code == "contract_drift"


def test_a_request_the_spec_refuses_is_drift(strict):
    bad = request("createChatCompletion", body={"model": "m", "messages": []}, headers={"Authorization": "Bearer t"})
    with pytest.raises(ContractDrift, match="messages"):
        strict.check_request(bad)


def test_a_request_the_spec_accepts_passes(strict):
    good = request(
        "createChatCompletion",
        body={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer t"},
    )
    strict.check_request(good)


def test_paths_are_seen_as_the_spec_writes_them():
    catalog = OPERATIONS["getModelCatalog"]
    assert canonical_path(catalog, {"model_public_id": "openai/gpt-4o"}) == "/v1/models/catalogs/openai%2Fgpt-4o"
    item = OPERATIONS["getConversationItem"]
    assert canonical_path(item, {"conversation_id": "conv_a", "item_id": "msg_b"}) == "/v1/conversations/conv_a/items/msg_b"
