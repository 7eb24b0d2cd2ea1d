"""What `guppy persona new | show | validate | sample | schema` do: scaffold, check, read and size up a persona."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from guppy.checks import SEED_MAX, check_number
from guppy.config import GENERATE
from guppy.errors import GuppyError
from guppy.spec.persona import Identity, Persona
from guppy.spec.style import conversation_violations, violations
from guppy.store.atomic import atomic_file
from pipeline.blank import COMMON_POOLS, blank_persona, with_language
from guppy.spec.personas import LoadedPersona, load_persona
from pipeline.workers import render_each
from pipeline.pools import display_path
from pipeline.render import Renderer
from pipeline.trace import Located, TracingRenderer


def new_persona(name: str, *, from_: str = "guppy", blank: bool = False, language: str | None = None,
                root: Path = Path(".")) -> Path:
    """Copy persona `from_` to personas/NAME.yaml and its own templates to templates/NAME/,
    or with `blank`, write the documented blank skeleton in `language` (pipeline/blank.py) and its schema.
    With `from_`, a `language` replaces the copy's own.

    Template paths `FROM/...` become `NAME/...` in the YAML and in the templates' imports;
    shared `common/` templates stay shared. The result validates and renders at once.
    """
    try:
        Identity(name=name, description="-", user="-")
    except Exception:
        raise GuppyError(f"persona name '{name}': use lowercase letters, digits, '_' or '-', starting with a letter") from None
    yaml_out = root / "personas" / f"{name}.yaml"
    templates_out = root / "templates" / name
    for path in (yaml_out, templates_out):
        if path.exists():
            raise GuppyError(f"{path}: already exists; choose another name or remove it")
    if blank:
        text, own_template = blank_persona(name, language or "en")
        return _write_persona(yaml_out, text, templates_out, own_template and _blank_templates(own_template))
    source = load_persona(from_)
    old = source.name
    own = [d / old for d in source.template_dirs if (d / old).is_dir()]

    def copy_templates(out: Path) -> None:
        shutil.copytree(own[0], out)
        for template in out.rglob("*.jinja"):
            text = template.read_text(encoding="utf-8")
            template.write_text(re.sub(rf"(['\"]){re.escape(old)}/", rf"\1{name}/", text), encoding="utf-8")

    text = re.sub(rf"(template:\s*['\"]?){re.escape(old)}/", rf"\1{name}/", source.source)
    text = re.sub(rf"^(\s+name:\s*['\"]?){re.escape(old)}\b", rf"\g<1>{name}", text, count=1, flags=re.M)
    if language is not None:
        text = with_language(text, language)
    return _write_persona(yaml_out, text, templates_out, copy_templates if own else None)


def _blank_templates(template: str) -> Callable[[Path], None]:
    def write(out: Path) -> None:
        out.mkdir(parents=True)
        (out / "hobby.jinja").write_text(template, encoding="utf-8")
    return write


def _write_persona(yaml_out: Path, text: str, templates_out: Path,
                   write_templates: Callable[[Path], None] | None) -> Path:
    """templates/NAME/ (what `write_templates` puts there), personas/NAME.yaml (`text`) and, when
    missing, the schema its `$schema=` line points editors at; then check that it validates. Any
    failure, Ctrl-C too, removes what this wrote (none of it existed before): nothing half-made stays."""
    schema_out = yaml_out.parent / "persona.schema.json"
    written: list[Path] = []
    try:
        if write_templates is not None:
            written.append(templates_out)
            write_templates(templates_out)
        yaml_out.parent.mkdir(parents=True, exist_ok=True)
        written.append(yaml_out)
        yaml_out.write_text(text, encoding="utf-8")
        if not schema_out.exists():
            written.append(schema_out)
            write_schema(schema_out)
        validate_persona(str(yaml_out))
    except BaseException:
        for path in written:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        raise
    return yaml_out


def persona_schema() -> dict:
    """The JSON Schema of a persona file, from the Pydantic models (their field descriptions included),
    with the pools templates/common/ needs listed under `lexicon` so an editor suggests them."""
    schema = Persona.model_json_schema()
    schema["title"] = "Guppy persona"
    lexicon = schema["properties"]["lexicon"]
    lexicon["properties"] = {pool: {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                    "description": f"{note} (used by templates/common/en/; the other "
                                                   "languages' blanks describe their pools)"}
                             for pool, (note, _) in COMMON_POOLS.items()}
    return schema


def write_schema(path: Path) -> Path:
    with atomic_file(path, kind="schema") as tmp:
        tmp.write_text(json.dumps(persona_schema(), indent=2) + "\n", encoding="utf-8")
    return path


def persona_warnings(loaded: LoadedPersona) -> list[str]:
    """Things that work but are probably a mistake."""
    warnings = []
    if loaded.path.stem != loaded.name:
        warnings.append(f"{display_path(str(loaded.path))}: identity.name is '{loaded.name}' but the file is "
                        f"{loaded.path.name}: runs go to runs/{loaded.name}/; rename one so they match")
    return warnings


def style_problems(loaded: LoadedPersona, bad: list[tuple[str, int]], *, seed: int, of: str, limit: int = 8) -> list[str]:
    """One line per place that makes style violations: where, what, how many, an example.

    `bad` lists the (topic, index) samples with a violation; they are rendered again with a
    TracingRenderer (same seed, same text) to find the template line behind each."""
    tracer = TracingRenderer(loaded, seed)
    groups: dict[str, list] = {}
    for topic, index in bad:
        conv, found = tracer.check(topic, index)
        for turn, located in found:
            groups.setdefault(str(located), []).append((topic, index, conv[turn][1], conv[turn][0]))
    worst = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    kinds = {"assistant": ("reply", "replies"), "user": ("prompt", "prompts")}  # the script rule checks both
    lines = [f"{where}: {len(hits)} {kinds[hits[0][3]][len(hits) > 1]} {of}, e.g. "
             f"{hits[0][0]} #{hits[0][1]}: \"{hits[0][2]}\"" for where, hits in worst[:limit]]
    if len(worst) > limit:
        lines.append(f"... and {len(worst) - limit} more places; `guppy persona sample "
                     f"{display_path(str(loaded.path))} --topic TOPIC` marks them inline")
    return lines


def validate_persona(persona: str | Path, *, samples: int = 200) -> LoadedPersona:
    """Load the spec, compile every template, render `samples` conversations of each topic and
    refuse any that break the persona's style, naming the template line behind each."""
    loaded = load_persona(persona)
    renderer = Renderer(loaded, seed=0)  # compiling happens here
    style = loaded.spec.style
    pool_problems = [  # an item that is out of style wherever it lands: say so at its pool
        f"{display_path(str(loaded.path))}: lexicon.{pool}: \"{item}\": {v.message}"
        for pool, items in loaded.spec.lexicon.items() for item in items
        for v in violations(item, style) if v.rule in ("sentence_length", "no_banned_words")]
    if pool_problems:
        raise GuppyError(*pool_problems)
    # Rendered in as many processes as generate-data uses (the cores here, up to 8): 2x faster on 2 cores.
    rendered = render_each(renderer, {topic: samples for topic in loaded.spec.topics}, GENERATE.num_proc)
    bad = [(topic, i) for topic, conversations in rendered.items() for i, conv in enumerate(conversations)
           if conversation_violations(conv, style)]  # a reply out of style, a prompt in another script
    if bad:
        total = samples * len(loaded.spec.topics)
        raise GuppyError(*style_problems(loaded, bad, seed=0, of=f"in {total:,} rendered ({samples} per topic)"))
    return loaded


