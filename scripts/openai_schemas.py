"""Copy the response schemas of OpenAI's own OpenAPI document that tests/contract/test_openai_schemas.py
validates our answers with, into tests/contract/openai_schemas.json (CI has no network).

    .venv/bin/python scripts/openai_schemas.py <openapi.yaml of openai/openai-openapi> <its commit>

e.g. with a clone: ``git -C openai-openapi show HEAD:openapi.yaml > /tmp/openai.yaml``, then
``scripts/openai_schemas.py /tmp/openai.yaml $(git -C openai-openapi rev-parse HEAD)``.

What is copied: ``ROOTS`` and every schema they reference, with ``$ref``s pointing into the file's own
``$defs`` (one JSON Schema 2020-12 document). What is changed, and only that:

* OpenAPI 3.0's ``nullable: true`` (which OpenAI's 3.1 document still uses in places, e.g. the stream
  chunk's ``finish_reason`` and ``usage``) becomes ``anyOf: [<the schema>, {"type": "null"}]``, what it
  means; JSON Schema validators ignore ``nullable``, so ``finish_reason: null`` would otherwise fail.
* Documentation keywords (descriptions, titles, examples, ``deprecated``, ``x-*``) are left out.
* ``ConversationItem`` keeps only the item kinds this service has (``message``, ``function_call``,
  ``function_call_output``); OpenAI's lists 28, whose schemas would be most of the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ConversationResource",
    "DeletedConversationResource",
    "ConversationItemList",
    "ConversationItem",
)
ITEM_KINDS = ("Message", "FunctionToolCallResource", "FunctionToolCallOutputResource")
DOCUMENTATION = frozenset({"description", "title", "example", "examples", "deprecated"})
NAMED = frozenset({"properties", "patternProperties", "$defs"})  # keywords whose keys are names, not keywords
TARGET = Path(__file__).resolve().parent.parent / "tests" / "contract" / "openai_schemas.json"
PREFIX = "#/components/schemas/"


def extracted(spec: dict[str, Any], source: str, commit: str) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    narrowed = {
        **schemas,
        "ConversationItem": {**schemas["ConversationItem"], "oneOf": [{"$ref": PREFIX + name} for name in ITEM_KINDS]},
    }
    names: set[str] = set()
    pending = list(ROOTS)
    while pending:
        name = pending.pop()
        if name not in names:
            names.add(name)
            pending += _references(narrowed[name])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Copied from openai/openai-openapi, file {source}, commit {commit} (info.version "
            f"{spec['info']['version']}) by scripts/openai_schemas.py: these schemas and those they reference, "
            "nullable: true written as anyOf [..., null], documentation keywords left out, ConversationItem "
            "narrowed to message, function_call and function_call_output. Do not edit by hand."
        ),
        "source": {
            "repository": "openai/openai-openapi",
            "file": source,
            "commit": commit,
            "info_version": spec["info"]["version"],
            "roots": list(ROOTS),
        },
        "$defs": {name: _converted(narrowed[name]) for name in sorted(names)},
    }


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].removeprefix(PREFIX)] if isinstance(node.get("$ref"), str) else []
        return found + [name for value in node.values() for name in _references(value)]
    if isinstance(node, list):
        return [name for value in node for name in _references(value)]
    return []


def _converted(node: Any) -> Any:
    """A schema in JSON Schema terms (``properties`` maps names to schemas: a property may be called
    ``title`` or ``description``)."""
    if isinstance(node, list):
        return [_converted(value) for value in node]
    if not isinstance(node, dict):
        return node
    kept = {
        key: ({name: _converted(schema) for name, schema in value.items()} if key in NAMED else _converted(value))
        for key, value in node.items()
        if key not in DOCUMENTATION and not key.startswith("x-") and key != "nullable"
    }
    if isinstance(kept.get("$ref"), str):
        kept["$ref"] = "#/$defs/" + kept["$ref"].removeprefix(PREFIX)
    if node.get("nullable") is True:
        return {"anyOf": [kept, {"type": "null"}]}
    return kept


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, commit = argv
    spec = yaml.safe_load(Path(path).read_text())
    document = extracted(spec, "openapi.yaml", commit)
    TARGET.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"{TARGET}: {len(document['$defs'])} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
