"""``llm-api serve --workers N``: N worker processes on one port, under gunicorn's arbiter.

Why gunicorn: its arbiter is the well-kept answer to everything a pre-fork server needs — workers
sharing one port, a worker that dies (or hangs past its heartbeat) replaced,
SIGTERM passed on so that each worker drains, SIGKILL for those still busy after the grace period,
SIGTTIN/SIGTTOU to grow or shrink the pool — and aiohttp ships the worker class for it.

Each worker builds its own application (its own pool of database connections, its own HTTP
sessions) and its own listening socket (SO_REUSEPORT) after the fork. On SIGTERM the arbiter tells
every worker to stop; a worker closes its socket, lets running requests and streams finish for up to
SHUTDOWN_GRACE_PERIOD, then closes what is left. Metrics are written by every worker to a shared
directory and added up on each scrape (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web
from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from llm_api.config import Settings

log = logging.getLogger("llm_api.workers")

_HEARTBEAT_TIMEOUT = 30  # s: a worker whose event loop is stuck this long is killed and replaced


def serve_workers(settings: Settings) -> None:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT; raise OSError when the port cannot be bound.

    Returns (or exits with gunicorn's status) once every worker has stopped.
    """
    _check_port(settings.http_host, settings.http_port)
    if "prometheus_client" in sys.modules:
        # Its value class is chosen from PROMETHEUS_MULTIPROC_DIR once, on import: set it first.
        raise RuntimeError("prometheus_client was imported before the metrics directory was set")
    master = os.getpid()
    metrics_dir = Path(tempfile.mkdtemp(prefix="llm-api-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    settings = settings.model_copy(update={"prometheus_multiproc_dir": metrics_dir})
    try:
        _Arbiter(settings).run()
    finally:
        # Workers leave through this frame too (gunicorn ends them with SystemExit); only the master cleans up.
        if os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _check_port(host: str, port: int) -> None:
    """Fail at once, as the single-process server does, rather than after gunicorn's five retries."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        probe.bind((host, port))


class _Arbiter(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        host = f"[{settings.http_host}]" if ":" in settings.http_host else settings.http_host
        for name, value in {
            "bind": [f"{host}:{settings.http_port}"],
            "workers": settings.workers,
            "worker_class": "aiohttp.GunicornWebWorker",
            # Each worker listens on its own SO_REUSEPORT socket and the kernel spreads connections over
            # them. One shared socket lets whichever worker wakes first take every connection: under
            # load one worker held all 64 of a benchmark's connections while the other idled.
            "reuse_port": True,
            "graceful_timeout": math.ceil(settings.shutdown_grace_period),  # gunicorn takes whole seconds
            "timeout": _HEARTBEAT_TIMEOUT,
            "logger_class": _GunicornLog,
            "accesslog": None,  # our access-log middleware writes one line per request
            "proc_name": "llm-api",
            "control_socket_disable": True,  # gunicorn 27's control socket would live in $HOME; signals suffice
            "child_exit": self._worker_exited,
        }.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        """Called in each worker after the fork: the worker's application, wrapped in its runner."""
        settings = self._settings

        async def runner() -> web.AppRunner:
            from llm_api.app import create_app  # in the worker: the app imports prometheus_client

            return web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=settings.shutdown_grace_period)

        return runner

    def _worker_exited(self, _arbiter: Any, worker: Any) -> None:
        from llm_api.observability.metrics import mark_worker_dead  # after the metrics directory is set

        assert self._settings.prometheus_multiproc_dir is not None
        mark_worker_dead(self._settings.prometheus_multiproc_dir, worker.pid)


class _GunicornLog(glogging.Logger):
    """Gunicorn's own messages (workers booting, exiting, replaced) through the service's logging set-up:
    same format, same stream, same level."""

    def setup(self, cfg: Any) -> None:
        self.cfg = cfg
        self._access_log_enabled = False
        self.error_log.handlers.clear()
        self.error_log.propagate = True
        self.error_log.setLevel(logging.NOTSET)  # the root logger decides
