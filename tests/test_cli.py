"""`llm-api serve` as people run it: a real process, zero set-up, data kept across restarts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET_KEY, free_port
from tests.sql import query


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: that is 0700 under root, and the embedded server runs unprivileged.
    base = Path(tempfile.mkdtemp(prefix="llm-api-cli-", dir="/tmp"))
    base.chmod(0o755)
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)


def _serve(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_POSTGRESQL", "PG"))}
    env.update(LLM_API_DATA_DIR=str(data_dir), HTTP_PORT=str(port), LOG_FORMAT="json")
    return subprocess.Popen(
        [sys.executable, "-m", "llm_api", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_healthy(process: subprocess.Popen, base: str, timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            pytest.fail(f"llm-api exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if _get(f"{base}/v1/healthz")[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail("llm-api did not become healthy")


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


def test_zero_setup_serve_keeps_data_across_restarts(data_dir: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    first = _serve(data_dir, port)
    _wait_healthy(first, base)
    assert _get(f"{base}/v1/readyz")[0] == 200
    status, version = _get(f"{base}/v1/version")
    assert status == 200 and version["schema_version"] >= 1
    log = _stop(first)
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any("embedded PostgreSQL" in line["message"] for line in lines)
    assert any(line.get("route") == "/v1/readyz" and line.get("status") == 200 for line in lines)
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "the embedded server must stop with llm-api"

    second = _serve(data_dir, port)
    _wait_healthy(second, base)
    assert _get(f"{base}/v1/version")[1]["installation_id"] == version["installation_id"]
    _stop(second)


def test_migrate_command_is_idempotent(make_database):
    dsn = make_database()
    env = {**os.environ, "DB_POSTGRESQL_WRITE_DSN": dsn, "LOG_FORMAT": "json"}
    runs = [
        subprocess.run([sys.executable, "-m", "llm_api", "migrate"], env=env, capture_output=True, text=True, timeout=60)
        for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0]
    assert "applied migration 0001_initial" in runs[0].stderr
    assert "up to date" in runs[1].stderr


def test_unreachable_database_stops_start_up_with_one_line():
    env = {
        **os.environ,
        "DB_POSTGRESQL_WRITE_DSN": f"postgresql://nobody@127.0.0.1:{free_port()}/x",
        "DB_STARTUP_TIMEOUT": "1",
        "HTTP_PORT": str(free_port()),
        "LLM_API_SECRET_KEY": TEST_SECRET_KEY,
    }
    result = subprocess.run([sys.executable, "-m", "llm_api", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("llm-api: PostgreSQL is unreachable after 1 s")


def test_a_port_in_use_stops_start_up_with_one_line(database_dsn):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DB_POSTGRESQL_WRITE_DSN": database_dsn,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "LLM_API_SECRET_KEY": TEST_SECRET_KEY,
        }
        result = subprocess.run([sys.executable, "-m", "llm_api", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"llm-api: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in result.stderr


def test_a_second_serve_on_the_same_data_dir_is_refused_and_harms_nothing(data_dir: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = _serve(data_dir, port)
    _wait_healthy(first, base)
    second = _serve(data_dir, free_port())
    output, _ = second.communicate(timeout=60)
    assert second.returncode == 1
    assert "Another llm-api" in output.strip().splitlines()[-1]
    assert _get(f"{base}/v1/readyz")[0] == 200  # the first one's database is still there
    _stop(first)


def test_an_external_database_needs_the_master_secret(database_dsn):
    env = {k: v for k, v in os.environ.items() if k != "LLM_API_SECRET_KEY"}
    env.update(DB_POSTGRESQL_WRITE_DSN=database_dsn, HTTP_PORT=str(free_port()))
    result = subprocess.run([sys.executable, "-m", "llm_api", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("llm-api: LLM_API_SECRET_KEY must be set")


def test_a_bad_providers_file_stops_start_up_with_one_line(database_dsn, tmp_path: Path):
    providers = tmp_path / "providers.yaml"
    providers.write_text("providers:\n  - name: Local VLLM\n    vendor: vllm\n    base_url: http://127.0.0.1:8001/v1\n")
    env = {
        **os.environ,
        "DB_POSTGRESQL_WRITE_DSN": database_dsn,
        "HTTP_PORT": str(free_port()),
        "LLM_API_SECRET_KEY": TEST_SECRET_KEY,
        "PROVIDERS_CONFIG_FILE": str(providers),
    }
    result = subprocess.run([sys.executable, "-m", "llm_api", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"llm-api: invalid configuration: PROVIDERS_CONFIG_FILE {providers}: providers[0]: "
        "Invalid value for 'name': String should match pattern '^[a-z0-9][a-z0-9._-]{0,63}$'."
    ]


def test_a_file_provider_named_like_an_admin_one_stops_start_up_with_one_line(make_database, tmp_path: Path):
    dsn = make_database()
    env = {**os.environ, "DB_POSTGRESQL_WRITE_DSN": dsn, "HTTP_PORT": str(free_port()), "LLM_API_SECRET_KEY": TEST_SECRET_KEY}
    subprocess.run([sys.executable, "-m", "llm_api", "migrate"], env=env, check=True, capture_output=True, timeout=60)
    query(
        dsn,
        "INSERT INTO llm_api.providers (id, name, vendor, base_url, source) "
        "VALUES ('prov_admin1', 'local-vllm', 'vllm', 'http://127.0.0.1:9/v1', 'api')",
    )
    providers = tmp_path / "providers.yaml"
    providers.write_text("providers:\n  - {name: local-vllm, vendor: vllm, base_url: 'http://127.0.0.1:8001/v1', models: [m]}\n")
    result = subprocess.run(
        [sys.executable, "-m", "llm_api", "serve"],
        env={**env, "PROVIDERS_CONFIG_FILE": str(providers)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'llm-api: Provider "local-vllm" from config_file has the name of one made through the admin API.'
    )
    assert "Traceback" not in result.stderr
