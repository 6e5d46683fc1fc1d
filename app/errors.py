"""One exception hierarchy for the gateway and its mapping to the OpenAI error envelope.

Lower layers raise these; the API layer turns them into HTTP statuses (before a
response is committed) or in-band error events (after).
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class: carries what the OpenAI envelope needs."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}
        self.detail = detail
        """What only the operator should see (backend URLs and bodies, settings to check):
        logged with the request id, never sent to the client."""

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.message, self.error_type, param=self.param, code=self.code)


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class Forbidden(GatewayError):
    status_code = 403
    error_type = "invalid_request_error"
    default_code = "permission_denied"


class NotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class PayloadTooLarge(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class RateLimited(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class Overloaded(GatewayError):
    """Capacity is exhausted (stream slots, decoder queue); the client may retry later."""

    status_code = 503
    error_type = "server_error"
    default_code = "overloaded"


class BackendError(GatewayError):
    """The token backend failed or answered with an error."""

    status_code = 502
    error_type = "server_error"
    default_code = "backend_error"


class BackendUnavailable(BackendError):
    """The backend could not be reached at all (refused, DNS, reset before answering)."""

    status_code = 503
    default_code = "backend_unavailable"


class BackendTimeout(BackendError):
    status_code = 504
    default_code = "backend_timeout"


class DecodeError(GatewayError):
    """The codec failed on a window; only the streams of that batch are affected."""

    status_code = 500
    default_code = "decode_error"


class InvalidAudioTokens(BackendError):
    """The backend produced tokens that cannot be audio and the policy is to fail."""

    default_code = "invalid_audio_tokens"


def error_envelope(
    message: str, error_type: str, *, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
