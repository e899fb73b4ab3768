"""Strict mode: every finished response is checked against openapi.yaml before it leaves.

It sits outside the error renderer, so error envelopes, 401s and 501s are checked as well.
Streamed responses have already been sent when the handler returns; they are not checked here.
"""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from llm_api.app_keys import STRICT_CONTRACT
from llm_api.contract.strict import contract_response
from llm_api.errors import ContractDrift
from llm_api.schemas.models import ErrorResponse
from llm_api.server.operations import operation_of, request_view
from llm_api.server.responses import error_response

log = logging.getLogger(__name__)


@web.middleware
async def contract_check_middleware(request: web.Request, handler):
    response = await handler(request)
    if not isinstance(response, web.Response) or response.prepared:
        return response
    try:
        _check(request, response)
    except ContractDrift as drift:
        log.error("%s", drift.message)
        return error_response(drift)
    return response


def _check(request: web.Request, response: web.Response) -> None:
    body = response.body if isinstance(response.body, bytes) else b""
    operation = operation_of(request)
    if operation is None:
        # Unknown path or wrong method: no operation documents it, but it must still be the envelope.
        try:
            ErrorResponse.model_validate_json(body)
        except ValidationError as error:
            raise ContractDrift(f"contract drift: a {response.status} answer is not the error envelope: {error}") from error
        return
    request.app[STRICT_CONTRACT].check_response(
        request_view(request, operation, body=None),
        contract_response(body, response.status, response.content_type, response.headers),
    )
