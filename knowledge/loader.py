"""Load and validate the knowledge base: shipped TOML data plus the operator's config file.

Config file (path in ``NBHELP_CONFIG``)::

    [[platform]]            # add a platform: every field of knowledge.schema.Platform
    id = "ourhub"
    ...

    [override.colab]        # override fields of a shipped platform (tables merge, lists replace)
    priority = 50

    [[message]]  /  [[tip]] # add known messages or tips

Its other sections and keys are operational settings, read and checked by :mod:`bot.settings`.

Invalid data fails at start with a :class:`KnowledgeError` naming the file, the key and why.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bot.text import did_you_mean
from knowledge.schema import KnownMessage, Platform, Tip

DATA = Path(__file__).parent / "data"
M = TypeVar("M", bound=BaseModel)
CONFIG_SECTIONS = ("platform", "override", "message", "tip")  # the rest are settings (bot.settings)


class KnowledgeError(Exception):
    """Invalid knowledge data or config: says the file, the key and the reason."""


def normalize(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower().replace("_", "-"))


@dataclass(frozen=True)
class KnowledgeBase:
    platforms: Mapping[str, Platform]  # id -> platform, in display order
    messages: tuple[KnownMessage, ...]
    tips: tuple[Tip, ...]
    names: Mapping[str, str]  # every id and alias (normalized) -> platform id

    def resolve(self, name: str) -> Platform | None:
        key = normalize(name)
        pid = self.names.get(key) or self.names.get(key.replace(" ", "-"))
        return self.platforms[pid] if pid else None

    def alive(self) -> list[Platform]:
        return [p for p in self.platforms.values() if p.alive]

    def suggest(self, word: str, extra: Iterable[str] = (), n: int = 3) -> list[str]:
        return did_you_mean(normalize(word), [*self.names, *extra], n=n)

    def label(self, pid: str) -> str:
        p = self.platforms.get(pid)
        return p.name if p else pid


def _where(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors()[:5]:
        key = ".".join(str(x) for x in err["loc"]) or "(top level)"
        lines.append(f"{key}: {err['msg']}")
    return "; ".join(lines)


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KnowledgeError(f"{path}: file not found") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{path}: not valid TOML: {exc}") from exc


def _validate(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise KnowledgeError(f"{where}: {_where(exc)}") from exc


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(config: Path | None = None, data_dir: Path = DATA) -> KnowledgeBase:
    raw: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for path in sorted((data_dir / "platforms").glob("*.toml")):
        item = _read(path)
        pid = str(item.get("id", path.stem))
        raw[pid] = item
        origin[pid] = str(path)
    messages_data = _read(data_dir / "messages.toml").get("message", [])
    tips_data = _read(data_dir / "tips.toml").get("tip", [])
    msg_origin = {i: str(data_dir / "messages.toml") for i in range(len(messages_data))}
    tip_origin = {i: str(data_dir / "tips.toml") for i in range(len(tips_data))}

    if config is not None:
        cfg = {k: v for k, v in _read(config).items() if k in CONFIG_SECTIONS}
        for i, item in enumerate(cfg.get("platform", [])):
            pid = str(item.get("id", ""))
            if pid in raw:
                raise KnowledgeError(
                    f"{config}: platform[{i}].id: {pid!r} already exists; use [override.{pid}]"
                )
            raw[pid] = item
            origin[pid] = f"{config}: platform[{i}]"
        for pid, over in cfg.get("override", {}).items():
            if pid not in raw:
                raise KnowledgeError(f"{config}: override.{pid}: no platform with that id")
            if not isinstance(over, Mapping):
                raise KnowledgeError(f"{config}: override.{pid}: must be a table")
            raw[pid] = _merge(raw[pid], over)
            origin[pid] = f"{config}: override.{pid}"
        for item in cfg.get("message", []):
            msg_origin[len(messages_data)] = f"{config}: message"
            messages_data.append(item)
        for item in cfg.get("tip", []):
            tip_origin[len(tips_data)] = f"{config}: tip"
            tips_data.append(item)

    platforms = {pid: _validate(Platform, item, origin[pid]) for pid, item in raw.items()}
    ordered = dict(
        sorted(platforms.items(), key=lambda kv: (not kv[1].alive, -kv[1].priority, kv[0]))
    )
    names: dict[str, str] = {}
    for p in ordered.values():
        for name in (p.id, *p.aliases, normalize(p.name)):
            key = normalize(name)
            if names.get(key, p.id) != p.id:
                raise KnowledgeError(
                    f"{origin[p.id]}: aliases: {name!r} already names platform {names[key]!r}"
                )
            names[key] = p.id
    for p in ordered.values():
        for s in p.lifecycle.successors:
            if normalize(s) in names and names[normalize(s)] == p.id:
                raise KnowledgeError(f"{origin[p.id]}: lifecycle.successors: names itself")

    messages = tuple(
        _validate(KnownMessage, m, f"{msg_origin[i]}[{i}]") for i, m in enumerate(messages_data)
    )
    tips = tuple(_validate(Tip, t, f"{tip_origin[i]}[{i}]") for i, t in enumerate(tips_data))
    seen: set[str] = set()
    for kind, items in (("message", messages), ("tip", tips)):
        for it in items:
            if it.id in seen:
                raise KnowledgeError(f"{kind} id {it.id!r} is used twice (ids are shared)")
            seen.add(it.id)
    owner: dict[str, str] = {}
    for entry in (*messages, *tips):
        for pattern in entry.patterns:
            if owner.get(pattern, entry.id) != entry.id:
                raise KnowledgeError(
                    f"{entry.id}: patterns: {pattern!r} is already wording of {owner[pattern]!r}; "
                    "one wording must point at one entry"
                )
            owner[pattern] = entry.id
    for m in messages:
        if m.platform not in ordered:
            raise KnowledgeError(f"message {m.id}: platform: unknown platform {m.platform!r}")
    for t in tips:
        for pid in t.platforms:
            if pid not in ordered:
                raise KnowledgeError(f"tip {t.id}: platforms: unknown platform {pid!r}")
    return KnowledgeBase(ordered, messages, tips, names)
