"""Outage monitor: probes, official feeds, community reports, verdicts, history and alerts.

Platform-neutral: nothing here imports ``handlers`` or ``bot.core``. Register the tables by
importing :mod:`bot.monitor.migrations` (``bot.migrations`` does) before ``Store.migrate()``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use so that importing bot.monitor.migrations (at every start) stays cheap.
_LAZY = {
    "Confidence": "bot.monitor.verdict",
    "Evidence": "bot.monitor.evidence",
    "EvidenceLine": "bot.monitor.view",
    "Incident": "bot.monitor.history",
    "MonitorService": "bot.monitor.service",
    "MonitorSettings": "bot.monitor.settings",
    "OFFLINE_LINE": "bot.monitor.verdict",
    "OutboundAlert": "bot.monitor.alerts",
    "Point": "bot.monitor.history",
    "ReportOutcome": "bot.monitor.reports",
    "ReportSummary": "bot.monitor.reports",
    "Signal": "bot.monitor.evidence",
    "Status": "bot.monitor.verdict",
    "Subscription": "bot.monitor.alerts",
    "UnknownPlatform": "bot.monitor.service",
    "Uptime": "bot.monitor.history",
    "Verdict": "bot.monitor.storage",
    "VerdictView": "bot.monitor.view",
}

__all__ = [
    "OFFLINE_LINE",
    "Confidence",
    "Evidence",
    "EvidenceLine",
    "Incident",
    "MonitorService",
    "MonitorSettings",
    "OutboundAlert",
    "Point",
    "ReportOutcome",
    "ReportSummary",
    "Signal",
    "Status",
    "Subscription",
    "UnknownPlatform",
    "Uptime",
    "Verdict",
    "VerdictView",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
