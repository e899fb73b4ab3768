"""Rules openapi.yaml must keep, beyond being valid OpenAPI 3.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "patch")
TAGS = {tag["name"] for tag in SPEC["tags"]}


def operations():
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                yield pytest.param(path, method, item[method], id=item[method]["operationId"])


def resolve(node):
    while "$ref" in node:
        target = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_document_is_valid_openapi_3_1():
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


def test_servers_are_relative_and_include_the_llm_mirror():
    assert [server["url"] for server in SPEC["servers"]] == ["/", "/llm"]


def test_four_security_schemes_and_secure_by_default():
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyBearer"]["scheme"] == "bearer"
    assert schemes["apiKeyHeader"] == {**schemes["apiKeyHeader"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["gatewayIdentity"] == {
        **schemes["gatewayIdentity"],
        "type": "apiKey",
        "in": "header",
        "name": "X-Gateway-Secret",
    }
    assert SPEC["security"] == [{"bearerAuth": []}, {"apiKeyBearer": []}, {"apiKeyHeader": []}, {"gatewayIdentity": []}]


@pytest.mark.parametrize("path,method,op", list(operations()))
def test_operation_is_described(path, method, op):
    assert op["summary"]
    assert len(op["tags"]) == 1 and op["tags"][0] in TAGS


@pytest.mark.parametrize("path,method,op", list(operations()))
def test_every_error_response_is_the_envelope(path, method, op):
    for status, response in op["responses"].items():
        if int(status) >= 400:
            schema = resolve(response)["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (status, schema)


@pytest.mark.parametrize("path,method,op", list(operations()))
def test_statuses_the_server_can_produce_are_documented(path, method, op):
    statuses = set(op["responses"])
    assert {"400", "500"} <= statuses  # every request can carry a malformed X-Request-Id; bugs happen
    secured = op.get("security", SPEC["security"]) != []
    if secured:
        assert "401" in statuses
    if op.get("x-rate-limited", True):
        assert "429" in statuses, "rate-limited operations document 429"
    if op.get("x-required-role") == "admin":
        assert "403" in statuses
    if "requestBody" in op:
        assert "413" in statuses
    if any(resolve(p)["in"] == "path" for p in [*SPEC["paths"][path].get("parameters", []), *op.get("parameters", [])]):
        assert "404" in statuses or not secured
    assert ("501" in statuses) == bool(op.get("x-planned")), "x-planned and a documented 501 go together"


@pytest.mark.parametrize("path,method,op", list(operations()))
def test_request_bodies_refuse_unknown_fields(path, method, op):
    if "requestBody" in op:
        schema = resolve(op["requestBody"]["content"]["application/json"]["schema"])
        assert schema.get("additionalProperties") is False


def test_nullable_is_written_the_3_1_way():
    assert "nullable:" not in SPEC_PATH.read_text(encoding="utf-8")


def _examples():
    """Every example in the document, with the schema it must satisfy."""
    for item in SPEC["paths"].values():
        for method in METHODS:
            op = item.get(method)
            if not op:
                continue
            name = op["operationId"]
            for parameter in [*item.get("parameters", []), *op.get("parameters", [])]:
                parameter = resolve(parameter)
                if "example" in parameter:
                    yield pytest.param(parameter["schema"], parameter["example"], id=f"{name}:{parameter['name']}")
            contents = [("request", op["requestBody"]["content"])] if "requestBody" in op else []
            contents += [(status, resolve(r).get("content", {})) for status, r in op["responses"].items()]
            for where, content in contents:
                for media, entry in content.items():
                    if media != "application/json":
                        continue
                    if "example" in entry:
                        yield pytest.param(entry["schema"], entry["example"], id=f"{name}:{where}")
                    for key, example in entry.get("examples", {}).items():
                        yield pytest.param(entry["schema"], example["value"], id=f"{name}:{where}:{key}")
    for name, schema in SPEC["components"]["schemas"].items():
        if "example" in schema:
            yield pytest.param({"$ref": f"#/components/schemas/{name}"}, schema["example"], id=f"schema:{name}")


@pytest.mark.parametrize("schema,example", list(_examples()))
def test_examples_satisfy_their_schemas(schema, example):
    # Refs in the spec are relative to the document root, so the components ride along.
    validator = OAS31Validator({**schema, "components": SPEC["components"]}, format_checker=OAS31Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(example), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_there_are_examples_to_check():
    assert len(list(_examples())) >= 25
