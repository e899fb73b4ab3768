#!/usr/bin/env bash
# Fuzz the running service against openapi.yaml with schemathesis, every check enabled, with valid credentials.
#
# Starts a fake vLLM serving jan-v1-4b (scripts/bench/fake_upstream.py) and `llm-api serve` in zero-setup mode
# (embedded PostgreSQL in a scratch data directory) with strict contract validation on and the fake as its
# `vllm` provider (VLLM_BASE_URL), runs schemathesis over every implemented operation (those marked x-planned
# are not served yet) in all four phases (examples, coverage, fuzzing, and stateful: the `links` of
# openapi.yaml, e.g. create conversation -> add items -> list -> delete), and stops everything. Exit status:
# 0 when both schemathesis runs below pass and the service logged no 500 (in strict mode a request or response
# that disagrees with openapi.yaml is a 500).
#
#   scripts/schemathesis.sh [extra schemathesis options, given to both runs]
#
# Credentials: one, the bootstrap ADMIN_API_KEY (made up per run), as `Authorization: Bearer` on every request.
# It authenticates an administrator with a user of its own, so it passes every secured operation, admin
# routes included (one credential only: two trip schemathesis's ignored_auth check).
#
# Two runs, one after the other, on the same service:
#   1. every operation but the five admin provider routes (tag Admin), against a fixed set of providers: the
#      fake alone, so chats are served by it;
#   2. the admin provider routes. They add, re-point and deactivate providers at random; in run 1 they would
#      route chats to made-up base URLs (502) and to providers without vision (400 on images).
# Run-specific data reaches schemathesis through a config file that scripts/schemathesis_support.py makes:
# schemathesis.toml (the shared settings, also read by the pytest contract tests) plus
#   - refresh tokens of fresh guest logins for POST /auth/refresh-token, its only way to a 200 (each token
#     works once; the rest of its cases are 401s, spent or unknown tokens);
#   - the fake's model ids for /v1/models/{model_id}, /v1/models/catalogs/{model_public_id} and chat `model`;
#   - a conversation and its items for /v1/conversations/{conversation_id}/items/{item_id} (a pair the fuzzing
#     phase cannot guess, and the stateful phase, which follows the links to it, does not reliably reach);
#   - the ids of providers created before run 2 for /v1/admin/providers/{provider_id}.
# Each is drawn with a probability below 1, so these parameters are still fuzzed too.
#
# schemathesis reads a copy of openapi.yaml that differs in one place: the text/event-stream answer of
# POST /v1/chat/completions. In an OpenAPI 3.1 document schemathesis reads the `schema` of an event stream as
# the schema of one event ({"data": ..., "event": ...}), while openapi.yaml, like most 3.1 documents, gives
# `type: string` for the whole body, so every streamed answer failed its response_schema_conformance. The copy
# states in schema terms what openapi.yaml says in prose: each event's data is a ChatCompletionChunk, a
# ChatCompletionStreamError or `[DONE]`; every streamed event is checked against it.
#
# Budget (fixed, to fit CI: under 2 minutes on a 2-core box, where the guest-only run took 2): SCHEMATHESIS_MAX_EXAMPLES
# (default 100) examples per operation and phase, and for the stateful phase scenarios; seed SCHEMATHESIS_SEED
# (default 20261125).
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

wait_for() {  # URL PID LOG: until URL answers 2xx; the process exiting, or 20 s, is a failure
    for _ in $(seq 1 100); do
        curl -fs "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { cat "$3"; echo "$1: the process exited"; exit 1; }
        sleep 0.2
    done
    cat "$3"; echo "$1: no answer in 20 s"; exit 1
}

# The benchmark fake, not scripts/fake_upstream.py: that one mirrors vLLM's request validation, so a fuzzed chat
# it refuses comes back as a 400 that is the fake's, not llm-api's. This one answers every chat, so a 4xx to
# valid input can only be llm-api's own.
"$venv/bin/python" scripts/bench/fake_upstream.py --port "$upstream_port" --model jan-v1-4b --chunks 3 \
    >"$data_dir/upstream.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$upstream_port/v1/models" "${pids[-1]}" "$data_dir/upstream.log"

