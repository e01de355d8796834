"""What can go wrong with a gateway, each with the sentence a user sees (``user_message``).

The detail (``str(err)``) is for the log: status codes and the gateway's own message, never the
token. Operator mistakes (a wrong token, a missing kernelspec) are logged as errors; the user is
only told that /run on that backend is unavailable.
"""

from __future__ import annotations

from bot.kernels.errors import KernelError, KernelStartError


class GatewayError(KernelError):
    """Base class of the gateway backend's errors."""


class GatewayUnreachable(GatewayError, KernelStartError):
    """Connection refused, DNS, TLS or a timeout: the gateway is down or overloaded."""

    def __init__(self, name: str, *, detail: str) -> None:
        super().__init__(
            f"/run on {name} is unavailable right now: its kernel server does not answer. "
            "Try again in a few minutes.",
            detail=detail,
        )


class GatewayAuthError(GatewayError):
    """401/403 that is not a resource limit: the bot's token or user is refused (operator)."""

    def __init__(self, name: str, *, detail: str) -> None:
        super().__init__(
            f"/run on {name} is unavailable: the bot cannot sign in to its kernel server. "
            "The bot's operator needs to fix its settings.",
            detail=detail,
        )


class GatewayFull(GatewayError):
    """403 "Resource Limit" (Kernel Gateway) or a max-kernels / per-user cap (Enterprise GW)."""

    def __init__(self, name: str, *, detail: str) -> None:
        super().__init__(
            f"The kernel server {name} is full right now. Try again in a few minutes.",
            detail=detail,
        )


class GatewayProtocolError(GatewayError, KernelStartError):
    """A body too large, not JSON, or not the shape the API documents."""

    def __init__(self, name: str, *, detail: str) -> None:
        super().__init__(
            f"/run on {name} failed: its kernel server sent an answer the bot cannot use. "
            "Try again later.",
            detail=detail,
        )


class KernelNotFound(GatewayError):
    """404 for a kernel: the gateway culled or deleted it (its variables are gone)."""

    def __init__(self, name: str, *, detail: str) -> None:
        super().__init__(
            "Your session ended on the server; variables are gone.",
            detail=detail,
        )
