"""Log lines: JSON or text, each tagged with the request id; one access line per request."""

from __future__ import annotations

import json
import logging

from llm_api.observability.logging import JsonFormatter, RequestIdFilter, TextFormatter, current_request_id


def _record(message="hello %s", args=("world",), **extra) -> logging.LogRecord:
    record = logging.LogRecord("llm_api.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    RequestIdFilter().filter(record)
    return record


def test_json_lines_carry_the_request_id_and_extra_fields():
    token = current_request_id.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(_record(route="/v1/healthz", status=200)))
    finally:
        current_request_id.reset(token)
    assert line["message"] == "hello world"
    assert line["request_id"] == "req-1"
    assert (line["level"], line["logger"], line["route"], line["status"]) == ("info", "llm_api.test", "/v1/healthz", 200)


def test_text_lines_are_readable():
    token = current_request_id.set("req-2")
    try:
        text = TextFormatter().format(_record(status=404))
    finally:
        current_request_id.reset(token)
    assert text.endswith("llm_api.test [req-2] hello world status=404")


async def test_one_access_line_per_request_with_route_and_status(client, caplog):
    caplog.set_level(logging.INFO, logger="llm_api.access")
    response = await client.get("/llm/v1/healthz", headers={"X-Request-Id": "abc"})
    assert response.status == 200
    lines = [r for r in caplog.records if r.name == "llm_api.access"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.request_id, line.method, line.route, line.status) == ("abc", "GET", "/llm/v1/healthz", 200)
    assert line.duration_ms >= 0


async def test_client_errors_log_as_warnings_and_unknown_routes_are_logged(client, caplog):
    caplog.set_level(logging.INFO, logger="llm_api.access")
    await client.get("/nowhere")
    line = [r for r in caplog.records if r.name == "llm_api.access"][-1]
    assert (line.levelno, line.status, line.route) == (logging.WARNING, 404, "-")
