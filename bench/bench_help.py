"""Start-up cost of a one-shot answer: ``python -m bot ask "/help"`` in a fresh process.

Target (issue 2): median under 0.8 s on this machine. Also prints the floor, a bare
``python -c pass``, measured side by side in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 9
TARGET_S = 0.8


def timed(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NBHELP_DB=str(Path(tmp) / "bench.db"))
        ask = [sys.executable, "-m", "bot", "ask", "/help"]
        timed(ask, env, tmp)  # first run creates and migrates the database
        bare, help_ = [], []
        for _ in range(RUNS):
            bare.append(timed([sys.executable, "-c", "pass"], env, tmp))
            help_.append(timed(ask, env, tmp))
    med_bare, med_help = statistics.median(bare), statistics.median(help_)
    print(f"python -c pass          median {med_bare * 1000:7.1f} ms  ({RUNS} runs)")
    print(
        f"python -m bot ask /help median {med_help * 1000:7.1f} ms  max {max(help_) * 1000:.1f} ms"
    )
    ok = med_help < TARGET_S
    print(f"target: median < {TARGET_S * 1000:.0f} ms -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
