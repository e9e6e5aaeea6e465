"""Domain errors, each carrying the HTTP status and documented error type it maps to.

Services raise these; `handlers/base.py` is the one place that turns them into the
documented JSON error shape (Anthropic or OpenAI flavour, depending on the route).
"""
from __future__ import annotations

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_credits",
                 403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def error_type_for(status: int) -> str:
    """The documented `error.type` for an HTTP status."""
    return _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class GatewayError(Exception):
    """Base class: an error the client should see, with its status and `error.type`."""

    status: int = 500
    error_type: str = "api_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 status: int | None = None, error_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type


class InvalidRequest(GatewayError):
    """Malformed body, missing or wrongly typed field, unknown model (400)."""
    status = 400
    error_type = "invalid_request_error"


class RequestTooLarge(GatewayError):
    status = 413
    error_type = "request_too_large"


class AuthenticationFailed(GatewayError):
    """Missing or unknown API key (401)."""
    status = 401
    error_type = "authentication_error"


class PermissionDenied(GatewayError):
    """Frozen key or user, non-positive balance, model not allowed for the key (403)."""
    status = 403
    error_type = "permission_error"


class InsufficientCredits(GatewayError):
    """Positive balance that does not cover the request's hold (402)."""
    status = 402
    error_type = "insufficient_credits"


class NotFound(GatewayError):
    status = 404
    error_type = "not_found_error"


class Conflict(GatewayError):
    status = 409
    error_type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_error"


class UpstreamError(GatewayError):
    """The upstream failed: connection error, timeout or 5xx (502 api_error)."""
    status = 502
    error_type = "api_error"


class UpstreamOverloaded(GatewayError):
    """The upstream answered 529; kept as overloaded_error so clients retry."""
    status = 529
    error_type = "overloaded_error"
