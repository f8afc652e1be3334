"""Sentences the platform stores in English and shows in the reader's language.

Ledger reasons (`billing.display`) and take errors (`generation.display`) are stored as
written, for the API, exports and support, and translated when a page shows them: each
module keeps a table of the fixed shapes it writes; `translate` finds the one a stored
text has and fills the translated sentence with its values. Imports nothing from the apps.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# (shape of a stored text, how each captured value reads, the translated sentence). The
# sentence is a callable so gettext runs when shown, in the reader's language.
Shape = tuple[re.Pattern, dict[str, Callable[[str], str]], Callable[[], str]]


def _as_written(value: str) -> str:
    return value


def translate(text: str, shapes: list[Shape]) -> str:
    """`text` in the reader's language if it has one of `shapes`; otherwise as written."""
    for shape, readers, sentence in shapes:
        match = shape.fullmatch(text)
        if match:
            values = {k: readers.get(k, _as_written)(v) for k, v in match.groupdict().items()}
            return sentence() % values
    return text
