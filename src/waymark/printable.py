"""Text that producers sent, made safe to print on a terminal.

An error message, a component name or a path comes from whoever posted the event. Printed
raw, an ESC sequence in it could clear the reader's screen, move the cursor, retitle the
window or print a fake "OK"; a bidi override could reorder what the reader sees. Every
text the CLI prints that came from the server goes through :func:`printable`, which
shows such characters as escapes (``\\x1b``, ``\\u202e``) instead of sending them.

What is escaped: the C0 controls (newline and tab included: a value stays on one line),
DEL, the C1 controls, the Unicode line and paragraph separators, and the bidirectional
formatting characters (marks, embeddings, overrides, isolates).
"""

from __future__ import annotations

import re

_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_UNSAFE_IN_JSON = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f{_BEYOND_C0}]")
"""What :func:`json_printable` escapes: not the newlines, tabs and carriage returns that
lay JSON out (inside its strings ``json.dumps`` already writes every C0 control as an
escape)."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character that a terminal would act on shown as an escape."""
    return _UNSAFE.sub(_escape, text)


def json_printable(encoded: str) -> str:
    """JSON text with those characters written as JSON escapes (``\\u001b``): the same
    JSON value, and nothing a terminal would act on. JSON's own syntax is ASCII, so they
    can only occur inside strings, where an escape means the same character."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)
