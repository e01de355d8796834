"""Text clean-up of kernel output: ANSI codes, control characters, tracebacks."""

from __future__ import annotations

import re

from bot.text import clean

_FRAME = re.compile(r"^\s*(?:Cell In\[\d+\]|File |Input In \[\d+\])")
_USER_FRAME = re.compile(r"^\s*(?:Cell In\[\d+\]|Input In \[\d+\]|File <(?:string|stdin)>)")


def clean_text(text: str) -> str:
    """Chat-safe kernel output: :func:`bot.text.clean`, keeping ``\r`` for progress bars."""
    return clean(text, keep_cr=True)


def collapse_carriage_returns(text: str) -> str:
    """Show what a terminal would: for progress bars (``\\r`` rewrites), the last state of a line."""
    if "\r" not in text:
        return text
    text = text.replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            pieces = [p for p in line.split("\r") if p]
            line = pieces[-1] if pieces else ""
        lines.append(line)
    return "\n".join(lines)


def trim_traceback(lines: list[str], ename: str, evalue: str) -> str:
    """A plain traceback trimmed to the user's code.

    IPython (``xmode=Plain``) sends one entry per frame. Frames of the user's cells are kept;
    runs of library frames between them collapse into one "…" line, except the frame where the
    error was raised when no user frame follows it (it says *what* failed). SyntaxErrors and
    other tracebacks without frames are kept whole.
    """
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    entries = _split_frames(text)
    header, frames, tail = entries
    if not frames:
        body = text.strip("\n")
        return body or _last_line(ename, evalue)
    kept: list[str] = []
    skipped = 0
    for i, frame in enumerate(frames):
        is_user = bool(_USER_FRAME.match(frame))
        is_last = i == len(frames) - 1
        if is_user or (is_last and not kept):
            if skipped:
                kept.append(
                    f"  ... {skipped} more frame{'s' if skipped > 1 else ''} in library code"
                )
                skipped = 0
            kept.append(frame.rstrip("\n"))
        else:
            skipped += 1
    if skipped:
        kept.append(f"  ... {skipped} more frame{'s' if skipped > 1 else ''} in library code")
    parts = [p for p in (header.strip("\n"), *kept, tail.strip("\n")) if p]
    if not tail.strip():
        parts.append(_last_line(ename, evalue))
    return "\n".join(parts)


def _last_line(ename: str, evalue: str) -> str:
    return f"{ename}: {evalue}" if evalue else ename


def _split_frames(text: str) -> tuple[str, list[str], str]:
    """Split a plain traceback into its header line, frame blocks and the exception lines."""
    lines = text.split("\n")
    header = ""
    start = 0
    if lines and lines[0].startswith("Traceback"):
        header, start = lines[0], 1
    frames: list[str] = []
    current: list[str] = []
    tail_start = len(lines)
    for i in range(start, len(lines)):
        line = lines[i]
        if _FRAME.match(line):
            if current:
                frames.append("\n".join(current))
            current = [line]
        elif line.startswith((" ", "\t")) and current:
            current.append(line)
        elif not line.strip() and current:
            continue
        else:
            tail_start = i
            break
    if current:
        frames.append("\n".join(current))
    tail = "\n".join(lines[tail_start:])
    return header, frames, tail
