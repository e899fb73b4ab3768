#!/usr/bin/env bash
# Fuzz the running service against openapi.yaml with schemathesis, every check enabled, with valid credentials.
#
# Starts a fake vLLM (scripts/fake_upstream.py, serving jan-v1-4b) and `llm-api serve` in zero-setup mode
# (embedded PostgreSQL in a scratch data directory) with strict contract validation on and the fake as its
# `vllm` provider, runs schemathesis over every implemented operation (operations marked x-planned are not
# served yet) in all four phases (examples, coverage, fuzzing, stateful: the `links` of openapi.yaml, e.g.
# create conversation -> add items -> list -> delete), and stops everything. Exit status: schemathesis's, or
# 1 when the service logged a 500 (in strict mode a response that violates the contract is a 500).
#
#   scripts/schemathesis.sh [extra schemathesis options]
#
# Credentials: one, the bootstrap ADMIN_API_KEY (generated per run), sent as `Authorization: Bearer` to every
# operation. It is an administrator with a user of its own, so it passes every secured operation: the admin
# provider routes as well as conversations, projects, settings, API keys and chats (one credential only: two
# trip schemathesis's ignored_auth check). Run-specific data reaches schemathesis through a config file made
# here: schemathesis.toml (the shared settings, also read by the pytest contract tests) plus
#   - refresh tokens of fresh guest logins for POST /auth/refresh-token (the only way it can ever answer 200:
#     each token works once; the rest of its cases are 401s, a spent or unknown token);
#   - the ids of providers created through the admin API before the run, for /v1/admin/providers/{provider_id};
#   - the fake's model ids for /v1/models/{model_id}, /v1/models/catalogs/{model_public_id} and chat `model`.
# Each is drawn with a probability below 1, so these parameters are still fuzzed as well.
#
# Budget (fixed, so the run fits CI: about 3 minutes on a 2-core box): SCHEMATHESIS_MAX_EXAMPLES (default
# 100) examples per operation and phase, seed SCHEMATHESIS_SEED (default 20261125); the stateful phase runs
# its own number of scenarios, bounded by the same budget.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
upstream_port=$(free_port)
base="http://127.0.0.1:$port"
data_dir=$(mktemp -d /tmp/llm-api-schemathesis-XXXXXX)
chmod 755 "$data_dir"   # the embedded PostgreSQL runs unprivileged when this runs as root
log="$data_dir/serve.log"
admin_key="admin-$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$data_dir"
}
trap cleanup EXIT

wait_for() {  # URL PID LOG: until URL answers 2xx; the process dying or 20 s passing is a failure
    for _ in $(seq 1 100); do
        curl -fs "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { cat "$3"; echo "$1: the process exited"; exit 1; }
        sleep 0.2
    done
    cat "$3"; echo "$1: no answer in 20 s"; exit 1
}

"$venv/bin/python" scripts/fake_upstream.py vllm --port "$upstream_port" >"$data_dir/upstream.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$upstream_port/v1/models" "${pids[-1]}" "$data_dir/upstream.log"

# No rate limit: the fuzzer is one caller sending thousands of requests. Short upstream timeouts: fuzzed
# provider base URLs (POST/PATCH /v1/admin/providers) may point anywhere, and an unreachable one must not
# stall the run.
env -u DB_POSTGRESQL_WRITE_DSN -u PROVIDERS_CONFIG_FILE -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u OLLAMA_BASE_URL \
    -u MEMORY_BASE_URL -u MEDIA_RESOLVE_URL -u KEYCLOAK_BASE_URL -u JWKS_URL -u GATEWAY_SHARED_SECRET \
    LLM_API_DATA_DIR="$data_dir/data" HTTP_HOST=127.0.0.1 HTTP_PORT="$port" \
    OPENAPI_STRICT_VALIDATION=true RATE_LIMIT_PER_MINUTE=0 LOG_FORMAT=json \
    ADMIN_API_KEY="$admin_key" VLLM_BASE_URL="http://127.0.0.1:$upstream_port/v1" \
    UPSTREAM_CONNECT_TIMEOUT=2s UPSTREAM_TIMEOUT=10s STREAM_TIMEOUT=10s UPSTREAM_RETRIES=0 \
    "$venv/bin/llm-api" serve >"$log" 2>&1 &
pids+=($!)
wait_for "$base/v1/healthz" "${pids[-1]}" "$log"

# The run's data, as the TOML appended to schemathesis.toml.
"$venv/bin/python" - "$base" "$admin_key" "$upstream_port" >"$data_dir/run.toml" <<'EOF'
import json, sys, urllib.request

base, admin_key, upstream_port = sys.argv[1:]

def call(method, path, body=None, key=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(base + path, data, headers, method=method), timeout=30) as r:
        return json.load(r)

models = [model["id"] for model in call("GET", "/v1/models", key=admin_key)["data"]]
if "vllm/jan-v1-4b" not in models:
    sys.exit(f"the fake provider's model is not served: {models}")
refresh_tokens = [call("POST", "/auth/guest-login")["refresh_token"] for _ in range(20)]
providers = [
    call("POST", "/v1/admin/providers", {
        "name": f"fuzz-{n}", "vendor": "vllm", "base_url": f"http://127.0.0.1:{upstream_port}/v1", "models": [f"fuzz-model-{n}"],
    }, key=admin_key)["id"]
    for n in range(5)
]
toml = json.dumps  # a JSON string or array of strings is valid TOML
print(f"""
# ---- generated by scripts/schemathesis.sh for this run
[dictionaries.refresh_tokens]
values = {toml(refresh_tokens)}
[dictionaries.provider_ids]
values = {toml(providers)}
[dictionaries.model_ids]
values = ["jan-v1-4b", "vllm/jan-v1-4b"]

[[operations]]
include-operation-id = "refreshToken"
parameters = {{ "body.refresh_token" = {{ dictionary = "refresh_tokens", probability = 0.5 }} }}

[[operations]]
include-operation-id = ["getProvider", "updateProvider", "deleteProvider"]
parameters = {{ "path.provider_id" = {{ dictionary = "provider_ids", probability = 0.5 }} }}

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
EOF
cat schemathesis.toml "$data_dir/run.toml" >"$data_dir/schemathesis.toml"

# The file, not the served copy (they are byte-identical, see tests/api/test_health.py): schemathesis
# leaves out the operation that serves the schema it was loaded from.
status=0
"$venv/bin/schemathesis" --config-file "$data_dir/schemathesis.toml" run openapi.yaml --url "$base" \
    -H "Authorization: Bearer $admin_key" --checks all --exclude-by '/x-planned == true' \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" --seed "${SCHEMATHESIS_SEED:-20261125}" "$@" || status=$?
if grep -q '"status": 500' "$log"; then
    echo "the service answered 500 during the run:"; grep '"status": 500' "$log" | head -20
    [ "$status" -ne 0 ] || status=1
fi
exit $status
