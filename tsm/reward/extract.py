"""Find the final answer of a response: the content of its last ``\\boxed{...}`` (or ``\\fbox{...}``).

Conventions:
- Only the *last* box counts. If it is not closed (a response cut off mid-answer), the answer
  is ``unbalanced``; an earlier, closed box is never used instead, because it is usually an
  intermediate result, and rewarding it would reward leaving the final answer unfinished.
- ``\\boxed {x}`` (space before the brace) counts; ``\\boxed x`` (no brace) is not a box.
- Work is bounded whatever the response: the scan stops after ``max_chars`` characters of box
  content (``too_long``) or ``max_depth`` levels of brace nesting (``too_deep``). Escaped braces
  ``\\{`` ``\\}`` do not count as nesting.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["EXTRACT_REASONS", "Extraction", "extract_boxed"]

EXTRACT_REASONS = ("no_box", "empty", "unbalanced", "too_long", "too_deep")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"\\[{}]|[{}]")


@dataclass(frozen=True)
class Extraction:
    """``answer`` is the box content when ``reason`` is None, else None."""

    answer: str | None
    reason: str | None

    def __post_init__(self) -> None:
        if (self.answer is None) == (self.reason is None):
            raise ValueError("exactly one of answer and reason must be set")
        if self.reason is not None and self.reason not in EXTRACT_REASONS:
            raise ValueError(f"unknown reason {self.reason!r}")


def _last_box_start(text: str) -> int | None:
    """Index just after the opening brace of the last box, or None."""
    # rfind on the literal names is O(n) in C; the regex then checks only the tail.
    best = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    while best >= 0:
        m = _BOX_RE.match(text, best)
        if m:
            return m.end()
        best = max(text.rfind("\\boxed", 0, best), text.rfind("\\fbox", 0, best))
    return None


def extract_boxed(text: str, *, max_chars: int = 2000, max_depth: int = 20) -> Extraction:
    """Return the last box's content, or the reason there is none (see module docstring)."""
    if not isinstance(text, str):
        return Extraction(None, "no_box")
    start = _last_box_start(text)
    if start is None:
        return Extraction(None, "no_box")
    depth = 1
    limit = start + max_chars + 1  # room for the closing brace
    for m in _BRACE_RE.finditer(text, start, min(len(text), limit)):
        tok = m.group()
        if len(tok) == 2:  # \{ or \}
            continue
        depth += 1 if tok == "{" else -1
        if depth > max_depth:
            return Extraction(None, "too_deep")
        if depth == 0:
            content = text[start:m.start()].strip()
            return Extraction(content, None) if content else Extraction(None, "empty")
    if len(text) >= limit:
        return Extraction(None, "too_long")
    return Extraction(None, "unbalanced")
