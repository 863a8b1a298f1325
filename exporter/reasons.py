"""One-line reasons from exceptions raised by user code and by the torch exporters."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY = re.compile(r"## Exception summary\s+<class '([^']+)'>: ([^\n]+)")
_MAX_CHARS = 240


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, at most a few hundred characters."""
    text = _ANSI.sub("", str(error))
    summary = _SUMMARY.search(text)  # torch.onnx puts the root cause in a summary section
    if summary:
        reason = f"{summary.group(1).rsplit('.', 1)[-1]}: {summary.group(2).strip()}"
    else:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return reason if len(reason) <= _MAX_CHARS else reason[: _MAX_CHARS - 1] + "…"
