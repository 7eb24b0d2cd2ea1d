"""Render one whole conversation from a Jinja template.

A template is code written by users, so it runs in Jinja's sandbox (no reaching
Python internals) with StrictUndefined (a typo fails loudly, with template and line).

What a template sees:
    lexicon        the persona's pools: `lexicon.foods` is a list of strings
    persona        its identity: persona.name, persona.description, persona.user
    pick(pool)     one item of a list, or of a "a|b|c" string of alternatives
    pick_n(pool,k) k distinct items, in random order
    maybe(p=0.5)   True with probability p
    randint(a, b)  an int in [a, b]

What a template writes: turns, each starting on a line `user:` or `assistant:`;
lines that follow belong to the same turn. Whitespace is folded, so templates may
spread a reply over several lines of `{% if %}` (in a language written without spaces, such
as ja, whitespace next to its characters is dropped: lines join with nothing between).
A conversation starts with the user, alternates, and ends with the assistant. Slots bound once with `{% set %}` are visible
to every turn, so a reply can refer to what the user said.

Randomness comes only from a per-sample RNG seeded from (seed, persona, topic, index),
so a sample is the same whichever process renders it, and in whatever order.

A template may come from a stranger, so besides the sandbox it runs under a budget
(guppy's limits, pipeline/budget.py): Jinja's *immutable* sandbox (a template cannot change the
lexicon it shares with every other render), files read only from inside the template folders
(no links out, no devices), at most RenderBudget.seconds and RenderBudget.chars per
conversation, and Python's recursion limit for macros and includes that call themselves.
Whatever a template raises is the template author's mistake: one line, template and line.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
import traceback
from pathlib import Path

import jinja2
from jinja2.sandbox import SecurityError

from guppy.errors import GuppyError
from guppy.spec.language import drop_spaces_by_unspaced, is_cased, is_spaced
from pipeline.budget import BudgetedSandbox, BudgetExceeded, RenderBudget, TemplateFolderLoader
from guppy.spec.personas import LoadedPersona, within_set
from pipeline.pools import check_pools

Conversation = tuple[tuple[str, str], ...]  # ((role, content), ...)

_TURN = re.compile(r"^\s*(user|assistant):\s?(.*)$")
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[.,!?;:])")  # a lookahead: sub() with "" needs no group template


class Dice:
    """The template's only source of randomness; reseeded before every sample."""

    def __init__(self) -> None:
        self.rng = random.Random(0)

    def pick(self, pool):
        if isinstance(pool, str):
            pool = pool.split("|")
        if not pool:
            raise ValueError("pick() from an empty pool")
        return self.rng.choice(pool)  # draws what pool[randrange(len(pool))] would, one call less

    def pick_n(self, pool, k):
        if isinstance(pool, str):
            pool = pool.split("|")
        return self.rng.sample(list(pool), k)

    def maybe(self, p=0.5):
        return self.rng.random() < p

    def randint(self, a, b):
        return self.rng.randint(a, b)


def topic_seed(seed: int, persona: str, topic: str) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{persona}\x00{topic}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def template_location(exc: BaseException, fallback: str) -> str:
    """'templates/x/y.jinja:LINE' of the innermost template frame of a render error."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".jinja")]
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    lineno = getattr(exc, "lineno", None)
    filename = getattr(exc, "filename", None) or fallback
    return f"{filename}:{lineno}" if lineno else filename


def bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs (keyed by source checksum): compiling ~60 templates
    takes about a second, a third of a whole `generate-data`. Only this sandbox's code goes here."""
    # -v2: code compiled with the budget's checks (pipeline/budget.py); older entries lack them
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "guppy" / "jinja-sandbox-v2"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # read-only home: compile every time
    return jinja2.FileSystemBytecodeCache(str(folder))


_DICT_ATTRIBUTES = frozenset(dir(dict))  # what getattr() finds on a dict before its items


class Sandbox(BudgetedSandbox):
    """The immutable sandbox with the render budget, minus per-render overheads that buy nothing
    for our templates.

    Rendering 60K conversations makes about a million calls from templates, so a microsecond
    saved per call, or per render, is seconds saved per corpus. Each shortcut below returns
    exactly what the sandbox itself would (tests/test_generate.py checks the bytes).
    """

    trusted: frozenset = frozenset()

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's own signature)
        # Every call from a template goes through here, and the sandbox inspects the callee
        # (~4 µs); a conversation makes 10-30 calls, most of them to pick(). Ours are known safe.
        try:
            trusted = __obj in __self.trusted
        except TypeError:  # an unhashable callee is not one of ours
            trusted = False
        if trusted:
            return __obj(*args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj, attribute):
        # `lexicon.foods` on a dict: the sandbox tries the attribute first, and the
        # AttributeError it catches costs more than the lookup. A plain dict has no
        # attribute of that name, so the item is what the sandbox would return anyway.
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def join_path(self, template, parent):
        # `{% import "common/_phrases.jinja" %}` inside common/es/x.jinja: es's phrases (guppy/personas.py)
        return within_set(template, parent)

    def make_globals(self, d):
        # Jinja chains a template's globals onto the environment's (a ChainMap) so that later
        # changes to env.globals show through. Ours are all set before the first template
        # loads, and a plain dict makes each render's context (and each `{% import %}`
        # of common/_phrases.jinja) ~20 µs cheaper: a third of a render.
        return {**self.globals, **(d or {})}


