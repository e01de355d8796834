"""Pure readers of decoded status documents: what each one says, as :class:`Finding` values.

No network here: :mod:`bot.monitor.sources` fetches and decodes, these functions read. Each is
checked against real captures (``../shared/feed-samples/``, see ``tests/monitor/test_samples.py``):
Atlassian Statuspage (``summary.json``, ``components.json``, ``incidents.json``), Google Cloud /
Workspace ``incidents.json``, Better Stack ``index.json``, BinderHub ``/health`` and GitHub issues.
A document that is not what the kind promises raises :class:`FeedError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from bot.monitor.announce import classify
from bot.monitor.evidence import FailedStep, Signal, Weight

STATUSPAGE_COMPONENT: dict[str, Signal] = {
    "operational": "up",
    "degraded_performance": "degraded",
    "partial_outage": "degraded",
    "major_outage": "down",
    "under_maintenance": "maintenance",
}
STATUSPAGE_INDICATOR: dict[str, Signal] = {
    "none": "up",
    "minor": "degraded",
    "major": "down",
    "critical": "down",
    "maintenance": "maintenance",
}
STATUSPAGE_IMPACT: dict[str, Signal] = {"critical": "down", "major": "down"}
# Better Stack resource and page states (docs: status-page-reports-api-response-params, and the
# resource state ``not_monitored``, seen on real pages: it is not a problem report).
BETTERSTACK_STATE: dict[str, Signal] = {
    "operational": "up",
    "degraded": "degraded",
    "downtime": "down",
    "maintenance": "maintenance",
    "not_monitored": "unknown",
}
GOOGLE_IMPACT: dict[str, Signal] = {
    "SERVICE_OUTAGE": "down",
    "SERVICE_DISRUPTION": "degraded",
    "SERVICE_INFORMATION": "up",
}
DONE_INCIDENT = {"resolved", "postmortem", "completed"}
ACTIVE_MAINTENANCE = {"in_progress", "verifying"}
SEVERITY_ORDER: dict[str, int] = {"down": 3, "degraded": 2, "maintenance": 1, "up": 0}


class FeedError(Exception):
    """The feed answered, but not with what we can read."""

    def __init__(self, why: str, step: FailedStep = "parse", *, wrong_format: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.step = step
        self.wrong_format = wrong_format  # retrying soon will not help (HTML, wrong kind, 404)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a document says; :class:`~bot.monitor.sources.Checker` makes it Evidence."""

    signal: Signal
    line: str
    weight: Weight = "full"
    incident_title: str | None = None
    incident_url: str | None = None
    readable: bool = True
    failed_step: FailedStep | None = None


