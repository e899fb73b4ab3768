"""The errors the service answers with, each rendered as the OpenAI envelope by one middleware.

Code anywhere below the HTTP layer raises these; nothing else builds error JSON.
"""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """An error with its HTTP status and OpenAI envelope fields.

    ``param`` names the offending field or parameter; ``code`` is a stable machine-readable string.
    """

    status = 500
    type = "server_error"
    default_code: str | None = "internal_error"
    #: Headers every error of this class carries.
    default_headers: Mapping[str, str] = {}

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = {**self.default_headers, **(headers or {})}
        #: The HTTP status a provider answered when this error is that provider refusing a call (set by
        #: providers/upstream.py; the metrics count refusals by it); None for every other error.
        self.upstream_status = upstream_status

    def envelope(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_credentials"


class Forbidden(ApiError):
    status = 403
    type = "permission_error"
    default_code = "forbidden"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    type = "invalid_request_error"
    default_code = "conflict"
    # The OpenAI SDKs retry 409s unless told not to; a conflict does not go away by retrying.
    default_headers = {"x-should-retry": "false"}


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    default_code = "body_too_large"


class RateLimited(ApiError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"


class InternalError(ApiError):
    pass


class NotImplementedYet(ApiError):
    status = 501
    type = "server_error"
    default_code = "not_implemented"
    default_headers = {"x-should-retry": "false"}


class UpstreamError(ApiError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"


class ProviderUnavailable(UpstreamError):
    """Nothing was received from the provider (unreachable, or its 502/503/529 before the answer began): worth
    a retry, or another provider (chat/failover.py)."""

    default_code = "provider_unavailable"


class ServiceUnavailable(ApiError):
    status = 503
    type = "service_unavailable_error"
    default_code = "service_unavailable"
    default_headers = {"Retry-After": "1"}


class UpstreamTimeout(ApiError):
    status = 504
    type = "upstream_error"
    default_code = "upstream_timeout"


class ContractDrift(InternalError):
    """The service disagrees with openapi.yaml (strict mode only): a bug, never the caller's fault."""

    default_code = "contract_drift"
    default_headers = {"x-should-retry": "false"}
