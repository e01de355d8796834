"""Community reports, counted Downdetector-style.

One report per person per platform per window; counted by distinct people and distinct chats
(at most ``report_chat_cap`` people from one chat) against a baseline for the same time of the
week, with a floor, so one noisy person or one group cannot declare an outage. Whether a text
is a known non-outage message is decided by the caller (the knowledge base knows them) and
passed in as ``counts``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import sqlite_utils

from bot.monitor.settings import MonitorSettings

ReportLevel = Literal["none", "possible", "detected"]
Reason = Literal["counted", "duplicate", "limit", "not_outage"]
WEEK = 7 * 86400


@dataclass(frozen=True, slots=True)
class ReportSummary:
    reports: int = 0
    people: int = 0
    chats: int = 0
    effective: int = 0  # people after the per-chat cap
    baseline: float = 0.0  # usual distinct people in such a window at this time of the week
    level: ReportLevel = "none"
    window_s: float = 1800.0

    @property
    def line(self) -> str:
        if not self.reports:
            return "Community: no reports"
        mins = round(self.window_s / 60)
        ppl = "person" if self.people == 1 else "people"
        chats = "chat" if self.chats == 1 else "chats"
        return (
            f"Community: {self.people} {ppl} in {self.chats} {chats} reported problems in the "
            f"last {mins} min ({self.usual()})"
        )

    def usual(self) -> str:
        """The baseline in words: how many reports are normal at this time of the week."""
        b = self.baseline
        if b < 0.05:
            return "usually nobody reports anything at this time of the week"
        if b < 1:
            return "usually under one report at this time of the week"
        return f"usually about {round(b)} at this time of the week"


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    accepted: bool
    reason: Reason
    summary: ReportSummary
    retry_after_s: float | None = None


def needed(baseline: float, floor: int, factor: float) -> int:
    return max(floor, math.ceil(baseline * factor - 1e-9))


def classify(
    people_per_chat: Sequence[int], baseline: float, s: MonitorSettings
) -> tuple[ReportLevel, int]:
    """Pure: the level for distinct people per chat (each person in one chat only)."""
    effective = sum(min(n, s.report_chat_cap) for n in people_per_chat if n > 0)
    chats = sum(1 for n in people_per_chat if n > 0)
    if chats < s.report_min_chats:
        return "none", effective
    if effective >= needed(baseline, s.report_floor_detected, s.report_factor_detected):
        return "detected", effective
    if effective >= needed(baseline, s.report_floor_possible, s.report_factor_possible):
        return "possible", effective
    return "none", effective


class Reports:
    """Report storage and counting over the shared store (callers hold the transaction)."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.s = settings
        self._baseline: dict[tuple[str, int], float] = {}

    def add(
        self,
        db: sqlite_utils.Database,
        *,
        platform: str,
        user_key: str,
        chat_key: str,
        now: float,
        counts: bool,
        text: str = "",
    ) -> ReportOutcome:
        s = self.s
        since = now - s.report_window_s
        mine = db.execute(
            "SELECT platform, at, counts FROM monitor_reports WHERE user_key = ? AND at >= ?",
            [user_key, now - max(s.report_window_s, s.report_dedupe_s)],
        ).fetchall()
        if not counts:
            if len(mine) < 2 * s.report_user_max:
                self._insert(db, platform, user_key, chat_key, now, False, text)
            return ReportOutcome(False, "not_outage", self.summary(db, platform, now))
        same = [at for p, at, c in mine if p == platform and c and at >= now - s.report_dedupe_s]
        if same:
            retry = max(same) + s.report_dedupe_s - now
            return ReportOutcome(False, "duplicate", self.summary(db, platform, now), retry)
        recent = [at for _p, at, c in mine if c and at >= since]
        if len(recent) >= s.report_user_max:
            retry = min(recent) + s.report_window_s - now
            return ReportOutcome(False, "limit", self.summary(db, platform, now), retry)
        self._insert(db, platform, user_key, chat_key, now, True, text)
        return ReportOutcome(True, "counted", self.summary(db, platform, now))

    @staticmethod
    def _insert(
        db: sqlite_utils.Database,
        platform: str,
        user_key: str,
        chat_key: str,
        now: float,
        counts: bool,
        text: str,
    ) -> None:
        db.execute(
            "INSERT INTO monitor_reports (platform, user_key, chat_key, at, counts, text) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [platform, user_key, chat_key, now, int(counts), text[:500]],
        )

    def baseline(self, db: sqlite_utils.Database, platform: str, now: float) -> float:
        """Mean distinct reporters in the same window, same time of the week, past N weeks."""
        key = (platform, int(now // 600))
        hit = self._baseline.get(key)
        if hit is not None:
            return hit
        total = 0
        for w in range(1, self.s.report_baseline_weeks + 1):
            end = now - w * WEEK
            row = db.execute(
                "SELECT count(DISTINCT user_key) FROM monitor_reports "
                "WHERE platform = ? AND counts = 1 AND at >= ? AND at < ?",
                [platform, end - self.s.report_window_s, end],
            ).fetchone()
            total += row[0]
        value = total / self.s.report_baseline_weeks
        if len(self._baseline) > 4096:
            self._baseline.clear()
        self._baseline[key] = value
        return value

    def summaries(
        self, db: sqlite_utils.Database, platforms: Sequence[str], now: float
    ) -> dict[str, ReportSummary]:
        s = self.s
        if not platforms:
            return {}
        marks = ",".join("?" * len(platforms))
        rows = db.execute(
            "SELECT platform, user_key, chat_key FROM monitor_reports "
            f"WHERE counts = 1 AND at >= ? AND platform IN ({marks}) ORDER BY at",
            [now - s.report_window_s, *platforms],
        ).fetchall()
        by: dict[str, list[tuple[str, str]]] = {}
        for pid, user, chat in rows:
            by.setdefault(pid, []).append((user, chat))
        out: dict[str, ReportSummary] = {}
        for pid in platforms:
            reps = by.get(pid, [])
            if not reps:
                out[pid] = ReportSummary(window_s=s.report_window_s)
                continue
            first_chat: dict[str, str] = {}
            for user, chat in reps:
                first_chat.setdefault(user, chat)
            per_chat: dict[str, int] = {}
            for chat in first_chat.values():
                per_chat[chat] = per_chat.get(chat, 0) + 1
            base = self.baseline(db, pid, now)
            level, eff = classify(list(per_chat.values()), base, s)
            out[pid] = ReportSummary(
                reports=len(reps),
                people=len(first_chat),
                chats=len({c for _u, c in reps}),
                effective=eff,
                baseline=base,
                level=level,
                window_s=s.report_window_s,
            )
        return out

    def summary(self, db: sqlite_utils.Database, platform: str, now: float) -> ReportSummary:
        return self.summaries(db, [platform], now)[platform]

    def prune(self, db: sqlite_utils.Database, now: float) -> int:
        cutoff = now - max(
            self.s.report_retention_days * 86400, (self.s.report_baseline_weeks + 1) * WEEK
        )
        return db.execute("DELETE FROM monitor_reports WHERE at < ?", [cutoff]).rowcount


def levels(summaries: Mapping[str, ReportSummary]) -> dict[str, ReportLevel]:
    return {k: v.level for k, v in summaries.items()}
