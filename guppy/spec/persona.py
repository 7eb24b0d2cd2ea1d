"""The persona spec: what a personality is, as data.

A persona is a YAML file under `personas/`. These Pydantic models are the only
definition of its shape: `extra="forbid"` makes an unknown or misspelt field an
error, and the field descriptions double as documentation (`guppy persona show`).
Loading a file and turning validation errors into one line per problem lives in
`guppy/spec/personas.py`; this module knows nothing about files.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from guppy.spec.language import check_tag, contains_any, foreign_words
from guppy.spec.style import RULES, violations

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # `weight: .inf` is a typo


class Identity(Strict):
    name: str = Field(description="Short name, also the persona's id: lowercase letters, digits, _ or -.")
    description: str = Field(description="One line: who this character is.")
    user: str = Field(description="Who the user is to it, e.g. 'the human who feeds it'.")

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", v):  # it names files and folders: keep it short
            raise ValueError("must be lowercase letters, digits, '_' or '-', starting with a letter, "
                             "at most 64 characters")
        return v


class Style(Strict):
    lowercase: bool = Field(True, description="Replies are all lowercase (enforced when rendering); "
                            "only where the language's script has case.")
    max_sentence_words: int = Field(12, gt=0, le=10_000, description="Longest sentence a reply may have, in words "
                                    "(in characters for a language written without spaces: ja, zh).")
    min_reply_words: int = Field(2, gt=0, le=10_000, description="Shortest reply, in words (characters for ja, zh).")
    max_reply_words: int = Field(40, gt=0, le=10_000, description="Longest reply, in words (characters for ja, zh).")
    banned_words: list[str] = Field(default_factory=list, description="Words the persona never says: matched as "
                                    "whole words, or as a substring in a language written without spaces (ja, zh).")
    # The persona's language (Persona sets it from its own `language`), so every caller of check()
    # gets that language's rules without passing it along.
    _language: str = PrivateAttr("en")
    # Words in another script than the language's that its own pools hold ('TV' in a Japanese
    # lexicon): said on purpose, so the script rule lets them pass. Lowercased.
    _own_foreign: frozenset = PrivateAttr(frozenset())

    @field_validator("banned_words")
    @classmethod
    def _no_empty_banned(cls, v: list[str]) -> list[str]:
        if any(not w.strip() for w in v):  # an empty word is in every reply: all of them would break the style
            raise ValueError("has an empty entry; every banned word needs some text")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> Style:
        if self.min_reply_words > self.max_reply_words:
            raise ValueError("min_reply_words is larger than max_reply_words")
        return self

    def check(self, reply: str) -> dict[str, bool]:
        """Which of the style rules a reply keeps (the evaluator's style adherence); see guppy/spec/style.py."""
        broken = {v.rule for v in violations(reply, self)}
        return {rule: rule not in broken for rule in RULES}


class Topic(Strict):
    template: str = Field(description="Template path under templates/, e.g. 'common/greeting.jinja' "
                          "(the shared topic in the persona's language: common/LANG/greeting.jinja) or 'NAME/hobby.jinja'.")
    weight: float = Field(1.0, gt=0, le=1e6, description="Relative share of the corpus this topic gets.")


class Association(Strict):
    """Something the persona must show, which the evaluator measures.

    A reply *hits* when it contains one of `expect` (case-insensitive): as whole words in a language
    written with spaces, anywhere in the reply (a substring) in one written without (ja, zh).
    """

    kind: Literal["cue", "concept", "confusion"] = Field(
        description="cue: a prompt that must bring up the words; concept: words that surface across "
        "many topics; confusion: human things it does not understand."
    )
    expect: list[str] = Field(min_length=1, description="Words or phrases; a reply containing any one is a hit "
                              "(as whole words; as a substring in a language written without spaces: ja, zh).")
    topics: list[str] = Field(
        default_factory=list,
        description="Topics whose replies should show it (its cue's replies in the data); empty = every topic.",
    )
    probes: list[str] = Field(
        default_factory=list,
        description="Evaluation-only prompts that cue it; never rendered into training data.",
    )

    @field_validator("expect", "probes")
    @classmethod
    def _no_empty_words(cls, v: list[str]) -> list[str]:
        if any(not w.strip() for w in v):  # an empty word is found in every reply: a 100% that means nothing
            raise ValueError("has an empty entry; every word or prompt needs some text")
        return v

    def hit(self, reply: str) -> bool:
        """Does this reply show the association (contain one of the expected words)?"""
        return contains_any(reply, self.expect)


class Persona(Strict):
    identity: Identity = Field(description="Who the character is: name, one-line description, who the user is to it.")
    language: str = Field("en", description="BCP 47 tag of the language it speaks (en, zh, cmn, ja-JP, es-MX), read "
                          "by language and script: picks the shared topics (templates/common/en, zh, ja, es; "
                          "another language writes its own), whether case applies, whether lengths count words or "
                          "characters, and whether words match whole or as substrings.")
    style: Style = Field(default_factory=Style, description="How its replies read; enforced on the generated data.")
    lexicon: dict[str, list[str]] = Field(description="Named pools of words/phrases that templates draw from "
                                          "(the shared topics need the pools `guppy persona new --blank --language TAG` lists).")
    topics: dict[str, Topic] = Field(min_length=1, description="Topic name -> template and weight.")
    associations: dict[str, Association] = Field(default_factory=dict, description="Name -> association.")

    @property
    def name(self) -> str:
        return self.identity.name

    @field_validator("language")
    @classmethod
    def _bcp47(cls, v: str) -> str:
        return check_tag(v)

    @model_validator(mode="after")
    def _style_speaks_its_language(self) -> Persona:
        self.style._language = self.language  # a private attribute: allowed on a frozen model
        self.style._own_foreign = frozenset(w.lower() for items in self.lexicon.values() for item in items
                                            for w in foreign_words(item, self.language))
        return self

    @field_validator("lexicon")
    @classmethod
    def _pools_not_empty(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for pool, words in v.items():
            if not words:
                raise ValueError(f"pool '{pool}' is empty")
        return v

    @model_validator(mode="after")
    def _association_topics_exist(self) -> Persona:
        for name, assoc in self.associations.items():
            for topic in assoc.topics:
                if topic not in self.topics:
                    raise ValueError(f"association '{name}' names unknown topic '{topic}'")
        return self

    def probes(self) -> list[str]:
        """Every evaluation-only prompt, in spec order."""
        return [p for a in self.associations.values() for p in a.probes]
