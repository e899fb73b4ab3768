"""Validation errors name the offending field in `param`, on the real generated models."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from llm_api.contract.input_errors import format_location, invalid_input
from llm_api.schemas.models import CreateChatCompletionRequest, ListConversationItemsParams


def error_for(model, data: str | dict, *, root: str | None = "body"):
    with pytest.raises(ValidationError) as caught:
        if isinstance(data, str):
            model.model_validate_json(data, strict=True)
        else:
            model.model_validate(data)
    try:
        parsed = json.loads(data) if isinstance(data, str) else data
    except ValueError:
        parsed = None
    return invalid_input(caught.value, parsed, root=root)


def chat(**fields) -> str:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


def test_value_outside_an_enum_names_the_discriminated_field():
    error = error_for(CreateChatCompletionRequest, '{"model": "m", "messages": [{"role": "robot", "content": "x"}]}')
    assert (error.status, error.param, error.code) == (400, "messages[0].role", "invalid_value")
    assert "robot" in error.message


def test_enum_inside_a_field():
    error = error_for(CreateChatCompletionRequest, chat(reasoning_effort="extreme"))
    assert error.param == "reasoning_effort"


def test_wrong_type_names_the_field():
    error = error_for(CreateChatCompletionRequest, '{"model": 123, "messages": [{"role": "user", "content": "x"}]}')
    assert (error.param, error.code) == ("model", "invalid_value")


def test_strings_are_not_numbers_in_json_bodies():
    assert error_for(CreateChatCompletionRequest, chat(n="2")).param == "n"


def test_out_of_range_and_too_many():
    assert error_for(CreateChatCompletionRequest, chat(temperature=2.5)).param == "temperature"
    assert error_for(CreateChatCompletionRequest, chat(stop=["a", "b", "c", "d", "e"])).param == "stop"


def test_nested_part_errors_point_inside_the_array():
    body = '{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x", "detail": "ultra"}}]}]}'
    assert error_for(CreateChatCompletionRequest, body).param == "messages[0].content[0].image_url.detail"


def test_missing_and_unknown_fields():
    missing = error_for(CreateChatCompletionRequest, '{"model": "m"}')
    assert (missing.param, missing.code) == ("messages", "missing_required_parameter")
    unknown = error_for(CreateChatCompletionRequest, chat(functions=[]))
    assert (unknown.param, unknown.code) == ("functions", "unknown_parameter")


def test_explicit_null_is_refused_where_the_spec_does_not_allow_it():
    # `user` is optional but not nullable; `temperature` is nullable.
    assert error_for(CreateChatCompletionRequest, chat(user=None)).param == "user"
    CreateChatCompletionRequest.model_validate_json(chat(temperature=None), strict=True)


def test_non_finite_numbers_are_refused_by_number_fields():
    assert (
        error_for(CreateChatCompletionRequest, '{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":NaN}').param
        == "temperature"
    )


def test_malformed_json_names_the_body():
    error = error_for(CreateChatCompletionRequest, '{"model": ')
    assert (error.param, error.code) == ("body", "invalid_json")


def test_query_parameters_are_coerced_and_checked():
    params = ListConversationItemsParams.model_validate({"conversation_id": "conv_abc", "limit": "5", "include[]": ["a.b"]})
    assert params.limit == 5 and params.order == "desc"
    assert error_for(ListConversationItemsParams, {"conversation_id": "conv_abc", "limit": "500"}, root=None).param == "limit"
    assert (
        error_for(ListConversationItemsParams, {"conversation_id": "conv_abc", "order": "sideways"}, root=None).param == "order"
    )
    assert error_for(ListConversationItemsParams, {"conversation_id": "../etc/passwd"}, root=None).param == "conversation_id"


def test_location_formatting():
    assert format_location(("messages", 0, "content", 2, "text")) == "messages[0].content[2].text"
    assert format_location(()) is None


def test_discriminator_values_in_locations_are_not_mistaken_for_fields():
    body = json.dumps(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "s"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bad name!", "arguments": "{}"}}],
                },
            ],
        }
    )
    assert error_for(CreateChatCompletionRequest, body).param == "messages[1].tool_calls[0].function.name"


def test_missing_nested_field():
    body = json.dumps({"model": "m", "messages": [{"role": "tool", "content": "x"}]})
    error = error_for(CreateChatCompletionRequest, body)
    assert (error.param, error.code) == ("messages[0].tool_call_id", "missing_required_parameter")


def test_query_text_is_cast_as_openapi_core_casts_it():
    from llm_api.contract.parameters import cast

    assert cast("5", "integer") == 5 and cast(" 5", "integer") == 5  # int() semantics, as openapi-core
    assert cast("5.0", "integer") == "5.0"  # not an integer: stays text, then refused
    assert cast(["a", "b"], "array:string") == ["a", "b"]
    assert cast("yes", "boolean") is True and cast("maybe", "boolean") == "maybe"
    params = ListConversationItemsParams.model_validate({"conversation_id": "conv_a", "limit": cast("7", "integer")}, strict=True)
    assert params.limit == 7
    with pytest.raises(ValidationError):
        ListConversationItemsParams.model_validate({"conversation_id": "conv_a", "limit": cast("5.0", "integer")}, strict=True)
