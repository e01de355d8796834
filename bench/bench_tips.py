"""How well /tips recognises real error pastes: the evaluation set in knowledge/eval/.

Prints top-1 accuracy (the answer, or "don't know", is the expected one) and the rate of
confident wrong answers (an answer given with confidence that is not the expected one).
Targets (issue 13): top-1 >= 90 %, confident wrong <= 3 %. ``-v`` lists every miss.
The held-out cases (``split = "holdout"``) were collected after the entries were written,
so they are reported on their own as well.

    python bench/bench_tips.py [-v]
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path

from knowledge.loader import KnowledgeBase, load
from knowledge.match import match

EVAL = Path(__file__).resolve().parents[1] / "knowledge" / "eval" / "errors.toml"
TOP1_TARGET = 0.90
WRONG_TARGET = 0.03


def expected(case: dict[str, object]) -> set[str]:
    exp = case["expect"]
    if isinstance(exp, str):
        return {exp}
    assert isinstance(exp, list), exp
    return {str(x) for x in exp}


def score(kb: KnowledgeBase, cases: list[dict[str, object]]) -> tuple[int, int, int, list[str]]:
    """(right, confidently wrong, 'none' cases answered right, misses) over ``cases``."""
    right = wrong = none_right = 0
    misses: list[str] = []
    for case in cases:
        want = expected(case)
        best = match(kb, str(case["text"])).best
        got = best.id if best else "none"
        if got in want:
            right += 1
            none_right += "none" in want
        else:
            wrong += best is not None
            kind = "WRONG" if best else "miss "
            misses.append(f"  {kind} want {sorted(want)} got {got}  {case['source']}")
    return right, wrong, none_right, misses


def report(name: str, kb: KnowledgeBase, cases: list[dict[str, object]], verbose: bool) -> bool:
    n = len(cases)
    nones = sum("none" in expected(c) for c in cases)
    started = time.perf_counter()
    right, wrong, none_right, misses = score(kb, cases)
    per_ms = (time.perf_counter() - started) / max(1, n) * 1000
    top1, rate_wrong = right / n, wrong / n
    print(f"[{name}] {n} cases ({n - nones} with an entry, {nones} 'none'), {per_ms:.2f} ms each")
    print(f"  top-1 accuracy      {top1:6.1%}  ({right}/{n})   target >= {TOP1_TARGET:.0%}")
    print(f"  confident wrong     {rate_wrong:6.1%}  ({wrong}/{n})   target <= {WRONG_TARGET:.0%}")
    print(f"  'none' kept 'none'  {none_right}/{nones}")
    if verbose and misses:
        print("\n".join(misses))
    return top1 >= TOP1_TARGET and rate_wrong <= WRONG_TARGET


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    kb = load()
    cases = tomllib.loads(EVAL.read_text(encoding="utf-8"))["case"]
    held = [c for c in cases if c.get("split") == "holdout"]
    dev = [c for c in cases if c.get("split") != "holdout"]
    report("development", kb, dev, verbose)
    report("held-out", kb, held, verbose)
    ok = report("all", kb, cases, False)
    print(f"targets (all cases): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
