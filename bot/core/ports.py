"""The typed interfaces through which handlers and the core reach services.

Handlers depend on these, never on a service's internals; the services
(``bot.monitor.MonitorService``, ``bot.kernels.KernelService``) satisfy them structurally.
Every call that touches the database is a coroutine: nothing here blocks the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.kernels.models import KernelInfo, RunResult
    from bot.monitor.alerts import OutboundAlert, Subscription
    from bot.monitor.reports import ReportOutcome
    from bot.monitor.verdict import Status
    from bot.monitor.view import VerdictView

OnQueued = Callable[[int], Awaitable[None]]
OnProgress = Callable[[str], Awaitable[None]]


class MonitorPort(Protocol):
    """The outage monitor as handlers see it."""

    async def status(self, platform_id: str, *, patient: bool = False) -> VerdictView:
        """The verdict; a stale one is checked first (``patient``: wait for that check)."""
        ...

    async def status_all(self, *, patient: bool = False) -> list[VerdictView]: ...

    async def chart(self, platform_id: str, span: str = "24h") -> bytes | str:
        """A PNG, or a sentence saying why there is not enough data to draw yet."""
        ...

    async def current_statuses(self) -> dict[str, Status]: ...

    async def add_report(
        self,
        platform_id: str,
        *,
        adapter: str,
        chat_id: str | int,
        user_id: str | int,
        text: str = "",
        counts: bool = True,
    ) -> ReportOutcome: ...

    async def subscribe(
        self, adapter: str, chat_id: str | int, platforms: Iterable[str] | None = None
    ) -> Subscription: ...

    async def unsubscribe(
        self, adapter: str, chat_id: str | int, platforms: Iterable[str] | None = None
    ) -> Subscription: ...

    async def subscriptions(self, adapter: str, chat_id: str | int) -> Subscription: ...


class AlertOutbox(Protocol):
    """Where the core's alert delivery takes alerts from and reports back."""

    def alert_stream(self, adapter: str) -> AsyncIterator[OutboundAlert]: ...

    async def pending(self, adapter: str, limit: int = 50) -> list[OutboundAlert]: ...

    async def mark_sent(self, alert_id: int) -> bool: ...

    async def mark_failed(self, alert_id: int, error: str) -> None: ...

    async def chat_gone(self, adapter: str, chat_id: str | int, error: str) -> int: ...

    async def chat_moved(
        self, adapter: str, old_chat_id: str | int, new_chat_id: str | int
    ) -> int: ...


class KernelsPort(Protocol):
    """The /run kernel service as handlers see it."""

    async def start(self) -> None: ...

    async def info(self) -> KernelInfo:
        """The state of /run, with one line per configured backend."""
        ...

    async def run(
        self,
        session_key: str,
        user_key: str,
        code: str,
        *,
        on_queued: OnQueued | None = None,
        on_progress: OnProgress | None = None,
        on_started: Callable[[], Awaitable[None]] | None = None,
        gpu: bool = False,
    ) -> RunResult:
        """``on_started`` is awaited when the code is about to start in its kernel."""
        ...

    async def reset(self, session_key: str) -> bool: ...
