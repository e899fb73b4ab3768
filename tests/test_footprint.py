"""What a production worker loads: the heavy libraries behind strict mode and tracing stay out.

openapi-core alone is about a fifth of a worker's memory (issue 8: ≤ 100 MB RSS per worker); it is
needed only with OPENAPI_STRICT_VALIDATION, the OTLP exporter and client instrumentation only with
OTEL_ENABLED. Checked in a fresh interpreter, since this test process has them all loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import TEST_SECRET_KEY

_PROBE = """
import json, sys
from llm_api.app import create_app
from llm_api.config import Settings
create_app(Settings.from_env({"DB_POSTGRESQL_WRITE_DSN": "postgresql://unused/db", "LLM_API_SECRET_KEY": sys.argv[1],
                              "OPENAPI_STRICT_VALIDATION": sys.argv[2], "OTEL_ENABLED": sys.argv[2],
                              "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}))
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("openapi_core", "google")
                        or name.startswith(("opentelemetry.exporter", "opentelemetry.instrumentation.aiohttp_client")))))
"""


def loaded(strict_and_traced: bool) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, TEST_SECRET_KEY, str(strict_and_traced).lower()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_a_production_app_loads_neither_openapi_core_nor_the_otlp_exporter():
    assert loaded(False) == []


def test_strict_mode_and_tracing_load_what_they_need():
    modules = loaded(True)
    assert "openapi_core" in modules
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in modules
