"""``llm-api serve`` as a real process, for tests that need what only a process shows: its workers,
its signal handling, everything it prints."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from tests.conftest import TEST_SECRET_KEY, free_port

# Settings the developer's shell may hold: none of them may reach the process unless a test sets it.
_INHERITED_SETTINGS = (
    "DB_POSTGRESQL",
    "PG",
    "LOG_",
    "LLM_API_",
    "ADMIN_",
    "GATEWAY_",
    "VLLM_",
    "OPENAI_",
    "ANTHROPIC_",
    "OLLAMA_",
    "MEMORY_",
    "MEDIA_",
    "WORKERS",
)


class Service:
    """A running ``llm-api serve``: its base URL, its process, and what it printed (once stopped)."""

    def __init__(self, process: subprocess.Popen, base: str) -> None:
        self.process = process
        self.base = base
        self.output = ""

    def workers(self) -> list[int]:
        listed = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return sorted(int(pid) for pid in listed.stdout.split())

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.output.splitlines() if line.startswith("{")]


@asynccontextmanager
async def serving(dsn: str, *args: str, **env: str) -> AsyncIterator[Service]:
    """``python -m llm_api serve *args`` on a free port with JSON logs and ``env`` (which may override
    those), until healthy; stopped with SIGTERM on leaving, its output then in ``Service.output``."""
    port = free_port()
    environment = {name: value for name, value in os.environ.items() if not name.startswith(_INHERITED_SETTINGS)}
    # A short grace period: a test that stops the service has no request left that deserves 30 s; and
    # PYTHONFAULTHANDLER, so that a process that still does not stop says where it hangs (SIGABRT below).
    environment.update(
        DB_POSTGRESQL_WRITE_DSN=dsn,
        LLM_API_SECRET_KEY=TEST_SECRET_KEY,
        LOG_FORMAT="json",
        SHUTDOWN_GRACE_PERIOD="5s",
        PYTHONFAULTHANDLER="1",
    )
    environment.update(env)
    environment.update(HTTP_PORT=str(port), HTTP_HOST="127.0.0.1")
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_api", "serve", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = Service(process, f"http://127.0.0.1:{port}")
    try:
        await healthy(service)
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            service.output = await asyncio.to_thread(lambda: process.communicate(timeout=30)[0])
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # the fault handler prints every thread's stack, then it dies
            try:
                service.output = await asyncio.to_thread(lambda: process.communicate(timeout=10)[0])
            except subprocess.TimeoutExpired:
                process.kill()
                service.output = process.communicate()[0]


async def healthy(service: Service, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                pytest.fail(f"llm-api exited with {service.process.returncode}:\n{service.process.stdout.read()}")
            try:
                async with session.get(f"{service.base}/v1/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail("llm-api did not become healthy")
