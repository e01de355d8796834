"""What a handler gets: the services, by name. Handlers never see an adapter.

Services with a cost (the outage monitor's HTTP client, the kernel pool) are built on first
use from a factory, so ``python -m bot ask "/help"`` never pays for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.core.registry import Registry
from bot.settings import Settings
from bot.store import Store
from knowledge.loader import KnowledgeBase


@dataclass
class Context:
    settings: Settings
    store: Store
    knowledge: KnowledgeBase
    registry: Registry
    services: dict[str, Any] = field(default_factory=dict)  # built services, by name
    factories: dict[str, Callable[[Context], Any]] = field(default_factory=dict)

    def service(self, name: str) -> Any:
        """The named service, built on first use; None when none is configured."""
        if name not in self.services and name in self.factories:
            self.services[name] = self.factories[name](self)
        return self.services.get(name)

    def build_all(self) -> dict[str, Any]:
        """Build every configured service (the long-running bot starts them all)."""
        for name in self.factories:
            self.service(name)
        return self.services
