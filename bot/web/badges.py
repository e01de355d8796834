"""Badges: an SVG per platform (``/badge/{id}.svg``) and shields.io's endpoint JSON.

The SVG is the familiar flat two-part badge; text widths are estimated (Verdana 11 px averages
about 6.5 px a character), and every text is XML-escaped.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

COLORS = {  # shields.io's named colours, and their hex for our own SVG
    "up": ("brightgreen", "#4c1"),
    "degraded": ("orange", "#fe7d37"),
    "down": ("red", "#e05d44"),
    "maintenance": ("blue", "#007ec6"),
    "unknown": ("lightgrey", "#9f9f9f"),
}
LABEL_MAX = 30
QUOTE = {'"': "&quot;", "'": "&#39;"}


def shields(label: str, status: str) -> dict[str, Any]:
    """https://shields.io/badges/endpoint-badge: ``{"schemaVersion": 1, …}``."""
    return {
        "schemaVersion": 1,
        "label": label[:LABEL_MAX],
        "message": status,
        "color": COLORS.get(status, COLORS["unknown"])[0],
        "cacheSeconds": 300,
    }


def _width(text: str) -> int:
    return int(len(text) * 6.5) + 10


def svg(label: str, status: str) -> bytes:
    label = label[:LABEL_MAX]
    color = COLORS.get(status, COLORS["unknown"])[1]
    lw, mw = _width(label), _width(status)
    w = lw + mw
    el, em = escape(label, QUOTE), escape(status, QUOTE)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" '
        f'aria-label="{el}: {em}"><title>{el}: {em}</title>'
        f'<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        f'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{color}"/>'
        f'<rect width="{w}" height="20" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        f'font-size="11"><text x="{lw / 2:.1f}" y="14">{el}</text>'
        f'<text x="{lw + mw / 2:.1f}" y="14">{em}</text></g></svg>'
    ).encode()
