"""Escaping what producers sent before it reaches a terminal."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from waymark.printable import json_printable, printable

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_every_control_is_escaped_and_the_rest_kept() -> None:
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        assert printable(chr(code)) == f"\\x{code:02x}"
    for char in BIDI + "\u2028\u2029":
        assert printable(char) == f"\\u{ord(char):04x}"
    kept = "Ugyldig verdi: æøå, 日本語, emoji 🎉, tab-less text \\x1b as typed"
    assert printable(kept) == kept


@given(st.text())
def test_nothing_a_terminal_acts_on_survives(text: str) -> None:
    shown = printable(text)
    assert not any(unicodedata.category(c) == "Cc" or c in BIDI for c in shown)
    if all(unicodedata.category(c) != "Cc" and c not in BIDI + "\u2028\u2029" for c in text):
        assert shown == text


@given(
    st.recursive(
        st.text() | st.integers() | st.none(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_json_keeps_its_value(value: object) -> None:
    encoded = json_printable(json.dumps(value, indent=2, ensure_ascii=False))
    assert json.loads(encoded) == value
    assert not any(c in encoded for c in "\x1b\x9b\x85" + BIDI)
