"""What `guppy persona new | show | validate` do: scaffold, check and size up a persona."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

from guppy.errors import GuppyError
from guppy.persona import Identity
from pipeline.personas import LoadedPersona, load_persona
from pipeline.render import Renderer


def new_persona(name: str, *, from_: str = "guppy", root: Path = Path(".")) -> Path:
    """Copy persona `from_` to personas/NAME.yaml and its own templates to templates/NAME/.

    Template paths `FROM/...` become `NAME/...` in the YAML and in the templates' imports;
    shared `common/` templates stay shared. The copy validates and renders at once.
    """
    try:
        Identity(name=name, description="-", user="-")
    except Exception:
        raise GuppyError(f"persona name '{name}': use lowercase letters, digits, '_' or '-', starting with a letter") from None
    source = load_persona(from_)
    yaml_out = root / "personas" / f"{name}.yaml"
    templates_out = root / "templates" / name
    for path in (yaml_out, templates_out):
        if path.exists():
            raise GuppyError(f"{path}: already exists; choose another name or remove it")
    old = source.name
    own = [d / old for d in source.template_dirs if (d / old).is_dir()]
    written: list[Path] = []
    try:
        if own:
            shutil.copytree(own[0], templates_out)
            written.append(templates_out)
            for template in templates_out.rglob("*.jinja"):
                text = template.read_text(encoding="utf-8")
                template.write_text(re.sub(rf"(['\"]){re.escape(old)}/", rf"\1{name}/", text), encoding="utf-8")
        text = re.sub(rf"(template:\s*['\"]?){re.escape(old)}/", rf"\1{name}/", source.source)
        text = re.sub(rf"^(\s+name:\s*['\"]?){re.escape(old)}\b", rf"\g<1>{name}", text, count=1, flags=re.M)
        yaml_out.parent.mkdir(parents=True, exist_ok=True)
        yaml_out.write_text(text, encoding="utf-8")
        written.append(yaml_out)
        validate_persona(str(yaml_out))
    except BaseException:
        for path in written:  # leave nothing half-made behind
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        raise
    return yaml_out


def validate_persona(persona: str | Path, *, samples: int = 5) -> LoadedPersona:
    """Load the spec, compile every template and render a few conversations of each topic."""
    loaded = load_persona(persona)
    renderer = Renderer(loaded, seed=0)  # compiling happens here
    for topic in loaded.spec.topics:
        for i in range(samples):
            renderer.render(topic, i)
    return loaded


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

