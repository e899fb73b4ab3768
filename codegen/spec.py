"""Reading openapi.yaml into the facts code generation needs."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class SpecError(ValueError):
    """openapi.yaml breaks a rule that code generation relies on."""


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path | query | header | cookie
    required: bool
    schema: dict[str, Any]
    allow_slashes: bool

    json_type: str = "string"  # "integer", "number", "boolean", "array:<item type>" or "string"

    @property
    def is_array(self) -> bool:
        return self.json_type.startswith("array")


@dataclass(frozen=True)
class OperationSpec:
    operation_id: str
    method: str
    path: str
    secured: bool
    planned: bool
    admin_only: bool
    rate_limited: bool
    parameters: tuple[Parameter, ...]
    body_schema_name: str | None
    body_required: bool

    @property
    def params_model_name(self) -> str | None:
        if not self.parameters:
            return None
        return self.operation_id[0].upper() + self.operation_id[1:] + "Params"


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def operations(spec: dict[str, Any]) -> list[OperationSpec]:
    """Every operation, in the order of the document."""
    default_security = spec.get("security", [])
    found = []
    for path, item in spec["paths"].items():
        shared_params = item.get("parameters", [])
        for method in HTTP_METHODS:
            if method in item:
                found.append(_operation(spec, path, method, item[method], shared_params, default_security))
    _check_unique_ids(found)
    return found


def _operation(spec, path, method, op, shared_params, default_security) -> OperationSpec:
    operation_id = op.get("operationId")
    if not operation_id:
        raise SpecError(f"{method.upper()} {path} has no operationId")
    security = op.get("security", default_security)
    parameters = _merge_parameters(spec, shared_params, op.get("parameters", []), operation_id)
    body_name, body_required = _request_body(op, operation_id)
    return OperationSpec(
        operation_id=operation_id,
        method=method.upper(),
        path=path,
        # An empty requirement object ({}) in the list makes credentials optional.
        secured=bool(security) and all(requirement for requirement in security),
        planned=bool(op.get("x-planned", False)),
        admin_only=_required_role(op, operation_id) == "admin",
        rate_limited=bool(op.get("x-rate-limited", True)),
        parameters=parameters,
        body_schema_name=body_name,
        body_required=body_required,
    )


def _required_role(op, operation_id) -> str | None:
    role = op.get("x-required-role")
    if role not in (None, "admin"):
        raise SpecError(f"{operation_id}: x-required-role must be 'admin' (got {role!r})")
    return role


def _merge_parameters(spec, shared, own, operation_id) -> tuple[Parameter, ...]:
    merged: dict[tuple[str, str], Parameter] = {}
    for raw in [*shared, *own]:  # operation-level parameters override path-level ones
        resolved = _resolve(spec, raw)
        location = resolved["in"]
        if location not in ("path", "query", "header", "cookie"):
            raise SpecError(f"{operation_id}: parameters in {location!r} are not supported")
        schema = copy.deepcopy(resolved["schema"])
        if "description" in resolved and "$ref" not in schema:
            schema.setdefault("description", resolved["description"])
        merged[(resolved["name"], location)] = Parameter(
            name=resolved["name"],
            location=location,
            required=bool(resolved.get("required", False)),
            schema=schema,
            allow_slashes=bool(resolved.get("x-allow-slashes", False)),
            json_type=_json_type(spec, schema, operation_id),
        )
    names = [name for name, _ in merged]
    if len(names) != len(set(names)):
        raise SpecError(f"{operation_id}: two parameters share a name in different locations")
    return tuple(merged.values())


def _json_type(spec, schema, operation_id) -> str:
    """How a parameter's text becomes a value: its schema's JSON type (arrays with their item type)."""
    resolved = _resolve(spec, schema)
    kind = resolved.get("type", "string")
    if kind not in ("string", "integer", "number", "boolean", "array"):
        raise SpecError(f"{operation_id}: parameters of type {kind!r} are not supported")
    if kind == "array":
        return "array:" + _json_type(spec, resolved.get("items", {}), operation_id)
    return kind


def _request_body(op, operation_id) -> tuple[str | None, bool]:
    body = op.get("requestBody")
    if body is None:
        return None, False
    content = body.get("content", {})
    if set(content) != {"application/json"}:
        raise SpecError(f"{operation_id}: request bodies must be application/json only")
    ref = content["application/json"].get("schema", {}).get("$ref", "")
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise SpecError(f"{operation_id}: the request body schema must be a $ref to a named schema")
    return ref[len(prefix) :], bool(body.get("required", False))


def _resolve(spec, node):
    while "$ref" in node:
        parts = node["$ref"].removeprefix("#/").split("/")
        node = spec
        for part in parts:
            node = node[part]
    return node


def _check_unique_ids(found: list[OperationSpec]) -> None:
    seen: set[str] = set()
    for op in found:
        if op.operation_id in seen:
            raise SpecError(f"operationId {op.operation_id} is used twice")
        seen.add(op.operation_id)


def with_parameter_schemas(spec: dict[str, Any], ops: list[OperationSpec]) -> dict[str, Any]:
    """A copy of the spec with one object schema per operation's parameters, for the model generator."""
    augmented = copy.deepcopy(spec)
    schemas = augmented["components"]["schemas"]
    for op in ops:
        name = op.params_model_name
        if name is None:
            continue
        if name in schemas:
            raise SpecError(f"schema name {name} is reserved for the parameters of {op.operation_id}")
        schemas[name] = {
            "type": "object",
            "additionalProperties": False,
            "description": f"The parameters of {op.operation_id} (path, query, header and cookie).",
            "required": [p.name for p in op.parameters if p.required],
            "properties": {p.name: p.schema for p in op.parameters},
        }
    return augmented
