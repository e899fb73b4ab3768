"""Prometheus metrics, served at ``/metrics`` in the text format (prometheus-client).

One ``Metrics`` per application, with its own ``CollectorRegistry`` (never prometheus-client's
global one). The families, all prefixed ``llm_api_``:

- ``http_requests_total{method,route,status}`` and ``http_request_duration_seconds{method,route}``:
  every request, with its final status (the error envelope's included; 499 for a client that left).
  ``route`` is the operation's path template in openapi.yaml (``/v1/conversations/{conversation_id}``,
  the same for the ``/llm`` mirror), ``unmatched`` for any other path or method;
- ``tokens_total{model,provider,direction}``: usage reported by the provider (``in``: prompt,
  ``out``: completion), plain and streamed answers, by the public model id that answered;
- ``upstream_errors_total{provider,reason}``: every failed call to a provider, failovers included;
  ``reason`` is one of the reasons listed below;
- ``active_streams``: streamed answers being relayed right now (from the provider's first chunk);
- ``time_to_first_token_seconds{model,provider}``: for a streamed answer, from the call to the
  provider's first chunk (failover included).

Several workers (``llm-api serve --workers N``): PROMETHEUS_MULTIPROC_DIR names a directory shared by
the workers, and must be in the environment before prometheus-client is first imported (its value
class is chosen then). Each worker writes its samples there, and each scrape adds up every worker's,
read into a fresh registry. When a worker exits, ``mark_worker_dead`` drops its share of the
``active_streams`` gauge; its counters and histograms keep counting in the sums.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from llm_api.errors import ApiError, ProviderUnavailable, UpstreamError, UpstreamTimeout

#: The Content-Type of ``/metrics``: the Prometheus text format 0.0.4, which every scraper reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: The ``route`` of a request no operation matched (unknown path, wrong method): one label for them all.
UNMATCHED = "unmatched"
#: Why a call to a provider failed:
#: ``connect``        it could not be reached (refused, reset, DNS, connect timeout);
#: ``timeout``        no (complete) answer within UPSTREAM_TIMEOUT / STREAM_TIMEOUT;
#: ``status_4xx``     it refused the call with a 4xx (429 and a refused key included);
#: ``status_5xx``     it answered a 5xx;
#: ``bad_response``   its answer was not what the protocol says (not JSON, wrong shape);
#: ``stream_broken``  its answer broke off or ended early, or it reported a failure mid-answer.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
# Chat requests run from milliseconds to minutes; prometheus-client's default buckets stop at 10 s.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)


class Metrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """``multiprocess_dir``: the directory every worker writes to (PROMETHEUS_MULTIPROC_DIR); None
        for a single process."""
        if multiprocess_dir is not None:
            _check_multiprocess(multiprocess_dir)
        self._multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        registry = self.registry
        self._requests = Counter(
            "llm_api_http_requests",
            "HTTP requests answered, by operation route and final status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self._durations = Histogram(
            "llm_api_http_request_duration_seconds",
            "Time to answer an HTTP request (a streamed answer: until its end).",
            ["method", "route"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self._tokens = Counter(
            "llm_api_tokens",
            "Tokens reported by providers: in (prompt) and out (completion).",
            ["model", "provider", "direction"],
            registry=registry,
        )
        self._upstream_errors = Counter(
            "llm_api_upstream_errors", "Failed calls to providers, failovers included.", ["provider", "reason"], registry=registry
        )
        self._active_streams = Gauge(
            "llm_api_active_streams", "Streamed answers being relayed right now.", registry=registry, multiprocess_mode="livesum"
        )
        self._first_token = Histogram(
            "llm_api_time_to_first_token_seconds",
            "Streamed answers: time from calling the provider to its first chunk.",
            ["model", "provider"],
            buckets=_FIRST_TOKEN_BUCKETS,
            registry=registry,
        )

    # -- recording -------------------------------------------------------------------------------------------------

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """``route``: the operation's path template, None when no operation matched."""
        method = method.upper() if method.upper() in _METHODS else "OTHER"
        route = route or UNMATCHED
        self._requests.labels(method, route, str(status)).inc()
        self._durations.labels(method, route).observe(seconds)

    def count_tokens(self, model: str, provider: str, usage: Mapping[str, Any] | None) -> None:
        """Count a provider's ``usage`` (``prompt_tokens``, ``completion_tokens``); nothing when it sent none."""
        if not isinstance(usage, Mapping):
            return
        for direction, key in (("in", "prompt_tokens"), ("out", "completion_tokens")):
            count = usage.get(key)
            if isinstance(count, int | float) and not isinstance(count, bool) and count >= 0:
                self._tokens.labels(model, provider, direction).inc(count)

    def upstream_failed(self, provider: str, error: BaseException) -> None:
        """Count a failed call to ``provider``; errors that are not the provider's doing are not counted."""
        reason = upstream_reason(error)
        if reason is not None:
            self._upstream_errors.labels(provider, reason).inc()

    def first_token(self, model: str, provider: str, seconds: float) -> None:
        self._first_token.labels(model, provider).observe(seconds)

    @contextmanager
    def relaying_stream(self) -> Iterator[None]:
        """One more active stream for the duration of the block, however it ends."""
        self._active_streams.inc()
        try:
            yield
        finally:
            self._active_streams.dec()

    # -- exposition ------------------------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """Every family in the text format: this process's, or with several workers the sum of all of theirs."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self._multiprocess_dir))
        return generate_latest(registry)


def upstream_reason(error: BaseException) -> str | None:
    """The reason (one of the reasons listed above) a provider call failed with ``error``; None when the
    error is not the provider's doing (a request we refused before calling it, a contract drift of ours)."""
    status = error.upstream_status if isinstance(error, ApiError) else None
    if status is not None:
        return "status_5xx" if status >= 500 else "status_4xx"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, ProviderUnavailable):
        return "connect"
    if isinstance(error, UpstreamError):
        return "bad_response" if error.code == "invalid_upstream_response" else "stream_broken"
    return None


def mark_worker_dead(directory: Path, pid: int) -> None:
    """For the supervisor, when the worker ``pid`` has exited: its streams no longer count as active.
    (Its counters and histograms stay in the sums, as counters must.)"""
    mark_process_dead(pid, str(directory))


def _check_multiprocess(directory: Path) -> None:
    """The samples must really go to ``directory``: prometheus-client writes to PROMETHEUS_MULTIPROC_DIR, and
    only when that was set before its first import."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not getattr(values.ValueClass, "_multiprocess", False) or configured is None:
        raise ValueError("PROMETHEUS_MULTIPROC_DIR must be in the environment before prometheus_client is imported")
    if Path(configured).resolve() != Path(directory).resolve():
        raise ValueError(f"PROMETHEUS_MULTIPROC_DIR is {configured}, but the metrics directory is {directory}")
    if not Path(directory).is_dir():
        raise ValueError(f"the metrics directory {directory} does not exist")
