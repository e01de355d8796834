"""The Atom feed of incidents and recoveries (``/feed.atom``, ``/p/{id}/feed.atom``).

Built with ElementTree, so every title and link is escaped as XML. One entry when an incident
starts and one when it ends (the recovery), newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from bot.text import duration
from bot.web.data import IncidentView
from bot.web.templates import iso

ATOM = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    title: str
    updated: float
    summary: str
    link: str


def entries(incidents: Sequence[IncidentView], base_url: str) -> list[Entry]:
    host = urlsplit(base_url).hostname or "nbhelp"
    out: list[Entry] = []
    for i in incidents:
        page = f"{base_url}p/{i.platform_id}#incidents"
        who = "the official status feed" if i.official else "this bot's probes"
        out.append(
            Entry(
                id=f"tag:{host},2025:incident-{i.id}",
                title=f"{i.platform_name}: {i.status}",
                updated=i.started_at,
                summary=f"{i.title} (seen by {who})",
                link=i.url or page,
            )
        )
        if i.ended_at is not None:
            out.append(
                Entry(
                    id=f"tag:{host},2025:recovery-{i.id}",
                    title=f"{i.platform_name}: back up",
                    updated=i.ended_at,
                    summary=f"Recovered after {duration(i.ended_at - i.started_at)}: {i.title}",
                    link=page,
                )
            )
    out.sort(key=lambda e: e.updated, reverse=True)
    return out


def atom(
    title: str, self_url: str, base_url: str, incidents: Sequence[IncidentView], now: float
) -> bytes:
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    items = entries(incidents, base_url)
    sub(feed, "id", self_url)
    sub(feed, "title", title)
    sub(feed, "updated", iso(items[0].updated if items else now))
    sub(feed, "link", rel="self", href=self_url)
    sub(feed, "link", rel="alternate", href=base_url)
    author = sub(feed, "author")
    sub(author, "name", "nbhelp")
    for e in items:
        entry = sub(feed, "entry")
        sub(entry, "id", e.id)
        sub(entry, "title", e.title)
        sub(entry, "updated", iso(e.updated))
        sub(entry, "link", rel="alternate", href=e.link)
        sub(entry, "summary", e.summary)
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))