class Renderer:
    """Compiles a persona's templates once, then renders samples by (topic, index)."""

    environment = Sandbox  # pipeline/trace.py renders with one that records where each piece came from

    def __init__(self, persona: LoadedPersona, seed: int, budget: RenderBudget = RenderBudget()):
        self.persona = persona
        spec = persona.spec
        self.dice = Dice()
        self.budget = budget
        self.env = self.environment(
            budget=budget,
            loader=TemplateFolderLoader([str(d) for d in persona.template_dirs], rename=persona.template_name),
            bytecode_cache=bytecode_cache(),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # templates do not change during a run: skip a file stat per {% import %}
        )
        self.env.globals.update(  # before any template loads: see Sandbox.make_globals
            lexicon=spec.lexicon,
            persona=spec.identity.model_dump(),
            pick=self.dice.pick,
            pick_n=self.dice.pick_n,
            maybe=self.dice.maybe,
            randint=self.dice.randint,
        )
        self.env.trusted = frozenset([self.dice.pick, self.dice.pick_n, self.dice.maybe, self.dice.randint])
        self.lowercase = spec.style.lowercase and is_cased(spec.language)
        self.spaced = is_spaced(spec.language)  # else lines join without a space: "お腹すいた。ごはん！"
        self.templates = {name: self._compile(topic.template) for name, topic in spec.topics.items()}
        check_pools(persona)  # a pool the templates use and the YAML lacks: name the YAML field
        self.seeds = {name: topic_seed(seed, spec.name, name) for name in spec.topics}

    def _compile(self, template: str) -> jinja2.Template:
        try:
            return self.env.get_template(template)
        except jinja2.TemplateSyntaxError as e:
            raise GuppyError(f"{e.filename or template}:{e.lineno}: template syntax error: {e.message}") from None
        except jinja2.TemplateNotFound as e:
            raise GuppyError(f"{template}: template not found ({e.message}); looked in "
                             + ", ".join(str(d) for d in self.persona.template_dirs)) from None
        except SecurityError as e:
            raise GuppyError(f"{template}: blocked by the sandbox: {e}") from None

    def render(self, topic: str, index: int) -> Conversation:
        template = self.templates[topic]
        self.dice.rng.seed(self.seeds[topic] + index)
        try:
            text = self.env.render_within_budget(template)
        except GuppyError:
            raise
        except BudgetExceeded as e:
            raise GuppyError(f"{template_location(e, template.filename)}: over the render budget: {e}") from None
        except RecursionError:
            raise GuppyError(f"{template.filename}: over the render budget: recursion deeper than Python's limit "
                             f"of {sys.getrecursionlimit()} frames (a macro or include that calls itself)") from None
        except SecurityError as e:
            raise GuppyError(f"{template_location(e, template.filename)}: blocked by the sandbox: {e}") from None
        except MemoryError:
            raise GuppyError(f"{template.filename}: over the render budget: out of memory") from None
        except Exception as e:  # the template is the user's code: whatever it raises is theirs to fix
            message = str(e).splitlines()[0][:300] if str(e) else ""
            raise GuppyError(f"{template_location(e, template.filename)}: {type(e).__name__}: {message}") from None
        return self._parse(text, template.filename)

    def _parse(self, text: str, filename: str) -> Conversation:
        turns: list[list[str]] = []
        for line in text.splitlines():
            m = _TURN.match(line)
            if m:
                turns.append([m.group(1), m.group(2)])
            elif line.strip():
                if not turns:
                    raise GuppyError(f"{filename}: text before the first 'user:' line: {line.strip()!r}")
                turns[-1][1] += " " + line
        convo = []
        for i, (role, content) in enumerate(turns):
            content = _SPACE_BEFORE_PUNCT.sub("", _SPACE.sub(" ", content)).strip()
            if not self.spaced:
                content = drop_spaces_by_unspaced(content)
            expected = "user" if i % 2 == 0 else "assistant"
            if role != expected or not content:
                problem = f"turn {i + 1} should be '{expected}:'" if role != expected else f"turn {i + 1} is empty"
                raise GuppyError(f"{filename}: {problem} (a conversation alternates user/assistant, starting with user)")
            if role == "assistant" and self.lowercase:
                content = content.lower()
            convo.append((role, content))
        if not convo or convo[-1][0] != "assistant":
            hint = ""
            if re.search(r"\S[ \t]*assistant:", text):  # the turn is there, glued to the line before it
                hint = ("; 'assistant:' is there but not at the start of a line: a line ending in a block tag "
                        "('%}') eats its newline (trim_blocks), so end that line with text or '}}', or put the tag "
                        "on a line of its own")
            raise GuppyError(f"{filename}: a conversation must end with an 'assistant:' turn{hint}")
        return tuple(convo)
