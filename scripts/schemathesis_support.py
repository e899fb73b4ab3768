"""What scripts/schemathesis.sh needs besides schemathesis itself (see the comment at its top):

schemathesis_support.py spec SOURCE TARGET       the copy of openapi.yaml schemathesis reads
schemathesis_support.py chat BASE ADMIN_KEY      run 1's additions to schemathesis.toml (printed)
schemathesis_support.py admin BASE ADMIN_KEY UPSTREAM   run 2's additions (printed)
schemathesis_support.py answers LOG              the service's answers by operation and status
"""

from __future__ import annotations

import collections
import json
import sys
import urllib.request
from pathlib import Path

import yaml

toml = json.dumps  # a JSON string, or array of strings, is valid TOML


def call(base: str, method: str, path: str, body=None, key: str | None = None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(base + path, data, headers, method=method), timeout=30) as answer:
        return json.load(answer)


def spec(source: str, target: str) -> None:
    """openapi.yaml with the schema of one streamed event in place of `type: string` for the whole stream."""
    document = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    media = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]["text/event-stream"]

    def ref(name: str) -> dict:
        return {"$ref": f"#/components/schemas/{name}"}

    media["schema"] = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [ref("ChatCompletionChunk"), ref("ChatCompletionStreamError")]},
                    },
                ]
            }
        },
    }
    Path(target).write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")


def chat(base: str, admin_key: str) -> None:
    models = [model["id"] for model in call(base, "GET", "/v1/models", key=admin_key)["data"]]
    if "vllm/jan-v1-4b" not in models:
        sys.exit(f"the fake's model is not served: {models}")
    # Images go only to providers that declare vision: let the fake take them, as a vLLM serving a VLM would.
    vllm = next(p for p in call(base, "GET", "/v1/admin/providers", key=admin_key)["data"] if p["name"] == "vllm")
    call(base, "PATCH", f"/v1/admin/providers/{vllm['id']}", {"metadata": {"vision": "true"}}, key=admin_key)
    refresh_tokens = [call(base, "POST", "/auth/guest-login")["refresh_token"] for _ in range(20)]
    # A conversation with items, for GET/DELETE /v1/conversations/{conversation_id}/items/{item_id}: an item id
    # is only good with its own conversation, and the stateful phase does not reliably get that far.
    conversation = call(base, "POST", "/v1/conversations", {"title": "schemathesis"}, key=admin_key)["id"]
    items = call(
        base,
        "POST",
        f"/v1/conversations/{conversation}/items",
        {"items": [{"type": "message", "role": "user", "content": f"Item {n}."} for n in range(20)]},
        key=admin_key,
    )["data"]
    print(f"""
# ---- scripts/schemathesis.sh, run 1
[dictionaries.refresh_tokens]
values = {toml(refresh_tokens)}
[dictionaries.model_ids]
values = ["jan-v1-4b", "vllm/jan-v1-4b"]
[dictionaries.conversation_with_items]
values = {toml([conversation])}
[dictionaries.item_ids]
values = {toml([item["id"] for item in items])}

[[operations]]
include-operation-id = "refreshToken"
parameters = {{ "body.refresh_token" = {{ dictionary = "refresh_tokens", probability = 0.5 }} }}

[[operations]]
include-operation-id = ["getConversationItem", "deleteConversationItem"]
parameters = {{ "path.conversation_id" = {{ dictionary = "conversation_with_items", probability = 0.7 }}, "path.item_id" = {{ dictionary = "item_ids", probability = 0.7 }} }}

[[operations]]
# Fuzzing takes ids from earlier responses (the conversation list shows the one above), and deleting
# that conversation left the item operations nothing but 404s.
include-operation-id = "deleteConversation"
phases.fuzzing.extra-data-sources.responses = false

[[operations]]
include-operation-id = "retrieveModel"
parameters = {{ "path.model_id" = {{ dictionary = "model_ids", probability = 0.5 }} }}

[[operations]]
include-operation-id = "getModelCatalog"
parameters = {{ "path.model_public_id" = {{ dictionary = "model_ids", probability = 0.5 }} }}

[[operations]]
include-operation-id = "createChatCompletion"
parameters = {{ "body.model" = {{ dictionary = "model_ids", probability = 0.8 }} }}
""")


def admin(base: str, admin_key: str, upstream: str) -> None:
    providers = [
        call(
            base,
            "POST",
            "/v1/admin/providers",
            {
                "name": f"fuzz-{n}",
                "vendor": "vllm",
                "base_url": upstream,
                "models": [f"fuzz-model-{n}"],
            },
            key=admin_key,
        )["id"]
        for n in range(5)
    ]
    print(f"""
# ---- scripts/schemathesis.sh, run 2
[dictionaries.provider_ids]
values = {toml(providers)}

[[operations]]
include-operation-id = ["getProvider", "updateProvider", "deleteProvider"]
parameters = {{ "path.provider_id" = {{ dictionary = "provider_ids", probability = 0.5 }} }}
""")


def answers(log: str) -> None:
    """Every operation should show 2xx answers (valid credentials, data to find): this shows whether it did."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in open(log, encoding="utf-8", errors="replace"):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "llm_api.access":
            counts[f"{entry['method']} {entry['route']}"][entry["status"]] += 1
    for operation, statuses in sorted(counts.items(), key=lambda item: item[0].split(" ", 1)[::-1]):
        print(f"  {operation:<62} " + " ".join(f"{status}x{count}" for status, count in sorted(statuses.items())))


if __name__ == "__main__":
    {"spec": spec, "chat": chat, "admin": admin, "answers": answers}[sys.argv[1]](*sys.argv[2:])
