"""The durable inbound record and the reply outbox on a real SQLite file: requests recorded
once, answers written with their request closed, sends retried until they go (and given up
after ``retry_for_s``), a restart answering what an earlier run left, alerts in their lane."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

import bot.migrations
from bot.core.contract import ChatGone
from bot.core.models import Reply, para
from bot.delivery import storage
from bot.delivery.codec import dump_reply
from bot.delivery.intake import RESTARTED, RESTARTED_RUNNING, Hooks, Intake
from bot.delivery.models import Batch, ChatBudget, Lane, Parcel, QueueView, Request, Undeliverable
from bot.delivery.settings import DeliverySettings
from bot.store import Store

WAIT_S = 60.0


class FakeOutlet:
    """An adapter's sending face that records what it was given; failures are queued."""

    def __init__(self, name: str = "fake", budget: ChatBudget | None = None) -> None:
        self.name = name
        self._budget = budget or ChatBudget()
        self.sent: list[tuple[str, list[Parcel]]] = []
        self.views: list[QueueView] = []
        self.failures: deque[Exception] = deque()
        self.before: Callable[[], None] = lambda: None  # runs at every send
        self.changed = asyncio.Event()

    def budget(self, chat_id: str) -> ChatBudget:
        return self._budget

    def pack(self, chat_id: str, parcels: Sequence[Parcel], limit: int) -> int:
        return limit

    async def deliver(self, chat_id: str, batch: Batch) -> int:
        self.changed.set()
        self.before()
        if self.failures:
            raise self.failures.popleft()
        self.sent.append((chat_id, list(batch.parcels)))
        return 1

    async def show_progress(self, chat_id: str, view: QueueView) -> int:
        self.views.append(view)
        self.changed.set()
        return 1

    async def is_admin(self, request: Request) -> bool:
        return False

    def working(self, request: Request) -> AbstractAsyncContextManager[None]:
        return _nothing()

    def texts(self, chat_id: str | None = None) -> list[str]:
        out = []
        for chat, parcels in self.sent:
            if chat_id is None or chat == chat_id:
                for p in parcels:
                    out.append("".join(s.text for b in p.reply.blocks for s in b.parts))  # type: ignore[union-attr]
        return out

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds (woken by every send; database states written after a
        send are looked at again every 50 ms), within WAIT_S."""
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


class Handlers:
    """Stand-in command handling: ``/echo`` answers at once, ``/work`` waits for ``go`` before
    it starts and ``finish`` after."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.finish = asyncio.Event()
        self.started: list[str] = []
        self.two_started = asyncio.Event()
        self.calls: list[str] = []

    async def __call__(self, req: Request, hooks: Hooks) -> Reply | None:
        self.calls.append(req.text)
        if req.text.startswith("/work"):
            await hooks.notify("waiting for a kernel")
            await self.go.wait()
            await hooks.on_started()
            self.started.append(req.text)
            if len(self.started) == 2:
                self.two_started.set()
            await self.finish.wait()
        if req.text.startswith("/ignore"):
            return None
        return Reply.of(para(f"answer to {req.text}"))


def lane_of(req: Request) -> Lane:
    return "run" if req.text.startswith("/work") else "quick"


class WallClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "delivery.db", busy_timeout_s=0.5)
    s.migrate(bot.migrations.steps())
    return s


def intake(
    store: Store,
    handlers: Handlers,
    *,
    settings: DeliverySettings | None = None,
    wall: Callable[[], float] | None = None,
    on_gone: Callable[[str, str, str], Awaitable[None]] | None = None,
) -> Intake:
    kw: dict[str, Any] = {} if wall is None else {"wall": wall}
    return Intake(
        store,
        settings or DeliverySettings(retry_initial_s=0.01, retry_max_s=0.05, progress_after_s=0),
        handle=handlers,
        lane_of=lane_of,
        needs_admin=lambda r: False,
        on_gone=on_gone,
        **kw,
    )


