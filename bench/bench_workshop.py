"""The workshop minute (issue 11): a group of students sends /run at once, against the real bot.

    .venv/bin/python bench/bench_workshop.py [--quick] [--scenarios numpy,plot,crowd,kill,outage]
                                             [--limits on|off|both] [--deadline 150]

Each scenario starts a fresh ``python -m bot`` (the Telegram adapter, the real kernel pool and
sandbox, its own SQLite file) against the fake Bot API on 127.0.0.1 (``tests/fakes``), which runs
in this process together with a fake of Colab's status feeds (so ``/status colab`` never reaches
the internet). The bot's pool is warm (its auto size, completed spares) before a burst starts.

- **numpy**: 50 students (``--quick``: 20) send ``/run`` with a small numpy snippet within 10 s
  in one group, while 10 others (5) send ``/status colab`` and ``/alternatives colab gpu``.
- **plot**: the same, each student drawing a matplotlib plot (images count against the budget).
- **crowd**: 100 students (skipped with ``--quick``).
- each of those with Telegram's limits (the fake refuses what Telegram would: see
  ``bench/telegram_limits.py``; the bot as deployed) and without (the fake takes everything and
  the bot's own rate limiter is switched off in its process).
- **kill**: ten ``/run`` queued, ``kill -9`` of the bot, a restart on the same database: how many
  of the ten got an answer (their output or a notice).
- **outage**: the Bot API answers 500 to everything for 30 s (``--quick``: 15 s) during a burst:
  how many answers were lost.

Figures per scenario: answered and correct (each student's snippet prints a value only it can
know), time to answer from the message to the answer's arrival at the fake (p50, p95; an answer
still missing at the deadline counts as later than the deadline), the quick commands' p95,
messages sent into the group (answers, the rest) and the most in any 60 s, 429 answers, peak
memory of the bot and its kernels (RSS summed over the process tree every 0.5 s; PSS, which
splits shared pages between processes, every 5 s), CPU seconds of the bot, of its kernels and of
this process during the burst, and the issue's targets as PASS/FAIL. The fake servers and the
sampling run in this process and share the machine's cores with the bot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.telegram_limits import SENDS, Enforcer, message_count
from bot.kernels.settings import KernelLimits
from bot.kernels.sizing import pool_plan
from tests.fakes.status_server import StatusServer
from tests.fakes.telegram_api import Call, FakeBot, FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
GROUP = -1001234500001
# The kernel side before issue 11, for a side-by-side run (--kernels both): every kernel imports
# numpy, pandas and matplotlib before it is offered, two spares, one replacement per spare taken,
# at most 8 sessions.
BASELINE = {
    "NBHELP_RUN__PREIMPORTS": "eager",
    "NBHELP_RUN__POOL_SIZE": "2",
    "NBHELP_RUN__POOL_SURGE": "0",
    "NBHELP_RUN__MAX_SESSIONS": "8",
}
PAGE = os.sysconf("SC_PAGE_SIZE")

# The bot's own Telegram rate limiter, switched off in its process for the "without limits" runs
# (there is no setting for it: the benchmark's stand-in for a Bot API without limits).
UNLIMITED_SHIM = """
import runpy, sys
try:
    from bot.adapters.telegram import ratelimit as rl
    _init = rl.RateLimiter.__init__
    def _unlimited(self, limits=None, **kw):
        _init(self, rl.Limits.unlimited(), **kw)
    rl.RateLimiter.__init__ = _unlimited
    print("nbhelp-bench: rate limiter off", file=sys.stderr, flush=True)
except Exception as exc:
    print(f"nbhelp-bench: rate limiter NOT off: {exc!r}", file=sys.stderr, flush=True)
