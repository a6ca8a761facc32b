"""Errors of the adapter layer.

    UpstreamUnavailable (hub.core.errors, code UPSTREAM_UNAVAILABLE)
    └── UpstreamError          an outbound call failed; the message names the upstream
        ├── UpstreamTimeout       no answer within the time budget     kind "timeout"
        ├── UpstreamRefused       connection refused or dropped        kind "refused"
        ├── UpstreamServerError   HTTP 5xx                             kind "5xx"
        ├── UpstreamRateLimited   HTTP 429 or a quota result code      kind "rate_limited"
        ├── UpstreamRejected      HTTP 4xx or an error result code     kind "rejected"
        ├── MalformedResponse     an answer we cannot read             kind "malformed"
        └── BreakerOpen           too many failures: calls paused      kind "breaker_open"

Every one of them reaches a GraphQL client as a null field with UPSTREAM_UNAVAILABLE, so
the rest of the query still answers. `kind` labels the error metrics.

    AdapterError               the plugin itself is wrong: stops the start
    ├── AdapterLoadError       an entry point fails to import or declares nonsense
    └── AdapterNotFound        no installed adapter has that name
"""

from __future__ import annotations

from typing import ClassVar

from hub.core.errors import UpstreamUnavailable


class UpstreamError(UpstreamUnavailable):
    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(self, upstream: str, detail: str) -> None:
        super().__init__(f"{upstream} is unavailable: {detail}", upstream=upstream)
        self.upstream = upstream
        self.detail = detail


class UpstreamTimeout(UpstreamError):
    kind = "timeout"
    retryable = True


class UpstreamRefused(UpstreamError):
    kind = "refused"
    retryable = True


class UpstreamServerError(UpstreamError):
    kind = "5xx"
    retryable = True


class UpstreamRateLimited(UpstreamError):
    kind = "rate_limited"
    retryable = True

    def __init__(self, upstream: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(upstream, detail)
        self.retry_after = retry_after


class UpstreamRejected(UpstreamError):
    """The upstream refused this request (bad key, bad parameter): retrying will not help."""

    kind = "rejected"


class MalformedResponse(UpstreamError):
    kind = "malformed"


class BreakerOpen(UpstreamError):
    kind = "breaker_open"


UPSTREAM_ERROR_KINDS = tuple(
    cls.kind
    for cls in (
        UpstreamTimeout,
        UpstreamRefused,
        UpstreamServerError,
        UpstreamRateLimited,
        UpstreamRejected,
        MalformedResponse,
        BreakerOpen,
    )
)


class AdapterError(Exception):
    """An adapter plugin is wrong; the message names it and says what to fix."""


class AdapterLoadError(AdapterError):
    pass


class AdapterNotFound(AdapterError):
    pass