def request(text: str, key: str, chat: str = "c1", user: str = "u1") -> Request:
    return Request("fake", key, chat, user, f"name-{user}", text, route={"message_id": key})


def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(store.path) as db:
        return db.execute(sql).fetchall()


async def test_a_request_is_recorded_once_and_answered_through_the_outbox(store: Store) -> None:
    handlers, outlet = Handlers(), FakeOutlet()
    desk = intake(store, handlers)
    await desk.open(outlet)
    tickets = await desk.accept([request("/echo hi", "k1")])
    assert len(tickets) == 1 and tickets[0].lane == "quick"
    assert rows(store, "SELECT key, state FROM delivery_inbound") == [("k1", "received")]
    assert await desk.accept([request("/echo hi", "k1")]) == []  # a redelivery: ignored
    desk.begin(tickets[0])
    await outlet.until(lambda: len(outlet.sent) == 1)
    assert outlet.texts() == ["answer to /echo hi"]
    assert rows(store, "SELECT state FROM delivery_inbound") == [("answered",)]
    await outlet.until(lambda: rows(store, "SELECT state FROM delivery_outbox") == [("sent",)])
    assert rows(store, "SELECT payload FROM delivery_outbox") == [("",)]  # not kept once sent
    await desk.aclose()


async def test_a_failing_send_is_retried_until_it_goes_once(store: Store) -> None:
    handlers, outlet = Handlers(), FakeOutlet()
    outlet.failures.extend([ConnectionError("500"), ConnectionError("500"), TimeoutError()])
    desk = intake(store, handlers)
    await desk.open(outlet)
    for t in await desk.accept([request("/echo a", "k1"), request("/echo b", "k2")]):
        desk.begin(t)
    await outlet.until(lambda: len(outlet.sent) == 2)
    assert outlet.texts() == ["answer to /echo a", "answer to /echo b"]  # order kept
    await outlet.until(
        lambda: rows(store, "SELECT state FROM delivery_outbox") == [("sent",), ("sent",)]
    )
    assert rows(store, "SELECT attempts FROM delivery_outbox ORDER BY id")[0] == (3,)
    await desk.aclose()


async def test_a_reply_is_given_up_after_retry_for(store: Store) -> None:
    handlers, outlet, wall = Handlers(), FakeOutlet(), WallClock()
    s = DeliverySettings(retry_for_s=60, retry_initial_s=0.01, retry_max_s=0.01)
    desk = intake(store, handlers, settings=s, wall=wall)
    await desk.open(outlet)

    def later() -> None:
        wall.now += 45  # every failed try takes the wall clock 45 s on

    outlet.before = later
    outlet.failures.extend(ConnectionError("Bot API down") for _ in range(10))
    for t in await desk.accept([request("/echo lost?", "k1")]):
        desk.begin(t)
    await outlet.until(lambda: rows(store, "SELECT state FROM delivery_outbox") == [("failed",)])
    assert not outlet.sent and len(outlet.failures) == 8  # tried twice: 90 s > retry_for_s
    (error,) = rows(store, "SELECT error FROM delivery_outbox")[0]
    assert "Bot API down" in error
    await desk.aclose()


async def test_a_refusal_is_not_retried_and_a_gone_chat_drops_its_replies(store: Store) -> None:
    gone: list[tuple[str, str]] = []

    async def on_gone(adapter: str, chat: str, why: str) -> None:
        gone.append((adapter, chat))

    handlers, outlet = Handlers(), FakeOutlet()
    desk = intake(store, handlers, on_gone=on_gone)
    await desk.open(outlet)
    outlet.failures.append(Undeliverable("Bad Request: message is too long"))
    for t in await desk.accept([request("/echo refused", "k1")]):
        desk.begin(t)
    await outlet.until(lambda: rows(store, "SELECT state FROM delivery_outbox") == [("failed",)])
    outlet.failures.append(ChatGone("kicked"))
    for t in await desk.accept([request("/echo gone", "k2", chat="c2")]):
        desk.begin(t)
    await outlet.until(lambda: gone == [("fake", "c2")])
    assert not outlet.sent
    await desk.aclose()