sys.argv = ["bot"]
runpy.run_module("bot", run_name="__main__", alter_sys=True)
"""


def numpy_code(i: int) -> str:
    return f'x = np.arange({i}, {i} + 100); print("s{i}=%d" % int((x * x).sum()))'


def plot_code(i: int) -> str:
    return (
        f"x = np.arange({i}, {i} + 100); plt.figure(figsize=(3, 2)); plt.plot(x, x % 7); "
        f'plt.title("student {i}"); print("s{i}=%d" % int((x * x).sum()))'
    )


def expected(i: int) -> str:
    return f"s{i}={sum(k * k for k in range(i, i + 100))}"


# -- the bot process -----------------------------------------------------------------------


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    log: Path
    started: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def limiter_off(self) -> bool | None:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        if "nbhelp-bench: rate limiter off" in text:
            return True
        return False if "nbhelp-bench: rate limiter NOT off" in text else None


class Harness:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fake = FakeTelegram()
        self.status = StatusServer()
        self.config = workdir / "bench.toml"
        self._logs = 0

    async def __aenter__(self) -> Harness:
        await self.fake.start()
        await self.status.start()
        url = self.status.url
        self.config.write_text(
            "[monitor]\nbackground = false\ncontrol_urls = []\n\n"
            "[override.colab]\nstatus_sources = [\n"
            f'  {{kind = "http", url = "{url("/http/ok")}", name = "Colab site probe (fake)"}},\n'
            f'  {{kind = "google_workspace", url = "{url("/google/none/incidents.json")}", '
            'name = "Workspace (fake)", products = ["Google Drive"]},\n'
            f'  {{kind = "github_issues", url = "{url("/github/none/issues")}", '
            'name = "announcements (fake)", label = "announce"},\n]\n'
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.fake.close()
        await self.status.aclose()

    async def start_bot(
        self, bot: FakeBot, db: Path, *, limits: bool, extra: dict[str, str] | None = None
    ) -> BotProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBHELP_")}
        env |= {
            "PYTHONPATH": str(ROOT),
            "NBHELP_DB": str(db),
            "NBHELP_CONFIG": str(self.config),
            "NBHELP_TELEGRAM__TOKEN": bot.token,
            "NBHELP_TELEGRAM__BASE_URL": self.fake.base_url,
            "NBHELP_TELEGRAM__BASE_FILE_URL": self.fake.base_file_url,
            "NBHELP_WEB__ENABLED": "false",
        }
        env |= extra or {}
        self._logs += 1
        log = self.workdir / f"bot-{self._logs}.log"
        args = ["-m", "bot"] if limits else ["-c", UNLIMITED_SHIM]
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                cwd=self.workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        started = time.monotonic()
        before = len(bot.calls_of("getUpdates", ok=None))
        await bot.wait_for(lambda b: len(b.calls_of("getUpdates", ok=None)) > before, within=120)
        return BotProcess(proc, log, started)


# -- the process tree: warm-up and memory ----------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants. Only each process's main thread is asked for children: the
    bot starts its sandboxes from its event loop's thread, bwrap and the kernels from theirs
    (reading every thread's list costs the bench ten times the CPU)."""
    pids, pending = [], [pid]
    while pending:
        p = pending.pop()
        pids.append(p)
        with contextlib.suppress(OSError, ValueError):
            pending += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return pids


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def cpu_of(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def kernels_in(pids: list[int]) -> int:
    count = 0
    for p in pids:
        with contextlib.suppress(OSError):
            if b"IPKernelApp" in Path(f"/proc/{p}/cmdline").read_bytes():
                count += 1
    return count


def rss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
    return total / 2**20


def pss_mb(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
                    break
    return total


async def wait_warm(bot: BotProcess, spares: int, limit_s: float = 120.0) -> float:
    """Until the bot holds ``spares`` kernels and its tree has been idle for a second (their
    deferred imports done): the pool as it is before a burst. Returns the seconds waited."""
    t0 = time.monotonic()
    tick = os.sysconf("SC_CLK_TCK")
    previous = cpu_ticks(tree(bot.pid))
    while time.monotonic() - t0 < limit_s:
        await asyncio.sleep(1.0)
        pids = tree(bot.pid)
        now = cpu_ticks(pids)
        busy = (now - previous) / tick
        previous = now
        if kernels_in(pids) >= spares and busy < 0.1:
            break
    return time.monotonic() - t0


@dataclass
class Sampler:
    """Memory of the bot's process tree every 0.5 s (PSS every 5 s), and the CPU each of its
    processes used (a killed kernel's CPU is lost to its parent's accounting: sampled here,
    the last half second of each kernel's life excepted)."""

    pid: int
    peak_rss: float = 0.0
    peak_pss: float = 0.0
    _base: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._base = {p: cpu_of(p) for p in tree(self.pid)}
        self._task = asyncio.create_task(self._run())

    def _sample_cpu(self, pids: list[int]) -> None:
        for p in pids:
            self._last[p] = max(self._last.get(p, 0.0), cpu_of(p))

    def cpu(self) -> tuple[float, float]:
        """CPU seconds since start: the bot process, and everything under it."""
        self._sample_cpu(tree(self.pid))
        used = {p: t - self._base.get(p, 0.0) for p, t in self._last.items()}
        return used.get(self.pid, 0.0), sum(t for p, t in used.items() if p != self.pid)

    async def _run(self) -> None:
        n = 0
        while True:
            pids = tree(self.pid)
            self._sample_cpu(pids)
            self.peak_rss = max(self.peak_rss, rss_mb(pids))
            if n % 10 == 0:
                self.peak_pss = max(self.peak_pss, pss_mb(pids))
            n += 1
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- what arrived ------------------------------------------------------------------------------


@dataclass
class Sent:
    """One student's or other's message."""

    who: str
    message_id: int
    at: float
    token: str | None = None  # the value only this student's code prints
    plot: bool = False
    name: str = ""


def reply_to(call: Call) -> int | None:
    rp = call.params.get("reply_parameters")
    if isinstance(rp, str):
        with contextlib.suppress(ValueError):
            rp = json.loads(rp)
    if isinstance(rp, dict) and isinstance(rp.get("message_id"), int):
        return rp["message_id"]
    legacy = call.params.get("reply_to_message_id")
    return legacy if isinstance(legacy, int) else None


def texts_of(call: Call) -> list[str]:
    out = [str(call.params.get(k)) for k in ("text", "caption") if call.params.get(k)]
    media = call.params.get("media")
    if isinstance(media, list):
        out += [str(m.get("caption")) for m in media if isinstance(m, dict) and m.get("caption")]
    return out


def answers_quick(call: Call, s: Sent) -> bool:
    """A reply to the person's message, or a part of a combined answer headed by their name."""
    header = f"<b>{s.name}</b>:"
    return reply_to(call) == s.message_id or any(header in t for t in texts_of(call))


def has_image(call: Call) -> bool:
    return call.method in ("sendPhoto", "sendMediaGroup")


@dataclass
class Figures:
    name: str
    limits: bool
    students: int
    answered: int = 0
    correct: int = 0
    run_times: list[float] = field(default_factory=list)  # inf: not answered by the deadline
    other_times: list[float] = field(default_factory=list)
    others: int = 0
    messages: int = 0
    answer_messages: int = 0
    edits: int = 0
    max_per_minute: int = 0
    refused: int = 0
    peak_rss: float = 0.0
    peak_pss: float = 0.0
    wall: float = 0.0
    bot_cpu: float = 0.0  # CPU seconds during the burst: the bot process itself …
    kernel_cpu: float = 0.0  # … its kernels and sandboxes …
    bench_cpu: float = 0.0  # … and this process (the fake servers)
    limiter_off: bool | None = None
    note: str = ""


def analyse(calls: list[Call], sent: list[Sent], figures: Figures) -> None:
    """Who was answered, when, and what reached the group, from the fake's log of calls."""
    to_group = [c for c in calls if c.chat_id == GROUP]
    ok_sends = [c for c in to_group if c.ok and c.method in SENDS]
    figures.edits = sum(1 for c in to_group if c.ok and c.method.startswith("edit"))
    figures.refused = sum(1 for c in to_group if c.status == 429)
    stamps = sorted(c.at for c in ok_sends for _ in range(message_count(c.method, c.params)))
    figures.messages = len(stamps)
    figures.max_per_minute = max(
        (sum(1 for u in stamps[i:] if u < s + 60.0) for i, s in enumerate(stamps)), default=0
    )
    answer_ids: set[int] = set()
    for s in sent:
        if s.token is None:  # a quick command: the first message replying to it
            figures.others += 1
            mine = [c for c in ok_sends if answers_quick(c, s)]
            figures.other_times.append(min(c.at for c in mine) - s.at if mine else math.inf)
            answer_ids |= {id(c) for c in mine}
            continue
        text_calls = [c for c in ok_sends if any(s.token in t for t in texts_of(c))]
        image_calls = [
            c
            for c in ok_sends
            if has_image(c)
            and (
                reply_to(c) == s.message_id or any(s.name in t or s.token in t for t in texts_of(c))
            )
        ]
        answer_ids |= {id(c) for c in text_calls + image_calls}
        done = [min(c.at for c in text_calls)] if text_calls else []
        if s.plot:  # the answer is complete with its image
            done = [*done, min(c.at for c in image_calls)] if image_calls and done else []
        if text_calls or image_calls:
            figures.answered += 1
        if done:
            figures.correct += 1
            figures.run_times.append(max(done) - s.at)
        else:
            figures.run_times.append(math.inf)
    figures.answer_messages = sum(
        message_count(c.method, c.params) for c in ok_sends if id(c) in answer_ids
    )


class Progress:
    """Whether everyone has been answered, reading only the calls that arrived since the last
    look (the fake wakes a waiter on every call; a full analysis each time would cost CPU the
    bot needs)."""

    TOKEN = re.compile(r"s\d+=\d+|k\d+ done")
    HEADER = re.compile(r"<b>(Guest\d+)</b>:")
    LEGEND = re.compile(r"\b\d+ (Student\d+)\b")

    def __init__(self, sent: list[Sent], first_call: int) -> None:
        self.by_token = {s.token: s for s in sent if s.token is not None}
        self.by_id = {s.message_id: s for s in sent}
        self.quick_names = {s.name: s.who for s in sent if s.token is None and s.name}
        self.student_names = {s.name: s.who for s in sent if s.token is not None and s.name}
        self.texts: set[str] = set()
        self.images: set[str] = set()
        self.quick: set[str] = set()
        self.waiting_for = len(sent)
        self.seen = first_call
        self.pending: dict[int, Call] = {}  # by id(): sends the fake is still answering

    def _read(self, c: Call) -> None:
        for text in texts_of(c):
            for token in self.TOKEN.findall(text):
                if token in self.by_token:
                    self.texts.add(self.by_token[token].who)
                    if has_image(c):  # a plot captioned with its answer (alone or a sheet)
                        self.images.add(self.by_token[token].who)
            if has_image(c):  # a contact sheet's legend: "1 Student4 · 2 Student9"
                for name in self.LEGEND.findall(text):
                    if name in self.student_names:
                        self.images.add(self.student_names[name])
        for text in texts_of(c):
            for name in self.HEADER.findall(text):
                if name in self.quick_names:
                    self.quick.add(self.quick_names[name])
        target = self.by_id.get(reply_to(c) or -1)
        if target is not None:
            if target.token is None:
                self.quick.add(target.who)
            elif has_image(c):
                self.images.add(target.who)

    def done(self, bot: FakeBot) -> bool:
        calls = bot.calls
        fresh = [calls[i] for i in range(self.seen, len(calls))]
        self.seen = len(calls)
        for c in [*self.pending.values(), *fresh]:
            if c.method not in SENDS or c.chat_id != GROUP:
                continue
            if c.status == 0:  # still being answered by the fake: look again later
                self.pending[id(c)] = c
                continue
            self.pending.pop(id(c), None)
            if c.ok:
                self._read(c)
        answered = 0
        for s in self.by_id.values():
            if s.token is None:
                answered += s.who in self.quick
            else:
                answered += s.who in self.texts and (not s.plot or s.who in self.images)
        return answered == self.waiting_for


def quantile(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def seconds(x: float, deadline: float) -> str:
    if math.isnan(x):
        return "—"
    return f"> {deadline:.0f} s" if math.isinf(x) else f"{x:.1f} s"


# -- scenarios ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    name: str
    students: int
    others: int
    plot: bool
    limits: bool
    baseline: bool = False  # the kernel pool as it was before issue 11 (BASELINE)
    spread_s: float = 10.0


def write_dump(path: Path, title: str, sent: list[Sent], calls: list[Call]) -> None:
    """What was sent into the group and what the bot sent back, for reading a run afterwards."""
    t0 = sent[0].at if sent else 0.0
    with path.open("a") as fh:
        fh.write(f"== {title}\n")
        for s in sent:
            fh.write(f"SENT {s.at - t0:7.2f} id={s.message_id} {s.who} {s.token or ''}\n")
        for c in calls:
            if c.chat_id == GROUP:
                text = " | ".join(texts_of(c))[:300].replace("\n", " / ")
                fh.write(
                    f"CALL {c.at - t0:7.2f} {c.status} {c.method} reply={reply_to(c)} {text}\n"
                )


async def run_burst(
    h: Harness,
    b: Burst,
    deadline: float,
    spares: int,
    seed: int,
    pool: int | None = None,
    dump: Path | None = None,
) -> Figures:
    bot = h.fake.new_bot(f"nbhelp_{b.name}_bot")
    Enforcer(bot, limits=b.limits)
    db = h.workdir / f"{b.name}-{'on' if b.limits else 'off'}-{int(b.baseline)}.db"
    extra = dict(BASELINE) if b.baseline else {}
    if pool is not None and not b.baseline:
        extra["NBHELP_RUN__POOL_SIZE"] = str(pool)
        spares = pool
    proc = await h.start_bot(bot, db, limits=b.limits, extra=extra)
    figures = Figures(b.name + ("/base" if b.baseline else ""), b.limits, b.students)
    try:
        await wait_warm(proc, int(BASELINE["NBHELP_RUN__POOL_SIZE"]) if b.baseline else spares)
        figures.limiter_off = proc.limiter_off()
        sampler = Sampler(proc.pid)
        sampler.start()
        first_call = len(bot.calls)
        bench0 = time.process_time()
        rng = random.Random(seed)
        plan: list[tuple[float, str, int]] = [
            (rng.uniform(0, b.spread_s), "student", i) for i in range(1, b.students + 1)
        ]
        plan += [(rng.uniform(0, b.spread_s), "other", j) for j in range(1, b.others + 1)]
        plan.sort()
        sent: list[Sent] = []
        t0 = time.monotonic()
        for offset, kind, n in plan:
            await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
            if kind == "student":
                code = plot_code(n) if b.plot else numpy_code(n)
                msg = bot.send(
                    f"/run {code}", chat_id=GROUP, user_id=10_000 + n, first_name=f"Student{n}"
                )
                sent.append(
                    Sent(
                        f"s{n}",
                        msg["message_id"],
                        time.monotonic(),
                        expected(n),
                        b.plot,
                        f"Student{n}",
                    )
                )
            else:
                text = "/status colab" if n % 2 else "/alternatives colab gpu"
                msg = bot.send(text, chat_id=GROUP, user_id=20_000 + n, first_name=f"Guest{n}")
                sent.append(Sent(f"o{n}", msg["message_id"], time.monotonic(), name=f"Guest{n}"))
        progress = Progress(sent, first_call)
        with contextlib.suppress(TimeoutError):
            await bot.wait_for(progress.done, within=deadline)
        figures.wall = time.monotonic() - t0
        figures.bot_cpu, figures.kernel_cpu = sampler.cpu()
        figures.bench_cpu = time.process_time() - bench0
        await sampler.stop()
        figures.peak_rss, figures.peak_pss = sampler.peak_rss, sampler.peak_pss
        analyse(bot.calls[first_call:], sent, figures)
        if dump is not None:
            write_dump(
                dump, f"{b.name} {'on' if b.limits else 'off'}", sent, bot.calls[first_call:]
            )
    finally:
        await proc.stop()
    return figures


async def run_kill(h: Harness, deadline: float) -> str:
    """Ten /run queued, kill -9, restart: how many of the ten got an answer."""
    bot = h.fake.new_bot("nbhelp_kill_bot")
    Enforcer(bot, limits=True)
    db = h.workdir / "kill.db"
    proc = await h.start_bot(bot, db, limits=True)
    await wait_warm(proc, 1)
    sent: list[Sent] = []
    last_update = 0
    for i in range(1, 11):
        msg = bot.message(
            f'/run import time; time.sleep(3); print("k{i} done")',
            chat_id=GROUP,
            user_id=30_000 + i,
            first_name=f"Queued{i}",
        )
        last_update = bot.inject({"message": msg})["update_id"]
        sent.append(Sent(f"k{i}", msg["message_id"], time.monotonic(), f"k{i} done"))

    def acknowledged(fb: FakeBot) -> bool:
        return any(
            c.method == "getUpdates" and int(c.params.get("offset") or 0) > last_update
            for c in fb.calls
        )

    await bot.wait_for(acknowledged, within=60)
    await asyncio.sleep(1.0)  # the handlers are running; the kernels are busy with the first
    answered_before = _answered(bot.calls, sent)
    proc.proc.kill()  # kill -9
    await proc.proc.wait()
    first = len(bot.calls)
    restarted = await h.start_bot(bot, db, limits=True)
    try:
        with contextlib.suppress(TimeoutError):
            await bot.wait_for(
                lambda fb: (
                    len(answered_before | _answered(fb.calls[first:], sent, notices=True)) == 10
                ),
                within=deadline,
            )
    finally:
        await restarted.stop()
    answered = answered_before | _answered(bot.calls[first:], sent, notices=True)
    return (
        f"{len(answered)}/10 answered: {len(answered_before)} before the kill, "
        f"{len(answered - answered_before)} after the restart (their output, or a reply that "
        f"says the bot restarted) within {deadline:.0f} s"
    )


def _answered(calls: list[Call], sent: list[Sent], *, notices: bool = False) -> set[str]:
    """Who got their output; with ``notices`` also a message replying to them that says the
    bot restarted (a queue-position line is not an answer)."""
    done = set()
    for s in sent:
        for c in calls:
            if not (c.ok and c.method in SENDS and c.chat_id == GROUP):
                continue
            texts = texts_of(c)
            if any((s.token or "\0") in t for t in texts) or (
                notices
                and reply_to(c) == s.message_id
                and any("restart" in t.lower() for t in texts)
            ):
                done.add(s.who)
                break
    return done


async def run_outage(
    h: Harness, students: int, down_s: float, deadline: float
) -> tuple[str, int, int]:
    """A burst of /run; two seconds in, the Bot API answers 500 to everything for ``down_s``."""
    bot = h.fake.new_bot("nbhelp_outage_bot")
    enforcer = Enforcer(bot, limits=False)
    db = h.workdir / "outage.db"
    proc = await h.start_bot(bot, db, limits=False)
    sent: list[Sent] = []
    try:
        await wait_warm(proc, 1)
        first_call = len(bot.calls)
        t0 = time.monotonic()
        for n in range(1, students + 1):
            await asyncio.sleep(max(0.0, t0 + n * 5.0 / students - time.monotonic()))
            if n == max(1, students * 2 // 5):
                enforcer.outage(down_s)
            msg = bot.send(
                f"/run {numpy_code(n)}", chat_id=GROUP, user_id=40_000 + n, first_name=f"S{n}"
            )
            sent.append(Sent(f"s{n}", msg["message_id"], time.monotonic(), expected(n)))
        progress = Progress(sent, first_call)
        with contextlib.suppress(TimeoutError):
            within = enforcer.down_until + deadline - time.monotonic()
            await bot.wait_for(progress.done, within=max(1.0, within))
        figures = Figures("outage", False, students)
        analyse(bot.calls[first_call:], sent, figures)
    finally:
        await proc.stop()
    lost = students - figures.correct
    return (
        f"{lost}/{students} answers lost ({enforcer.errors_500} calls answered 500 during "
        f"{down_s:.0f} s; waited {deadline:.0f} s after the outage)",
        lost,
        students,
    )


# -- the report --------------------------------------------------------------------------------


def row(f: Figures, deadline: float) -> str:
    p50, p95 = quantile(f.run_times, 0.5), quantile(f.run_times, 0.95)
    o95 = quantile(f.other_times, 0.95)
    limits = "on" if f.limits else "off"
    if not f.limits and f.limiter_off is not True:
        limits += "*"
    return (
        f"  {f.name:<10}{limits:>4} {f.correct:>3}/{f.students:<3} {seconds(p50, deadline):>9} "
        f"{seconds(p95, deadline):>9} {seconds(o95, deadline):>9} {f.messages:>5} "
        f"({f.answer_messages:>3} ans) {f.max_per_minute:>5} {f.edits:>5} {f.refused:>5} "
        f"{f.peak_rss:>7.0f} {f.peak_pss:>7.0f} {f.wall:>6.0f} s"
    )


def targets(f: Figures) -> list[tuple[str, bool, str]]:
    p95, o95 = quantile(f.run_times, 0.95), quantile(f.other_times, 0.95)
    label = f"{f.name} {f.students}, limits {'on' if f.limits else 'off'}"
    out = [
        (f"{label}: all answered correctly", f.correct == f.students, f"{f.correct}/{f.students}")
    ]
    if f.name.startswith("crowd"):
        return out
    if f.limits:
        out += [
            (f"{label}: /run p95 <= 30 s", p95 <= 30, f"{p95:.1f} s"),
            (f"{label}: other commands p95 <= 3 s", o95 <= 3, f"{o95:.1f} s"),
            (f"{label}: <= 20 messages a minute", f.max_per_minute <= 20, str(f.max_per_minute)),
        ]
    else:
        out.append((f"{label}: /run p95 <= 10 s", p95 <= 10, f"{p95:.1f} s"))
    return out


def print_logs(workdir: Path) -> None:
    for log in sorted(workdir.glob("bot-*.log")):
        print(f"\n--- {log.name} (tail)\n" + log.read_text(errors="replace")[-3000:])


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    quick = args.quick
    students, others = (20, 5) if quick else (50, 10)
    deadline = args.deadline or (60.0 if quick else 150.0)
    wanted = set(args.scenarios.split(","))
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.limits]
    plan = pool_plan(KernelLimits() if args.pool is None else KernelLimits(pool_size=args.pool))
    print(
        f"nbhelp workshop benchmark  (cpus={os.cpu_count()}, load {os.getloadavg()[0]:.1f}, "
        f"pool: {plan.size} spares + {plan.surge} in a burst, up to {plan.sessions} sessions, "
        f"{plan.reason})"
    )
    print(
        "  fake Bot API with limits: 1 msg/s per chat (burst 5, unverified), 20 msgs/min per "
        "group (edits not counted, unverified), 30/s overall; 429 + retry_after"
    )
    bursts: list[Burst] = []
    kernels = {"current": [False], "baseline": [True], "both": [True, False]}[args.kernels]
    for limits in modes:
        for baseline in kernels:
            if "numpy" in wanted:
                bursts.append(Burst("numpy", students, others, False, limits, baseline))
            if "plot" in wanted:
                bursts.append(Burst("plot", students, others, True, limits, baseline))
            if "crowd" in wanted and not quick:
                bursts.append(Burst("crowd", 100, others, False, limits, baseline))
    results: list[Figures] = []
    notes: list[str] = []
    checks: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="nbhelp-workshop-") as tmp:
        async with Harness(Path(tmp)) as h:
            for i, b in enumerate(bursts):
                f = await run_burst(
                    h, b, deadline, plan.size, seed=11 + i, pool=args.pool, dump=args.dump
                )
                results.append(f)
                if not b.baseline:  # the baseline is for comparison only
                    checks += targets(f)
                print(
                    f"  … {f.name} {b.students}, limits {'on' if b.limits else 'off'}: "
                    f"{f.correct}/{f.students} in {f.wall:.0f} s",
                    flush=True,
                )
            if "kill" in wanted:
                kill = await run_kill(h, 60.0 if quick else 90.0)
                notes.append(f"kill -9 with ten /run queued, restart: {kill}")
                checks.append(
                    ("kill -9: all ten answered", kill.startswith("10/10"), kill.split(" ")[0])
                )
            if "outage" in wanted:
                text, lost, n = await run_outage(
                    h, 10 if quick else 20, 15.0 if quick else 30.0, 90.0
                )
                notes.append(f"Bot API 500s during a burst: {text}")
                checks.append(("Bot API down: no answer lost", lost == 0, f"{lost}/{n} lost"))
            if args.keep_logs:
                print_logs(Path(tmp))
    print(
        f"\n  {'scenario':<10}{'lim':>4} {'right':>7} {'run p50':>9} {'run p95':>9} "
        f"{'other95':>9} {'msgs':>5} {'':9} {'max/60s':>7} {'edits':>5} {'429s':>5} "
        f"{'RSS MB':>7} {'PSS MB':>7} {'wall':>8}"
    )
    for f in results:
        print(row(f, deadline))
    print(
        "\n  CPU seconds during each burst: the bot process / its kernels and sandboxes / the fakes"
    )
    for f in results:
        print(
            f"  {f.name:<10}{'on' if f.limits else 'off':>4} {f.bot_cpu:7.1f} {f.kernel_cpu:7.1f} "
            f"{f.bench_cpu:7.1f}"
        )
    if any(not f.limits and f.limiter_off is not True for f in results):
        print("  * the bot's own rate limiter could not be switched off in its process")
    for note in notes:
        print(f"  {note}")
    print()
    for name, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<58} {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 students, shorter deadlines")
    ap.add_argument("--scenarios", default="numpy,plot,crowd,kill,outage")
    ap.add_argument("--limits", choices=("on", "off", "both"), default="both")
    ap.add_argument(
        "--kernels",
        choices=("current", "baseline", "both"),
        default="current",
        help="baseline: the kernel pool as before issue 11 (eager imports, 2 spares), to compare",
    )
    ap.add_argument(
        "--pool", type=int, default=None, help="the bot's pool_size (default: its auto size)"
    )
    ap.add_argument("--deadline", type=float, default=0.0, help="seconds to wait after a burst")
    ap.add_argument(
        "--dump", type=Path, default=None, help="append each burst's messages to this file"
    )
    ap.add_argument("--keep-logs", action="store_true", help="print the tail of each bot log")
    raise SystemExit(asyncio.run(main(ap.parse_args())))
