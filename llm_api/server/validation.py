"""Typed, validated input for every operation, from the generated models (the hot path).

Parameters (path, query, cookie) are cast from text by their JSON type, as openapi-core does, and
validated together in the operation's ``...Params`` model; a JSON body in its request model. Both
in pydantic's strict mode (no coercion: ``"5"`` is not an integer), as JSON Schema reads the spec. In strict contract mode openapi-core then re-checks what was accepted.
"""

from __future__ import annotations

import json
import math
import re
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from llm_api.app_keys import OPERATION_INPUT, STRICT_CONTRACT
from llm_api.contract.input_errors import integral_floats, invalid_input, with_integral_floats_as_ints
from llm_api.contract.parameters import cast
from llm_api.errors import InvalidRequest
from llm_api.schemas.operation import Operation, OperationInput
from llm_api.server.operations import operation_of, request_view

_JSON_TYPES = ("application/json",)
# A number that may overflow a float to infinity (1e400, or 309 digits and more): a free-form `{"k": 1e400}`
# was stored as Infinity, which PostgreSQL's jsonb refuses (a 500). Seeing one only triggers the full check.
_HUGE_NUMBER = re.compile(rb"[eE][+-]?[0-9]{3}|[0-9]{309}")
T = TypeVar("T", bound=BaseModel)


@web.middleware
async def validation_middleware(request: web.Request, handler):
    operation = operation_of(request)
    if operation is None:
        return await handler(request)
    params = _parameters(request, operation)
    raw, body = b"", None
    if operation.body_model is not None:
        raw = await request.read()
        body = _body(request, operation, raw)
    request[OPERATION_INPUT] = OperationInput(params=params, body=body)
    strict = request.app.get(STRICT_CONTRACT)
    if strict is not None:
        strict.check_request(request_view(request, operation, body=raw or None))
    return await handler(request)


def _parameters(request: web.Request, operation: Operation) -> BaseModel | None:
    # As with unknown body fields: a parameter the operation does not have (a typo such as
    # `limt=5`) is refused rather than silently ignored.
    unknown = next((name for name in request.query if name not in operation.query_params), None)
    if unknown is not None:
        raise InvalidRequest(f"Unrecognized query parameter: '{unknown}'.", param=unknown, code="unknown_parameter")
    if operation.params_model is None:
        return None
    values: dict[str, object] = {name: request.match_info[name] for name in operation.path_params}
    for name in operation.query_params:
        if name in operation.array_query_params:
            if name in request.query:
                values[name] = request.query.getall(name)
        elif name in request.query:
            values[name] = request.query[name]  # the first, when repeated, as openapi-core reads it
    for name in operation.header_params:
        if name in request.headers:
            values[name] = request.headers[name]
    for name in operation.cookie_params:
        if name in request.cookies:
            values[name] = request.cookies[name]
    for name, json_type in operation.param_types.items():
        if name in values:
            values[name] = cast(values[name], json_type)
    try:
        return operation.params_model.model_validate(values, strict=True)
    except ValidationError as error:
        raise invalid_input(error, values) from None


def _body(request: web.Request, operation: Operation, raw: bytes) -> BaseModel | None:
    if not raw:
        if operation.body_required:
            raise InvalidRequest("A JSON body is required.", param="body", code="missing_body")
        return None
    if request.content_type not in _JSON_TYPES:
        raise InvalidRequest(
            f"The body must be JSON, sent with Content-Type: application/json (got {request.content_type!r}).",
            param="Content-Type",
            code="invalid_content_type",
        )
    if request.charset not in (None, "utf-8", "utf8"):
        raise InvalidRequest("JSON bodies must be UTF-8.", param="Content-Type", code="invalid_content_type")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequest(
            f"The body is not valid UTF-8 (byte {error.start}).", param="body", code="invalid_encoding"
        ) from None
    _refuse_non_finite_numbers(raw)
    try:
        return operation.body_model.model_validate_json(raw, strict=True)
    except ValidationError as error:
        data = _parsed_or_none(raw)
        if integral_floats(error):
            # JSON Schema counts 5.0 as an integer; pydantic's strict mode does not. Only on this
            # error path: rewrite such numbers as integers and validate once more.
            data = with_integral_floats_as_ints(data, error)
            try:
                return operation.body_model.model_validate_json(json.dumps(data), strict=True)
            except ValidationError as again:
                error = again
        raise invalid_input(error, data, root="body") from None


def _parsed_or_none(raw: bytes):
    """The body as data, to name the field an error is about (only on the error path)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: nested deeper than Python's parser goes (``[[[[...``); the model parser
        # has already refused such a body (its limit is lower), so there is no field to name.
        return None


def _refuse_non_finite_numbers(raw: bytes) -> None:
    """JSON has no NaN or Infinity, yet Python's and pydantic's parsers accept the bare tokens.

    The models refuse them in number fields; free-form objects (tool parameters, preferences) would
    still carry them into storage or upstream calls. The full check only runs when the bytes appear.
    """
    if b"NaN" not in raw and b"Infinity" not in raw and _HUGE_NUMBER.search(raw) is None:
        return
    try:
        json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        # Nested deeper than Python's parser goes: the model parser, whose depth limit is lower,
        # refuses the body as invalid JSON (a 400). Left to propagate, this was a 500.
        return
    except ValueError as error:
        if "non-finite" in str(error):
            raise InvalidRequest(
                "JSON numbers must be finite (NaN and Infinity are not JSON).", param="body", code="invalid_json"
            ) from None
        # Other syntax errors are reported by the model parser, with its own message.


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON allows it, but it is no number a float (or jsonb) can hold
        raise ValueError(f"non-finite number {text[:32]}")
    return value


def body_of(request: web.Request, model: type[T]) -> T | None:
    """The validated body as its model (None when an optional body was not sent)."""
    body = request[OPERATION_INPUT].body
    assert body is None or isinstance(body, model), f"{type(body).__name__} is not {model.__name__}"
    return body


def params_of(request: web.Request, model: type[T]) -> T:
    """The validated parameters as their model."""
    params = request[OPERATION_INPUT].params
    assert isinstance(params, model), f"{type(params).__name__} is not {model.__name__}"
    return params