# -- small helpers ----------------------------------------------------------------------------
def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def fmt_since(ts: float, now: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if now - ts < 20 * 3600:
        return dt.strftime("%H:%M UTC")
    return dt.strftime("%d %b %H:%M UTC").lstrip("0")


def shorten(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def named(items: Any) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def dig(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def json_array_prefix(body: bytes) -> tuple[list[Any], bool]:
    """The complete elements at the start of a JSON array cut short; (items, any_read)."""
    text = body.decode("utf-8", "replace")
    i = text.find("[")
    if i < 0:
        return [], False
    dec = json.JSONDecoder()
    out: list[Any] = []
    i += 1
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            break
        try:
            item, i = dec.raw_decode(text, i)
        except ValueError:
            break
        out.append(item)
    return out, bool(out)


def _worst(signals: Sequence[Signal]) -> Signal:
    known = [s for s in signals if s in SEVERITY_ORDER]
    return max(known, key=SEVERITY_ORDER.__getitem__) if known else "unknown"


# -- Atlassian Statuspage ---------------------------------------------------------------------
def _name(item: dict[str, Any]) -> str:
    return " ".join(str(item.get("name", "")).split()).lower()


def _pseudo(item: dict[str, Any]) -> bool:
    """GitHub's "Visit www.githubstatus.com for more information" and its kind."""
    return _name(item).startswith("visit ")


def _impact(inc: dict[str, Any]) -> Signal:
    return STATUSPAGE_IMPACT.get(str(inc.get("impact", "")).lower(), "degraded")


def _agg_children(statuses: Sequence[str]) -> Signal:
    sigs = [STATUSPAGE_COMPONENT.get(s, "unknown") for s in statuses]
    if not sigs:
        return "unknown"
    if all(s == "maintenance" for s in sigs):
        return "maintenance"
    return _worst([s for s in sigs if s != "maintenance"])


def _counts(statuses: Sequence[str]) -> str:
    seen: dict[str, int] = {}
    for s in statuses:
        seen[s or "?"] = seen.get(s or "?", 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(seen.items(), key=lambda kv: -kv[1]))


def read_statuspage(data: Any, component: str | None, host: str) -> list[Finding]:
    """A Statuspage ``summary.json`` (or ``components.json`` / ``incidents.json``).

    With a ``component``: its status (a group's name aggregates its children), incidents and
    maintenance tagged to it; an unresolved incident tagged to no real component, or a bad
    page-wide indicator that no other component explains, becomes a *hint* beside it (GitHub
    posts big outages that way first). Without one: the page-wide indicator.
    """
    if not isinstance(data, dict) or not any(
        k in data for k in ("status", "components", "incidents")
    ):
        raise FeedError("not a Statuspage feed", wrong_format=True)
    comps = [c for c in named(data.get("components")) if not _pseudo(c)]
    leaves = [c for c in comps if not c.get("group")]
    incidents = [
        i
        for i in named(data.get("incidents"))
        if str(i.get("status", "")).lower() not in DONE_INCIDENT
    ]
    maint = [
        m
        for m in named(data.get("scheduled_maintenances"))
        if str(m.get("status", "")).lower() in ACTIVE_MAINTENANCE
    ]
    indicator = str(dig(data, "status", "indicator") or "").lower()
    desc = str(dig(data, "status", "description") or indicator or "")

    def tagged(item: dict[str, Any]) -> set[str]:
        return {_name(c) for c in named(item.get("components")) if not _pseudo(c)}

    unattached = [i for i in incidents if not tagged(i)]
    where = f"Statuspage {host}"
    if component is None:
        return [_page_finding(where, leaves, incidents, maint, indicator, desc)]

    want = " ".join(component.split()).lower()
    match = [c for c in leaves if _name(c) == want]
    finding: Finding
    names: set[str]
    if match:
        raw = str(match[0].get("status", "")).lower()
        signal = STATUSPAGE_COMPONENT.get(raw, "unknown")
        line = f"Statuspage: {match[0].get('name')} {raw or '?'}"
        names = {want}
    else:
        group = next((c for c in comps if c.get("group") and _name(c) == want), None)
        if group is None:
            finding = Finding(
                "unknown",
                f"Statuspage: status feed unreadable (component '{component}' not found)",
                readable=False,
                failed_step="parse",
            )
            return [
                finding,
                *_page_hints(where, component, leaves, set(), unattached, indicator, desc),
            ]
        ids = set(str(x) for x in group.get("components") or [])
        children = [
            c for c in leaves if c.get("group_id") == group.get("id") or str(c.get("id")) in ids
        ]
        statuses = [str(c.get("status", "")).lower() for c in children]
        if statuses:
            signal = _agg_children(statuses)
            line = (
                f"Statuspage: {group.get('name')} (group of {len(children)}): {_counts(statuses)}"
            )
        else:
            raw = str(group.get("status", "")).lower()
            signal = STATUSPAGE_COMPONENT.get(raw, "unknown")
            line = f"Statuspage: {group.get('name')} {raw or '?'}"
        names = {want} | {_name(c) for c in children}

    mine = [i for i in incidents if tagged(i) & names]
    my_maint = [m for m in maint if tagged(m) & names]
    if signal == "up" and mine:
        signal = "degraded"  # an incident names it, while the component still says operational
    if my_maint and signal in ("up", "degraded", "unknown"):
        signal = "maintenance"
    top = (my_maint if signal == "maintenance" else mine) or mine or my_maint
    title = url = None
    if top:
        title, url = shorten(str(top[0].get("name", "incident"))), top[0].get("shortlink") or None
        line = f"{line} — '{title}'"
    elif signal in ("degraded", "down") and unattached:
        # The component is bad and the page's only incident names no component: it is the
        # best link to the details.
        title = shorten(str(unattached[0].get("name", "incident")))
        url = unattached[0].get("shortlink") or None
        line = f"{line} — '{title}'"
    out = [Finding(signal, line, incident_title=title, incident_url=url)]
    if signal not in ("degraded", "down"):
        out += _page_hints(where, component, leaves, names, unattached, indicator, desc, incidents)
    return out


def _page_hints(
    where: str,
    component: str,
    leaves: Sequence[dict[str, Any]],
    names: set[str],
    unattached: Sequence[dict[str, Any]],
    indicator: str,
    desc: str,
    incidents: Sequence[dict[str, Any]] = (),
) -> list[Finding]:
    """Weaker signals about the whole page when the component itself looks fine."""
    page = f"; page says '{desc}'" if indicator in ("minor", "major", "critical") else ""
    if unattached:
        inc = unattached[0]
        title = shorten(str(inc.get("name", "incident")))
        status = str(inc.get("status", "")).lower() or "open"
        more = f" (+{len(unattached) - 1} more)" if len(unattached) > 1 else ""
        return [
            Finding(
                _impact(inc),
                f"{where}: '{title}' ({status}), not tied to {component}{page}{more}",
                weight="hint",
                incident_title=title,
                incident_url=inc.get("shortlink") or None,
            )
        ]
    if not page:
        return []
    others_bad = any(
        STATUSPAGE_COMPONENT.get(str(c.get("status", "")).lower()) in ("degraded", "down")
        for c in leaves
        if _name(c) not in names
    )
    tagged_elsewhere = any(named(i.get("components")) for i in incidents)
    if others_bad or tagged_elsewhere:
        return []  # the page is bad because of something else that it names
    sig = STATUSPAGE_INDICATOR.get(indicator, "degraded")
    return [
        Finding(
            "degraded" if sig not in ("degraded", "down") else sig,
            f"{where}: page says '{desc}' without naming a component",
            weight="hint",
        )
    ]


def _page_finding(
    where: str,
    leaves: Sequence[dict[str, Any]],
    incidents: Sequence[dict[str, Any]],
    maint: Sequence[dict[str, Any]],
    indicator: str,
    desc: str,
) -> Finding:
    """The whole page: its indicator, or (components.json / incidents.json) what it lists."""
    signal: Signal
    if indicator:
        signal = STATUSPAGE_INDICATOR.get(indicator, "unknown")
        line = f"{where}: {desc or indicator}"
    elif leaves:
        statuses = [str(c.get("status", "")).lower() for c in leaves]
        sigs = [STATUSPAGE_COMPONENT.get(s, "unknown") for s in statuses]
        bad = [s for s in sigs if s in ("degraded", "down")]
        if bad and all(s == "down" for s in sigs):
            signal = "down"
        elif bad:
            signal = "degraded"
        elif sigs and all(s == "maintenance" for s in sigs):
            signal = "maintenance"
        else:
            signal = "up" if any(s == "up" for s in sigs) else "unknown"
        line = f"{where}: {len(leaves)} components: {_counts(statuses)}"
    else:
        signal = "up"
        line = f"{where}: no unresolved incident"
    if signal == "up" and incidents:
        signal = "degraded"
    if maint and signal in ("up", "degraded", "unknown"):
        signal = "maintenance"
    top = (maint if signal == "maintenance" else incidents) or incidents or maint
    if top:
        title = shorten(str(top[0].get("name", "incident")))
        return Finding(
            signal,
            f"{line} — '{title}'",
            incident_title=title,
            incident_url=top[0].get("shortlink") or None,
        )
    return Finding(signal, line)


# -- Google Cloud / Workspace incidents.json ---------------------------------------------------
def read_google(
    items: Sequence[Any],
    products: Sequence[str],
    label: str,
    base_url: str,
    now: float,
    *,
    partial_of: int | None = None,
) -> Finding:
    """Ongoing incidents (no ``end``) for ``products`` (any product when empty).

    ``partial_of``: the feed was larger than we accept (that many bytes) and only its first
    ``len(items)`` incidents were read (Google lists the newest first). An ongoing incident among
    them is still reported; otherwise the answer is "unknown", never "up".
    """
    wanted = {p.strip().lower() for p in products}
    ongoing: list[tuple[Signal, float, dict[str, Any]]] = []
    for inc in named(list(items)):
        if inc.get("end"):
            continue
        titles = {str(p.get("title", "")).lower() for p in named(inc.get("affected_products"))}
        if inc.get("service_name"):
            titles.add(str(inc["service_name"]).lower())
        if wanted and not (titles & wanted):
            continue
        impact = str(inc.get("status_impact", ""))
        sev = str(inc.get("severity", "")).lower()
        signal = GOOGLE_IMPACT.get(impact) or ("down" if sev == "high" else "degraded")
        ongoing.append((signal, parse_time(inc.get("begin")) or now, inc))
    scope = ", ".join(products) if products else "any product"
    if not ongoing:
        if partial_of is not None:
            mb = partial_of / 1e6
            return Finding(
                "unknown",
                f"{label}: status feed unreadable (larger than the {mb:g} MB we accept; "
                f"the newest {len(items)} incidents show nothing ongoing for {scope})",
                readable=False,
                failed_step="parse",
            )
        return Finding("up", f"{label}: no ongoing incident for {scope}")
    ongoing.sort(key=lambda t: (-SEVERITY_ORDER.get(t[0], 0), -t[1]))
    signal, begin, inc = ongoing[0]
    title = shorten(str(inc.get("external_desc") or inc.get("id") or "incident"))
    uri = inc.get("uri")
    url = urljoin(base_url, uri) if isinstance(uri, str) and uri else None
    more = f" (+{len(ongoing) - 1} more)" if len(ongoing) > 1 else ""
    word = "information" if signal == "up" else "ongoing incident"
    line = f"{label}: {word} '{title}' since {fmt_since(begin, now)}{more}"
    return Finding(signal, line, incident_title=title, incident_url=url)


# -- Better Stack index.json -------------------------------------------------------------------
def read_betterstack(data: Any, component: str | None, host: str) -> Finding:
    attrs = dig(data, "data", "attributes")
    if not isinstance(attrs, dict) or "aggregate_state" not in attrs:
        raise FeedError("no aggregate_state", wrong_format=True)
    name = str(attrs.get("company_name") or host)
    state = str(attrs.get("aggregate_state")).lower()
    found = component is None
    if component:
        want = component.strip().lower()
        for item in named(data.get("included") if isinstance(data, dict) else None):
            a = item.get("attributes") or {}
            if str(a.get("public_name") or a.get("name") or "").strip().lower() == want:
                name, state, found = component, str(a.get("status", state)).lower(), True
                break
    # A documented page state we do not know yet is read as a problem (platforms.md); a
    # resource that is not monitored says nothing at all.
    signal: Signal = BETTERSTACK_STATE.get(state, "degraded")
    words = state.replace("_", " ") if state == "not_monitored" else state
    line = f"Better Stack: {name} {words}"
    if state == "not_monitored":
        line += " (no status reported)"
    if not found:
        line += f" (component '{component}' not listed: whole page)"
    note = attrs.get("announcement")
    if isinstance(note, str) and note.strip():
        line += f" — note: '{shorten(note, 80)}'"
    return Finding(signal, line)


# -- BinderHub /health -------------------------------------------------------------------------
def read_binder(data: Any, host: str) -> Finding:
    """A BinderHub ``/health``: ``ok`` false = down (names the failing checks).

    ``ok`` stays true when only a soft check fails (``_ignore_failure``: the pod quota), yet the
    federation stops sending users to a member whose quota is full: that is "degraded".
    """
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise FeedError("no 'ok' field", wrong_format=True)
    checks = named(data.get("checks"))
    failing = [c for c in checks if c.get("ok") is False]
    if not data["ok"]:
        names = [str(c.get("service", "?")) for c in failing if not c.get("_ignore_failure")]
        names = names or [str(c.get("service", "?")) for c in failing]
        detail = f" (failing: {', '.join(names[:3])})" if names else ""
        return Finding("down", f"Binder {host}: unhealthy{detail}", failed_step="http")
    if failing:
        return Finding("degraded", f"Binder {host}: {_soft_failure(failing[0])}")
    return Finding("up", f"Binder {host}: healthy")


def _soft_failure(check: dict[str, Any]) -> str:
    service = str(check.get("service", "a check"))
    total, quota = check.get("total_pods"), check.get("quota")
    if service.lower() == "pod quota" and isinstance(total, int) and isinstance(quota, int):
        return f"pod quota full ({total} of {quota} pods), new launches go to other members"
    return f"'{service}' check failing (health still says ok)"


# -- GitHub issues with a label (Colab's announcements) ----------------------------------------
def read_announcements(
    data: Any, label: str | None, now: float, max_age_s: float, news_max_age_s: float
) -> list[Finding]:
    """Open announcements: outages move the verdict, notices are news, the rest are hints."""
    if not isinstance(data, list):
        raise FeedError("not an issue list", wrong_format=True)
    want = label.lower() if label else None
    issues = [
        i
        for i in named(data)
        if "pull_request" not in i
        and str(i.get("state", "open")) == "open"
        and (
            want is None or want in {str(x.get("name", "")).lower() for x in named(i.get("labels"))}
        )
    ]
    what = f"'{label}' " if label else ""
    outages: list[Finding] = []
    others: list[Finding] = []
    stale = 0
    for issue in issues:
        age = now - (parse_time(issue.get("created_at")) or now)
        title = shorten(str(issue.get("title", "announcement")))
        num = f" (#{issue['number']})" if "number" in issue else ""
        url = issue.get("html_url")
        reading = classify(str(issue.get("title", "")), str(issue.get("body") or ""))
        if reading.kind == "notice":
            if age <= news_max_age_s:
                others.append(
                    Finding("up", f"News (not an outage): '{title}'{num}", "info", title, url)
                )
            else:
                stale += 1
            continue
        if age > max_age_s:
            stale += 1
            continue
        if reading.kind == "outage":
            sev: Signal = reading.severity or "degraded"
            outages.append(
                Finding(sev, f"GitHub {what}issue open: '{title}'{num}", "full", title, url)
            )
        else:
            others.append(
                Finding(
                    "degraded",
                    f"GitHub {what}issue open, possibly a problem: '{title}'{num}",
                    "hint",
                    title,
                    url,
                )
            )
    outages.sort(key=lambda f: -SEVERITY_ORDER.get(f.signal, 0))
    found = outages + others
    if not outages:
        older = f" ({stale} older still open)" if stale else ""
        line = f"GitHub: no recent open {what}issue reporting a problem{older}"
        found.insert(0, Finding("up", line))
    return found[:4]
