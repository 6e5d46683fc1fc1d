"""One exception hierarchy for the gateway and its mapping to the OpenAI error envelope.

Lower layers raise these; the API layer turns them into HTTP statuses (before a
response is committed) or in-band error events (after).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

RETRY_STATUSES: Final = frozenset({408, 409, 429})
"""4xx statuses clients (Stainless SDKs: openai-python, openai-node) retry by default."""
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""Statuses whose cause passes with time (rate limit, capacity, drain): worth a Retry-After."""


class GatewayError(Exception):
    """Base class: carries what the OpenAI envelope needs."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None
    retryable: bool | None = None
    """Whether sending the same request again may succeed; None: as the status says
    (5xx, 408, 409 and 429 may, other 4xx cannot). See `retry_headers`."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}
        if retryable is not None:
            self.retryable = retryable
        self.detail = detail
        """What only the operator should see (backend URLs and bodies, settings to check):
        logged with the request id, never sent to the client."""

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.message, self.error_type, param=self.param, code=self.code)

    def response_headers(self) -> dict[str, str]:
        return retry_headers(self.status_code, self.headers, retryable=self.retryable)


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"
    default_code = "invalid_value"


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


def retry_headers(
    status: int, headers: Mapping[str, str] | None = None, *, retryable: bool | None = None
) -> dict[str, str]:
    """An error response's headers with the retry advice clients act on.

    Stainless SDKs retry 408, 409, 429 and every 5xx (twice by default) unless the
    response says `x-should-retry: false`; a failure that the same request would meet
    again (bad input, a misconfigured backend, a model that makes no audio for this
    text) says so. `Retry-After` is kept only where waiting helps (429, 503) and
    defaults to 1 s there.
    """
    if retryable is None:
        retryable = status in RETRY_STATUSES or status >= 500
    out = {k: v for k, v in (headers or {}).items() if k.lower() != "retry-after"}
    if not retryable:
        out["x-should-retry"] = "false"
    elif status in RETRY_AFTER_STATUSES:
        given = {k.lower(): v for k, v in (headers or {}).items()}.get("retry-after")
        out["Retry-After"] = given or "1"
    return out


def error_envelope(
    message: str, error_type: str, *, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
