"""The description of one API operation, as generated from openapi.yaml into ``operations.py``, and the
validated input of one call of it.

The app binds routes, checks credentials and validates input from these descriptors, so that no
spec walking happens while a request is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Operation:
    """One (method, path) of the contract."""

    operation_id: str
    method: str
    #: The OpenAPI path template, e.g. ``/v1/conversations/{conversation_id}``.
    path: str
    #: True when a credential is required (the operation has a non-empty security requirement).
    secured: bool
    #: True for operations marked ``x-planned``: in the contract, not served yet (they answer 501).
    planned: bool
    #: True for operations marked ``x-required-role: admin``: 403 for principals without the admin role.
    admin_only: bool
    #: False for operations marked ``x-rate-limited: false`` (health): no rate limit applies.
    rate_limited: bool
    #: Path, query, header and cookie parameters together, validated in one model; None without parameters.
    params_model: type[BaseModel] | None
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    #: Query parameters that are arrays (``include[]=a&include[]=b``).
    array_query_params: frozenset[str]
    #: The JSON type of every parameter that is not a string (``integer``, ``array:string`` ...).
    param_types: Mapping[str, str]
    #: Header parameters, by the name the contract gives them (looked up case-insensitively).
    header_params: tuple[str, ...]
    cookie_params: tuple[str, ...]
    #: Path parameters whose value may contain ``/`` (``x-allow-slashes``), routed greedily.
    slash_params: frozenset[str]
    #: The JSON request body model, or None when the operation takes no body.
    body_model: type[BaseModel] | None
    body_required: bool

    @property
    def handler_name(self) -> str:
        """The snake_case name of the handler function: ``createChatCompletion`` -> ``create_chat_completion``."""
        return snake_case(self.operation_id)


@dataclass(frozen=True, slots=True)
class OperationInput:
    """What a handler works from: the validated parameters and body (None when the operation has none).

    Built by ``server.validation``; here, beside ``Operation``, so that ``app_keys`` can name its type
    without importing the middleware that imports it.
    """

    params: BaseModel | None
    body: BaseModel | None


def snake_case(camel: str) -> str:
    """``getOpenApiDocument`` -> ``get_open_api_document``."""
    out = []
    for index, char in enumerate(camel):
        if char.isupper() and index:
            out.append("_")
        out.append(char.lower())
    return "".join(out)
