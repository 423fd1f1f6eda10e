"""A unified diff (what `git diff` prints) as lines a page can colour: pure, no HTML here (the template escapes).

Owns: `render_diff`, which names each line's role (file header, hunk header, added, removed, context) and keeps
the old and new line numbers, so a reader sees where in each file a change sits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
MAX_LINES = 5000  # a bigger change is cut, and the page says so


@dataclass(frozen=True, slots=True)
class DiffLine:
    role: str  # "file", "hunk", "add", "del", "context", "meta"
    text: str
    old: int | None = None
    new: int | None = None


def render_diff(text: str) -> tuple[list[DiffLine], bool]:
    """The lines, and whether the diff was cut at MAX_LINES."""
    lines: list[DiffLine] = []
    old = new = 0
    for raw in text.splitlines()[:MAX_LINES]:
        if raw.startswith("diff --git "):
            lines.append(DiffLine("file", raw.removeprefix("diff --git ")))
        elif raw.startswith(("--- ", "+++ ", "index ", "new file", "deleted file", "similarity", "rename ")):
            lines.append(DiffLine("meta", raw))
        elif match := _HUNK.match(raw):
            old, new = int(match[1]), int(match[2])
            lines.append(DiffLine("hunk", raw))
        elif raw.startswith("+"):
            lines.append(DiffLine("add", raw[1:], None, new))
            new += 1
        elif raw.startswith("-"):
            lines.append(DiffLine("del", raw[1:], old, None))
            old += 1
        else:
            lines.append(DiffLine("context", raw[1:] if raw.startswith(" ") else raw, old, new))
            old, new = old + 1, new + 1
    return lines, len(text.splitlines()) > MAX_LINES
