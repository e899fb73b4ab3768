"""Strict mode: openapi-core checks requests and responses against openapi.yaml itself.

The generated models validate every request on the hot path in microseconds. Strict mode adds the
slow, authoritative check (milliseconds per request), so that in tests and CI any disagreement
between the code, the generated models and the spec fails loudly:

- a request our models accepted must be valid for openapi-core too;
- every response (status, headers, body) must be documented by the spec.

A request our models refuse while the spec allows it is not drift this check can see; schemathesis
catches that case (its positive tests send only spec-valid data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import yaml
from multidict import CIMultiDict, MultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError

from llm_api.contract.input_errors import format_location
from llm_api.errors import ContractDrift
from llm_api.schemas.operation import Operation

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser is 3x faster on our spec


@dataclass(frozen=True, slots=True)
class ContractRequest:
    """What openapi-core needs to know of a request (its duck-typed request protocol)."""

    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters
    host_url: str = "http://llm-api"


@dataclass(frozen=True, slots=True)
class ContractResponse:
    """What openapi-core needs to know of a response."""

    data: bytes | str
    status_code: int
    content_type: str
    headers: CIMultiDict


class StrictContract:
    """openapi-core's view of the contract, built once per app (about 70 ms).

    The document itself is not re-validated here (that costs 0.3 s per app): tests/contract/test_spec.py
    validates it, and codegen refuses a broken one.
    """

    def __init__(self, document: bytes) -> None:
        document = yaml.load(document, Loader=_YAML_LOADER)
        self._openapi = OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))

    def check_request(self, request: ContractRequest) -> None:
        """Raise ContractDrift unless openapi-core accepts a request our models accepted."""
        try:
            self._openapi.validate_request(request)
        except (OpenAPIError, TypeError) as error:  # TypeError: openapi-core's discriminator bug
            raise ContractDrift(f"contract drift: our models accepted a request the spec refuses: {describe(error)}") from error

    def check_response(self, request: ContractRequest, response: ContractResponse) -> None:
        """Raise ContractDrift unless the response is one the spec documents for the operation."""
        try:
            self._openapi.validate_response(request, response)
        except OpenAPIError as error:
            raise ContractDrift(
                f"contract drift: a {response.status_code} response the spec does not allow: {describe(error)}"
            ) from error


def canonical_path(operation: Operation, match_info: Mapping[str, str]) -> str:
    """The request path as the spec writes it: no ``/llm`` prefix, path values percent-encoded
    (so that an id containing ``/`` is one path segment, as the template expects)."""
    path = operation.path
    for name in operation.path_params:
        segment = quote(match_info[name], safe="")
        if segment in (".", ".."):
            # A dot segment would be resolved away by openapi-core's URL handling (`/v1/conversations/..`
            # becoming `/v1/`): strict mode then reported drift, a 500, for an id it had answered 400/404.
            segment = segment.replace(".", "%2E")
        path = path.replace("{" + name + "}", segment)
    return path


def contract_request(
    operation: Operation,
    match_info: Mapping[str, str],
    *,
    query: MultiDict,
    headers: CIMultiDict,
    cookies: Mapping[str, str],
    body: bytes | None,
    content_type: str,
) -> ContractRequest:
    return ContractRequest(
        path=canonical_path(operation, match_info),
        method=operation.method.lower(),
        body=body,
        content_type=content_type,
        parameters=RequestParameters(query=query, header=headers, cookie=dict(cookies)),
    )


def contract_response(body: bytes, status: int, content_type: str, headers: CIMultiDict) -> ContractResponse:
    # openapi-core validates text media types (YAML, HTML) as strings, not bytes.
    data: bytes | str = body.decode("utf-8") if content_type.startswith("text/") else body
    return ContractResponse(data=data, status_code=status, content_type=content_type, headers=headers)


def describe(error: Exception, limit: int = 600) -> str:
    """A short account of an openapi-core error: the schema errors when there are some, never whole bodies."""
    schema_errors = getattr(error.__cause__, "schema_errors", None) or getattr(error, "schema_errors", None)
    if schema_errors:
        text = "; ".join(f"{format_location(tuple(e.absolute_path)) or 'body'}: {e.message}" for e in schema_errors)
    else:
        text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
