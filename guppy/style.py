"""The style rules of a persona, checked on one reply: the only place that decides what "in style" is.

The data side refuses (or drops) conversations that break them and marks them in `guppy persona
sample`; the evaluator reports how many of a model's replies keep them. Words are split on whitespace
and sentences end at . ! or ?, which suits English; a language-aware version changes only this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guppy.persona import Style

RULES = ("lowercase", "sentence_length", "reply_length", "no_banned_words")
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


@dataclass(frozen=True)
class Violation:
    rule: str  # one of RULES
    text: str  # the part of the reply that breaks it: the word, the sentence, or the whole reply
    message: str  # for people: "banned word 'nap'", "sentence of 14 words (max 12)"


def violations(reply: str, style: Style) -> list[Violation]:
    """Every way `reply` breaks `style`, in reply order within each rule; empty when it keeps them all."""
    from guppy.persona import phrases_pattern

    found = []
    if style.lowercase and reply != reply.lower():
        found.append(Violation("lowercase", reply, "not lowercase"))
    for sentence in _SENTENCE.findall(reply):
        words = len(sentence.split())
        if words > style.max_sentence_words:
            found.append(Violation("sentence_length", sentence.strip(),
                                   f"sentence of {words} words (max {style.max_sentence_words})"))
    words = len(reply.split())
    if not style.min_reply_words <= words <= style.max_reply_words:
        bound = f"min {style.min_reply_words}" if words < style.min_reply_words else f"max {style.max_reply_words}"
        found.append(Violation("reply_length", reply, f"reply of {words} words ({bound})"))
    if style.banned_words:
        for m in phrases_pattern(tuple(style.banned_words)).finditer(reply):
            found.append(Violation("no_banned_words", m.group(0), f"banned word '{m.group(0).lower()}'"))
    return found