@dataclass
class Sample:
    topic: str
    index: int  # with the same seed, generate-data renders the same conversation for (topic, index)
    template: str
    conversation: tuple[tuple[str, str], ...]
    problems: list[tuple[int, Located]]  # (turn, violation and where it came from)


def sample_persona(persona: str | Path, *, topic: str | None = None, n: int = 10, seed: int = 0) -> tuple[LoadedPersona, list[Sample]]:
    """`n` rendered conversations (of one topic, or of topics drawn by weight), each with its style
    violations located in the templates."""
    check_number("--n", n, ge=1, le=100_000)
    check_number("--seed", seed, ge=0, le=SEED_MAX)
    loaded = load_persona(persona)
    spec = loaded.spec
    if topic is not None and topic not in spec.topics:
        raise GuppyError(f"{display_path(str(loaded.path))}: no topic '{topic}'; topics: {', '.join(spec.topics)}")
    tracer = TracingRenderer(loaded, seed)
    rng = random.Random(seed)
    names, weights = list(spec.topics), [t.weight for t in spec.topics.values()]
    samples = []
    for i in range(n):
        t = topic or rng.choices(names, weights)[0]
        index = i if topic else rng.randrange(10_000)
        conv, found = tracer.check(t, index)
        samples.append(Sample(t, index, spec.topics[t].template, conv, found))
    return loaded, samples


def estimate_distinct(unique: int, draws: int) -> float:
    """How many equally likely outcomes would give `unique` distinct values in `draws` draws.

    Solves N * (1 - exp(-draws / N)) = unique by bisection; with no repeat at all the data
    only says N is large, and draws^2 / 2 is returned as a lower bound (the birthday bound).
    """
    if unique >= draws:
        return draws * draws / 2
    lo, hi = float(unique), float(unique) * 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid * (1 - math.exp(-draws / mid)) < unique:
            lo = mid
        else:
            hi = mid
    return lo


def topic_capacity(loaded: LoadedPersona, *, draws: int = 400) -> dict[str, tuple[int, float]]:
    """Per topic: unique conversations in `draws` renders and the estimated number it can make."""
    renderer = Renderer(loaded, seed=0)
    out = {}
    for topic in loaded.spec.topics:
        unique = len({renderer.render(topic, i) for i in range(draws)})
        out[topic] = (unique, estimate_distinct(unique, draws))
    return out

