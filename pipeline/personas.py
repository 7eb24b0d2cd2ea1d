"""Find a persona, load its YAML, validate it, and locate its templates.

Where things are found:
- PERSONA is a path to a YAML file, or a name: `personas/NAME.yaml` in the working
  directory, else the personas shipped with Guppy.
- A template path such as `guppy/food.jinja` resolves under the `templates/` folder
  beside that persona's `personas/` folder first, then under the shipped `templates/`,
  so a user's own persona can use the shipped `common/` topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from guppy.errors import GuppyError
from guppy.persona import Persona


def _shipped_root() -> Path:
    # A source checkout or editable install has personas/ beside pipeline/; a wheel
    # carries them inside the package as pipeline/_shipped/ (see pyproject.toml).
    here = Path(__file__).resolve().parent
    for root in (here.parent, here / "_shipped"):
        if (root / "personas").is_dir() and (root / "templates").is_dir():
            return root
    raise RuntimeError(f"shipped personas not found near {here}")


SHIPPED = _shipped_root()


@dataclass(frozen=True)
class LoadedPersona:
    spec: Persona
    path: Path  # the YAML file
    template_dirs: tuple[Path, ...]  # searched in order
    source: str  # the YAML text, copied beside every dataset made from it

    @property
    def name(self) -> str:
        return self.spec.name


def persona_path(persona: str | Path) -> Path:
    """Resolve a persona name or a YAML path to an existing file."""
    text = str(persona)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise GuppyError(f"{path}: persona file not found")
        return path
    for folder in (Path("personas"), SHIPPED / "personas"):
        path = folder / f"{text}.yaml"
        if path.is_file():
            return path
    known = ", ".join(list_personas()) or "none"
    raise GuppyError(f"unknown persona '{text}': no personas/{text}.yaml here or shipped (known: {known})")


def list_personas() -> list[str]:
    """Names of the personas in ./personas and the shipped ones (local first, no repeats)."""
    names: dict[str, None] = {}
    for folder in (Path("personas"), SHIPPED / "personas"):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            names.setdefault(path.stem)
    return list(names)


def _format_loc(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_persona(persona: str | Path) -> LoadedPersona:
    """Load and validate a persona; every problem becomes one line naming file and field."""
    path = persona_path(persona)
    source = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise GuppyError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise GuppyError(f"{path}: expected a mapping of fields at the top level")
    try:
        spec = Persona.model_validate(raw)
    except ValidationError as e:
        raise GuppyError(*(f"{path}: {_format_loc(err['loc'])}: {err['msg']}" for err in e.errors())) from None

    template_dirs = tuple(dict.fromkeys(d.resolve() for d in (path.parent.parent / "templates", SHIPPED / "templates")))
    missing = [
        f"{path}: topics.{name}.template: '{topic.template}' not found in "
        + " or ".join(str(d) for d in template_dirs)
        for name, topic in spec.topics.items()
        if not any((d / topic.template).is_file() for d in template_dirs)
    ]
    if missing:
        raise GuppyError(*missing)
    return LoadedPersona(spec=spec, path=path, template_dirs=template_dirs, source=source)
