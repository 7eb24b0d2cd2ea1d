"""The style rules of a persona, checked on one reply: the only place that decides what "in style" is.

The data side refuses (or drops) conversations that break them and marks them in `guppy persona
sample`; the evaluator reports how many of a model's replies keep them. The persona's language
(guppy/spec/language.py) decides whether case applies and whether lengths count words (English) or
characters (a script written without spaces, such as Japanese); sentences end at . ! ? and 。！？.
It also decides the script: letters in another script than the language's (`i rest in` in a Chinese
reply, '竹笋' in an English one) break the style, unless the persona's own pools hold that word;
the data side checks prompts for that rule too (`conversation_violations`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guppy.spec.language import is_cased, is_spaced, length, phrases_pattern

if TYPE_CHECKING:
    from guppy.spec.persona import Style

RULES = ("lowercase", "sentence_length", "reply_length", "no_banned_words", "script")
_SENTENCE = re.compile(r"[^.!?。！？．…]+[.!?。！？．…]*")


@dataclass(frozen=True)
class Violation:
    rule: str  # one of RULES
    text: str  # the part of the reply that breaks it: the word, the sentence, or the whole reply
    message: str  # for people: "banned word 'nap'", "sentence of 14 words (max 12)"


def violations(reply: str, style: Style) -> list[Violation]:
    """Every way `reply` breaks `style`, in reply order within each rule; empty when it keeps them all."""
    language = style._language
    unit = "words" if is_spaced(language) else "characters"
    found = []
    if style.lowercase and is_cased(language) and reply != reply.lower():
        found.append(Violation("lowercase", reply, "not lowercase"))
    for sentence in _SENTENCE.findall(reply):
        size = length(sentence.strip(), language)
        if size > style.max_sentence_words:
            found.append(Violation("sentence_length", sentence.strip(),
                                   f"sentence of {size} {unit} (max {style.max_sentence_words})"))
    size = length(reply, language)
    if not style.min_reply_words <= size <= style.max_reply_words:
        bound = f"min {style.min_reply_words}" if size < style.min_reply_words else f"max {style.max_reply_words}"
        found.append(Violation("reply_length", reply, f"reply of {size} {unit} ({bound})"))
    if style.banned_words:
        for m in phrases_pattern(tuple(style.banned_words)).finditer(reply):
            found.append(Violation("no_banned_words", m.group(0), f"banned word '{m.group(0).lower()}'"))
    return found + script_violations(reply, style)


def script_violations(text: str, style: Style) -> list[Violation]:
    """Words of `text` in another script than the persona's language, beyond those its pools hold."""
    from guppy.spec.language import foreign_words, language_and_script

    language = style._language
    foreign = [w for w in foreign_words(text, language) if w.lower() not in style._own_foreign]
    if not foreign:
        return []
    script = language_and_script(language)[1]  # one message per place, whatever the words: validate groups by it
    return [Violation("script", foreign[0], f"words in another script than {language}'s ({script}); write them in "
                                            "the language, or add them to one of its pools")]


def conversation_violations(conv, style: Style) -> list[tuple[int, Violation]]:
    """(turn, violation) for every reply out of style and every prompt in another script: what the data
    side refuses."""
    return [(turn, v) for turn, (role, text) in enumerate(conv)
            for v in (violations(text, style) if role == "assistant" else script_violations(text, style))]