async def test_a_restart_answers_everything_an_earlier_run_left(store: Store) -> None:
    """Run A records four requests and dies (no outlet, tasks cancelled); run B answers all:
    the quick one and the run that had not started are handled again, the run that was
    running is told, the reply already in the outbox goes out."""
    first = Handlers()
    a = intake(store, first)
    tickets = await a.accept(
        [
            request("/echo quick", "q"),
            request("/work queued", "w1", chat="c2"),
            request("/work running", "w2", chat="c3"),
            request("/echo done", "d", chat="c4"),
        ]
    )
    for t in tickets[1:3]:
        a.begin(t)
    first.go.set()  # both runs start ... and would finish only with `finish`
    await asyncio.wait_for(first.two_started.wait(), WAIT_S)
    # make w1 look "not started": it was queued when the crash came
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE delivery_inbound SET state = 'received' WHERE key = 'w1'")
    # the quick one never began; "/echo done" was answered: its reply is in the outbox
    done = tickets[3]
    await store.call(
        lambda db: storage.answer(
            db,
            adapter="fake",
            chat_id="c4",
            lane="quick",
            request_id=done.id,
            who="name-u1",
            route={},
            payload=dump_reply(Reply.of(para("answer to /echo done"))),
            now=1.0,
        )
    )
    await a.aclose()  # the crash: tasks cancelled, nothing more written

    second, outlet = Handlers(), FakeOutlet()
    second.go.set()
    second.finish.set()
    b = intake(store, second)
    await b.open(outlet)
    await outlet.until(lambda: len(outlet.sent) == 4)
    by_chat = {chat: outlet.texts(chat) for chat in ("c1", "c2", "c3", "c4")}
    assert by_chat["c1"] == ["answer to /echo quick"]  # handled again
    assert by_chat["c2"] == ["answer to /work queued"]  # its code had not started: run again
    assert by_chat["c3"] == [RESTARTED_RUNNING]  # it was running: told, not repeated
    assert by_chat["c4"] == ["answer to /echo done"]  # from the outbox, exactly once
    assert "/work running" not in second.calls and "/echo done" not in second.calls
    assert rows(store, "SELECT key, attempts FROM delivery_inbound ORDER BY key") == [
        ("d", 1),
        ("q", 2),
        ("w1", 2),
        ("w2", 1),
    ]
    await b.aclose()


async def test_a_request_that_keeps_dying_gets_an_apology(store: Store) -> None:
    s = DeliverySettings(restart_attempts=1)
    first = Handlers()
    a = intake(store, first, settings=s)
    assert len(await a.accept([request("/echo crashy", "k1")])) == 1
    with sqlite3.connect(store.path) as db:  # it already began twice before
        db.execute("UPDATE delivery_inbound SET attempts = 2")
    await a.aclose()
    second, outlet = Handlers(), FakeOutlet()
    b = intake(store, second, settings=s)
    await b.open(outlet)
    await outlet.until(lambda: len(outlet.sent) == 1)
    assert outlet.texts()[0].startswith(RESTARTED.split(".")[0])
    assert second.calls == []
    await b.aclose()


async def test_alerts_take_their_lane_and_fail_at_once(store: Store) -> None:
    handlers, outlet = Handlers(), FakeOutlet()
    desk = intake(store, handlers)
    dispatcher = await desk.open(outlet)
    alert = Reply.of(para("Colab is down"))
    await dispatcher.offer("c9", alert)
    assert outlet.texts("c9") == ["Colab is down"]
    outlet.failures.append(ConnectionError("network"))
    with pytest.raises(ConnectionError):  # the alert loop retries and records it itself
        await dispatcher.offer("c9", alert)
    outlet.failures.append(ChatGone("deleted"))
    with pytest.raises(ChatGone):
        await dispatcher.offer("c9", alert)
    assert len(outlet.sent) == 1
    await desk.aclose()


