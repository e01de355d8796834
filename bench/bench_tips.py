"""How well /tips recognises real error pastes: the evaluation set in knowledge/eval/.

Prints top-1 accuracy (the answer, or "don't know", is the expected one) and the rate of
confident wrong answers (an answer given with confidence that is not the expected one).
Targets (issue 13): top-1 >= 90 %, confident wrong <= 3 %. ``-v`` lists every miss.

    python bench/bench_tips.py [-v]
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path

from knowledge.loader import load
from knowledge.match import match

EVAL = Path(__file__).resolve().parents[1] / "knowledge" / "eval" / "errors.toml"
TOP1_TARGET = 0.90
WRONG_TARGET = 0.03


def expected(case: dict[str, object]) -> set[str]:
    exp = case["expect"]
    return {exp} if isinstance(exp, str) else {str(x) for x in exp}  # type: ignore[union-attr]


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    kb = load()
    cases = tomllib.loads(EVAL.read_text(encoding="utf-8"))["case"]
    right = wrong = known = unknown_right = 0
    misses: list[str] = []
    started = time.perf_counter()
    for case in cases:
        want = expected(case)
        best = match(kb, str(case["text"])).best
        got = best.id if best else "none"
        if "none" in want:
            known += 0
        else:
            known += 1
        if got in want:
            right += 1
            unknown_right += "none" in want
        else:
            if best is not None:
                wrong += 1
            misses.append(f"  {'WRONG' if best else 'miss '} want {sorted(want)} got {got}  {case['source']}")
    elapsed = time.perf_counter() - started
    n = len(cases)
    top1, rate_wrong = right / n, wrong / n
    print(f"cases                  {n}  ({known} with an entry, {n - known} 'none')")
    print(f"top-1 accuracy         {top1:6.1%}  ({right}/{n})   target >= {TOP1_TARGET:.0%}")
    print(f"confident wrong        {rate_wrong:6.1%}  ({wrong}/{n})   target <= {WRONG_TARGET:.0%}")
    print(f"'none' answered right  {unknown_right}/{n - known}")
    print(f"matching time          {elapsed / n * 1000:6.2f} ms per paste")
    if verbose and misses:
        print("misses:")
        print("\n".join(misses))
    ok = top1 >= TOP1_TARGET and rate_wrong <= WRONG_TARGET
    print(f"targets: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
