"""One error hierarchy for the whole gateway.

Each class knows its HTTP status and the OpenAI error ``type``/``code`` it maps to, so
routes never build error bodies by hand. The class names double as Step Functions
``ErrorEquals`` names (a Lambda task that raises ``UpstreamTimeout`` reports
``errorType: "UpstreamTimeout"``), so renaming one is a breaking change.

Third-party exceptions are translated into these by *type* at the adapter boundary,
never by matching message text.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class. ``status``/``type``/``code`` are the OpenAI error contract."""

    status: int = 500
    type: str = "api_error"
    code: str | None = "internal_error"
    #: True when another attempt (same or other deployment) may succeed.
    retryable: bool = False
    #: True when the failure says something about the deployment's health (circuit breaker).
    counts_against_deployment: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})
        self.details: dict[str, Any] = details

    def to_body(self) -> dict[str, Any]:
        """The OpenAI-shaped error body; ``details`` go under ``error.tiergate``."""
        err: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if self.details:
            err["tiergate"] = self.details
        return {"error": err}


# --- client errors -------------------------------------------------------------------


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ContextWindowExceeded(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "context_length_exceeded"


class CapabilityUnsupported(InvalidRequest):
    """No deployment the request may use can do what it asks (tools, vision, JSON schema):
    a mismatch between the request and the catalog, not a server failure (retrying cannot help)."""

    code = "capability_not_supported"


class PriceUnknown(InvalidRequest):
    """The caller is under a budget and the deployment has no known price: it could only be
    billed at $0, which no budget would ever count, so it is refused (set its prices in the
    catalog, or choose a priced model)."""

    code = "price_unknown"


class ClientDisconnected(GatewayError):
    """The client closed its connection before the answer: the work stopped (status 499,
    nginx's "client closed request"; nobody reads the body). Not retried, and says nothing
    about the deployment's health."""

    status = 499
    type = "invalid_request_error"
    code = "client_disconnected"


class RateLimited(GatewayError):
    """Our own limit (per key or per deployment), not the provider's."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.headers.setdefault("retry-after", str(max(1, int(retry_after + 0.999))))


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


# --- upstream errors -----------------------------------------------------------------


class UpstreamError(GatewayError):
    """A provider call failed. ``deployment`` names which one."""

    status = 502
    type = "api_error"
    code = "upstream_error"
    retryable = True
    counts_against_deployment = True


class UpstreamRateLimited(UpstreamError):
    """The provider said 429. ``retry_after`` (seconds) is honoured by the retry loop."""

    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"
    # A provider's 429 is about quota, not health: it does not open the circuit.
    counts_against_deployment = False

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("retry-after", str(max(1, int(retry_after + 0.999))))


class UpstreamServerError(UpstreamError):
    status = 502
    code = "upstream_server_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    """Connect failure or an open circuit: nothing was sent."""

    status = 503
    code = "upstream_unavailable"


class UpstreamBadRequest(UpstreamError):
    """The provider rejected the request itself (4xx other than 429): retrying cannot help."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_bad_request"
    retryable = False
    counts_against_deployment = False


class UpstreamAuthFailed(UpstreamError):
    """The provider refused our credentials: a configuration problem, try another deployment."""

    status = 502
    code = "upstream_auth_failed"
    counts_against_deployment = True


class StreamInterrupted(UpstreamError):
    """The upstream broke off after the first byte had been sent to the client."""

    status = 502
    code = "stream_interrupted"
    retryable = False


class DeadlineExceeded(GatewayError):
    status = 504
    type = "api_error"
    code = "deadline_exceeded"


class NoRouteAvailable(GatewayError):
    """No deployment can take the request (capabilities, context, allowed tiers, circuits)."""

    status = 503
    type = "api_error"
    code = "no_route_available"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "service_unavailable"


#: The names Step Functions' ``Retry`` should retry on (see the cascade state machine).
RETRYABLE_ERROR_NAMES: tuple[str, ...] = (
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamServerError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
)


class OffloadUnavailable(ServiceUnavailable):
    """The edge needs the cloud for this request and the cloud is unreachable."""

    code = "cloud_unreachable"
