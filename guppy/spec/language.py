"""What a persona's language changes: case, word spacing, and what counts as one unit of length.

A persona says its language as a BCP 47 tag (`en`, `ja`, `zh-Hant`, `sr-Latn`, `cmn`). The
`langcodes` library reads it: validity, the language (`cmn` is `zh`), and its script, written in
the tag or else the language's likely one (`cmn` -> Hans, `yue` -> Hant, `ja-JP` -> Jpan).
Two facts about that script matter to Guppy:
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

import regex

# Scripts (ISO 15924) with upper and lower case, and those written without spaces between words.
CASED_SCRIPTS = frozenset("Latn Cyrl Grek Armn Copt Glag Cher Adlm Osge Dsrt".split())
UNSPACED_SCRIPTS = frozenset("Hani Hans Hant Jpan Hira Kana Hrkt Thai Laoo Khmr Mymr Tibt".split())

# The Unicode scripts (ISO 15924 codes) a script writes with, where it is more than itself.
WRITTEN_WITH = {"Jpan": "Hani Hira Kana", "Hrkt": "Hira Kana", "Hans": "Hani", "Hant": "Hani Bopo", "Kore": "Hang Hani"}

# The shared topic sets, templates/common/SET/: the language and script each is written in.
# A persona gets the set of its own language and script, or none (zh-Hant, yue, ko, fr, ...).
SHARED_SETS = {"en": ("en", "Latn"), "es": ("es", "Latn"), "ja": ("ja", "Jpan"), "zh": ("zh", "Hans")}

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
    """The tag itself if it is a valid BCP 47 tag (a registered language, `langcodes`); ValueError otherwise."""
    if tag in SHARED_SETS:  # the shared sets' own tags, known without langcodes (below)
        return tag
    import langcodes  # here, not at the top: 0.1-0.15 s of import that a cached `guppy train` never needs

    if not (isinstance(tag, str) and "_" not in tag and langcodes.tag_is_valid(tag)):
        raise ValueError(f"'{tag}' is not a valid BCP 47 language tag (e.g. en, ja, zh-Hans, es-MX, pt-BR)")
    return tag


@functools.cache
def language_and_script(tag: str) -> tuple[str, str]:
    """('zh', 'Hans') for 'cmn', 'zh-CN' or 'zh-Hans'; ('zh', 'Hant') for 'zh-TW'; ('yue', 'Hant') for 'yue'.
    A language the library knows no script for reads as Latin (its guess for 'und').
    The shared sets' own tags (en, es, ja, zh) are answered from SHARED_SETS, which a test holds to langcodes'
    answers: a `guppy eval` of such a persona then never imports langcodes (0.13 s of an eval on a GPU machine)."""
    if tag in SHARED_SETS:
        return SHARED_SETS[tag]
    import langcodes

    found = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True)).maximize()
    return found.language, found.script or "Latn"


def is_cased(tag: str) -> bool:
    """Does the language's script have upper and lower case?"""
    return language_and_script(tag)[1] in CASED_SCRIPTS


def is_spaced(tag: str) -> bool:
    """Are its words separated by spaces?"""
    return language_and_script(tag)[1] not in UNSPACED_SCRIPTS


def shared_set(tag: str) -> str | None:
    """The templates/common/ set written in this tag's language and script, or None."""
    return next((name for name, written in SHARED_SETS.items() if written == language_and_script(tag)), None)


@functools.cache
def _foreign_letters(tag: str) -> regex.Pattern | None:
    """Runs of letters of a script other than the tag's (Common and Inherited ones, such as ー, pass)."""
    script = language_and_script(tag)[1]
    own = "".join(f"\\p{{sc={code}}}" for code in WRITTEN_WITH.get(script, script).split())
    try:
        return regex.compile(f"(?V1)[\\p{{L}}--[\\p{{sc=Zyyy}}\\p{{sc=Zinh}}{own}]]+")
    except regex.error:  # a script the regex module does not know: nothing to check against
        return None


def foreign_words(text: str, tag: str) -> list[str]:
    """Runs of letters in `text` written in another script than the language's: 'TV' in a Japanese
    reply, 'i', 'rest', 'in' in `i rest in我的园子`, '竹笋' in an English one."""
    pattern = _foreign_letters(tag)
    return pattern.findall(text) if pattern is not None else []


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


def _edges(phrase: str) -> tuple[str, str]:
    """A phrase of a spaced script matches as whole words; an edge in an unspaced script (ja, zh,
    th) has no visible word boundary, so that side matches anywhere: 'ごはん' in 'ごはんが好き'."""
    return ("" if is_unspaced_char(phrase[:1]) else _LEFT_EDGE, "" if is_unspaced_char(phrase[-1:]) else _RIGHT_EDGE)


@functools.lru_cache(maxsize=1024)
def phrases_pattern(phrases: tuple[str, ...]) -> re.Pattern:
    """One regex that finds any of the phrases: 'eat' in 'i eat.', not in 'great'; 'ごはん' in 'ごはんだ'.

    Phrases with the same edges share one pair of them, `edge(?:a|b|c)edge`: each edge is a class of
    thousands of characters that takes re a millisecond and more to compile, once per phrase before
    (a second of `guppy eval`). Longest first within each group, so the longest phrase is the match."""
    groups: dict[tuple[str, str], list[str]] = {}
    for phrase in sorted(phrases, key=len, reverse=True):
        groups.setdefault(_edges(phrase), []).append(re.escape(phrase.lower()))
    alternatives = "|".join(f"{left}(?:{'|'.join(bodies)}){right}" for (left, right), bodies in groups.items())
    return re.compile(f"(?:{alternatives})", re.IGNORECASE)


def contains_any(text: str, phrases: list[str] | tuple[str, ...]) -> bool:
    return bool(phrases) and phrases_pattern(tuple(phrases)).search(text) is not None
