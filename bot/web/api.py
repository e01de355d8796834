"""JSON bodies: Atlassian Statuspage v2 shapes (``/api/v2/…``) and our own ``/api/v1``.

Statuspage's shapes (page, status, components, incidents with ``incident_updates``) so tools
that read status pages can read this one. Differences, documented in the README: a component's
``status`` is ``"unknown"`` when this bot cannot tell (Statuspage has no such value), every
component is one platform, and incidents carry two synthesized updates (start, recovery).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.web.data import IncidentView, Overview, PlatformDetail, PlatformStatus
from bot.web.templates import iso

PAGE_ID = "nbhelp"
COMPONENT_STATUS = {
    "up": "operational",
    "degraded": "degraded_performance",
    "down": "major_outage",
    "maintenance": "under_maintenance",
    "unknown": "unknown",
}
IMPACT = {"down": "major", "degraded": "minor", "maintenance": "none"}
INDICATOR = [  # (worst component status, indicator, description)
    ("major_outage", "major", "Major System Outage"),
    ("degraded_performance", "minor", "Partial System Outage"),
    ("under_maintenance", "minor", "Service Under Maintenance"),
]


def page(title: str, base_url: str, updated_at: float | None) -> dict[str, Any]:
    return {
        "id": PAGE_ID,
        "name": title,
        "url": base_url,
        "time_zone": "Etc/UTC",
        "updated_at": iso(updated_at) or None,
    }


def component(p: PlatformStatus, position: int) -> dict[str, Any]:
    v = p.view
    at = iso(v.checked_at) or None
    return {
        "id": p.id,
        "name": v.name,
        "status": COMPONENT_STATUS.get(v.status, "unknown"),
        "created_at": at,
        "updated_at": at,
        "position": position,
        "description": v.headline,
        "showcase": True,
        "start_date": None,
        "group_id": None,
        "page_id": PAGE_ID,
        "group": False,
        "only_show_if_degraded": False,
    }


def components(o: Overview) -> list[dict[str, Any]]:
    return [component(p, i) for i, p in enumerate(o.platforms, start=1)]


def status(o: Overview) -> dict[str, str]:
    comps = {COMPONENT_STATUS.get(p.status, "unknown") for p in o.platforms}
    if o.offline:
        return {"indicator": "none", "description": "Status unknown: this bot is offline"}
    for worst, indicator, description in INDICATOR:
        if worst in comps:
            return {"indicator": indicator, "description": description}
    if comps and comps <= {"unknown"}:
        return {"indicator": "none", "description": "Status unknown"}
    return {"indicator": "none", "description": "All Systems Operational"}


def incident(i: IncidentView, base_url: str, comps: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    iid = f"{PAGE_ID}-{i.id}"
    start, end = iso(i.started_at), iso(i.ended_at) or None
    status = "resolved" if end else "investigating"
    bad = COMPONENT_STATUS.get(i.status, "major_outage")

    def affected(old: str, new: str) -> list[dict[str, str]]:
        return [
            {"code": i.platform_id, "name": i.platform_name, "old_status": old, "new_status": new}
        ]

    who = "the platform's official status feed" if i.official else "this bot's probes"
    updates = []
    if end:
        updates.append(
            {
                "id": f"{iid}-resolved",
                "status": "resolved",
                "body": f"{i.platform_name} is back up.",
                "incident_id": iid,
                "created_at": end,
                "updated_at": end,
                "display_at": end,
                "affected_components": affected(bad, "operational"),
                "deliver_notifications": True,
                "custom_tweet": None,
                "tweet_id": None,
            }
        )
    updates.append(
        {
            "id": f"{iid}-start",
            "status": "investigating",
            "body": f"{i.title} (seen by {who})",
            "incident_id": iid,
            "created_at": start,
            "updated_at": start,
            "display_at": start,
            "affected_components": affected("operational", bad),
            "deliver_notifications": True,
            "custom_tweet": None,
            "tweet_id": None,
        }
    )
    comp = comps.get(i.platform_id)
    return {
        "id": iid,
        "name": f"{i.platform_name}: {i.status}",
        "status": status,
        "created_at": start,
        "updated_at": end or start,
        "monitoring_at": None,
        "resolved_at": end,
        "impact": IMPACT.get(i.status, "major"),
        "shortlink": i.url or f"{base_url}p/{i.platform_id}#incidents",
        "started_at": start,
        "page_id": PAGE_ID,
        "incident_updates": updates,
        "components": [comp] if comp else [],
        "reminder_intervals": None,
    }


def summary(o: Overview, title: str, base_url: str) -> dict[str, Any]:
    comps = components(o)
    by_id = {c["id"]: c for c in comps}
    return {
        "page": page(title, base_url, o.updated_at),
        "status": status(o),
        "components": comps,
        "incidents": [incident(i, base_url, by_id) for i in o.ongoing],
        "scheduled_maintenances": [],
    }


def components_body(o: Overview, title: str, base_url: str) -> dict[str, Any]:
    return {"page": page(title, base_url, o.updated_at), "components": components(o)}


def incidents_body(
    o: Overview, incidents: tuple[IncidentView, ...], title: str, base_url: str
) -> dict[str, Any]:
    by_id = {c["id"]: c for c in components(o)}
    return {
        "page": page(title, base_url, o.updated_at),
        "incidents": [incident(i, base_url, by_id) for i in incidents],
    }


# -- /api/v1: our own shape, with every piece of evidence -------------------------------------
def _incident_v1(i: IncidentView) -> dict[str, Any]:
    return {
        "id": i.id,
        "status": i.status,
        "started_at": iso(i.started_at),
        "ended_at": iso(i.ended_at) or None,
        "ongoing": i.ongoing,
        "title": i.title,
        "url": i.url,
        "official": i.official,
    }


def platform_v1(d: PlatformDetail, base_url: str) -> dict[str, Any]:
    p, v = d.status, d.status.view
    u = v.uptime
    return {
        "id": p.id,
        "name": v.name,
        "url": p.url,
        "page": f"{base_url}p/{p.id}",
        "status": v.status,
        "statuspage_status": COMPONENT_STATUS.get(v.status, "unknown"),
        "headline": v.headline,
        "confidence": v.confidence,
        "monitored": v.monitored,
        "retired": v.retired,
        "offline": v.offline,
        "checked_at": iso(v.checked_at) or None,
        "age_s": None if v.age_s is None else round(v.age_s, 1),
        "stale": v.stale,
        "since": iso(v.since) or None,
        "pending": v.pending,
        "latency_ms": v.latency_ms,
        "evidence": [
            {
                "line": e.line,
                "signal": e.signal,
                "source": e.source,
                "kind": e.kind,
                "official": e.official,
                "age_s": round(e.age_s, 1),
                "incident_url": e.url,
                "failed_step": e.failed_step,
            }
            for e in v.evidence
        ],
        "uptime": {"24h": u.h24, "7d": u.d7, "30d": u.d30, "avg_latency_ms_24h": u.avg_latency_ms},
        "community_reports": {
            "reports": v.reports.reports,
            "people": v.reports.people,
            "chats": v.reports.chats,
            "usual": round(v.reports.baseline, 2),
            "level": v.reports.level,
            "window_s": v.reports.window_s,
        },
        "days": [
            {
                "date": day.date,
                "status": day.status,
                "uptime": day.uptime,
                "incidents": len(day.incidents),
            }
            for day in p.days
        ],
        "incidents": [_incident_v1(i) for i in d.incidents],
        "alternatives": [
            {"id": a.platform_id, "name": a.name, "reason": a.reason, "first_step": a.first_step}
            for a in p.alternatives
        ],
        "retired_on": p.retired_on,
        "successors": [{"name": s.name, "id": s.platform_id} for s in p.successors],
    }


def platforms_v1(o: Overview, base_url: str) -> dict[str, Any]:
    return {
        "updated_at": iso(o.updated_at) or None,
        "offline": o.offline,
        "platforms": [
            {
                "id": p.id,
                "name": p.view.name,
                "status": p.status,
                "headline": p.view.headline,
                "retired": p.view.retired,
                "checked_at": iso(p.view.checked_at) or None,
                "href": f"{base_url}api/v1/platforms/{p.id}",
            }
            for p in (*o.platforms, *o.retired)
        ],
    }
