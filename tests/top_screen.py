"""Reading a screen of ``exchange top``: its tables are text, one cell from the next
separated by runs of two spaces or more (the unit tests render it with rich, the e2e test
reads it from tmux)."""

from __future__ import annotations


def cells(line: str) -> list[str]:
    """A line of the screen cut at runs of two spaces or more."""
    return [c.strip() for c in line.split("  ") if c.strip()]


def after(text: str, name: str, n: int) -> list[str]:
    """The ``n`` cells after the cell ``name`` (tables side by side share lines)."""
    for line in text.splitlines():
        found = cells(line)
        if name in found:
            at = found.index(name) + 1
            return found[at:at + n]
    raise AssertionError(f"no {name!r} in:\n{text}")
