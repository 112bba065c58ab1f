"""What a refinement changed and why, in the model's words when it gave them.

The prompt asks for a "Changes:" section after the program. Small models often comply loosely
("**Changes:**", "### Changes", "Changes made:") or not at all, so the section is found in any of
those shapes, outside code blocks only (a "# Changes:" comment in the program is not an
explanation), and a reply without one still gets a summary built from what is certain: how much
the program differs from the best answer it started from, and the reply's own prose.
"""

from __future__ import annotations

import difflib
import re

EXPLANATION_CHARS = 1_000
PROSE_CHARS = 400

_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
# A line that opens the section: optional markdown (#, **, __, -), "Changes" or "Changes made",
# optional closing markdown, then a colon or the end of the line; the rest of the line is kept.
_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:[-*][ \t]+)?[*_]{0,2}[ \t]*changes(?:[ \t]+made)?[ \t]*[*_]{0,2}[ \t]*"
    r"(?::[*_]{0,2}|$)[ \t]*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def _prose(reply: str) -> str:
    """The reply without its code blocks, blank runs collapsed."""
    text = _FENCED.sub("\n", reply)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _cap(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 4].rstrip() + " ..."


def parse_changes(reply: str) -> str:
    """The text of the reply's "Changes:" section (up to the next code block), or "" without one."""
    prose = _FENCED.sub("\n\x00\n", reply)  # a marker where each code block was
    match = _HEADER.search(prose)
    if match is None:
        return ""
    section = (match.group("rest") + prose[match.end() :]).split("\x00", 1)[0]
    return _cap(re.sub(r"\n{3,}", "\n\n", section), EXPLANATION_CHARS)


def change_size(before: str, after: str) -> tuple[int, int]:
    """Lines added and removed from ``before`` to ``after`` (trailing spaces ignored)."""
    added = removed = 0
    old = [line.rstrip() for line in before.strip().splitlines()]
    new = [line.rstrip() for line in after.strip().splitlines()]
    for line in difflib.unified_diff(old, new, lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def explain(reply: str, code: str, reference_code: str, reference_id: str = "") -> str:
    """The "Changes:" section when the reply has one, else a summary that says it is one."""
    changes = parse_changes(reply)
    if changes:
        return changes
    against = f"the best answer ({reference_id})" if reference_id else "the best answer"
    if not code.strip():
        summary = "The reply held no program."
    elif not reference_code.strip():
        summary = f'No "Changes:" section in the reply; {against} had no code, so the program is new.'
    else:
        added, removed = change_size(reference_code, code)
        if added == removed == 0:
            summary = f'No "Changes:" section in the reply; the program is the same as {against}.'
        else:
            counts = f"{added} line{'s' if added != 1 else ''} added, {removed} removed"
            summary = f'No "Changes:" section in the reply; against {against}: {counts}.'
    prose = _prose(reply)
    # Without fences the program is inline in the prose, which would then only repeat the code.
    if prose and code.strip() and "```" in reply:
        summary += " The reply said: " + _cap(prose.replace("\n", " "), PROSE_CHARS)
    return summary
