"""Render a conversation and know where each piece of its text came from (template file and line).

`guppy persona sample`, `persona validate` and `generate-data` use this to point a writer at the
line that produced a style violation. Every `{{ ... }}` output passes through Jinja's `finalize`
hook; the hook looks at the template frame that called it and maps its Python line back to the
template line (Jinja keeps that table for its tracebacks). This costs a few microseconds per
output, so only diagnostics render this way, never the dataset itself.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from guppy.spec.language import contains_any
from guppy.spec.personas import LoadedPersona
from guppy.spec.style import Violation, conversation_violations
from pipeline.pools import display_path
from pipeline.render import Conversation, Renderer, Sandbox

_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[.,!?;:])")


def fold(text: str) -> str:
    """Whitespace folded and lowercased as the renderer folds a reply, so pieces can be found in it."""
    return _SPACE_BEFORE_PUNCT.sub("", _SPACE.sub(" ", text)).strip().lower()


@dataclass(frozen=True)
class Piece:
    text: str  # folded
    where: str  # "templates/common/en/tired.jinja:39"


class TracingSandbox(Sandbox):
    def __init__(self, **options):
        # The compiled code differs (it calls finalize), so it must not share the bytecode cache.
        options.update(bytecode_cache=None, finalize=self._record)
        super().__init__(**options)
        self.pieces: list[Piece] = []

    def _record(self, value):
        frame = sys._getframe(1)  # the template code that is writing `value`
        template = frame.f_globals.get("__jinja_template__")
        if template is not None and template.filename:
            line = template.get_corresponding_lineno(frame.f_lineno)
            self.pieces.append(Piece(fold(str(value)), f"{display_path(template.filename)}:{line}"))
        return value


@dataclass(frozen=True)
class Located:
    """A style violation and the template line (and lexicon pool) it most likely came from."""

    violation: Violation
    where: str  # "templates/common/en/tired.jinja:39", or a template file when no piece holds it
    pool: str = ""  # "lexicon.rest_lines" when the offending words are one of its items

    def __str__(self) -> str:
        via = f" (from {self.pool})" if self.pool else ""
        return f"{self.where}: {self.violation.message}{via}"


class TracingRenderer(Renderer):
    """A Renderer whose `trace()` also says which template line wrote each piece of a reply."""

    environment = TracingSandbox

    def __init__(self, persona: LoadedPersona, seed: int):
        super().__init__(persona, seed)
        self.items = {}  # folded lexicon item -> the pool it is in
        for pool, words in persona.spec.lexicon.items():
            for word in words:
                self.items.setdefault(fold(word), f"lexicon.{pool}")

    def trace(self, topic: str, index: int) -> tuple[Conversation, list[Piece]]:
        self.env.pieces = []
        conv = self.render(topic, index)
        return conv, [p for p in self.env.pieces if p.text]

    def locate(self, violation: Violation, reply: str, pieces: list[Piece], topic: str) -> Located:
        """Where a violation came from: the smallest piece of the reply that holds the offending text
        (a long reply: its biggest piece), and the lexicon pool when one of its items holds it."""
        target = fold(violation.text)
        inside = [p for p in pieces if p.text in reply]
        if violation.rule == "reply_length":
            holders = sorted(inside, key=lambda p: len(p.text))[-1:]
        elif violation.rule == "no_banned_words":
            holders = [p for p in inside if contains_any(p.text, [target])]
        else:  # a sentence: a piece that holds all of it, else the biggest piece of it
            holders = [p for p in inside if target in p.text] or sorted(
                (p for p in inside if p.text in target), key=lambda p: -len(p.text))[:1]
        if not holders:  # the words are the template's own text, outside any {{ ... }}
            return Located(violation, self.own_text_line(target, topic))
        best = min(holders, key=lambda p: len(p.text))
        pool = ""
        if violation.rule != "reply_length":
            word = (lambda item: contains_any(item, [target])) if violation.rule == "no_banned_words" else (lambda item: target in item)
            pool = next((self.items[item] for item in self.items if item in best.text and word(item)), "")
        return Located(violation, best.where, pool)

    def own_text_line(self, target: str, topic: str) -> str:
        """template:line of the first line of the topic's template that writes `target` as its own text,
        or the template when none does (the text is split over lines, or comes from an import)."""
        template = self.persona.spec.topics[topic].template
        path = self.persona.find_template(template)
        lines = path.read_text(encoding="utf-8").splitlines() if path else []
        return next((f"{display_path(str(path))}:{n}" for n, line in enumerate(lines, 1) if target in line.lower()),
                    template)

    def check(self, topic: str, index: int) -> tuple[Conversation, list[tuple[int, Located]]]:
        """Render one sample; return it with each style violation of its replies as (turn, located)."""
        conv, pieces = self.trace(topic, index)
        return conv, [(turn, self.locate(v, conv[turn][1].lower(), pieces, topic))
                      for turn, v in conversation_violations(conv, self.persona.spec.style)]
