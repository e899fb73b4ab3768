#!/usr/bin/env bash
# Fuzz the running service against openapi.yaml with schemathesis, every check enabled.
#
# Starts `llm-api serve` in zero-setup mode (embedded PostgreSQL in a scratch data directory) with
# strict contract validation on, runs schemathesis over every implemented operation (operations
# marked x-planned are not served yet), and stops the service. Exit status: schemathesis's.
#
#   scripts/schemathesis.sh [extra schemathesis options]
#
# Budget: SCHEMATHESIS_MAX_EXAMPLES (default 100) examples per operation and phase, fixed seed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data_dir=$(mktemp -d /tmp/llm-api-schemathesis-XXXXXX)
chmod 755 "$data_dir"   # the embedded PostgreSQL runs unprivileged when this runs as root
log="$data_dir/serve.log"

# No rate limit: the fuzzer is one caller sending thousands of requests.
env -u DB_POSTGRESQL_WRITE_DSN LLM_API_DATA_DIR="$data_dir/data" HTTP_HOST=127.0.0.1 HTTP_PORT="$port" \
    OPENAPI_STRICT_VALIDATION=true RATE_LIMIT_PER_MINUTE=0 LOG_FORMAT=json "$venv/bin/llm-api" serve >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data_dir"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/v1/healthz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.2
done

# Secured operations are fuzzed as a guest (one credential only: two trip schemathesis's ignored_auth check).
token=$(curl -fs -X POST "http://127.0.0.1:$port/auth/guest-login" | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

# The file, not the served copy (they are byte-identical, see tests/api/test_health.py): schemathesis
# leaves out the operation that serves the schema it was loaded from.
"$venv/bin/schemathesis" run openapi.yaml --url "http://127.0.0.1:$port" \
    -H "Authorization: Bearer $token" --checks all --exclude-by '/x-planned == true' \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" --seed 20261125 "$@"
status=$?
if grep -q '"status": 5' "$log"; then
    echo "server answered 5xx during the run:"; grep '"status": 5' "$log" | head -20
fi
exit $status
