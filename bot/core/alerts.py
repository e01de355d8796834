"""Delivering queued outage alerts through each attached adapter.

The outbox lives in SQLite: an alert is marked sent only after its adapter delivered it, so a
restart neither loses one nor repeats more than the one in flight. A chat that is gone
unsubscribes itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot import metrics
from bot.core.contract import ChatAdapter, ChatGone
from bot.core.errors import new_error_id
from bot.core.models import Block, Reply, bullets, code, para
from bot.core.ports import AlertOutbox
from bot.retry import Backoff

if TYPE_CHECKING:
    from bot.monitor.alerts import OutboundAlert

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
    return Reply.of(*blocks, title=alert.text, tone=TONE.get(alert.status, "info"))


async def send_one(outbox: AlertOutbox, adapter: ChatAdapter, alert: OutboundAlert) -> bool:
    """Deliver one alert and record the outcome; True when it was sent."""
    try:
        await adapter.send_alert(alert.chat_id, alert_reply(alert))
    except ChatGone as exc:
        dropped = await outbox.chat_gone(adapter.name, alert.chat_id, str(exc) or "chat gone")
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
        await outbox.mark_failed(alert.id, f"{error_id}: {exc}")
        metrics.alert_failed(adapter.name)
        raise
    await outbox.mark_sent(alert.id)
    metrics.alert_sent(adapter.name)
    return True


async def drain(outbox: AlertOutbox, adapter: ChatAdapter) -> int:
    """Deliver what is pending for this adapter now; return how many were sent (failures are
    logged and stay queued)."""
    sent = 0
    for alert in await outbox.pending(adapter.name):
        try:
            sent += await send_one(outbox, adapter, alert)
        except asyncio.CancelledError:
            raise
        except Exception:
            continue
    return sent


async def deliver(
    outbox: AlertOutbox, adapter: ChatAdapter, backoff: Backoff | None = None
) -> None:
    """Run until cancelled: send each pending alert for this adapter, oldest first.

    A failing send is retried with backoff; a failure of the queue itself (a locked database,
    say) is logged and the loop starts again, so delivery never stops silently."""
    backoff = backoff or Backoff(0.5, MAX_BACKOFF_S)
    while True:
        try:
            async for alert in outbox.alert_stream(adapter.name):
                try:
                    await send_one(outbox, adapter, alert)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    await backoff.wait()  # then the stream yields it again
                    continue
                backoff.reset()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert queue for %s failed; retrying", adapter.name)
            await backoff.wait()
