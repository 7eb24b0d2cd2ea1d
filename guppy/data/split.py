"""The leak-free split rule, shared by the generator and by loaders of outside data.

Rule: conversations are grouped by their *normalized* first user prompt (Unicode NFKC, so
full-width and half-width forms fold together; lowercase where the script has case; punctuation
of any script dropped, 。、！？「」 as well as .,!?; whitespace folded, and dropped next to a
character of a script written without spaces, so "人生の 意味は？" and "人生の意味は" are one prompt).
The rule is the same for every language: it works per character, so data of unknown language
(a JSONL file) splits by it too. Whole groups go to test, in an order fixed by
a hash of (seed, prompt), until test holds `test_size` of the rows. So a prompt is in
train or in test, never both, and the split depends only on the prompts and the seed.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable

from guppy.spec.language import drop_spaces_by_unspaced, fold

_NOT_WORD = re.compile(r"[^\w\s']+")  # \w is Unicode: kana, kanji, ー and 々 are letters; 。、「」・〜 are not
_SPACE = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    # str.lower() leaves caseless scripts as they are, so "lowercase where the script has case" is free
    text = _SPACE.sub(" ", _NOT_WORD.sub(" ", fold(text).lower())).strip()
    return drop_spaces_by_unspaced(text)


class PromptKeys(dict):
    """normalize_prompt with a memory, as a dict: `keys[prompt]` normalizes each prompt once.

    Templates repeat prompts (60K guppy conversations hold ~27K distinct ones), and the
    generator needs each row's key three times: probe check, unique count and split.
    """

    def __missing__(self, prompt: str) -> str:
        self[prompt] = key = normalize_prompt(prompt)
        return key


def leak_free_split(prompts: list[str], *, test_size: float, seed: int,
                    normalize: Callable[[str], str] = normalize_prompt) -> list[bool]:
    """Return, for each row, whether it belongs to the test split.

    `normalize` gives a prompt's group key. Pass a memo of normalize_prompt, such as
    `PromptKeys().__getitem__`, to reuse keys computed earlier; anything else changes the rule.
    """
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(normalize(prompt), []).append(i)

    def rank(key: str) -> bytes:
        return hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()

    is_test = [False] * len(prompts)
    budget = max(1, round(test_size * len(prompts)))  # a few rows still get a test row of their own
    taken = 0
    for key in sorted(groups, key=rank):
        if taken >= budget:
            break
        rows = groups[key]
        if taken + len(rows) > budget * 1.1 + 1:  # skip a group that would overshoot by far
            continue
        for i in rows:
            is_test[i] = True
        taken += len(rows)
    return is_test