async def test_a_chat_queue_shows_one_progress_view(store: Store) -> None:
    handlers, outlet = Handlers(), FakeOutlet()
    desk = intake(store, handlers)
    await desk.open(outlet)
    for t in await desk.accept([request("/work", f"w{i}", user=f"u{i}") for i in range(5)]):
        desk.begin(t)
    await outlet.until(lambda: any(len(v.waiting) == 5 for v in outlet.views))
    view = next(v for v in outlet.views if len(v.waiting) == 5)
    assert [w.who for w in view.waiting] == [f"name-u{i}" for i in range(5)]  # arrival order
    assert all(w.note == "waiting for a kernel" for w in view.waiting)
    handlers.go.set()
    handlers.finish.set()
    await outlet.until(lambda: len(outlet.sent) >= 1 and not outlet.views[-1].entries)
    await outlet.until(lambda: sum(len(p) for _, p in outlet.sent) == 5)
    await desk.aclose()


def test_a_reply_survives_the_outbox_unchanged() -> None:
    from bot.core.models import Attachment, Image, bold, bullets, code, codeblock, link
    from bot.delivery.codec import load_reply

    reply = Reply(
        blocks=(
            para(bold("Colab"), " is ", code("down"), " — ", link("status", "https://x.org")),
            bullets("one", ("two ", bold("2")), numbered=True),
            codeblock("print('héllo')\n", "python"),
        ),
        images=(Image(b"\x89PNG\x00\xff", "plot.png", "a plot"),),
        files=(Attachment(b"a,b\n", "t.csv", "table"),),
        ephemeral=True,
        tone="warn",
        title="Colab — down",
    )
    assert load_reply(dump_reply(reply)) == reply


def test_a_group_progress_line_names_who_is_next() -> None:
    from bot.adapters.telegram.adapter import progress_text
    from bot.delivery.models import Waiting

    entries = tuple(Waiting(i, f"S{i}", i == 0, 0.0) for i in range(6))
    view = QueueView("-1", entries)
    assert progress_text(view, group=True) == "⏳ 5 runs queued · 1 running · next: S1, S2, S3 …"
    mine = QueueView("7", (Waiting(1, "Ama", False, 0.0, "⏳ you are number 3"),))
    assert progress_text(mine, group=False) == "⏳ you are number 3"


async def test_a_chat_s_budget_outlives_its_queue_emptying(store: Store) -> None:
    """A group whose queue empties between answers still counts what it sent in the window:
    the fourth answer within the minute waits (the clock stands still) until the window moves."""
    now = [0.0]
    handlers, outlet = Handlers(), FakeOutlet(budget=ChatBudget(3, 60.0, combine=True))
    s = DeliverySettings(retry_initial_s=0.01, retry_max_s=0.05, group_reserve=0)
    desk = Intake(
        store,
        s,
        handle=handlers,
        lane_of=lane_of,
        needs_admin=lambda r: False,
        clock=lambda: now[0],
    )
    dispatcher = await desk.open(outlet)
    for i in range(3):  # one at a time: the chat's queue is empty between them
        (t,) = await desk.accept([request(f"/echo {i}", f"k{i}")])
        desk.begin(t)
        await outlet.until(lambda i=i: len(outlet.sent) == i + 1)
        await outlet.until(lambda: "c1" not in dispatcher.chats)
    (t,) = await desk.accept([request("/echo 3", "k3")])
    desk.begin(t)
    await outlet.until(lambda: rows(store, "SELECT count(*) FROM delivery_outbox") == [(4,)])
    await outlet.until(lambda: "c1" in dispatcher.chats and dispatcher.chats["c1"].lanes["quick"])
    assert len(outlet.sent) == 3  # held: three sent in this minute already
    assert dispatcher.pacers["c1"].wait(now[0], "quick") == pytest.approx(60.0)
    now[0] = 60.0
    dispatcher.poke("c1")
    await outlet.until(lambda: len(outlet.sent) == 4)
    assert outlet.texts()[-1] == "answer to /echo 3"
    await desk.aclose()
