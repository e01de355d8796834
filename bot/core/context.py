"""What a handler gets: settings, the store, the knowledge base, the command index, and the
services through typed interfaces (:mod:`bot.core.ports`). Handlers never see an adapter.

Services with a cost (the outage monitor's HTTP client, the kernel pool) are built on first
use from a factory the wiring supplies, so ``python -m bot ask "/help"`` never pays for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

from bot.core.ports import KernelsPort, MonitorPort
from bot.settings import Settings
from bot.store import Store
from knowledge.loader import KnowledgeBase

ServiceName = Literal["monitor", "kernels"]


class OptionInfo(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...


class CommandInfo(Protocol):
    """What /help shows of a command (``bot.core.registry.Command`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def usage(self) -> str: ...
    @property
    def examples(self) -> tuple[str, ...]: ...
    @property
    def admin_in_groups(self) -> bool: ...
    @property
    def options(self) -> Sequence[OptionInfo]: ...


class CommandIndex(Protocol):
    def get(self, name: str) -> CommandInfo | None: ...
    def visible(self) -> Sequence[CommandInfo]: ...
    def suggest(self, name: str) -> tuple[str, ...]: ...


@dataclass
class Context:
    settings: Settings
    store: Store
    knowledge: KnowledgeBase
    commands: CommandIndex
    factories: dict[str, Callable[[Context], object]] = field(default_factory=dict)
    services: dict[str, object] = field(default_factory=dict)  # built services, by name

    def service(self, name: ServiceName) -> object | None:
        """The named service, built on first use; None when none is configured."""
        if name not in self.services and name in self.factories:
            self.services[name] = self.factories[name](self)
        return self.services.get(name)

    def monitor(self) -> MonitorPort | None:
        return cast("MonitorPort | None", self.service("monitor"))

    def kernels(self) -> KernelsPort | None:
        return cast("KernelsPort | None", self.service("kernels"))

    def build_all(self) -> dict[str, object]:
        """Build every configured service (the long-running bot starts them all)."""
        for name in list(self.factories):
            self.service(cast(ServiceName, name))
        return {k: v for k, v in self.services.items() if v is not None}
