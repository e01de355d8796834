"""Delivering the monitor's queued alerts through each running adapter.

The outbox lives in SQLite: an alert is marked sent only after its adapter delivered it, so a
restart neither repeats nor loses one. A chat that is gone unsubscribes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from bot.adapters.base import Adapter, ChatGone
from bot.core.errors import new_error_id
from bot.core.models import Block, Reply, bullets, code, para

if TYPE_CHECKING:
    from bot.monitor import OutboundAlert

log = logging.getLogger("nbhelp.alerts")
TONE = {"down": "error", "degraded": "warn", "maintenance": "warn", "up": "ok"}
MAX_BACKOFF_S = 60.0


def alert_reply(alert: OutboundAlert) -> Reply:
    blocks: list[Block] = []
    if alert.evidence:
        blocks.append(bullets(*alert.evidence[:4]))
    blocks.append(
        para(
            code(f"/status {alert.platform}"),
            " for details · ",
            code("/unsubscribe"),
            " to stop alerts",
        )
    )
    return Reply.of(*blocks, title=alert.text, tone=TONE.get(alert.status, "info"))  # type: ignore[arg-type]


async def send_one(monitor: Any, adapter: Adapter, alert: OutboundAlert) -> bool:
    """Deliver one alert and record the outcome; True when it was sent."""
    try:
        await adapter.send_alert(alert.chat_id, alert_reply(alert))
    except ChatGone as exc:
        dropped = monitor.chat_gone(adapter.name, alert.chat_id, str(exc) or "chat gone")
        log.warning(
            "%s chat %s is gone (%s): unsubscribed, %d pending alert(s) dropped",
            adapter.name,
            alert.chat_id,
            exc,
            dropped,
        )
        return False
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error_id = new_error_id()
        log.exception(
            "error %s sending alert %s to %s:%s", error_id, alert.id, adapter.name, alert.chat_id
        )
        monitor.mark_failed(alert.id, f"{error_id}: {exc}")
        raise
    monitor.mark_sent(alert.id)
    return True


async def drain(monitor: Any, adapter: Adapter) -> int:
    """Deliver what is pending for this adapter now; return how many were sent."""
    sent = 0
    for alert in monitor.pending(adapter.name):
        with contextlib.suppress(Exception):
            sent += await send_one(monitor, adapter, alert)
    return sent


async def deliver(monitor: Any, adapter: Adapter) -> None:
    """Run until cancelled: send each pending alert for this adapter, oldest first.

    A failing send is retried with backoff; a failure of the queue itself (a locked database,
    say) is logged and the loop starts again, so delivery never stops silently."""
    failures = 0
    while True:
        try:
            async for alert in monitor.alert_stream(adapter.name):
                try:
                    await send_one(monitor, adapter, alert)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    await asyncio.sleep(min(MAX_BACKOFF_S, 0.5 * 2**failures))  # then retry
                    continue
                failures = 0
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            log.exception("alert queue for %s failed; retrying", adapter.name)
            await asyncio.sleep(min(MAX_BACKOFF_S, 0.5 * 2**failures))