# No rate limit: the fuzzer is one caller sending thousands of requests; for the same reason the most API keys
# a user may hold (5 by default, then 409) is raised. Short upstream timeouts: fuzzed provider base URLs (run 2)
# may point anywhere, and an unreachable one must not stall the run.
env -u DB_POSTGRESQL_WRITE_DSN -u PROVIDERS_CONFIG_FILE -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u OLLAMA_BASE_URL \
    -u MEMORY_BASE_URL -u MEDIA_RESOLVE_URL -u KEYCLOAK_BASE_URL -u JWKS_URL -u GATEWAY_SHARED_SECRET -u WORKERS \
    LLM_API_DATA_DIR="$data_dir/data" HTTP_HOST=127.0.0.1 HTTP_PORT="$port" \
    OPENAPI_STRICT_VALIDATION=true RATE_LIMIT_PER_MINUTE=0 API_KEY_MAX_PER_USER=1000 LOG_FORMAT=json \
    ADMIN_API_KEY="$admin_key" VLLM_BASE_URL="http://127.0.0.1:$upstream_port/v1" \
    UPSTREAM_CONNECT_TIMEOUT=2s UPSTREAM_TIMEOUT=10s STREAM_TIMEOUT=10s UPSTREAM_RETRIES=0 \
    "$venv/bin/llm-api" serve >"$log" 2>&1 &
pids+=($!)
wait_for "$base/v1/healthz" "${pids[-1]}" "$log"

# The copy of the file, not the served document: schemathesis leaves out the operation that serves the schema
# it was loaded from.
"$venv/bin/python" scripts/schemathesis_support.py spec openapi.yaml "$data_dir/openapi.yaml"

fuzz() {  # RUN-CONFIG OPTIONS...: one schemathesis run; its status in $status unless an earlier run failed
    local config="$data_dir/schemathesis-$1.toml"
    shift
    local code=0
    "$venv/bin/schemathesis" --config-file "$config" run "$data_dir/openapi.yaml" --url "$base" \
        -H "Authorization: Bearer $admin_key" --checks all --exclude-by '/x-planned == true' \
        --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" --seed "${SCHEMATHESIS_SEED:-20261125}" "$@" "${extra[@]}" || code=$?
    [ "$status" -ne 0 ] || status=$code
}
extra=("$@")
status=0

# Either run fails when an operation answered nothing but 401/403: the credential stopped working.
fail_on_auth=$'\n[warnings]\nfail-on = ["missing_auth"]'
echo "== schemathesis, run 1 of 2: every operation but the admin provider routes"
{ cat schemathesis.toml; echo "$fail_on_auth"; "$venv/bin/python" scripts/schemathesis_support.py chat "$base" "$admin_key"; } >"$data_dir/schemathesis-chat.toml"
fuzz chat --exclude-tag Admin

echo "== schemathesis, run 2 of 2: the admin provider routes"
{ cat schemathesis.toml; echo "$fail_on_auth"; "$venv/bin/python" scripts/schemathesis_support.py admin "$base" "$admin_key" "http://127.0.0.1:$upstream_port/v1"; } >"$data_dir/schemathesis-admin.toml"
fuzz admin --include-tag Admin --phases examples,coverage,fuzzing   # no links between them: no stateful phase

# What the service answered, by operation: every one should show 2xx answers (valid credentials, data to find).
echo "== The service's answers, by operation and status"
"$venv/bin/python" scripts/schemathesis_support.py answers "$log"
if grep -q '"status": 500' "$log"; then
    echo "the service answered 500:"; grep '"status": 500' "$log" | head -20
    [ "$status" -ne 0 ] || status=1
fi
exit $status
