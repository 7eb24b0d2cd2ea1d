"""What a persona's language changes: case, word spacing, and what counts as one unit of length.

A persona says its language as a BCP 47 tag (`en`, `ja`, `zh-Hant`, `sr-Latn`). Two facts about its
script matter to Guppy, and both follow from the tag (a script subtag wins over the language's
usual script):
    cased    the script has upper and lower case (Latin, Cyrillic, Greek, ...): "lowercase" means
             something; in Japanese or Chinese it does not.
    spaced   words are separated by spaces: lengths count words. Japanese, Chinese, Thai, ... are
             written without spaces: lengths count characters, and a word is found as a substring.

Per character, `is_unspaced_char` tells the scripts written without spaces (CJK ideographs, kana,
their punctuation and full-width forms, Thai, Lao, Khmer, Myanmar, Tibetan), so that text which
mixes scripts ("TVを見た") is handled character by character wherever no language is known.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Language subtags whose usual script has no case, and those written without spaces between words.
CASELESS = frozenset("ja zh ko th lo km my bo ar fa ur ps he yi hi mr ne bn pa gu ta te kn ml si am ka".split())
UNSPACED = frozenset("ja zh th lo km my bo".split())
# Script subtags (ISO 15924) that override the language's usual script.
CASED_SCRIPTS = frozenset("Latn Cyrl Grek Armn Copt Glag Cher Adlm Osge Dsrt".split())
UNSPACED_SCRIPTS = frozenset("Hani Hans Hant Jpan Hira Kana Hrkt Thai Laoo Khmr Mymr Tibt".split())

# BCP 47's shape (RFC 5646): language (2-3 letters; the 4-8 letter form is reserved and unused, and
# refusing it catches 'japanese'), then optional script, region, variants, extensions and private
# use. A well-formed tag, not a registry lookup.
_TAG = re.compile(r"^[a-z]{2,3}(?:-[a-z]{3}){0,3}(?:-[a-z]{4})?(?:-(?:[a-z]{2}|\d{3}))?"
                  r"(?:-(?:[a-z\d]{5,8}|\d[a-z\d]{3}))*(?:-[a-wyz\d](?:-[a-z\d]{2,8})+)*(?:-x(?:-[a-z\d]{1,8})+)?$",
                  re.IGNORECASE)

# Characters of scripts written without spaces, as one regex class (no \p{} in Python's re).
UNSPACED_CHARS = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u0f00-\u0fff"  # Tibetan
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3000-\u303f"  # CJK symbols and punctuation: 、。「」『』々〆〜
    "\u3040-\u30ff"  # hiragana, katakana (ー included)
    "\u31f0-\u31ff"  # katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\ufe30-\ufe4f"  # CJK compatibility forms
    "\uff00-\uffef"  # full-width and half-width forms: ！？（）ｱ
    "\U00020000-\U0003134f"  # CJK extensions B-H
)
_UNSPACED_CHAR = re.compile(f"[{UNSPACED_CHARS}]")
_SPACE_BY_UNSPACED = re.compile(f"\\s+(?=[{UNSPACED_CHARS}])|(?<=[{UNSPACED_CHARS}])\\s+")
_WORD_CHAR = re.compile(r"\w")


def check_tag(tag: str) -> str:
    """The tag itself if it is a well-formed BCP 47 tag; ValueError otherwise."""
    if not _TAG.match(tag):
        raise ValueError(f"'{tag}' is not a BCP 47 language tag (e.g. en, ja, zh-Hant, pt-BR)")
    return tag


def _subtags(tag: str) -> tuple[str, str | None]:
    """(language, script or None) of a tag: 'zh-Hant-TW' -> ('zh', 'Hant')."""
    parts = tag.split("-")
    script = next((p.title() for p in parts[1:] if len(p) == 4 and p.isalpha()), None)
    return parts[0].lower(), script


def is_cased(tag: str) -> bool:
    """Does the language's script have upper and lower case?"""
    language, script = _subtags(tag)
    if script is not None:
        return script in CASED_SCRIPTS
    return language not in CASELESS


def is_spaced(tag: str) -> bool:
    """Are its words separated by spaces?"""
    language, script = _subtags(tag)
    if script is not None:
        return script not in UNSPACED_SCRIPTS
    return language not in UNSPACED


def is_unspaced_char(char: str) -> bool:
    return _UNSPACED_CHAR.match(char) is not None


def length(text: str, tag: str) -> int:
    """Length in the language's unit: words for a spaced script; letters and digits (no spaces,
    no punctuation) for one without spaces, where a word has no visible edges."""
    if is_spaced(tag):
        return len(text.split())
    return len(_WORD_CHAR.findall(text))


def units(text: str, tag: str) -> list[str]:
    """The text as the units `distinct-n` counts: words, or characters for an unspaced script."""
    if is_spaced(tag):
        return text.split()
    return _WORD_CHAR.findall(text)


def drop_spaces_by_unspaced(text: str) -> str:
    """Remove whitespace next to a character of an unspaced script: "お腹 すいた。 ごはん" ->
    "お腹すいた。ごはん", "TV を見る" -> "TVを見る"; "OK Google" keeps its space."""
    return _SPACE_BY_UNSPACED.sub("", text)


def fold(text: str) -> str:
    """Unicode NFKC: full-width ASCII to ASCII (ＡＢＣ１２ -> ABC12), half-width katakana to
    full-width (ｷﾝｷﾞｮ -> キンギョ), compatibility forms to their plain letters."""
    return unicodedata.normalize("NFKC", text)


# A Latin (or any spaced-script) phrase must not touch a letter of its own kind on either side:
# 'eat' is not in 'great'. A letter of a script without spaces is no boundary: 'TV' is in 'TVを見た'.
_LEFT_EDGE = f"(?<![^\\W{UNSPACED_CHARS}])"
_RIGHT_EDGE = f"(?![^\\W{UNSPACED_CHARS}])"


def _phrase_regex(phrase: str) -> str:
    """A phrase of a spaced script matches as whole words; an edge in an unspaced script (ja, zh,
    th) has no visible word boundary, so that side matches anywhere: 'ごはん' in 'ごはんが好き'."""
    body = re.escape(phrase.lower())
    left = "" if is_unspaced_char(phrase[:1]) else _LEFT_EDGE
    right = "" if is_unspaced_char(phrase[-1:]) else _RIGHT_EDGE
    return left + body + right


@functools.lru_cache(maxsize=1024)
def phrases_pattern(phrases: tuple[str, ...]) -> re.Pattern:
    """One regex that finds any of the phrases: 'eat' in 'i eat.', not in 'great'; 'ごはん' in 'ごはんだ'."""
    alternatives = "|".join(_phrase_regex(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(f"(?:{alternatives})", re.IGNORECASE)


def contains_any(text: str, phrases: list[str] | tuple[str, ...]) -> bool:
    return bool(phrases) and phrases_pattern(tuple(phrases)).search(text) is not None
