"""What a handler gets: the services, by name. Handlers never see an adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.core.registry import Registry
from bot.settings import Settings
from bot.store import Store
from knowledge.loader import KnowledgeBase

if TYPE_CHECKING:
    pass


@dataclass
class Context:
    settings: Settings
    store: Store
    knowledge: KnowledgeBase
    registry: Registry
    services: dict[str, Any] = field(default_factory=dict)  # monitor, kernels, … when running

    def service(self, name: str) -> Any:
        return self.services.get(name)
