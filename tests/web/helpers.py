"""A real store seeded through the monitor's own code: an outage that recovered, one that goes
on, an official incident whose title carries HTML, community reports, 90 days of history, a
retired platform. The web side is then served from it on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.monitor import history
from bot.monitor.service import MonitorService
from bot.monitor.settings import MonitorSettings
from bot.store import Store, transaction
from knowledge.schema import Lifecycle, Platform
from tests.fakes.status_server import Reply, ThreadedStatusServer, sp_incident, statuspage
from tests.monitor.helpers import Clock, platform, source

OK = Reply(body="<html>Welcome</html>", content_type="text/html")
FAIL = Reply(status=503, body="Service Unavailable")
EVIL_TITLE = "<script>alert('x')</script> Codespaces <b>failing</b>"
SECRET_USER = "secret-user-alice"
SECRET_CHAT = "-100987654321"
DAY = 86400.0


@dataclass
class Seeded:
    store: Store
    platforms: dict[str, Platform]
    settings: MonitorSettings
    clock: Clock
    monitor: MonitorService
    old_incident_day: str  # YYYY-MM-DD of the incident 10 days ago


def make_platforms(fake: ThreadedStatusServer, tag: str) -> dict[str, Platform]:
    evil = statuspage(
        "major_outage",
        indicator="major",
        incidents=[{**sp_incident(EVIL_TITLE), "shortlink": "javascript:alert(1)"}],
    )
    ps = {
        "colab": platform(
            "colab",
            [source("http", fake.reply(f"/{tag}/colab", OK), name="Colab probe")],
            name="Google Colab",
            aliases=["gc"],
        ),
        "kaggle": platform(
            "kaggle", [source("http", fake.reply(f"/{tag}/kaggle", OK), name="Kaggle probe")]
        ),
        "codespaces": platform(
            "codespaces",
            [
                source(
                    "statuspage",
                    fake.json(f"/{tag}/gh/summary.json", evil),
                    name="GitHub status",
                    component="Codespaces",
                    official=True,
                )
            ],
            name="GitHub Codespaces",
        ),
        "binder": platform(
            "binder", [source("http", fake.reply(f"/{tag}/binder", OK), name="Binder probe")]
        ),
        "azure": platform("azure", [], name="Azure Notebooks", retired=True),
    }
    ps["azure"] = ps["azure"].model_copy(
        update={
            "lifecycle": Lifecycle(
                state="retired",
                retired_on=ps["azure"].lifecycle.retired_on,
                successors=["colab", "VS Code Jupyter"],
                note="All user data was destroyed.",
            )
        }
    )
    return ps


def backfill(store: Store, ids: list[str], now: float, days: int = 90) -> str:
    """A check a day for ``days`` days, and a closed outage of colab 10 days ago."""
    old = now - 10 * DAY
    with transaction(store.db) as db:
        for pid in ids:
            for d in range(days - 1, 0, -1):
                at = now - d * DAY
                down = pid == "colab" and d == 10
                history.record(db, pid, at, "down" if down else "up", None if down else 150.0)
        history.track_incident(db, "colab", "down", old, since=old, title="HTTP 502 from colab")
        history.track_incident(db, "colab", "up", old + 1800, since=old + 1800, title="")
    from bot.web.data import day_of

    return day_of(old)


async def seed(
    fake: ThreadedStatusServer,
    store: Store,
    settings: MonitorSettings,
    clock: Clock,
    tag: str,
    **kw: Any,
) -> Seeded:
    ps = make_platforms(fake, tag)
    old_day = backfill(store, ["colab", "kaggle", "codespaces", "binder"], clock.now)
    svc = MonitorService(store, ps, settings, clock=clock, **kw)
    await svc.sweep()  # all up, codespaces degraded/down by its official feed at once
    # colab: three failures -> down, two successes -> recovered (a past incident)
    fake.reply(f"/{tag}/colab", FAIL)
    fake.reply(f"/{tag}/kaggle", FAIL)
    for _ in range(3):
        clock.advance(300)
        await svc.sweep(["colab", "kaggle", "binder", "codespaces"])
    fake.reply(f"/{tag}/colab", OK)
    for _ in range(2):
        clock.advance(300)
        await svc.sweep(["colab", "kaggle", "binder", "codespaces"])
    # community reports about kaggle: counted, never named
    for i in range(2):
        await svc.add_report(
            "kaggle",
            adapter="telegram",
            chat_id=f"{SECRET_CHAT}{i}",
            user_id=f"{SECRET_USER}{i}",
            text="kaggle will not start",
        )
    return Seeded(store, ps, settings, clock, svc, old_day)


def statuses(body: Mapping[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in body["components"]}
